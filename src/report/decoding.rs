//! What constraining the answer changes: `reports/decoding.{md,csv}` and
//! `reports/plots/decoding-<sample>.{svg,png}`. Runs of one model on one benchmark sample (mode,
//! split, limit, seed) under more than one `--decoding`, and alike in every other setting that
//! changes outputs (model file, prompt, sampling, engine: [`crate::run::EvalConfig::comparison_key`]),
//! are compared on the datasets every one of them has complete, from their `scores.json` and
//! `samples.jsonl`: F1, parse failures, how many predicted entities sit under one of the
//! sentence's schema labels, answer length, the token cap.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use polars::prelude::*;

use super::{Run, ZERO_SHOT_COLUMNS};
use crate::engine::Finish;
use crate::run::SampleRow;
use crate::score::{average, round2, to_set};
use crate::{Error, Result};

/// One run's figures over the datasets its group compares.
#[derive(Debug, Clone, PartialEq)]
pub struct ModeRow {
    pub model: String,
    pub sample: String,
    /// the sample as a file-name tag (`full`, `n50-s42`)
    pub tag: String,
    pub decoding: String,
    /// the compared datasets' column headers (Movie, …)
    pub sets: Vec<&'static str>,
    /// mean of the rounded F1s over the compared datasets
    pub f1: f64,
    pub parse_failures: usize,
    pub predicted: usize,
    /// predicted entities whose label is one of the sentence's schema labels
    pub under_schema: usize,
    pub matched: usize,
    pub gold: usize,
    pub sentences: usize,
    pub gen_tokens: usize,
    pub capped: usize,
    /// over the run's whole recorded time (every dataset it ran, not only the compared ones)
    pub sentences_per_s: Option<f64>,
    pub results: String,
}

impl ModeRow {
    /// micro precision and recall (%) over the compared datasets, as the scorer computes them
    fn precision_recall(&self) -> (f64, f64) {
        let (p, r, _) = crate::score::Counts { gold: self.gold, predicted: self.predicted, matched: self.matched }.prf();
        (100.0 * p, 100.0 * r)
    }
}

/// The run's sample ([`Run::sample_text`]), with the split and the prompt mode where they are not
/// the test split and direct answers.
fn sample_text(r: &Run) -> String {
    let s = &r.scores;
    let mut t = r.sample_text();
    if s.split != "test" {
        t.push_str(&format!(", {}", s.split));
    }
    if s.mode == crate::run::scores::Mode::Cot {
        t.push_str(", cot");
    }
    t
}

/// `free` for runs made before the option.
fn decoding_of(r: &Run) -> &str {
    if r.scores.decoding.is_empty() { "free" } else { &r.scores.decoding }
}

/// A group: model, sample text, limit, seed, comparison key.
type GroupKey = (String, String, Option<usize>, u64, Option<String>);

/// Runs grouped by (model, sample, settings but the decoding), groups with two or more decodings
/// only, each group's runs ordered free, json, schema (then any other); also the runs left out
/// because another run of the same decoding in their group is further on (a copied run folder).
fn groups(runs: &[Run]) -> (BTreeMap<GroupKey, Vec<&Run>>, Vec<&Run>) {
    let mut g: BTreeMap<_, Vec<&Run>> = BTreeMap::new();
    for r in runs {
        let s = &r.scores;
        // the seed only draws a sample: full runs of any seed are one sample
        g.entry((s.model.clone(), sample_text(r), s.limit, s.limit.map_or(0, |_| s.seed), r.comparison.clone())).or_default().push(r);
    }
    let rank = |r: &Run| ["free", "json", "schema"].iter().position(|x| *x == decoding_of(r)).unwrap_or(3);
    let mut dropped = Vec::new();
    g.retain(|_, v| {
        v.sort_by_key(|r| (rank(r), decoding_of(r).to_string(), std::cmp::Reverse(r.scores.usage.sentences), r.id()));
        let mut kept: Vec<&Run> = Vec::new();
        for r in v.drain(..) {
            if kept.last().is_some_and(|k| decoding_of(k) == decoding_of(r)) {
                dropped.push(r);
            } else {
                kept.push(r);
            }
        }
        *v = kept;
        v.len() > 1
    });
    (g, dropped)
}

