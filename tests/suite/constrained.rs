//! Constrained decoding (`--decoding json|schema`) with the real default model through llama.cpp.
use rner::data::{Entity, Example};
use rner::engine::llama::{LlamaEngine, LlamaSettings};
use rner::engine::{Engine, GenRequest, Sampling};
use rner::prompt::grammar::{constraint, Decoding};
use rner::run::{SampleRow, Scores};

use crate::util::{default_model, rner};

fn example(labels: &[&str], text: &str) -> Example {
    Example {
        id: "odd/test/0".into(),
        dataset: "odd".into(),
        split: "test".into(),
        index: 0,
        text: text.into(),
        tokens: None,
        gold: Vec::<Entity>::new(),
        labels: labels.iter().map(|s| s.to_string()).collect(),
    }
}

/// Every run of consecutive words of a sentence.
fn spans(text: &str) -> Vec<String> {
    let w: Vec<&str> = text.split_whitespace().collect();
    (0..w.len()).flat_map(|i| (i + 1..=w.len()).map(move |j| (i, j))).map(|(i, j)| w[i..j].join(" ")).collect()
}

/// The paper prompt of each case, under `d`'s constraint, with `base`'s other sampling settings.
fn requests(cases: &[Example], d: Decoding, base: &Sampling) -> Vec<GenRequest> {
    cases
        .iter()
        .map(|ex| GenRequest { prompt: rner::prompt::render(ex, &Default::default()), sampling: Sampling { constraint: constraint(d, ex, false), ..base.clone() } })
        .collect()
}

/// Labels and a sentence with spaces, quotes, backslashes and non-ASCII text.
fn odd_example() -> Example {
    example(&["music genre", "o\"k \\ label", "país", "名前"], "Los \"Lobos\" played C:\\path in São Paulo 東京 .")
}

#[test]
fn odd_labels_and_sentences_give_grammars_llama_cpp_accepts_and_answers_that_obey_them() {
    let cases = [
        odd_example(),
        example(&["person"], "\"\" \\ { } [ ] : ,"),
        example(&[], "Nothing to see ."),
    ];
    let mut engine = LlamaEngine::load(&default_model(), LlamaSettings { parallel: 3, ctx_per_seq: 1024, threads: 2, ..Default::default() }).unwrap();
    for d in [Decoding::Json, Decoding::Schema] {
        let reqs = requests(&cases, d, &Sampling { max_tokens: 200, ..Sampling::default() });
        let outs = engine.generate(&reqs).unwrap();
        for (ex, o) in cases.iter().zip(&outs) {
            let pred = rner::parse::prediction(&o.text);
            assert!(pred.error.is_none(), "{d:?} {:?}: {}", ex.labels, o.text);
            if d == Decoding::Schema {
                let ok = spans(&ex.text);
                for e in &pred.entities {
                    assert!(ex.labels.contains(&e.label), "label {:?} not in {:?}: {}", e.label, ex.labels, o.text);
                    assert!(ok.iter().any(|s| s.trim() == e.text), "span {:?} not in the sentence: {}", e.text, o.text);
                }
            }
        }
    }
}

