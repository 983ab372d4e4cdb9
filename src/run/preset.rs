//! `rner reproduce` presets: the whole chain (CoT data → CoT tuning → GRPO → export → evaluation
//! of every stage and baseline → low-resource fine-tuning → reports) as one TOML file in
//! `baselines/presets/`, turned into an ordered plan of steps with time estimates.
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::prompt::grammar::Decoding;
use crate::{Error, Result};

/// A preset file (`baselines/presets/<name>.toml`). Unknown keys are errors, so a typo cannot
/// silently fall back to a default.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    pub description: String,
    /// the student: a baseline name, a GGUF path or a Hugging Face folder
    pub student: String,
    /// a GGUF whose vocabulary tokenises a Hugging Face student, and through which it is scored
    /// (default: the folder's own tokenizer files, and an F16 export of it)
    #[serde(default)]
    pub tokenizer: Option<PathBuf>,
    /// false: the preset is for a GPU (`paper`); on a machine without one it only prints its plan
    /// unless `--force`
    #[serde(default = "yes")]
    pub cpu_ok: bool,
    pub cot: CotStep,
    pub sft: SftStep,
    pub grpo: GrpoStep,
    pub eval: EvalStep,
    #[serde(default)]
    pub low_resource: Option<LowResource>,
}

fn yes() -> bool {
    true
}

/// Stage 1.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CotStep {
    pub teacher: String,
    /// training sources (`zero-shot` = CoNLL-2003 + WNUT-17)
    pub sources: Vec<String>,
    /// examples drawn per source (none: all, interleaved)
    #[serde(default)]
    pub per_source: Option<usize>,
    /// examples asked of the teacher at most, over all sources
    #[serde(default)]
    pub limit: Option<usize>,
    /// stop once the set holds this many kept examples (`rner cot --until-kept`)
    #[serde(default)]
    pub until_kept: Option<usize>,
    /// try an entity-less sentence only while such sentences stay at most this share of all
    /// tried (`rner cot --max-empty-share`)
    #[serde(default)]
    pub max_empty_share: Option<f64>,
    pub max_cot_tokens: usize,
    #[serde(default = "parallel16")]
    pub parallel: usize,
    /// the file the set is appended to (default: `results/cot/<preset>-<teacher>.jsonl`)
    #[serde(default)]
    pub out: Option<PathBuf>,
    /// `free` (the paper's protocol, default), `json` or `schema`: see `rner cot --help`
    #[serde(default)]
    pub decoding: Decoding,
}

/// The share of asked sentences a CoT build keeps (about that of the committed set), which the
/// plan's stage-1 and stage-2 estimates both use.
const KEPT_SHARE: f64 = 0.73;

fn parallel16() -> usize {
    16
}

/// Stage 2 (both the CoT target and the direct no-CoT ablation use these settings).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SftStep {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    pub max_len: usize,
    /// train on at most this many records (a seeded choice)
    #[serde(default)]
    pub limit: Option<usize>,
    #[serde(default = "micro_tokens")]
    pub micro_tokens: usize,
    /// further NER-CoT files trained on beside the preset's own set (e.g. the published NER-CoT)
    #[serde(default)]
    pub extra_data: Vec<PathBuf>,
    /// train the direct (answer-only) variant too: the stage ablation's "w/o CoT" row
    #[serde(default = "yes")]
    pub direct_ablation: bool,
}

fn micro_tokens() -> usize {
    2048
}

/// Stage 3, and the reward ablation: one GRPO run per entry of `rewards` (the first is the
/// ReasoningNER model the later steps use).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrpoStep {
    pub steps: usize,
    pub prompts_per_step: usize,
    pub num_generations: usize,
    pub num_iterations: usize,
    pub max_completion_length: usize,
    pub pool: usize,
    pub lr: f64,
    pub beta: f64,
    /// `[[grpo.rewards]]`: name (run-name suffix) and weights (`f1=10,schema=1`)
    pub rewards: Vec<RewardVariant>,
    #[serde(default = "micro8")]
    pub micro: usize,
    /// `free` (the paper's protocol, default), `json` or `schema`: see `rner grpo --help`
    #[serde(default)]
    pub decoding: Decoding,
}