/// The rows of every group (runs whose samples cannot be read are an error naming the file), and
/// the runs left out as duplicates of a decoding.
pub fn rows(runs: &[Run]) -> Result<(Vec<ModeRow>, Vec<String>)> {
    let mut out = Vec::new();
    let (groups, dropped) = groups(runs);
    // one model and sample compared under two sets of settings: each block names its settings
    let mut blocks: BTreeMap<(&str, &str), usize> = BTreeMap::new();
    for (model, sample, ..) in groups.keys() {
        *blocks.entry((model, sample)).or_default() += 1;
    }
    for ((model, sample, limit, seed, key), group) in &groups {
        let (limit, seed) = (*limit, *seed);
        let settings = match key {
            Some(k) if blocks[&(model.as_str(), sample.as_str())] > 1 => Some(k.as_str()),
            _ => None,
        };
        // a run with no dataset complete yet has nothing to compare: it waits, the others are compared
        let group: Vec<_> = group.iter().filter(|r| r.zero_shot().iter().any(|d| d.is_some_and(|d| d.complete()))).collect();
        if group.len() < 2 {
            continue;
        }
        let sets: Vec<usize> = (0..ZERO_SHOT_COLUMNS.len()).filter(|&i| group.iter().all(|r| r.zero_shot()[i].is_some_and(|d| d.complete()))).collect();
        if sets.is_empty() {
            continue;
        }
        for r in group {
            let names: Vec<&str> = sets.iter().map(|&i| ZERO_SHOT_COLUMNS[i].0).collect();
            let ds: Vec<_> = sets.iter().filter_map(|&i| r.zero_shot()[i]).collect();
            let dir = r.dir();
            let samples: Vec<SampleRow> = crate::run::read_samples(dir)?;
            let rows: Vec<&SampleRow> = samples.iter().filter(|s| names.contains(&s.dataset.as_str())).collect();
            let sentences: usize = ds.iter().map(|d| d.sentences).sum();
            if rows.len() != sentences {
                return Err(Error::Report(format!("{}: {} sentences of the compared datasets, its scores.json counts {sentences} (rerun rner rescore)", dir.join("samples.jsonl").display(), rows.len())));
            }
            let u = &r.scores.usage;
            out.push(ModeRow {
                model: model.clone(),
                sample: settings.map_or_else(|| sample.clone(), |k| format!("{sample}, settings {k}")),
                tag: super::training::sample_tag(limit, seed, &r.scores.split)
                    + if r.scores.mode == crate::run::scores::Mode::Cot { "-cot" } else { "" }
                    + &settings.map(|k| format!("-{k}")).unwrap_or_default(),
                decoding: decoding_of(r).to_string(),
                sets: sets.iter().map(|&i| ZERO_SHOT_COLUMNS[i].1).collect(),
                f1: average(&ds.iter().map(|d| round2(d.f1)).collect::<Vec<_>>()),
                parse_failures: ds.iter().map(|d| d.parse_failures).sum(),
                predicted: ds.iter().map(|d| d.predicted).sum(),
                // over the distinct (text, label) pairs the metric counts
                under_schema: rows.iter().map(|s| to_set(&s.prediction).iter().filter(|(_, l)| s.schema.contains(l)).count()).sum(),
                matched: ds.iter().map(|d| d.matched).sum(),
                gold: ds.iter().map(|d| d.gold).sum(),
                sentences,
                gen_tokens: rows.iter().map(|s| s.gen_tokens).sum(),
                capped: rows.iter().filter(|s| s.finish == Finish::Length).count(),
                sentences_per_s: (u.seconds > 0.0).then(|| u.sentences as f64 / u.seconds),
                results: r.dir().display().to_string(),
            });
        }
    }
    Ok((out, dropped.iter().map(|r| r.id()).collect()))
}

fn perr(e: PolarsError) -> Error {
    Error::Report(format!("decoding table: {e}"))
}

