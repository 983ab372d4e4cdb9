//! `rner reproduce [--preset NAME]`: the whole chain of a preset (`baselines/presets/`), step by
//! step, each skipped when its result exists and resumed inside when it allows; then the reports.
//!
//! Every step is run as the equivalent `rner` command (printed, and recorded in the step log and
//! in the manifests it writes), so any step can be rerun or changed by hand.
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::Global;
use crate::run::preset::{human_time, size_factor, Preset, Step, StepKind, COT_INIT};

#[derive(Debug, Args)]
pub struct ReproduceArgs {
    /// a preset in baselines/presets/ (smoke, cpu, paper) or a TOML file
    #[arg(long, default_value = "smoke")]
    pub preset: String,
    /// print the plan and its time estimate; run nothing
    #[arg(long)]
    pub dry_run: bool,
    /// run a GPU preset (`cpu_ok = false`) on a machine without CUDA
    #[arg(long)]
    pub force: bool,
    /// llama.cpp threads for generation (0: all cores)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// only rewrite reports/reproduce-<preset>.md from the step log
    #[arg(long)]
    pub summary: bool,
    /// where training checkpoints go (large; git-ignored)
    #[arg(long, default_value = "checkpoints")]
    pub checkpoints: PathBuf,
    /// run only the steps whose ids match one of these patterns (comma-separated; `*` matches any
    /// run of characters), in the plan's order; the others are left as they are for a later run
    #[arg(long, value_delimiter = ',', value_name = "STEPS")]
    pub only: Vec<String>,
    /// stop within this time from the start (`2h30m`, `90m`, `45s`, or seconds): after the first
    /// step (which starts in any case), a step starts only when its expected time (the plan's)
    /// fits in what is left, and the step running at the end is interrupted as by Ctrl-C (it keeps
    /// what it did; a rerun resumes it; an update or model load in flight finishes first). For runs
    /// in time-limited jobs; exits with 75 when it stopped before the steps were all run
    #[arg(long, value_name = "DURATION", value_parser = parse_duration)]
    pub stop_after: Option<std::time::Duration>,
}

/// The file names of a training log's `--data` files.
fn data_file_names(log: &serde_json::Value) -> Vec<String> {
    let names = log.get("data").and_then(|d| d.as_array()).map(|a| a.iter().filter_map(|v| v.as_str()).filter_map(|p| Path::new(p).file_name()).map(|f| f.to_string_lossy().into_owned()).collect());
    names.unwrap_or_default()
}

/// The exit code of a run that `--stop-after` ended early (EX_TEMPFAIL: run it again later).
pub const STOPPED_FOR_TIME: u8 = 75;

/// `2h30m`, `90m`, `45s`, `1h`, or a number of seconds.
fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    let bad = || format!("{s:?}: expected a duration such as 2h30m, 90m, 45s or 3600");
    let t = s.trim();
    let d = match t.parse::<u64>() {
        Ok(secs) => std::time::Duration::from_secs(secs),
        Err(_) => units(t).ok_or_else(bad)?,
    };
    if d.is_zero() {
        return Err(format!("{s:?}: a zero duration leaves no time for any step"));
    }
    Ok(d)
}

/// `2h30m`-style durations (see [`parse_duration`]); None when malformed or too large.
fn units(t: &str) -> Option<std::time::Duration> {
    // units in the order h, m, s, each at most once
    let (mut total, mut num, mut last_unit) = (0u64, String::new(), u64::MAX);
    for c in t.chars() {
        if c.is_ascii_digit() {
            num.push(c);
            continue;
        }
        let unit = match c {
            'h' => 3600,
            'm' => 60,
            's' => 1,
            _ => return None,
        };
        let n: u64 = num.parse().ok()?;
        if unit >= last_unit {
            return None;
        }
        total = total.checked_add(n.checked_mul(unit)?)?;
        last_unit = unit;
        num.clear();
    }
    (num.is_empty() && !t.is_empty()).then(|| std::time::Duration::from_secs(total))
}

/// `pattern` as an anchored regex, where `*` stands for any run of characters.
fn id_pattern(pattern: &str) -> regex::Regex {
    regex::Regex::new(&format!("^{}$", regex::escape(pattern).replace(r"\*", ".*"))).expect("an escaped pattern is a valid regex")
}

/// Which steps `--only` selects (all of them without it); a pattern that matches no step is an
/// error naming it.
fn selected(steps: &[Step], only: &[String], preset: &str) -> anyhow::Result<Vec<bool>> {
    let patterns: Vec<regex::Regex> = only.iter().map(|p| id_pattern(p)).collect();
    if let Some((p, _)) = only.iter().zip(&patterns).find(|(_, r)| !steps.iter().any(|s| r.is_match(&s.id))) {
        anyhow::bail!("--only {p}: no step of preset {preset} has a matching id (`rner reproduce --preset {preset} --dry-run` lists them)");
    }
    Ok(steps.iter().map(|s| patterns.is_empty() || patterns.iter().any(|r| r.is_match(&s.id))).collect())
}

/// One row of `results/reproduce/<preset>/steps.jsonl`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StepRecord {
    pub id: String,
    /// done | skipped (its result existed) | not_run (e.g. no API key) | interrupted
    pub status: String,
    pub commands: Vec<String>,
    pub seconds: f64,
    pub estimate_s: f64,
    pub note: String,
    pub date: String,
    /// where it ran ([`this_machine`]); empty in records written before the field
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub machine: String,
}

/// The machine a step runs on, as the step log records it: CPU model and core count.
fn this_machine() -> String {
    format!("{}, {} CPUs", crate::util::cpu_model(), crate::util::cpus())
}

/// The summary's sentence on where the measured times come from: this machine when every record
/// says so, else the record count per machine (a preset run across sessions on other machines).
fn machines_line(rows: &[StepRecord]) -> String {
    let here = this_machine();
    if rows.iter().all(|r| r.machine == here) {
        return format!("Times are this machine's ({here}).");
    }
    let mut per: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for r in rows {
        *per.entry(if r.machine.is_empty() { "not recorded (records before the step log named the machine)" } else { r.machine.as_str() }).or_default() += 1;
    }
    let per: Vec<String> = per.iter().map(|(m, n)| format!("{m}: {n}")).collect();
    format!("Measured times are from the machine each step ran on (step-log records per machine: {}); this summary was written on {here}.", per.join("; "))
}

fn steps_log(g: &Global, p: &Preset) -> PathBuf {
    g.results.join("reproduce").join(&p.name).join("steps.jsonl")
}

/// Ids of the steps the step log records as done or already there in earlier sessions.
fn done_before(rows: &[StepRecord]) -> std::collections::HashSet<String> {
    rows.iter().filter(|r| r.status == "done" || r.status == "skipped").map(|r| r.id.clone()).collect()
}

/// Parse `argv` as the flags of one command, exactly as typed on the command line.
fn parse_flags<T: clap::Args>(argv: &[String]) -> anyhow::Result<T> {
    #[derive(clap::Parser)]
    struct Wrap<T: clap::Args> {
        #[command(flatten)]
        a: T,
    }
    let w = <Wrap<T> as clap::Parser>::try_parse_from(std::iter::once("rner".to_string()).chain(argv.iter().cloned()))?;
    Ok(w.a)
}

/// `--decoding NAME` unless free (the paper's protocol, the default: commands stay as before).
fn decoding_flag(d: crate::prompt::grammar::Decoding, argv: &mut Vec<String>) {
    if !d.is_free() {
        argv.extend(["--decoding".into(), d.name().into()]);
    }
}

fn shell(cmd: &str, argv: &[String]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| if a.contains([' ', ',', '=']) && !a.starts_with("--") { format!("'{a}'") } else { a.clone() }).collect();
    format!("rner {cmd} {}", quoted.join(" "))
}

/// Print and record the command a step runs, and parse its flags; manifests written while the
/// returned guard lives record the command.
fn step_command<T: clap::Args>(name: &str, argv: &[String], commands: &mut Vec<String>) -> anyhow::Result<(T, super::StepCommand)> {
    let cmd = shell(name, argv);
    commands.push(cmd.clone());
    eprintln!("  $ {cmd}");
    let a: T = parse_flags(argv)?;
    Ok((a, super::StepCommand::set(&cmd)))
}

struct Ctx<'a> {
    g: &'a Global,
    p: &'a Preset,
    threads: usize,
    checkpoints: PathBuf,
    /// the runs under results/, read once when a step first asks
    runs: std::cell::OnceCell<Vec<crate::report::Run>>,
}