fn micro8() -> usize {
    8
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RewardVariant {
    pub name: String,
    pub weights: String,
}

/// Zero-shot evaluation of every stage and baseline on one seeded sample.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EvalStep {
    /// sentences per dataset (none: the full test sets)
    #[serde(default)]
    pub limit: Option<usize>,
    pub seed: u64,
    #[serde(default = "parallel16")]
    pub parallel: usize,
    /// cap on generated tokens per answer (default: `rner eval`'s 512)
    #[serde(default)]
    pub max_tokens: Option<usize>,
    /// GGUF baselines scored on the same sample (fetched if missing)
    #[serde(default)]
    pub baselines: Vec<String>,
    /// API baselines, scored only when their key variable is set
    #[serde(default)]
    pub api_baselines: Vec<String>,
    /// `free` (the paper's protocol, default), `json` or `schema`: see `rner eval --help`
    #[serde(default)]
    pub decoding: Decoding,
}

/// Supervised fine-tuning on a seeded fraction of a training split, scored on its test split:
/// from the base student and from the ReasoningNER model, several seeds per cell.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowResource {
    /// `[[low_resource.sets]]`: a registry dataset and the fractions of its train split
    pub sets: Vec<LowResourceSet>,
    pub seeds: Vec<u64>,
    /// `base` and/or `reasoningner`
    pub inits: Vec<String>,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f64,
    /// test sentences scored per cell (seeded sample; none: the full test split)
    #[serde(default)]
    pub eval_limit: Option<usize>,
    /// `[low_resource.cot_targets]`: cells of the ReasoningNER start fine-tuned on rationale +
    /// answer (`--target cot`) as well, with rationales a teacher writes for the train split
    #[serde(default)]
    pub cot_targets: Option<LowResourceCot>,
}

/// Low-resource cells with CoT targets: the ReasoningNER start keeps its reasoning form (answer-only
/// fine-tuning leaves it opening every answer with `<think>`), so it is also fine-tuned on
/// rationales written for the sampled train sentences. Init name `reasoningner-cot`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowResourceCot {
    /// the teacher: stage 1 on each set's whole train split (one step per set)
    pub teacher: String,
    /// the datasets (of `low_resource.sets`, at their fractions)
    pub sets: Vec<String>,
    #[serde(default = "cot_tokens512")]
    pub max_cot_tokens: usize,
    #[serde(default = "parallel16")]
    pub parallel: usize,
    /// `free` (default), `json` or `schema`, as `[cot].decoding`: another decoding writes another
    /// file under another step id, and the cells train again from it
    #[serde(default)]
    pub decoding: Decoding,
}

fn cot_tokens512() -> usize {
    512
}

/// The start of the low-resource cells with CoT targets.
pub const COT_INIT: &str = "reasoningner-cot";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LowResourceSet {
    pub dataset: String,
    pub fractions: Vec<f64>,
}

impl Preset {
    /// `name` is a preset in `<baselines>/presets/` or a path to a TOML file.
    pub fn load(baselines: &Path, name: &str) -> Result<(Preset, PathBuf)> {
        let path = if name.ends_with(".toml") || Path::new(name).is_file() {
            PathBuf::from(name)
        } else {
            baselines.join("presets").join(format!("{name}.toml"))
        };
        if !path.is_file() {
            let known = Self::names(baselines);
            return Err(Error::config("--preset", format!("{name}: no preset {} (known: {})", path.display(), known.join(", "))));
        }
        let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
        let p: Preset = toml::from_str(&text).map_err(|e| {
            let line = e.span().map(|s| text[..s.start].matches('\n').count() + 1).unwrap_or(0);
            Error::data(&path, line, e.message().to_string())
        })?;
        p.check().map_err(|msg| Error::Toml { path: path.clone(), msg })?;
        Ok((p, path))
    }

