//! `rner reproduce`: a whole preset end to end on a tiny slice with the real default model (as
//! student and as teacher), then a rerun that finds every step done.
use std::path::Path;

use crate::util::{default_model, rner, root};

fn preset(model: &Path) -> String {
    let m = model.display();
    let cot = root().join("results/cot/qwen2.5-coder-1.5b-instruct-conll2003+wnut17.jsonl");
    format!(
        r#"
name = "t"
description = "test: every stage on a sliver"
student = "{m}"

[cot]
teacher = "{m}"
sources = ["conll2003"]
per_source = 2
max_cot_tokens = 32
parallel = 2

[sft]
epochs = 1
batch = 2
lr = 1e-4
max_len = 256
limit = 2
extra_data = ["{}"]

[grpo]
steps = 1
prompts_per_step = 1
num_generations = 2
num_iterations = 1
max_completion_length = 16
pool = 4
lr = 1e-5
beta = 0.04
micro = 2

[[grpo.rewards]]
name = "paper"
weights = "f1=10,schema=1"

[[grpo.rewards]]
name = "f1only"
weights = "f1=10"

[eval]
limit = 1
seed = 42
parallel = 4
max_tokens = 16
api_baselines = ["gpt-4o-mini"]

[low_resource]
seeds = [1]
inits = ["base", "reasoningner"]
epochs = 1
batch = 2
lr = 1e-4
eval_limit = 2

[low_resource.cot_targets]
teacher = "{m}"
sets = ["crossner_ai"]
max_cot_tokens = 32
parallel = 2

[[low_resource.sets]]
dataset = "crossner_ai"
fractions = [0.02]
"#,
        cot.display()
    )
}

