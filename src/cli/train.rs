//! `rner sft` (stage 2), `rner grpo` (stage 3) and `rner export` (checkpoint → GGUF).
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use serde::{Deserialize, Serialize};

use super::Global;
use crate::model::export::{self, ExportType};
use crate::model::{self, Model};
use crate::prompt::{self, PromptSpec, Template};
use crate::train::cot::{read_records, CotRecord};
use crate::train::optim::AdamConfig;
use crate::train::sft::{self, Sample, SftConfig, Target};
use crate::train::checkpoint;

/// The stage-1 set committed in this repository (the default training data).
pub const DEFAULT_COT: &str = "results/cot/qwen2.5-coder-1.5b-instruct-conll2003+wnut17.jsonl";

#[derive(Debug, Args)]
pub struct SftArgs {
    /// student: a baseline name, a GGUF path or a Hugging Face folder (config.json + safetensors)
    #[arg(long, default_value = "smollm2-135m-instruct")]
    pub model: String,
    /// NER-CoT JSONL files (stage 1's output, or the published NER-CoT file)
    #[arg(long = "data", default_value = DEFAULT_COT)]
    pub data: Vec<PathBuf>,
    /// cot: `<think>` rationale + answer; direct: the answer alone (the no-CoT ablation).
    /// Default: cot, and direct with --train-set (gold sentences have no rationale unless --data
    /// holds stage 1's for them)
    #[arg(long, value_enum)]
    pub target: Option<Target>,
    /// run name (default: model, target and a hash of the settings)
    #[arg(long)]
    pub name: Option<String>,
    /// how the prompt is wrapped (model: the model's own chat template, as evaluation uses)
    #[arg(long, value_enum, default_value = "model")]
    pub template: Template,
    #[arg(long, default_value_t = 2)]
    pub epochs: usize,
    /// sequences per optimiser update
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    /// padded tokens per forward pass at most (gradient accumulation over the rest)
    #[arg(long, default_value_t = 2048)]
    pub micro_tokens: usize,
    /// feed every sequence's whole prompt, instead of running the start that a forward pass's
    /// sequences share once (CPU; the same loss and gradients up to float rounding)
    #[arg(long)]
    pub no_share_prefix: bool,
    /// weight of each sequence's first target token in the loss (1: all alike, the paper's
    /// loss). It decides the answer's form (`<think>` or the answer itself); above 1 it weighs
    /// more, e.g. to move a reasoning model to answer-only targets
    #[arg(long, default_value_t = 1.0, value_parser = positive_weight)]
    pub first_token_weight: f64,
    #[arg(long, default_value_t = 2e-5)]
    pub lr: f64,
    /// warmup as a fraction of all updates
    #[arg(long, default_value_t = 0.03)]
    pub warmup: f64,
    /// sequences longer than this lose their start (as the paper's left truncation)
    #[arg(long, default_value_t = 1024)]
    pub max_len: usize,
    /// global gradient-norm clipping (0 = off)
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    #[arg(long, default_value_t = 0.0)]
    pub weight_decay: f64,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// stop after this many updates (the schedule still spans every epoch; rerun to go on)
    #[arg(long)]
    pub max_steps: Option<usize>,
    /// use at most this many training records (seeded choice), e.g. for a smoke run
    #[arg(long)]
    pub limit: Option<usize>,
    /// GGUF whose vocabulary tokenises (default: the model itself; a Hugging Face folder's own
    /// tokenizer.json + tokenizer_config.json, converted as llama.cpp's converter does)
    #[arg(long)]
    pub tokenizer: Option<PathBuf>,
    /// train on a registry dataset's gold annotations instead of --data (low-resource
    /// fine-tuning); with --target cot, each chosen sentence's rationale comes from --data (stage 1
    /// run on this train split, matched by sentence id) and a sentence without one is skipped
    #[arg(long)]
    pub train_set: Option<String>,
    /// with --train-set: the seeded share of its train split used (drawn with --seed)
    #[arg(long, default_value_t = 1.0)]
    pub fraction: f64,
    #[command(flatten)]
    pub out: TrainOut,
}