    /// The presets shipped in `<baselines>/presets/`.
    pub fn names(baselines: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(baselines.join("presets"))
            .map(|rd| rd.flatten().filter_map(|e| e.path().file_stem().and_then(|s| s.to_str()).map(str::to_string)).collect())
            .unwrap_or_default();
        v.sort();
        v
    }

    fn check(&self) -> std::result::Result<(), String> {
        if self.grpo.rewards.is_empty() {
            return Err("grpo.rewards: at least one reward (the first trains the ReasoningNER model)".into());
        }
        for r in &self.grpo.rewards {
            r.weights.parse::<crate::train::reward::Weights>().map_err(|e| format!("grpo.rewards {}: {e}", r.name))?;
        }
        if self.sft.epochs == 0 || self.sft.batch == 0 {
            return Err("sft.epochs and sft.batch must be at least 1".into());
        }
        if let Some(lr) = &self.low_resource {
            for i in &lr.inits {
                if i != "base" && i != "reasoningner" {
                    return Err(format!("low_resource.inits: {i} (expected base or reasoningner)"));
                }
            }
            if let Some(c) = &lr.cot_targets {
                if let Some(d) = c.sets.iter().find(|d| !lr.sets.iter().any(|s| &s.dataset == *d)) {
                    return Err(format!("low_resource.cot_targets.sets: {d} is not one of low_resource.sets"));
                }
                if let Some(d) = c.sets.iter().enumerate().find(|(i, d)| c.sets[..*i].contains(d)).map(|x| x.1) {
                    return Err(format!("low_resource.cot_targets.sets: {d} named twice"));
                }
                if !lr.inits.iter().any(|i| i == "reasoningner") {
                    return Err("low_resource.cot_targets: needs the reasoningner start in low_resource.inits".into());
                }
            }
            for s in &lr.sets {
                if let Some(f) = s.fractions.iter().find(|f| !(**f > 0.0 && **f <= 1.0)) {
                    return Err(format!("low_resource.sets {}: fraction {f} outside (0, 1]", s.dataset));
                }
            }
            if lr.seeds.is_empty() {
                return Err("low_resource.seeds: at least one seed".into());
            }
        }
        Ok(())
    }

    /// Run names: every artefact of a preset carries its name, so presets never collide.
    pub fn run_name(&self, what: &str) -> String {
        format!("{}-{what}", self.name)
    }

    /// The CoT set this preset builds.
    pub fn cot_file(&self, results: &Path) -> PathBuf {
        let stem = with_decoding(format!("{}-{}", self.name, crate::report::file_stem(&self.cot.teacher)), self.cot.decoding);
        self.cot.out.clone().unwrap_or_else(|| results.join("cot").join(format!("{stem}.jsonl")))
    }

    /// The rationales stage 1 writes for low-resource set `dataset`'s train split (the CoT
    /// targets' teacher and cap in the name; no preset name: any preset with them shares the file).
    pub fn lr_cot_file(&self, results: &Path, dataset: &str) -> Option<PathBuf> {
        let c = self.low_resource.as_ref()?.cot_targets.as_ref()?;
        let stem = with_decoding(format!("{}-{dataset}-t{}", crate::report::file_stem(&c.teacher), c.max_cot_tokens), c.decoding);
        Some(results.join("cot").join(format!("{stem}.jsonl")))
    }

    /// The id of the step that writes [`Self::lr_cot_file`] for `dataset`.
    pub fn lr_cot_step(&self, dataset: &str) -> String {
        let decoding = self.low_resource.as_ref().and_then(|lr| lr.cot_targets.as_ref()).map(|c| c.decoding).unwrap_or_default();
        with_decoding(self.run_name(&format!("lr-cot-{dataset}")), decoding)
    }

    /// The name of one low-resource cell's training run.
    pub fn low_resource_name(&self, dataset: &str, fraction: f64, seed: u64, init: &str) -> String {
        self.run_name(&format!("lr-{dataset}-{}-s{seed}-{init}", fraction_tag(fraction)))
    }
}