impl Ctx<'_> {
    fn model_file(&self, name: &str) -> PathBuf {
        self.g.models.join(format!("{name}.gguf"))
    }

    /// A training step is done when its export exists.
    fn trained(&self, name: &str) -> bool {
        self.model_file(name).is_file()
    }

    /// The id of a complete run, under this preset's evaluation settings, of the file that training
    /// run `name` exported (by the sha256 its log `results/train/<name>/run.json` records), over
    /// `datasets` of the test split; None when the log, its export or such a run is missing.
    /// It lets a step whose only use of the file is that score pass over it where the file is not
    /// (a clean clone of committed results, another machine): training again would give other
    /// bytes (a new run) and overwrite the committed log.
    fn scored_export(&self, name: &str, datasets: &[&str], limit: Option<usize>) -> Option<String> {
        let run = self.train_log(name)?;
        let sha = crate::report::training::export_sha256(&run)?.to_string();
        let runs = self.runs.get_or_init(|| {
            crate::report::load_runs(&self.g.results).unwrap_or_else(|e| {
                tracing::warn!("{e}: no committed score stands for a missing file this time");
                Vec::new()
            })
        });
        let e = &self.p.eval;
        runs.iter()
            .find(|r| {
                let s = &r.scores;
                s.model == name
                    && r.model_sha256.as_deref() == Some(sha.as_str())
                    && s.split == "test"
                    && s.limit == limit
                    && (limit.is_none() || s.seed == e.seed)
                    && s.decoding == e.decoding.name()
                    && datasets.iter().all(|d| s.datasets.get(*d).is_some_and(|x| x.complete()))
            })
            .map(|r| r.id())
    }

    /// The flags of `rner eval` for `model` over `datasets` of `split`.
    fn eval_argv(&self, model: &str, datasets: &str, split: &str, limit: Option<usize>) -> Vec<String> {
        let mut argv: Vec<String> = vec!["--model".into(), model.into(), "--datasets".into(), datasets.into(), "--split".into(), split.into()];
        if let Some(n) = limit {
            argv.extend(["--limit".into(), n.to_string()]);
        }
        argv.extend(["--seed".into(), self.p.eval.seed.to_string(), "--parallel".into(), self.p.eval.parallel.to_string()]);
        if let Some(m) = self.p.eval.max_tokens {
            argv.extend(["--max-tokens".into(), m.to_string()]);
        }
        decoding_flag(self.p.eval.decoding, &mut argv);
        if self.threads > 0 {
            argv.extend(["--threads".into(), self.threads.to_string()]);
        }
        argv
    }

    /// Run `rner eval` on `model` over `datasets` of `split`: done, skipped (every row was there) or
    /// interrupted.
    fn eval(&self, model: &str, datasets: &str, split: &str, limit: Option<usize>, commands: &mut Vec<String>) -> anyhow::Result<&'static str> {
        let argv = self.eval_argv(model, datasets, split, limit);
        let (a, _c): (super::eval::EvalArgs, _) = step_command("eval", &argv, commands)?;
        let out = super::eval::execute(self.g, &a)?;
        Ok(if out.interrupted {
            "interrupted"
        } else if out.generated == 0 {
            "skipped"
        } else {
            "done"
        })
    }

    /// The flags of `rner cot` for stage 1.
    fn cot_argv(&self) -> Vec<String> {
        let p = self.p;
        let out = p.cot_file(&self.g.results);
        let mut argv: Vec<String> = vec!["--teacher".into(), p.cot.teacher.clone(), "--sources".into(), p.cot.sources.join(",")];
        if let Some(n) = p.cot.per_source {
            argv.extend(["--per-source".into(), n.to_string()]);
        }
        if let Some(n) = p.cot.limit {
            argv.extend(["--limit".into(), n.to_string()]);
        }
        if let Some(n) = p.cot.until_kept {
            argv.extend(["--until-kept".into(), n.to_string()]);
        }
        if let Some(x) = p.cot.max_empty_share {
            argv.extend(["--max-empty-share".into(), x.to_string()]);
        }
        argv.extend(["--max-cot-tokens".into(), p.cot.max_cot_tokens.to_string(), "--parallel".into(), p.cot.parallel.to_string(), "--out".into(), out.display().to_string()]);
        decoding_flag(p.cot.decoding, &mut argv);
        if self.threads > 0 {
            argv.extend(["--threads".into(), self.threads.to_string()]);
        }
        argv
    }

    /// The flags of `rner cot` for a low-resource set's train split (its CoT-target cells).
    fn lr_cot_argv(&self, dataset: &str) -> Vec<String> {
        let p = self.p;
        let c = p.low_resource.as_ref().and_then(|lr| lr.cot_targets.as_ref()).expect("planned from it");
        let out = p.lr_cot_file(&self.g.results, dataset).expect("planned from it");
        let mut argv: Vec<String> = vec!["--teacher".into(), c.teacher.clone(), "--sources".into(), dataset.into(), "--split".into(), "train".into()];
        argv.extend(["--max-cot-tokens".into(), c.max_cot_tokens.to_string(), "--parallel".into(), c.parallel.to_string(), "--out".into(), out.display().to_string()]);
        decoding_flag(c.decoding, &mut argv);
        if self.threads > 0 {
            argv.extend(["--threads".into(), self.threads.to_string()]);
        }
        argv
    }

    /// Whether stage 1 decided (kept or rejected) every sentence of `dataset`'s train split.
    fn lr_cot_covered(&self, dataset: &str) -> bool {
        let Some(out) = self.p.lr_cot_file(&self.g.results, dataset) else { return false };
        let decided = crate::train::cot::decided(&out).map(|(ids, _)| ids.len()).unwrap_or(0);
        let n = train_sizes(self.g)(dataset);
        n > 0 && decided >= n
    }

    /// The flags of `rner sft` for stage 2 (`target` cot, or direct for the ablation).
    fn sft_argv(&self, target: &str) -> Vec<String> {
        let p = self.p;
        let name = p.run_name(&format!("sft-{target}"));
        let mut argv: Vec<String> = vec!["--model".into(), p.student.clone(), "--target".into(), target.into(), "--name".into(), name];
        for d in std::iter::once(p.cot_file(&self.g.results)).chain(p.sft.extra_data.iter().cloned()) {
            argv.extend(["--data".into(), d.display().to_string()]);
        }
        if let Some(t) = &p.tokenizer {
            argv.extend(["--tokenizer".into(), t.display().to_string()]);
        }
        argv.extend([
            "--epochs".into(),
            p.sft.epochs.to_string(),
            "--batch".into(),
            p.sft.batch.to_string(),
            "--lr".into(),
            p.sft.lr.to_string(),
            "--max-len".into(),
            p.sft.max_len.to_string(),
            "--micro-tokens".into(),
            p.sft.micro_tokens.to_string(),
        ]);
        if let Some(n) = p.sft.limit {
            argv.extend(["--limit".into(), n.to_string()]);
        }
        argv.extend(["--checkpoints".into(), self.checkpoints.display().to_string()]);
        argv
    }

    /// The flags of `rner grpo` for reward variant `index` (stage 3 and the reward ablation).
    fn grpo_argv(&self, index: usize) -> Vec<String> {
        let p = self.p;
        let g = &p.grpo;
        let mut argv: Vec<String> = vec![
            "--init".into(),
            self.init_of(&p.run_name("sft-cot")),
            "--name".into(),
            p.grpo_name(index),
            "--reward".into(),
            g.rewards[index].weights.clone(),
            "--steps".into(),
            g.steps.to_string(),
            "--prompts-per-step".into(),
            g.prompts_per_step.to_string(),
            "--num-generations".into(),
            g.num_generations.to_string(),
            "--num-iterations".into(),
            g.num_iterations.to_string(),
            "--max-completion-length".into(),
            g.max_completion_length.to_string(),
            "--pool".into(),
            g.pool.to_string(),
            "--lr".into(),
            g.lr.to_string(),
            "--beta".into(),
            g.beta.to_string(),
            "--micro".into(),
            g.micro.to_string(),
            "--save-every".into(),
            "2".into(),
        ];
        decoding_flag(g.decoding, &mut argv);
        argv.extend(["--checkpoints".into(), self.checkpoints.display().to_string()]);
        argv
    }

    /// The flags of `rner sft` for one low-resource cell, trained from `from`.
    fn low_resource_argv(&self, from: String, dataset: &str, fraction: f64, seed: u64, name: &str, init: &str) -> Vec<String> {
        let p = self.p;
        let lr = p.low_resource.as_ref().expect("planned from it");
        let mut argv: Vec<String> = vec!["--model".into(), from, "--train-set".into(), dataset.into(), "--fraction".into(), fraction.to_string()];
        match p.lr_cot_file(&self.g.results, dataset).filter(|_| init == COT_INIT) {
            Some(data) => argv.extend(["--target".into(), "cot".into(), "--data".into(), data.display().to_string()]),
            None => argv.extend(["--target".into(), "direct".into()]),
        }
        argv.extend([
            "--name".into(),
            name.into(),
            "--seed".into(),
            seed.to_string(),
            "--epochs".into(),
            lr.epochs.to_string(),
            "--batch".into(),
            lr.batch.to_string(),
            "--lr".into(),
            lr.lr.to_string(),
            "--save-every".into(),
            "20".into(),
            "--keep".into(),
            "1".into(),
        ]);
        if let Some(t) = &p.tokenizer {
            argv.extend(["--tokenizer".into(), t.display().to_string()]);
        }
        argv.extend(["--checkpoints".into(), self.checkpoints.display().to_string()]);
        argv
    }

    /// Run `rner sft` with `argv`; true when it finished and exported.
    #[cfg(feature = "llama")]
    fn sft(&self, argv: Vec<String>, commands: &mut Vec<String>) -> anyhow::Result<bool> {
        let (a, _c): (super::train::SftArgs, _) = step_command("sft", &argv, commands)?;
        let run = super::train::execute(self.g, &a)?;
        Ok(run.export.is_some())
    }

    /// Whether `model` is one of the preset's own training runs (its file may not exist yet).
    fn produced(&self, model: &str) -> bool {
        let p = self.p;
        let mut names = vec![p.run_name("sft-cot"), p.run_name("sft-direct")];
        names.extend((0..p.grpo.rewards.len()).map(|i| p.grpo_name(i)));
        names.iter().any(|n| n == model)
    }

    /// An F16 GGUF of a Hugging Face student (`models/<preset>-base.gguf`), written once.
    #[cfg(feature = "llama")]
    fn export_student(&self, dir: &str) -> anyhow::Result<PathBuf> {
        let out = self.model_file(&self.p.run_name("base"));
        if !out.is_file() {
            eprintln!("  exporting the Hugging Face student {dir} to {} (F16) to score it", out.display());
            let m = crate::model::Model::load(Path::new(dir), &candle_core::Device::Cpu, candle_core::DType::F32)?;
            crate::model::export::write(Path::new(dir), &m.snapshot()?, crate::model::export::ExportType::F16, &out)?;
        }
        Ok(out)
    }

    /// Where a training run can be continued from: its checkpoints when present, else its export.
    fn init_of(&self, name: &str) -> String {
        let ck = self.checkpoints.join(name);
        if crate::train::checkpoint::latest(&ck).is_some() {
            ck.display().to_string()
        } else {
            self.model_file(name).display().to_string()
        }
    }

    #[cfg(feature = "llama")]
    fn run_step(&self, s: &Step, commands: &mut Vec<String>) -> anyhow::Result<(String, String)> {
        let p = self.p;
        let ok = |b: bool| if b { ("done".to_string(), String::new()) } else { ("interrupted".to_string(), String::new()) };
        match &s.kind {
            StepKind::Eval { model, .. } => {
                let m = if self.produced(model) {
                    self.model_file(model).display().to_string()
                } else if model == &p.student && Path::new(model).is_dir() {
                    // a Hugging Face student is scored through a GGUF of it: the preset's
                    // `tokenizer`, else an F16 export of the folder
                    match &p.tokenizer {
                        Some(t) => t.display().to_string(),
                        None => self.export_student(model)?.display().to_string(),
                    }
                } else {
                    model.clone()
                };
                if let Ok(b) = crate::baseline::Baseline::load(&self.g.baselines, model) {
                    if let Some(var) = b.api.as_ref().and_then(|a| a.api_key_env.clone()) {
                        if std::env::var(&var).map(|v| v.is_empty()).unwrap_or(true) {
                            return Ok(("not_run".into(), format!("{var} is not set")));
                        }
                    }
                }
                Ok((self.eval(&m, "zero-shot", "test", p.eval.limit, commands)?.to_string(), String::new()))
            }
            StepKind::Cot => {
                let (c, _c): (super::cot::CotCmd, _) = step_command("cot", &self.cot_argv(), commands)?;
                let code = super::cot::run(self.g, c)?;
                Ok(ok(code == ExitCode::SUCCESS))
            }
            StepKind::Sft { target } => Ok(ok(self.sft(self.sft_argv(target), commands)?)),
            StepKind::Grpo { index } => {
                let argv = self.grpo_argv(*index);
                let (a, _c): (super::train::GrpoArgs, _) = step_command("grpo", &argv, commands)?;
                let done = super::train::execute_grpo(self.g, &a)?;
                Ok(ok(done.export.is_some()))
            }
            StepKind::LowResourceCot { dataset } => {
                let (c, _c): (super::cot::CotCmd, _) = step_command("cot", &self.lr_cot_argv(dataset), commands)?;
                let code = super::cot::run(self.g, c)?;
                Ok(ok(code == ExitCode::SUCCESS))
            }
            StepKind::LowResource { dataset, fraction, seed, init } => {
                let lr = p.low_resource.as_ref().expect("planned from it");
                let start = p.grpo_name(0);
                let from = match init.as_str() {
                    "base" => p.student.clone(),
                    _ => self.model_file(&start).display().to_string(),
                };
                // our model's file is missing here (a clean clone): the step waits for the step that trains it
                let waits = init != "base" && !Path::new(&from).is_file();
                let not_here = || ("not_run".to_string(), format!("{from} is not here: step {start} trains it"));
                let stands = |id: String| ("skipped".to_string(), format!("{id} scored its logged export; the file is not here"));
                let mut trained = false;
                let model = if *fraction == 0.0 {
                    if waits {
                        return Ok(self.scored_export(&start, &[dataset.as_str()], lr.eval_limit).map_or_else(not_here, stands));
                    }
                    from
                } else {
                    let name = p.low_resource_name(dataset, *fraction, *seed, init);
                    let current = self.cell_trains_again(dataset, *fraction, *seed, init).is_none();
                    if !(self.trained(&name) && current) {
                        if let Some(id) = self.scored_export(&name, &[dataset.as_str()], lr.eval_limit).filter(|_| current) {
                            return Ok(stands(id));
                        }
                        if waits {
                            return Ok(not_here());
                        }
                        if init == COT_INIT && !self.lr_cot_covered(dataset) {
                            return Ok(("not_run".into(), format!("the rationales of {dataset} train are not all written: step {} writes them", p.lr_cot_step(dataset))));
                        }
                        let argv = self.low_resource_argv(from, dataset, *fraction, *seed, &name, init);
                        match self.sft(argv, commands) {
                            Ok(true) => {}
                            Ok(false) => return Ok(("interrupted".into(), String::new())),
                            // stage 1 kept no rationale for this share's sentences: the cell cannot be trained
                            Err(e) => match e.downcast_ref::<super::train::NoRationale>() {
                                Some(n) => return Ok(("not_run".into(), format!("stage 1 kept no rationale for the {} sentences of this share", n.chosen))),
                                None => return Err(e),
                            },
                        }
                        trained = true;
                        // a cell's checkpoints are not needed once it is exported
                        let _ = std::fs::remove_dir_all(self.checkpoints.join(&name));
                    }
                    self.model_file(&name).display().to_string()
                };
                let status = self.eval(&model, dataset, "test", lr.eval_limit, commands)?;
                Ok((if trained && status == "skipped" { "done" } else { status }.to_string(), String::new()))
            }
            StepKind::Report => {
                let cmd = "rner report --html".to_string();
                commands.push(cmd.clone());
                eprintln!("  $ {cmd}");
                super::report::run(self.g, super::report::ReportArgs { labels: Vec::new(), html: true, pair: Vec::new() })?;
                Ok(ok(true))
            }
        }
    }

    /// For a training step whose committed log records an export that is not here (a clean
    /// clone, another machine): what running it means, since training again writes another file
    /// under the same name and a new log.
    fn trains_again(&self, s: &Step) -> Option<String> {
        let name = match &s.kind {
            StepKind::Sft { target } => self.p.run_name(&format!("sft-{target}")),
            StepKind::Grpo { index } => self.p.grpo_name(*index),
            StepKind::LowResource { dataset, fraction, seed, init } => return self.cell_trains_again(dataset, *fraction, *seed, init),
            _ => return None,
        };
        let log = self.train_log(&name)?;
        let sha = crate::report::training::export_sha256(&log)?;
        (!self.trained(&name)).then(|| {
            format!(
                "trains again: {} (sha256 {}…, logged in results/train/{name}) is not here; where the new file's bytes differ, what was scored or fine-tuned from the old one stays apart",
                self.model_file(&name).display(),
                &sha[..sha.len().min(8)]
            )
        })
    }

    /// Why a low-resource cell that was trained before is not current and trains again when its
    /// step runs: (our start's cells) fine-tuned from an earlier file of the start, tuned on
    /// another rationale file than the preset's stage 1 writes or on rationales that changed
    /// since (CoT targets), or exported as Q8_0 from our Q8_0 start; (every cell) exported as
    /// anything but F16, since the cells are compared as F16 exports; and a training that did not
    /// finish while an earlier file is under the cell's name (it resumes). None for 0% points,
    /// cells never trained, unfinished ones with no file yet (they resume anyway) and current ones.
    fn cell_trains_again(&self, dataset: &str, fraction: f64, seed: u64, init: &str) -> Option<String> {
        if fraction == 0.0 {
            return None;
        }
        let name = self.p.low_resource_name(dataset, fraction, seed, init);
        let log = self.train_log(&name)?;
        // a training that did not finish (interrupted while training again): the file under its
        // name, if any, is an earlier export, and the step resumes the training
        if crate::report::training::export_sha256(&log).is_none() && self.trained(&name) {
            return Some(format!("resumes: its last training did not finish; {} is an earlier export", self.model_file(&name).display()));
        }
        let ours = init != "base";
        if ours {
            if let Some(why) = self.our_cell_trains_again(&log, dataset, fraction, seed, init) {
                return Some(why);
            }
        }
        // the cells of both starts are compared as F16 exports: an F16 export of the same training
        // as a base cell's Q8_0 file scores differently (reports/export-twins/)
        match crate::report::training::export_type(&log) {
            Some(t) if t != "f16" => Some(format!("trains again: exported as {}; the cells are compared as F16 exports (see reports/export-twins/)", t.to_uppercase())),
            _ => None,
        }
    }

    /// [`Self::cell_trains_again`]'s rules for a cell of our start (logged as `log`).
    fn our_cell_trains_again(&self, log: &serde_json::Value, dataset: &str, fraction: f64, seed: u64, init: &str) -> Option<String> {
        let start = self.p.grpo_name(0);
        // the start's log, read once for both rules below (a missing one decides neither)
        let start_log = self.train_log(&start);
        if start_log.as_ref().is_some_and(|s| !crate::report::training::from_export_of(log, s)) {
            return Some(format!("trains again: fine-tuned from an earlier file of {start} than its log now records"));
        }
        if let Some(file) = self.other_rationales(log, dataset, init) {
            return Some(format!("trains again: tuned on {}, the preset's rationales are {file}", data_file_names(log).join(", ")));
        }
        if let Some(file) = self.changed_rationales(log, dataset, fraction, seed, init) {
            return Some(format!("trains again: the rationales of its sentences in {file} changed since it was tuned on them (stage 1 ran again)"));
        }
        // a Q8_0 export of a fine-tune of a Q8_0 start measures the start; the reports set such a
        // cell aside too. Only logs from before the rounding was measured: training a measured
        // loss again (an F16 export of an F16 start) would write the same file, so such a cell
        // stays, set aside in the reports with its measurement
        let measured = crate::report::training::export_rounded(log).is_some();
        if !measured && start_log.is_some_and(|s| crate::report::training::rounded_by_types(log, &s)) {
            let t = crate::report::training::export_type(log).unwrap_or_default().to_uppercase();
            return Some(format!("trains again: exported as {t}, which rounds a fine-tune of our Q8_0 start back onto its weights (exports are F16 now)"));
        }
        None
    }

    /// Why a low-resource cell that stands is set aside in the reports: its log measured that its
    /// export rounds most of the fine-tune back onto its start. Training it again would write the
    /// same file, so the plan keeps it and says so.
    fn rounded_note(&self, s: &Step) -> Option<String> {
        let StepKind::LowResource { dataset, fraction, seed, init } = &s.kind else { return None };
        let log = self.train_log(&self.p.low_resource_name(dataset, *fraction, *seed, init))?;
        let r = crate::report::training::export_rounded(&log).filter(|r| r.lost())?;
        Some(format!("set aside in the reports: its export writes {:.1}% of the weights the fine-tune moved as it writes its start (measured), and training it again would write the same file", 100.0 * r.share()))
    }

    /// Training run `name`'s log, `results/train/<name>/run.json` (None when it is missing or
    /// unreadable), as [`crate::report::training::read_log`] reads it.
    fn train_log(&self, name: &str) -> Option<serde_json::Value> {
        crate::report::training::read_log(&self.g.results.join("train").join(name))
    }

    /// Whether training run `name` (logged) started from the export that training run `start`'s
    /// log records ([`crate::report::training::from_export_of`]); true when either log is
    /// missing. A cell fine-tuned from an earlier file of a start trained again since does not
    /// stand for the start's cell: it is trained again from the new file.
    fn from_logged_export(&self, name: &str, start: &str) -> bool {
        match (self.train_log(name), self.train_log(start)) {
            (Some(run), Some(start)) => crate::report::training::from_export_of(&run, &start),
            _ => true,
        }
    }

    #[cfg(test)]
    /// Whether low-resource cell `name` of start `init` was tuned on the rationales this preset's
    /// stage 1 writes for `dataset` (true for answer-only cells, and when the log is missing): a
    /// CoT-target cell logged with another file (another teacher, cap or decoding) is trained again.
    fn from_preset_rationales(&self, name: &str, dataset: &str, init: &str) -> bool {
        self.train_log(name).is_none_or(|log| self.other_rationales(&log, dataset, init).is_none())
    }

    /// The file name of the preset's rationales for `dataset` when cell log `log` (of start
    /// `init`) was tuned on other ones; None for answer-only cells and matching ones. Compared by
    /// file name (teacher, set, cap and decoding): the log holds the path as given, relative to
    /// where it ran.
    fn other_rationales(&self, log: &serde_json::Value, dataset: &str, init: &str) -> Option<String> {
        if init != COT_INIT {
            return None;
        }
        let file = self.p.lr_cot_file(&self.g.results, dataset)?;
        let name = file.file_name()?.to_string_lossy().into_owned();
        (!data_file_names(log).contains(&name)).then_some(name)
    }

    /// The preset's rationale file for `dataset` when a CoT-target cell (logged as `log`, tuned on
    /// that file) logged the sha256 of its chosen sentences' rationales and the file now gives them
    /// others ([`super::train::chosen_rationales_sha256`]); None for current cells, answer-only
    /// ones, logs written before the sha was recorded, and a file not here (a clean clone: stage 1
    /// writes it again before the cell runs, and the cell's step checks again then).
    fn changed_rationales(&self, log: &serde_json::Value, dataset: &str, fraction: f64, seed: u64, init: &str) -> Option<String> {
        if init != COT_INIT {
            return None;
        }
        let logged = log.get("rationales_sha256")?.as_str()?;
        let file = self.p.lr_cot_file(&self.g.results, dataset).filter(|f| f.is_file())?;
        match super::train::chosen_rationales_sha256(&self.g.data_dir, dataset, fraction, seed, std::slice::from_ref(&file)) {
            Ok(now) if now == logged => None,
            Ok(_) => Some(file.display().to_string()),
            // unreadable data or file: the cell's own step reports it when it runs
            Err(_) => None,
        }
    }

    /// Whether the export that training run `name` logged has a complete zero-shot run under this
    /// preset's evaluation settings.
    fn leaf_scored(&self, name: &str) -> bool {
        self.scored_export(name, &crate::data::ZERO_SHOT, self.p.eval.limit).is_some()
    }

    /// Whether a step that always reruns (a low-resource grid, the evaluation of a model this preset
    /// trained whose file is here) finished in an earlier session, so that what is left of it is
    /// only the check that every row is there.
    fn only_rechecks(&self, s: &Step, before: &std::collections::HashSet<String>) -> bool {
        before.contains(&s.id)
            && match &s.kind {
                StepKind::LowResource { dataset, fraction, seed, init } => self.cell_stands(dataset, *fraction, *seed, init),
                StepKind::Eval { model } => self.produced(model) && self.leaf_scored(model) && self.training_done(model),
                _ => false,
            }
    }

    /// Whether a low-resource cell's step only has to look at its rows, as [`Self::run_step`]
    /// decides: a 0% point, or a cell that is current and whose export is here or scored.
    fn cell_stands(&self, dataset: &str, fraction: f64, seed: u64, init: &str) -> bool {
        if fraction == 0.0 {
            return true;
        }
        let name = self.p.low_resource_name(dataset, fraction, seed, init);
        let limit = self.p.low_resource.as_ref().and_then(|lr| lr.eval_limit);
        self.cell_trains_again(dataset, fraction, seed, init).is_none() && (self.trained(&name) || self.scored_export(&name, &[dataset], limit).is_some())
    }

    /// Whether a step can be passed over without running: training steps whose export exists
    /// (GRPO runs also only while the CoT-tuned file they started from is here and logged),
    /// the CoT step once done, and scores of untrained models once done. Evaluations of trained
    /// models always run: they resume, so they cost a model load when complete, and a retrained
    /// model (a new file hash) gets a new run.
    ///
    /// A training step whose file no later step trains from (the direct-tuned model, GRPO reward
    /// variants after the first) is also done when its file is absent but the preset's evaluation
    /// of its logged export is complete ([`Self::scored_export`]); the CoT step also when its file
    /// holds the `until_kept` examples it wants.
    fn already_done(&self, s: &Step, before: &std::collections::HashSet<String>) -> bool {
        match &s.kind {
            StepKind::Sft { target } => self.training_done(&self.p.run_name(&format!("sft-{target}"))),
            StepKind::Grpo { index } => self.training_done(&self.p.grpo_name(*index)),
            StepKind::Report => false,
            StepKind::Eval { model } => {
                if self.produced(model) {
                    // the model trains in this run first (then its new file is scored)
                    !self.trained(model) && self.leaf_scored(model) && self.training_done(model)
                } else {
                    before.contains(&s.id)
                }
            }
            StepKind::LowResource { .. } => false,
            StepKind::Cot => before.contains(&s.id) || self.cot_kept_enough(),
            StepKind::LowResourceCot { dataset } => self.lr_cot_covered(dataset),
        }
    }

    /// Whether the training step that makes model `name` (one this preset trains) is done.
    fn training_done(&self, name: &str) -> bool {
        let p = self.p;
        if name == p.run_name("sft-cot") {
            self.trained(name)
        } else if name == p.run_name("sft-direct") {
            self.trained(name) || self.leaf_scored(name)
        } else {
            // GRPO starts from the CoT-tuned file: one trained again since (or about to be, its
            // file not here) makes every GRPO run from the old one stale
            let cot = p.run_name("sft-cot");
            let from_current = self.trained(&cot) && self.from_logged_export(name, &cot);
            let first = name == p.grpo_name(0);
            from_current && (self.trained(name) || (!first && self.leaf_scored(name)))
        }
    }

    /// Whether the CoT file holds the `until_kept` examples the preset wants (false without one).
    fn cot_kept_enough(&self) -> bool {
        let Some(n) = self.p.cot.until_kept else { return false };
        // counted as `rner cot` counts the kept examples it resumes from
        let file = self.p.cot_file(&self.g.results);
        file.is_file() && crate::train::cot::read_records(&file).is_ok_and(|r| r.len() >= n)
    }
}

