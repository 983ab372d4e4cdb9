//! `openai` engine: any OpenAI-compatible `/v1/chat/completions` server (OpenAI, DeepSeek, vLLM,
//! SGLang, llama.cpp's server, Ollama, `rner serve`), with bounded concurrency and retries.
//!
//! Every request is sent with the very messages a local engine would render. Failures are kinds:
//! 429, 408, 5xx, connection errors, timeouts and unreadable bodies are retried with exponential
//! backoff and jitter (honouring `Retry-After`); 401/403/404 stop the whole call (no request can
//! succeed); other 4xx fail that request alone. Answers are handed to the caller as they arrive,
//! so the run stores each before the next one lands. The API key is read from the environment
//! variable the settings name and lives only in this process's memory.
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use serde::{Deserialize, Serialize};

use super::{Engine, EngineInfo, Finish, GenOutput, GenRequest};
use crate::{Error, Result};

/// Price of an API in US dollars per million tokens (from the provider's price page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Price {
    pub input_per_mtok: f64,
    pub output_per_mtok: f64,
    /// where and when the price was read
    #[serde(default)]
    pub source: String,
}

impl Price {
    pub fn cost(&self, prompt_tokens: usize, gen_tokens: usize) -> f64 {
        (prompt_tokens as f64 * self.input_per_mtok + gen_tokens as f64 * self.output_per_mtok) / 1e6
    }
}

/// How to reach an OpenAI-compatible server (the `[api]` table of a baseline TOML, or flags).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OpenAiSettings {
    /// up to and including `/v1`, e.g. `https://api.openai.com/v1`
    pub base_url: String,
    /// the model name the server knows
    pub model: String,
    /// name of the environment variable holding the API key (none: no Authorization header)
    #[serde(default)]
    pub api_key_env: Option<String>,
    /// requests in flight at once
    #[serde(default = "default_concurrency")]
    pub concurrency: usize,
    /// seconds per attempt, response body included
    #[serde(default = "default_timeout")]
    pub timeout_s: f64,
    /// attempts after the first
    #[serde(default = "default_retries")]
    pub max_retries: u32,
    /// first backoff; doubles per attempt up to `backoff_max_ms`, times a random factor in [0.5, 1]
    #[serde(default = "default_backoff")]
    pub backoff_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// the body field that carries the token cap (`max_completion_tokens` for OpenAI's o-series)
    #[serde(default = "default_max_tokens_field")]
    pub max_tokens_field: String,
    /// fields merged into every request body last (they override ours)
    #[serde(default)]
    pub extra_body: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    pub price: Option<Price>,
}

fn default_concurrency() -> usize {
    8
}
fn default_timeout() -> f64 {
    120.0
}
fn default_retries() -> u32 {
    6
}
fn default_backoff() -> u64 {
    1000
}
fn default_backoff_max() -> u64 {
    60_000
}
fn default_max_tokens_field() -> String {
    "max_tokens".into()
}

impl OpenAiSettings {
    pub fn new(base_url: &str, model: &str) -> OpenAiSettings {
        OpenAiSettings {
            base_url: base_url.into(),
            model: model.into(),
            api_key_env: None,
            concurrency: default_concurrency(),
            timeout_s: default_timeout(),
            max_retries: default_retries(),
            backoff_ms: default_backoff(),
            backoff_max_ms: default_backoff_max(),
            max_tokens_field: default_max_tokens_field(),
            extra_body: Default::default(),
            price: None,
        }
    }

    /// What identifies the system behind the API (base URL, model, extra body): hashed into run ids.
    pub fn identity(&self) -> String {
        serde_json::json!({"base_url": self.base_url.trim_end_matches('/'), "model": self.model, "extra_body": self.extra_body}).to_string()
    }
}

/// One request's failure after its attempts.
#[derive(Debug, Clone)]
struct Failure {
    /// no other request can succeed either (bad key, unknown model or URL)
    fatal: bool,
    msg: String,
}

/// An OpenAI-compatible API as an [`Engine`].
pub struct OpenAiEngine {
    settings: Arc<OpenAiSettings>,
    key: Option<Arc<str>>,
    client: reqwest::Client,
    rt: tokio::runtime::Runtime,
    info: EngineInfo,
}