/// `0.01` → `p1`, `0.005` → `p0.5`, `1.0` → `p100`: a fraction in percent for file names.
pub fn fraction_tag(f: f64) -> String {
    let pct = (f * 100.0 * 1000.0).round() / 1000.0;
    format!("p{pct}")
}

/// Rates used for the time estimate, measured on the reference 2-core CPU (`reports/perf.md`) for
/// SmolLM2-135M; other models scale by their file size against its 98 MB.
pub struct Rates {
    /// training tokens per second (`rner bench train`, 256-token steps)
    pub train_tok_s: f64,
    /// generated tokens per second in a batch of 16 (`rner bench generate`)
    pub gen_tok_s: f64,
    /// what a direct training sample costs, in tokens at `train_tok_s`: SFT runs the prompt
    /// start a forward pass's sequences share once, so this is below its prompt + answer tokens
    pub direct_tokens: f64,
    /// the same with a rationale
    pub cot_tokens: f64,
    /// generated tokens per benchmark sentence: an untrained model (often to the 512 cap), a
    /// direct-tuned one, a CoT-tuned one (measured on the `--limit 50` runs in results/)
    pub untrained_answer_tokens: f64,
    pub direct_answer_tokens: f64,
    pub cot_answer_tokens: f64,
    /// prompt tokens per benchmark sentence and prefill speed
    pub prompt_tokens: f64,
    pub prefill_tok_s: f64,
    /// seconds to load, export and clean up around a training run
    pub overhead_s: f64,
    /// training tokens per second in a GRPO policy update (prompt and completions of a group)
    pub grpo_train_tok_s: f64,
}

/// A GRPO log-prob pass (forward only) against a training pass of the same tokens: 13.30 s
/// against 35.56 s with shared prompts in `rner bench grpo --steps 2` (reports/perf.md,
/// 2026-11-27).
const GRPO_LOGP_PASS: f64 = 0.37;

pub const REFERENCE: Rates = Rates {
    train_tok_s: 93.0,
    gen_tok_s: 118.0,
    // `rner bench sft --updates 2` (reports/perf.md, 2026-11-27): 16.84 s and 33.66 s per
    // 16-sequence update with the shared prompt start, i.e. 1.05 s and 2.10 s per sample
    direct_tokens: 98.0,
    cot_tokens: 196.0,
    untrained_answer_tokens: 122.0,
    direct_answer_tokens: 32.0,
    cot_answer_tokens: 150.0,
    prompt_tokens: 206.0,
    prefill_tok_s: 340.0,
    overhead_s: 15.0,
    // the cpu preset's GRPO run (results/train/cpu-grpo-paper/steps.jsonl, 60 steps, 2026-12-06):
    // a step took 35.1 s on average, its rollout (export and llama.cpp load included), log-prob
    // pass and update 11.9 + 5.8 + 17.5 s, nothing besides (no per-step overhead to add); the
    // update ran 112 prompt and completion tokens per second (the log-prob pass 339, 0.33 of a
    // training pass: below GRPO_LOGP_PASS, which is kept from the bench)
    grpo_train_tok_s: 112.0,
};

impl Rates {
    /// Seconds to score `sentences` with answers of `answer_tokens`, for a model `size` times the
    /// default student.
    pub fn eval_s(&self, sentences: f64, answer_tokens: f64, size: f64) -> f64 {
        sentences * size * (self.prompt_tokens / self.prefill_tok_s + answer_tokens / self.gen_tok_s) + 10.0
    }
}

