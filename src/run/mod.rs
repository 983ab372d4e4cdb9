//! The experiment runner: (datasets × engine × prompt) → one `samples.jsonl` row per sentence,
//! appended as it finishes → `scores.json`; a rerun with the same settings resumes; every run
//! carries a `manifest.json` with what is needed to repeat it.
pub mod preset;
pub mod scores;

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{registry, Entity, Example, Registry, ZERO_SHOT};
use crate::engine::{Engine, Finish, GenOutput, GenRequest, Sampling};
use crate::parse::{self, ParseError};
use crate::prompt::{self, PromptSpec};
use crate::score::{self, Counts, SentenceCounts};
use crate::util;
use crate::{Error, Result};
pub use scores::{Mode, Scores, Usage};

/// Set by the Ctrl-C handler; long loops stop at the next finished sentence.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// Everything that decides an evaluation run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EvalConfig {
    /// system name for tables (baseline name or model file stem)
    pub model_name: String,
    pub model_path: PathBuf,
    pub model_sha256: String,
    pub engine: String,
    pub engine_settings: serde_json::Value,
    pub prompt: PromptSpec,
    pub mode: Mode,
    pub decoding: String,
    pub datasets: Vec<String>,
    pub split: String,
    pub limit: Option<usize>,
    pub seed: u64,
    pub sampling: Sampling,
    pub gold_variant: registry::GoldVariant,
}

impl EvalConfig {
    /// `decoding` as a mode (`free` for anything unknown, as runs made before the option were).
    pub fn decoding_mode(&self) -> prompt::grammar::Decoding {
        match self.decoding.as_str() {
            "json" => prompt::grammar::Decoding::Json,
            "schema" => prompt::grammar::Decoding::Schema,
            _ => prompt::grammar::Decoding::Free,
        }
    }

    /// The run id: readable parts plus a hash of every setting that changes outputs
    /// (datasets excluded, so a run can grow by datasets and resume).
    pub fn run_id(&self) -> String {
        let hash = prompt::short_hash(&self.output_key().to_string());
        let mode = match self.mode {
            Mode::Direct => "direct",
            Mode::Cot => "cot",
        };
        let mut id = format!("{}-{}-{}-{}", slug(&self.model_name), mode, self.decoding, self.split);
        if let Some(n) = self.limit {
            id.push_str(&format!("-n{n}-s{}", self.seed));
        }
        format!("{id}-{}", &hash[..8])
    }

    /// Every setting that changes outputs (the run id's hash is taken over it).
    fn output_key(&self) -> serde_json::Value {
        let mut key = serde_json::json!({
            "engine": self.engine, "model": self.model_sha256, "prompt": prompt::spec_hash(&self.prompt),
            "mode": self.mode, "decoding": self.decoding, "split": self.split, "limit": self.limit,
            "seed": self.seed, "sampling": self.sampling, "gold": self.gold_variant,
        });
        // an engine setting that changes answers, where it is not the default (earlier ids stay)
        if let Some(kv) = self.engine_settings.get("kv_type") {
            key["kv_type"] = kv.clone();
        }
        key
    }

    /// A hash of every setting that changes outputs but the decoding (and the seed, for a full
    /// run: it draws no sample). Runs with equal keys differ only in how their answers were
    /// constrained, so their scores compare what constraining changes.
    pub fn comparison_key(&self) -> String {
        let mut key = self.output_key();
        key["decoding"] = serde_json::Value::Null;
        if self.limit.is_none() {
            key["seed"] = serde_json::Value::Null;
        }
        prompt::short_hash(&key.to_string())[..8].to_string()
    }
}

fn slug(s: &str) -> String {
    s.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c.to_ascii_lowercase() } else { '-' }).collect()
}

/// One line of `samples.jsonl`: enough to re-score with any scorer without the model.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SampleRow {
    pub id: String,
    pub dataset: String,
    pub split: String,
    pub index: usize,
    pub sentence: String,
    pub schema: Vec<String>,
    pub gold: Vec<Entity>,
    /// the raw model text, untouched
    pub output: String,
    pub reasoning: Option<String>,
    pub think: Option<String>,
    pub prediction: Vec<Entity>,
    pub parse_error: Option<ParseError>,
    pub counts: Counts,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub finish: Finish,
    pub latency_ms: f64,
}

impl SampleRow {
    fn new(ex: &Example, out: GenOutput) -> SampleRow {
        let pred = parse::prediction(&out.text);
        let counts = score::sentence(&pred.entities, &ex.gold).total;
        SampleRow {
            id: ex.id.clone(),
            dataset: ex.dataset.clone(),
            split: ex.split.clone(),
            index: ex.index,
            sentence: ex.text.clone(),
            schema: ex.labels.clone(),
            gold: ex.gold.clone(),
            output: out.text,
            reasoning: out.reasoning,
            think: pred.think,
            prediction: pred.entities,
            parse_error: pred.error,
            counts,
            prompt_tokens: out.prompt_tokens,
            gen_tokens: out.gen_tokens,
            finish: out.finish,
            latency_ms: out.latency_ms,
        }
    }

