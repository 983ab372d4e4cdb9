//! The evaluation path end to end with the real default model through llama.cpp.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use rner::engine::llama::{LlamaEngine, LlamaSettings};
use rner::engine::{Engine, Finish, GenRequest, Sampling};
use rner::run::Scores;

use crate::util::{data_dir, default_model, rner};

fn eval_cmd(results: &Path, extra: &[&str]) -> Command {
    let mut c = rner();
    c.args(["--quiet", "--results"]).arg(results).args(["eval", "--model"]).arg(default_model()).args(extra);
    c
}

fn read_scores(run_dir: &Path) -> Scores {
    serde_json::from_str(&std::fs::read_to_string(run_dir.join("scores.json")).unwrap()).unwrap()
}

fn only_run(results: &Path) -> PathBuf {
    let runs: Vec<PathBuf> = std::fs::read_dir(results).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    runs[0].clone()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map(|s| s.lines().filter(|l| l.ends_with('}')).count()).unwrap_or(0)
}

fn requests(dataset: &str, n: usize, max_tokens: usize) -> Vec<GenRequest> {
    let reg = rner::data::Registry::new(&data_dir()).unwrap();
    let spec = rner::prompt::PromptSpec::default();
    let sampling = Sampling { max_tokens, ..Sampling::default() };
    reg.load(dataset, "test").unwrap()[..n]
        .iter()
        .map(|e| GenRequest { prompt: rner::prompt::render(e, &spec), sampling: sampling.clone() })
        .collect()
}