/// What a step does; `rner reproduce` executes these in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum StepKind {
    /// zero-shot evaluation of a model on the preset's sample
    Eval { model: String },
    /// stage 1
    Cot,
    /// stage 2 with this target
    Sft { target: String },
    /// stage 3 with reward variant `index`
    Grpo { index: usize },
    /// low-resource fine-tuning of one cell and its test-split evaluation
    LowResource { dataset: String, fraction: f64, seed: u64, init: String },
    /// stage 1 on a low-resource set's train split, for its cells with CoT targets
    LowResourceCot { dataset: String },
    /// tables, plots and the site from results/
    Report,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Step {
    pub id: String,
    pub kind: StepKind,
    /// a sentence for the plan
    pub what: String,
    pub estimate_s: f64,
}

/// Model size relative to the default student (for scaling the rates): a baseline's recorded
/// `bytes` (the same whether or not its file is here), else the size of the file or folder;
/// 1.0 when unknown.
pub fn size_factor(models: &Path, baselines: &Path, model: &str) -> f64 {
    const DEFAULT_BYTES: f64 = 98.0e6;
    let p = Path::new(model);
    let bytes = if p.is_file() {
        std::fs::metadata(p).map(|m| m.len() as f64).ok()
    } else if p.is_dir() {
        std::fs::read_dir(p).ok().map(|rd| rd.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "safetensors")).filter_map(|e| e.metadata().ok()).map(|m| m.len() as f64 / 4.0).sum())
    } else {
        crate::baseline::Baseline::load(baselines, model).ok().and_then(|b| b.bytes.map(|n| n as f64).or_else(|| std::fs::metadata(b.path(models)).ok().map(|m| m.len() as f64)))
    };
    bytes.map(|b| (b / DEFAULT_BYTES).max(0.1)).unwrap_or(1.0)
}