    /// Re-parse the raw output with the current parser.
    pub fn reparse(&mut self) {
        let pred = parse::prediction(&self.output);
        self.counts = score::sentence(&pred.entities, &self.gold).total;
        self.think = pred.think;
        self.prediction = pred.entities;
        self.parse_error = pred.error;
    }
}

/// A run folder's `samples.jsonl` as it is scored: each sentence once (a row written twice, by a
/// crash between the write and the bookkeeping, counts once: the first), re-parsed with the
/// current parser.
pub fn read_samples(dir: &Path) -> Result<Vec<SampleRow>> {
    let mut seen = HashSet::new();
    let mut rows: Vec<SampleRow> = util::read_jsonl(&dir.join("samples.jsonl"))?;
    rows.retain(|r| seen.insert(r.id.clone()));
    for r in &mut rows {
        r.reparse();
    }
    Ok(rows)
}

/// One working session on a run (a run resumed three times has four).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Session {
    pub command: String,
    pub git_commit: Option<String>,
    pub start: String,
    pub end: Option<String>,
    pub sentences: usize,
    pub gen_tokens: usize,
    pub prompt_tokens: usize,
    pub seconds: f64,
    pub sentences_per_s: f64,
    pub gen_tokens_per_s: f64,
    pub interrupted: bool,
    /// API cost of this session's tokens (US dollars, from the engine's price table)
    #[serde(default)]
    pub cost_usd: Option<f64>,
    /// requests that failed for good in this session (API runs; a rerun retries them)
    #[serde(default)]
    pub failed: usize,
}

/// `manifest.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub run_id: String,
    pub config: EvalConfig,
    pub prompt_hash: String,
    pub chat_template_sha256: Option<String>,
    pub engine_info: crate::engine::EngineInfo,
    /// dataset name → source file and its sha256
    pub data_files: BTreeMap<String, DataFile>,
    pub rner_version: String,
    pub machine: Machine,
    pub sessions: Vec<Session>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DataFile {
    pub path: String,
    pub sha256: String,
    pub sentences: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Machine {
    pub cpus: usize,
    pub cpu: String,
    pub os: String,
    pub gpu: Option<String>,
    /// OpenMP settings llama.cpp's threads ran with (`GOMP_SPINCOUNT`, `OMP_WAIT_POLICY`, … as set)
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub openmp: BTreeMap<String, String>,
}

impl Machine {
    pub fn this() -> Machine {
        Machine { cpus: util::cpus(), cpu: util::cpu_model(), os: std::env::consts::OS.into(), gpu: None, openmp: openmp_env() }
    }
}

/// The OpenMP variables set in this process's environment (the `rner` binary sets `GOMP_SPINCOUNT`).
pub fn openmp_env() -> BTreeMap<String, String> {
    std::env::vars().filter(|(k, _)| k.starts_with("OMP_") || k.starts_with("GOMP_")).collect()
}

/// The examples of one dataset the run covers (all, or a seeded sample of `limit`).
pub fn examples_for(reg: &Registry, cfg: &EvalConfig, dataset: &str) -> Result<Vec<Example>> {
    let all = reg.load_variant(dataset, &cfg.split, cfg.gold_variant)?;
    Ok(match cfg.limit {
        Some(n) if n < all.len() => registry::sample(&all, n, cfg.seed),
        _ => all,
    })
}

/// The request for one example.
pub fn request(ex: &Example, cfg: &EvalConfig) -> GenRequest {
    let mut sampling = cfg.sampling.clone();
    sampling.constraint = prompt::grammar::constraint(cfg.decoding_mode(), ex, cfg.mode == Mode::Cot);
    GenRequest { prompt: prompt::render(ex, &cfg.prompt), sampling }
}

/// What an eval call did.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub run_dir: PathBuf,
    pub scores: Scores,
    pub generated: usize,
    pub interrupted: bool,
}