#[test]
fn checking_the_greedy_choice_first_gives_the_texts_of_masking_every_step() {
    // the default (check the model's choice, then its next-best choices one by one, and mask the
    // vocabulary only when the grammar rejects them all) must choose the very tokens llama.cpp's
    // mask-every-candidate sampler chooses
    let reg = rner::data::Registry::new(&crate::util::data_dir()).unwrap();
    let mut cases: Vec<Example> = reg.load("crossner_ai", "test").unwrap()[..12].to_vec();
    cases.push(odd_example());
    let run = |check_first: bool, ranked: usize, d: Decoding, repeat_penalty: f32| {
        let settings = LlamaSettings { parallel: 8, ctx_per_seq: 1024, threads: 2, grammar_check_first: check_first, grammar_ranked: ranked, ..Default::default() };
        let mut engine = LlamaEngine::load(&default_model(), settings).unwrap();
        let reqs = requests(&cases, d, &Sampling { max_tokens: 160, repeat_penalty, ..Sampling::default() });
        let texts: Vec<String> = engine.generate(&reqs).unwrap().into_iter().map(|o| o.text).collect();
        (texts, engine.take_step_times())
    };
    let same = |what: &str, a: &[String], b: &[String]| {
        for (i, (x, y)) in a.iter().zip(b).enumerate() {
            assert_eq!(x, y, "{what}: sentence {i} differs");
        }
    };
    let k = LlamaSettings::default().grammar_ranked;
    let mut schema_masked = Vec::new();
    for d in [Decoding::Json, Decoding::Schema] {
        let (masked, every) = run(false, 0, d, 1.0);
        let (checked, first) = run(true, 0, d, 1.0);
        let (ranked, next) = run(true, k, d, 1.0);
        assert_eq!(every.grammar_full_masks, every.grammar_tokens, "{d:?}: masking every step masks every token");
        assert_eq!(first.grammar_tokens, every.grammar_tokens, "{d:?}: the same number of constrained tokens");
        assert_eq!(next.grammar_tokens, every.grammar_tokens, "{d:?}: the same number of constrained tokens, ranked");
        assert!(first.grammar_full_masks < first.grammar_tokens / 2, "{d:?}: the check spares most masks ({first:?})");
        assert_eq!(first.grammar_ranked_hits, 0, "{d:?}: ranked choices were off");
        // the same first choices are rejected; the ranked ones resolve some of them without a mask
        assert_eq!(next.grammar_full_masks + next.grammar_ranked_hits, first.grammar_full_masks, "{d:?}: {next:?} against {first:?}");
        assert!(next.grammar_ranked_hits > 0, "{d:?}: no rejected choice was resolved among the next-best ({next:?})");
        same(&format!("{d:?} check first"), &masked, &checked);
        same(&format!("{d:?} ranked"), &masked, &ranked);
        if d == Decoding::Schema {
            schema_masked = masked;
        }
    }
    // a single ranked choice leaves masks to the fallback, which must agree too
    let (one, st) = run(true, 1, Decoding::Schema, 1.0);
    assert!(st.grammar_full_masks > 0 && st.grammar_ranked_hits > 0, "one ranked choice: {st:?}");
    assert_eq!(schema_masked.len(), cases.len());
    same("schema, one ranked choice", &schema_masked, &one);
    // under a repeat penalty the ranking is by the penalised logits the chain chose from
    let (masked, _) = run(false, 0, Decoding::Schema, 1.3);
    let (ranked, st) = run(true, k, Decoding::Schema, 1.3);
    assert!(st.grammar_ranked_hits > 0, "repeat penalty: {st:?}");
    same("schema, repeat penalty 1.3", &masked, &ranked);
}

#[test]
fn a_constrained_answer_cut_by_a_stop_string_is_closed_and_parses() {
    // a completion prompt stops at "\n\n", which the grammar's whitespace allows between brackets
    // (Gemma-3 270M wrote one there); here every answer is cut at its first list
    let reg = rner::data::Registry::new(&crate::util::data_dir()).unwrap();
    let cases: Vec<Example> = reg.load("crossner_ai", "test").unwrap()[..4].to_vec();
    let mut engine = LlamaEngine::load(&default_model(), LlamaSettings { parallel: 4, ctx_per_seq: 1024, threads: 2, ..Default::default() }).unwrap();
    let reqs = requests(&cases, Decoding::Json, &Sampling { max_tokens: 64, stop: vec!["[".into()], ..Sampling::default() });
    for o in engine.generate(&reqs).unwrap() {
        assert_eq!(o.finish, rner::engine::Finish::Stop);
        let pred = rner::parse::prediction(&o.text);
        assert!(pred.error.is_none(), "{:?}: {}", pred.error, o.text);
        assert!(o.text.ends_with('}') && !o.text.contains('['), "{}", o.text);
    }
}

