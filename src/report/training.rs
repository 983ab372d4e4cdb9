//! Training runs in the reports: `reports/training.md` (every SFT and GRPO run: settings, curve
//! summary, command) and `reports/ablation-stages.{md,csv}` (base → direct SFT → CoT SFT → +GRPO
//! on the same benchmark sample, beside the paper's Qwen3-1.7B ablation).
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{Run, ZERO_SHOT_COLUMNS};
use crate::score::round2;
use crate::{Error, Result};

/// A training run as its `results/train/<name>/run.json` and step log describe it.
#[derive(Debug, Clone)]
pub struct TrainRun {
    pub name: String,
    pub stage: String,
    /// the model it started from (a baseline name or path, or an SFT run's checkpoints)
    pub init: String,
    pub target: Option<String>,
    pub run: Value,
    pub steps: Vec<Value>,
    pub dir: PathBuf,
    /// `Some(sha8)` for the log of an earlier export of the name, kept in
    /// `results/train/<name>/earlier/<sha8>/` when the name trained again; `None` for the name's
    /// current log
    pub earlier: Option<String>,
}

impl TrainRun {
    /// Whether `run` scored this training run's export: its model file's sha256 is the one the
    /// export recorded. A run still training has no export yet, so no run of a known file scored
    /// it; otherwise, when either sha256 is unknown (logs and runs from before they were recorded),
    /// true of the name's current log and false of an earlier one.
    pub fn exported_as(&self, run: &Run) -> bool {
        match (self.export_sha256(), run.model_sha256.as_deref()) {
            (Some(export), Some(ran)) => export == ran,
            (None, Some(_)) if !self.finished() => false,
            _ => self.earlier.is_none(),
        }
    }

    /// Whether the log records a finished run (every update done, not interrupted).
    pub fn finished(&self) -> bool {
        let o = |k: &str| self.run.pointer(&format!("/outcome/{k}")).and_then(|v| v.as_u64());
        self.run.pointer("/outcome/interrupted").and_then(|v| v.as_bool()) == Some(false) && o("steps_done").zip(o("total_steps")).is_some_and(|(d, t)| d >= t)
    }

    /// The sha256 of the GGUF the run exported (None before it finished, or without an export).
    pub fn export_sha256(&self) -> Option<&str> {
        export_sha256(&self.run)
    }

    /// The name, and `@sha8 (earlier export)` for an earlier log of it.
    pub fn label(&self) -> String {
        match &self.earlier {
            Some(tag) => format!("{} @{tag} (earlier export)", self.name),
            None => self.name.clone(),
        }
    }

    /// Whether this run trained from the export that `start`'s log records ([`from_export_of`]).
    pub fn from_export_of(&self, start: &TrainRun) -> bool {
        from_export_of(&self.run, &start.run)
    }
}

/// Whether the training run logged as `run` (its `run.json`) trained from the export that `start`'s
/// log records (true when that log records none): by the sha256 `run` recorded of the file it
/// started from (an SFT run's `model_sha256`, a GRPO run's `source_sha256`), else (logs written
/// before those fields) by having begun after `start`'s last training did, since a run that began
/// before it could only have read an earlier file of the same name; where the start trained again
/// to the same bytes, after the first of those trainings ([`read_log`]'s `exported_since`).
pub fn from_export_of(run: &Value, start: &Value) -> bool {
    let sha = |v: &Value, k: &str| v.get(k).and_then(|v| v.as_str()).map(str::to_string);
    let Some(export) = sha(start, "export_sha256") else { return true };
    match sha(run, "model_sha256").or_else(|| sha(run, "source_sha256")) {
        Some(from) => from == export,
        None => match (sha(run, "date"), sha(start, "exported_since").or_else(|| sha(start, "date"))) {
            (Some(a), Some(b)) => crate::util::parse_time(&a).zip(crate::util::parse_time(&b)).map_or(a > b, |(a, b)| a > b),
            _ => true,
        },
    }
}

/// The sha256 of the GGUF a training log records as its export: None before the run finished,
/// without an export, and where `rner sft` wrote the field as null.
pub fn export_sha256(log: &Value) -> Option<&str> {
    log.get("export_sha256").and_then(|v| v.as_str())
}

/// The tensor type of the export a training log records (`f16`, `q8_0`, `source`); None when it
/// records no export. Logs written before `export_type` was recorded name it by their command's
/// `--export` where it was given, and were otherwise `q8_0`, then the default.
pub fn export_type(log: &Value) -> Option<String> {
    export_sha256(log)?;
    if let Some(t) = log.get("export_type").and_then(|v| v.as_str()) {
        return Some(t.to_string());
    }
    let command = log.get("command").and_then(|v| v.as_str()).unwrap_or_default();
    let words: Vec<&str> = command.split_whitespace().collect();
    let given = words.iter().enumerate().find_map(|(i, w)| match w.strip_prefix("--export") {
        Some("") => words.get(i + 1).copied(),
        Some(v) => v.strip_prefix('='),
        None => None,
    });
    Some(given.map_or("q8_0", |t| if t == "q8-0" { "q8_0" } else { t }).to_string())
}

/// Whether the export of the fine-tune logged as `run` measures its start rather than the
/// fine-tune: by the rounding its log records ([`crate::model::export::rounding`]: more than half
/// of the weights the training moved written as the export writes the untouched start), else (logs written
/// before it was measured) by the types: exported as Q8_0 (or `source`, which keeps the start's
/// Q8_0) from a start (logged as `start`) that was itself a Q8_0 export. Such a start's
/// dequantised weights sit on the Q8_0 grid, and a fine-tune's updates below one quantisation step
/// round back onto them (a 25% low-resource cell's file kept 98.4% of its start's bytes and every
/// `<think>` of its answers, where an F16 export of the same training answers with the JSON
/// alone). The measurement also catches a start of another type (a `source` export of the Q4_1
/// base).
pub fn rounded_onto_start(run: &Value, start: Option<&Value>) -> bool {
    match export_rounded(run) {
        Some(r) => r.lost(),
        None => start.is_some_and(|start| rounded_by_types(run, start)),
    }
}

/// [`rounded_onto_start`]'s rule for logs that record no rounding: `run` exported as Q8_0 (or
/// `source`) from a start (logged as `start`) that was itself a Q8_0 export.
pub fn rounded_by_types(run: &Value, start: &Value) -> bool {
    export_type(start).as_deref() == Some("q8_0") && matches!(export_type(run).as_deref(), Some("q8_0" | "source"))
}

/// The ablation tables' *rounded back* cell of a training log: the share of the moved weights its
/// export rounds back onto the start, `†` when that is most of them; `nothing moved`, or `not
/// measured` (a log from before the count).
fn rounded_cell(log: &Value) -> String {
    match export_rounded(log) {
        Some(r) if r.moved == 0 => "nothing moved".into(),
        Some(r) => format!("{:.1}%{}", 100.0 * r.share(), if r.lost() { " †" } else { "" }),
        None => "not measured".into(),
    }
}

/// The ablation tables' note on their *rounded back* column.
const ROUNDED_NOTE: &str = "*rounded back*: of the weights the training moved off the weights it began at, the share its export writes exactly as it writes that untouched start (`export_rounded` in the training log; counted by `rner sft`/`rner grpo` at export, or afterwards by `rner export <checkpoint> --against <start> --record results/train/<run>` for a run trained before the count, which needs the run's checkpoint); **†** more than half: the file measures its start more than the training, so the row may score the start (F32 twins of such exports: `export-twins/README.md`). *nothing moved*: the training left every weight where it began (a GRPO run whose advantages were all 0), so the file writes its start. *not measured*: trained before the count and not counted since.";

/// The export's rounding a training log records (`export_rounded`), when it does. (A few logs of
/// session 29 also hold `export_rounding`, an earlier count that compared the export with the
/// start's own values rather than with the start written in the export's type: it is not read.)
pub fn export_rounded(log: &Value) -> Option<crate::model::export::Rounding> {
    export_sha256(log)?;
    serde_json::from_value(log.get("export_rounded")?.clone()).ok()
}

