//! Reports made only from `results/`: tables with polars (markdown + CSV) and plots with plotters
//! (SVG + PNG). Nothing here runs a model.
//!
//! `zero_shot` writes
//! - `reports/zero-shot.md` and `reports/zero-shot.csv`: one row per run (`results/*/scores.json`)
//!   followed by the paper's Table 1 rows (`source = paper-reported`);
//! - `reports/plots/zero-shot.{svg,png}` (full-set runs) and `zero-shot-n<N>.{svg,png}` (one per
//!   sample size): grouped bars per dataset, our runs with 95% CI whiskers
//!   beside the paper rows marked `plot = true` (ReasoningNER 8B / 1.7B, GPT-4);
//! - `reports/plots/labels-<run-id>.{svg,png}`: per-label F1 of a run, one panel per dataset.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::run::scores::{Mode, Scores};
use crate::score::{self, DatasetScores};
use crate::{Error, Result};

mod font;
pub mod paper;
pub mod plot;
mod table;

pub mod compare;
pub mod decoding;
pub mod training;
pub mod analysis;
pub mod lowres;
pub mod site;
pub use paper::{PaperFile, PaperRow, StageAblation, StageRow};

/// The seven zero-shot datasets (registry name, column header) in the paper's Table 1 order.
pub const ZERO_SHOT_COLUMNS: [(&str, &str); 7] = [
    ("mit-movie", "Movie"),
    ("mit-restaurant", "Restaurant"),
    ("crossner_ai", "AI"),
    ("crossner_literature", "Literature"),
    ("crossner_music", "Music"),
    ("crossner_politics", "Politics"),
    ("crossner_science", "Science"),
];

/// The `source` value of rows copied from the paper.
pub const PAPER_SOURCE: &str = "paper-reported";
/// The `source` value of rows made from our runs.
pub const OURS_SOURCE: &str = "ours";

/// One run found under `results/`.
#[derive(Debug, Clone)]
pub struct Run {
    /// `results/<dir>/scores.json`
    pub path: PathBuf,
    pub scores: Scores,
    /// [`crate::run::EvalConfig::comparison_key`] from the run's `manifest.json` (None without one)
    pub comparison: Option<String>,
    /// the sha256 of the model file it ran (from `manifest.json`; None for API models or without one)
    pub model_sha256: Option<String>,
    /// the first 8 hex digits of `model_sha256`, set by [`load_runs`] only when runs of one model
    /// name scored files of different bytes (a model trained again under its name), so that
    /// tables and plots tell those files apart
    pub file_tag: Option<String>,
}

impl Run {
    /// `model (mode, decoding)`, e.g. `smollm2-135m-instruct (direct, free)`; `model @sha8 (mode,
    /// decoding)` when the model name has runs of several files.
    pub fn system(&self) -> String {
        let name = system_name(&self.scores);
        match &self.file_tag {
            Some(tag) => name.replacen(&self.scores.model, &format!("{} @{tag}", self.scores.model), 1),
            None => name,
        }
    }

    /// The run's folder (`results/<dir>`, holding `scores.json`, `samples.jsonl`, `manifest.json`).
    pub fn dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    /// The run's folder name (`<dir>`).
    fn folder(&self) -> String {
        self.dir().file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
    }

    /// The run id, falling back to the folder name when `scores.json` has none.
    pub fn id(&self) -> String {
        if !self.scores.run_id.is_empty() {
            return self.scores.run_id.clone();
        }
        self.folder()
    }

    /// The seven datasets in table order (`None` where the run has not scored the dataset).
    pub fn zero_shot(&self) -> [Option<&DatasetScores>; 7] {
        let mut out = [None; 7];
        for (i, (name, _)) in ZERO_SHOT_COLUMNS.iter().enumerate() {
            out[i] = self.scores.datasets.get(*name);
        }
        out
    }

    /// True when all seven datasets are present and complete.
    pub fn complete(&self) -> bool {
        self.zero_shot().iter().all(|d| d.is_some_and(|d| d.complete()))
    }

    /// The paper's average (mean of the rounded F1s), only when all seven are complete.
    pub fn average(&self) -> Option<f64> {
        if !self.complete() {
            return None;
        }
        let f1s: Vec<f64> = self.zero_shot().iter().flatten().map(|d| score::round2(d.f1)).collect();
        Some(score::average(&f1s))
    }