/// Run (or resume) an evaluation into `results_dir/<run-id>/`.
pub fn eval(
    cfg: &EvalConfig,
    engine: &mut dyn Engine,
    reg: &Registry,
    results_dir: &Path,
    command: &str,
    progress: bool,
) -> Result<Outcome> {
    let run_id = cfg.run_id();
    let dir = results_dir.join(&run_id);
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    let manifest_path = dir.join("manifest.json");
    let samples_path = dir.join("samples.jsonl");
    // the manifest as it stood: a rerun that finds every row done leaves it so (see the end)
    let original = std::fs::read(&manifest_path).ok();
    let mut manifest: Manifest = if manifest_path.exists() {
        let m: Manifest = util::read_json(&manifest_path)?;
        for d in &cfg.datasets {
            if !m.config.datasets.contains(d) {
                tracing::info!("run {run_id}: adding dataset {d}");
            }
        }
        m
    } else {
        Manifest {
            run_id: run_id.clone(),
            config: cfg.clone(),
            prompt_hash: prompt::spec_hash(&cfg.prompt),
            chat_template_sha256: engine.info().chat_template.as_ref().map(|t| prompt::short_hash(t)),
            engine_info: engine.info().clone(),
            data_files: BTreeMap::new(),
            rner_version: env!("CARGO_PKG_VERSION").into(),
            machine: Machine::this(),
            sessions: Vec::new(),
        }
    };
    for d in &cfg.datasets {
        if !manifest.config.datasets.contains(d) {
            manifest.config.datasets.push(d.clone());
        }
    }
    let shape = |m: &Manifest| (m.config.datasets.len(), m.data_files.len());
    let shape_before = shape(&manifest);
    let mut session = Session {
        command: command.to_string(),
        git_commit: util::git_commit(Path::new(env!("CARGO_MANIFEST_DIR"))),
        start: util::now(),
        end: None,
        sentences: 0,
        gen_tokens: 0,
        prompt_tokens: 0,
        seconds: 0.0,
        sentences_per_s: 0.0,
        gen_tokens_per_s: 0.0,
        interrupted: false,
        cost_usd: None,
        failed: 0,
    };
    let price = engine.info().price.clone();
    manifest.sessions.push(session.clone());
    let done: HashSet<String> = util::read_jsonl::<SampleRow>(&samples_path)?.into_iter().map(|r| r.id).collect();
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&samples_path)
        .map_err(|e| Error::io(&samples_path, e))?;
    let t0 = Instant::now();
    let mut last_checkpoint = Instant::now();
    let mut interrupted = false;
    // requests that failed for good: the rows of the others are kept, the next dataset goes on
    let mut api_failure: Option<Error> = None;
    for dataset in &cfg.datasets {
        let examples = examples_for(reg, cfg, dataset)?;
        let path = reg.file(dataset, &cfg.split)?;
        manifest.data_files.entry(dataset.clone()).or_insert(DataFile {
            sha256: util::sha256_file(&path)?,
            path: path.display().to_string(),
            sentences: examples.len(),
        });
        util::write_json(&manifest_path, &manifest)?;
        let todo: Vec<&Example> = examples.iter().filter(|e| !done.contains(&e.id)).collect();
        if todo.is_empty() {
            continue;
        }
        let bar = progress_bar(progress, dataset, examples.len(), examples.len() - todo.len());
        let reqs: Vec<GenRequest> = todo.iter().map(|e| request(e, cfg)).collect();
        let started = Instant::now();
        let mut tokens = 0usize;
        let result = engine.generate_each(&reqs, &mut |i, out| {
            let row = SampleRow::new(todo[i], out);
            tokens += row.gen_tokens;
            session.sentences += 1;
            session.gen_tokens += row.gen_tokens;
            session.prompt_tokens += row.prompt_tokens;
            let mut line = serde_json::to_string(&row).map_err(|e| Error::Json { path: samples_path.clone(), err: e })?;
            line.push('\n');
            file.write_all(line.as_bytes()).map_err(|e| Error::io(&samples_path, e))?;
            file.flush().map_err(|e| Error::io(&samples_path, e))?;
            // the session's counts and time survive a crash to within a minute
            if last_checkpoint.elapsed().as_secs() >= 60 {
                let mut snapshot = session.clone();
                close_session(&mut snapshot, t0, false);
                snapshot.end = None;
                *manifest.sessions.last_mut().expect("pushed above") = snapshot;
                util::write_json(&manifest_path, &manifest)?;
                last_checkpoint = Instant::now();
            }
            if let Some(b) = &bar {
                b.inc(1);
                let secs = started.elapsed().as_secs_f64().max(1e-9);
                b.set_message(format!("{:.0} tok/s", tokens as f64 / secs));
            }
            if INTERRUPTED.load(Ordering::SeqCst) {
                return Err(Error::Interrupted);
            }
            Ok(())
        });
        if let Some(b) = &bar {
            b.finish();
        }
        match result {
            Ok(()) => {}
            Err(Error::Interrupted) => {
                interrupted = true;
                break;
            }
            Err(Error::Api { failed, total, msg, fatal: false }) => {
                tracing::error!("{dataset}: {failed} of {total} requests failed; first: {msg}");
                session.failed += failed;
                let (f0, n0) = match api_failure.take() {
                    Some(Error::Api { failed, total, .. }) => (failed, total),
                    _ => (0, 0),
                };
                api_failure = Some(Error::Api { failed: failed + f0, total: total + n0, msg, fatal: false });
            }
            Err(e) => {
                close_session(&mut session, t0, true);
                session.cost_usd = price.as_ref().map(|p| p.cost(session.prompt_tokens, session.gen_tokens));
                *manifest.sessions.last_mut().expect("pushed above") = session;
                util::write_json(&manifest_path, &manifest)?;
                rescore_dir(&dir)?;
                return Err(e);
            }
        }
        rescore_dir(&dir)?;
    }
    close_session(&mut session, t0, interrupted);
    session.cost_usd = price.as_ref().map(|p| p.cost(session.prompt_tokens, session.gen_tokens));
    let generated = session.sentences;
    let noop = generated == 0 && !interrupted && session.failed == 0 && shape(&manifest) == shape_before;
    match original.filter(|_| noop) {
        // nothing generated, nothing added: the run's files stay byte for byte as they were (a
        // resumed preset rechecks finished runs and must leave committed results untouched)
        Some(bytes) => util::write_atomic(&manifest_path, &bytes)?,
        None => {
            *manifest.sessions.last_mut().expect("pushed above") = session;
            util::write_json(&manifest_path, &manifest)?;
        }
    }
    let scores = rescore_dir(&dir)?;
    if let Some(e) = api_failure {
        return Err(e);
    }
    Ok(Outcome { run_dir: dir, generated, scores, interrupted })
}

