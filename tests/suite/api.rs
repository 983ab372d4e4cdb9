//! The `openai` engine against real servers on loopback: `rner serve` with the real default model,
//! and a fault-injecting HTTP server (429 + Retry-After, 500, slow, truncated and non-JSON bodies,
//! dropped connections, bad keys).
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rner::engine::llama::{LlamaEngine, LlamaSettings};
use rner::engine::openai::{OpenAiEngine, OpenAiSettings};
use rner::engine::{Engine, GenRequest, Sampling};
use rner::serve::{self, Served};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::util::{data_dir, default_model, rner};

fn requests(n: usize, max_tokens: usize) -> Vec<GenRequest> {
    let reg = rner::data::Registry::new(&data_dir()).unwrap();
    let spec = rner::prompt::PromptSpec::default();
    let sampling = Sampling { max_tokens, ..Sampling::default() };
    reg.load("crossner_ai", "test").unwrap()[..n]
        .iter()
        .map(|e| GenRequest { prompt: rner::prompt::render(e, &spec), sampling: sampling.clone() })
        .collect()
}

fn start_serve(settings: LlamaSettings) -> serve::Running {
    let engine = LlamaEngine::load(&default_model(), settings).unwrap();
    serve::spawn(Served { engine, model_id: "m".into(), created: 0 }, "127.0.0.1:0").unwrap()
}

#[test]
fn client_through_serve_gives_the_engines_greedy_answers() {
    // one sequence at a time, whole prompts: the very computation a direct run does
    let settings = LlamaSettings { parallel: 1, prefix_reuse: false, ctx_per_seq: 1024, threads: 2, ..Default::default() };
    let reqs = requests(4, 40);
    let direct = LlamaEngine::load(&default_model(), settings.clone()).unwrap().generate(&reqs).unwrap();
    let server = start_serve(settings);
    let mut api = OpenAiSettings::new(&server.base_url(), "m");
    api.concurrency = 4;
    let mut client = OpenAiEngine::new(api).unwrap();
    let served = client.generate(&reqs).unwrap();
    for (d, s) in direct.iter().zip(&served) {
        assert_eq!(d.text, s.text);
        assert_eq!((d.prompt_tokens, d.gen_tokens, d.finish), (s.prompt_tokens, s.gen_tokens, s.finish));
    }
}

/// A blocking POST with reqwest; returns status and body.
fn post(url: &str, body: &str) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let r = reqwest::Client::new().post(url).header("content-type", "application/json").body(body.to_string()).send().await.unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    })
}