/// `--kv-type f32`: the engine makes its contexts with an f32 KV cache and says so in its
/// settings (read back from the context parameters; the default f16 cache leaves the key out, so
/// earlier manifests and run ids read the same), and its greedy answers repeat. Through the CLI,
/// the run's manifest records it, and its run id differs from the f16 run's.
#[test]
fn f32_kv_cache_runs_and_is_recorded() {
    use rner::engine::llama::KvType;
    let reqs = requests("crossner_ai", 3, 16);
    let settings = LlamaSettings { parallel: 3, ctx_per_seq: 1024, threads: 2, kv_type: KvType::F32, ..Default::default() };
    let mut engine = LlamaEngine::load(&default_model(), settings).unwrap();
    assert_eq!(engine.info().settings["kv_type"], "f32");
    let (a, b) = (engine.generate(&reqs).unwrap(), engine.generate(&reqs).unwrap());
    for (x, y) in a.iter().zip(&b) {
        assert!(x.gen_tokens >= 1 && !x.text.trim().is_empty());
        assert_eq!(x.text, y.text);
    }
    let default = LlamaEngine::load(&default_model(), LlamaSettings { parallel: 1, ctx_per_seq: 512, threads: 2, ..Default::default() }).unwrap();
    assert!(default.info().settings.get("kv_type").is_none(), "{}", default.info().settings);
    let dir = tempfile::tempdir().unwrap();
    let out = eval_cmd(dir.path(), &["--datasets", "crossner_ai", "--limit", "2", "--max-tokens", "8", "--threads", "2", "--kv-type", "f32"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let manifest: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(only_run(dir.path()).join("manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["config"]["engine_settings"]["kv_type"], "f32", "{manifest}");
    // the same flags on the default cache: a run of its own beside it, not a resume of the f32 run
    let out = eval_cmd(dir.path(), &["--datasets", "crossner_ai", "--limit", "2", "--max-tokens", "8", "--threads", "2"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2);
    let bad = eval_cmd(dir.path(), &["--kv-type", "q3"]).output().unwrap();
    assert!(!bad.status.success() && String::from_utf8_lossy(&bad.stderr).contains("--kv-type"));
}

#[test]
fn real_model_generates_batched_with_prefix_reuse() {
    let reqs = requests("crossner_ai", 5, 24);
    let mut engine = LlamaEngine::load(&default_model(), LlamaSettings { parallel: 3, ctx_per_seq: 1024, ..Default::default() }).unwrap();
    assert!(engine.info().chat_template.is_some());
    let a = engine.generate(&reqs).unwrap();
    let b = engine.generate(&reqs).unwrap();
    assert_eq!(a.len(), 5);
    for (x, y) in a.iter().zip(&b) {
        assert!(!x.text.trim().is_empty());
        assert!(x.gen_tokens >= 1 && x.gen_tokens <= 24);
        assert!(x.prompt_tokens > 150, "the paper prompt is long: {}", x.prompt_tokens);
        // the cap counts every generated token, the end-of-turn token included (as vLLM's)
        if x.finish == Finish::Length {
            assert_eq!(x.gen_tokens, 24);
        }
        // same batch, same settings: the same greedy text
        assert_eq!(x.text, y.text);
    }
    // the GGUF's own chat template renders the paper's qwen wrapper (ChatML, no system turn)
    let paper = rner::prompt::qwen_wrap(&reqs[0].prompt.messages[0].content);
    assert_eq!(engine.count_tokens(&paper).unwrap(), a[0].prompt_tokens);
    // the context check names the flag to raise
    let long = vec![GenRequest { prompt: reqs[0].prompt.clone(), sampling: Sampling { max_tokens: 2000, ..Sampling::default() } }];
    let err = engine.generate(&long).unwrap_err().to_string();
    assert!(err.contains("--ctx"), "{err}");
}

#[test]
fn eval_writes_rows_scores_and_manifest() {
    let tmp = tempfile::tempdir().unwrap();
    let out = eval_cmd(tmp.path(), &["--datasets", "crossner_ai,mit-restaurant", "--limit", "3", "--max-tokens", "48", "--parallel", "4"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let run = only_run(tmp.path());
    assert_eq!(lines(&run.join("samples.jsonl")), 6);
    let s = read_scores(&run);
    assert_eq!(s.limit, Some(3));
    for d in ["crossner_ai", "mit-restaurant"] {
        let d = &s.datasets[d];
        assert_eq!((d.sentences, d.expected), (3, 3));
        assert!(d.ci95[0] <= d.f1 && d.f1 <= d.ci95[1]);
    }
    assert_eq!(s.average, None, "two of seven datasets give no seven-set average");
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(run.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["config"]["model_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(m["data_files"]["crossner_ai"]["sha256"].as_str().unwrap().len(), 64);
    assert!(m["sessions"][0]["command"].as_str().unwrap().contains("--limit 3"));
    assert_eq!(m["machine"]["openmp"]["GOMP_SPINCOUNT"], rner::engine::llama::GOMP_SPINCOUNT, "the OpenMP setting the run had");
    // rescore re-parses without the model and gives the same scores
    let r = rner().args(["--quiet", "--results"]).arg(tmp.path()).arg("rescore").output().unwrap();
    assert!(r.status.success());
    assert_eq!(serde_json::to_value(read_scores(&run)).unwrap(), serde_json::to_value(&s).unwrap());
    // a second identical command resumes: nothing new is generated, and the run's files are left
    // byte for byte as they were (a resumed preset rechecks finished runs)
    let files = |names: &[&str]| names.iter().map(|f| std::fs::read(run.join(f)).unwrap()).collect::<Vec<_>>();
    let before = files(&["manifest.json", "scores.json", "samples.jsonl"]);
    let again = eval_cmd(tmp.path(), &["--datasets", "crossner_ai,mit-restaurant", "--limit", "3", "--max-tokens", "48", "--parallel", "4"])
        .output()
        .unwrap();
    assert!(again.status.success());
    assert_eq!(lines(&run.join("samples.jsonl")), 6);
    assert!(files(&["manifest.json", "scores.json", "samples.jsonl"]) == before, "a rerun that generated nothing changed the run's files");
}

#[test]
fn killed_run_resumes_to_the_same_scores() {
    let args = ["--datasets", "crossner_ai", "--limit", "10", "--max-tokens", "64", "--parallel", "1"];
    let whole = tempfile::tempdir().unwrap();
    let st = eval_cmd(whole.path(), &args).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let reference = read_scores(&only_run(whole.path()));

    let cut = tempfile::tempdir().unwrap();
    let err_dir = tempfile::tempdir().unwrap();
    let err_log = err_dir.path().join("stderr.log");
    let mut child = eval_cmd(cut.path(), &args)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_log).unwrap())
        .spawn()
        .unwrap();
    // No wall-clock bound on progress: CI machines run this beside training tests on two cores, and
    // a timing assumption made it fail there. It ends when rows appear or the child stops on its own.
    let t = Instant::now();
    let samples = loop {
        let found = std::fs::read_dir(cut.path())
            .ok()
            .and_then(|rd| rd.filter_map(|e| e.ok()).map(|e| e.path()).find(|p| p.is_dir()))
            .map(|d| d.join("samples.jsonl"));
        if let Some(p) = found.as_ref().filter(|p| lines(p) >= 3) {
            break p.clone();
        }
        if let Some(status) = child.try_wait().unwrap() {
            panic!("the run ended ({status}) before it could be killed: {}", std::fs::read_to_string(&err_log).unwrap_or_default());
        }
        assert!(t.elapsed() < Duration::from_secs(3600), "no row in an hour");
        std::thread::sleep(Duration::from_millis(20));
    };
    child.kill().unwrap(); // SIGKILL: no chance to clean up
    child.wait().unwrap();
    let before = lines(&samples);
    assert!((3..10).contains(&before), "killed after {before} rows");
    let st = eval_cmd(cut.path(), &args).output().unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    let resumed = read_scores(&only_run(cut.path()));
    assert_eq!(lines(&samples), 10, "the resumed run generated only what was missing");
    assert_eq!(serde_json::to_value(&resumed.datasets).unwrap(), serde_json::to_value(&reference.datasets).unwrap());
}

#[test]
fn bad_flags_fail_with_a_clear_message() {
    let tmp = tempfile::tempdir().unwrap();
    let out = eval_cmd(tmp.path(), &["--datasets", "no-such-set"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--datasets") && err.contains("crossner_ai"), "{err}");
    let out = eval_cmd(tmp.path(), &["--datasets", "crossner_ai", "--limit", "1", "--ctx", "64"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--ctx"));
    let out = rner().args(["--data-dir", "/nonexistent", "eval"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("RNER_DATA") || err.contains("--data-dir"), "{err}");
}

#[test]
fn prefix_reuse_gives_the_same_greedy_text_as_full_prompts() {
    let reqs = requests("crossner_science", 6, 32);
    let run = |prefix_reuse: bool| {
        let mut e = LlamaEngine::load(&default_model(), LlamaSettings { parallel: 3, prefix_reuse, ctx_per_seq: 1024, ..Default::default() }).unwrap();
        let outs = e.generate(&reqs).unwrap();
        (outs, e.take_step_times())
    };
    let ((shared, shared_steps), (full, full_steps)) = (run(true), run(false));
    for (a, b) in shared.iter().zip(&full) {
        // one KV stream per sequence: the copied prefix is the same cache the full prompt builds
        assert_eq!(a.text, b.text);
        assert_eq!(a.prompt_tokens, b.prompt_tokens);
    }
    // the engine's step times account for every token decoded; prefix reuse decodes fewer prompt tokens
    for (outs, st) in [(&shared, &shared_steps), (&full, &full_steps)] {
        let decoded = st.prompt.tokens + st.full.tokens + st.partial.tokens;
        let generated: usize = outs.iter().map(|o| o.gen_tokens).sum();
        // every generated token but each sequence's last is fed back to the model
        assert!(decoded >= generated - outs.len(), "{st:?}");
        assert!(st.prompt.steps >= 1 && st.prompt.seconds > 0.0, "{st:?}");
    }
    let prompt_total: usize = full.iter().map(|o| o.prompt_tokens).sum();
    assert!(full_steps.prompt.tokens >= prompt_total, "{full_steps:?}");
    assert!(shared_steps.prompt.tokens < full_steps.prompt.tokens, "{shared_steps:?} vs {full_steps:?}");
}

#[test]
fn prompt_lookup_drafts_are_confirmed_by_the_model_and_keep_its_answers() {
    let reqs = requests("crossner_ai", 4, 64);
    let run = |draft_max: usize| {
        let settings = LlamaSettings { parallel: 2, draft_max, ctx_per_seq: 1024, threads: 2, ..Default::default() };
        let mut e = LlamaEngine::load(&default_model(), settings).unwrap();
        let outs = e.generate(&reqs).unwrap();
        (outs, e.take_step_times())
    };
    let ((plain, plain_steps), (drafted, steps)) = (run(0), run(8));
    assert_eq!((plain_steps.draft_tokens, plain_steps.draft_accepted), (0, 0));
    // SmolLM2 echoes the prompt's template: lookup finds drafts and the model confirms some
    assert!(steps.draft_accepted > 0 && steps.draft_accepted < steps.draft_tokens, "{steps:?}");
    let generated: usize = drafted.iter().map(|o| o.gen_tokens).sum();
    let decode_steps = steps.full.steps + steps.partial.steps + steps.prompt.steps;
    assert!(decode_steps < generated, "confirmed drafts save steps: {decode_steps} steps for {generated} tokens");
    let mut long_agreements = 0;
    for (a, b) in plain.iter().zip(&drafted) {
        assert!(a.gen_tokens <= 64 && b.gen_tokens <= 64, "the token cap holds with drafts");
        // a draft's tokens are checked in one multi-token step, whose kernels round differently
        // from one-token steps, so a near-tie may go the other way (seen on one AMD EPYC build at
        // byte 59 of one answer: "…algorithm that combines" against "…that is designed"); a wrong
        // logits index or a stale KV cell would change every answer at its first draft
        let same = a.text.bytes().zip(b.text.bytes()).take_while(|(x, y)| x == y).count();
        let shorter = a.text.len().min(b.text.len());
        assert!(same >= shorter.min(32), "{:?}\nvs\n{:?}", a.text, b.text);
        long_agreements += usize::from(same >= shorter.min(64));
    }
    assert!(long_agreements + 1 >= plain.len(), "only {long_agreements} of {} answers agree for 64 bytes", plain.len());
}

/// The `rner` binary runs itself again with a short OpenMP spin count (two llama.cpp processes on
/// shared cores otherwise spin against each other), and leaves a user's own setting alone.
#[cfg(target_os = "linux")]
#[test]
fn the_binary_sets_a_short_openmp_spin_unless_the_user_set_one() {
    use std::io::{BufRead, BufReader};
    use std::process::Stdio;
    let environ_once_listening = |user: Option<(&str, &str)>| {
        let mut c = rner();
        c.env_remove("GOMP_SPINCOUNT").env_remove("OMP_WAIT_POLICY");
        if let Some((k, v)) = user {
            c.env(k, v);
        }
        let mut child = c
            .args(["serve", "--model"])
            .arg(default_model())
            .args(["--port", "0", "--parallel", "1", "--ctx", "256", "--threads", "1"])
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "serve ended before it listened");
        }
        // the pid is the same across exec: its environment now is the one it runs with
        let environ = std::fs::read(format!("/proc/{}/environ", child.id())).unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        environ.split(|&b| b == 0).map(|v| String::from_utf8_lossy(v).to_string()).filter(|v| v.contains("OMP_") || v.starts_with("GOMP_")).collect::<Vec<_>>()
    };
    assert_eq!(environ_once_listening(None), vec![format!("GOMP_SPINCOUNT={}", rner::engine::llama::GOMP_SPINCOUNT)]);
    assert_eq!(environ_once_listening(Some(("GOMP_SPINCOUNT", "7"))), vec!["GOMP_SPINCOUNT=7".to_string()]);
    assert_eq!(environ_once_listening(Some(("OMP_WAIT_POLICY", "PASSIVE"))), vec!["OMP_WAIT_POLICY=PASSIVE".to_string()]);
    // the test process itself runs with it (from .cargo/config.toml), for its in-process engines
    assert_eq!(std::env::var("GOMP_SPINCOUNT").as_deref(), Ok(rner::engine::llama::GOMP_SPINCOUNT));
}
