//! Stage 1 end to end: the real default model as teacher on real training sentences.
use std::path::Path;

use crate::util::{default_model, rner};


fn lines(p: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(p).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

#[test]
fn cot_build_writes_kept_and_rejected_rows_with_reasons_and_resumes() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set.jsonl");
    let run = || {
        let o = rner()
            .args(["--quiet", "--reports"])
            .arg(tmp.path().join("reports"))
            .args(["cot", "--teacher"])
            .arg(default_model())
            .args(["--limit", "6", "--max-cot-tokens", "48", "--parallel", "3", "--ctx", "1024", "--chunk", "4", "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    };
    run();
    let kept = lines(&out);
    let rejected = lines(&tmp.path().join("set.rejected.jsonl"));
    assert_eq!(kept.len() + rejected.len(), 6);
    let names = ["truncated", "empty", "length", "missing_gold", "untyped_gold", "answer_disagrees", "extra_entity"];
    for r in &rejected {
        assert!(names.contains(&r["check"].as_str().unwrap()), "{r}");
        assert!(r["output"].is_string());
    }
    // kept rows are NER-CoT records that the loader reads back
    let records = rner::train::cot::read_records(&out).unwrap();
    assert_eq!(records.len(), kept.len());
    // the sources interleave: both corpora are in the first examples
    let sources: std::collections::HashSet<String> = kept.iter().chain(&rejected).map(|r| r["guid"].as_str().unwrap().split('/').next().unwrap().to_string()).collect();
    assert_eq!(sources.len(), 2, "{sources:?}");
    let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("set.stats.json")).unwrap()).unwrap();
    let by_check: u64 = stats["rejects_by_check"].as_object().unwrap().values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(by_check as usize, rejected.len());
    assert!(tmp.path().join("reports/cot-set.md").exists());
    assert!(tmp.path().join("reports/plots/cot-set-words.svg").exists());
    // a rerun has nothing left to do and adds a session
    run();
    assert_eq!(lines(&out).len() + lines(&tmp.path().join("set.rejected.jsonl")).len(), 6);
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("set.manifest.json")).unwrap()).unwrap();
    let sessions = m["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 2);
    assert_eq!(sessions[1]["kept"].as_u64().unwrap() + sessions[1]["rejected"].as_u64().unwrap(), 0);
    // each session records the instruction it used
    assert_eq!(sessions[0]["teacher_prompt"].as_str().unwrap(), rner::train::cot::TEACHER_PROMPT.trim_end());
    // and the machine and teacher settings it ran with, which the perf section shows per session
    let cpu = sessions[0]["machine"]["cpu"].as_str().unwrap();
    assert!(sessions[0]["machine"]["cpus"].as_u64().unwrap() >= 1);
    let threads = sessions[0]["settings"]["threads"].as_u64().unwrap();
    let perf = std::fs::read_to_string(tmp.path().join("reports/perf.md")).unwrap();
    assert!(perf.contains(&format!("| {cpu} ({} cores) | {threads} |", sessions[0]["machine"]["cpus"])), "{perf}");
}

#[test]
fn a_bad_teacher_prompt_file_is_refused_before_the_teacher_loads() {
    let tmp = tempfile::tempdir().unwrap();
    let o = rner().args(["cot", "--limit", "1", "--teacher-prompt"]).arg(tmp.path().join("absent.txt")).output().unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("--teacher-prompt") && e.contains("absent.txt"), "{e}");
    let p = tmp.path().join("p.txt");
    std::fs::write(&p, "Explain {{GOLD}} for {{SENTENCE}}.").unwrap();
    let o = rner().args(["cot", "--limit", "1", "--teacher-prompt"]).arg(&p).output().unwrap();
    assert!(!o.status.success());
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("p.txt") && e.contains("lacks {{SCHEMA}}"), "{e}");
}

#[test]
fn cot_refuses_the_benchmarks_test_sets() {
    let o = rner().args(["cot", "--sources", "crossner_ai", "--split", "test", "--limit", "1"]).output().unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("must stay unseen"));
}

#[test]
fn the_checked_in_sample_of_the_committed_set_passes_the_checks_again() {
    let p = crate::util::root().join("tests/data/cot-sample.jsonl");
    let records = rner::train::cot::read_records(&p).unwrap();
    assert_eq!(records.len(), 20);
    for r in records {
        assert!(r.dataset.is_some());
        let ex = r.example();
        assert_eq!(rner::train::cot::validate_stored(r.cot.as_deref().unwrap(), &ex, Default::default(), false).unwrap(), r.cot.unwrap());
    }
}

