//! The paper's metric: SQuAD-style normalisation, per-sentence sets of (text, label), micro
//! P/R/F1 from summed counts per dataset, and the average as the mean of rounded per-dataset F1s.
//! Beyond the paper: per-label P/R/F1 and a seeded bootstrap 95% CI over sentences.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::OnceLock;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::data::Entity;

/// `get_normalized_answer`: lower, drop ASCII punctuation, articles → space, squeeze whitespace.
pub fn normalize(text: &str) -> String {
    // Python's `\b(a|an|the)\b` replaces the maximal runs of word characters that are an article;
    // its word characters (`str.isalnum()` or `_`) are the letters and numbers of Unicode's general
    // categories, which excludes the combining marks and symbols the regex crate's `\w` admits (`à`
    // written as `a` + U+0300, `ⓐ`) and includes the numbers it leaves out (`²`)
    static WORDS: OnceLock<regex::Regex> = OnceLock::new();
    let words = WORDS.get_or_init(|| regex::Regex::new(r"[\p{L}\p{N}_]+").expect("static regex"));
    let lowered: String = text.to_lowercase().chars().filter(|c| !c.is_ascii_punctuation()).collect();
    let mut spaced = String::with_capacity(lowered.len());
    let mut last = 0;
    for m in words.find_iter(&lowered).filter(|m| matches!(m.as_str(), "a" | "an" | "the")) {
        spaced.push_str(&lowered[last..m.start()]);
        spaced.push(' ');
        last = m.end();
    }
    spaced.push_str(&lowered[last..]);
    spaced
        .split(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// `to_set`: the per-sentence set of (normalised text, label).
pub fn to_set(entities: &[Entity]) -> BTreeSet<(String, String)> {
    entities.iter().map(|e| (normalize(&e.text), e.label.clone())).collect()
}

/// True/false positives and false negatives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counts {
    pub gold: usize,
    pub predicted: usize,
    pub matched: usize,
}

impl Counts {
    pub fn add(&mut self, o: Counts) {
        self.gold += o.gold;
        self.predicted += o.predicted;
        self.matched += o.matched;
    }
    /// (precision, recall, f1) as fractions; 0 where a denominator is 0, as the paper's code.
    pub fn prf(&self) -> (f64, f64, f64) {
        let p = if self.predicted > 0 { self.matched as f64 / self.predicted as f64 } else { 0.0 };
        let r = if self.gold > 0 { self.matched as f64 / self.gold as f64 } else { 0.0 };
        let f = if p + r > 0.0 { 2.0 * p * r / (p + r) } else { 0.0 };
        (p, r, f)
    }
    pub fn f1(&self) -> f64 {
        self.prf().2
    }
}

/// Counts of one sentence, overall and per label.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SentenceCounts {
    pub total: Counts,
    pub per_label: BTreeMap<String, Counts>,
}

/// Compare one sentence's prediction with its gold.
pub fn sentence(pred: &[Entity], gold: &[Entity]) -> SentenceCounts {
    let p = to_set(pred);
    let g = to_set(gold);
    let mut out = SentenceCounts::default();
    for item in &p {
        let c = out.per_label.entry(item.1.clone()).or_default();
        c.predicted += 1;
        if g.contains(item) {
            c.matched += 1;
        }
    }
    for item in &g {
        out.per_label.entry(item.1.clone()).or_default().gold += 1;
    }
    out.total = Counts { gold: g.len(), predicted: p.len(), matched: p.intersection(&g).count() };
    out
}

/// The single-sentence F1 the paper uses as its GRPO reward (empty/empty = 0).
pub fn sentence_f1(pred: &[Entity], gold: &[Entity]) -> f64 {
    sentence(pred, gold).total.f1()
}

/// Python's `round(x, 2)`: correctly rounded from the double's exact value, ties to even.
pub fn round2(x: f64) -> f64 {
    format!("{x:.2}").parse().expect("formatted float parses")
}

/// P/R/F1 in percent (rounded to 2 decimals as the paper reports them).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

impl From<Counts> for Prf {
    fn from(c: Counts) -> Self {
        let (p, r, f) = c.prf();
        Prf { precision: round2(p * 100.0), recall: round2(r * 100.0), f1: round2(f * 100.0) }
    }
}