impl Preset {
    /// The steps in the order they run: what needs no training first (base and baseline scores,
    /// low-resource cells from the base), so a long preset yields tables early; then the chain.
    pub fn plan(&self, sizes: &dyn Fn(&str) -> f64, eval_sentences: usize, train_sizes: &dyn Fn(&str) -> usize) -> Vec<Step> {
        let r = REFERENCE;
        let mut steps = Vec::new();

        let sample = match self.eval.limit {
            Some(n) => format!("{n} sentences per dataset, seed {}", self.eval.seed),
            None => "the full test sets".to_string(),
        };
        let sample = if self.eval.decoding.is_free() { sample } else { format!("{sample}, {} decoding", self.eval.decoding.name()) };
        let eval = |steps: &mut Vec<Step>, id: String, model: String, answer_tokens: f64, what: String| {
            // a done step is known by its id: another decoding is another step
            let id = with_decoding(id, self.eval.decoding);
            let estimate_s = r.eval_s(eval_sentences as f64, answer_tokens, sizes(&model));
            steps.push(Step { id, kind: StepKind::Eval { model }, what: format!("{what}: zero-shot on {sample}"), estimate_s });
        };
        eval(&mut steps, "eval-base".into(), self.student.clone(), r.untrained_answer_tokens, format!("base student {}", self.student));
        for b in &self.eval.baselines {
            eval(&mut steps, format!("eval-{b}"), b.clone(), r.untrained_answer_tokens, format!("baseline {b}"));
        }
        for b in &self.eval.api_baselines {
            eval(&mut steps, format!("eval-{b}"), b.clone(), 0.0, format!("API baseline {b} (skipped unless its key is set)"));
        }
        // cheapest cells first, so a long preset fills every row of the table early
        let lr_steps = |init: &str, out: &mut Vec<Step>| {
            let mut steps = Vec::new();
            self.low_resource_steps(init, sizes, train_sizes, &mut steps);
            steps.sort_by(|a: &Step, b: &Step| a.estimate_s.total_cmp(&b.estimate_s));
            out.extend(steps);
        };
        lr_steps("base", &mut steps);
        // stage 1
        let asked = {
            let per: usize = self.cot.sources.iter().map(|s| if s == "zero-shot" { train_sizes("conll2003") + train_sizes("wnut17") } else { train_sizes(s) }).sum();
            let per = match self.cot.per_source {
                Some(k) => k * self.cot.sources.iter().map(|s| if s == "zero-shot" { 2 } else { 1 }).sum::<usize>(),
                None => per,
            };
            let asked = self.cot.limit.map(|l| l.min(per)).unwrap_or(per);
            // a kept target needs about target / KEPT_SHARE sentences
            self.cot.until_kept.map(|n| asked.min((n as f64 / KEPT_SHARE).ceil() as usize)).unwrap_or(asked)
        };
        let teacher_s = asked as f64 * self.cot.max_cot_tokens as f64 * 0.6 * sizes(&self.cot.teacher) / r.gen_tok_s;
        steps.push(Step {
            id: with_decoding("cot".into(), self.cot.decoding),
            kind: StepKind::Cot,
            what: format!("stage 1: teacher {} writes rationales for {asked} training sentences of {}", self.cot.teacher, self.cot.sources.join(", ")),
            estimate_s: teacher_s + 20.0,
        });
        // stage 2: the estimate trains on the kept share of the asked sentences
        let mut kept = asked as f64 * KEPT_SHARE + self.sft.extra_data.len() as f64 * 300.0;
        if let Some(l) = self.sft.limit {
            kept = kept.min(l as f64);
        }
        let sft_s = |tokens: f64| {
            let updates = (kept / self.sft.batch as f64).ceil() * self.sft.epochs as f64;
            updates * self.sft.batch as f64 * tokens * sizes(&self.student) / r.train_tok_s + r.overhead_s
        };
        if self.sft.direct_ablation {
            steps.push(Step { id: self.run_name("sft-direct"), kind: StepKind::Sft { target: "direct".into() }, what: "stage 2 ablation: SFT on the kept examples' answers alone (w/o CoT)".into(), estimate_s: sft_s(r.direct_tokens) });
        }
        steps.push(Step { id: self.run_name("sft-cot"), kind: StepKind::Sft { target: "cot".into() }, what: "stage 2: CoT tuning on <think>rationale</think> + answer".into(), estimate_s: sft_s(r.cot_tokens) });
        // stage 3 and the reward ablation
        for (i, v) in self.grpo.rewards.iter().enumerate() {
            let g = &self.grpo;
            let completions = (g.prompts_per_step * g.num_generations) as f64;
            let rollout = completions * g.max_completion_length as f64 * 0.5 / r.gen_tok_s;
            // each prompt runs once per pass for its G completions (completions at half the cap);
            // a step is the reference log-prob pass (a forward: 0.37 of a training pass in `rner
            // bench grpo`), the old policy's with several iterations, and the training passes
            let tokens = g.prompts_per_step as f64 * r.prompt_tokens + completions * g.max_completion_length as f64 * 0.5;
            let passes = GRPO_LOGP_PASS * (1.0 + (g.num_iterations > 1) as u8 as f64) + g.num_iterations as f64;
            let update = tokens * passes / r.grpo_train_tok_s;
            steps.push(Step {
                id: self.grpo_name(i),
                kind: StepKind::Grpo { index: i },
                what: format!("stage 3{}: GRPO from the CoT-tuned model, reward {}", if i == 0 { "" } else { " ablation" }, v.weights),
                estimate_s: g.steps as f64 * (rollout + update) * sizes(&self.student) + r.overhead_s * 2.0,
            });
        }
        if self.sft.direct_ablation {
            eval(&mut steps, format!("eval-{}", self.run_name("sft-direct")), self.run_name("sft-direct"), r.direct_answer_tokens, "SFT w/o CoT".into());
        }
        eval(&mut steps, format!("eval-{}", self.run_name("sft-cot")), self.run_name("sft-cot"), r.cot_answer_tokens, "CoT-tuned".into());
        for i in 0..self.grpo.rewards.len() {
            eval(&mut steps, format!("eval-{}", self.grpo_name(i)), self.grpo_name(i), r.cot_answer_tokens, format!("GRPO ({})", self.grpo.rewards[i].weights));
        }
        lr_steps("reasoningner", &mut steps);
        if let Some(c) = self.low_resource.as_ref().and_then(|lr| lr.cot_targets.as_ref()) {
            for d in &c.sets {
                let n = train_sizes(d);
                steps.push(Step {
                    id: self.lr_cot_step(d),
                    kind: StepKind::LowResourceCot { dataset: d.clone() },
                    what: format!("stage 1 for the CoT-target cells: teacher {} writes rationales for the {n} sentences of {d} train", c.teacher),
                    estimate_s: n as f64 * c.max_cot_tokens as f64 * 0.6 * sizes(&c.teacher) / r.gen_tok_s + 20.0,
                });
            }
            lr_steps(COT_INIT, &mut steps);
        }
        steps.push(Step { id: "report".into(), kind: StepKind::Report, what: "tables, plots and the site from results/".into(), estimate_s: 30.0 });
        steps
    }