/// Train-split sizes for the estimate (0 for an unknown dataset).
fn train_sizes(g: &Global) -> impl Fn(&str) -> usize + '_ {
    let reg = crate::data::Registry::new(&g.data_dir).ok();
    let cache = std::cell::RefCell::new(std::collections::HashMap::<String, usize>::new());
    move |name: &str| {
        if let Some(n) = cache.borrow().get(name) {
            return *n;
        }
        let n = reg.as_ref().and_then(|r| r.load(name, "train").ok()).map(|v| v.len()).unwrap_or(0);
        cache.borrow_mut().insert(name.to_string(), n);
        n
    }
}

fn eval_sentences(g: &Global, p: &Preset) -> usize {
    match p.eval.limit {
        Some(n) => n * crate::data::ZERO_SHOT.len(),
        None => crate::data::Registry::new(&g.data_dir)
            .map(|r| crate::data::ZERO_SHOT.iter().filter_map(|d| r.load(d, "test").ok()).map(|v| v.len()).sum())
            .unwrap_or(6467),
    }
}

pub fn run(g: &Global, a: ReproduceArgs) -> anyhow::Result<ExitCode> {
    // --stop-after counts from here
    let started = Instant::now();
    let (p, path) = Preset::load(&g.baselines, &a.preset)?;
    let sizes = |m: &str| size_factor(&g.models, &g.baselines, m);
    let steps = p.plan(&sizes, eval_sentences(g, &p), &train_sizes(g));
    if a.summary {
        summary(g, &p, &steps)?;
        return Ok(ExitCode::SUCCESS);
    }
    let log = steps_log(g, &p);
    let rows: Vec<StepRecord> = crate::util::read_jsonl(&log)?;
    let before = done_before(&rows);
    let ctx = Ctx { g, p: &p, threads: a.threads, checkpoints: a.checkpoints.clone(), runs: Default::default() };
    let chosen = selected(&steps, &a.only, &p.name)?;
    let pending: Vec<bool> = steps.iter().map(|s| !ctx.already_done(s, &before)).collect();
    let finished = |s: &Step| ctx.only_rechecks(s, &before);
    // what a step is expected to take: its last pass in the step log (this preset's earlier runs,
    // here or where the log was committed), else the rate-based estimate
    let measured: Vec<Option<f64>> = steps.iter().map(|s| measured_pass(&rows, &s.id)).collect();
    let expect = |i: usize| measured[i].unwrap_or(steps[i].estimate_s);
    let to_run = |i: usize| pending[i] && !finished(&steps[i]);
    let left: f64 = (0..steps.len()).filter(|&i| to_run(i)).map(expect).sum();
    let total: f64 = (0..steps.len()).map(expect).sum();
    println!("rner reproduce --preset {} ({}): {}", p.name, path.display(), p.description);
    println!("{:>3}  {:<44} {:>13}  {}", "#", "step", "estimate ", "what");
    for (i, s) in steps.iter().enumerate() {
        let mark = if !pending[i] {
            "  [done]".to_string()
        } else if finished(s) {
            match ctx.rounded_note(s) {
                Some(why) => format!("  [done; rechecked; {why}]"),
                None => "  [done; rechecked]".to_string(),
            }
        } else if !chosen[i] {
            "  [not in --only]".to_string()
        } else {
            ctx.trains_again(s).map(|why| format!("  [{why}]")).unwrap_or_default()
        };
        let time = format!("{}{}", human_time(expect(i)), if measured[i].is_some() { "*" } else { " " });
        println!("{:>3}  {:<44} {:>13}  {}{mark}", i + 1, s.id, time, s.what);
    }
    if !a.only.is_empty() {
        let now: Vec<usize> = (0..steps.len()).filter(|&i| to_run(i) && chosen[i]).collect();
        println!("--only {}: {} of the steps left run now ({})", a.only.join(","), now.len(), human_time(now.iter().map(|&i| expect(i)).sum()));
    }
    println!(
        "estimated: {} for the whole preset, {} for the {} steps left (* the step's last pass in the step log; the others from rates measured on a 2-core CPU for SmolLM2-135M, scaled by model size, see src/run/preset.rs)",
        human_time(total),
        human_time(left),
        (0..steps.len()).filter(|&i| to_run(i)).count()
    );
    if a.dry_run {
        return Ok(ExitCode::SUCCESS);
    }
    #[cfg(not(feature = "llama"))]
    anyhow::bail!("rner reproduce needs the llama feature (training and evaluation)");
    #[cfg(feature = "llama")]
    {
        let gpu = crate::model::device(false).map(|d| d.is_cuda()).unwrap_or(false);
        if !p.cpu_ok && !gpu && !a.force {
            anyhow::bail!("--preset {}: this preset is for a GPU and none was found (build with --features cuda, or pass --force to run it here anyway)", p.name);
        }
        std::fs::create_dir_all(log.parent().expect("has a parent"))?;
        crate::util::write_json(
            &log.with_file_name("plan.json"),
            &serde_json::json!({"preset": p, "file": path, "command": super::command_line(), "steps": steps, "git_commit": crate::util::git_commit(Path::new(".")), "date": crate::util::now()}),
        )?;
        let n = steps.len();
        // --stop-after: a watch that interrupts the step running at the end of the time given
        let time_up = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        if let Some(d) = a.stop_after {
            let up = time_up.clone();
            let wait = d.saturating_sub(started.elapsed());
            std::thread::spawn(move || {
                std::thread::sleep(wait);
                up.store(true, std::sync::atomic::Ordering::SeqCst);
                crate::run::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
                eprintln!("\n--stop-after {}: time is up; the running step keeps what it did and stops (rerun to resume)", human_time(d.as_secs_f64()));
            });
        }
        // whether this run has started a step (the first one starts even when it does not fit)
        let mut ran_one = false;
        for (i, s) in steps.iter().enumerate() {
            // asked again as the step comes: an earlier step of this run may have trained its
            // start again (then a GRPO variant, or the evaluation of a model, is no longer done)
            if (!pending[i] && ctx.already_done(s, &before)) || !chosen[i] {
                continue;
            }
            if let Some(d) = a.stop_after {
                // asked now (an earlier step of this run may have changed it): a step that only
                // rechecks its rows takes seconds, whatever its last pass took
                let needs = if ctx.only_rechecks(s, &before) { 0.0 } else { expect(i) };
                let left = d.saturating_sub(started.elapsed()).as_secs_f64();
                let up = left <= 0.0 || time_up.load(std::sync::atomic::Ordering::SeqCst);
                if up || (needs > left && ran_one) {
                    println!("--stop-after {}: step {} expects {}, {} is left; stopping before it (rerun to go on)", human_time(d.as_secs_f64()), s.id, human_time(needs), human_time(left));
                    return Ok(ExitCode::from(STOPPED_FOR_TIME));
                }
                if needs > left {
                    // it would never fit: it starts, is interrupted at the end and resumes on each rerun
                    println!("--stop-after {}: step {} expects {}, more than the {} left; starting it anyway (it keeps what it does and resumes on a rerun)", human_time(d.as_secs_f64()), s.id, human_time(needs), human_time(left));
                }
            }
            ran_one = true;
            println!("[{}/{n}] {} — {} (estimate {})", i + 1, s.id, s.what, human_time(expect(i)));
            let t0 = Instant::now();
            let mut commands = Vec::new();
            let (status, note) = ctx.run_step(s, &mut commands).map_err(|e| anyhow::anyhow!("step {} ({}): {e:#}", s.id, commands.last().cloned().unwrap_or_default()))?;
            let rec = StepRecord { id: s.id.clone(), status: status.clone(), commands, seconds: t0.elapsed().as_secs_f64(), estimate_s: s.estimate_s, note: note.clone(), date: crate::util::now(), machine: this_machine() };
            crate::util::append_jsonl(&log, &rec)?;
            println!("[{}/{n}] {}: {status} in {}{}", i + 1, s.id, human_time(rec.seconds), if note.is_empty() { String::new() } else { format!(" ({note})") });
            summary(g, &p, &steps)?;
            if status == "interrupted" {
                eprintln!("stopped; rerun `rner reproduce --preset {}` to resume", p.name);
                let timed = time_up.load(std::sync::atomic::Ordering::SeqCst);
                return Ok(ExitCode::from(if timed { STOPPED_FOR_TIME } else { 130 }));
            }
        }
        Ok(ExitCode::SUCCESS)
    }
}