/// Checkpoints, export and device: the same for every training command.
#[derive(Debug, Args)]
pub struct TrainOut {
    /// write a checkpoint every N updates (GRPO: steps)
    #[arg(long, default_value_t = 5)]
    pub save_every: usize,
    /// checkpoints kept
    #[arg(long, default_value_t = 2)]
    pub keep: usize,
    /// where checkpoints go (large; git-ignored)
    #[arg(long, default_value = "checkpoints")]
    pub checkpoints: PathBuf,
    /// GGUF written into --models when training ends (none: no export). F16 by default: a
    /// fine-tune's updates are often smaller than a Q8_0 quantisation step, and a start that was
    /// itself a Q8_0 file (our exports) sits on that grid, so a Q8_0 export rounds most of them
    /// back to the start's weights (measured: 98.4% of the bytes unchanged, and the answers of
    /// the start). F16 still rounds back the smallest updates (the log's `export_rounded` counts
    /// them); f32 keeps every one, at twice the size
    #[arg(long, value_enum, default_value = "f16")]
    pub export: ExportChoice,
    /// train on CPU even when CUDA is available
    #[arg(long)]
    pub cpu: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportChoice {
    None,
    /// each tensor in the source GGUF's own type
    Source,
    F16,
    #[value(name = "q8-0", alias = "q8_0")]
    Q8_0,
    /// every weight as trained (twice F16's size)
    F32,
}

impl ExportChoice {
    /// The name a run's log records (`export_type`).
    pub fn name(self) -> &'static str {
        match self {
            ExportChoice::None => "none",
            ExportChoice::Source => "source",
            ExportChoice::F16 => "f16",
            ExportChoice::Q8_0 => "q8_0",
            ExportChoice::F32 => "f32",
        }
    }

    fn ty(self) -> Option<ExportType> {
        match self {
            ExportChoice::None => None,
            ExportChoice::Source => Some(ExportType::Source),
            ExportChoice::F16 => Some(ExportType::F16),
            ExportChoice::Q8_0 => Some(ExportType::Q8_0),
            ExportChoice::F32 => Some(ExportType::F32),
        }
    }
}

/// `results/train/<name>/run.json`: what was trained, from what, and where it went.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SftRun {
    pub name: String,
    pub command: String,
    pub stage: String,
    pub model: String,
    pub model_path: PathBuf,
    /// sha256 of the file it started from (None for a Hugging Face folder, and in logs written
    /// before the field)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_sha256: Option<String>,
    pub data: Vec<PathBuf>,
    /// low-resource runs: the registry dataset and the share of its train split
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_set: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fraction: Option<f64>,
    pub data_hash: String,
    pub target: Target,
    pub template: Template,
    pub config: SftConfig,
    pub records: usize,
    pub skipped_no_cot: usize,
    pub samples: usize,
    pub outcome: Option<sft::Outcome>,
    pub export: Option<PathBuf>,
    pub export_sha256: Option<String>,
    /// the export's tensor type (`f16`, `q8_0`, `source`; None in logs written before the field,
    /// when every export was q8_0)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_type: Option<String>,
    /// what the export kept of the fine-tune ([`export::rounding`] against the start file; None
    /// for a Hugging Face folder, and in logs written before the field)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export_rounded: Option<export::Rounding>,
    /// `--train-set … --target cot`: [`rationales_sha256`] of the chosen sentences' rationales
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationales_sha256: Option<String>,
    pub git_commit: Option<String>,
    pub date: String,
}


/// Records → token samples under the model's prompt and chat template.
#[cfg(feature = "llama")]
pub fn encode(tok: &model::tokenizer::Tokenizer, records: &[CotRecord], target: Target, template: Template) -> anyhow::Result<(Vec<Sample>, usize)> {
    let spec = PromptSpec { template, add_source: false };
    let mut out = Vec::new();
    let mut skipped = 0;
    for r in records {
        let cot = match (target, r.cot.as_deref()) {
            (Target::Cot, None) | (Target::Cot, Some("")) => {
                skipped += 1;
                continue;
            }
            (Target::Cot, Some(c)) => Some(c),
            (Target::Direct, _) => None,
        };
        let ex = r.example();
        let completion = prompt::completion(&r.entities, cot);
        let enc = tok.encode_pair(&prompt::render(&ex, &spec), &completion)?;
        out.push(Sample { id: r.guid.clone(), prompt: enc.prompt, target: enc.target });
    }
    Ok((out, skipped))
}

/// Sentence id → (sentence, rationale) of dataset `set`'s records with a rationale in `files`
/// (stage 1's output on its train split).
fn rationales_for(set: &str, files: &[PathBuf]) -> anyhow::Result<std::collections::HashMap<String, (String, String)>> {
    let mut out = std::collections::HashMap::new();
    for f in files {
        for r in read_records(f)? {
            if r.dataset.as_deref() == Some(set) || r.guid.starts_with(&format!("{set}/")) {
                if let Some(cot) = r.cot {
                    out.insert(r.guid, (r.sentence, cot));
                }
            }
        }
    }
    Ok(out)
}

/// The sha256 of what a CoT-target cell learns from stage 1: each chosen sentence's id and its
/// kept rationale (an empty one where it has none), in the draw's order. Logged as
/// `rationales_sha256`, so that `rner reproduce` can tell a cell tuned on rationales that changed
/// since (stage 1 run again into a file of the same name) from a current one.
fn rationales_sha256<'a>(chosen: impl Iterator<Item = (&'a str, Option<&'a str>)>) -> String {
    let mut all = String::new();
    for (id, cot) in chosen {
        all.push_str(&format!("{id}\u{0}{}\u{0}", cot.unwrap_or_default()));
    }
    crate::util::sha256_str(&all)
}

