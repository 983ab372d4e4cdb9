//! Fine-grained error analysis of a run from its `samples.jsonl`, with the benchmark's own
//! matching (`score::to_set`): P/R/F1 with bootstrap CIs broken down by label, entity length,
//! sentence length and gold-entity count (ExplainaBoard's buckets for NER), errors by kind from
//! character spans recovered in the sentence, and whether predictions are grounded.
use std::collections::BTreeMap;

use serde::Serialize;

use crate::data::Entity;
use crate::run::SampleRow;
use crate::score::{bootstrap_ci, normalize, round2, to_set, Counts, BOOTSTRAP_SAMPLES};

/// How a predicted or gold entity fared (spans compared as character ranges of the sentence).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// text and label match gold (the metric's true positive)
    Exact,
    /// the span overlaps a gold span of the same label, with other boundaries
    Boundary,
    /// the same span as a gold entity, another label
    Type,
    /// an overlapping span with other boundaries and another label
    BoundaryType,
    /// overlaps no gold entity
    Spurious,
    /// a gold entity no prediction overlaps
    Missed,
}

impl ErrorKind {
    pub const ALL: [ErrorKind; 6] = [ErrorKind::Exact, ErrorKind::Boundary, ErrorKind::Type, ErrorKind::BoundaryType, ErrorKind::Spurious, ErrorKind::Missed];
    pub fn name(self) -> &'static str {
        match self {
            ErrorKind::Exact => "exact",
            ErrorKind::Boundary => "boundary",
            ErrorKind::Type => "type",
            ErrorKind::BoundaryType => "boundary+type",
            ErrorKind::Spurious => "spurious",
            ErrorKind::Missed => "missed",
        }
    }
    /// The name as a CSS class suffix (`boundary+type` → `boundary_type`).
    pub fn css(self) -> String {
        self.name().replace('+', "_")
    }
}

/// The character range of `text` in `sentence` (case-insensitive, first occurrence on word
/// boundaries when possible), or the entity's own span when the source gave one.
pub fn locate(sentence: &str, e: &Entity) -> Option<(usize, usize)> {
    if let Some(s) = e.span {
        return Some(s);
    }
    let t = e.text.trim();
    if t.is_empty() {
        return None;
    }
    let lower_s: Vec<char> = sentence.chars().flat_map(char::to_lowercase).collect();
    let lower_t: Vec<char> = t.chars().flat_map(char::to_lowercase).collect();
    // lower-casing can change lengths (rare); then spans are not recoverable by index
    if lower_s.len() != sentence.chars().count() || lower_t.is_empty() || lower_t.len() > lower_s.len() {
        return None;
    }
    let word = |i: usize| i == 0 || i >= lower_s.len() || !lower_s[i].is_alphanumeric() || !lower_s[i - 1].is_alphanumeric();
    let mut first = None;
    for i in 0..=lower_s.len() - lower_t.len() {
        if lower_s[i..i + lower_t.len()] == lower_t[..] {
            if word(i) && word(i + lower_t.len()) {
                return Some((i, i + lower_t.len()));
            }
            first.get_or_insert((i, i + lower_t.len()));
        }
    }
    first
}

fn overlaps(a: (usize, usize), b: (usize, usize)) -> bool {
    a.0 < b.1 && b.0 < a.1
}

/// Each predicted entity's kind, then each missed gold entity (as `(entity, kind)`).
pub fn error_kinds(row: &SampleRow) -> Vec<(Entity, ErrorKind, bool)> {
    let gold_set = to_set(&row.gold);
    let gold_spans: Vec<(Option<(usize, usize)>, &Entity)> = row.gold.iter().map(|g| (locate(&row.sentence, g), g)).collect();
    let mut out = Vec::new();
    let mut covered = vec![false; row.gold.len()];
    let mut seen = std::collections::BTreeSet::new();
    for p in &row.prediction {
        let key = (normalize(&p.text), p.label.clone());
        if !seen.insert(key.clone()) {
            continue; // the metric counts a sentence's duplicates once
        }
        let pspan = locate(&row.sentence, p);
        let exact = gold_set.contains(&key);
        let mut kind = if exact { ErrorKind::Exact } else { ErrorKind::Spurious };
        for (gi, (gs, g)) in gold_spans.iter().enumerate() {
            let same_text = normalize(&g.text) == key.0;
            let hit = match (pspan, gs) {
                (Some(a), Some(b)) => overlaps(a, *b),
                _ => same_text,
            };
            if !hit {
                continue;
            }
            covered[gi] = true;
            if exact {
                continue;
            }
            let k = match (same_text, g.label == p.label) {
                (true, false) => ErrorKind::Type,
                (false, true) => ErrorKind::Boundary,
                (false, false) => ErrorKind::BoundaryType,
                (true, true) => ErrorKind::Exact,
            };
            kind = kind.min(k);
        }
        out.push((p.clone(), kind, true));
    }
    for (gi, g) in row.gold.iter().enumerate() {
        if !covered[gi] {
            out.push((g.clone(), ErrorKind::Missed, false));
        }
    }
    out
}