#[test]
fn a_preset_runs_every_stage_and_a_rerun_skips_them() {
    let model = default_model();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("t.toml");
    std::fs::write(&file, preset(&model)).unwrap();
    let run = || {
        let mut c = rner();
        c.args(["-q", "reproduce", "--preset"]).arg(&file);
        for (flag, sub) in [("--results", "r"), ("--reports", "rep"), ("--models", "m"), ("--checkpoints", "c")] {
            c.arg(flag).arg(d.join(sub));
        }
        c.env_remove("OPENAI_API_KEY").output().unwrap()
    };
    // the plan alone runs nothing
    let mut c = rner();
    let dry = c.args(["reproduce", "--dry-run", "--preset"]).arg(&file).arg("--results").arg(d.join("r")).output().unwrap();
    assert!(dry.status.success(), "{}", String::from_utf8_lossy(&dry.stderr));
    let plan = String::from_utf8_lossy(&dry.stdout).to_string();
    for id in ["eval-base", "cot", "t-sft-direct", "t-sft-cot", "t-grpo-paper", "t-lr-crossner_ai-p2-s1-reasoningner", "t-lr-cot-crossner_ai", "t-lr-crossner_ai-p2-s1-reasoningner-cot", "report", "estimated:"] {
        assert!(plan.contains(id), "{id} missing from the plan:\n{plan}");
    }
    assert!(!d.join("r").exists(), "a dry run writes nothing");

    // the CoT-target cells' rationales: as if stage 1 had written them for the cell's two
    // sentences and rejected all but three others (the step writes those three, then the cell
    // tunes on rationale + answer)
    let (p, _) = rner::run::preset::Preset::load(&root().join("baselines"), &file.display().to_string()).unwrap();
    let cot_file = p.lr_cot_file(&d.join("r"), "crossner_ai").unwrap();
    let train = rner::data::Registry::new(&crate::util::data_dir()).unwrap().load("crossner_ai", "train").unwrap();
    let chosen = rner::data::registry::fraction(&train, 0.02, 1);
    assert_eq!(chosen.len(), 2);
    std::fs::create_dir_all(cot_file.parent().unwrap()).unwrap();
    let kept: Vec<String> = chosen
        .iter()
        .map(|e| serde_json::json!({"guid": e.id, "dataset": "crossner_ai", "sentence": e.text, "schema": e.labels, "cot": format!("{} holds its entities.", e.id), "entities": e.gold}).to_string() + "\n")
        .collect();
    std::fs::write(&cot_file, kept.concat()).unwrap();
    let rejected: Vec<String> = train
        .iter()
        .filter(|e| !chosen.iter().any(|c| c.id == e.id))
        .skip(3)
        .map(|e| serde_json::json!({"guid": e.id, "dataset": "crossner_ai", "check": "truncated", "detail": "", "output": ""}).to_string() + "\n")
        .collect();
    std::fs::write(cot_file.with_extension("rejected.jsonl"), rejected.concat()).unwrap();
    let out = run();
    let stdout = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    let log: Vec<serde_json::Value> =
        std::fs::read_to_string(d.join("r/reproduce/t/steps.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let status = |id: &str| log.iter().find(|r| r["id"] == id).map(|r| r["status"].as_str().unwrap().to_string());
    for id in ["eval-base", "cot", "t-sft-direct", "t-sft-cot", "t-grpo-paper", "t-grpo-f1only", "eval-t-grpo-paper", "t-lr-crossner_ai-p2-s1-base", "t-lr-crossner_ai-p0-s0-reasoningner", "t-lr-cot-crossner_ai", "t-lr-crossner_ai-p2-s1-reasoningner-cot", "report"] {
        assert_eq!(status(id).as_deref(), Some("done"), "{id}: {log:?}");
    }
    // stage 1 wrote the three sentences left, and the CoT-target cell tuned its two on rationale + answer
    let decided = std::fs::read_to_string(&cot_file).unwrap().lines().count() + std::fs::read_to_string(cot_file.with_extension("rejected.jsonl")).unwrap().lines().count();
    assert_eq!(decided, train.len());
    let lr_cot = log.iter().find(|r| r["id"] == "t-lr-cot-crossner_ai").unwrap();
    assert!(lr_cot["commands"][0].as_str().unwrap().contains("--sources crossner_ai --split train"), "{lr_cot}");
    let cell: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("r/train/t-lr-crossner_ai-p2-s1-reasoningner-cot/run.json")).unwrap()).unwrap();
    assert_eq!((cell["target"].as_str(), cell["samples"].as_u64()), (Some("cot"), Some(2)), "{cell}");
    // the sha256 of its drawn sentences' rationales, which `reproduce` checks against stage 1's file
    assert_eq!(cell["rationales_sha256"].as_str().map(str::len), Some(64), "{cell}");
    assert_eq!(cell["model_sha256"], serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(d.join("r/train/t-grpo-paper/run.json")).unwrap()).unwrap()["export_sha256"]);
    assert_eq!(status("eval-gpt-4o-mini").as_deref(), Some("not_run"), "no key, no request");
    // every step recorded the command it ran, and the manifests name it
    let sft = log.iter().find(|r| r["id"] == "t-sft-cot").unwrap();
    assert!(sft["commands"][0].as_str().unwrap().starts_with("rner sft --model"));
    let run_json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(d.join("r/train/t-sft-cot/run.json")).unwrap()).unwrap();
    assert!(run_json["command"].as_str().unwrap().contains("--name t-sft-cot"), "{}", run_json["command"]);
    // exports of every training step
    for m in ["t-sft-direct", "t-sft-cot", "t-grpo-paper", "t-lr-crossner_ai-p2-s1-base", "t-lr-crossner_ai-p2-s1-reasoningner"] {
        assert!(d.join("m").join(format!("{m}.gguf")).is_file(), "{m}");
    }
    // the reports of the chain
    let stages = std::fs::read_to_string(d.join("rep/ablation-stages.md")).unwrap();
    assert!(stages.contains("t-sft-direct") && stages.contains("t-sft-cot") && stages.contains("t-grpo-paper"), "{stages}");
    let low = std::fs::read_to_string(d.join("rep/low-resource.md")).unwrap();
    assert!(low.contains("crossner_ai") && low.contains("| 0% | 2% |"), "{low}");
    assert!(low.contains("t-grpo-paper |") && low.contains("SmolLM2-135M-Instruct.Q4_1 |"), "{low}");
    assert!(low.contains("| t-grpo-paper (CoT target) |") && low.contains("| Δ t-grpo-paper (CoT target) − SmolLM2-135M-Instruct.Q4_1 |"), "{low}");
    assert!(d.join("rep/plots/low-resource.png").is_file());
    assert!(d.join("rep/reproduce-t.md").is_file());
    // the plan now marks what is done, and a finished low-resource grid or evaluation is not counted as left
    let mut c = rner();
    let dry = c.args(["reproduce", "--dry-run", "--preset"]).arg(&file).arg("--results").arg(d.join("r")).arg("--models").arg(d.join("m")).arg("--checkpoints").arg(d.join("c")).output().unwrap();
    let plan = String::from_utf8_lossy(&dry.stdout).to_string();
    let line = |id: &str| line_of(&plan, id);
    assert!(line("t-sft-cot").ends_with("[done]"), "{plan}");
    assert!(line("t-lr-crossner_ai-p2-s1-reasoningner").ends_with("[done; rechecked]"), "{plan}");
    // a trained model's evaluation, its file here and its export scored, reruns to find every row
    assert!(line("eval-t-grpo-paper").ends_with("[done; rechecked]"), "{plan}");

    // a rerun: nothing is trained or generated again; evaluations of trained models are looked at
    // (they resume, finding every row) and recorded as skipped
    let before = std::fs::metadata(d.join("m/t-grpo-paper.gguf")).unwrap().modified().unwrap();
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let again: Vec<serde_json::Value> =
        std::fs::read_to_string(d.join("r/reproduce/t/steps.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let new: Vec<(&str, &str)> = again[log.len()..].iter().map(|r| (r["id"].as_str().unwrap(), r["status"].as_str().unwrap())).collect();
    for (id, st) in &new {
        let expected = match *id {
            "report" => "done",
            "eval-gpt-4o-mini" => "not_run",
            _ => "skipped",
        };
        assert_eq!(*st, expected, "{id}: {new:?}");
        assert!(!["eval-base", "cot", "t-sft-cot", "t-sft-direct", "t-grpo-paper", "t-lr-cot-crossner_ai"].contains(id), "{id} ran again");
    }
    assert_eq!(std::fs::metadata(d.join("m/t-grpo-paper.gguf")).unwrap().modified().unwrap(), before);

    // a new machine with these results (models and checkpoints are not committed): the CoT-tuned
    // model trains again, and so does everything that started from it; the direct-tuned model
    // and the base's cell stand on their committed scores
    let read = |p: &str| -> serde_json::Value { serde_json::from_str(&std::fs::read_to_string(d.join(p)).unwrap()).unwrap() };
    let old_start = read("r/train/t-grpo-paper/run.json");
    let old_cot = read("r/train/t-sft-cot/run.json");
    // training again on one machine has given the same bytes (same code and seeds), and then the
    // cell's committed score stands for the new start, as its sha256 says; as if it had started
    // from another file (another machine or code gives other bytes), it must not
    let cell_log = d.join("r/train/t-lr-crossner_ai-p2-s1-reasoningner/run.json");
    let mut cell = read("r/train/t-lr-crossner_ai-p2-s1-reasoningner/run.json");
    assert_eq!(cell["model_sha256"], old_start["export_sha256"]);
    cell["model_sha256"] = serde_json::json!("0".repeat(64));
    std::fs::write(&cell_log, serde_json::to_string_pretty(&cell).unwrap()).unwrap();
    std::fs::remove_dir_all(d.join("m")).unwrap();
    let _ = std::fs::remove_dir_all(d.join("c"));
    let mut c = rner();
    let dry = c.args(["reproduce", "--dry-run", "--preset"]).arg(&file).arg("--results").arg(d.join("r")).arg("--models").arg(d.join("m")).arg("--checkpoints").arg(d.join("c")).output().unwrap();
    let plan = String::from_utf8_lossy(&dry.stdout).to_string();
    for id in ["t-sft-cot", "t-grpo-paper", "t-grpo-f1only"] {
        assert!(line_of(&plan, id).contains("[trains again: "), "{id}:\n{plan}");
    }
    assert!(line_of(&plan, "t-sft-direct").ends_with("[done]") && line_of(&plan, "eval-t-sft-direct").ends_with("[done]"), "{plan}");
    for id in ["eval-t-sft-cot", "eval-t-grpo-paper", "eval-t-grpo-f1only"] {
        assert!(!line_of(&plan, id).contains("[done"), "{id} scores a model that trains again:\n{plan}");
    }
    let out = run();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let third: Vec<serde_json::Value> =
        std::fs::read_to_string(d.join("r/reproduce/t/steps.jsonl")).unwrap().lines().skip(again.len()).map(|l| serde_json::from_str(l).unwrap()).collect();
    let status = |id: &str| third.iter().find(|r| r["id"] == id).map(|r| r["status"].as_str().unwrap().to_string());
    for id in ["t-sft-cot", "t-grpo-paper", "t-grpo-f1only", "t-lr-crossner_ai-p2-s1-reasoningner"] {
        assert_eq!(status(id).as_deref(), Some("done"), "{id}: {third:?}");
    }
    // the new files are evaluated (skipped when training gave the same bytes: the same run)
    for id in ["eval-t-sft-cot", "eval-t-grpo-paper", "eval-t-grpo-f1only", "t-lr-crossner_ai-p0-s0-reasoningner"] {
        assert!(matches!(status(id).as_deref(), Some("done" | "skipped")), "{id}: {third:?}");
    }
    assert_eq!(status("t-lr-crossner_ai-p2-s1-base").as_deref(), Some("skipped"), "{third:?}");
    assert_eq!(status("t-sft-direct"), None, "{third:?}");
    // the cell records the new start's file, and the table counts the new file's runs only
    let start = read("r/train/t-grpo-paper/run.json");
    // (same bytes here when training is deterministic on one machine, as measured; not asserted)
    eprintln!("trained again, the same bytes: {}", start["export_sha256"] == old_start["export_sha256"]);
    assert_eq!(read("r/train/t-lr-crossner_ai-p2-s1-reasoningner/run.json")["model_sha256"], start["export_sha256"]);
    // what trained again from the start kept the log of its earlier export, step log included
    for (name, old) in [("t-sft-cot", &old_cot), ("t-grpo-paper", &old_start)] {
        let sha = old["export_sha256"].as_str().unwrap();
        let kept = d.join(format!("r/train/{name}/earlier/{}", &sha[..8]));
        assert_eq!(read(&format!("r/train/{name}/earlier/{}/run.json", &sha[..8]))["date"], old["date"], "{name}");
        assert!(std::fs::read_to_string(kept.join("steps.jsonl")).unwrap().lines().count() > 0, "{name}");
        assert!(read(&format!("r/train/{name}/run.json"))["date"] != old["date"], "{name}: a new log");
    }
    let csv = std::fs::read_to_string(d.join("rep/low-resource.csv")).unwrap();
    let ours: Vec<&str> = csv.lines().filter(|l| l.contains(",t-grpo-paper,")).collect();
    assert_eq!(ours.len(), 2, "the new 0% and 2% runs:\n{csv}");
    assert!(ours.iter().all(|l| l.contains(",cell,")), "{csv}");
}

/// The plan line of step `id`.
fn line_of(plan: &str, id: &str) -> String {
    plan.lines().find(|l| l.split_whitespace().nth(1) == Some(id)).unwrap_or_else(|| panic!("{id} missing:\n{plan}")).to_string()
}

#[test]
fn a_gpu_preset_stops_on_a_cpu_and_a_bad_preset_names_its_line() {
    let out = rner().args(["reproduce", "--preset", "paper"]).output().unwrap();
    if rner::model::device(false).map(|d| d.is_cuda()).unwrap_or(false) {
        return;
    }
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("GPU") && err.contains("--force"), "{err}");
    // the plan is still printed
    assert!(String::from_utf8_lossy(&out.stdout).contains("paper-grpo-paper"));
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.toml");
    std::fs::write(&bad, "name = \"x\"\ndescription = \"y\"\nstudent = 3\n").unwrap();
    let out = rner().args(["reproduce", "--dry-run", "--preset"]).arg(&bad).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("bad.toml:3"), "{err}");
}