/// [`rationales_sha256`] of the sentences that `--train-set set --fraction fraction --seed seed`
/// chooses, with their rationales in `files` as they are now.
pub fn chosen_rationales_sha256(data_dir: &Path, set: &str, fraction: f64, seed: u64, files: &[PathBuf]) -> anyhow::Result<String> {
    let all = crate::data::Registry::new(data_dir)?.load(set, "train")?;
    let rationales = rationales_for(set, files)?;
    let chosen = crate::data::registry::fraction(&all, fraction, seed);
    Ok(rationales_sha256(chosen.iter().map(|e| (e.id.as_str(), rationales.get(&e.id).map(|(_, cot)| cot.as_str())))))
}

/// `rner sft --train-set D --target cot` found no kept rationale for any chosen sentence: not a
/// fault of the inputs (stage 1 may reject every rationale of a small share), so `rner reproduce`
/// records the cell as not run and goes on.
#[derive(Debug)]
pub struct NoRationale {
    pub set: String,
    pub chosen: usize,
    pub data: Vec<PathBuf>,
}

impl std::fmt::Display for NoRationale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let data = self.data.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(",");
        write!(f, "--train-set {} --target cot: none of the {} chosen sentences has a rationale in --data {data} (run `rner cot --sources {}` for its train split)", self.set, self.chosen, self.set)
    }
}

impl std::error::Error for NoRationale {}

impl SftArgs {
    /// `--target`, or its default: the answer alone for gold train sentences (`--train-set`),
    /// rationale + answer otherwise.
    pub fn target(&self) -> Target {
        self.target.unwrap_or(if self.train_set.is_some() { Target::Direct } else { Target::Cot })
    }
}

fn sft_config(a: &SftArgs) -> SftConfig {
    SftConfig {
        epochs: a.epochs,
        batch: a.batch,
        micro_tokens: a.micro_tokens,
        lr: a.lr,
        warmup_ratio: a.warmup,
        max_len: a.max_len,
        clip: a.clip,
        seed: a.seed,
        adam: AdamConfig { weight_decay: a.weight_decay, ..AdamConfig::default() },
        max_steps: None,
        share_prefix: !a.no_share_prefix,
        first_token_weight: a.first_token_weight,
    }
}

/// `--first-token-weight`: a finite number > 0.
fn positive_weight(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(w) if w.is_finite() && w > 0.0 => Ok(w),
        _ => Err(format!("{s:?}: expected a weight > 0 (1: every target token alike)")),
    }
}