impl OpenAiEngine {
    pub fn new(settings: OpenAiSettings) -> Result<OpenAiEngine> {
        if settings.concurrency == 0 {
            return Err(Error::config("--concurrency", "must be at least 1"));
        }
        if !(settings.base_url.starts_with("http://") || settings.base_url.starts_with("https://")) {
            return Err(Error::config("--base-url", format!("{:?} is not an http(s) URL", settings.base_url)));
        }
        let key = match &settings.api_key_env {
            Some(var) => Some(Arc::<str>::from(std::env::var(var).map_err(|_| {
                Error::config("--api-key-env", format!("the environment variable {var} is not set (export it with the API key)"))
            })?)),
            None => None,
        };
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(settings.timeout_s))
            .pool_max_idle_per_host(settings.concurrency)
            .build()
            .map_err(|e| Error::Engine(format!("HTTP client: {e}")))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::Engine(format!("tokio runtime: {e}")))?;
        let info = EngineInfo {
            engine: "openai".into(),
            model: settings.model.clone(),
            n_params: 0,
            n_ctx_train: 0,
            chat_template: None,
            // the key's variable name only, never its value
            settings: serde_json::to_value(&settings).unwrap_or_default(),
            price: settings.price.clone(),
        };
        Ok(OpenAiEngine { settings: Arc::new(settings), key, client, rt, info })
    }

    pub fn settings(&self) -> &OpenAiSettings {
        &self.settings
    }
}

impl Engine for OpenAiEngine {
    fn info(&self) -> &EngineInfo {
        &self.info
    }

    fn generate_each(
        &mut self,
        reqs: &[GenRequest],
        on_done: &mut dyn FnMut(usize, GenOutput) -> Result<()>,
    ) -> Result<()> {
        let settings = self.settings.clone();
        let client = self.client.clone();
        let key = self.key.clone();
        let stop = Arc::new(AtomicBool::new(false));
        self.rt.block_on(async {
            let permits = Arc::new(tokio::sync::Semaphore::new(settings.concurrency));
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(usize, std::result::Result<GenOutput, Failure>)>();
            let mut tasks = tokio::task::JoinSet::new();
            for (i, r) in reqs.iter().enumerate() {
                let (settings, client, key, tx, permits, stop) =
                    (settings.clone(), client.clone(), key.clone(), tx.clone(), permits.clone(), stop.clone());
                let body = request_body(&settings, r);
                tasks.spawn(async move {
                    let Ok(_permit) = permits.acquire_owned().await else { return };
                    if stop.load(Ordering::SeqCst) {
                        return;
                    }
                    let out = complete(&client, &settings, key.as_deref(), &body, &stop).await;
                    let _ = tx.send((i, out));
                });
            }
            drop(tx);
            let mut failed: Vec<(usize, String)> = Vec::new();
            let mut answered = 0usize;
            while let Some((i, out)) = rx.recv().await {
                match out {
                    Ok(o) => {
                        answered += 1;
                        if let Err(e) = on_done(i, o) {
                            stop.store(true, Ordering::SeqCst);
                            tasks.abort_all();
                            return Err(e);
                        }
                    }
                    Err(f) if f.fatal => {
                        stop.store(true, Ordering::SeqCst);
                        tasks.abort_all();
                        return Err(Error::Api { failed: reqs.len() - answered, total: reqs.len(), msg: f.msg, fatal: true });
                    }
                    Err(f) => {
                        tracing::warn!("request {i}: {}", f.msg);
                        failed.push((i, f.msg));
                    }
                }
            }
            match failed.first() {
                None => Ok(()),
                Some((_, msg)) => Err(Error::Api { failed: failed.len(), total: reqs.len(), msg: msg.clone(), fatal: false }),
            }
        })
    }
}

/// The JSON body of one chat (or, for a raw-text prompt, completion) request.
fn request_body(s: &OpenAiSettings, r: &GenRequest) -> serde_json::Value {
    let mut body = serde_json::Map::new();
    body.insert("model".into(), s.model.clone().into());
    match &r.prompt.text {
        // a prompt already wrapped (qwen template, completion prompt) goes to /completions as is
        Some(text) => {
            body.insert("prompt".into(), text.clone().into());
        }
        None => {
            body.insert("messages".into(), serde_json::to_value(&r.prompt.messages).unwrap_or_default());
        }
    }
    let sm = &r.sampling;
    body.insert("temperature".into(), serde_json::json!(sm.temperature));
    if sm.top_p < 1.0 {
        body.insert("top_p".into(), serde_json::json!(sm.top_p));
    }
    if sm.max_tokens > 0 {
        body.insert(s.max_tokens_field.clone(), serde_json::json!(sm.max_tokens));
    }
    body.insert("seed".into(), serde_json::json!(sm.seed));
    if sm.repeat_penalty != 1.0 {
        // vLLM's and SGLang's name; llama.cpp's server reads `repeat_penalty` (set it in extra_body)
        body.insert("repetition_penalty".into(), serde_json::json!(sm.repeat_penalty));
    }
    if !sm.stop.is_empty() {
        body.insert("stop".into(), serde_json::json!(sm.stop));
    }
    if let Some(c) = &sm.constraint {
        use crate::prompt::grammar::Decoding;
        let rf = match c.decoding {
            Decoding::Json => serde_json::json!({"type": "json_object"}),
            _ => serde_json::json!({"type": "json_schema", "json_schema": {"name": "entities", "schema": c.json_schema, "strict": true}}),
        };
        body.insert("response_format".into(), rf);
    }
    for (k, v) in &s.extra_body {
        body.insert(k.clone(), v.clone());
    }
    serde_json::Value::Object(body)
}

