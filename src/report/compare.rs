//! Two runs on the same sentences, side by side: F1 of each per dataset, how many raw outputs are
//! byte-identical, and which sentences one run got right and the other did not.
use std::collections::BTreeMap;
use std::path::Path;

use crate::run::{Manifest, SampleRow, Scores};
use crate::score::{self, SentenceCounts};
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
}

/// The comparison of run `b` against run `a`.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub a: String,
    pub b: String,
    pub datasets: BTreeMap<String, DatasetDiff>,
}

fn rows(dir: &Path) -> Result<BTreeMap<String, SampleRow>> {
    Ok(crate::run::read_samples(dir)?.into_iter().map(|r| (r.id.clone(), r)).collect())
}

/// Compare two run folders on the sentences both have.
pub fn compare(a: &Path, b: &Path) -> Result<Comparison> {
    for d in [a, b] {
        if !d.join("samples.jsonl").exists() {
            return Err(Error::Run { dir: d.into(), msg: "no samples.jsonl: not a run folder".into() });
        }
    }
    let (ra, rb) = (rows(a)?, rows(b)?);
    let seed = util::read_json::<Manifest>(&a.join("manifest.json")).map(|m| m.config.seed).unwrap_or(42);
    let mut per: BTreeMap<String, (Vec<SentenceCounts>, Vec<SentenceCounts>, usize, usize, usize)> = BTreeMap::new();
    for (id, x) in &ra {
        let Some(y) = rb.get(id) else { continue };
        let e = per.entry(x.dataset.clone()).or_default();
        let (cx, cy) = (score::sentence(&x.prediction, &x.gold), score::sentence(&y.prediction, &y.gold));
        e.2 += usize::from(x.output == y.output);
        e.3 += usize::from(cy.total.matched > cx.total.matched);
        e.4 += usize::from(cy.total.matched < cx.total.matched);
        e.0.push(cx);
        e.1.push(cy);
    }
    let datasets = per
        .into_iter()
        .map(|(name, (ca, cb, identical, better, worse))| {
            let (sa, sb) = (score::dataset(&ca, 0, seed), score::dataset(&cb, 0, seed));
            (name, DatasetDiff { shared: ca.len(), identical, f1_a: sa.f1, f1_b: sb.f1, better, worse })
        })
        .collect();
    let id = |d: &Path| {
        util::read_json::<Scores>(&d.join("scores.json")).map(|s| s.run_id).unwrap_or_else(|_| d.display().to_string())
    };
    Ok(Comparison { a: id(a), b: id(b), datasets })
}

impl Comparison {
    /// A markdown report (the command that made it is given by the caller).
    pub fn markdown(&self, command: &str) -> String {
        let mut md = format!(
            "# `{}` vs `{}`\n\nMade by `{command}` from the two runs' `samples.jsonl` (re-parsed and re-scored, no model).\n\n\
             F1 of each run on the sentences both have; *identical* = byte-identical raw outputs; *b better / worse* = \
             sentences where run b matched more / fewer gold mentions than run a.\n\n",
            self.a, self.b
        );
        let headers: Vec<String> = ["dataset", "sentences", "identical outputs", "F1 a", "F1 b", "b better", "b worse"].iter().map(|s| s.to_string()).collect();
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
                d.better.to_string(),
                d.worse.to_string(),
            ]);
        }
        rows.push(vec!["all".into(), n.to_string(), format!("{same} ({:.1}%)", 100.0 * same as f64 / n.max(1) as f64), String::new(), String::new(), String::new(), String::new()]);
        md.push_str(&super::table::render_markdown(&headers, &rows));
        md
    }
}
