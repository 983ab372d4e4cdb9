//! `rner eval` and `rner rescore`.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::{command_line, resolve_any, Global};
use crate::data::registry::GoldVariant;
use crate::data::{Registry, ZERO_SHOT};
use crate::engine::llama::{LlamaEngine, LlamaSettings};
use crate::engine::openai::{OpenAiEngine, OpenAiSettings};
use crate::engine::{Engine, Sampling};
use crate::prompt::{PromptSpec, Template};
use crate::run::{self, EvalConfig, Mode};

/// Settings of an evaluation run.
#[derive(Debug, Args, Clone)]
pub struct EvalArgs {
    /// a baseline name (baselines/NAME.toml; fetched when missing) or a path to any GGUF
    #[arg(long, default_value = crate::baseline::DEFAULT_MODEL)]
    pub model: String,
    /// datasets, comma-separated (`zero-shot` = the paper's seven)
    #[arg(long, value_delimiter = ',', default_value = "zero-shot")]
    pub datasets: Vec<String>,
    #[arg(long, default_value = "test")]
    pub split: String,
    /// evaluate a seeded sample of N sentences per dataset instead of the full set
    #[arg(long)]
    pub limit: Option<usize>,
    /// seed for --limit sampling, sampling and bootstrap CIs
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// `direct`: JSON answer; `cot`: the model reasons in <think>…</think> first (more tokens)
    #[arg(long, value_enum, default_value_t = Mode::Direct)]
    pub mode: Mode,
    /// prompt wrapping; default: the baseline's (the model's own chat template for instruct models)
    #[arg(long, value_enum)]
    pub template: Option<Template>,
    /// token cap per answer (default 512 direct, 2048 cot; the paper uses 4096)
    #[arg(long)]
    pub max_tokens: Option<usize>,
    /// 0 = greedy, as the paper's evaluation
    #[arg(long, default_value_t = 0.0)]
    pub temperature: f32,
    #[arg(long, default_value_t = 1.0)]
    pub top_p: f32,
    #[arg(long, default_value_t = 0)]
    pub top_k: i32,
    /// penalty on tokens repeated within the last 64 generated (1 = off, the paper's setting)
    #[arg(long, default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// sequences decoded together in one batch
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// decode every sentence's prompt from scratch instead of reusing the shared prefix's KV
    #[arg(long)]
    pub no_prefix_reuse: bool,
    /// context tokens per sequence (prompt + answer)
    #[arg(long, default_value_t = 4096)]
    pub ctx: usize,
    /// share one KV cache across sequences instead of one stream each (slower here; for experiments)
    #[arg(long)]
    pub kv_unified: bool,
    /// llama.cpp flash attention (slower on this CPU; for experiments)
    #[arg(long)]
    pub flash_attn: bool,
    /// the KV cache's element type (f16 = llama.cpp's default)
    #[arg(long, value_enum, default_value = "f16")]
    pub kv_type: crate::engine::llama::KvType,
    /// prompt-lookup drafts in free greedy decoding: up to N tokens that followed the answer's last
    /// tokens in its prompt are fed with each step and kept where the model's argmax agrees (0 = off)
    #[arg(long, default_value_t = 0)]
    pub draft_max: usize,
    /// CPU threads (0 = all)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// `free` = the paper's protocol; `json` forces a valid {"entities": {…}} answer; `schema` also
    /// limits labels to the schema and spans to the sentence's words (llama.cpp grammars; APIs get response_format)
    #[arg(long, value_enum, default_value_t = crate::prompt::grammar::Decoding::Free)]
    pub decoding: crate::prompt::grammar::Decoding,
    /// end an answer as soon as its first JSON object is complete (implied by json/schema)
    #[arg(long)]
    pub stop_at_json: bool,
    /// gold as the paper's loader builds it, or with CrossNER's `organisation` mapped to `organization`
    #[arg(long, value_enum, default_value_t = GoldVariant::Paper)]
    pub gold: GoldVariant,
    #[command(flatten)]
    pub api: ApiArgs,
}