/// The log of the export `t` trained from, when its start is one of ours: of the start name's
/// logs (current and earlier) that record an export, the one [`from_export_of`] says it began
/// from (the newest, where only dates tell them apart).
pub fn start_log<'a>(t: &TrainRun, train: &'a [TrainRun]) -> Option<&'a TrainRun> {
    let init = super::lowres::init_name(&t.init);
    let date = |s: &TrainRun| s.run.get("date").and_then(|d| d.as_str()).and_then(crate::util::parse_time);
    train.iter().filter(|s| s.name == init && s.export_sha256().is_some() && t.from_export_of(s)).max_by_key(|s| date(s))
}

/// The log in `dir` (`results/train/<name>/run.json`) as the reports and `rner reproduce` read it:
/// with `exported_since` set (in memory, not in the file) where the name trained again to the
/// bytes it had before (another machine, the same code and seeds): the date of the oldest of its
/// logs (`earlier/` included) in the unbroken line, newest first, that exported these bytes.
/// None when there is no readable `run.json`.
pub fn read_log(dir: &Path) -> Option<Value> {
    let mut run: Value = crate::util::read_json(&dir.join("run.json")).ok()?;
    let earlier: Vec<Value> = std::fs::read_dir(dir.join(crate::train::checkpoint::EARLIER))
        .map(|rd| rd.flatten().filter_map(|e| crate::util::read_json(&e.path().join("run.json")).ok()).collect())
        .unwrap_or_default();
    if let Some(since) = exported_since(&run, &earlier) {
        run["exported_since"] = Value::String(since);
    }
    Some(run)
}

/// See [`read_log`]: the date of the oldest log before `current` (newest first, without a log of
/// other bytes between) that exported `current`'s bytes; None when there is none.
fn exported_since(current: &Value, earlier: &[Value]) -> Option<String> {
    let str_of = |v: &Value, k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    let export = str_of(current, "export_sha256")?;
    let now = crate::util::parse_time(&str_of(current, "date")?)?;
    let mut before: Vec<(time::OffsetDateTime, &Value)> =
        earlier.iter().filter_map(|v| Some((crate::util::parse_time(&str_of(v, "date")?)?, v))).filter(|(d, _)| *d < now).collect();
    before.sort_by(|a, b| b.0.cmp(&a.0));
    let mut since = None;
    for (_, v) in before {
        if str_of(v, "export_sha256").as_deref() != Some(export.as_str()) {
            break;
        }
        since = str_of(v, "date");
    }
    since
}

/// Every training run under `results/train`: each name's current log, then the logs of its
/// earlier exports (`earlier/<sha8>/`, kept when the name trained again; one whose export has the
/// current log's bytes is left out).
pub fn load(results_dir: &Path) -> Result<Vec<TrainRun>> {
    let dir = results_dir.join("train");
    let Ok(rd) = std::fs::read_dir(&dir) else { return Ok(Vec::new()) };
    let mut out = Vec::new();
    for e in rd.flatten() {
        let mut current = load_one(&e.path(), None)?;
        let mut earlier = Vec::new();
        if let Ok(rd) = std::fs::read_dir(e.path().join(crate::train::checkpoint::EARLIER)) {
            for k in rd.flatten() {
                earlier.extend(load_one(&k.path(), Some(k.file_name().to_string_lossy().into_owned()))?);
            }
        }
        // the same line of logs `read_log` reads, from the logs already here
        if let Some(t) = current.as_mut() {
            let logs: Vec<Value> = earlier.iter().map(|k| k.run.clone()).collect();
            if let Some(since) = exported_since(&t.run, &logs) {
                t.run["exported_since"] = Value::String(since);
            }
        }
        // an earlier log of the current file's bytes (trained again to the same file) is left out
        let now = current.as_ref().and_then(|t| t.export_sha256().map(str::to_string));
        out.extend(earlier.into_iter().filter(|t| now.is_none() || t.export_sha256() != now.as_deref()));
        out.extend(current);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name).then(a.earlier.cmp(&b.earlier)));
    Ok(out)
}

/// The training run logged in `dir` (`results/train/<name>`, or an earlier export's log in its
/// `earlier/<sha8>` with `earlier` set); None without a `run.json`.
fn load_one(dir: &Path, earlier: Option<String>) -> Result<Option<TrainRun>> {
    let p = dir.join("run.json");
    if !p.is_file() {
        return Ok(None);
    }
    let run: Value = crate::util::read_json(&p)?;
    let steps: Vec<Value> = crate::util::read_jsonl(&dir.join("steps.jsonl")).unwrap_or_default();
    let s = |k: &str| run.get(k).and_then(|v| v.as_str()).unwrap_or("").to_string();
    let init = if s("stage") == "grpo" { s("init") } else { s("model") };
    Ok(Some(TrainRun { name: s("name"), stage: s("stage"), init, target: run.get("target").and_then(|v| v.as_str()).map(str::to_string), run, steps, dir: dir.to_path_buf(), earlier }))
}

fn f(v: Option<&Value>) -> Option<f64> {
    v.and_then(|v| v.as_f64())
}

/// `reports/training.md`.
pub fn training_md(runs: &[TrainRun], reports_dir: &Path) -> Result<PathBuf> {
    let mut md = String::from("# Training runs\n\nEvery run under `results/train/` (written by `rner report`). Curves: `plots/sft-<name>.png` and `plots/grpo-<name>.png`. Checkpoints are not committed (`checkpoints/`, git-ignored); each run's exported GGUF sha256 is in its `run.json`.\n\n");
    md.push_str("| run | stage | from | updates | first → last loss | last reward | mean s/update | mean tokens/s | mean sequence tokens/s | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for r in runs {
        let total = r.run.pointer("/outcome/total_steps").and_then(|v| v.as_u64()).map(|v| v.to_string()).unwrap_or("?".into());
        let (first, last) = (r.steps.first(), r.steps.last());
        let loss = match (f(first.and_then(|x| x.get("loss"))), f(last.and_then(|x| x.get("loss")))) {
            (Some(a), Some(b)) => format!("{a:.3} → {b:.3}"),
            _ => "—".into(),
        };
        let reward = f(last.and_then(|x| x.get("reward"))).map(|v| format!("{v:.2}")).unwrap_or("—".into());
        let tps: Vec<f64> = r.steps.iter().filter_map(|x| f(x.get("tokens_per_s")).or(f(x.get("rollout_tokens_per_s")))).collect();
        let mean = |v: &[f64], digits: usize| if v.is_empty() { "—".to_string() } else { format!("{:.*}", digits, v.iter().sum::<f64>() / v.len() as f64) };
        let tps = mean(&tps, 0);
        let secs: Vec<f64> = r.steps.iter().filter_map(|x| f(x.get("seconds"))).collect();
        // SFT logs since the shared prompt start: the sequences' own tokens per second
        let seq: Vec<f64> = r.steps.iter().filter_map(|x| Some(f(x.get("seq_tokens")).filter(|&n| n > 0.0)? / f(x.get("seconds"))?)).collect();
        let (secs, seq) = (mean(&secs, 1), mean(&seq, 0));
        let rss = r.steps.iter().filter_map(|x| f(x.get("rss_mb"))).fold(f64::NAN, f64::max);
        let stage = match (&r.stage[..], r.target.as_deref()) {
            ("sft", Some(t)) => format!("sft ({t})"),
            (s, _) => s.to_string(),
        };
        md.push_str(&format!(
            "| {} | {stage} | `{}` | {}/{total} | {loss} | {reward} | {secs} | {tps} | {seq} | {} |\n",
            r.label(),
            r.init,
            r.steps.len(),
            if rss.is_finite() { format!("{rss:.0}") } else { "—".into() }
        ));
    }
    md.push_str("\nTokens/s counts the tokens through the model (padding included; for SFT with a shared prompt start, that start once per forward pass); sequence tokens/s counts each sequence's own tokens, prompt included, and is logged by SFT runs since prompt sharing (`rner sft --no-share-prefix` feeds every prompt whole).\n");
    md.push_str("\nCommands (each resumes from its newest checkpoint when rerun):\n\n");
    for r in runs {
        md.push_str(&format!("- `{}`: `{}`\n", r.label(), r.run.get("command").and_then(|v| v.as_str()).unwrap_or("?")));
    }
    let p = reports_dir.join("training.md");
    crate::util::write_atomic(&p, md.as_bytes())?;
    Ok(p)
}