#[test]
fn a_cot_target_cell_whose_sentences_have_no_kept_rationale_is_not_run_and_the_run_goes_on() {
    let model = default_model();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("t.toml");
    std::fs::write(&file, preset(&model)).unwrap();
    // the ReasoningNER start is here (the default model stands in for it), and stage 1 decided
    // every train sentence of crossner_ai, rejecting them all
    std::fs::create_dir_all(d.join("m")).unwrap();
    std::os::unix::fs::symlink(&model, d.join("m/t-grpo-paper.gguf")).unwrap();
    let (p, _) = rner::run::preset::Preset::load(&root().join("baselines"), &file.display().to_string()).unwrap();
    let cot_file = p.lr_cot_file(&d.join("r"), "crossner_ai").unwrap();
    let train = rner::data::Registry::new(&crate::util::data_dir()).unwrap().load("crossner_ai", "train").unwrap();
    std::fs::create_dir_all(cot_file.parent().unwrap()).unwrap();
    std::fs::write(&cot_file, "").unwrap();
    let rejected: Vec<String> = train
        .iter()
        .map(|e| serde_json::json!({"guid": e.id, "dataset": "crossner_ai", "check": "truncated", "detail": "", "output": ""}).to_string() + "\n")
        .collect();
    std::fs::write(cot_file.with_extension("rejected.jsonl"), rejected.concat()).unwrap();
    let mut c = rner();
    c.args(["-q", "reproduce", "--only", "t-lr-crossner_ai-p2-s1-reasoningner-cot,report", "--preset"]).arg(&file);
    for (flag, sub) in [("--results", "r"), ("--reports", "rep"), ("--models", "m"), ("--checkpoints", "c")] {
        c.arg(flag).arg(d.join(sub));
    }
    let out = c.output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let log: Vec<serde_json::Value> =
        std::fs::read_to_string(d.join("r/reproduce/t/steps.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let cell = log.iter().find(|r| r["id"] == "t-lr-crossner_ai-p2-s1-reasoningner-cot").expect("the cell is logged");
    assert_eq!(cell["status"], "not_run", "{cell}");
    assert!(cell["note"].as_str().unwrap().contains("stage 1 kept no rationale for the 2 sentences"), "{cell}");
    assert!(!d.join("m/t-lr-crossner_ai-p2-s1-reasoningner-cot.gguf").exists());
    // the step after it ran
    let report = log.iter().find(|r| r["id"] == "report").expect("the report step is logged");
    assert_eq!(report["status"], "done", "{report}");
}

#[test]
fn stop_after_starts_no_step_that_does_not_fit_and_interrupts_one_that_runs_over() {
    let model = default_model();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let file = d.join("t.toml");
    std::fs::write(&file, preset(&model)).unwrap();
    let run = |extra: &[&str]| {
        let mut c = rner();
        c.args(["-q", "reproduce", "--preset"]).arg(&file);
        for (flag, sub) in [("--results", "r"), ("--reports", "rep"), ("--models", "m"), ("--checkpoints", "c")] {
            c.arg(flag).arg(d.join(sub));
        }
        c.args(extra).output().unwrap()
    };
    let text = |o: &std::process::Output| format!("{}\n{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    let log = d.join("r/reproduce/t/steps.jsonl");
    let records = || -> Vec<serde_json::Value> { std::fs::read_to_string(&log).unwrap_or_default().lines().map(|l| serde_json::from_str(l).unwrap()).collect() };
    for bad in ["2x", "0"] {
        let out = run(&["--stop-after", bad]);
        assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("--stop-after"), "{bad}: {}", text(&out));
    }

    // the cell's last pass took a day, as its log says: once a step has run, it does not start
    // in the minute given, and the exit code says to run it again later
    let cell = "t-lr-crossner_ai-p2-s1-base";
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let pass = |seconds: f64| serde_json::json!({"id": cell, "status": "done", "commands": [], "seconds": seconds, "estimate_s": 60.0, "note": "", "date": "2026-12-07T00:00:00Z"}).to_string() + "\n";
    std::fs::write(&log, pass(86400.0)).unwrap();
    let out = run(&["--only", &format!("eval-base,{cell}"), "--stop-after", "60"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(text(&out).contains(&format!("step {cell} expects 24 h 00 min")), "{}", text(&out));
    let ids: Vec<(String, String)> = records().iter().map(|r| (r["id"].as_str().unwrap().to_string(), r["status"].as_str().unwrap().to_string())).collect();
    assert_eq!(ids, [(cell.to_string(), "done".to_string()), ("eval-base".to_string(), "done".to_string())], "only the step that fitted ran");

    // the first step of a run starts even when it cannot fit (else no rerun would ever move it
    // on); one second in, it is interrupted, keeping what it did, and a rerun finishes it
    let out = run(&["--only", cell, "--stop-after", "1"]);
    assert_eq!(out.status.code(), Some(75), "{}", text(&out));
    assert!(text(&out).contains("starting it anyway") && text(&out).contains("time is up"), "{}", text(&out));
    assert_eq!((records().last().unwrap()["id"].as_str(), records().last().unwrap()["status"].as_str()), (Some(cell), Some("interrupted")), "{:?}", records());
    let out = run(&["--only", cell]);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(records().last().unwrap()["status"], "done", "{:?}", records());
}