fn close_session(s: &mut Session, t0: Instant, interrupted: bool) {
    s.seconds = t0.elapsed().as_secs_f64();
    s.end = Some(util::now());
    s.interrupted = interrupted;
    if s.seconds > 0.0 {
        s.sentences_per_s = s.sentences as f64 / s.seconds;
        s.gen_tokens_per_s = s.gen_tokens as f64 / s.seconds;
    }
}

fn progress_bar(on: bool, dataset: &str, total: usize, done: usize) -> Option<indicatif::ProgressBar> {
    crate::util::progress(on, dataset, "sentences", total, done)
}

/// Tokens and cost from the rows kept (a crashed session's rows count too); time from the sessions.
fn usage<'a>(m: &Manifest, rows: impl Iterator<Item = &'a SampleRow>) -> Usage {
    let mut u = Usage { seconds: m.sessions.iter().map(|s| s.seconds).sum(), ..Usage::default() };
    for r in rows {
        u.sentences += 1;
        u.prompt_tokens += r.prompt_tokens;
        u.gen_tokens += r.gen_tokens;
    }
    u.cost_usd = m.engine_info.price.as_ref().map(|p| p.cost(u.prompt_tokens, u.gen_tokens));
    u
}

/// Score the rows of a run folder (re-parsing every raw output) and write `scores.json`.
pub fn rescore_dir(dir: &Path) -> Result<Scores> {
    let manifest: Manifest = util::read_json(&dir.join("manifest.json"))?;
    let mut by_dataset: BTreeMap<String, Vec<SampleRow>> = BTreeMap::new();
    for r in read_samples(dir)? {
        by_dataset.entry(r.dataset.clone()).or_default().push(r);
    }
    let cfg = &manifest.config;
    let mut datasets = BTreeMap::new();
    for (name, rows) in &by_dataset {
        let per: Vec<SentenceCounts> = rows.iter().map(|r| score::sentence(&r.prediction, &r.gold)).collect();
        let failures = rows.iter().filter(|r| r.parse_error.is_some_and(|e| e.is_failure())).count();
        let mut s = score::dataset(&per, failures, cfg.seed);
        s.truncated = rows.iter().filter(|r| r.finish == Finish::Length).count();
        s.expected = manifest.data_files.get(name).map_or(rows.len(), |f| f.sentences);
        datasets.insert(name.clone(), s);
    }
    let average = ZERO_SHOT
        .iter()
        .map(|d| datasets.get(*d).filter(|s| s.complete()).map(|s| s.f1))
        .collect::<Option<Vec<f64>>>()
        .map(|f1s| score::average(&f1s));
    let scores = Scores {
        run_id: manifest.run_id.clone(),
        model: cfg.model_name.clone(),
        mode: cfg.mode,
        decoding: cfg.decoding.clone(),
        split: cfg.split.clone(),
        limit: cfg.limit,
        seed: cfg.seed,
        command: manifest.sessions.first().map(|s| s.command.clone()).unwrap_or_default(),
        datasets,
        average,
        engine: cfg.engine.clone(),
        usage: usage(&manifest, by_dataset.values().flatten()),
    };
    util::write_json(&dir.join("scores.json"), &scores)?;
    Ok(scores)
}
