//! `rner serve`: an OpenAI-compatible HTTP server (`/v1/models`, `/v1/chat/completions`,
//! `/v1/completions`, with `stream: true` as server-sent events) in front of the llama.cpp engine.
//! Concurrent requests join one continuous decode batch. Bad requests get OpenAI-style JSON errors
//! with 4xx codes; nothing a client sends can stop the server.
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::engine::llama::{LlamaEngine, StreamEvent};
use crate::engine::{Finish, GenOutput, GenRequest, Sampling};
use crate::prompt::{Message, Rendered};
use crate::Error;

/// What every handler shares.
pub struct Served {
    pub engine: LlamaEngine,
    /// the model id clients name (`/v1/models`)
    pub model_id: String,
    pub created: u64,
}

/// The server's routes.
pub fn router(served: Arc<Served>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(|| async { api_error(StatusCode::NOT_FOUND, "not_found", "no such route (see /v1/models, /v1/chat/completions, /v1/completions)", None) })
        .method_not_allowed_fallback(|| async { api_error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed on this route", None) })
        .with_state(served)
}

/// Serve until `shutdown` resolves.
pub async fn serve(listener: tokio::net::TcpListener, served: Arc<Served>, shutdown: impl std::future::Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
    axum::serve(listener, router(served)).with_graceful_shutdown(shutdown).await
}

/// `{"error": {"message", "type", "param", "code"}}` with a status.
fn api_error(status: StatusCode, code: &str, msg: impl Into<String>, param: Option<&str>) -> Response {
    let kind = if status.is_client_error() { "invalid_request_error" } else { "server_error" };
    let body = json!({"error": {"message": msg.into(), "type": kind, "param": param, "code": code}});
    (status, Json(body)).into_response()
}

async fn models(State(s): State<Arc<Served>>) -> Json<Value> {
    Json(json!({"object": "list", "data": [{"id": s.model_id, "object": "model", "created": s.created, "owned_by": "rner"}]}))
}

/// `content` is a string or a list of `{type: "text", text}` parts.
#[derive(Deserialize)]
#[serde(untagged)]
enum Content {
    Text(String),
    Parts(Vec<Part>),
}

#[derive(Deserialize)]
struct Part {
    #[serde(default)]
    text: Option<String>,
}

#[derive(Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: Option<Content>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum Stop {
    One(String),
    Many(Vec<String>),
}

/// The fields of a request rner honours; others are accepted and ignored, as OpenAI servers do.
#[derive(Deserialize)]
struct Params {
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    messages: Option<Vec<ChatMessage>>,
    /// `/v1/completions`
    #[serde(default)]
    prompt: Option<Value>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    top_p: Option<f32>,
    #[serde(default)]
    top_k: Option<i32>,
    #[serde(default)]
    max_tokens: Option<usize>,
    #[serde(default)]
    max_completion_tokens: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
    #[serde(default, alias = "repeat_penalty")]
    repetition_penalty: Option<f32>,
    #[serde(default)]
    response_format: Option<Value>,
    /// llama.cpp server's extension: a GBNF grammar (root rule `root`)
    #[serde(default)]
    grammar: Option<String>,
    #[serde(default)]
    stop: Option<Stop>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<Value>,
    #[serde(default)]
    n: Option<usize>,
}

/// A request checked and turned into engine requests, or the 4xx response saying what is wrong.
struct Parsed {
    reqs: Vec<GenRequest>,
    stream: bool,
    include_usage: bool,
    model: String,
}

fn parse(s: &Served, body: &[u8], chat: bool) -> Result<Parsed, Response> {
    let bad = |msg: String, param: Option<&str>| api_error(StatusCode::BAD_REQUEST, "invalid_request", msg, param);
    let v: Value = serde_json::from_slice(body).map_err(|e| bad(format!("the body is not valid JSON: {e}"), None))?;
    if !v.is_object() {
        return Err(bad("the body must be a JSON object".into(), None));
    }
    let p: Params = serde_json::from_value(v).map_err(|e| bad(format!("invalid request: {e}"), None))?;
    if let Some(m) = &p.model {
        if m != &s.model_id {
            let msg = format!("the model `{m}` does not exist; this server has `{}`", s.model_id);
            return Err(api_error(StatusCode::NOT_FOUND, "model_not_found", msg, Some("model")));
        }
    }
    let prompt = if chat {
        let msgs = p.messages.ok_or_else(|| bad("`messages` is required".into(), Some("messages")))?;
        if msgs.is_empty() {
            return Err(bad("`messages` must not be empty".into(), Some("messages")));
        }
        let mut out = Vec::new();
        for (i, m) in msgs.into_iter().enumerate() {
            if !matches!(m.role.as_str(), "system" | "user" | "assistant" | "developer") {
                return Err(bad(format!("messages[{i}].role {:?} is not one of system, user, assistant", m.role), Some("messages")));
            }
            let content = match m.content {
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => parts.into_iter().filter_map(|p| p.text).collect(),
                None => String::new(),
            };
            let role = if m.role == "developer" { "system".to_string() } else { m.role };
            out.push(Message { role, content });
        }
        Rendered { messages: out, text: None }
    } else {
        match p.prompt {
            Some(Value::String(t)) if !t.is_empty() => Rendered { messages: Vec::new(), text: Some(t) },
            _ => return Err(bad("`prompt` must be a non-empty string".into(), Some("prompt"))),
        }
    };
    let temperature = p.temperature.unwrap_or(1.0);
    if !(0.0..=2.0).contains(&temperature) {
        return Err(bad(format!("temperature {temperature} is not in [0, 2]"), Some("temperature")));
    }
    let top_p = p.top_p.unwrap_or(1.0);
    if !(top_p > 0.0 && top_p <= 1.0) {
        return Err(bad(format!("top_p {top_p} is not in (0, 1]"), Some("top_p")));
    }
    let max_tokens = p.max_completion_tokens.or(p.max_tokens).unwrap_or(0);
    if p.max_completion_tokens == Some(0) || p.max_tokens == Some(0) {
        return Err(bad("max_tokens must be at least 1".into(), Some("max_tokens")));
    }
    let n = p.n.unwrap_or(1);
    if !(1..=16).contains(&n) {
        return Err(bad(format!("n = {n}: this server supports 1 to 16"), Some("n")));
    }
    if p.stream && n > 1 {
        return Err(bad("stream with n > 1 is not supported".into(), Some("n")));
    }
    let stop = match p.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s],
        Some(Stop::Many(v)) if v.len() <= 4 => v,
        Some(Stop::Many(_)) => return Err(bad("at most 4 stop strings".into(), Some("stop"))),
    };
    let seed = p.seed.unwrap_or(0);
    let gbnf = match (p.grammar, p.response_format.as_ref().and_then(|r| r.get("type")).and_then(Value::as_str)) {
        (Some(g), _) => Some(g),
        (None, None | Some("text")) => None,
        (None, Some("json_object")) => Some(crate::prompt::grammar::json_object_gbnf()),
        (None, Some(t)) => {
            return Err(bad(format!("response_format {t:?} is not supported here (json_object and text are; or send a GBNF `grammar`)"), Some("response_format")))
        }
    };
    let constraint = gbnf.map(|gbnf| crate::prompt::grammar::Constraint {
        decoding: crate::prompt::grammar::Decoding::Json,
        gbnf,
        after: None,
        json_schema: Value::Null,
    });
    // 0 = up to the context the engine has per sequence
    let reqs = (0..n)
        .map(|i| GenRequest {
            prompt: prompt.clone(),
            sampling: Sampling {
                temperature,
                top_p,
                top_k: p.top_k.unwrap_or(0),
                seed: seed + i as u64,
                max_tokens,
                stop: stop.clone(),
                repeat_penalty: p.repetition_penalty.unwrap_or(1.0),
                stop_at_json: false,
                constraint: constraint.clone(),
            },
        })
        .collect();
    let include_usage = p.stream_options.as_ref().and_then(|o| o.get("include_usage")).and_then(Value::as_bool).unwrap_or(false);
    Ok(Parsed { reqs, stream: p.stream, include_usage, model: s.model_id.clone() })
}