/// Send one request, retrying what may succeed later.
async fn complete(
    client: &reqwest::Client,
    s: &OpenAiSettings,
    key: Option<&str>,
    body: &serde_json::Value,
    stop: &AtomicBool,
) -> std::result::Result<GenOutput, Failure> {
    let endpoint = if body.get("prompt").is_some() { "completions" } else { "chat/completions" };
    let url = format!("{}/{endpoint}", s.base_url.trim_end_matches('/'));
    let attempts = s.max_retries + 1;
    let mut last = String::new();
    for attempt in 0..attempts {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let t0 = Instant::now();
        let mut rb = client.post(&url).json(body);
        if let Some(k) = key {
            rb = rb.bearer_auth(k);
        }
        let mut wait: Option<Duration> = None;
        match rb.send().await {
            Err(e) => last = format!("{}: {}", if e.is_timeout() { "timed out" } else { "connection error" }, error_chain(&e)),
            Ok(resp) => {
                let status = resp.status();
                wait = retry_after(resp.headers());
                match resp.text().await {
                    Err(e) => last = format!("HTTP {status}, body unreadable: {}", error_chain(&e)),
                    Ok(text) if status.is_success() => match parse_response(&text) {
                        Ok(mut out) => {
                            out.latency_ms = t0.elapsed().as_secs_f64() * 1000.0;
                            return Ok(out);
                        }
                        Err(msg) => last = format!("HTTP {status}, {msg}: {}", clip(&text)),
                    },
                    Ok(text) => {
                        last = format!("HTTP {status}: {}", clip(&text));
                        let code = status.as_u16();
                        if !(code == 408 || code == 409 || code == 429 || status.is_server_error()) {
                            if body.get("response_format").is_some() && text.contains("response_format") {
                                last = format!("{last} (this server does not support the response_format that --decoding {} maps to; try --decoding json or free)", body["response_format"]["type"].as_str().unwrap_or("?"));
                            }
                            let fatal = matches!(code, 401 | 403 | 404) || text.contains("response_format");
                            return Err(Failure { fatal, msg: format!("{url}: {last}") });
                        }
                    }
                }
            }
        }
        if attempt + 1 < attempts {
            let backoff = s.backoff_ms.saturating_mul(1u64 << attempt.min(20)).min(s.backoff_max_ms);
            let jittered = Duration::from_millis((backoff as f64 * rand::thread_rng().gen_range(0.5..=1.0)) as u64);
            let pause = wait.map(|w| w.min(Duration::from_secs(600))).unwrap_or(jittered);
            tracing::debug!("{url}: {last}; retrying in {pause:?}");
            tokio::time::sleep(pause).await;
        }
    }
    Err(Failure { fatal: false, msg: format!("{url}: {attempts} attempts failed; last: {last}") })
}

/// `Retry-After` (seconds; an HTTP date is not honoured) or OpenAI's `retry-after-ms`.
fn retry_after(h: &reqwest::header::HeaderMap) -> Option<Duration> {
    if let Some(ms) = h.get("retry-after-ms").and_then(|v| v.to_str().ok()).and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    h.get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|s| Duration::from_secs_f64(s.max(0.0)))
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        s.push_str(": ");
        s.push_str(&c.to_string());
        src = c.source();
    }
    s
}

fn clip(body: &str) -> String {
    let t = body.trim();
    match t.char_indices().nth(300) {
        Some((i, _)) => format!("{}…", &t[..i]),
        None => t.to_string(),
    }
}

#[derive(Deserialize)]
struct Response {
    #[serde(default)]
    choices: Vec<Choice>,
    #[serde(default)]
    usage: Option<Usage>,
    #[serde(default)]
    error: Option<serde_json::Value>,
}