#[test]
fn serve_streams_batches_and_rejects_bad_requests_without_falling_over() {
    let server = start_serve(LlamaSettings { parallel: 4, ctx_per_seq: 512, threads: 2, ..Default::default() });
    let url = format!("{}/chat/completions", server.base_url());
    let msg = r#""messages":[{"role":"user","content":"Name three colours."}],"temperature":0,"max_tokens":24"#;
    let (code, body) = post(&url, &format!("{{{msg}}}"));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let whole = v["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(!whole.is_empty());
    let used = v["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=24).contains(&used));

    // stream: the deltas add up to the same greedy text, then a finish chunk, usage and [DONE]
    let (code, sse) = post(&url, &format!(r#"{{{msg},"stream":true,"stream_options":{{"include_usage":true}}}}"#));
    assert_eq!(code, 200);
    let datas: Vec<&str> = sse.lines().filter_map(|l| l.strip_prefix("data: ")).collect();
    assert_eq!(*datas.last().unwrap(), "[DONE]");
    let chunks: Vec<serde_json::Value> = datas[..datas.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let streamed: String = chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str()).collect();
    assert_eq!(streamed, whole);
    let finish = v["choices"][0]["finish_reason"].clone();
    assert!(chunks.iter().any(|c| c["choices"][0]["finish_reason"] == finish));
    assert_eq!(chunks.last().unwrap()["usage"]["completion_tokens"].as_u64(), Some(used));

    // concurrent requests share the decode batch and each gets its own answer
    let reqs = requests(6, 16);
    let mut client = OpenAiEngine::new(OpenAiSettings { concurrency: 6, ..OpenAiSettings::new(&server.base_url(), "m") }).unwrap();
    let outs = client.generate(&reqs).unwrap();
    assert!(outs.iter().all(|o| o.gen_tokens >= 1 && o.gen_tokens <= 16 && o.prompt_tokens > 150));

    // bad requests: OpenAI-style JSON errors with 4xx codes
    let cases: [(&str, u16, &str); 8] = [
        ("{", 400, "invalid_request"),
        ("[1]", 400, "invalid_request"),
        (r#"{"messages":[]}"#, 400, "invalid_request"),
        (r#"{"messages":"hi"}"#, 400, "invalid_request"),
        (r#"{"messages":[{"role":"wizard","content":"x"}]}"#, 400, "invalid_request"),
        (r#"{"model":"other","messages":[{"role":"user","content":"x"}]}"#, 404, "model_not_found"),
        (r#"{"messages":[{"role":"user","content":"x"}],"max_tokens":100000}"#, 400, "context_length_exceeded"),
        (r#"{"messages":[{"role":"user","content":"x"}],"temperature":7}"#, 400, "invalid_request"),
    ];
    for (body, want, code) in cases {
        let (got, text) = post(&url, body);
        assert_eq!(got, want, "{body} → {text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["error"]["code"], code, "{body}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }
    let (got, _) = post(&format!("{}/nowhere", server.base_url()), "{}");
    assert_eq!(got, 404);
    // still serving
    assert_eq!(post(&url, &format!("{{{msg}}}")).0, 200);
}

/// What the fault server does with an attempt.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Ok,
    RateLimited,
    ServerError,
    Slow,
    Truncated,
    NotJson,
    Drop,
    Unauthorized,
    NoResponseFormat,
}

/// One request as the fault server saw it.
#[derive(Clone, Debug)]
struct Seen {
    sentence: String,
    at: Instant,
    auth: Option<String>,
}

/// A tiny HTTP/1.1 server on 127.0.0.1: `plan(sentence, attempt)` picks the fault per attempt.
struct FaultServer {
    addr: std::net::SocketAddr,
    seen: Arc<Mutex<Vec<Seen>>>,
    _rt: tokio::runtime::Runtime,
}

type Plan = Arc<dyn Fn(&str, usize) -> Fault + Send + Sync>;

impl FaultServer {
    fn start(plan: Plan) -> FaultServer {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let s2 = seen.clone();
        rt.spawn(async move {
            loop {
                let Ok((sock, _)) = listener.accept().await else { return };
                let (plan, seen) = (plan.clone(), s2.clone());
                tokio::spawn(async move {
                    let _ = handle(sock, plan, seen).await;
                });
            }
        });
        FaultServer { addr, seen, _rt: rt }
    }

    fn url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    fn attempts(&self) -> HashMap<String, usize> {
        let mut m = HashMap::new();
        for s in self.seen.lock().unwrap().iter() {
            *m.entry(s.sentence.clone()).or_insert(0) += 1;
        }
        m
    }

    fn total(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn handle(mut sock: tokio::net::TcpStream, plan: Plan, seen: Arc<Mutex<Vec<Seen>>>) -> std::io::Result<()> {
    let mut buf = Vec::new();
    let mut tmp = [0u8; 8192];
    let head_end = loop {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            return Ok(());
        }
        buf.extend_from_slice(&tmp[..n]);
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
    let header = |name: &str| {
        head.lines().find_map(|l| l.split_once(':').filter(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.trim().to_string()))
    };
    let len: usize = header("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
    while buf.len() < head_end + len {
        let n = sock.read(&mut tmp).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&tmp[..n]);
    }
    let body: serde_json::Value = serde_json::from_slice(&buf[head_end..]).unwrap_or_default();
    let content = body["messages"][0]["content"].as_str().unwrap_or("").to_string();
    let sentence = content.rsplit("Sentence:\n").next().unwrap_or("").to_string();
    let attempt = {
        let mut s = seen.lock().unwrap();
        let n = s.iter().filter(|x| x.sentence == sentence).count();
        s.push(Seen { sentence: sentence.clone(), at: Instant::now(), auth: header("authorization") });
        n
    };
    let ok = r#"{"id":"x","choices":[{"index":0,"message":{"role":"assistant","content":"{\"entities\": {}}"},"finish_reason":"stop"}],"usage":{"prompt_tokens":100,"completion_tokens":10}}"#;
    let reply = |status: &str, extra: &str, body: &str| {
        format!("HTTP/1.1 {status}\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n{extra}\r\n{body}", body.len())
    };
    let out = match plan(&sentence, attempt) {
        Fault::Ok => reply("200 OK", "", ok),
        Fault::RateLimited => reply("429 Too Many Requests", "retry-after: 1\r\n", r#"{"error":{"message":"slow down"}}"#),
        Fault::ServerError => reply("500 Internal Server Error", "", r#"{"error":{"message":"boom at the backend"}}"#),
        Fault::Slow => {
            tokio::time::sleep(Duration::from_millis(9000)).await;
            reply("200 OK", "", ok)
        }
        Fault::Truncated => {
            let full = reply("200 OK", "", ok);
            full[..full.len() - 40].to_string()
        }
        Fault::NotJson => reply("200 OK", "", "<html>gateway says hi</html>"),
        Fault::Drop => return Ok(()),
        Fault::Unauthorized => reply("401 Unauthorized", "", r#"{"error":{"message":"Incorrect API key provided"}}"#),
        Fault::NoResponseFormat if body.get("response_format").is_some() => {
            reply("400 Bad Request", "", r#"{"error":{"message":"Unrecognized request argument supplied: response_format"}}"#)
        }
        Fault::NoResponseFormat => reply("200 OK", "", ok),
    };
    sock.write_all(out.as_bytes()).await?;
    sock.shutdown().await
}

fn eval_api(results: &Path, model: &str, url: Option<&str>, extra: &[&str]) -> std::process::Output {
    let mut c = rner();
    c.args(["--quiet", "--results"]).arg(results).args(["eval", "--model", model, "--datasets", "crossner_ai", "--limit", "12"]);
    if let Some(u) = url {
        c.args(["--base-url", u]);
    }
    c.args(["--retries", "3", "--backoff-ms", "20", "--timeout", "3", "--concurrency", "4"]).args(extra);
    c.output().unwrap()
}

fn run_dir(results: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(results).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn rows(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("samples.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn every_fault_is_retried_until_answered_and_nothing_is_asked_twice() {
    const KINDS: [Fault; 6] = [Fault::RateLimited, Fault::ServerError, Fault::Slow, Fault::Truncated, Fault::NotJson, Fault::Drop];
    // each sentence first meets one fault (by its length), then an answer
    let plan: Plan = Arc::new(|s: &str, attempt: usize| if attempt == 0 { KINDS[s.len() % KINDS.len()] } else { Fault::Ok });
    let server = FaultServer::start(plan);
    let tmp = tempfile::tempdir().unwrap();
    std::env::set_var("RNER_TEST_KEY", "sk-test-secret-7c1f");
    let out = eval_api(tmp.path(), "fake-model", Some(&server.url()), &["--api-key-env", "RNER_TEST_KEY"]);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(out.status.success(), "{stderr}");
    let dir = run_dir(tmp.path());
    assert_eq!(rows(&dir).len(), 12);
    let attempts = server.attempts();
    assert_eq!(attempts.len(), 12);
    assert!(attempts.values().all(|&n| n == 2), "one fault then one answer each: {attempts:?}");
    // the sample hits every kind of fault
    let sentences: Vec<String> = rows(&dir).iter().map(|r| r["sentence"].as_str().unwrap().to_string()).collect();
    let kinds: std::collections::HashSet<usize> = sentences.iter().map(|s| s.len() % KINDS.len()).collect();
    assert!(kinds.len() >= 4, "{kinds:?}");
    // Retry-After: 1 was honoured (the backoff alone would be 10-20 ms)
    let seen = server.seen.lock().unwrap().clone();
    for s in sentences.iter().filter(|s| KINDS[s.len() % KINDS.len()] == Fault::RateLimited) {
        let at: Vec<Instant> = seen.iter().filter(|x| &x.sentence == s).map(|x| x.at).collect();
        assert!(at[1] - at[0] >= Duration::from_millis(950), "{:?}", at[1] - at[0]);
    }
    // the key was sent, and is written nowhere
    assert!(seen.iter().all(|x| x.auth.as_deref() == Some("Bearer sk-test-secret-7c1f")));
    for f in ["manifest.json", "samples.jsonl", "scores.json"] {
        assert!(!std::fs::read_to_string(dir.join(f)).unwrap().contains("sk-test-secret"), "{f}");
    }
    assert!(!stderr.contains("sk-test-secret"));
    // a rerun asks for nothing
    let before = server.total();
    let again = eval_api(tmp.path(), "fake-model", Some(&server.url()), &["--api-key-env", "RNER_TEST_KEY"]);
    assert!(again.status.success());
    assert_eq!(server.total(), before);
}

#[test]
fn a_request_that_keeps_failing_is_reported_and_only_it_is_retried_later() {
    let broken: Arc<Mutex<Option<String>>> = Arc::default();
    let b2 = broken.clone();
    let plan: Plan = Arc::new(move |s: &str, _| {
        let mut b = b2.lock().unwrap();
        // the first sentence asked for fails every time, until the test mends the server
        match b.as_deref() {
            None => {
                *b = Some(s.to_string());
                Fault::ServerError
            }
            Some(x) if x == s => Fault::ServerError,
            _ => Fault::Ok,
        }
    });
    let server = FaultServer::start(plan);
    let tmp = tempfile::tempdir().unwrap();
    let out = eval_api(tmp.path(), "fake-model", Some(&server.url()), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("1 of 12 requests failed") && stderr.contains("4 attempts") && stderr.contains("HTTP 500"), "{stderr}");
    assert!(stderr.contains("boom at the backend"), "the body is named: {stderr}");
    let dir = run_dir(tmp.path());
    assert_eq!(rows(&dir).len(), 11, "every other answer is kept");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["sessions"][0]["failed"], 1);
    let bad = broken.lock().unwrap().clone().unwrap();
    assert_eq!(server.attempts()[&bad], 4);
    // mended: the rerun sends that one sentence only
    *broken.lock().unwrap() = Some("mended".into());
    let before = server.total();
    let out = eval_api(tmp.path(), "fake-model", Some(&server.url()), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(server.total(), before + 1);
    assert_eq!(rows(&dir).len(), 12);
}

#[test]
fn a_bad_key_stops_the_run_at_once_and_prices_give_a_cost() {
    let server = FaultServer::start(Arc::new(|_: &str, _| Fault::Unauthorized));
    let tmp = tempfile::tempdir().unwrap();
    let out = eval_api(tmp.path(), "fake-model", Some(&server.url()), &[]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("401") && stderr.contains("Incorrect API key"), "{stderr}");
    assert!(server.total() <= 4, "no retries, no further requests: {}", server.total());

    // a baseline file with a price: the manifest carries the cost of the tokens used
    let ok = FaultServer::start(Arc::new(|_: &str, _| Fault::Ok));
    let toml = tmp.path().join("priced.toml");
    std::fs::write(
        &toml,
        format!(
            "name = \"priced\"\nkind = \"openai\"\nlicence = \"test\"\nprovenance = \"test\"\n[api]\nbase_url = \"{}\"\nmodel = \"m\"\n[api.price]\ninput_per_mtok = 2.0\noutput_per_mtok = 8.0\n",
            ok.url()
        ),
    )
    .unwrap();
    let results = tmp.path().join("priced-results");
    let out = eval_api(&results, toml.to_str().unwrap(), None, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run_dir(&results).join("manifest.json")).unwrap()).unwrap();
    let s = &m["sessions"][0];
    assert_eq!((s["prompt_tokens"].as_u64(), s["gen_tokens"].as_u64()), (Some(1200), Some(120)));
    let want = (1200.0 * 2.0 + 120.0 * 8.0) / 1e6;
    assert!((s["cost_usd"].as_f64().unwrap() - want).abs() < 1e-12);
}

#[test]
fn constrained_decoding_maps_to_response_format_and_says_when_a_server_lacks_it() {
    let server = FaultServer::start(Arc::new(|_: &str, _| Fault::NoResponseFormat));
    let tmp = tempfile::tempdir().unwrap();
    let out = eval_api(tmp.path(), "fake-model", Some(&server.url()), &["--decoding", "schema"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("does not support the response_format") && stderr.contains("--decoding json or free"), "{stderr}");
    assert!(server.total() <= 4, "no retries: {}", server.total());
    // free decoding sends no response_format and works
    let out = eval_api(&tmp.path().join("free"), "fake-model", Some(&server.url()), &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn serve_honours_json_object_and_grammars_and_refuses_what_it_cannot() {
    let server = start_serve(LlamaSettings { parallel: 2, ctx_per_seq: 512, threads: 2, ..Default::default() });
    let url = format!("{}/chat/completions", server.base_url());
    let msg = r#""messages":[{"role":"user","content":"Describe a cat."}],"temperature":0,"max_tokens":60"#;
    let (code, body) = post(&url, &format!(r#"{{{msg},"response_format":{{"type":"json_object"}}}}"#));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    if v["choices"][0]["finish_reason"] == "stop" {
        assert!(serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(content).is_ok(), "{content}");
    } else {
        assert!(content.trim_start().starts_with('{'), "{content}");
    }
    let (code, body) = post(&url, &format!(r#"{{{msg},"grammar":"root ::= \"yes\" | \"no\""}}"#));
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert!(["yes", "no"].contains(&v["choices"][0]["message"]["content"].as_str().unwrap()), "{body}");
    let (code, body) = post(&url, &format!(r#"{{{msg},"grammar":"root ::= ("}}"#));
    assert_eq!(code, 400, "{body}");
    let (code, body) = post(&url, &format!(r#"{{{msg},"response_format":{{"type":"json_schema","json_schema":{{}}}}}}"#));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("json_schema"));
}