/// An engine failure as an HTTP error.
fn engine_error(e: Error) -> Response {
    match e {
        Error::Context { .. } => api_error(StatusCode::BAD_REQUEST, "context_length_exceeded", e.to_string(), Some("messages")),
        Error::Engine(m) if m.contains("grammar") => api_error(StatusCode::BAD_REQUEST, "invalid_grammar", m, Some("grammar")),
        other => api_error(StatusCode::INTERNAL_SERVER_ERROR, "engine_error", other.to_string(), None),
    }
}

fn finish_reason(f: Finish) -> &'static str {
    match f {
        Finish::Stop => "stop",
        Finish::Length => "length",
    }
}

async fn wait_done(mut rx: tokio::sync::mpsc::UnboundedReceiver<StreamEvent>) -> Result<GenOutput, Error> {
    while let Some(ev) = rx.recv().await {
        match ev {
            StreamEvent::Delta(_) => {}
            StreamEvent::Done(o) => return Ok(o),
            StreamEvent::Failed(e) => return Err(e),
        }
    }
    Err(Error::Engine("the engine stopped".into()))
}

async fn chat(State(s): State<Arc<Served>>, body: Bytes) -> Response {
    handle(s, body, true).await
}

async fn completions(State(s): State<Arc<Served>>, body: Bytes) -> Response {
    handle(s, body, false).await
}