#[derive(Deserialize)]
struct Choice {
    #[serde(default)]
    message: Option<Message>,
    /// `/completions`
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Message {
    #[serde(default)]
    content: Option<serde_json::Value>,
    /// DeepSeek, vLLM
    #[serde(default)]
    reasoning_content: Option<String>,
    /// OpenRouter, Ollama, newer vLLM
    #[serde(default)]
    reasoning: Option<String>,
}

#[derive(Deserialize)]
struct Usage {
    #[serde(default)]
    prompt_tokens: Option<usize>,
    #[serde(default)]
    completion_tokens: Option<usize>,
}

/// A response body → output, tolerating what servers leave out (usage, finish reason, content
/// as a list of parts, `null` content beside a reasoning field).
fn parse_response(text: &str) -> std::result::Result<GenOutput, String> {
    let r: Response = serde_json::from_str(text).map_err(|e| format!("not a completion response ({e})"))?;
    let Some(c) = r.choices.into_iter().next() else {
        return Err(match r.error {
            Some(e) => format!("error in body: {e}"),
            None => "no choices".into(),
        });
    };
    let (content, reasoning) = match c.message {
        Some(m) => (content_text(m.content), m.reasoning_content.or(m.reasoning).filter(|r| !r.is_empty())),
        None => (c.text.unwrap_or_default(), None),
    };
    let usage = r.usage.unwrap_or(Usage { prompt_tokens: None, completion_tokens: None });
    Ok(GenOutput {
        text: content,
        reasoning,
        prompt_tokens: usage.prompt_tokens.unwrap_or(0),
        gen_tokens: usage.completion_tokens.unwrap_or(0),
        finish: if c.finish_reason.as_deref() == Some("length") { Finish::Length } else { Finish::Stop },
        latency_ms: 0.0,
        tokens: Vec::new(),
    })
}

fn content_text(v: Option<serde_json::Value>) -> String {
    match v {
        Some(serde_json::Value::String(s)) => s,
        Some(serde_json::Value::Array(parts)) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(|t| t.as_str()).or_else(|| p.as_str()))
            .collect(),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_are_read_permissively() {
        let o = parse_response(r#"{"choices":[{"message":{"content":"{}","reasoning_content":"think"},"finish_reason":"stop"}],"usage":{"prompt_tokens":5,"completion_tokens":2}}"#).unwrap();
        assert_eq!((o.text.as_str(), o.reasoning.as_deref(), o.prompt_tokens, o.gen_tokens, o.finish), ("{}", Some("think"), 5, 2, Finish::Stop));
        // no usage, `reasoning` spelling, null content, length finish
        let o = parse_response(r#"{"choices":[{"message":{"content":null,"reasoning":"r"},"finish_reason":"length"}]}"#).unwrap();
        assert_eq!((o.text.as_str(), o.reasoning.as_deref(), o.gen_tokens, o.finish), ("", Some("r"), 0, Finish::Length));
        // content as parts; completions' `text`
        assert_eq!(parse_response(r#"{"choices":[{"message":{"content":[{"type":"text","text":"a"},{"type":"text","text":"b"}]}}]}"#).unwrap().text, "ab");
        assert_eq!(parse_response(r#"{"choices":[{"text":"t"}]}"#).unwrap().text, "t");
        assert!(parse_response(r#"{"error":{"message":"overloaded"}}"#).unwrap_err().contains("overloaded"));
        assert!(parse_response("<html>").is_err());
        assert!(parse_response(r#"{"choices":[{"message":{"content":"x"#).is_err());
    }

    #[test]
    fn bodies_carry_sampling_and_extra_fields() {
        let mut s = OpenAiSettings::new("http://x/v1", "m");
        s.extra_body.insert("temperature".into(), serde_json::json!(0.5));
        s.extra_body.insert("top_k".into(), serde_json::json!(1));
        let r = GenRequest {
            prompt: crate::prompt::Rendered { messages: vec![crate::prompt::Message { role: "user".into(), content: "hi".into() }], text: None },
            sampling: crate::engine::Sampling { max_tokens: 7, stop: vec!["\n\n".into()], ..Default::default() },
        };
        let b = request_body(&s, &r);
        assert_eq!(b["messages"][0]["content"], "hi");
        assert_eq!(b["max_tokens"], 7);
        assert_eq!(b["temperature"], 0.5, "extra body overrides");
        assert_eq!(b["top_k"], 1);
        assert_eq!(b["stop"][0], "\n\n");
        assert!(b.get("top_p").is_none());
    }

    #[test]
    fn price_is_per_million_tokens() {
        let p = Price { input_per_mtok: 2.5, output_per_mtok: 10.0, source: String::new() };
        assert!((p.cost(1_000_000, 500_000) - 7.5).abs() < 1e-12);
    }
}