/// Whether a predicted entity occurs in the sentence and in the rationale (normalised text).
pub fn grounded(row: &SampleRow, e: &Entity) -> (bool, bool) {
    let t = normalize(&e.text);
    if t.is_empty() {
        return (false, false);
    }
    let has = |s: &str| format!(" {} ", normalize(s)).contains(&format!(" {t} "));
    (has(&row.sentence), row.think.as_deref().is_some_and(has))
}

/// One bucket of a breakdown.
#[derive(Debug, Clone, Serialize)]
pub struct Bucket {
    pub name: String,
    pub gold: usize,
    pub predicted: usize,
    pub matched: usize,
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    pub ci95: [f64; 2],
    pub sentences: usize,
}

fn bucket(name: String, per_sentence: &[Counts], seed: u64) -> Bucket {
    let mut c = Counts::default();
    for x in per_sentence {
        c.add(*x);
    }
    let (p, r, f) = c.prf();
    Bucket {
        name,
        gold: c.gold,
        predicted: c.predicted,
        matched: c.matched,
        precision: round2(p * 100.0),
        recall: round2(r * 100.0),
        f1: round2(f * 100.0),
        ci95: bootstrap_ci(per_sentence, BOOTSTRAP_SAMPLES, seed),
        sentences: per_sentence.len(),
    }
}

/// Counts of one sentence restricted to the entities `keep` accepts (same set semantics as the
/// metric).
fn counts_where(row: &SampleRow, keep: &dyn Fn(&Entity) -> bool) -> Counts {
    let p: Vec<Entity> = row.prediction.iter().filter(|e| keep(e)).cloned().collect();
    let g: Vec<Entity> = row.gold.iter().filter(|e| keep(e)).cloned().collect();
    let (ps, gs) = (to_set(&p), to_set(&g));
    Counts { gold: gs.len(), predicted: ps.len(), matched: ps.intersection(&gs).count() }
}

fn words(s: &str) -> usize {
    s.split_whitespace().count()
}

fn len_bucket(n: usize) -> &'static str {
    match n {
        0 | 1 => "1",
        2 => "2",
        3 => "3",
        _ => "4+",
    }
}

fn sentence_bucket(n: usize) -> &'static str {
    match n {
        0..=10 => "≤10",
        11..=20 => "11–20",
        21..=40 => "21–40",
        _ => ">40",
    }
}

fn count_bucket(n: usize) -> &'static str {
    match n {
        0 => "0",
        1 => "1",
        2 => "2",
        3 => "3",
        _ => "4+",
    }
}

/// Every breakdown of one dataset of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Breakdowns {
    pub dataset: String,
    pub overall: Bucket,
    pub by_label: Vec<Bucket>,
    pub by_entity_length: Vec<Bucket>,
    pub by_sentence_length: Vec<Bucket>,
    pub by_gold_count: Vec<Bucket>,
    pub errors: BTreeMap<String, usize>,
    pub parse_failures: usize,
    /// predicted entities found in the sentence / in the rationale, of all predicted
    pub grounded_sentence: usize,
    pub grounded_rationale: usize,
    pub predicted_entities: usize,
}