    fn low_resource_steps(&self, init: &str, sizes: &dyn Fn(&str) -> f64, train_sizes: &dyn Fn(&str) -> usize, steps: &mut Vec<Step>) {
        let r = REFERENCE;
        let Some(lr) = &self.low_resource else { return };
        let cot = init == COT_INIT;
        let wanted = |d: &str| match (cot, &lr.cot_targets) {
            (false, _) => lr.inits.iter().any(|i| i == init),
            (true, Some(c)) => c.sets.iter().any(|s| s == d),
            (true, None) => false,
        };
        for set in lr.sets.iter().filter(|s| wanted(&s.dataset)) {
            let n = train_sizes(&set.dataset);
            let test_n = lr.eval_limit.unwrap_or(3453) as f64;
            let untrained = r.eval_s(test_n, if init == "base" { r.untrained_answer_tokens } else { r.cot_answer_tokens }, sizes(&self.student));
            let test = r.eval_s(test_n, if cot { r.cot_answer_tokens } else { r.direct_answer_tokens }, sizes(&self.student));
            // the 0% point of the CoT-target cells is the ReasoningNER start's
            if !cot {
                steps.push(Step {
                    id: self.low_resource_name(&set.dataset, 0.0, 0, init),
                    kind: StepKind::LowResource { dataset: set.dataset.clone(), fraction: 0.0, seed: 0, init: init.to_string() },
                    what: format!("low-resource: {init} without fine-tuning (0%), scored on {} test", set.dataset),
                    estimate_s: untrained,
                });
            }
            for &f in &set.fractions {
                for &seed in &lr.seeds {
                    let sents = (n as f64 * f).round().max(1.0);
                    // CoT targets: the sentences with a kept rationale, each about twice the tokens
                    let (kept, tokens) = if cot { ((sents * KEPT_SHARE).ceil(), r.cot_tokens) } else { (sents, r.direct_tokens) };
                    let updates = (kept / lr.batch as f64).ceil() * lr.epochs as f64;
                    let train = updates * lr.batch as f64 * tokens * sizes(&self.student) / r.train_tok_s;
                    let how = if cot { "reasoningner fine-tuned on rationale + answer (CoT targets) of" } else { &format!("{init} fine-tuned on") };
                    steps.push(Step {
                        id: self.low_resource_name(&set.dataset, f, seed, init),
                        kind: StepKind::LowResource { dataset: set.dataset.clone(), fraction: f, seed, init: init.to_string() },
                        what: format!("low-resource: {how} {:.1}% of {} train ({} sentences, seed {seed}), scored on its test split", f * 100.0, set.dataset, sents),
                        estimate_s: train + test + r.overhead_s,
                    });
                }
            }
        }
    }

    /// The GRPO run of reward variant `i` (the first is the ReasoningNER model).
    pub fn grpo_name(&self, i: usize) -> String {
        let v = &self.grpo.rewards[i];
        with_decoding(self.run_name(&format!("grpo-{}", v.name)), self.grpo.decoding)
    }
}

/// `name`, or `name-<decoding>` when it is not free.
fn with_decoding(name: String, d: Decoding) -> String {
    if d.is_free() {
        name
    } else {
        format!("{name}-{}", d.name())
    }
}