    /// `N per dataset (seed S)` or `full test sets`.
    pub fn sample_text(&self) -> String {
        match self.scores.limit {
            Some(n) => format!("{n} per dataset (seed {})", self.scores.seed),
            None => "full test sets".into(),
        }
    }

    /// `full` or `N per dataset`.
    pub fn limit_text(&self) -> String {
        match self.scores.limit {
            None => "full".to_string(),
            Some(n) => format!("{n} per dataset"),
        }
    }
}

/// `model (mode, decoding)`.
pub fn system_name(s: &Scores) -> String {
    let mode = match s.mode {
        Mode::Direct => "direct",
        Mode::Cot => "cot",
    };
    if s.decoding.is_empty() {
        format!("{} ({mode})", s.model)
    } else {
        format!("{} ({mode}, {})", s.model, s.decoding)
    }
}

/// Which runs get a per-label plot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum LabelRuns {
    /// every run (the default)
    #[default]
    All,
    /// none
    None,
    /// only these run ids (or results folder names); an unknown id is an error
    Only(Vec<String>),
}

/// Options of [`zero_shot_with`].
#[derive(Debug, Clone, Default)]
pub struct ZeroShotOptions {
    pub label_runs: LabelRuns,
    /// models whose runs stay out of the table (low-resource fine-tunes: see
    /// [`training::low_resource_models`])
    pub exclude_models: std::collections::HashSet<String>,
}

/// What [`zero_shot`] wrote.
#[derive(Debug, Clone)]
pub struct ReportSummary {
    /// `reports/zero-shot.md`
    pub markdown: PathBuf,
    /// `reports/zero-shot.csv`
    pub csv: PathBuf,
    /// every plot file written (SVG and PNG)
    pub plots: Vec<PathBuf>,
    /// runs in the table
    pub runs: usize,
    /// ids of the runs with a missing or incomplete dataset (no Avg)
    pub partial: Vec<String>,
    /// paper rows in the table
    pub paper_rows: usize,
}

/// Read every `results_dir/*/scores.json`, sorted by (system, run id). Folders without a
/// `scores.json` (runs still starting) are skipped; a missing `results_dir` holds no runs; a
/// malformed `scores.json` is an error naming the file.
pub fn load_runs(results_dir: &Path) -> Result<Vec<Run>> {
    let rd = match std::fs::read_dir(results_dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::warn!("{}: no results folder, the report holds only the paper's rows", results_dir.display());
            return Ok(Vec::new());
        }
        Err(e) => return Err(Error::io(results_dir, e)),
    };
    let mut runs = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::io(results_dir, e))?;
        let path = entry.path().join("scores.json");
        if !entry.path().is_dir() || !path.is_file() {
            continue;
        }
        let scores: Scores = crate::util::read_json(&path)?;
        check_scores(&scores).map_err(|msg| Error::Report(format!("{}: {msg}", path.display())))?;
        let manifest = entry.path().join("manifest.json");
        let config = if manifest.is_file() { Some(crate::util::read_json::<crate::run::Manifest>(&manifest)?.config) } else { None };
        let comparison = config.as_ref().map(|c| c.comparison_key());
        let model_sha256 = config.map(|c| c.model_sha256).filter(|h| !h.is_empty());
        runs.push(Run { path, scores, comparison, model_sha256, file_tag: None });
    }
    tag_files(&mut runs);
    runs.sort_by_key(|r| (r.system(), r.id()));
    Ok(runs)
}

/// Sets [`Run::file_tag`] on every run with a recorded sha whose model name has runs of more
/// than one file.
fn tag_files(runs: &mut [Run]) {
    let mut files: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for r in runs.iter() {
        if let Some(h) = &r.model_sha256 {
            files.entry(r.scores.model.clone()).or_default().insert(h.clone());
        }
    }
    for r in runs.iter_mut() {
        if files.get(&r.scores.model).is_some_and(|f| f.len() > 1) {
            r.file_tag = r.model_sha256.as_ref().map(|h| h.chars().take(8).collect());
        }
    }
}