/// Names of the models trained by low-resource fine-tuning (`--train-set`): their runs belong to
/// the low-resource table, not to the zero-shot and stage tables.
pub fn low_resource_models(train: &[TrainRun]) -> std::collections::HashSet<String> {
    train.iter().filter(|t| t.run.get("train_set").is_some_and(|v| v.is_string())).map(|t| t.name.clone()).collect()
}

/// `model` names this training start: the same name, or the file stem of its path.
fn started_from(t: &TrainRun, model: &str) -> bool {
    t.init == model || (t.init.ends_with(".gguf") && Path::new(&t.init).file_stem().and_then(|s| s.to_str()) == Some(model))
}

/// Which stage each benchmark run's model stands for, from the training runs (low-resource
/// models set apart once). A name trained more than once keeps the logs of its earlier exports
/// (`earlier/`): each run is placed by the log of the file it scored, so the chain before a
/// retrain and the chain after it stand side by side, told apart by their files' `@sha8`.
struct StageIndex<'a> {
    lowres: std::collections::HashSet<String>,
    /// every log but the low-resource cells', earlier exports' included
    train: Vec<&'a TrainRun>,
    /// every log
    all: &'a [TrainRun],
}

impl<'a> StageIndex<'a> {
    fn new(all: &'a [TrainRun]) -> StageIndex<'a> {
        let lowres = low_resource_models(all);
        let train = all.iter().filter(|t| !lowres.contains(&t.name)).collect();
        StageIndex { lowres, train, all }
    }

    /// The log of the file `run` scored, when its model is one we trained.
    fn log_of(&self, run: &Run) -> Option<&'a TrainRun> {
        self.train.iter().copied().find(|t| t.name == run.scores.model && t.exported_as(run))
    }

    /// The run's name, with `@sha8` of its export when it or its start trained more than once.
    fn tagged(&self, t: &TrainRun) -> String {
        let several = |n: &str| self.train.iter().filter(|s| s.name == n).count() > 1;
        match t.export_sha256() {
            Some(h) if several(&t.name) || several(&super::lowres::init_name(&t.init)) => format!("{} @{}", t.name, &h[..h.len().min(8)]),
            _ => t.name.clone(),
        }
    }

    /// The stage of `run`'s model: its base model, a direct or CoT SFT export, or a GRPO export.
    /// A run of a file with the name of one of ours but bytes no log of it exported is none.
    fn stage_of(&self, run: &Run) -> Option<(usize, String)> {
        let model = &run.scores.model[..];
        if self.lowres.contains(model) {
            return None;
        }
        if self.train.iter().any(|t| t.name == model) {
            let t = self.log_of(run)?;
            let name = self.tagged(t);
            return Some(match (&t.stage[..], t.target.as_deref()) {
                ("sft", Some("direct")) => (1, format!("+ SFT w/o CoT ({name})")),
                ("sft", _) => (2, format!("+ SFT with CoT ({name})")),
                _ => (3, format!("+ GRPO ({name})")),
            });
        }
        self.train.iter().any(|t| t.stage == "sft" && started_from(t, model)).then(|| (0, format!("base ({model})")))
    }

    /// Whether `start` scored the file `run`'s model was trained from (the export its log
    /// records, when that model is one of ours).
    fn is_start_of(&self, start: &Run, run: &Run) -> bool {
        let Some(t) = self.log_of(run) else { return false };
        let init = super::lowres::init_name(&t.init);
        start.scores.model == init
            && match start_log(t, self.all) {
                Some(s) => s.exported_as(start),
                None => self.train.iter().find(|s| s.name == init && s.earlier.is_none()).is_none_or(|s| s.exported_as(start)),
            }
    }
}

/// The paper's Qwen3-1.7B stage averages (`paper.md` §8.2; secondary notes).
const PAPER_STAGES: [(&str, f64); 4] = [("base", 31.9), ("+ SFT w/o CoT", 60.6), ("+ SFT with CoT", 63.0), ("+ GRPO", 65.1)];

/// `n50-s42` / `full` (+ the split when not test), for file names.
pub(crate) fn sample_tag(limit: Option<usize>, seed: u64, split: &str) -> String {
    let s = match limit {
        Some(n) => format!("n{n}-s{seed}"),
        None => "full".into(),
    };
    if split == "test" { s } else { format!("{s}-{split}") }
}