/// `1 h 05 min`, `12 min`, `40 s`.
pub fn human_time(s: f64) -> String {
    let s = s.max(0.0);
    if s < 60.0 {
        format!("{s:.0} s")
    } else if s < 3600.0 {
        format!("{:.0} min", s / 60.0)
    } else if s < 48.0 * 3600.0 {
        format!("{} h {:02.0} min", (s / 3600.0) as u64, (s % 3600.0) / 60.0)
    } else {
        format!("{:.1} days", s / 86400.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> Preset {
        Preset::load(Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/baselines")), name).unwrap().0
    }

    #[test]
    fn shipped_presets_parse_and_plan_every_stage() {
        for name in ["smoke", "cpu", "paper"] {
            let p = shipped(name);
            let steps = p.plan(&|_| 1.0, 350, &|_| 1000);
            let kinds: Vec<&str> = steps
                .iter()
                .map(|s| match s.kind {
                    StepKind::Eval { .. } => "eval",
                    StepKind::Cot => "cot",
                    StepKind::Sft { .. } => "sft",
                    StepKind::Grpo { .. } => "grpo",
                    StepKind::LowResource { .. } => "lr",
                    StepKind::LowResourceCot { .. } => "lr-cot",
                    StepKind::Report => "report",
                })
                .collect();
            for k in ["eval", "cot", "sft", "grpo", "lr", "report"] {
                assert!(kinds.contains(&k), "{name}: no {k} step");
            }
            // ids are unique: each names one artefact
            let ids: std::collections::HashSet<&str> = steps.iter().map(|s| s.id.as_str()).collect();
            assert_eq!(ids.len(), steps.len(), "{name}");
            // the chain's order: CoT before SFT before GRPO before their evaluations
            let pos = |k: &str| kinds.iter().position(|x| *x == k).unwrap();
            assert!(pos("cot") < pos("sft") && pos("sft") < pos("grpo"));
            assert!(steps.iter().all(|s| s.estimate_s.is_finite() && s.estimate_s > 0.0));
        }
        // smoke is the small one
        let total = |n: &str| shipped(n).plan(&|_| 1.0, 350, &|_| 10_000).iter().map(|s| s.estimate_s).sum::<f64>();
        assert!(total("smoke") < total("cpu"));
    }

    #[test]
    fn a_bad_preset_names_its_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/baselines/presets/smoke.toml")).unwrap();
        let bad = text.replacen("[sft]", "[sft]\nepoch = 3", 1);
        let p = dir.path().join("bad.toml");
        std::fs::write(&p, &bad).unwrap();
        let err = Preset::load(dir.path(), p.to_str().unwrap()).unwrap_err().to_string();
        let line = bad.lines().position(|l| l == "epoch = 3").unwrap() + 1;
        assert!(err.contains("bad.toml") && err.contains(&format!("bad.toml:{line}:")) && err.contains("epoch"), "{err}");
        let bad = text.replace("weights = \"f1=10,schema=1\"", "weights = \"f1=10,shema=1\"");
        std::fs::write(&p, &bad).unwrap();
        let err = Preset::load(dir.path(), p.to_str().unwrap()).unwrap_err().to_string();
        assert!(err.contains("shema"), "{err}");
        let err = Preset::load(dir.path(), "nope").unwrap_err().to_string();
        assert!(err.contains("--preset") && err.contains("nope"), "{err}");
    }

    #[test]
    fn fraction_tags_are_readable_and_distinct() {
        assert_eq!(fraction_tag(0.01), "p1");
        assert_eq!(fraction_tag(0.05), "p5");
        assert_eq!(fraction_tag(1.0), "p100");
        assert_eq!(fraction_tag(0.002), "p0.2");
        assert_ne!(fraction_tag(0.25), fraction_tag(0.5));
        assert_eq!(human_time(30.0), "30 s");
        assert_eq!(human_time(3900.0), "1 h 05 min");
    }
}