/// `reports/decoding.{md,csv}` and one plot per benchmark sample; None when no model has runs
/// under two decodings.
pub fn write(runs: &[Run], reports_dir: &Path) -> Result<Option<PathBuf>> {
    let (rows, dropped) = rows(runs)?;
    if rows.is_empty() {
        return Ok(None);
    }
    let col = |name: &str, v: Vec<String>| Column::new(name.into(), v);
    let num = |name: &str, v: Vec<f64>| Column::new(name.into(), v);
    let int = |name: &str, v: Vec<u64>| Column::new(name.into(), v);
    let mut df = DataFrame::new(vec![
        col("model", rows.iter().map(|r| r.model.clone()).collect()),
        col("sample", rows.iter().map(|r| r.sample.clone()).collect()),
        col("decoding", rows.iter().map(|r| r.decoding.clone()).collect()),
        col("datasets", rows.iter().map(|r| r.sets.join(" ")).collect()),
        num("f1", rows.iter().map(|r| r.f1).collect()),
        int("parse_failures", rows.iter().map(|r| r.parse_failures as u64).collect()),
        int("predicted", rows.iter().map(|r| r.predicted as u64).collect()),
        int("under_schema_label", rows.iter().map(|r| r.under_schema as u64).collect()),
        int("matched", rows.iter().map(|r| r.matched as u64).collect()),
        int("gold", rows.iter().map(|r| r.gold as u64).collect()),
        num("precision", rows.iter().map(|r| round2(r.precision_recall().0)).collect()),
        num("recall", rows.iter().map(|r| round2(r.precision_recall().1)).collect()),
        int("sentences", rows.iter().map(|r| r.sentences as u64).collect()),
        int("gen_tokens", rows.iter().map(|r| r.gen_tokens as u64).collect()),
        int("capped", rows.iter().map(|r| r.capped as u64).collect()),
        Column::new("sentences_per_s".into(), rows.iter().map(|r| r.sentences_per_s.map(|x| (x * 1000.0).round() / 1000.0)).collect::<Vec<_>>()),
        col("results", rows.iter().map(|r| r.results.clone()).collect()),
    ])
    .map_err(perr)?;
    crate::util::write_atomic(&reports_dir.join("decoding.csv"), &super::table::to_csv(&mut df)?)?;

    let headers: Vec<String> = [
        "Model", "Sample", "Decoding", "Datasets compared", "Avg F1", "Parse fail.", "Predicted", "Under a schema label", "Matched / gold", "P", "R",
        "Tokens per answer", "Hit the cap", "Sentences/s", "Results",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.model.clone(),
                r.sample.clone(),
                format!("`{}`", r.decoding),
                format!("{} ({})", r.sets.len(), r.sets.join(", ")),
                format!("{:.2}", r.f1),
                r.parse_failures.to_string(),
                r.predicted.to_string(),
                format!("{} ({:.0}%)", r.under_schema, 100.0 * r.under_schema as f64 / r.predicted.max(1) as f64),
                format!("{} / {}", r.matched, r.gold),
                format!("{:.1}", r.precision_recall().0),
                format!("{:.1}", r.precision_recall().1),
                format!("{:.1}", r.gen_tokens as f64 / r.sentences.max(1) as f64),
                format!("{} of {}", r.capped, r.sentences),
                r.sentences_per_s.map(|x| format!("{x:.2}")).unwrap_or_else(|| "—".into()),
                super::table::code_span(&r.results),
            ]
        })
        .collect();
    let mut md = String::from(
        "# What constraining the answer changes (`--decoding free|json|schema`)\n\n\
         Generated by `rner report` from `results/*/scores.json` and `samples.jsonl` (the same table is in `decoding.csv`); regenerate it rather than editing it.\n\n\
         - One block per model and benchmark sample that has runs under more than one decoding and alike in every other setting that changes answers (model file, prompt, sampling, engine; where one model and sample has two such blocks, **Sample** names each one's settings hash); `free` is the paper's protocol. Each block compares only the datasets complete in every one of its runs (**Datasets compared**), so a partial run is compared on what it has finished.\n\
         - **Avg F1**: mean of the compared datasets' rounded F1s (equal to `zero-shot.md`'s Avg when all seven are compared). **Parse fail.**: answers with no parsable JSON (they predict nothing).\n\
         - **Under a schema label**: predicted entities whose label is one of the sentence's schema labels (the share of all predicted). **P / R**: micro precision and recall over the compared datasets.\n\
         - **Tokens per answer**: generated tokens per sentence; **Hit the cap**: answers that ran to the token cap (`schema`/`json` answers cut there are closed after their last complete entry).\n\
         - **Sentences/s**: over each run's whole recorded time (all its sessions and datasets, build pauses included), so a rough cost, not a benchmark (`perf.md` has the measured one).\n\n",
    );
    md.push_str(&super::table::render_markdown(&headers, &cells));
    md.push('\n');

    // one plot per sample: groups = models, series = decodings
    let mut by_sample: BTreeMap<(&str, &str), Vec<&ModeRow>> = BTreeMap::new();
    for r in &rows {
        by_sample.entry((&r.tag, &r.sample)).or_default().push(r);
    }
    let mut plots = Vec::new();
    for ((tag, sample), rs) in by_sample {
        let mut models: Vec<String> = rs.iter().map(|r| r.model.clone()).collect();
        models.dedup();
        let series: Vec<super::plot::BarSeries> = ["free", "json", "schema"]
            .iter()
            .map(|d| super::plot::BarSeries {
                name: d.to_string(),
                values: models.iter().map(|m| rs.iter().find(|r| &r.model == m && r.decoding == *d).map(|r| (r.f1, None))).collect(),
                paper: false,
            })
            .filter(|s| s.values.iter().any(Option::is_some))
            .collect();
        let stem = format!("decoding-{tag}");
        super::plot::grouped(&format!("Avg F1 by decoding ({sample}; compared datasets only)"), &models, &series, "Avg F1 (%)", &reports_dir.join("plots"), &stem)?;
        plots.push(format!("`plots/{stem}.png`"));
    }
    md.push_str(&format!("\nPlots (Avg F1 over each block's compared datasets, one bar per decoding): {}.\n", plots.join(", ")));
    if !dropped.is_empty() {
        md.push_str(&format!(
            "\nLeft out (another run of the same model, sample, settings and decoding has more sentences): {}.\n",
            dropped.iter().map(|d| format!("`{d}`")).collect::<Vec<_>>().join(", ")
        ));
    }
    let p = reports_dir.join("decoding.md");
    crate::util::write_atomic(&p, md.as_bytes())?;
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_committed_smollm2_sample_runs_compare_under_three_decodings() {
        // real runs: SmolLM2-135M on 50 sentences per dataset under free, json and schema
        let runs = super::super::load_runs(&Path::new(env!("CARGO_MANIFEST_DIR")).join("results")).unwrap();
        let (rows, _) = rows(&runs).unwrap();
        let group: Vec<&ModeRow> = rows.iter().filter(|r| r.model == "smollm2-135m-instruct" && r.tag == "n50-s42").collect();
        assert_eq!(group.iter().map(|r| r.decoding.as_str()).collect::<Vec<_>>(), ["free", "json", "schema"]);
        for r in &group {
            let run = runs.iter().find(|x| x.dir().display().to_string() == r.results).unwrap();
            assert_eq!(r.sets.len(), 7, "{}: every dataset of the sample is complete", r.results);
            assert_eq!(Some(r.f1), run.average(), "{}: the average over all seven is the table's", r.results);
            assert_eq!(r.sentences, 350);
            let ds: Vec<_> = run.zero_shot().into_iter().flatten().collect();
            assert_eq!(r.parse_failures, ds.iter().map(|d| d.parse_failures).sum::<usize>());
            assert_eq!(r.capped, ds.iter().map(|d| d.truncated).sum::<usize>(), "{}: capped answers counted from the samples", r.results);
            assert!(r.under_schema <= r.predicted && r.gen_tokens > 0);
        }
        // a second run of one decoding that has done less is left out and named
        let mut more = runs.clone();
        let mut dup = runs.iter().find(|r| r.scores.model == "smollm2-135m-instruct" && r.scores.limit == Some(50) && r.scores.decoding == "json").unwrap().clone();
        dup.scores.run_id = "dup".into();
        dup.scores.usage.sentences = 0;
        more.push(dup);
        let (again, dropped) = super::rows(&more).unwrap();
        assert_eq!(dropped, ["dup"]);
        assert_eq!(again, rows);
        // runs alike but for the decoding share one key; one made under other settings (another
        // prompt, model file or sampling) is a block of its own, named by its settings
        assert!(group.iter().all(|r| runs.iter().any(|x| x.dir().display().to_string() == r.results && x.comparison.is_some())));
        let keys: std::collections::BTreeSet<_> = runs.iter().filter(|r| r.scores.model == "smollm2-135m-instruct" && r.scores.limit == Some(50) && r.scores.mode == crate::run::scores::Mode::Direct).map(|r| r.comparison.clone()).collect();
        assert_eq!(keys.len(), 1, "{keys:?}");
        let mut other = runs.clone();
        for r in runs.iter().filter(|r| r.scores.model == "smollm2-135m-instruct" && r.scores.limit == Some(50) && r.scores.mode == crate::run::scores::Mode::Direct) {
            let mut r = r.clone();
            r.scores.run_id = format!("{}-other", r.id());
            r.comparison = Some("0therkey".into());
            other.push(r);
        }
        let (split, dropped) = super::rows(&other).unwrap();
        assert!(dropped.is_empty(), "{dropped:?}");
        let tags: Vec<(&str, &str, &str)> = split.iter().filter(|r| r.model == "smollm2-135m-instruct" && r.tag.starts_with("n50-s42")).map(|r| (r.tag.as_str(), r.sample.as_str(), r.decoding.as_str())).collect();
        let key = keys.into_iter().next().flatten().unwrap();
        assert_eq!(tags.len(), 6, "{tags:?}");
        for k in [key.as_str(), "0therkey"] {
            let block: Vec<_> = tags.iter().filter(|b| b.0 == format!("n50-s42-{k}") && b.1.ends_with(&format!("settings {k}"))).map(|b| b.2).collect();
            assert_eq!(block, ["free", "json", "schema"], "{k}: {tags:?}");
        }
        // the schema grammar allows no other label and every answer parses; free ones hardly do
        assert_eq!(group[2].under_schema, group[2].predicted);
        assert!(group[2].predicted > 0 && group[2].parse_failures == 0);
        assert!(group[0].parse_failures > 300, "{:?}", group[0]);
    }
}