/// `reports/ablation-stages.{md,csv}`: one block per benchmark sample (limit, seed) that holds
/// at least two stages.
pub fn stages(runs: &[Run], train: &[TrainRun], reports_dir: &Path) -> Result<Option<PathBuf>> {
    let index = StageIndex::new(train);
    let mut blocks: BTreeMap<(Option<usize>, u64, String), Vec<(usize, String, &Run)>> = BTreeMap::new();
    for r in runs {
        let s = &r.scores;
        // a run on some of the seven only (a low-resource 0% point) is not a stage row
        if s.decoding != "free" || r.zero_shot().iter().any(Option::is_none) {
            continue;
        }
        if let Some((k, label)) = index.stage_of(r) {
            blocks.entry((s.limit, s.seed, s.split.clone())).or_default().push((k, label, r));
        }
    }
    blocks.retain(|_, v| v.iter().map(|x| x.0).collect::<std::collections::BTreeSet<_>>().len() >= 2);
    if blocks.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = ZERO_SHOT_COLUMNS.iter().map(|(_, n)| *n).collect();
    let mut md = String::from("# Stage ablation: base → SFT without CoT → SFT with CoT → + GRPO\n\nOurs: SmolLM2-135M-Instruct trained on this machine (see `training.md`), each stage exported to GGUF and scored by the same llama.cpp engine and scorer as every baseline. F1 per dataset (95% bootstrap CI), average over the seven; *Δ avg*: the stage's average minus that of the model it was trained from (named in the cell; the base for SFT, the CoT-tuned model for GRPO) on the same sentences, with a paired-bootstrap 95% CI and two-sided p (every set's sentences resampled with the same draws for both runs; per dataset in the CSV). Paper rows: Qwen3-1.7B averages from secondary notes (`paper.md` §8.2), **paper-reported**, not runs of ours.\n\n");
    let mut csv = String::from("sample,stage,model,run_id,dataset,f1,ci_low,ci_high,sentences,delta_vs_start,delta_ci_low,delta_ci_high,delta_p,export_rounded_back\n");
    for ((limit, seed, split), mut rows) in blocks {
        rows.sort_by_key(|x| x.0);
        let sample = match limit {
            Some(n) => format!("{split}, seeded sample of {n} sentences per dataset (seed {seed})"),
            None => format!("{split}, full sets"),
        };
        md.push_str(&format!("## {sample}\n\n| stage | {} | avg | Δ avg vs its start [95% CI], p | rounded back |\n|---|{}---|---|---|\n", names.join(" | "), "---|".repeat(names.len())));
        let mut series = Vec::new();
        for (_, label, r) in &rows {
            // each trained stage against the model it was trained from, on the same sentences
            let start = rows.iter().find(|(_, _, s)| index.is_start_of(s, r)).map(|x| x.2);
            let diff = match start {
                Some(s) => super::compare::zero_shot_diff(s, r)?.map(|d| (d, s.scores.model.clone())),
                None => None,
            };
            let mut cells = Vec::new();
            let mut f1s = Vec::new();
            let mut values: Vec<Option<(f64, Option<(f64, f64)>)>> = r.zero_shot().iter().map(|d| d.map(|d| (d.f1, Some((d.ci95[0], d.ci95[1]))))).collect();
            values.push(r.average().map(|a| (a, None)));
            // the plot keeps GRPO with the paper's reward; the reward variants have their own plot
            let variant = index.log_of(r).is_some_and(|t| t.stage == "grpo" && reward_weights(t) != PAPER_REWARD);
            if !variant {
                series.push(super::plot::BarSeries { name: label.clone(), values, paper: false });
            }
            for (i, d) in r.zero_shot().iter().enumerate() {
                match d {
                    Some(d) => {
                        cells.push(format!("{:.2} [{:.1}, {:.1}]", d.f1, d.ci95[0], d.ci95[1]));
                        f1s.push(round2(d.f1));
                        csv.push_str(&format!(
                            "{},{},{},{},{},{},{},{},{},{},{}\n",
                            limit.map(|n| n.to_string()).unwrap_or("full".into()),
                            label.replace(',', ";"),
                            r.scores.model,
                            r.id(),
                            ZERO_SHOT_COLUMNS[i].0,
                            d.f1,
                            d.ci95[0],
                            d.ci95[1],
                            d.sentences,
                            diff_csv(diff.as_ref().map(|((each, _), _)| &each[i])),
                            rounded_csv(index.log_of(r))
                        ));
                    }
                    None => cells.push("—".into()),
                }
            }
            let avg = if f1s.len() == 7 { format!("**{:.2}**", round2(f1s.iter().sum::<f64>() / 7.0)) } else { "—".into() };
            let delta = diff.as_ref().map(|((_, all), from)| format!("{} (vs {from})", all.cell())).unwrap_or_else(|| "—".into());
            let rounded = index.log_of(r).map(|t| rounded_cell(&t.run)).unwrap_or_else(|| "—".into());
            md.push_str(&format!("| {label} | {} | {avg} | {delta} | {rounded} |\n", cells.join(" | ")));
        }
        md.push_str("\nRuns: ");
        md.push_str(&rows.iter().map(|(_, _, r)| format!("`results/{}`", r.id())).collect::<Vec<_>>().join(", "));
        for (name, avg) in PAPER_STAGES {
            let mut values = vec![None; 7];
            values.push(Some((avg, None)));
            series.push(super::plot::BarSeries { name: format!("paper-reported, Qwen3-1.7B: {name}"), values, paper: true });
        }
        let stem = format!("ablation-stages-{}", sample_tag(limit, seed, &split));
        let mut groups: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        groups.push("Avg".into());
        super::plot::grouped(&format!("Stage ablation ({sample})"), &groups, &series, "F1 (%)", &reports_dir.join("plots"), &stem)?;
        md.push_str(&format!("\n\nPlot: `plots/{stem}.png` (GRPO with the paper's reward `{PAPER_REWARD}` only; the reward variants are plotted in `ablation-rewards.md`).\n\n"));
    }
    md.push_str(&format!("{ROUNDED_NOTE}\n\n"));
    md.push_str("## Paper (Qwen3-1.7B, average over the seven; paper-reported)\n\n| stage | avg |\n|---|---|\n| base | 31.9 |\n| + SFT on raw Pile-NER | 40.3 |\n| + SFT w/o CoT | 60.6 |\n| + SFT with CoT | 63.0 |\n| + GRPO | 65.1 |\n");
    let p = reports_dir.join("ablation-stages.md");
    crate::util::write_atomic(&p, md.as_bytes())?;
    crate::util::write_atomic(&reports_dir.join("ablation-stages.csv"), csv.as_bytes()).map_err(|e| Error::Report(e.to_string()))?;
    Ok(Some(p))
}

/// (base run, trained run) id pairs on the same benchmark sample: each stage against the model
/// it started from, for side-by-side pages.
pub fn base_pairs(runs: &[Run], train: &[TrainRun]) -> Vec<(String, String)> {
    let index = StageIndex::new(train);
    let mut out = Vec::new();
    for r in runs {
        let Some((k, _)) = index.stage_of(r) else { continue };
        if k == 0 {
            continue;
        }
        let base = runs.iter().find(|b| {
            matches!(index.stage_of(b), Some((0, _)))
                && b.scores.limit == r.scores.limit
                && b.scores.seed == r.scores.seed
                && b.scores.decoding == r.scores.decoding
                && b.scores.split == r.scores.split
        });
        if let Some(b) = base {
            out.push((b.id(), r.id()));
        }
    }
    out
}

/// The `grpo` section of `reports/perf.md`: where a GRPO step's time goes, per run (means over
/// its logged steps).
pub fn grpo_perf(train: &[TrainRun], reports_dir: &Path) -> Result<()> {
    let runs: Vec<&TrainRun> = train.iter().filter(|t| t.stage == "grpo" && !t.steps.is_empty()).collect();
    if runs.is_empty() {
        return Ok(());
    }
    let mean = |t: &TrainRun, k: &str| t.steps.iter().filter_map(|x| f(x.get(k))).sum::<f64>() / t.steps.len() as f64;
    let mut md = String::from("## GRPO step (rollouts in llama.cpp, log-probs and update in candle)\n\nFrom each GRPO run's `results/train/<run>/steps.jsonl` (written by `rner report`; the run's command is in `training.md`). A step = export the policy as F16 GGUF and generate G completions per prompt in llama.cpp (rollout), score log-probs of the reference (and of the old policy when `num_iterations` > 1) in candle, then the update(s) (forward + backward + AdamW).\n\n| run | steps | completions/step | mean completion tokens | rollout s | rollout tokens/s | log-prob s | update s | step s | rollout share |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for t in runs {
        let g = t.run.pointer("/config/num_generations").and_then(|v| v.as_u64()).unwrap_or(0) * t.run.pointer("/config/prompts_per_step").and_then(|v| v.as_u64()).unwrap_or(0);
        let (ro, lp, up, st) = (mean(t, "rollout_s"), mean(t, "logp_s"), mean(t, "update_s"), mean(t, "step_s"));
        md.push_str(&format!(
            "| {} | {} | {g} | {:.0} | {ro:.1} | {:.0} | {lp:.1} | {up:.1} | {st:.1} | {:.0}% |\n",
            t.label(),
            t.steps.len(),
            mean(t, "completion_len"),
            mean(t, "rollout_tokens_per_s"),
            100.0 * ro / st.max(1e-9)
        ));
    }
    crate::util::write_section(&reports_dir.join("perf.md"), "grpo", &md)
}

/// A GRPO run's reward weights as `f1=10,schema=1` (empty for other runs).
fn reward_weights(t: &TrainRun) -> String {
    t.run
        .pointer("/config/reward")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|p| Some(format!("{}={}", p.get(0)?.as_str()?, p.get(1)?.as_f64()?))).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

/// The paper's reward weights as a GRPO run records them: the reward ablation's reference row.
const PAPER_REWARD: &str = "f1=10,schema=1";

/// The CSV's `export_rounded_back` field: the share a training log records (empty without one).
fn rounded_csv(t: Option<&TrainRun>) -> String {
    t.and_then(|t| export_rounded(&t.run)).map(|r| format!("{:.4}", r.share())).unwrap_or_default()
}

/// `delta,ci_low,ci_high,p` CSV fields of a paired difference (empty without one).
fn diff_csv(d: Option<&crate::score::PairedDiff>) -> String {
    d.map(|d| format!("{},{},{},{:.4}", d.delta, d.ci95[0], d.ci95[1], d.p)).unwrap_or_else(|| ",,,".into())
}

/// The start a training run is grouped under: its start's name, with `@sha8` of the file it
/// started from when that name has logs of several runs (it trained again; `earlier/`).
fn start_label(t: &TrainRun, train: &[TrainRun]) -> String {
    let init = super::lowres::init_name(&t.init);
    if train.iter().filter(|s| s.name == init).count() < 2 {
        return init;
    }
    match start_log(t, train).and_then(|s| s.export_sha256()) {
        Some(h) => format!("{init} @{}", &h[..h.len().min(8)]),
        None => format!("{init} @?"),
    }
}