/// Breakdowns of `rows` (one dataset).
pub fn breakdowns(dataset: &str, rows: &[&SampleRow], seed: u64) -> Breakdowns {
    let all: Vec<Counts> = rows.iter().map(|r| r.counts).collect();
    let mut labels: Vec<String> = rows.iter().flat_map(|r| r.schema.iter().cloned()).collect();
    labels.sort();
    labels.dedup();
    let by_label = labels
        .iter()
        .map(|l| bucket(l.clone(), &rows.iter().map(|r| counts_where(r, &|e: &Entity| &e.label == l)).collect::<Vec<_>>(), seed))
        .filter(|b| b.gold + b.predicted > 0)
        .collect();
    let by_entity_length = ["1", "2", "3", "4+"]
        .iter()
        .map(|b| bucket(format!("{b} words"), &rows.iter().map(|r| counts_where(r, &|e: &Entity| len_bucket(words(&e.text)) == *b)).collect::<Vec<_>>(), seed))
        .collect();
    let group = |f: &dyn Fn(&SampleRow) -> &'static str, names: &[&str], unit: &str| -> Vec<Bucket> {
        names
            .iter()
            .map(|b| bucket(format!("{b} {unit}"), &rows.iter().filter(|r| f(r) == *b).map(|r| r.counts).collect::<Vec<_>>(), seed))
            .filter(|b| b.sentences > 0)
            .collect()
    };
    let by_sentence_length = group(&|r| sentence_bucket(words(&r.sentence)), &["≤10", "11–20", "21–40", ">40"], "words");
    let by_gold_count = group(&|r| count_bucket(to_set(&r.gold).len()), &["0", "1", "2", "3", "4+"], "gold");
    let mut errors: BTreeMap<String, usize> = ErrorKind::ALL.iter().map(|k| (k.name().to_string(), 0)).collect();
    let (mut gs, mut gr, mut np) = (0, 0, 0);
    for r in rows {
        for (e, k, predicted) in error_kinds(r) {
            *errors.entry(k.name().to_string()).or_default() += 1;
            if predicted {
                np += 1;
                let (s, t) = grounded(r, &e);
                gs += s as usize;
                gr += t as usize;
            }
        }
    }
    Breakdowns {
        dataset: dataset.to_string(),
        overall: bucket("all".into(), &all, seed),
        by_label,
        by_entity_length,
        by_sentence_length,
        by_gold_count,
        errors,
        parse_failures: rows.iter().filter(|r| r.parse_error.is_some_and(|e| e.is_failure())).count(),
        grounded_sentence: gs,
        grounded_rationale: gr,
        predicted_entities: np,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(sentence: &str, gold: Vec<Entity>, pred: Vec<Entity>) -> SampleRow {
        let counts = crate::score::sentence(&pred, &gold).total;
        SampleRow {
            id: "d/test/0".into(),
            dataset: "d".into(),
            split: "test".into(),
            index: 0,
            sentence: sentence.into(),
            schema: vec!["organization".into(), "person".into()],
            gold,
            output: String::new(),
            reasoning: None,
            think: Some("Steve Jobs is a person".into()),
            prediction: pred,
            parse_error: None,
            counts,
            prompt_tokens: 0,
            gen_tokens: 0,
            finish: crate::engine::Finish::Stop,
            latency_ms: 0.0,
        }
    }

    #[test]
    fn every_error_kind() {
        let r = row(
            "Steve Jobs met Bill Gates at Apple in Cupertino",
            vec![Entity::new("Steve Jobs", "person"), Entity::new("Bill Gates", "person"), Entity::new("Apple", "organization"), Entity::new("Cupertino", "location")],
            vec![
                Entity::new("Steve Jobs", "person"),    // exact
                Entity::new("Gates", "person"),         // boundary
                Entity::new("Apple", "person"),         // type
                Entity::new("Apple in", "location"),    // boundary+type (overlaps Apple)
                Entity::new("met", "person"),           // spurious
            ],
        );
        let kinds: Vec<(String, &str)> = error_kinds(&r).into_iter().map(|(e, k, _)| (e.text, k.name())).collect();
        assert_eq!(
            kinds,
            vec![
                ("Steve Jobs".into(), "exact"),
                ("Gates".into(), "boundary"),
                ("Apple".into(), "type"),
                ("Apple in".into(), "boundary+type"),
                ("met".into(), "spurious"),
                ("Cupertino".into(), "missed"),
            ]
        );
        assert_eq!(grounded(&r, &Entity::new("Steve Jobs", "person")), (true, true));
        assert_eq!(grounded(&r, &Entity::new("Apple", "person")), (true, false));
    }

    #[test]
    fn breakdowns_add_up_to_the_metric() {
        let a = row("Steve Jobs founded Apple", vec![Entity::new("Steve Jobs", "person"), Entity::new("Apple", "organization")], vec![Entity::new("Steve Jobs", "person")]);
        let b = row("nothing here", vec![], vec![Entity::new("here", "person")]);
        let bd = breakdowns("d", &[&a, &b], 1);
        assert_eq!((bd.overall.gold, bd.overall.predicted, bd.overall.matched), (2, 2, 1));
        let label_sum: usize = bd.by_label.iter().map(|b| b.gold).sum();
        assert_eq!(label_sum, 2);
        let len_sum: usize = bd.by_entity_length.iter().map(|b| b.predicted).sum();
        assert_eq!(len_sum, 2);
        assert_eq!(bd.by_gold_count.iter().map(|b| b.sentences).sum::<usize>(), 2);
        assert_eq!(bd.errors["exact"], 1);
        assert_eq!(bd.errors["missed"], 1);
        assert_eq!(bd.errors["spurious"], 1);
        assert_eq!(locate("The U.S. and us", &Entity::new("us", "x")), Some((13, 15)));
    }
}