/// A loopback OpenAI-style server playing teacher and judge: as teacher it types every gold entity
/// it is shown; as judge it gives 9, or 3 to sentences with an even number of words.
fn teacher_and_judge_server() -> (String, tokio::runtime::Runtime) {
    use axum::routing::post;
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let url = format!("http://{}/v1", listener.local_addr().unwrap());
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        post(|body: axum::Json<serde_json::Value>| async move {
            let prompt = body["messages"][0]["content"].as_str().unwrap_or("").to_string();
            let sentence = prompt.split("Sentence:").last().unwrap().lines().next().unwrap_or("").trim().to_string();
            let text = if prompt.starts_with("Rate a reasoning chain") {
                let sentence = prompt.split("Sentence:\n").nth(1).unwrap().lines().next().unwrap().to_string();
                if sentence.split_whitespace().count() % 2 == 0 { "3" } else { "9" }.to_string()
            } else {
                let gold = prompt.rsplit("Correct entities: ").next().unwrap().lines().next().unwrap().to_string();
                let mut r = format!("The sentence is \"{sentence}\" reduced to its names. ");
                if !gold.starts_with("none") {
                    for part in gold.split("; ") {
                        let (text, label) = part.rsplit_once(": ").unwrap();
                        r.push_str(&format!("{text} is a {label} here. "));
                    }
                }
                r
            };
            axum::Json(serde_json::json!({"choices": [{"message": {"content": text}, "finish_reason": "stop"}], "usage": {"prompt_tokens": 1, "completion_tokens": 1}}))
        }),
    );
    rt.spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, rt)
}

#[test]
fn an_api_teacher_and_an_api_judge_build_a_set_and_low_scores_are_rejected() {
    let (url, _rt) = teacher_and_judge_server();
    let tmp = tempfile::tempdir().unwrap();
    let toml = tmp.path().join("judge.toml");
    std::fs::write(&toml, format!("name = \"judge\"\nkind = \"openai\"\nlicence = \"t\"\nprovenance = \"t\"\n[api]\nbase_url = \"{url}\"\nmodel = \"m\"\n")).unwrap();
    let out = tmp.path().join("set.jsonl");
    let o = rner()
        .args(["--quiet", "--reports"])
        .arg(tmp.path())
        .args(["cot", "--teacher", "m", "--base-url", &url, "--limit", "12", "--judge"])
        .arg(&toml)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let kept = lines(&out);
    let rejected = lines(&tmp.path().join("set.rejected.jsonl"));
    assert_eq!(kept.len() + rejected.len(), 12);
    // the sentence is quoted whole, so a rationale may not be faithful in other ways; but every
    // judged-low example is rejected as such, and everything kept was judged high
    for r in &kept {
        assert_eq!(r["sentence"].as_str().unwrap().split_whitespace().count() % 2, 1, "{r}");
    }
    let low = rejected.iter().filter(|r| r["check"] == "judge_low").count();
    assert!(low > 0 && !kept.is_empty(), "kept {} rejected {rejected:?}", kept.len());
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("set.manifest.json")).unwrap()).unwrap();
    assert_eq!(m["config"]["judge"], "judge");
    assert_eq!(m["config"]["engine"], "openai");
}

#[test]
fn until_kept_stops_the_build_at_its_kept_target_and_a_rerun_goes_on_to_a_higher_one() {
    let (url, _rt) = teacher_and_judge_server();
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set.jsonl");
    let run = |target: &str| {
        let o = rner()
            .args(["--quiet", "--reports"])
            .arg(tmp.path())
            .args(["cot", "--teacher", "m", "--base-url", &url, "--limit", "40", "--chunk", "8", "--until-kept", target, "--out"])
            .arg(&out)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let tried = || lines(&out).len() + lines(&tmp.path().join("set.rejected.jsonl")).len();
    let err = run("5");
    // exactly the target: the last batch asks only for the rows still wanted
    assert_eq!(lines(&out).len(), 5, "{err}");
    assert!(tried() < 40, "{}", tried());
    assert!(err.contains("the set holds 5 kept, the --until-kept 5 target"), "{err}");
    run("9");
    assert_eq!(lines(&out).len(), 9);
    // reached already: nothing is asked
    let before = tried();
    run("9");
    assert_eq!(tried(), before);
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("set.manifest.json")).unwrap()).unwrap();
    let s = m["sessions"].as_array().unwrap();
    assert_eq!(s.len(), 3);
    assert_eq!((s[1]["kept"].as_u64(), s[2]["kept"].as_u64(), s[2]["rejected"].as_u64()), (Some(4), Some(0), Some(0)));
}