/// `reports/ablation-rewards.{md,csv}`: every GRPO run (earlier exports' logs included) with its
/// reward weights and the benchmark runs of its export (same sample blocks as the stage table),
/// grouped by the file it started from.
pub fn rewards(runs: &[Run], train: &[TrainRun], reports_dir: &Path) -> Result<Option<PathBuf>> {
    let grpo: Vec<&TrainRun> = train.iter().filter(|t| t.stage == "grpo").collect();
    let mut rows = Vec::new();
    for t in &grpo {
        let weights = reward_weights(t);
        let from = start_label(t, train);
        for r in runs.iter().filter(|r| r.scores.model == t.name && t.exported_as(r) && r.scores.decoding == "free" && r.zero_shot().iter().all(Option::is_some)) {
            rows.push((t, weights.clone(), from.clone(), r));
        }
    }
    if rows.is_empty() {
        return Ok(None);
    }
    let names: Vec<&str> = ZERO_SHOT_COLUMNS.iter().map(|(_, n)| *n).collect();
    let mut md = String::from("# Reward ablation (ours; the paper has none)\n\nRuns with the same `from` start from the same CoT-tuned checkpoint with the same settings except the reward weights (`--reward`); each is exported and scored on the benchmark sample shown. Compare rewards only within one `from`: when the start trained again under its name, `from` names the file by the first 8 hex digits of its sha256, and a GRPO run trained again with it is listed beside its earlier export (`@sha8 (earlier export)`, its log kept in `results/train/<run>/earlier/<sha8>/`). `parse failures` = answers that do not parse, over all seven sets; `last reward` is the training reward of the last step (its scale depends on the weights).\n\n");
    md.push_str(&format!(
        "| GRPO run | from | reward | sample | {} | avg | Δ avg vs `{PAPER_REWARD}` [95% CI], p | parse failures | last reward | rounded back |\n|---|---|---|---|{}---|---|---|---|---|\n",
        names.join(" | "),
        "---|".repeat(names.len())
    ));
    let mut csv = String::from("run,from,reward,limit,seed,dataset,f1,ci_low,ci_high,parse_failures,delta_vs_paper_reward,delta_ci_low,delta_ci_high,delta_p,export_rounded_back\n");
    // each run against the paper's reward from the same start on the same sample (paired bootstrap)
    let key = |from: &str, r: &Run| (from.to_string(), r.scores.limit, r.scores.seed, r.scores.split.clone());
    let mut diffs = Vec::new();
    for (_, _, from, r) in &rows {
        let reference = rows.iter().find(|(_, w2, f2, r2)| w2 == PAPER_REWARD && key(f2, r2) == key(from, r) && r2.id() != r.id());
        diffs.push(match reference {
            Some((_, _, _, a)) => super::compare::zero_shot_diff(a, r)?,
            None => None,
        });
    }
    // one plot per benchmark sample and starting checkpoint: rewards compare only from one start
    let mut plots: BTreeMap<(Option<usize>, u64, String, String), Vec<super::plot::BarSeries>> = BTreeMap::new();
    for ((t, w, from, r), diff) in rows.into_iter().zip(diffs) {
        let mut values: Vec<Option<(f64, Option<(f64, f64)>)>> = r.zero_shot().iter().map(|d| d.map(|d| (d.f1, Some((d.ci95[0], d.ci95[1]))))).collect();
        values.push(r.average().map(|a| (a, None)));
        plots.entry((r.scores.limit, r.scores.seed, r.scores.split.clone(), from.clone())).or_default().push(super::plot::BarSeries { name: format!("{} ({w})", t.name), values, paper: false });
        let mut cells = Vec::new();
        let mut f1s = Vec::new();
        let mut failures = 0;
        for (i, d) in r.zero_shot().iter().enumerate() {
            match d {
                Some(d) => {
                    cells.push(format!("{:.2} [{:.1}, {:.1}]", d.f1, d.ci95[0], d.ci95[1]));
                    f1s.push(round2(d.f1));
                    failures += d.parse_failures;
                    csv.push_str(&format!(
                        "{},{from},\"{w}\",{},{},{},{},{},{},{},{},{}\n",
                        t.name,
                        r.scores.limit.map(|n| n.to_string()).unwrap_or("full".into()),
                        r.scores.seed,
                        ZERO_SHOT_COLUMNS[i].0,
                        d.f1,
                        d.ci95[0],
                        d.ci95[1],
                        d.parse_failures,
                        diff_csv(diff.as_ref().map(|(each, _)| &each[i])),
                        rounded_csv(Some(t))
                    ));
                }
                None => cells.push("—".into()),
            }
        }
        let avg = if f1s.len() == 7 { format!("**{:.2}**", round2(f1s.iter().sum::<f64>() / 7.0)) } else { "—".into() };
        let last = f(t.steps.last().and_then(|x| x.get("reward"))).map(|v| format!("{v:.2}")).unwrap_or("—".into());
        let sample = r.scores.limit.map(|n| format!("{n}/dataset")).unwrap_or("full".into());
        let delta = diff.as_ref().map(|(_, all)| all.cell()).unwrap_or_else(|| "—".into());
        md.push_str(&format!("| {} | {from} | `{w}` | {sample} | {} | {avg} | {delta} | {failures} | {last} | {} |\n", t.label(), cells.join(" | "), rounded_cell(&t.run)));
    }
    let mut groups: Vec<String> = names.iter().map(|n| n.to_string()).collect();
    groups.push("Avg".into());
    md.push_str(&format!(
        "\nF1 per dataset with its 95% bootstrap CI. *Δ avg*: the run's average F1 minus that of the `{PAPER_REWARD}` run from the same start on the same sentences, with a paired-bootstrap 95% CI and two-sided p ({} replicates, each resampling every set's sentences with the same draws for both runs; replicates tied at 0 count on both sides); the CSV has it per dataset. Plots: ",
        crate::score::BOOTSTRAP_SAMPLES
    ));
    let mut stems = Vec::new();
    for ((limit, seed, split, from), series) in &plots {
        let tag = sample_tag(*limit, *seed, split);
        let stem = format!("ablation-rewards-{tag}-from-{}", super::file_stem(from));
        super::plot::grouped(&format!("Reward ablation ({tag}), GRPO from {from}"), &groups, series, "F1 (%)", &reports_dir.join("plots"), &stem)?;
        stems.push(format!("`plots/{stem}.png`"));
    }
    md.push_str(&stems.join(", "));
    md.push_str(&format!(".\n\n{ROUNDED_NOTE}\n"));
    let p = reports_dir.join("ablation-rewards.md");
    crate::util::write_atomic(&p, md.as_bytes())?;
    crate::util::write_atomic(&reports_dir.join("ablation-rewards.csv"), csv.as_bytes())?;
    Ok(Some(p))
}

/// `reports/plots/sft-<name>.{svg,png}` from the step log.
pub fn plot_sft(reports_dir: &Path, name: &str, log_dir: &Path) -> Result<()> {
    let rows: Vec<crate::train::sft::StepLog> = crate::util::read_jsonl(&log_dir.join("steps.jsonl"))?;
    if rows.is_empty() {
        return Ok(());
    }
    use crate::report::plot::{curves, Curve};
    let named = |n: &str, f: &dyn Fn(&crate::train::sft::StepLog) -> f64| Curve { name: n.to_string(), points: rows.iter().map(|r| (r.step as f64, f(r))).collect() };
    let c = |f: &dyn Fn(&crate::train::sft::StepLog) -> f64| named("", f);
    let mut speed = vec![c(&|r| r.tokens_per_s)];
    if rows.iter().any(|r| r.seq_tokens > 0) {
        // runs resumed across the change log sequence tokens only from then on
        let seq = Curve { name: "sequence tokens".into(), points: rows.iter().filter(|r| r.seq_tokens > 0).map(|r| (r.step as f64, r.seq_tokens as f64 / r.seconds)).collect() };
        speed = vec![named("through the model", &|r| r.tokens_per_s), seq];
    }
    let panels = vec![
        (format!("{name}: training loss (mean token cross-entropy of the assistant turn)"), "loss".to_string(), vec![c(&|r| r.loss)]),
        ("gradient norm before clipping".to_string(), "‖g‖".to_string(), vec![c(&|r| r.grad_norm)]),
        ("throughput".to_string(), "tokens/s".to_string(), speed),
    ];
    curves(&panels, "update", &reports_dir.join("plots"), &format!("sft-{name}"))?;
    Ok(())
}