/// Train, export and record; returns the run record.
#[cfg(feature = "llama")]
pub fn execute(g: &Global, a: &SftArgs) -> anyhow::Result<SftRun> {
    if a.batch == 0 || a.epochs == 0 {
        anyhow::bail!("--batch and --epochs must be at least 1");
    }
    let (name_base, model_path, template) = if Path::new(&a.model).is_dir() {
        (Path::new(&a.model).file_name().and_then(|s| s.to_str()).unwrap_or("model").to_string(), PathBuf::from(&a.model), a.template)
    } else {
        let m = super::resolve_model(g, &a.model)?;
        let t = if a.template == Template::Model { m.template } else { a.template };
        (m.name, m.path, t)
    };
    // a Hugging Face folder's own tokenizer files are read unless --tokenizer names a GGUF
    let tok_path = a.tokenizer.clone().unwrap_or_else(|| model_path.clone());
    let mut records = Vec::new();
    match &a.train_set {
        Some(set) => {
            if !(a.fraction > 0.0 && a.fraction <= 1.0) {
                anyhow::bail!("--fraction {}: expected a share in (0, 1]", a.fraction);
            }
            let reg = crate::data::Registry::new(&g.data_dir)?;
            let all = reg.load(set, "train")?;
            let chosen = crate::data::registry::fraction(&all, a.fraction, a.seed);
            if chosen.is_empty() {
                anyhow::bail!("--fraction {}: no sentence of {} ({} in its train split)", a.fraction, set, all.len());
            }
            // --target cot: each chosen sentence's rationale from the --data sets (stage 1 run on
            // this train split), found by sentence id; one with no kept rationale is skipped
            let rationales = match a.target() {
                Target::Cot => rationales_for(set, &a.data)?,
                Target::Direct => Default::default(),
            };
            for e in chosen {
                let cot = match rationales.get(&e.id) {
                    Some((sentence, _)) if *sentence != e.text => {
                        anyhow::bail!("--data: the record {} holds another sentence than {set}'s train split ({sentence:?} against {:?}): made from another copy of the data?", e.id, e.text)
                    }
                    Some((_, cot)) => Some(cot.clone()),
                    None => None,
                };
                records.push(CotRecord { cot, guid: e.id, dataset: Some(e.dataset), sentence: e.text, schema: e.labels, entities: e.gold });
            }
        }
        None => {
            for d in &a.data {
                records.extend(read_records(d)?);
            }
        }
    }
    // of the draw, before --limit (what `chosen_rationales_sha256` finds again)
    let drawn_rationales = (a.train_set.is_some() && a.target() == Target::Cot).then(|| rationales_sha256(records.iter().map(|r| (r.guid.as_str(), r.cot.as_deref()))));
    if let Some(n) = a.limit {
        use rand::seq::SliceRandom;
        use rand::SeedableRng;
        records.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(a.seed));
        records.truncate(n);
    }
    let tok = model::tokenizer::Tokenizer::load(&tok_path)?;
    let (samples, skipped) = encode(&tok, &records, a.target(), template)?;
    if samples.is_empty() {
        match &a.train_set {
            Some(set) if a.target() == Target::Cot && !records.is_empty() => return Err(NoRationale { set: set.clone(), chosen: records.len(), data: a.data.clone() }.into()),
            Some(set) => anyhow::bail!("--train-set {set}: no sample to train on ({} records chosen)", records.len()),
            None => anyhow::bail!("--data: no usable record ({} lack a rationale for --target cot)", skipped),
        }
    }
    let cfg = sft_config(a);
    let dhash = sft::data_hash(&samples);
    let name = a.name.clone().unwrap_or_else(|| {
        let t = a.target().name();
        let h = prompt::short_hash(&format!("{}{}{dhash}", serde_json::to_string(&cfg).expect("cfg"), model_path.display()));
        format!("{name_base}-sft-{t}-{}", &h[..8])
    });
    let log_dir = g.results.join("train").join(&name);
    let device = model::device(a.out.cpu)?;
    let dtype = model::train_dtype(&device);
    eprintln!("sft {name}: {} samples ({} records, {} without a rationale skipped), {:?} on {:?}", samples.len(), records.len(), skipped, dtype, device);
    let m = Model::load(&model_path, &device, dtype)?;
    let dirs = sft::Dirs { log_dir: log_dir.clone(), ckpt_dir: a.out.checkpoints.join(&name), save_every: a.out.save_every, keep: a.out.keep };
    let mut run = SftRun {
        name: name.clone(),
        command: super::command_line(),
        stage: "sft".into(),
        model: a.model.clone(),
        model_path: model_path.clone(),
        model_sha256: if model_path.is_file() { Some(crate::util::sha256_file(&model_path)?) } else { None },
        data: if a.train_set.is_some() && a.target() == Target::Direct { Vec::new() } else { a.data.clone() },
        train_set: a.train_set.clone(),
        fraction: a.train_set.as_ref().map(|_| a.fraction),
        data_hash: dhash,
        target: a.target(),
        template,
        config: cfg.clone(),
        records: records.len(),
        skipped_no_cot: skipped,
        samples: samples.len(),
        outcome: None,
        export: None,
        export_sha256: None,
        export_type: None,
        export_rounded: None,
        rationales_sha256: drawn_rationales,
        git_commit: crate::util::git_commit(Path::new(".")),
        date: crate::util::now(),
    };
    if let Some(p) = checkpoint::keep_earlier_log(&dirs.log_dir, &dirs.ckpt_dir)? {
        eprintln!("sft {name}: trains again from the start; the log of the earlier export is kept in {}", p.display());
    }
    crate::util::write_json(&log_dir.join("run.json"), &run)?;
    let pad = tok.eos();
    let run_cfg = SftConfig { max_steps: a.max_steps, ..cfg };
    let outcome = sft::train(&m, &samples, &run_cfg, &dirs, pad, g.quiet)?;
    crate::report::training::plot_sft(&g.reports, &name, &log_dir)?;
    let finished = outcome.steps_done >= outcome.total_steps && !outcome.interrupted;
    if finished {
        if let Some(ty) = a.out.export.ty() {
            let out = g.models.join(format!("{name}.gguf"));
            let weights = m.snapshot()?;
            export::write(&model_path, &weights, ty, &out)?;
            run.export_sha256 = Some(crate::util::sha256_file(&out)?);
            run.export_type = Some(a.out.export.name().to_string());
            if model_path.is_file() {
                run.export_rounded = Some(measure_rounding(&format!("sft {name}"), export::Start::Gguf(&model_path), &model_path.display().to_string(), &weights, &out, ty)?);
            }
            run.export = Some(out);
        }
    }
    run.outcome = Some(outcome);
    crate::util::write_json(&log_dir.join("run.json"), &run)?;
    Ok(run)
}