/// Seconds of a step's last pass that did the work: its last `done` run with the `interrupted` runs
/// that led up to it (a step resumed across sessions); without one, what it has run so far since
/// its last finished pass.
fn last_pass_s(rows: &[&StepRecord]) -> f64 {
    let sum = |rs: &[&StepRecord]| rs.iter().map(|r| r.seconds).sum::<f64>();
    // the interrupted runs just before record `end`
    let resumed_from = |end: usize| rows[..end].iter().rposition(|r| r.status != "interrupted").map_or(0, |i| i + 1);
    match rows.iter().rposition(|r| r.status == "done") {
        Some(end) => sum(&rows[resumed_from(end)..=end]),
        // unfinished: its interrupted runs since the last other record, else the last look at it
        None => match resumed_from(rows.len()) {
            start if start < rows.len() => sum(&rows[start..]),
            _ => rows.last().map_or(0.0, |r| r.seconds),
        },
    }
}

/// The last pass of step `id` in the step log `rows`, when it has finished one.
fn measured_pass(rows: &[StepRecord], id: &str) -> Option<f64> {
    let mine: Vec<&StepRecord> = rows.iter().filter(|r| r.id == id).collect();
    mine.iter().any(|r| r.status == "done").then(|| last_pass_s(&mine))
}