/// An OpenAI-compatible API: `--base-url` (with `--model` as the server's model name), or an
/// `openai` baseline whose settings these flags override.
#[derive(Debug, Args, Clone, Default)]
pub struct ApiArgs {
    /// evaluate through an OpenAI-compatible API at this URL (up to /v1); --model is then its model name
    #[arg(long)]
    pub base_url: Option<String>,
    /// environment variable holding the API key (the key itself is never written anywhere)
    #[arg(long)]
    pub api_key_env: Option<String>,
    /// API requests in flight at once (default 8, or the baseline's)
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// seconds per API attempt (default 120)
    #[arg(long)]
    pub timeout: Option<f64>,
    /// API retries after the first attempt (default 6)
    #[arg(long)]
    pub retries: Option<u32>,
    /// first retry pause in ms, doubling per attempt (default 1000)
    #[arg(long)]
    pub backoff_ms: Option<u64>,
    /// a JSON object merged into every request body, e.g. '{"top_k": 1}'
    #[arg(long)]
    pub extra_body: Option<String>,
}

impl ApiArgs {
    /// The API settings `--model` and these flags describe, if any.
    pub fn settings(&self, model: &str, from_baseline: Option<OpenAiSettings>) -> anyhow::Result<Option<OpenAiSettings>> {
        let mut s = match (&self.base_url, from_baseline) {
            (Some(url), Some(mut s)) => {
                s.base_url = url.clone();
                s
            }
            (Some(url), None) => OpenAiSettings::new(url, model),
            (None, Some(s)) => s,
            (None, None) => {
                let set = [self.api_key_env.is_some(), self.concurrency.is_some(), self.timeout.is_some(), self.retries.is_some(), self.extra_body.is_some()];
                if set.iter().any(|x| *x) {
                    anyhow::bail!("API flags (--api-key-env, --concurrency, …) need --base-url or an openai baseline as --model");
                }
                return Ok(None);
            }
        };
        if let Some(v) = &self.api_key_env {
            s.api_key_env = Some(v.clone());
        }
        if let Some(v) = self.concurrency {
            s.concurrency = v;
        }
        if let Some(v) = self.timeout {
            s.timeout_s = v;
        }
        if let Some(v) = self.retries {
            s.max_retries = v;
        }
        if let Some(v) = self.backoff_ms {
            s.backoff_ms = v;
        }
        if let Some(v) = &self.extra_body {
            match serde_json::from_str::<serde_json::Value>(v) {
                Ok(serde_json::Value::Object(m)) => s.extra_body.extend(m),
                _ => anyhow::bail!("--extra-body: expected a JSON object, got {v:?}"),
            }
        }
        Ok(Some(s))
    }
}

impl EvalArgs {
    /// The datasets named, `zero-shot` expanded, each once.
    pub fn datasets(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for d in &self.datasets {
            let names = if d == "zero-shot" { ZERO_SHOT.iter().map(|s| s.to_string()).collect() } else { vec![d.clone()] };
            for n in names {
                if !out.contains(&n) {
                    out.push(n);
                }
            }
        }
        out
    }
}

/// `--model` with the API flags: `--base-url` with an openai baseline moves it; with anything else
/// `--model` is then the server's model name.
pub fn resolve_with_api(g: &Global, model: &str, api: &ApiArgs) -> anyhow::Result<super::ResolvedModel> {
    let api_baseline = crate::baseline::Baseline::load(&g.baselines, model).ok().filter(|b| b.api.is_some());
    if api.base_url.is_some() && api_baseline.is_none() {
        let settings = api.settings(model, None)?;
        return Ok(super::ResolvedModel { name: model.to_string(), path: Default::default(), template: Template::Model, api: settings });
    }
    let mut m = resolve_any(g, model)?;
    m.api = api.settings(model, m.api.clone())?;
    Ok(m)
}

/// The engine for a resolved model (llama.cpp for a GGUF, openai for an API) and the model's
/// identity hash (the GGUF's sha256, or a hash of the API's base URL, model and extra body).
pub fn build_engine(m: &super::ResolvedModel, settings: LlamaSettings) -> anyhow::Result<(String, Box<dyn Engine>)> {
    Ok(match &m.api {
        Some(s) => (crate::util::sha256_str(&s.identity()), Box::new(OpenAiEngine::new(s.clone())?)),
        None => (crate::util::sha256_file(&m.path)?, Box::new(LlamaEngine::load(&m.path, settings)?)),
    })
}