/// Values a report cannot draw are errors, not silent garbage.
fn check_scores(s: &Scores) -> std::result::Result<(), String> {
    let pct = |v: f64| v.is_finite() && (0.0..=100.0).contains(&v);
    for (name, d) in &s.datasets {
        if !pct(d.f1) || !pct(d.ci95[0]) || !pct(d.ci95[1]) {
            return Err(format!("dataset {name}: F1 {} / CI {:?} not in 0..=100", d.f1, d.ci95));
        }
        for (label, l) in &d.per_label {
            if !pct(l.f1) {
                return Err(format!("dataset {name}, label {label:?}: F1 {} not in 0..=100", l.f1));
            }
        }
    }
    Ok(())
}

/// The zero-shot report with default options (a per-label plot for every run; the low-resource
/// models of `results_dir/train` left out).
pub fn zero_shot(results_dir: &Path, reports_dir: &Path, paper_file: &Path) -> Result<ReportSummary> {
    let exclude_models = training::low_resource_models(&training::load(results_dir)?);
    zero_shot_with(results_dir, reports_dir, paper_file, &ZeroShotOptions { exclude_models, ..Default::default() })
}

/// The zero-shot report: `reports_dir/zero-shot.{md,csv}`, `reports_dir/plots/zero-shot*.{svg,png}`
/// and the per-label plots chosen by `opts.label_runs`.
pub fn zero_shot_with(
    results_dir: &Path,
    reports_dir: &Path,
    paper_file: &Path,
    opts: &ZeroShotOptions,
) -> Result<ReportSummary> {
    let paper = PaperFile::load(paper_file)?;
    // models fine-tuned on a benchmark's train split, and runs on other datasets only, belong to
    // the low-resource table
    let runs: Vec<Run> =
        load_runs(results_dir)?.into_iter().filter(|r| r.zero_shot().iter().any(Option::is_some) && !opts.exclude_models.contains(&r.scores.model)).collect();
    let label_runs: Vec<&Run> = match &opts.label_runs {
        LabelRuns::All => runs.iter().collect(),
        LabelRuns::None => Vec::new(),
        LabelRuns::Only(ids) => ids.iter().map(|id| find_run(&runs, id, results_dir)).collect::<Result<_>>()?,
    };

    let mut df = table::zero_shot_frame(&runs, &paper)?;
    let csv = reports_dir.join("zero-shot.csv");
    crate::util::write_atomic(&csv, &table::to_csv(&mut df)?)?;
    let markdown = reports_dir.join("zero-shot.md");
    crate::util::write_atomic(&markdown, table::zero_shot_markdown(&df, &paper)?.as_bytes())?;

    let plots_dir = reports_dir.join("plots");
    let mut plots = plot::zero_shot(&runs, &paper, &plots_dir)?;
    for run in label_runs {
        plots.extend(plot::labels(run, &plots_dir)?);
    }
    let partial = runs.iter().filter(|r| !r.complete()).map(Run::id).collect();
    tracing::info!("wrote {}, {} and {} plots", markdown.display(), csv.display(), plots.len());
    Ok(ReportSummary { markdown, csv, plots, runs: runs.len(), partial, paper_rows: paper.table1.len() })
}

/// The per-label plot of one run (`run_id` = the run id or its folder name under `results_dir`):
/// `plots_dir/labels-<run-id>.{svg,png}`. Returns the two paths.
pub fn run_labels(results_dir: &Path, run_id: &str, plots_dir: &Path) -> Result<Vec<PathBuf>> {
    let runs = load_runs(results_dir)?;
    let run = find_run(&runs, run_id, results_dir)?;
    plot::labels(run, plots_dir)
}

fn find_run<'a>(runs: &'a [Run], id: &str, results_dir: &Path) -> Result<&'a Run> {
    runs.iter().find(|r| r.id() == id || r.folder() == id).ok_or_else(|| {
        let known: Vec<String> = runs.iter().map(Run::id).collect();
        Error::Report(format!("no run {id:?} with a scores.json in {} (runs: {})", results_dir.display(), known.join(", ")))
    })
}

/// A run id made safe for a file name.
pub(crate) fn file_stem(id: &str) -> String {
    let s: String = id.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if s.is_empty() {
        "run".into()
    } else {
        s
    }
}