#[cfg(feature = "llama")]
pub fn run_sft(g: &Global, a: SftArgs) -> anyhow::Result<ExitCode> {
    let run = execute(g, &a)?;
    let o = run.outcome.as_ref().expect("set");
    println!("{}: {}/{} updates{}", run.name, o.steps_done, o.total_steps, if o.interrupted { " (interrupted; rerun to resume)" } else { "" });
    if let Some(e) = &run.export {
        println!("exported {} — evaluate with: rner eval --model {}", e.display(), e.display());
    }
    Ok(if o.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// a checkpoint directory (step-N), a run's checkpoint folder (its newest checkpoint), or a
    /// GGUF file to re-encode (e.g. a Q4_1 model as Q8_0, whose batched CPU kernels are faster)
    pub checkpoint: PathBuf,
    #[arg(long)]
    pub out: PathBuf,
    /// F16 by default (see `rner sft --export`); q8-0 suits re-encoding a file whose weights
    /// are not about to be compared with a start on the Q8_0 grid
    #[arg(long = "type", value_enum, default_value = "f16")]
    pub ty: ExportChoice,
    /// the GGUF the run started from (default: the one its run.json names)
    #[arg(long)]
    pub source: Option<PathBuf>,
    /// what to count the rounding against (default: the source GGUF): the weights the training
    /// began at, a GGUF or a checkpoint (a GRPO run's: the CoT-tuned checkpoint it started from)
    #[arg(long)]
    pub against: Option<PathBuf>,
    /// write the count into this training run's log (`results/train/<run>`, or its run.json) as
    /// its `export_rounded`, with `--against` as `export_rounded_against`: for a run that
    /// finished before exports were counted. Only when the file written is the export that the
    /// log records (same sha256), and `--against` must be the weights the log says it began at
    #[arg(long)]
    pub record: Option<PathBuf>,
}

pub fn run_export(_g: &Global, a: ExportArgs) -> anyhow::Result<ExitCode> {
    let ty = a.ty.ty().ok_or_else(|| anyhow::anyhow!("--type: none is not an export type"))?;
    if a.checkpoint.is_file() {
        if a.record.is_some() || a.against.is_some() {
            anyhow::bail!("--record and --against count a training's rounding: give a checkpoint, not the GGUF {}", a.checkpoint.display());
        }
        // a GGUF: its own tensors, dequantised and written in the new type
        let weights = crate::model::gguf::Reader::open(&a.checkpoint)?.dequantized()?;
        export::write(&a.checkpoint, &weights, ty, &a.out)?;
        println!("{} → {} ({:?})", a.checkpoint.display(), a.out.display(), ty);
        return Ok(ExitCode::SUCCESS);
    }
    let ck = checkpoint::resolve(&a.checkpoint).ok_or_else(|| anyhow::anyhow!("{}: no checkpoint here (expected state.json or a `latest` file)", a.checkpoint.display()))?;
    let source = a
        .source
        .or_else(|| checkpoint::source_of(&ck))
        .ok_or_else(|| anyhow::anyhow!("{}: the checkpoint does not name its source GGUF; pass --source", ck.display()))?;
    let against = a.against.clone().unwrap_or_else(|| source.clone());
    let record = a.record.as_deref().map(|dir| log_to_record(dir, &against)).transpose()?;
    let loaded = checkpoint::load::<serde_json::Value>(&ck)?;
    let weights: Vec<(String, candle_core::Tensor)> = loaded.weights.into_iter().collect();
    export::write(&source, &weights, ty, &a.out)?;
    println!("{} → {} ({:?})", ck.display(), a.out.display(), ty);
    // against --against, else the source GGUF, which may be where an earlier stage began (a GRPO
    // run from a CoT-tuned checkpoint): what the file keeps of all the training since that file
    let held;
    let start = if against.is_file() {
        export::Start::Gguf(&against)
    } else if let Some(ck) = checkpoint::resolve(&against) {
        held = checkpoint::load::<serde_json::Value>(&ck)?.weights;
        export::Start::Weights(&held)
    } else {
        if a.against.is_some() || a.record.is_some() {
            anyhow::bail!("--against {}: neither a GGUF file nor a checkpoint", against.display());
        }
        return Ok(ExitCode::SUCCESS);
    };
    let r = measure_rounding("export", start, &against.display().to_string(), &weights, &a.out, ty)?;
    println!("of the {} weights that differ from {}, {} are written as the export writes that start's own ({:.1}%)", r.moved, against.display(), r.rounded_back, 100.0 * r.share());
    if let Some(log) = record {
        let log = record_rounding(log, &a.out, &against, r)?;
        println!("recorded in {}", log.display());
    }
    Ok(ExitCode::SUCCESS)
}

/// `rner export --record`: the training log at `dir` (a run's folder or its run.json) and its
/// path, once it is known that the run began at `against` (checked before the export is written).
fn log_to_record(dir: &Path, against: &Path) -> anyhow::Result<(PathBuf, serde_json::Value)> {
    let path = if dir.is_dir() { dir.join("run.json") } else { dir.to_path_buf() };
    let log: serde_json::Value = crate::util::read_json(&path).map_err(|e| anyhow::anyhow!("--record {}: {e}", dir.display()))?;
    // the weights the run began at: a GRPO run's checkpoint (or --init file), an SFT run's model file
    let began = ["init_checkpoint", "init", "model_path"].iter().find_map(|k| log.get(*k).and_then(|v| v.as_str())).map(PathBuf::from);
    if let Some(began) = began {
        let same = |p: &Path| checkpoint::resolve(p).unwrap_or_else(|| p.to_path_buf()).canonicalize().ok();
        if same(&began) != same(against) {
            anyhow::bail!("--record {}: that run began at {}, so count against it (--against {}), not {}", path.display(), began.display(), began.display(), against.display());
        }
    }
    Ok((path, log))
}

/// `rner export --record`: writes `r`, counted against `against`, into the training log `log` (at
/// `path`) when `out` is the export that log records.
fn record_rounding((path, mut log): (PathBuf, serde_json::Value), out: &Path, against: &Path, r: export::Rounding) -> anyhow::Result<PathBuf> {
    let written = crate::util::sha256_file(out)?;
    match crate::report::training::export_sha256(&log) {
        Some(h) if h == written => {}
        Some(h) => anyhow::bail!(
            "--record {}: the log records the export {} (sha256 {}…), but {} is {}…: not the same file, so nothing was recorded (same checkpoint and --type?)",
            path.display(),
            log.get("export").and_then(|v| v.as_str()).unwrap_or("?"),
            &h[..h.len().min(8)],
            out.display(),
            &written[..8]
        ),
        None => anyhow::bail!("--record {}: the log records no export to count", path.display()),
    }
    log["export_rounded"] = serde_json::to_value(r)?;
    log["export_rounded_against"] = serde_json::json!(against);
    crate::util::write_json(&path, &log)?;
    Ok(path)
}

/// The export `out`'s [`export::Rounding`] against `start` (named `start_name`), the weights the
/// training began at, with a warning (prefixed by `who`) when the export of type `ty` lost the
/// fine-tune.
fn measure_rounding(who: &str, start: export::Start, start_name: &str, weights: &[(String, candle_core::Tensor)], out: &Path, ty: ExportType) -> anyhow::Result<export::Rounding> {
    let r = export::rounding(start, weights, out)?;
    if r.lost() {
        let finer = if ty == ExportType::F16 { "f32" } else { "f16" };
        eprintln!(
            "{who}: warning: {} writes {:.1}% of the {} weights the training moved as it writes {start_name}: the file measures that start more than the fine-tune (export as {finer} to keep the updates)",
            out.display(),
            100.0 * r.share(),
            r.moved,
        );
    }
    Ok(r)
}

#[derive(Debug, Args)]
pub struct GrpoArgs {
    /// the policy's start (and the frozen reference): an SFT run's checkpoint folder, a
    /// checkpoint (step-N), a baseline name or a GGUF path
    #[arg(long)]
    pub init: String,
    /// run name (default: the init's name, the reward and a hash of the settings)
    #[arg(long)]
    pub name: Option<String>,
    /// prompt sources (train splits); the paper's list holds CoNLL-2003 and both MIT sets
    #[arg(long, value_delimiter = ',', default_value = "conll2003,mit-movie,mit-restaurant")]
    pub sources: Vec<String>,
    /// drop the MIT train sets (they are zero-shot benchmarks' domains: strictly zero-shot run)
    #[arg(long)]
    pub no_mit: bool,
    /// prompts in the pool (the paper: 5,000), drawn per source in proportion to size
    #[arg(long, default_value_t = 5000)]
    pub pool: usize,
    /// per-source cap before the proportional draw (the paper: 10,000)
    #[arg(long, default_value_t = 10000)]
    pub cap: usize,
    #[arg(long, default_value_t = 20)]
    pub steps: usize,
    #[arg(long, default_value_t = 2)]
    pub prompts_per_step: usize,
    /// completions per prompt (G)
    #[arg(long, default_value_t = 16)]
    pub num_generations: usize,
    /// updates per generation batch
    #[arg(long, default_value_t = 4)]
    pub num_iterations: usize,
    #[arg(long, default_value_t = 0.9)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 4096)]
    pub max_completion_length: usize,
    #[arg(long, default_value_t = 1e-6)]
    pub lr: f64,
    #[arg(long, default_value_t = 0.1)]
    pub warmup: f64,
    #[arg(long, default_value_t = 1.0)]
    pub clip: f64,
    #[arg(long, default_value_t = 0.04)]
    pub beta: f64,
    #[arg(long, default_value_t = 0.2)]
    pub epsilon: f64,
    #[arg(long, default_value_t = 0.28)]
    pub epsilon_high: f64,
    #[arg(long, value_enum, default_value = "dr-grpo")]
    pub loss_type: crate::train::grpo::LossType,
    #[arg(long, value_enum, default_value = "group")]
    pub scale_rewards: crate::train::grpo::ScaleRewards,
    /// reward components and weights (f1, schema, empty_ok, format, grounded)
    #[arg(long, default_value = "f1=10,schema=1")]
    pub reward: crate::train::reward::Weights,
    /// sequences per forward pass
    #[arg(long, default_value_t = 8)]
    pub micro: usize,
    /// feed every completion's whole prompt in the loss and log-prob passes, instead of running
    /// the prompt a pass's completions share once (CPU; the same loss and gradients up to float
    /// rounding)
    #[arg(long)]
    pub no_share_prompt: bool,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// how the prompt is wrapped; `model`: as the run behind --init was trained (its run.json), or
    /// a baseline's own template
    #[arg(long, value_enum, default_value = "model")]
    pub template: Template,
    /// constrained rollouts: `json` forces a valid answer object, `schema` also its labels and
    /// spans (llama.cpp grammars). The policy gradient still uses the unconstrained model's
    /// log-probs of the sampled tokens, as guided-decoding GRPO setups do
    #[arg(long, value_enum, default_value_t = crate::prompt::grammar::Decoding::Free)]
    pub decoding: crate::prompt::grammar::Decoding,
    /// with --decoding: the answer's shape, `cot` (constrained after `</think>`, the rationale free)
    /// or `direct` (constrained from the first token)
    #[arg(long, value_enum, default_value_t = crate::run::Mode::Cot)]
    pub mode: crate::run::Mode,
    #[command(flatten)]
    pub out: TrainOut,
}

/// A model to start from: (name, source GGUF, weights of a checkpoint if any, template).
/// Also what `--template model` means for it: the template the run behind a checkpoint trained
/// with (its `results/train/<name>/run.json`), or a baseline's own, as `rner sft` resolves it.
fn init_model(g: &Global, init: &str) -> anyhow::Result<(String, PathBuf, Option<PathBuf>, Template)> {
    let p = Path::new(init);
    if p.is_dir() {
        let ck = checkpoint::resolve(p).ok_or_else(|| anyhow::anyhow!("--init {init}: no checkpoint in this folder"))?;
        let source = checkpoint::source_of(&ck).ok_or_else(|| anyhow::anyhow!("--init {init}: the checkpoint does not name its source GGUF"))?;
        let name = if p.join("state.json").exists() { p.parent().unwrap_or(p) } else { p };
        let name = name.file_name().and_then(|s| s.to_str()).unwrap_or("init").to_string();
        let run = g.results.join("train").join(&name).join("run.json");
        // a run.json written before templates were recorded (or none) means the model's own
        let recorded = crate::util::read_json::<serde_json::Value>(&run).ok().and_then(|v| v.get("template").cloned());
        let template = match recorded {
            Some(t) => serde_json::from_value(t).map_err(|e| anyhow::anyhow!("{}: template: {e}", run.display()))?,
            None => Template::Model,
        };
        return Ok((name, source, Some(ck), template));
    }
    let m = super::resolve_model(g, init)?;
    Ok((m.name, m.path, None, m.template))
}

/// A finished (or interrupted) GRPO command.
pub struct GrpoDone {
    pub name: String,
    pub outcome: sft::Outcome,
    pub export: Option<PathBuf>,
}

#[cfg(feature = "llama")]
pub fn run_grpo(g: &Global, a: GrpoArgs) -> anyhow::Result<ExitCode> {
    let done = execute_grpo(g, &a)?;
    let o = &done.outcome;
    if let Some(e) = &done.export {
        println!("exported {} — evaluate with: rner eval --model {}", e.display(), e.display());
    }
    println!("{}: {}/{} steps{}", done.name, o.steps_done, o.total_steps, if o.interrupted { " (interrupted; rerun to resume)" } else { "" });
    Ok(if o.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// Train, export and record a GRPO run.
#[cfg(feature = "llama")]
pub fn execute_grpo(g: &Global, a: &GrpoArgs) -> anyhow::Result<GrpoDone> {
    use crate::data::Registry;
    use crate::train::grpo::{self, GrpoConfig, Objective};
    let (init_name, source, ck, init_template) = init_model(g, &a.init)?;
    let template = if a.template == Template::Model { init_template } else { a.template };
    let mut sources: Vec<String> = a.sources.clone();
    if a.no_mit {
        sources.retain(|s| !s.starts_with("mit-"));
    }
    if sources.is_empty() {
        anyhow::bail!("--sources: nothing left to train on");
    }
    let reg = Registry::new(&g.data_dir)?;
    let mut per = Vec::new();
    for s in &sources {
        if crate::data::ZERO_SHOT.contains(&s.as_str()) && !s.starts_with("mit-") {
            anyhow::bail!("--sources {s}: a zero-shot benchmark's domain (only the MIT sets are allowed, as in the paper)");
        }
        per.push(reg.load(s, "train")?);
    }
    let pool = grpo::prompt_pool(per, a.pool, a.cap, a.seed);
    let cfg = GrpoConfig {
        steps: a.steps,
        prompts_per_step: a.prompts_per_step,
        num_generations: a.num_generations,
        num_iterations: a.num_iterations,
        temperature: a.temperature,
        top_p: a.top_p,
        lr: a.lr,
        warmup_ratio: a.warmup,
        clip: a.clip,
        seed: a.seed,
        micro: a.micro,
        reward: a.reward.clone(),
        objective: Objective {
            epsilon: a.epsilon,
            epsilon_high: a.epsilon_high,
            beta: a.beta,
            loss_type: a.loss_type,
            scale_rewards: a.scale_rewards,
            max_completion_length: a.max_completion_length,
            // grpo::train sets it from `temperature` above
            ..Objective::default()
        },
        adam: AdamConfig::default(),
        decoding: a.decoding,
        constrain_after_think: !a.decoding.is_free() && a.mode == crate::run::Mode::Cot,
        share_prompt: !a.no_share_prompt,
    };
    let name = a.name.clone().unwrap_or_else(|| {
        let h = prompt::short_hash(&format!("{}{}{:?}{}", serde_json::to_string(&cfg).expect("cfg"), a.init, sources, a.pool));
        format!("{init_name}-grpo-{}", &h[..8])
    });
    let device = model::device(a.out.cpu)?;
    let dtype = model::train_dtype(&device);
    let policy = Model::load(&source, &device, dtype)?;
    let reference = Model::load(&source, &device, dtype)?;
    if let Some(ck) = &ck {
        let w = checkpoint::load::<serde_json::Value>(ck)?.weights;
        policy.set_weights(&w)?;
        reference.set_weights(&w)?;
    }
    let tok = model::tokenizer::Tokenizer::load(&source)?;
    let spec = PromptSpec { template, add_source: false };
    let log_dir = g.results.join("train").join(&name);
    let run = serde_json::json!({
        "name": name, "stage": "grpo", "command": super::command_line(), "init": a.init, "init_checkpoint": ck,
        "source": source, "source_sha256": if ck.is_none() && source.is_file() { Some(crate::util::sha256_file(&source)?) } else { None },
        "sources": sources, "mit_excluded": a.no_mit, "pool": pool.len(), "template": template, "config": cfg,
        "git_commit": crate::util::git_commit(Path::new(".")), "date": crate::util::now(),
    });
    let dirs = sft::Dirs { log_dir: log_dir.clone(), ckpt_dir: a.out.checkpoints.join(&name), save_every: a.out.save_every, keep: a.out.keep };
    if let Some(p) = checkpoint::keep_earlier_log(&dirs.log_dir, &dirs.ckpt_dir)? {
        eprintln!("grpo {name}: trains again from the start; the log of the earlier export is kept in {}", p.display());
    }
    crate::util::write_json(&log_dir.join("run.json"), &run)?;
    eprintln!("grpo {name}: {} prompts from {:?}, reward {}, {:?} on {:?}", pool.len(), sources, cfg.reward, dtype, device);
    let outcome = grpo::train(&policy, &reference, &tok, &pool, &spec, &cfg, &dirs, g.quiet)?;
    crate::report::training::plot_grpo(&g.reports, &name, &log_dir)?;
    let mut run = run;
    let mut exported = None;
    if outcome.steps_done >= outcome.total_steps && !outcome.interrupted {
        if let Some(ty) = a.out.export.ty() {
            let out = g.models.join(format!("{name}.gguf"));
            let weights = policy.snapshot()?;
            export::write(&source, &weights, ty, &out)?;
            run["export"] = serde_json::json!(out);
            run["export_sha256"] = serde_json::json!(crate::util::sha256_file(&out)?);
            run["export_type"] = serde_json::json!(a.out.export.name());
            // against the weights it began at, which the frozen reference still holds (a
            // checkpoint's, else the source file's); a Hugging Face folder's Q/K rows are
            // permuted on export, so only a GGUF source is compared
            if source.is_file() {
                // frozen: its tensors as they are, without a copy
                let start: std::collections::HashMap<String, candle_core::Tensor> = reference.params.iter().map(|(n, v)| (n.to_string(), v.as_tensor().clone())).collect();
                let started_at = ck.as_ref().unwrap_or(&source).display().to_string();
                let rounding = measure_rounding(&format!("grpo {name}"), export::Start::Weights(&start), &started_at, &weights, &out, ty)?;
                run["export_rounded"] = serde_json::to_value(rounding)?;
            }
            exported = Some(out);
        }
    }
    run["outcome"] = serde_json::to_value(&outcome)?;
    crate::util::write_json(&log_dir.join("run.json"), &run)?;
    Ok(GrpoDone { name, outcome, export: exported })
}