/// Build the run config and engine, then run.
pub fn execute(g: &Global, a: &EvalArgs) -> anyhow::Result<run::Outcome> {
    let reg = Registry::new(&g.data_dir)?;
    let datasets = a.datasets();
    for d in &datasets {
        reg.file(d, &a.split)?; // unknown names fail before the model loads
    }
    let m = resolve_with_api(g, &a.model, &a.api)?;
    let template = a.template.unwrap_or(m.template);
    let max_tokens = a.max_tokens.unwrap_or(match a.mode {
        Mode::Direct => 512,
        Mode::Cot => 2048,
    });
    // a base model continuing a completion prompt has no end-of-turn: a blank line ends the answer
    let stop = if template == Template::Completion { vec!["\n\n".to_string()] } else { Vec::new() };
    let sampling = Sampling {
        temperature: a.temperature,
        top_p: a.top_p,
        top_k: a.top_k,
        seed: a.seed,
        max_tokens,
        stop,
        repeat_penalty: a.repeat_penalty,
        stop_at_json: a.stop_at_json,
        constraint: None,
    };
    let settings = LlamaSettings {
        parallel: a.parallel,
        prefix_reuse: !a.no_prefix_reuse,
        ctx_per_seq: a.ctx,
        threads: a.threads,
        kv_unified: a.kv_unified,
        draft_max: a.draft_max,
        flash_attn: a.flash_attn,
        kv_type: a.kv_type,
        ..LlamaSettings::default()
    };
    let (model_sha256, mut engine) = build_engine(&m, settings)?;
    let api = m.api.clone();
    let cfg = EvalConfig {
        model_name: m.name,
        model_path: m.path,
        model_sha256,
        engine: if api.is_some() { "openai".into() } else { "llama.cpp".into() },
        engine_settings: engine.info().settings.clone(),
        prompt: PromptSpec { template, add_source: false },
        mode: a.mode,
        decoding: a.decoding.name().into(),
        datasets,
        split: a.split.clone(),
        limit: a.limit,
        seed: a.seed,
        sampling,
        gold_variant: a.gold,
    };
    eprintln!("run {} → {}", cfg.run_id(), g.results.join(cfg.run_id()).display());
    Ok(run::eval(&cfg, engine.as_mut(), &reg, &g.results, &command_line(), !g.quiet)?)
}

pub fn run(g: &Global, a: EvalArgs) -> anyhow::Result<ExitCode> {
    let out = execute(g, &a)?;
    print_scores(&out.scores);
    if out.interrupted {
        eprintln!("interrupted after {} new sentences; rerun the same command to resume", out.generated);
        return Ok(ExitCode::from(130));
    }
    Ok(ExitCode::SUCCESS)
}

pub fn print_scores(s: &run::Scores) {
    println!("{}", s.run_id);
    println!("{:<22} {:>8} {:>8} {:>8} {:>16} {:>10} {:>8}", "dataset", "P", "R", "F1", "95% CI", "sentences", "no-parse");
    for (name, d) in &s.datasets {
        println!(
            "{:<22} {:>8.2} {:>8.2} {:>8.2} {:>16} {:>10} {:>8}",
            name,
            d.precision,
            d.recall,
            d.f1,
            format!("[{:.2}, {:.2}]", d.ci95[0], d.ci95[1]),
            format!("{}/{}", d.sentences, d.expected),
            d.parse_failures
        );
    }
    if let Some(avg) = s.average {
        println!("{:<22} {:>26.2}", "average (7 zero-shot)", avg);
    }
}

#[derive(Debug, Args)]
pub struct RescoreArgs {
    /// run folders (results/<run-id>) or run ids; none = every run in --results
    pub runs: Vec<PathBuf>,
}

pub fn rescore(g: &Global, a: RescoreArgs) -> anyhow::Result<ExitCode> {
    let runs: Vec<PathBuf> = if a.runs.is_empty() {
        let mut v: Vec<PathBuf> = std::fs::read_dir(&g.results)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.join("manifest.json").exists())
            .collect();
        v.sort();
        v
    } else {
        a.runs.iter().map(|r| if r.exists() { r.clone() } else { g.results.join(r) }).collect()
    };
    for r in runs {
        let s = run::rescore_dir(&r)?;
        print_scores(&s);
    }
    Ok(ExitCode::SUCCESS)
}

impl EvalArgs {
    /// The defaults, as `rner eval` with no flags.
    pub fn parse_defaults() -> EvalArgs {
        #[derive(clap::Parser)]
        struct Wrap {
            #[command(flatten)]
            a: EvalArgs,
        }
        <Wrap as clap::Parser>::parse_from(["rner"]).a
    }
}