async fn handle(s: Arc<Served>, body: Bytes, chat: bool) -> Response {
    let p = match parse(&s, &body, chat) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let id = format!("{}-{:x}", if chat { "chatcmpl" } else { "cmpl" }, rand::random::<u64>());
    let created = crate::util::unix_time();
    let mut rxs = Vec::new();
    for r in p.reqs {
        match s.engine.submit(r) {
            Ok(rx) => rxs.push(rx),
            Err(e) => return engine_error(e),
        }
    }
    if p.stream {
        let rx = rxs.pop().expect("n = 1 when streaming");
        return stream(rx, id, created, p.model, chat, p.include_usage).into_response();
    }
    let mut outs = Vec::new();
    for rx in rxs {
        match wait_done(rx).await {
            Ok(o) => outs.push(o),
            Err(e) => return engine_error(e),
        }
    }
    let prompt_tokens = outs.first().map_or(0, |o| o.prompt_tokens);
    let completion_tokens: usize = outs.iter().map(|o| o.gen_tokens).sum();
    let choices: Vec<Value> = outs
        .iter()
        .enumerate()
        .map(|(i, o)| {
            if chat {
                json!({"index": i, "message": {"role": "assistant", "content": o.text}, "finish_reason": finish_reason(o.finish), "logprobs": null})
            } else {
                json!({"index": i, "text": o.text, "finish_reason": finish_reason(o.finish), "logprobs": null})
            }
        })
        .collect();
    Json(json!({
        "id": id,
        "object": if chat { "chat.completion" } else { "text_completion" },
        "created": created,
        "model": p.model,
        "choices": choices,
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens, "total_tokens": prompt_tokens + completion_tokens},
    }))
    .into_response()
}