/// `reports/plots/grpo-<name>.{svg,png}`: reward per component, KL, clip fraction, entropy,
/// completion length.
pub fn plot_grpo(reports_dir: &Path, name: &str, log_dir: &Path) -> Result<()> {
    use crate::report::plot::{curves, Curve};
    use crate::train::grpo::GrpoLog;
    let rows: Vec<GrpoLog> = crate::util::read_jsonl(&log_dir.join("steps.jsonl"))?;
    if rows.is_empty() {
        return Ok(());
    }
    let c = |n: &str, f: &dyn Fn(&GrpoLog) -> f64| Curve { name: n.to_string(), points: rows.iter().map(|r| (r.step as f64, f(r))).collect() };
    let comps: Vec<Curve> = crate::train::reward::Component::ALL
        .iter()
        .map(|k| c(k.name(), &|r: &GrpoLog| r.components.get(k.name()).map(|v| v.0).unwrap_or(f64::NAN)))
        .collect();
    let panels = vec![
        (format!("{name}: total reward (mean over completions)"), "reward".to_string(), vec![c("", &|r| r.reward)]),
        ("reward components (mean, each in [0, 1])".to_string(), "value".to_string(), comps),
        ("KL to the reference (k3, per token)".to_string(), "KL".to_string(), vec![c("", &|r| r.kl)]),
        ("clip fraction and entropy".to_string(), "".to_string(), vec![c("clip fraction", &|r| r.clip_fraction), c("entropy (nats)", &|r| r.entropy)]),
        ("completion length".to_string(), "tokens".to_string(), vec![c("", &|r| r.completion_len)]),
    ];
    curves(&panels, "step", &reports_dir.join("plots"), &format!("grpo-{name}"))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed results and every training log (earlier exports' included).
    fn committed() -> (Vec<Run>, Vec<TrainRun>) {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        (super::super::load_runs(&results).unwrap(), load(&results).unwrap())
    }

    #[test]
    fn export_types_of_logs_old_and_new() {
        let sha = "0".repeat(64);
        assert_eq!(export_type(&(serde_json::json!({"command": "rner sft"}))), None, "no export");
        assert_eq!(export_type(&(serde_json::json!({"export_sha256": sha, "export_type": "f16"}))).as_deref(), Some("f16"));
        assert_eq!(export_type(&(serde_json::json!({"export_sha256": sha, "command": "rner sft --name x"}))).as_deref(), Some("q8_0"), "the old default");
        assert_eq!(export_type(&(serde_json::json!({"export_sha256": sha, "command": "rner sft --export q8-0 --name x"}))).as_deref(), Some("q8_0"));
        assert_eq!(export_type(&(serde_json::json!({"export_sha256": sha, "command": "rner sft --export source"}))).as_deref(), Some("source"));
        assert_eq!(export_type(&(serde_json::json!({"export_sha256": sha, "command": "rner sft --export=f16 --name x"}))).as_deref(), Some("f16"));
        let q8 = serde_json::json!({"export_sha256": sha, "export_type": "q8_0"});
        let f16 = serde_json::json!({"export_sha256": sha, "export_type": "f16"});
        let source = serde_json::json!({"export_sha256": sha, "export_type": "source"});
        assert!(rounded_onto_start(&q8, Some(&q8)) && rounded_onto_start(&source, Some(&q8)));
        assert!(!rounded_onto_start(&f16, Some(&q8)) && !rounded_onto_start(&q8, Some(&f16)) && !rounded_onto_start(&q8, None));
        assert!(!rounded_onto_start(&serde_json::json!({"command": "rner sft"}), Some(&q8)), "an unfinished run has no export yet");
        // a measured rounding decides, whatever the types and the start
        let measured = |moved: u64, back: u64, ty: &str| serde_json::json!({"export_sha256": sha, "export_type": ty, "export_rounded": {"moved": moved, "rounded_back": back}});
        assert!(rounded_onto_start(&measured(1000, 990, "source"), None), "a source export of the Q4_1 base");
        assert!(!rounded_onto_start(&measured(1000, 10, "q8_0"), Some(&q8)));
        assert!(rounded_onto_start(&measured(1000, 600, "f16"), Some(&f16)));
        assert_eq!(export_rounded(&measured(4, 1, "f16")).map(|r| r.share()), Some(0.25));
        assert_eq!(rounded_cell(&measured(1000, 851, "q8_0")), "85.1% †");
        assert_eq!(rounded_cell(&measured(1000, 500, "f16")), "50.0%", "half is not most");
        assert_eq!(rounded_cell(&f16), "not measured");
        assert_eq!(rounded_cell(&measured(0, 0, "f16")), "nothing moved", "a run whose updates were all zero");
        // the committed cells: CrossNER-AI's retrained ReasoningNER cells are F16, the start Q8_0
        let (_, train) = committed();
        let current = |n: &str| &train.iter().find(|t| t.name == n && t.earlier.is_none()).unwrap().run;
        assert_eq!(export_type(current("cpu-grpo-paper")).as_deref(), Some("q8_0"));
        assert!(!rounded_onto_start(current("cpu-lr-crossner_ai-p25-s1-reasoningner"), Some(current("cpu-grpo-paper"))));
        let earlier = train.iter().filter(|t| t.name == "cpu-lr-crossner_ai-p25-s1-reasoningner" && t.earlier.is_some());
        assert!(earlier.into_iter().any(|t| rounded_onto_start(&t.run, Some(current("cpu-grpo-paper")))), "its Q8_0 log, kept in earlier/");
    }

    /// The log whose export's sha256 starts with `sha8`.
    fn log_by_export<'a>(train: &'a [TrainRun], sha8: &str) -> &'a TrainRun {
        train.iter().find(|t| t.export_sha256().is_some_and(|h| h.starts_with(sha8))).unwrap_or_else(|| panic!("no log exported {sha8}"))
    }

    /// `name`, with `@sha8` when `name` or `start` has logs of several files, as the tables name it.
    fn named(train: &[TrainRun], name: &str, sha8: &str, start: &str) -> String {
        let several = |n: &str| train.iter().filter(|t| t.name == n).count() > 1;
        if several(name) || several(start) { format!("{name} @{sha8}") } else { name.to_string() }
    }

    // The committed chain of the cpu preset: cpu-sft-cot exported efe1bbb2, the GRPO runs started
    // from that file; cpu-grpo-paper exported a10e9a40. Trained again on another machine, the
    // CoT-tuned model gave the same bytes (its first log kept in earlier/efe1bbb2, and left out
    // as the same file). The tests below hold whichever of those logs is current, and whether or
    // not a retrain gave other bytes.

    #[test]
    fn the_reward_ablation_names_each_run_s_starting_checkpoint() {
        // real runs: the cpu preset's reward variants start from cpu-sft-cot, the earlier ones from
        // smollm2-135m-sft-cot; both families are scored on the 50-sentence sample
        let (runs, train) = committed();
        let d = tempfile::tempdir().unwrap();
        let md = std::fs::read_to_string(rewards(&runs, &train, d.path()).unwrap().unwrap()).unwrap();
        // the row of `run` grouped under `from` (a run's label may carry `@sha8 (earlier export)`)
        let row = |run: &str, from: &str| {
            md.lines().find(|l| (l.starts_with(&format!("| {run} |")) || l.starts_with(&format!("| {run} @"))) && l.contains(&format!(" | {from} | "))).unwrap_or_else(|| panic!("no row {run} from {from}:\n{md}")).to_string()
        };
        // each GRPO run names the file it started from where cpu-sft-cot has logs of two files
        let old = &named(&train, "cpu-sft-cot", "efe1bbb2", "smollm2-135m-instruct")[..];
        assert!(row("cpu-grpo-paper", old).contains(" | `f1=10,schema=1` | 50/dataset |"), "{md}");
        assert!(row("cpu-grpo-schemaonly", old).contains(" | `schema=1` | 50/dataset |"), "{md}");
        assert!(row("smollm2-135m-sft-cot-grpo-f1only", "smollm2-135m-sft-cot").starts_with("| smollm2-135m-sft-cot-grpo-f1only | smollm2-135m-sft-cot | `f1=10` |"), "{md}");
        assert!(md.contains("| GRPO run | from | reward | sample |"));
        // the Δ column (cell 12): each variant against the paper's reward from the same file on
        // the same sentences; the reference row itself and a start without one have none
        let delta = |run: &str, from: &str| row(run, from).split(" | ").nth(12).unwrap().to_string();
        let avg = |run: &str, from: &str| row(run, from).split(" | ").nth(11).unwrap().trim_matches('*').parse::<f64>().unwrap();
        assert_eq!(delta("cpu-grpo-paper", old), "—");
        let schema = delta("cpu-grpo-schemaonly", old);
        assert!(schema.starts_with(&format!("{:+.2} [", round2(avg("cpu-grpo-schemaonly", old) - avg("cpu-grpo-paper", old)))), "{schema}");
        assert!(schema.ends_with("p < 0.002"), "saying nothing loses to the paper reward on every resample: {schema}");
        assert!(delta("smollm2-135m-sft-cot-grpo-f1only", "smollm2-135m-sft-cot").contains("], p "), "{md}");
        // the last cell: the export's rounding as the run's log records it
        let rounded = |run: &str, from: &str| row(run, from).rsplit(" | ").next().unwrap().trim_end_matches(" |").to_string();
        assert_eq!(rounded("cpu-grpo-paper", old), rounded_cell(&log_by_export(&train, "a10e9a40").run));
        assert_eq!(rounded("smollm2-135m-sft-cot-grpo-f1only", "smollm2-135m-sft-cot"), "not measured", "trained long before the count");
        assert!(md.contains(ROUNDED_NOTE));
    }

    #[test]
    fn each_stage_is_compared_with_the_model_it_was_trained_from() {
        // real runs, 50-sentence sample: SFT from the base, GRPO from the cpu-sft-cot file its
        // GRPO runs started from (efe1bbb2), not the first file's run (c85b428a)
        let (runs, train) = committed();
        let d = tempfile::tempdir().unwrap();
        let md = std::fs::read_to_string(stages(&runs, &train, d.path()).unwrap().unwrap()).unwrap();
        let block = md.split("## ").find(|b| b.starts_with("test, seeded sample of 50 ")).unwrap();
        let row = |label: &str| block.lines().find(|l| l.starts_with(&format!("| {label} |"))).unwrap_or_else(|| panic!("no row {label}:\n{block}")).to_string();
        let cell = |label: &str, i: usize| row(label).split(" | ").nth(i).unwrap().to_string();
        let avg = |label: &str| cell(label, 8).trim_matches('*').parse::<f64>().unwrap();
        let cot = format!("+ SFT with CoT ({})", named(&train, "cpu-sft-cot", "efe1bbb2", "smollm2-135m-instruct"));
        let grpo = format!("+ GRPO ({})", named(&train, "cpu-grpo-paper", "a10e9a40", "cpu-sft-cot"));
        let (base, cot, grpo) = ("base (smollm2-135m-instruct)", &cot[..], &grpo[..]);
        assert!(cell(base, 9).starts_with('—'), "{block}");
        assert!(cell(cot, 9).starts_with(&format!("{:+.2} [", round2(avg(cot) - avg(base)))) && cell(cot, 9).ends_with("(vs smollm2-135m-instruct)"), "{block}");
        assert!(cell(grpo, 9).starts_with(&format!("{:+.2} [", round2(avg(grpo) - avg(cot)))) && cell(grpo, 9).ends_with("(vs cpu-sft-cot)"), "{block}");
        // the last cell: what each stage's export kept of its training, as its log records it
        assert_eq!(cell(base, 10), "— |", "the base is no training");
        let grpo_log = log_by_export(&train, "a10e9a40");
        assert_eq!(cell(grpo, 10), format!("{} |", rounded_cell(&grpo_log.run)));
        if let Some(r) = export_rounded(&grpo_log.run) {
            assert_eq!(cell(grpo, 10).contains('†'), r.lost(), "{block}");
        }
    }

    #[test]
    fn a_run_of_a_retrained_file_is_no_stage_of_the_training_run() {
        // real runs: the cpu preset's CoT-tuned model on the 50-sentence sample, scored once from
        // the first training's file (c85b428a, lost with its machine, its log not kept) and once
        // from the retraining's export (efe1bbb2), both under the model name cpu-sft-cot
        let (runs, train) = committed();
        let index = StageIndex::new(&train);
        let run_of = |id: &str| runs.iter().find(|r| r.id() == id).unwrap_or_else(|| panic!("no committed run {id}"));
        let export = log_by_export(&train, "efe1bbb2").export_sha256();
        let logged = run_of("cpu-sft-cot-direct-free-test-n50-s42-6d0c65ba");
        assert_eq!(logged.model_sha256.as_deref(), export, "this run scored the logged export");
        assert_eq!(index.stage_of(logged).map(|s| s.0), Some(2));
        // the same name, other bytes that no log exported: no stage
        let first = run_of("cpu-sft-cot-direct-free-test-n50-s42-86d07ef7");
        assert_eq!(first.scores.model, logged.scores.model);
        assert!(train.iter().all(|t| t.export_sha256() != first.model_sha256.as_deref()));
        assert_eq!(index.stage_of(first), None);
        let mut other = logged.clone();
        // a run without a manifest's sha is taken by its name (the current log), as before
        other.model_sha256 = None;
        assert_eq!(index.stage_of(&other).map(|s| s.0), Some(2));
        // the base model has no export to compare with
        let base = runs.iter().find(|r| r.scores.model == "smollm2-135m-instruct" && r.scores.limit == Some(50)).unwrap();
        assert_eq!(index.stage_of(base).map(|s| s.0), Some(0));
    }

    /// A copy of `t` as another run of its name: exported as `export`, started from `from`
    /// (sha256), logged at `date`; `earlier` as given.
    fn retrained(t: &TrainRun, export: &str, from: Option<&str>, date: &str, earlier: Option<&str>) -> TrainRun {
        let mut t = t.clone();
        // a log of its own: since when its bytes were exported is for `load` to say
        t.run.as_object_mut().unwrap().remove("exported_since");
        t.run["export_sha256"] = serde_json::json!(export);
        t.run["date"] = serde_json::json!(date);
        if let Some(f) = from {
            t.run[if t.stage == "grpo" { "source_sha256" } else { "model_sha256" }] = serde_json::json!(f);
        }
        t.earlier = earlier.map(str::to_string);
        t
    }

    #[test]
    fn a_chain_trained_again_stands_beside_the_earlier_one() {
        // the committed chain (cpu-sft-cot efe1bbb2 → the GRPO runs), then cpu-sft-cot and
        // cpu-grpo-paper trained again under their names (files 1111… and 2222…), their earlier
        // logs kept; the other reward variants not (yet) trained again
        let (runs, all) = committed();
        let (new_cot, new_grpo) = ("1".repeat(64), "2".repeat(64));
        let mut train: Vec<TrainRun> = all.iter().filter(|t| t.name != "cpu-sft-cot" && t.name != "cpu-grpo-paper").cloned().collect();
        let (cot, paper) = (log_by_export(&all, "efe1bbb2"), log_by_export(&all, "a10e9a40"));
        let later = "2030-01-01T00:00:00Z";
        // the first training's date (a log trained again to the same bytes says since when)
        let first = |t: &TrainRun| t.run.get("exported_since").unwrap_or(&t.run["date"]).as_str().unwrap().to_string();
        train.push(retrained(cot, cot.export_sha256().unwrap(), None, &first(cot), Some("efe1bbb2")));
        train.push(retrained(paper, paper.export_sha256().unwrap(), None, &first(paper), Some("a10e9a40")));
        train.push(retrained(cot, &new_cot, None, later, None));
        train.push(retrained(paper, &new_grpo, Some(&new_cot), "2030-01-02T00:00:00Z", None));
        // runs of the new files: the old files' runs with the new bytes
        let committed_runs = runs.clone();
        let of = |id: &str| committed_runs.iter().find(|r| r.id() == id).unwrap().clone();
        let mut runs = runs;
        let (mut c, mut g) = (of("cpu-sft-cot-direct-free-test-n50-s42-6d0c65ba"), of("cpu-grpo-paper-direct-free-test-n50-s42-9fd5750b"));
        c.model_sha256 = Some(new_cot.clone());
        g.model_sha256 = Some(new_grpo.clone());
        // distinct ids, as two runs' folders would have
        c.scores.run_id = "new-cot".into();
        g.scores.run_id = "new-grpo".into();
        runs.push(c.clone());
        runs.push(g.clone());
        let index = StageIndex::new(&train);
        let old_grpo = of("cpu-grpo-paper-direct-free-test-n50-s42-9fd5750b");
        let old_cot = of("cpu-sft-cot-direct-free-test-n50-s42-6d0c65ba");
        // each run is the stage of the log that exported its file, named by that file
        assert_eq!(index.stage_of(&c).unwrap().1, "+ SFT with CoT (cpu-sft-cot @11111111)");
        assert_eq!(index.stage_of(&g).unwrap().1, "+ GRPO (cpu-grpo-paper @22222222)");
        assert_eq!(index.stage_of(&old_cot).unwrap().1, "+ SFT with CoT (cpu-sft-cot @efe1bbb2)");
        assert_eq!(index.stage_of(&old_grpo).unwrap().1, "+ GRPO (cpu-grpo-paper @a10e9a40)");
        // a variant not trained again: its start is the earlier file, so it is tagged too
        let f1 = of("cpu-grpo-f1only-direct-free-test-n50-s42-f34dd264");
        assert_eq!(index.stage_of(&f1).unwrap().1, "+ GRPO (cpu-grpo-f1only @6b0a9ed4)");
        // each trained stage is compared with the file it started from, and no other
        assert!(index.is_start_of(&c_base(&runs), &c));
        assert!(index.is_start_of(&c, &g) && !index.is_start_of(&old_cot, &g));
        assert!(index.is_start_of(&old_cot, &old_grpo) && !index.is_start_of(&c, &old_grpo));
        assert!(index.is_start_of(&old_cot, &f1) && !index.is_start_of(&c, &f1));
        // the reward ablation groups the runs by that file: the new paper-reward run is alone
        // under the new file, the earlier chain keeps its reference row for the Δ
        let d = tempfile::tempdir().unwrap();
        let md = std::fs::read_to_string(rewards(&runs, &train, d.path()).unwrap().unwrap()).unwrap();
        let rows: Vec<&str> = md.lines().filter(|l| l.starts_with("| cpu-grpo-")).collect();
        let new_rows: Vec<&&str> = rows.iter().filter(|l| l.contains(" | cpu-sft-cot @11111111 | ")).collect();
        assert_eq!(new_rows.len(), 1, "{md}");
        assert!(new_rows[0].starts_with("| cpu-grpo-paper | cpu-sft-cot @11111111 | `f1=10,schema=1` |"), "{md}");
        assert!(rows.iter().any(|l| l.starts_with("| cpu-grpo-paper @a10e9a40 (earlier export) | cpu-sft-cot @efe1bbb2 | ")), "{md}");
        let schema = rows.iter().find(|l| l.starts_with("| cpu-grpo-schemaonly ") && l.contains(" | cpu-sft-cot @efe1bbb2 | ")).unwrap();
        assert!(schema.split(" | ").nth(12).unwrap().ends_with("p < 0.002"), "compared with the earlier paper-reward run: {schema}");
    }

    /// The base model's run on the 50-sentence sample.
    fn c_base(runs: &[Run]) -> Run {
        runs.iter().find(|r| r.scores.model == "smollm2-135m-instruct" && r.scores.limit == Some(50) && r.scores.decoding == "free" && r.scores.split == "test").unwrap().clone()
    }

    #[test]
    fn a_start_trained_again_to_the_same_bytes_keeps_what_started_from_it() {
        let log = |sha: &str, date: &str| serde_json::json!({"export_sha256": sha.repeat(64), "date": date});
        let (a1, b2, a3, a4) = (log("a", "2026-01-01T00:00:00Z"), log("b", "2026-01-02T00:00:00Z"), log("a", "2026-01-03T00:00:00Z"), log("a", "2026-01-04T00:00:00Z"));
        // newest first, the line of logs of the same bytes reaches back to a3 (b2 breaks it)
        assert_eq!(exported_since(&a4, &[a1.clone(), b2.clone(), a3.clone()]).as_deref(), Some("2026-01-03T00:00:00Z"));
        assert_eq!(exported_since(&a4, &[a1.clone()]).as_deref(), Some("2026-01-01T00:00:00Z"));
        assert_eq!(exported_since(&a4, &[b2.clone()]), None);
        assert_eq!(exported_since(&a4, &[]), None);
        // a dependant without a recorded sha256 that began between a3 and a4 read these bytes
        let dependant = serde_json::json!({"date": "2026-01-03T12:00:00Z"});
        let mut start = a4.clone();
        assert!(!from_export_of(&dependant, &start));
        start["exported_since"] = serde_json::json!("2026-01-03T00:00:00Z");
        assert!(from_export_of(&dependant, &start));
        // read_log sets it from the logs on disk
        let d = tempfile::tempdir().unwrap();
        crate::util::write_json(&d.path().join("run.json"), &a4).unwrap();
        crate::util::write_json(&d.path().join("earlier/aaaaaaaa/run.json"), &a1).unwrap();
        assert_eq!(read_log(d.path()).unwrap()["exported_since"], "2026-01-01T00:00:00Z");
        crate::util::write_json(&d.path().join("earlier/bbbbbbbb/run.json"), &b2).unwrap();
        assert!(read_log(d.path()).unwrap().get("exported_since").is_none());
    }

    #[test]
    fn load_reads_the_logs_of_earlier_exports() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path().join("train/m");
        let log = |p: &Path, sha: &str| crate::util::write_json(&p.join("run.json"), &serde_json::json!({"name": "m", "stage": "sft", "model": "base", "export_sha256": sha})).unwrap();
        log(&dir, &"a".repeat(64));
        std::fs::create_dir_all(dir.join("earlier/bbbbbbbb")).unwrap();
        log(&dir.join("earlier/bbbbbbbb"), &"b".repeat(64));
        // an earlier log of the current export's bytes (trained again to the same file) is left out
        std::fs::create_dir_all(dir.join("earlier/aaaaaaaa")).unwrap();
        log(&dir.join("earlier/aaaaaaaa"), &"a".repeat(64));
        let train = load(d.path()).unwrap();
        let got: Vec<(Option<&str>, Option<&str>)> = train.iter().map(|t| (t.earlier.as_deref(), t.export_sha256().map(|h| &h[..1]))).collect();
        assert_eq!(got, vec![(None, Some("a")), (Some("bbbbbbbb"), Some("b"))]);
        assert_eq!(train[1].label(), "m @bbbbbbbb (earlier export)");
        // an earlier log takes only runs that name its file; the current one also runs without a sha
        let (runs, _) = committed();
        let mut r = runs[0].clone();
        r.model_sha256 = None;
        assert!(train[0].exported_as(&r) && !train[1].exported_as(&r));
        r.model_sha256 = Some("b".repeat(64));
        assert!(!train[0].exported_as(&r) && train[1].exported_as(&r));
    }
}
