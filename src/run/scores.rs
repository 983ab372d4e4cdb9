//! `scores.json` and `manifest.json`: the machine-read summary and the recipe of a run.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::score::DatasetScores;

/// Direct answer or reasoning first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// The paper's zero-shot prompt; the model answers with JSON.
    #[default]
    Direct,
    /// The same prompt; the model is expected to reason in `<think>…</think>` first (more tokens).
    Cot,
}

/// `results/<run-id>/scores.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Scores {
    pub run_id: String,
    /// a short system name for tables (baseline name or model file stem)
    pub model: String,
    pub mode: Mode,
    /// `free` (the paper's protocol), later `json` / `schema`
    pub decoding: String,
    pub split: String,
    pub limit: Option<usize>,
    pub seed: u64,
    /// the exact command that produced the run (as first started)
    pub command: String,
    pub datasets: BTreeMap<String, DatasetScores>,
    /// mean of the rounded per-dataset F1s over the seven zero-shot sets, when all seven are complete
    pub average: Option<f64>,
    /// `llama.cpp` or `openai`
    #[serde(default)]
    pub engine: String,
    /// tokens, time and cost summed over the run's sessions
    #[serde(default)]
    pub usage: Usage,
}

/// What a run consumed, summed over its sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Usage {
    pub sentences: usize,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub seconds: f64,
    /// US dollars, when the engine has a price table
    pub cost_usd: Option<f64>,
}
