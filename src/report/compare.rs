//! Two runs on the same sentences, side by side: F1 of each per dataset, how many raw outputs are
//! byte-identical, and which sentences one run got right and the other did not.
use std::collections::BTreeMap;
use std::path::Path;

use crate::run::{Manifest, SampleRow, Scores};
use crate::score::{self, Counts, PairedDiff, SentenceCounts};
use crate::{util, Error, Result};

/// Per dataset: sentences in both runs, identical outputs, F1 of each on those sentences.
#[derive(Debug, Clone, PartialEq)]
pub struct DatasetDiff {
    pub shared: usize,
    pub identical: usize,
    pub f1_a: f64,
    pub f1_b: f64,
    /// sentences where b matches more gold mentions than a / fewer
    pub better: usize,
    pub worse: usize,
    /// paired bootstrap of F1 b − a on the shared sentences
    pub diff: PairedDiff,
}

/// The comparison of run `b` against run `a`.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub datasets: BTreeMap<String, DatasetDiff>,
    /// paired bootstrap of the average F1 over every dataset both runs have (b − a)
    pub overall: PairedDiff,
}

fn rows(dir: &Path) -> Result<BTreeMap<String, SampleRow>> {
    Ok(crate::run::read_samples(dir)?.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// One dataset's sentences that both runs have, aligned: each run's counts, and how many raw
/// outputs are identical / where b matched more / fewer gold mentions.
#[derive(Debug, Clone, Default)]
pub struct Aligned {
    pub a: Vec<SentenceCounts>,
    pub b: Vec<SentenceCounts>,
    pub identical: usize,
    pub better: usize,
    pub worse: usize,
}

impl Aligned {
    /// The overall counts of each run, for [`score::paired_bootstrap`].
    pub fn totals(&self) -> (Vec<Counts>, Vec<Counts>) {
        (self.a.iter().map(|c| c.total).collect(), self.b.iter().map(|c| c.total).collect())
    }
}

/// The two run folders' sentences, re-scored from `samples.jsonl` and aligned by sentence id, per
/// dataset (sentences only one run has are left out).
pub fn align(a: &Path, b: &Path) -> Result<BTreeMap<String, Aligned>> {
    for d in [a, b] {
        if !d.join("samples.jsonl").exists() {
            return Err(Error::Run { dir: d.into(), msg: "no samples.jsonl: not a run folder".into() });
        }
    }
    let (ra, rb) = (rows(a)?, rows(b)?);
    let mut per: BTreeMap<String, Aligned> = BTreeMap::new();
    for (id, x) in &ra {
        let Some(y) = rb.get(id) else { continue };
        let e = per.entry(x.dataset.clone()).or_default();
        let (cx, cy) = (score::sentence(&x.prediction, &x.gold), score::sentence(&y.prediction, &y.gold));
        e.identical += usize::from(x.output == y.output);
        e.better += usize::from(cy.total.matched > cx.total.matched);
        e.worse += usize::from(cy.total.matched < cx.total.matched);
        e.a.push(cx);
        e.b.push(cy);
    }
    Ok(per)
}

/// The run's seed (its manifest's; 42 without one), which seeds its bootstrap.
pub fn run_seed(dir: &Path) -> u64 {
    util::read_json::<Manifest>(&dir.join("manifest.json")).map(|m| m.config.seed).unwrap_or(42)
}

/// Both runs' aligned folders, and a dataset's counts of each when both scored the same sentences
/// of it (the same sample).
fn aligned_runs(a: &super::Run, b: &super::Run) -> Result<impl Fn(&str) -> Option<(Vec<Counts>, Vec<Counts>)>> {
    let per = align(a.dir(), b.dir())?;
    let (da, db) = (a.scores.datasets.clone(), b.scores.datasets.clone());
    Ok(move |set: &str| {
        let (al, sa, sb) = (per.get(set)?, da.get(set)?, db.get(set)?);
        (al.a.len() == sa.sentences && al.a.len() == sb.sentences).then(|| al.totals())
    })
}

/// Paired bootstrap of `b` − `a` on the seven zero-shot sets, per set (table order) and on their
/// average; `None` unless both runs scored the same sentences of every set (the same sample).
/// Seeded by `b`'s seed.
pub fn zero_shot_diff(a: &super::Run, b: &super::Run) -> Result<Option<(Vec<PairedDiff>, PairedDiff)>> {
    let counts = aligned_runs(a, b)?;
    let Some(sets) = super::ZERO_SHOT_COLUMNS.iter().map(|(name, _)| counts(name)).collect::<Option<Vec<_>>>() else { return Ok(None) };
    let seed = b.scores.seed;
    let each = sets.iter().map(|s| score::paired_bootstrap(std::slice::from_ref(s), score::BOOTSTRAP_SAMPLES, seed)).collect();
    Ok(Some((each, score::paired_bootstrap(&sets, score::BOOTSTRAP_SAMPLES, seed))))
}

/// Paired bootstrap of `b` − `a` in F1 on one dataset; `None` unless both runs scored the same
/// sentences of it. Seeded by `b`'s seed.
pub fn dataset_diff(a: &super::Run, b: &super::Run, set: &str) -> Result<Option<PairedDiff>> {
    Ok(aligned_runs(a, b)?(set).map(|s| score::paired_bootstrap(&[s], score::BOOTSTRAP_SAMPLES, b.scores.seed)))
}

/// Compare two run folders on the sentences both have.
pub fn compare(a: &Path, b: &Path) -> Result<Comparison> {
    let per = align(a, b)?;
    // b's seed, as the tables' paired differences (the seed only draws the bootstrap resamples)
    let seed = run_seed(b);
    let overall = score::paired_bootstrap(&per.values().map(Aligned::totals).collect::<Vec<_>>(), score::BOOTSTRAP_SAMPLES, seed);
    let datasets = per
        .into_iter()
        .map(|(name, al)| {
            let (sa, sb) = (score::dataset(&al.a, 0, seed), score::dataset(&al.b, 0, seed));
            let diff = score::paired_bootstrap(&[al.totals()], score::BOOTSTRAP_SAMPLES, seed);
            (name, DatasetDiff { shared: al.a.len(), identical: al.identical, f1_a: sa.f1, f1_b: sb.f1, better: al.better, worse: al.worse, diff })
        })
        .collect();
    let id = |d: &Path| {
        util::read_json::<Scores>(&d.join("scores.json")).map(|s| s.run_id).unwrap_or_else(|_| d.display().to_string())
    };
    Ok(Comparison { a: id(a), b: id(b), datasets, overall })
}

impl Comparison {
    /// A markdown report (the command that made it is given by the caller).
    pub fn markdown(&self, command: &str) -> String {
        let mut md = format!(
            "# `{}` vs `{}`\n\nMade by `{command}` from the two runs' `samples.jsonl` (re-parsed and re-scored, no model).\n\n\
             F1 of each run on the sentences both have; *identical* = byte-identical raw outputs; *b better / worse* = \
             sentences where run b matched more / fewer gold mentions than run a; *b − a* = the difference in F1 with its \
             paired-bootstrap 95% CI and two-sided p ({} replicates resampling the shared sentences, the same draws for both \
             runs; the *all* row: the difference in the average F1 over the datasets).\n\n",
            self.a,
            self.b,
            score::BOOTSTRAP_SAMPLES
        );
        let headers: Vec<String> = ["dataset", "sentences", "identical outputs", "F1 a", "F1 b", "b − a [95% CI], p", "b better", "b worse"].iter().map(|s| s.to_string()).collect();
        let mut rows = Vec::new();
        let (mut n, mut same) = (0, 0);
        for (name, d) in &self.datasets {
            n += d.shared;
            same += d.identical;
            rows.push(vec![
                name.clone(),
                d.shared.to_string(),
                format!("{} ({:.1}%)", d.identical, 100.0 * d.identical as f64 / d.shared.max(1) as f64),
                format!("{:.2}", d.f1_a),
                format!("{:.2}", d.f1_b),
                d.diff.cell(),
                d.better.to_string(),
                d.worse.to_string(),
            ]);
        }
        let avg = |f: fn(&DatasetDiff) -> f64| format!("{:.2} (avg)", score::average(&self.datasets.values().map(f).collect::<Vec<_>>()));
        rows.push(vec![
            "all".into(),
            n.to_string(),
            format!("{same} ({:.1}%)", 100.0 * same as f64 / n.max(1) as f64),
            avg(|d| d.f1_a),
            avg(|d| d.f1_b),
            self.overall.cell(),
            self.datasets.values().map(|d| d.better).sum::<usize>().to_string(),
            self.datasets.values().map(|d| d.worse).sum::<usize>().to_string(),
        ]);
        md.push_str(&super::table::render_markdown(&headers, &rows));
        md
    }
}
