//! Engines turn a batch of rendered prompts into text. They never parse or score.
//! `llama`: llama.cpp through llama-cpp-2 (GGUF; many sequences per batch; shared-prefix KV reuse).
//! `openai`: any OpenAI-compatible HTTP API (bounded concurrency, retries, reasoning kept apart).
#[cfg(feature = "llama")]
pub mod llama;
pub mod openai;

use serde::{Deserialize, Serialize};

use crate::prompt::Rendered;
use crate::Result;

/// Sampling settings, plain data logged with every run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 = greedy (the paper's evaluation)
    pub temperature: f32,
    pub top_p: f32,
    /// 0 = off
    pub top_k: i32,
    pub seed: u64,
    pub max_tokens: usize,
    /// generation ends at the first of these strings (removed from the text)
    pub stop: Vec<String>,
    /// penalty on tokens among the last 64 generated (1 = off; not written when off, so run ids
    /// made before it existed stay the same)
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub repeat_penalty: f32,
    /// end as soon as the answer's first JSON object is complete (not written when off)
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stop_at_json: bool,
    /// constrained decoding of the answer (set per request; `None` = free, the paper's protocol)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub constraint: Option<crate::prompt::grammar::Constraint>,
}

fn one() -> f32 {
    1.0
}

fn is_one(x: &f32) -> bool {
    *x == 1.0
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling { temperature: 0.0, top_p: 1.0, top_k: 0, seed: 0, max_tokens: 512, stop: Vec::new(), repeat_penalty: 1.0, stop_at_json: false, constraint: None }
    }
}

/// One prompt to complete.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenRequest {
    pub prompt: Rendered,
    pub sampling: Sampling,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// end-of-generation token or a stop string
    Stop,
    /// the token cap
    Length,
}

/// One completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GenOutput {
    pub text: String,
    /// reasoning text an API returned apart from the answer
    pub reasoning: Option<String>,
    pub prompt_tokens: usize,
    pub gen_tokens: usize,
    pub finish: Finish,
    pub latency_ms: f64,
    /// the sampled token ids, an end-of-generation token included (llama.cpp; empty from APIs):
    /// GRPO trains on these, not on a re-tokenisation of `text`
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tokens: Vec<u32>,
}

/// Facts about a loaded engine, for manifests.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct EngineInfo {
    pub engine: String,
    pub model: String,
    pub n_params: u64,
    pub n_ctx_train: u32,
    /// the chat template stored in the model, if any
    pub chat_template: Option<String>,
    pub settings: serde_json::Value,
    /// API price, for the cost in manifests and reports
    #[serde(default)]
    pub price: Option<openai::Price>,
}

/// A text generator that takes a batch of requests.
pub trait Engine {
    fn info(&self) -> &EngineInfo;

    /// Generate every request; `on_done(index, output)` is called as each one finishes (in any
    /// order). An error from `on_done` stops generation and is returned.
    fn generate_each(
        &mut self,
        reqs: &[GenRequest],
        on_done: &mut dyn FnMut(usize, GenOutput) -> Result<()>,
    ) -> Result<()>;

    /// Generate every request, outputs in request order.
    fn generate(&mut self, reqs: &[GenRequest]) -> Result<Vec<GenOutput>> {
        let mut out: Vec<Option<GenOutput>> = vec![None; reqs.len()];
        self.generate_each(reqs, &mut |i, o| {
            out[i] = Some(o);
            Ok(())
        })?;
        out.into_iter()
            .enumerate()
            .map(|(i, o)| o.ok_or_else(|| crate::Error::Engine(format!("request {i} got no output"))))
            .collect()
    }
}

/// The text a stop string cuts at: the earliest occurrence of any stop string.
pub fn find_stop(text: &str, stop: &[String]) -> Option<usize> {
    stop.iter().filter(|s| !s.is_empty()).filter_map(|s| text.find(s.as_str())).min()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stop_strings_cut_at_the_earliest() {
        let stop = vec!["\n\n".to_string(), "<|im_end|>".to_string()];
        assert_eq!(find_stop("ab<|im_end|>c\n\n", &stop), Some(2));
        assert_eq!(find_stop("abc", &stop), None);
        assert_eq!(find_stop("abc", &[String::new()]), None);
    }
}