/// One dataset's scores, as `scores.json` stores them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DatasetScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub ci95: [f64; 2],
    pub sentences: usize,
    pub gold: usize,
    pub predicted: usize,
    pub matched: usize,
    pub parse_failures: usize,
    /// sentences whose generation hit the token cap
    #[serde(default)]
    pub truncated: usize,
    /// sentences the run is meant to cover (equal to `sentences` once the dataset is complete)
    #[serde(default)]
    pub expected: usize,
    pub per_label: BTreeMap<String, LabelScores>,
}

impl DatasetScores {
    pub fn complete(&self) -> bool {
        self.sentences >= self.expected
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabelScores {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub gold: usize,
    pub predicted: usize,
    pub matched: usize,
}

/// Bootstrap replicates used for every CI.
pub const BOOTSTRAP_SAMPLES: usize = 1000;

/// Percentile bootstrap 95% CI (in percent) of micro F1, resampling sentences with replacement.
pub fn bootstrap_ci(per_sentence: &[Counts], samples: usize, seed: u64) -> [f64; 2] {
    let n = per_sentence.len();
    if n == 0 {
        return [0.0, 0.0];
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut f1s: Vec<f64> = (0..samples)
        .map(|_| {
            let mut c = Counts::default();
            for _ in 0..n {
                c.add(per_sentence[rng.gen_range(0..n)]);
            }
            c.f1() * 100.0
        })
        .collect();
    f1s.sort_by(|a, b| a.total_cmp(b));
    let q = |p: f64| f1s[((p * (samples - 1) as f64).round() as usize).min(samples - 1)];
    [round2(q(0.025)), round2(q(0.975))]
}

/// Micro F1 in percent, rounded as the paper reports it, from per-sentence counts.
pub fn micro_f1(per_sentence: &[Counts]) -> f64 {
    let mut t = Counts::default();
    per_sentence.iter().for_each(|x| t.add(*x));
    round2(t.f1() * 100.0)
}

/// Two systems' difference on the same sentences: b − a in the paper's average F1 (points).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairedDiff {
    /// observed b − a: the paper's average (per-set F1 rounded, mean rounded) of b minus a's
    pub delta: f64,
    /// percentile bootstrap 95% CI of the difference
    pub ci95: [f64; 2],
    /// two-sided bootstrap p-value: twice the smaller share of replicates on either side of 0
    pub p: f64,
}

/// Paired bootstrap (Koehn 2004; Berg-Kirkpatrick et al. 2012) of b − a in the average F1 over
/// `sets`, each one dataset's per-sentence counts of a and of b, aligned by sentence. Every
/// replicate resamples each set's sentences with replacement, the same draws for a and b, so
/// what both systems get right or wrong together cancels out. One set: the difference in its F1.
pub fn paired_bootstrap(sets: &[(Vec<Counts>, Vec<Counts>)], samples: usize, seed: u64) -> PairedDiff {
    for (a, b) in sets {
        assert_eq!(a.len(), b.len(), "paired counts must be aligned by sentence");
    }
    let delta = round2(average(&sets.iter().map(|(_, b)| micro_f1(b)).collect::<Vec<_>>()) - average(&sets.iter().map(|(a, _)| micro_f1(a)).collect::<Vec<_>>()));
    if sets.is_empty() || sets.iter().all(|(a, _)| a.is_empty()) || samples == 0 {
        return PairedDiff { delta, ci95: [delta, delta], p: 1.0 };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut diffs: Vec<f64> = (0..samples)
        .map(|_| {
            let mut d = 0.0;
            for (a, b) in sets {
                let (mut ca, mut cb) = (Counts::default(), Counts::default());
                for _ in 0..a.len() {
                    let i = rng.gen_range(0..a.len());
                    ca.add(a[i]);
                    cb.add(b[i]);
                }
                d += (cb.f1() - ca.f1()) * 100.0;
            }
            d / sets.len() as f64
        })
        .collect();
    diffs.sort_by(|x, y| x.total_cmp(y));
    let q = |p: f64| diffs[((p * (samples - 1) as f64).round() as usize).min(samples - 1)];
    let below = diffs.iter().filter(|d| **d <= 0.0).count();
    let above = diffs.iter().filter(|d| **d >= 0.0).count();
    let p = (2.0 * below.min(above) as f64 / samples as f64).min(1.0);
    PairedDiff { delta, ci95: [round2(q(0.025)), round2(q(0.975))], p }
}

impl PairedDiff {
    /// `+0.43 [-1.2, 2.0], p 0.610`; a p of 0 (no replicate on the other side of 0) reads as below
    /// the resolution of [`BOOTSTRAP_SAMPLES`] replicates, `p < 0.002`.
    pub fn cell(&self) -> String {
        let p = if self.p == 0.0 { format!("p < {}", 2.0 / BOOTSTRAP_SAMPLES as f64) } else { format!("p {:.3}", self.p) };
        format!("{:+.2} [{:.1}, {:.1}], {p}", self.delta, self.ci95[0], self.ci95[1])
    }
}

/// Score a dataset from per-sentence counts; `parse_failures` counted by the caller.
pub fn dataset(per_sentence: &[SentenceCounts], parse_failures: usize, seed: u64) -> DatasetScores {
    let mut total = Counts::default();
    let mut labels: BTreeMap<String, Counts> = BTreeMap::new();
    for s in per_sentence {
        total.add(s.total);
        for (l, c) in &s.per_label {
            labels.entry(l.clone()).or_default().add(*c);
        }
    }
    let totals: Vec<Counts> = per_sentence.iter().map(|s| s.total).collect();
    let prf = Prf::from(total);
    DatasetScores {
        precision: prf.precision,
        recall: prf.recall,
        f1: prf.f1,
        ci95: bootstrap_ci(&totals, BOOTSTRAP_SAMPLES, seed),
        sentences: per_sentence.len(),
        gold: total.gold,
        predicted: total.predicted,
        matched: total.matched,
        parse_failures,
        truncated: 0,
        expected: per_sentence.len(),
        per_label: labels
            .into_iter()
            .map(|(l, c)| {
                let p = Prf::from(c);
                (l, LabelScores { precision: p.precision, recall: p.recall, f1: p.f1, gold: c.gold, predicted: c.predicted, matched: c.matched })
            })
            .collect(),
    }
}

/// The paper's average: mean of the per-dataset F1s already rounded to 2 decimals, rounded again.
pub fn average(rounded_f1s: &[f64]) -> f64 {
    if rounded_f1s.is_empty() {
        return 0.0;
    }
    round2(rounded_f1s.iter().sum::<f64>() / rounded_f1s.len() as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(t: &str, l: &str) -> Entity {
        Entity::new(t, l)
    }

    #[test]
    fn normalisation_examples_from_the_paper() {
        assert_eq!(normalize("The U.S."), "us");
        assert_eq!(normalize("A-B  the  C"), "ab c");
        assert_eq!(normalize("Hinton's"), "hintons");
        assert_eq!(normalize("l'Oréal"), "loréal");
        assert_eq!(normalize("  An apple a day "), "apple day");
        assert_eq!(normalize("theory"), "theory");
        assert_eq!(normalize("«Théâtre»"), "«théâtre»");
    }

    #[test]
    fn articles_end_where_pythons_words_end() {
        // outputs of Python's `get_normalized_answer` on the same strings
        assert_eq!(normalize("a²"), "a²");
        assert_eq!(normalize("a\u{300}"), "\u{300}");
        assert_eq!(normalize("Ⓐthe"), "ⓐ");
        assert_eq!(normalize("the١"), "the١");
        assert_eq!(normalize("the_a"), "thea");
        assert_eq!(normalize("an апельсин"), "апельсин");
    }

    #[test]
    fn sets_collapse_duplicates_and_match_normalised_text() {
        let gold = vec![e("the Beatles", "band"), e("Abbey Road", "album"), e("Abbey Road", "album")];
        let pred = vec![e("Beatles", "band"), e("Beatles", "band"), e("abbey road", "song"), e("x", "band")];
        let c = sentence(&pred, &gold);
        assert_eq!(c.total, Counts { gold: 2, predicted: 3, matched: 1 });
        assert_eq!(c.per_label["band"], Counts { gold: 1, predicted: 2, matched: 1 });
        assert_eq!(c.per_label["album"], Counts { gold: 1, predicted: 0, matched: 0 });
        assert_eq!(c.per_label["song"], Counts { gold: 0, predicted: 1, matched: 0 });
    }

    #[test]
    fn micro_f1_sums_counts_not_sentence_f1s() {
        // sentence 1: 1/1 correct; sentence 2: 0 of 3 predicted correct, 1 gold
        let s1 = sentence(&[e("a1", "x")], &[e("a1", "x")]);
        let s2 = sentence(&[e("b", "x"), e("c", "x"), e("d", "x")], &[e("z", "x")]);
        let d = dataset(&[s1, s2], 0, 1);
        // P = 1/4, R = 1/2, F = 2*(.25*.5)/(.75) = 1/3
        assert_eq!((d.precision, d.recall, d.f1), (25.0, 50.0, 33.33));
        assert_eq!((d.gold, d.predicted, d.matched), (2, 4, 1));
    }

    #[test]
    fn empty_gold_and_prediction_is_zero() {
        assert_eq!(sentence_f1(&[], &[]), 0.0);
        assert_eq!(Counts::default().prf(), (0.0, 0.0, 0.0));
    }

    #[test]
    fn rounding_and_average_follow_python() {
        // Python: round(0.125, 2) == 0.12, round(0.375, 2) == 0.38, round(2.675, 2) == 2.67
        assert_eq!(round2(0.125), 0.12);
        assert_eq!(round2(0.375), 0.38);
        assert_eq!(round2(2.675), 2.67);
        assert_eq!(round2(65.095), 65.09); // stored as 65.094999…, Python gives 65.09 too
        // Table 1, ReasoningNER 8B row: mean of seven 1-decimal F1s
        assert_eq!(average(&[76.3, 56.8, 71.0, 69.4, 78.7, 78.8, 75.8]), 72.4);
        assert_eq!(average(&[]), 0.0);
    }

    #[test]
    fn paired_bootstrap_separates_a_real_gain_from_noise() {
        let c = |m: usize| Counts { gold: 2, predicted: 2, matched: m };
        // b fixes one sentence in three that a gets wrong, and they agree on the rest
        let a: Vec<Counts> = (0..300).map(|i| c(if i % 3 == 0 { 0 } else { 2 })).collect();
        let b: Vec<Counts> = (0..300).map(|i| c(if i % 6 == 0 { 0 } else { 2 })).collect();
        let d = paired_bootstrap(&[(a.clone(), b.clone())], 1000, 7);
        assert_eq!(d.delta, 16.66, "F1 66.67 -> 83.33 (the paper's rounded figures)");
        assert!(d.ci95[0] > 0.0 && d.ci95[1] > d.delta, "{d:?}");
        assert!(d.p < 0.01, "{d:?}");
        assert_eq!(d, paired_bootstrap(&[(a.clone(), b.clone())], 1000, 7), "seeded");
        // the reverse comparison mirrors it
        let r = paired_bootstrap(&[(b.clone(), a.clone())], 1000, 7);
        assert_eq!(r.delta, -16.66);
        assert!(r.ci95[1] < 0.0 && r.p < 0.01);
        // identical systems: no difference, p = 1
        let same = paired_bootstrap(&[(a.clone(), a.clone())], 1000, 7);
        assert_eq!((same.delta, same.ci95, same.p), (0.0, [0.0, 0.0], 1.0));
        // b trades one right sentence for another: same F1, CI around 0, not significant
        let mut swap = a.clone();
        swap.swap(0, 1);
        let n = paired_bootstrap(&[(a.clone(), swap)], 1000, 7);
        assert_eq!(n.delta, 0.0);
        assert!(n.ci95[0] < 0.0 && n.ci95[1] > 0.0 && n.p > 0.5, "{n:?}");
        // over two sets the difference is of the average: (16.67 + 0) / 2
        let two = paired_bootstrap(&[(a.clone(), b), (a.clone(), a)], 1000, 7);
        assert_eq!(two.delta, 8.33, "average(83.33, 66.67) - average(66.67, 66.67)");
        assert!(two.ci95[0] > 0.0 && two.p < 0.01, "{two:?}");
    }

    #[test]
    fn bootstrap_ci_brackets_the_estimate_and_is_seeded() {
        let per: Vec<Counts> = (0..200)
            .map(|i| Counts { gold: 2, predicted: 2, matched: if i % 3 == 0 { 0 } else { 2 } })
            .collect();
        let a = bootstrap_ci(&per, 500, 3);
        let b = bootstrap_ci(&per, 500, 3);
        assert_eq!(a, b);
        let point = {
            let mut c = Counts::default();
            per.iter().for_each(|x| c.add(*x));
            c.f1() * 100.0
        };
        assert!(a[0] < point && point < a[1], "{a:?} vs {point}");
        assert!(a[1] - a[0] < 20.0);
    }
}