#[test]
fn schema_decoding_never_fails_to_parse_or_leaves_the_schema_over_a_full_dataset() {
    // CrossNER-AI's train split: 100 sentences, 13 labels
    let tmp = tempfile::tempdir().unwrap();
    let o = rner()
        .args(["--quiet", "--results"])
        .arg(tmp.path())
        .args(["eval", "--model"])
        .arg(default_model())
        .args(["--datasets", "crossner_ai", "--split", "train", "--decoding", "schema", "--parallel", "16", "--ctx", "1024", "--max-tokens", "256", "--threads", "1"])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let dir = std::fs::read_dir(tmp.path()).unwrap().next().unwrap().unwrap().path();
    assert!(dir.file_name().unwrap().to_str().unwrap().contains("-schema-"), "the run id names the decoding");
    let scores: Scores = serde_json::from_str(&std::fs::read_to_string(dir.join("scores.json")).unwrap()).unwrap();
    assert_eq!(scores.decoding, "schema");
    let d = &scores.datasets["crossner_ai"];
    // an answer cut by the token cap is closed after its last complete span, so even those parse
    assert_eq!((d.sentences, d.parse_failures), (100, 0));
    let rows: Vec<SampleRow> = std::fs::read_to_string(dir.join("samples.jsonl")).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    for r in &rows {
        assert!(r.prediction.iter().all(|e| r.schema.contains(&e.label)), "{}", r.output);
    }
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    assert_eq!(m["config"]["decoding"], "schema");
}

#[test]
fn grpo_rollouts_under_schema_decoding_always_earn_the_schema_reward() {
    // the free default model never writes a valid answer (schema reward 0); constrained from the
    // first token, every rollout is a valid answer with schema labels
    let tmp = tempfile::tempdir().unwrap();
    let o = rner()
        .args(["--quiet", "--results"])
        .arg(tmp.path().join("results"))
        .arg("--reports")
        .arg(tmp.path().join("reports"))
        .args(["grpo", "--init"])
        .arg(default_model())
        .args(["--name", "g", "--sources", "conll2003", "--pool", "4", "--steps", "1", "--prompts-per-step", "2", "--num-generations", "2"])
        .args(["--num-iterations", "1", "--max-completion-length", "48", "--micro", "4", "--decoding", "schema", "--mode", "direct", "--export", "none", "--checkpoints"])
        .arg(tmp.path().join("ck"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let log = std::fs::read_to_string(tmp.path().join("results/train/g/steps.jsonl")).unwrap();
    let step: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(step["components"]["schema"][0].as_f64(), Some(1.0), "{step}");
    let run: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("results/train/g/run.json")).unwrap()).unwrap();
    assert_eq!(run["config"]["decoding"], "schema");
    assert_eq!(run["config"].get("constrain_after_think"), None, "direct: constrained from the first token");
}

#[test]
fn a_constrained_cot_build_records_its_decoding_and_answers_in_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("set.jsonl");
    let build = |decoding: &str| {
        rner()
            .args(["--quiet", "--reports"])
            .arg(tmp.path().join("reports"))
            .args(["cot", "--teacher"])
            .arg(default_model())
            .args(["--limit", "4", "--max-cot-tokens", "96", "--parallel", "4", "--ctx", "1024", "--decoding", decoding, "--out"])
            .arg(&out)
            .output()
            .unwrap()
    };
    let o = build("schema");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let m: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(tmp.path().join("set.manifest.json")).unwrap()).unwrap();
    assert_eq!(m["config"]["decoding"], "schema");
    let rows: Vec<serde_json::Value> = std::fs::read_to_string(tmp.path().join("set.rejected.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let kept = std::fs::read_to_string(&out).unwrap_or_default().lines().count();
    assert_eq!(rows.len() + kept, 4);
    for r in &rows {
        // whatever the teacher wrote after `</think>` obeys the schema grammar
        if let Some((_, answer)) = r["output"].as_str().unwrap().split_once("</think>") {
            if r["check"] != "truncated" {
                let pred = rner::parse::prediction(answer);
                assert!(pred.error.is_none(), "{answer}");
            }
        }
    }
    // a set is never continued under another decoding
    let o = build("free");
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--decoding schema"), "{}", String::from_utf8_lossy(&o.stderr));
}