/// `reports/reproduce-<preset>.md`: every step with its commands, estimate and measured time.
fn summary(g: &Global, p: &Preset, steps: &[Step]) -> anyhow::Result<()> {
    let rows: Vec<StepRecord> = crate::util::read_jsonl(&steps_log(g, p))?;
    let mut md = format!(
        "# `rner reproduce --preset {}`\n\n{}. Preset file: `baselines/presets/{}.toml`; step log: `results/reproduce/{}/steps.jsonl` (written as each step ends; a rerun skips finished steps). {}\n\n| # | step | status | measured | estimate | commands |\n|---|---|---|---|---|---|\n",
        p.name,
        p.description,
        p.name,
        p.name,
        machines_line(&rows)
    );
    let (mut measured, mut pass, mut estimated) = (0.0, 0.0, 0.0);
    for (i, s) in steps.iter().enumerate() {
        // the session that did the work, else the latest look at the step
        let last = rows.iter().rev().find(|r| r.id == s.id && r.status == "done").or_else(|| rows.iter().rev().find(|r| r.id == s.id && r.status != "interrupted"));
        let mine: Vec<&StepRecord> = rows.iter().filter(|r| r.id == s.id).collect();
        let secs: f64 = mine.iter().map(|r| r.seconds).sum();
        measured += secs;
        pass += last_pass_s(&mine);
        estimated += s.estimate_s;
        let cmds = last.map(|r| r.commands.iter().map(|c| format!("`{c}`")).collect::<Vec<_>>().join("<br>")).unwrap_or_default();
        md.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} |\n",
            i + 1,
            s.id,
            last.map(|r| if r.note.is_empty() { r.status.clone() } else { format!("{} ({})", r.status, r.note) }).unwrap_or("—".into()),
            human_time(secs),
            human_time(s.estimate_s),
            cmds
        ));
    }
    md.push_str(&format!(
        "\nTotal: {} for one pass of every step (each step's last run that did the work, with the interrupted runs it resumed), {} measured over all sessions (steps run again included), {} estimated.\n",
        human_time(pass),
        human_time(measured),
        human_time(estimated)
    ));
    let out = g.reports.join(format!("reproduce-{}.md", p.name));
    crate::util::write_atomic(&out, md.as_bytes())?;
    println!("{}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prompt::grammar::Decoding;

    fn global(root: &Path) -> Global {
        Global {
            data_dir: root.join("data"),
            results: root.join("results"),
            reports: root.join("reports"),
            models: root.join("models"),
            baselines: root.join("baselines"),
            quiet: true,
        }
    }

    /// A CoT-target cell that logged the sha256 of its sentences' rationales trains again when stage
    /// 1's file (the same name) now gives them others, and not when it changed elsewhere.
    #[test]
    fn a_cot_target_cell_whose_rationales_changed_trains_again() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmp = tempfile::tempdir().unwrap();
        let mut g = global(root);
        g.data_dir = std::env::var_os("RNER_DATA").map(PathBuf::from).unwrap_or_else(|| root.join("../shared/data"));
        g.results = tmp.path().to_path_buf();
        let (p, _) = Preset::load(&root.join("baselines"), "cpu").unwrap();
        let committed = p.lr_cot_file(&root.join("results"), "crossner_ai").unwrap();
        let file = p.lr_cot_file(&g.results, "crossner_ai").unwrap();
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        let lines: Vec<String> = std::fs::read_to_string(&committed).unwrap().lines().map(str::to_string).collect();
        std::fs::write(&file, lines.join("\n") + "\n").unwrap();
        let c = Ctx { g: &g, p: &p, threads: 2, checkpoints: PathBuf::from("/nonexistent-ck"), runs: Default::default() };
        let sha = super::super::train::chosen_rationales_sha256(&g.data_dir, "crossner_ai", 0.1, 1, std::slice::from_ref(&file)).unwrap();
        let mut log = serde_json::json!({"data": [file], "target": "cot", "rationales_sha256": sha});
        assert_eq!(c.changed_rationales(&log, "crossner_ai", 0.1, 1, COT_INIT), None, "the same file");
        assert_eq!(c.changed_rationales(&log, "crossner_ai", 0.1, 1, "reasoningner"), None, "an answer-only cell");
        // another seed draws other sentences: their rationales are not the logged ones
        assert!(c.changed_rationales(&log, "crossner_ai", 0.1, 2, COT_INIT).is_some());
        // a rationale of a sentence the cell did not draw changes: still current
        let chosen: Vec<String> = {
            let all = crate::data::Registry::new(&g.data_dir).unwrap().load("crossner_ai", "train").unwrap();
            crate::data::registry::fraction(&all, 0.1, 1).into_iter().map(|e| e.id).collect()
        };
        let edit = |keep: &dyn Fn(&str) -> bool| {
            let mut done = false;
            let out: Vec<String> = lines
                .iter()
                .map(|l| {
                    let mut v: serde_json::Value = serde_json::from_str(l).unwrap();
                    let id = v["guid"].as_str().unwrap_or_default().to_string();
                    if !done && v["cot"].is_string() && keep(&id) {
                        v["cot"] = serde_json::json!(format!("{} (edited)", v["cot"].as_str().unwrap()));
                        done = true;
                    }
                    v.to_string()
                })
                .collect();
            assert!(done);
            std::fs::write(&file, out.join("\n") + "\n").unwrap();
        };
        edit(&|id| !chosen.iter().any(|c| c == id));
        assert_eq!(c.changed_rationales(&log, "crossner_ai", 0.1, 1, COT_INIT), None);
        // one of its own sentences' rationales changes: it trains again, and says why
        edit(&|id| chosen.iter().any(|c| c == id));
        let why = c.changed_rationales(&log, "crossner_ai", 0.1, 1, COT_INIT).expect("changed");
        assert!(why.ends_with("qwen2.5-coder-1.5b-instruct-crossner_ai-t512.jsonl"), "{why}");
        // a log from before the sha was recorded is matched by the file's name alone
        log.as_object_mut().unwrap().remove("rationales_sha256");
        assert_eq!(c.changed_rationales(&log, "crossner_ai", 0.1, 1, COT_INIT), None);
    }

    /// The summary names where its times come from: this machine only when every record says so.
    #[test]
    fn the_summary_counts_the_records_of_each_machine() {
        let rec = |machine: &str| StepRecord { id: "s".into(), status: "done".into(), commands: vec![], seconds: 1.0, estimate_s: 0.0, note: String::new(), date: String::new(), machine: machine.into() };
        let here = this_machine();
        assert!(here.ends_with(&format!(", {} CPUs", crate::util::cpus())), "{here}");
        assert_eq!(machines_line(&[rec(&here), rec(&here)]), format!("Times are this machine's ({here})."));
        let mixed = machines_line(&[rec(""), rec("Other CPU, 2 CPUs"), rec("Other CPU, 2 CPUs"), rec(&here)]);
        assert!(mixed.contains("not recorded (records before the step log named the machine): 1"), "{mixed}");
        assert!(mixed.contains("Other CPU, 2 CPUs: 2") && mixed.contains(&format!("{here}: 1")), "{mixed}");
        // the committed cpu log predates the field: its summary does not claim one machine
        let rows: Vec<StepRecord> = crate::util::read_jsonl(&Path::new(env!("CARGO_MANIFEST_DIR")).join("results/reproduce/cpu/steps.jsonl")).unwrap();
        assert!(machines_line(&rows).starts_with("Measured times are from the machine each step ran on"));
    }

    /// One pass of a step is its last run that did the work with the interrupted runs it resumed.
    #[test]
    fn a_pass_counts_the_interrupted_runs_it_resumed_and_not_earlier_passes() {
        let rec = |status: &str, seconds: f64| StepRecord { id: "s".into(), status: status.into(), commands: vec![], seconds, estimate_s: 0.0, note: String::new(), date: String::new(), machine: String::new() };
        let pass = |rs: &[StepRecord]| last_pass_s(&rs.iter().collect::<Vec<_>>());
        assert_eq!(pass(&[]), 0.0);
        assert_eq!(pass(&[rec("done", 5.0)]), 5.0);
        assert_eq!(pass(&[rec("interrupted", 2.0), rec("interrupted", 3.0), rec("done", 5.0), rec("skipped", 1.0)]), 10.0);
        // trained again later: only the second pass
        assert_eq!(pass(&[rec("interrupted", 2.0), rec("done", 5.0), rec("interrupted", 7.0), rec("done", 11.0)]), 18.0);
        assert_eq!(pass(&[rec("done", 5.0), rec("done", 11.0)]), 11.0);
        // unfinished: what it has run since its last other record
        assert_eq!(pass(&[rec("skipped", 1.0), rec("interrupted", 2.0), rec("interrupted", 3.0)]), 5.0);
        assert_eq!(pass(&[rec("not_run", 0.5)]), 0.5);
    }

    /// `--only` picks steps of the committed cpu preset's plan by id pattern, in plan order, and
    /// names a pattern that matches nothing.
    #[test]
    fn only_selects_steps_by_id_pattern_and_names_a_pattern_that_matches_none() {
        assert!(id_pattern("cpu-grpo-paper").is_match("cpu-grpo-paper"));
        assert!(!id_pattern("cpu-grpo-paper").is_match("eval-cpu-grpo-paper"));
        assert!(id_pattern("*cpu-grpo-paper").is_match("eval-cpu-grpo-paper"));
        assert!(id_pattern("cpu-lr-*-p10-*-base").is_match("cpu-lr-crossner_ai-p10-s1-base"));
        assert!(!id_pattern("cpu-lr-*-p10-*-base").is_match("cpu-lr-crossner_ai-p100-s1-base"));
        assert!(!id_pattern("a*a").is_match("a"), "the two ends may not overlap");
        assert!(id_pattern("*").is_match(""));
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let (p, _) = Preset::load(&root.join("baselines"), "cpu").unwrap();
        let steps = p.plan(&|_| 1.0, 350, &|_| 1000);
        let chosen = selected(&steps, &["*cpu-grpo-paper".into(), "report".into()], &p.name).unwrap();
        let ids: Vec<&str> = steps.iter().zip(&chosen).filter(|(_, c)| **c).map(|(s, _)| s.id.as_str()).collect();
        assert_eq!(ids, ["cpu-grpo-paper", "eval-cpu-grpo-paper", "report"]);
        assert!(selected(&steps, &[], &p.name).unwrap().iter().all(|c| *c));
        let e = selected(&steps, &["cpu-grpo-papr".into()], &p.name).unwrap_err().to_string();
        assert!(e.contains("--only cpu-grpo-papr") && e.contains("preset cpu"), "{e}");
    }

    #[test]
    fn durations_parse_with_units_or_as_seconds() {
        let secs = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(secs("2h30m"), Ok(9000));
        assert_eq!(secs("90m"), Ok(5400));
        assert_eq!(secs("45s"), Ok(45));
        assert_eq!(secs("1h1s"), Ok(3601));
        assert_eq!(secs("3600"), Ok(3600));
        for bad in ["", "2x", "h", "1h30", "1.5h", "-5", "1m1m", "30s2h", "99999999999999999h"] {
            let e = parse_duration(bad).unwrap_err();
            assert!(e.contains("2h30m"), "{bad}: {e}");
        }
        assert!(parse_duration("0").unwrap_err().contains("zero"));
        assert!(parse_duration("0h0m").unwrap_err().contains("zero"));
    }

    /// Every step's flags parse as the command they name, and carry the preset's settings.
    #[test]
    fn step_flags_parse_as_their_commands_and_carry_the_decoding() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let g = global(root);
        let (mut p, _) = Preset::load(&root.join("baselines"), "cpu").unwrap();
        fn ctx<'a>(g: &'a Global, p: &'a Preset) -> Ctx<'a> {
            Ctx { g, p, threads: 2, checkpoints: PathBuf::from("/nonexistent-ck"), runs: Default::default() }
        }

        // free (the default): no --decoding anywhere, as in every command recorded so far
        {
            let c = ctx(&g, &p);
            let all = [c.cot_argv(), c.sft_argv("cot"), c.grpo_argv(0), c.eval_argv("m.gguf", "zero-shot", "test", Some(50)), c.low_resource_argv("base.gguf".into(), "crossner_ai", 0.1, 1, "x", "base"), c.low_resource_argv("r.gguf".into(), "crossner_ai", 0.25, 2, "y", COT_INIT), c.lr_cot_argv("crossner_ai")];
            assert!(all.iter().all(|a| !a.iter().any(|f| f == "--decoding")));
            let e: super::super::eval::EvalArgs = parse_flags(&all[3]).unwrap();
            assert_eq!((e.model.as_str(), e.decoding, e.threads), ("m.gguf", Decoding::Free, 2));
            let s: super::super::train::SftArgs = parse_flags(&all[1]).unwrap();
            assert_eq!(s.max_len, p.sft.max_len);
            let l: super::super::train::SftArgs = parse_flags(&all[4]).unwrap();
            assert_eq!((l.train_set.as_deref(), l.fraction, l.target()), (Some("crossner_ai"), 0.1, crate::train::sft::Target::Direct));
            // the CoT-target cells tune on the rationales the teacher wrote for the set's train split
            let l: super::super::train::SftArgs = parse_flags(&all[5]).unwrap();
            let file = p.lr_cot_file(&g.results, "crossner_ai").unwrap();
            assert_eq!((l.target(), l.data.clone(), l.seed), (crate::train::sft::Target::Cot, vec![file.clone()], 2));
            let lc: super::super::cot::CotCmd = parse_flags(&all[6]).unwrap();
            assert_eq!((lc.build.sources.clone(), lc.build.split.as_str(), lc.build.out.clone(), lc.build.max_cot_tokens), (vec!["crossner_ai".to_string()], "train", Some(file), 512));
            // the cpu preset continues the committed set under its selection rule, to its kept target
            let cot: super::super::cot::CotCmd = parse_flags(&all[0]).unwrap();
            assert_eq!((cot.build.until_kept, cot.build.max_empty_share, cot.build.limit), (Some(2000), Some(0.25), None));
        }

        p.cot.decoding = Decoding::Json;
        p.grpo.decoding = Decoding::Schema;
        p.eval.decoding = Decoding::Schema;
        let c = ctx(&g, &p);
        let cot: super::super::cot::CotCmd = parse_flags(&c.cot_argv()).unwrap();
        assert_eq!((cot.build.teacher.as_str(), cot.build.decoding), (p.cot.teacher.as_str(), Decoding::Json));
        let grpo: super::super::train::GrpoArgs = parse_flags(&c.grpo_argv(1)).unwrap();
        assert_eq!(grpo.decoding, Decoding::Schema);
        assert_eq!(grpo.reward, p.grpo.rewards[1].weights.parse().unwrap());
        // the run and its export are named apart from the free run's
        assert_eq!(grpo.name.as_deref(), Some("cpu-grpo-f1only-schema"));
        assert!(grpo.init.ends_with("cpu-sft-cot.gguf"), "{}", grpo.init);
        let e: super::super::eval::EvalArgs = parse_flags(&c.eval_argv("m.gguf", "zero-shot", "test", None)).unwrap();
        assert_eq!(e.decoding, Decoding::Schema);
        // plan ids: another decoding is another step (a free run's "done" does not skip it)
        let ids: Vec<String> = p.plan(&|_| 1.0, 350, &|_| 1000).into_iter().map(|s| s.id).collect();
        assert!(ids.contains(&"eval-base-schema".to_string()) && ids.contains(&"cot-json".to_string()), "{ids:?}");

        // the CoT targets' stage 1 under constrained decoding: its own file and step, and the
        // committed cells (tuned on the free file) no longer stand for it
        let free_file = p.lr_cot_file(&g.results, "crossner_ai").unwrap();
        let cell = "cpu-lr-crossner_ai-p10-s1-reasoningner-cot";
        assert!(ctx(&g, &p).from_preset_rationales(cell, "crossner_ai", COT_INIT), "the committed cell tuned on {}", free_file.display());
        p.low_resource.as_mut().unwrap().cot_targets.as_mut().unwrap().decoding = Decoding::Json;
        let c = ctx(&g, &p);
        let file = p.lr_cot_file(&g.results, "crossner_ai").unwrap();
        assert_eq!(file.file_name().unwrap().to_str(), Some("qwen2.5-coder-1.5b-instruct-crossner_ai-t512-json.jsonl"));
        let lc: super::super::cot::CotCmd = parse_flags(&c.lr_cot_argv("crossner_ai")).unwrap();
        assert_eq!((lc.build.decoding, lc.build.out.clone()), (Decoding::Json, Some(file.clone())));
        let l: super::super::train::SftArgs = parse_flags(&c.low_resource_argv("r.gguf".into(), "crossner_ai", 0.1, 1, cell, COT_INIT)).unwrap();
        assert_eq!(l.data, vec![file]);
        assert!(!c.from_preset_rationales(cell, "crossner_ai", COT_INIT));
        // the plan says so instead of "rechecked"
        let step = p.plan(&|_| 1.0, 350, &|_| 1000).into_iter().find(|s| s.id == cell).unwrap();
        let why = c.trains_again(&step).expect("trains again");
        assert!(why.contains("qwen2.5-coder-1.5b-instruct-crossner_ai-t512.jsonl") && why.contains("-t512-json.jsonl"), "{why}");
        assert!(!c.only_rechecks(&step, &[cell.to_string()].into_iter().collect()));
        assert!(c.from_preset_rationales("cpu-lr-crossner_ai-p10-s1-reasoningner", "crossner_ai", "reasoningner"));
        let ids: Vec<String> = p.plan(&|_| 1.0, 350, &|_| 1000).into_iter().map(|s| s.id).collect();
        assert!(ids.contains(&"cpu-lr-cot-crossner_ai-json".to_string()) && ids.contains(&p.lr_cot_step("crossner_ai")), "{ids:?}");
    }

    /// Without the ReasoningNER export here (a clean clone), its committed cells stand and the
    /// others wait for the file instead of failing; a cell fine-tuned from an earlier file of a
    /// start trained again since does not stand.
    #[cfg(feature = "llama")]
    #[test]
    fn reasoningner_cells_without_their_start_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut g = global(root);
        g.models = PathBuf::from("/nonexistent-models");
        let (p, _) = Preset::load(&root.join("baselines"), "cpu").unwrap();
        let c = Ctx { g: &g, p: &p, threads: 2, checkpoints: PathBuf::from("/nonexistent-ck"), runs: Default::default() };
        let steps = p.plan(&|_| 1.0, 350, &|_| 1000);
        let run = |id: &str| c.run_step(steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}")), &mut Vec::new()).unwrap();
        // a committed cell exported as F16 stands on its score; one exported as Q8_0 (no
        // `export_type` in its log) does not, and waits for the start's file to train again
        let export_type = |id: &str| crate::report::training::read_log(&root.join("results/train").join(id)).and_then(|l| l.get("export_type").and_then(|v| v.as_str()).map(str::to_string));
        assert_eq!(export_type("cpu-lr-crossner_ai-p10-s1-reasoningner").as_deref(), Some("f16"));
        assert_eq!(run("cpu-lr-crossner_ai-p10-s1-reasoningner").0, "skipped");
        let q8 = steps.iter().find(|s| {
            s.id.ends_with("-reasoningner") && !s.id.contains("-p0-") && c.train_log(&s.id).is_some_and(|l| crate::report::training::export_type(&l).as_deref() == Some("q8_0"))
        });
        if let Some(s) = q8 {
            let (status, note) = run(&s.id);
            assert_eq!(status, "not_run", "{}: {note}", s.id);
            let why = c.trains_again(s).expect("a Q8_0 export");
            assert!(why.contains("exported as Q8_0"), "{why}");
        }
        assert_eq!(run("cpu-lr-crossner_ai-p0-s0-reasoningner").0, "skipped");
        // a cell not yet trained (none committed: the first such in the plan) waits for its start
        let untrained = steps.iter().find(|s| s.id.ends_with("-reasoningner") && !s.id.contains("-p0-") && !root.join("results/train").join(&s.id).join("run.json").is_file());
        if let Some(s) = untrained {
            let (status, note) = run(&s.id);
            assert_eq!(status, "not_run", "{}", s.id);
            assert!(note.contains("/nonexistent-models/cpu-grpo-paper.gguf is not here: step cpu-grpo-paper trains it"), "{note}");
        }
        // the start trained again (its log rewritten later, of other bytes): the old cell no longer stands
        let cell = "cpu-lr-crossner_ai-p10-s1-reasoningner";
        assert!(c.from_logged_export(cell, "cpu-grpo-paper"));
        let tmp = tempfile::tempdir().unwrap();
        // each log with the logs of its earlier exports (a start trained again to the same bytes)
        for n in [cell, "cpu-grpo-paper"] {
            let from = root.join("results/train").join(n);
            let mut logs = vec![PathBuf::new()];
            if let Ok(rd) = std::fs::read_dir(from.join("earlier")) {
                logs.extend(rd.flatten().map(|e| Path::new("earlier").join(e.file_name())));
            }
            for l in logs {
                std::fs::create_dir_all(tmp.path().join("train").join(n).join(&l)).unwrap();
                std::fs::copy(from.join(&l).join("run.json"), tmp.path().join("train").join(n).join(&l).join("run.json")).unwrap();
            }
        }
        let g2 = Global { results: tmp.path().to_path_buf(), ..global(root) };
        let c2 = Ctx { g: &g2, p: &p, threads: 2, checkpoints: PathBuf::from("/nonexistent-ck"), runs: Default::default() };
        assert!(c2.from_logged_export(cell, "cpu-grpo-paper"), "copied as committed");
        let log = tmp.path().join("train/cpu-grpo-paper/run.json");
        let mut start: serde_json::Value = crate::util::read_json(&log).unwrap();
        start["date"] = serde_json::json!(crate::util::now());
        start["export_sha256"] = serde_json::json!("0".repeat(64));
        crate::util::write_json(&log, &start).unwrap();
        assert!(!c2.from_logged_export(cell, "cpu-grpo-paper"));
        // the plan says what training the start again means
        let step = |id: &str| steps.iter().find(|s| s.id == id).unwrap();
        let why = c.trains_again(step("cpu-grpo-paper")).expect("its export is logged and not here");
        assert!(why.starts_with("trains again: /nonexistent-models/cpu-grpo-paper.gguf (sha256 a10e9a40…"), "{why}");
        assert_eq!(c.trains_again(step("cpu-lr-crossner_ai-p10-s1-reasoningner")), None);
        // the base's cells exported as Q8_0 (a Q4_1 start, off the Q8_0 grid: not rounded back, but
        // not compared like with like either) train again; logged as F16 they stand on their scores
        let base = "cpu-lr-crossner_ai-p10-s1-base";
        let dir = tmp.path().join("train").join(base);
        std::fs::create_dir_all(&dir).unwrap();
        let log = |ty: &str| serde_json::json!({"name": base, "train_set": "crossner_ai", "fraction": 0.1, "export_sha256": "0".repeat(64), "export_type": ty});
        crate::util::write_json(&dir.join("run.json"), &log("q8_0")).unwrap();
        let why = c2.trains_again(step(base)).expect("a Q8_0 export");
        assert_eq!(why, "trains again: exported as Q8_0; the cells are compared as F16 exports (see reports/export-twins/)");
        crate::util::write_json(&dir.join("run.json"), &log("f16")).unwrap();
        assert_eq!(c2.trains_again(step(base)), None);
        assert_eq!(c2.rounded_note(step(base)), None, "not measured");
        // a measured loss stays (training again writes the same file) and the plan says why
        let mut measured = log("f16");
        measured["export_rounded"] = serde_json::json!({"moved": 1000, "rounded_back": 804});
        crate::util::write_json(&dir.join("run.json"), &measured).unwrap();
        assert_eq!(c2.trains_again(step(base)), None);
        let note = c2.rounded_note(step(base)).expect("lost");
        assert!(note.starts_with("set aside in the reports: its export writes 80.4% of the weights"), "{note}");
        measured["export_rounded"] = serde_json::json!({"moved": 1000, "rounded_back": 278});
        crate::util::write_json(&dir.join("run.json"), &measured).unwrap();
        assert_eq!(c2.rounded_note(step(base)), None, "kept most of the fine-tune");
    }

    /// A cell whose last training did not finish (its log records no export: `rner sft` writes the
    /// field as null) while a file of an earlier training is under its name resumes instead of
    /// scoring that file.
    #[cfg(feature = "llama")]
    #[test]
    fn a_cell_interrupted_while_training_again_resumes() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let tmp = tempfile::tempdir().unwrap();
        let g = Global { results: tmp.path().join("results"), models: tmp.path().join("models"), ..global(root) };
        let (p, _) = Preset::load(&root.join("baselines"), "cpu").unwrap();
        let c = Ctx { g: &g, p: &p, threads: 2, checkpoints: tmp.path().join("ck"), runs: Default::default() };
        let steps = p.plan(&|_| 1.0, 350, &|_| 1000);
        for cell in ["cpu-lr-crossner_ai-p25-s1-base", "cpu-lr-crossner_ai-p25-s1-reasoningner"] {
            let step = steps.iter().find(|s| s.id == cell).unwrap();
            crate::util::write_json(&g.results.join("train").join(cell).join("run.json"), &serde_json::json!({"name": cell, "train_set": "crossner_ai", "fraction": 0.25, "export": null, "export_sha256": null})).unwrap();
            assert_eq!(c.trains_again(step), None, "{cell}: nothing under its name: it trains");
            std::fs::create_dir_all(&g.models).unwrap();
            std::fs::write(c.model_file(cell), b"an earlier export").unwrap();
            let why = c.trains_again(step).expect("resumes");
            assert!(why.starts_with("resumes: its last training did not finish;"), "{why}");
            assert!(!c.cell_stands("crossner_ai", 0.25, 1, if cell.ends_with("base") { "base" } else { "reasoningner" }));
        }
    }

    /// On a machine without the committed exports (a clean clone), a step whose only use of its
    /// file is a committed score passes over it; a step whose file later steps train from does not.
    #[test]
    fn scored_exports_stand_for_missing_files_only_where_nothing_trains_from_them() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut g = global(root);
        g.models = PathBuf::from("/nonexistent-models");
        let (p, _) = Preset::load(&root.join("baselines"), "cpu").unwrap();
        let c = Ctx { g: &g, p: &p, threads: 2, checkpoints: PathBuf::from("/nonexistent-ck"), runs: Default::default() };
        // a real committed run of a complete low-resource cell
        let cell = "cpu-lr-crossner_ai-p10-s1-base";
        let ai = c.scored_export(cell, &["crossner_ai"], Some(200));
        assert!(ai.as_deref().is_some_and(|id| id.starts_with("cpu-lr-crossner-ai-p10-s1-base-direct-free-test-n200-s42-")), "{ai:?}");
        assert_eq!(c.scored_export(cell, &["crossner_ai"], Some(50)), None, "another sample");
        assert_eq!(c.scored_export(cell, &["crossner_music"], Some(200)), None, "another dataset");
        // the same run cut short, or of other bytes, does not stand for the file
        for cut in [true, false] {
            let mut runs = crate::report::load_runs(&g.results).unwrap();
            let r = runs.iter_mut().find(|r| Some(r.id()) == ai).unwrap();
            if cut {
                r.scores.datasets.get_mut("crossner_ai").unwrap().sentences = 66;
            } else {
                r.model_sha256 = Some("0".repeat(64));
            }
            let other = Ctx { g: &g, p: &p, threads: 2, checkpoints: PathBuf::from("/nonexistent-ck"), runs: runs.into() };
            assert_eq!(other.scored_export(cell, &["crossner_ai"], Some(200)), None, "cut short: {cut}");
        }
        let before = std::collections::HashSet::new();
        let done = |id: &str| {
            let steps = p.plan(&|_| 1.0, 350, &|_| 1000);
            let s = steps.iter().find(|s| s.id == id).unwrap_or_else(|| panic!("no step {id}"));
            c.already_done(s, &before)
        };
        // the direct-tuned model's sample run scored its logged export: no retraining for it
        assert!(done("cpu-sft-direct") && done("eval-cpu-sft-direct"));
        // GRPO trains from the CoT-tuned file, so without the file it is not done, nor its score
        assert!(!done("cpu-sft-cot") && !done("eval-cpu-sft-cot"));
        // every committed GRPO run started from the committed CoT-tuned model; without its file
        // here that model trains again, and so does every GRPO run (the variants' scores stand
        // for the old chain only)
        for i in 0..p.grpo.rewards.len() {
            assert!(c.from_logged_export(&p.grpo_name(i), "cpu-sft-cot"), "{}", p.grpo_name(i));
            assert!(!done(&p.grpo_name(i)) && !done(&format!("eval-{}", p.grpo_name(i))), "{}", p.grpo_name(i));
        }
        // the committed CoT set holds the 2,000 kept examples the preset wants
        assert!(done("cot"));
    }
}