/// Server-sent events: a role chunk, content deltas as tokens arrive, a finish chunk, optionally
/// a usage chunk, then `[DONE]`. An engine failure mid-stream is sent as an `error` event.
fn stream(
    rx: tokio::sync::mpsc::UnboundedReceiver<StreamEvent>,
    id: String,
    created: u64,
    model: String,
    chat: bool,
    include_usage: bool,
) -> Sse<impl futures_util::Stream<Item = Result<Event, std::convert::Infallible>>> {
    let object = if chat { "chat.completion.chunk" } else { "text_completion" };
    let chunk = move |delta: Value, finish: Option<&str>| {
        let choice = if chat {
            json!({"index": 0, "delta": delta, "finish_reason": finish, "logprobs": null})
        } else {
            json!({"index": 0, "text": delta.get("content").cloned().unwrap_or(json!("")), "finish_reason": finish, "logprobs": null})
        };
        json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]})
    };
    enum St {
        Start,
        Body,
        Usage(Value),
        Done,
        End,
    }
    let state = (St::Start, rx, chunk);
    let events = futures_util::stream::unfold(state, move |(st, mut rx, chunk)| async move {
        let data = |v: &Value| Event::default().data(v.to_string());
        match st {
            St::Start if chat => {
                let ev = data(&chunk(json!({"role": "assistant", "content": ""}), None));
                Some((Ok(ev), (St::Body, rx, chunk)))
            }
            St::Start | St::Body => match rx.recv().await {
                Some(StreamEvent::Delta(t)) => Some((Ok(data(&chunk(json!({"content": t}), None))), (St::Body, rx, chunk))),
                Some(StreamEvent::Done(o)) => {
                    let ev = data(&chunk(json!({}), Some(finish_reason(o.finish))));
                    let next = if include_usage {
                        let mut u = chunk(json!({}), None);
                        u["choices"] = json!([]);
                        u["usage"] = json!({"prompt_tokens": o.prompt_tokens, "completion_tokens": o.gen_tokens, "total_tokens": o.prompt_tokens + o.gen_tokens});
                        St::Usage(u)
                    } else {
                        St::Done
                    };
                    Some((Ok(ev), (next, rx, chunk)))
                }
                Some(StreamEvent::Failed(e)) => {
                    let ev = data(&json!({"error": {"message": e.to_string(), "type": "server_error", "code": "engine_error"}}));
                    Some((Ok(ev), (St::Done, rx, chunk)))
                }
                None => {
                    let ev = data(&json!({"error": {"message": "the engine stopped", "type": "server_error", "code": "engine_error"}}));
                    Some((Ok(ev), (St::Done, rx, chunk)))
                }
            },
            St::Usage(u) => Some((Ok(data(&u)), (St::Done, rx, chunk))),
            St::Done => Some((Ok(Event::default().data("[DONE]")), (St::End, rx, chunk))),
            St::End => None,
        }
    });
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// A server running on its own tokio runtime (for `rner serve`, benches and tests).
pub struct Running {
    pub addr: std::net::SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    done: Option<std::sync::mpsc::Receiver<std::io::Result<()>>>,
    _rt: tokio::runtime::Runtime,
}

impl Running {
    /// `http://ADDR/v1`
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    /// Stop accepting, finish the requests in flight, return.
    pub fn shutdown(mut self) -> std::io::Result<()> {
        self.stop_now()
    }

    fn stop_now(&mut self) -> std::io::Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        match self.done.take() {
            Some(rx) => rx.recv().unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.stop_now();
    }
}

/// Bind `addr` (port 0 = any free port) and serve `served` in the background.
pub fn spawn(served: Served, addr: &str) -> crate::Result<Running> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Engine(format!("tokio runtime: {e}")))?;
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| Error::config("--host/--port", format!("cannot bind {addr}: {e}")))?;
    let local = listener.local_addr().map_err(|e| Error::config("--host/--port", e.to_string()))?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    let served = Arc::new(served);
    rt.spawn(async move {
        let r = serve(listener, served, async {
            let _ = stop_rx.await;
        })
        .await;
        let _ = done_tx.send(r);
    });
    Ok(Running { addr: local, stop: Some(stop_tx), done: Some(done_rx), _rt: rt })
}