/// Per-run files under `reports_dir` whose run is no longer in results/ (a rerun under a new run id,
/// a removed run): the plots `plots/{labels,errors}-<run>.{svg,png}` and `plots/{sft,grpo}-<training
/// run>.{svg,png}`, and with `site` the site's `run-<run>.html`, `samples-<run>.html`,
/// `data/<run>.js` and `compare-<a>-vs-<b>.html` of a gone run; and the ablation plots
/// `plots/ablation-{stages,rewards}-*.{svg,png}` that their table (`ablation-stages.md`,
/// `ablation-rewards.md`, written before this runs) no longer names, as when a start trained again
/// and its plot took the file's `@sha8`. Removes them; returns their paths, sorted. Every other
/// file (tables, the shared plots, CoT reports) is left alone.
pub fn prune_stale(reports_dir: &Path, run_ids: &[String], train_names: &[String], site: bool) -> Result<Vec<PathBuf>> {
    let runs: BTreeSet<String> = run_ids.iter().map(|id| file_stem(id)).collect();
    let trains: BTreeSet<&str> = train_names.iter().map(String::as_str).collect();
    let mut gone = Vec::new();
    let mut sweep = |dir: PathBuf, stale: &dyn Fn(&str) -> bool| -> Result<()> {
        let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(()) };
        for e in rd {
            let path = e.map_err(|e| Error::io(&dir, e))?.path();
            let name = path.file_name().map(|n| n.to_string_lossy().to_string()).unwrap_or_default();
            if path.is_file() && stale(&name) {
                std::fs::remove_file(&path).map_err(|e| Error::io(&path, e))?;
                gone.push(path);
            }
        }
        Ok(())
    };
    let stem_of = |name: &str, exts: &[&str]| exts.iter().find_map(|x| name.strip_suffix(x)).map(str::to_string);
    let table = |t: &str| std::fs::read_to_string(reports_dir.join(format!("{t}.md"))).unwrap_or_default();
    let ablations = [("ablation-stages", table("ablation-stages")), ("ablation-rewards", table("ablation-rewards"))];
    sweep(reports_dir.join("plots"), &|name| {
        let Some(stem) = stem_of(name, &[".svg", ".png"]) else { return false };
        if let Some(run) = stem.strip_prefix("labels-").or_else(|| stem.strip_prefix("errors-")) {
            return !runs.contains(run);
        }
        if let Some((_, md)) = ablations.iter().find(|(t, _)| stem.starts_with(&format!("{t}-"))) {
            return !md.contains(&format!("`plots/{stem}.png`"));
        }
        stem.strip_prefix("sft-").or_else(|| stem.strip_prefix("grpo-")).is_some_and(|t| !trains.contains(t))
    })?;
    if site {
        let dir = reports_dir.join("site");
        sweep(dir.clone(), &|name| {
            let Some(stem) = stem_of(name, &[".html"]) else { return false };
            if let Some(run) = stem.strip_prefix("run-").or_else(|| stem.strip_prefix("samples-")) {
                return !runs.contains(run);
            }
            // A run's own name may hold "-vs-": the page stays if any split names two kept runs.
            stem.strip_prefix("compare-").is_some_and(|p| {
                !p.match_indices("-vs-").any(|(i, _)| runs.contains(&p[..i]) && runs.contains(&p[i + 4..]))
            })
        })?;
        sweep(dir.join("data"), &|name| stem_of(name, &[".js"]).is_some_and(|run| !runs.contains(&run)))?;
    }
    gone.sort();
    Ok(gone)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_per_run_files_are_pruned_and_nothing_else() {
        let d = tempfile::tempdir().unwrap();
        let r = d.path();
        for f in [
            "plots/labels-keep-1.png", "plots/labels-gone-2.svg", "plots/errors-gone-2.png", "plots/errors-keep-1.svg",
            "plots/sft-train-a.png", "plots/grpo-old.svg", "plots/zero-shot.png", "plots/low-resource.svg", "plots/cot-x-words.png",
            "site/run-keep-1.html", "site/run-gone-2.html", "site/samples-gone-2.html", "site/index.html", "site/style.css",
            "site/compare-keep-1-vs-gone-2.html", "site/compare-keep-1-vs-keep-3.html", "site/data/gone-2.js", "site/data/keep-3.js",
            "site/compare-a-vs-b-vs-keep-1.html", "site/compare-a-vs-b-vs-gone-2.html", "zero-shot.md",
            "plots/ablation-rewards-n50-s42-from-m.png", "plots/ablation-rewards-n50-s42-from-m__1234abcd.svg", "plots/ablation-stages-n50-s42.png",
        ] {
            std::fs::create_dir_all(r.join(f).parent().unwrap()).unwrap();
            std::fs::write(r.join(f), "x").unwrap();
        }
        // the reward table names the start's new plot; no stage table was written
        std::fs::write(r.join("ablation-rewards.md"), "Plots: `plots/ablation-rewards-n50-s42-from-m__1234abcd.png`.\n").unwrap();
        let ids = ["keep-1".to_string(), "keep-3".to_string(), "a-vs-b".to_string()];
        let gone = prune_stale(r, &ids, &["train-a".to_string()], false).unwrap();
        let names = |g: &[PathBuf]| g.iter().map(|p| p.strip_prefix(r).unwrap().display().to_string()).collect::<Vec<_>>();
        assert_eq!(
            names(&gone),
            ["plots/ablation-rewards-n50-s42-from-m.png", "plots/ablation-stages-n50-s42.png", "plots/errors-gone-2.png", "plots/grpo-old.svg", "plots/labels-gone-2.svg"]
        );
        assert!(r.join("plots/ablation-rewards-n50-s42-from-m__1234abcd.svg").is_file());
        assert!(r.join("site/run-gone-2.html").is_file(), "the site is left alone without --html");
        let gone = prune_stale(r, &ids, &["train-a".to_string()], true).unwrap();
        assert_eq!(
            names(&gone),
            ["site/compare-a-vs-b-vs-gone-2.html", "site/compare-keep-1-vs-gone-2.html", "site/data/gone-2.js", "site/run-gone-2.html", "site/samples-gone-2.html"]
        );
        for kept in ["site/compare-a-vs-b-vs-keep-1.html", "plots/labels-keep-1.png", "plots/sft-train-a.png", "plots/zero-shot.png", "plots/low-resource.svg", "plots/cot-x-words.png", "site/index.html", "site/compare-keep-1-vs-keep-3.html", "site/data/keep-3.js", "zero-shot.md"] {
            assert!(r.join(kept).is_file(), "{kept}");
        }
    }

    #[test]
    fn columns_follow_the_registry_order() {
        let names: Vec<&str> = ZERO_SHOT_COLUMNS.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, crate::data::ZERO_SHOT);
    }

    #[test]
    fn a_model_name_with_runs_of_several_files_names_each_file() {
        // real runs: cpu-sft-cot's sample run from the first training's file and from the retrained one
        let runs = load_runs(&Path::new(env!("CARGO_MANIFEST_DIR")).join("results")).unwrap();
        let system = |id: &str| runs.iter().find(|r| r.id() == id).unwrap().system();
        assert_eq!(system("cpu-sft-cot-direct-free-test-n50-s42-86d07ef7"), "cpu-sft-cot @c85b428a (direct, free)");
        assert_eq!(system("cpu-sft-cot-direct-free-test-n50-s42-6d0c65ba"), "cpu-sft-cot @efe1bbb2 (direct, free)");
        // one file under its name: no tag
        assert_eq!(system("smollm2-135m-instruct-direct-free-test-n50-s42-b2db9753"), "smollm2-135m-instruct (direct, free)");
        // a run without a recorded sha stays untagged beside tagged ones
        let mut mixed: Vec<Run> = runs.iter().filter(|r| r.scores.model == "cpu-sft-cot").cloned().collect();
        mixed.iter_mut().for_each(|r| r.file_tag = None);
        mixed[0].model_sha256 = None;
        tag_files(&mut mixed);
        assert!(mixed[0].file_tag.is_none());
        assert!(mixed[1..].iter().all(|r| r.file_tag.is_some()));
    }

    #[test]
    fn file_stems_are_safe() {
        assert_eq!(file_stem("smollm2/direct:1"), "smollm2_direct_1");
        assert_eq!(file_stem(""), "run");
    }
}
