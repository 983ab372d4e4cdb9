//! `rner::report`: the zero-shot table (CSV parsed back with polars) and its plots, from
//! hand-written `scores.json` files — no model involved.
use std::path::Path;

use polars::prelude::*;
use rner::report::{self, LabelRuns, ZeroShotOptions};
use rner::score::{average, round2};
use serde_json::{json, Value};

const SETS: [&str; 7] =
    ["mit-movie", "mit-restaurant", "crossner_ai", "crossner_literature", "crossner_music", "crossner_politics", "crossner_science"];
const HEADERS: [&str; 7] = ["Movie", "Restaurant", "AI", "Literature", "Music", "Politics", "Science"];

fn paper_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("baselines/paper-table1.toml")
}

fn dataset(f1: f64, sentences: usize, expected: usize, failures: usize) -> Value {
    json!({
        "precision": f1, "recall": f1, "f1": f1, "ci95": [round2(f1 - 3.0).max(0.0), round2(f1 + 3.0)],
        "sentences": sentences, "gold": 100, "predicted": 100, "matched": 40,
        "parse_failures": failures, "truncated": 1, "expected": expected,
        "per_label": {
            "person": {"precision": f1, "recall": f1, "f1": f1, "gold": 60, "predicted": 50, "matched": 30},
            "location": {"precision": 10.0, "recall": 10.0, "f1": 10.0, "gold": 40, "predicted": 45, "matched": 4},
            "made-up label": {"precision": 0.0, "recall": 0.0, "f1": 0.0, "gold": 0, "predicted": 5, "matched": 0}
        }
    })
}

fn write_run(results: &Path, id: &str, model: &str, limit: Option<usize>, datasets: Value) {
    let dir = results.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let scores = json!({
        "run_id": id, "model": model, "mode": "direct", "decoding": "free", "split": "test",
        "limit": limit, "seed": 0, "command": format!("rner eval --model {model} | tee log, \"quoted\""),
        "datasets": datasets, "average": null
    });
    std::fs::write(dir.join("scores.json"), serde_json::to_string_pretty(&scores).unwrap()).unwrap();
}

/// F1s of the complete run; the first is not yet rounded, to check Avg uses the rounded values.
const F1S: [f64; 7] = [41.236, 12.5, 30.0, 22.22, 50.55, 40.4, 33.33];

fn two_runs(results: &Path) {
    let mut full = serde_json::Map::new();
    for (i, s) in SETS.iter().enumerate() {
        full.insert(s.to_string(), dataset(F1S[i], 50, 50, i));
    }
    write_run(results, "complete-run", "tiny-model", None, Value::Object(full));
    // partial: movie 123/2442, restaurant complete, the five CrossNER sets not run yet
    write_run(
        results,
        "partial-run",
        "other-model",
        Some(2442),
        json!({"mit-movie": dataset(41.23, 123, 2442, 7), "mit-restaurant": dataset(20.0, 30, 30, 1)}),
    );
    // a run still starting (no scores.json) is skipped
    std::fs::create_dir_all(results.join("starting-run")).unwrap();
}

fn read_csv(path: &Path) -> DataFrame {
    CsvReadOptions::default().with_has_header(true).try_into_reader_with_file_path(Some(path.into())).unwrap().finish().unwrap()
}

fn row_of(df: &DataFrame, column: &str, value: &str) -> usize {
    let c = df.column(column).unwrap().str().unwrap();
    let rows: Vec<usize> = (0..df.height()).filter(|&i| c.get(i) == Some(value)).collect();
    assert_eq!(rows.len(), 1, "{column} = {value}: rows {rows:?}");
    rows[0]
}

fn f64_cell(df: &DataFrame, column: &str, i: usize) -> Option<f64> {
    df.column(column).unwrap().cast(&DataType::Float64).unwrap().f64().unwrap().get(i)
}

fn i64_cell(df: &DataFrame, column: &str, i: usize) -> Option<i64> {
    df.column(column).unwrap().cast(&DataType::Int64).unwrap().i64().unwrap().get(i)
}

fn str_cell(df: &DataFrame, column: &str, i: usize) -> Option<String> {
    df.column(column).unwrap().cast(&DataType::String).unwrap().str().unwrap().get(i).map(str::to_string)
}

/// (width, height) from a PNG's IHDR chunk.
fn png_size(path: &Path) -> (u32, u32) {
    let b = std::fs::read(path).unwrap();
    assert!(b.len() > 33, "{} is too short", path.display());
    assert_eq!(&b[..8], b"\x89PNG\r\n\x1a\n", "{} is not a PNG", path.display());
    assert_eq!(&b[12..16], b"IHDR");
    let be = |o: usize| u32::from_be_bytes([b[o], b[o + 1], b[o + 2], b[o + 3]]);
    (be(16), be(20))
}

#[test]
fn zero_shot_table_has_our_runs_and_the_paper_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    two_runs(&results);
    let summary = report::zero_shot(&results, &reports, &paper_file()).unwrap();
    assert_eq!(summary.runs, 2);
    assert_eq!(summary.paper_rows, 17);
    assert_eq!(summary.partial, vec!["partial-run".to_string()]);
    assert_eq!(summary.csv, reports.join("zero-shot.csv"));

    let df = read_csv(&summary.csv);
    assert_eq!(df.height(), 2 + 17);
    for h in HEADERS {
        for suffix in ["", "_lo", "_hi", "_n", "_expected"] {
            assert!(df.column(&format!("{h}{suffix}")).is_ok(), "missing column {h}{suffix}");
        }
    }

    // the complete run: Avg = mean of the rounded F1s
    let c = row_of(&df, "run_id", "complete-run");
    assert_eq!(str_cell(&df, "source", c).as_deref(), Some("ours"));
    assert_eq!(str_cell(&df, "system", c).as_deref(), Some("tiny-model (direct, free)"));
    let f1s: Vec<f64> = HEADERS.iter().map(|h| f64_cell(&df, h, c).unwrap()).collect();
    assert_eq!(f1s, F1S);
    let rounded: Vec<f64> = f1s.iter().map(|f| round2(*f)).collect();
    assert_eq!(f64_cell(&df, "Avg", c), Some(average(&rounded)));
    assert_eq!(f64_cell(&df, "Avg", c), Some(32.89));
    assert_eq!(f64_cell(&df, "Movie_lo", c), Some(round2(41.236 - 3.0)));
    assert_eq!(f64_cell(&df, "Movie_hi", c), Some(round2(41.236 + 3.0)));
    assert_eq!(str_cell(&df, "complete", c).as_deref(), Some("true"));
    assert_eq!(i64_cell(&df, "parse_failures", c), Some((0..7).sum()));
    assert_eq!(i64_cell(&df, "truncated", c), Some(7));
    assert_eq!(str_cell(&df, "limit", c).as_deref(), Some("full"));
    assert_eq!(str_cell(&df, "command", c).as_deref(), Some("rner eval --model tiny-model | tee log, \"quoted\""));
    assert_eq!(str_cell(&df, "results", c).unwrap(), results.join("complete-run/scores.json").display().to_string());

    // the partial run: marked, no Avg
    let p = row_of(&df, "run_id", "partial-run");
    assert_eq!(str_cell(&df, "complete", p).as_deref(), Some("false"));
    assert_eq!(f64_cell(&df, "Avg", p), None);
    assert_eq!(f64_cell(&df, "Movie", p), Some(41.23));
    assert_eq!((i64_cell(&df, "Movie_n", p), i64_cell(&df, "Movie_expected", p)), (Some(123), Some(2442)));
    assert_eq!((i64_cell(&df, "Restaurant_n", p), i64_cell(&df, "Restaurant_expected", p)), (Some(30), Some(30)));
    assert_eq!(f64_cell(&df, "AI", p), None);
    assert_eq!(i64_cell(&df, "AI_n", p), None);
    assert_eq!(i64_cell(&df, "parse_failures", p), Some(8));
    assert_eq!(str_cell(&df, "limit", p).as_deref(), Some("2442 per dataset"));

    // the paper's rows, marked and verbatim
    let sources = df.column("source").unwrap().str().unwrap();
    let paper: Vec<usize> = (0..df.height()).filter(|&i| sources.get(i) == Some("paper-reported")).collect();
    assert_eq!(paper.len(), 17);
    assert!(paper.iter().all(|&i| i >= 2), "our runs come first");
    let r8 = row_of(&df, "system", "ReasoningNER 8B");
    assert_eq!(str_cell(&df, "source", r8).as_deref(), Some("paper-reported"));
    assert_eq!(f64_cell(&df, "Avg", r8), Some(72.4));
    assert_eq!(f64_cell(&df, "Movie", r8), Some(76.3));
    assert_eq!(i64_cell(&df, "num", r8), Some(50787));
    assert_eq!(str_cell(&df, "run_id", r8), None);
    let uie = row_of(&df, "system", "InstructUIE 11B");
    assert_eq!((f64_cell(&df, "Movie", uie), f64_cell(&df, "Avg", uie)), (None, None));
    assert_eq!(f64_cell(&df, "AI", uie), Some(48.4));
    let gpt4 = row_of(&df, "system", "GPT-4");
    assert_eq!(i64_cell(&df, "num", gpt4), None);
    let b2 = row_of(&df, "system", "B²NER 7B♣");
    assert!(str_cell(&df, "note", b2).unwrap().contains("B²NER (Yang et al. 2025)"));

    // the markdown shows the same rows
    let md = std::fs::read_to_string(&summary.markdown).unwrap();
    assert!(md.contains("| 41.2* (123/2442)"), "{md}");
    assert!(md.contains("41.24 [38.2, 44.2]"), "{md}");
    assert!(md.contains("| 32.89 "), "{md}");
    assert!(md.contains("**Partial runs** (1 of 2"), "{md}");
    assert!(md.contains("tee log"), "commands listed");
    assert!(md.contains("Huang et al., A Reasoning Paradigm for Named Entity Recognition, AAAI 2026, Table 1 (arXiv 2511.11978)"));
    let table_rows = md.lines().filter(|l| l.starts_with("| ours") || l.starts_with("| paper-reported")).count();
    assert_eq!(table_rows, 2 + 17);
}

#[test]
fn zero_shot_plots_are_written_as_svg_and_png() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    two_runs(&results);
    let summary = report::zero_shot(&results, &reports, &paper_file()).unwrap();
    let plots = reports.join("plots");
    // one zero-shot plot per sample size: the full-set run, and the 2442-per-set sample
    for stem in ["zero-shot", "zero-shot-n2442", "labels-complete-run", "labels-partial-run"] {
        for ext in ["svg", "png"] {
            let p = plots.join(format!("{stem}.{ext}"));
            assert!(p.is_file(), "{} missing", p.display());
            assert!(summary.plots.contains(&p), "{} not reported", p.display());
        }
        let svg = std::fs::read_to_string(plots.join(format!("{stem}.svg"))).unwrap();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"), "{stem}.svg");
    }
    assert_eq!(summary.plots.len(), 8);
    assert_eq!(png_size(&plots.join("zero-shot.png")), (1200, 600));
    assert_eq!(png_size(&plots.join("zero-shot-n2442.png")), (1200, 600));
    assert_eq!(png_size(&plots.join("labels-complete-run.png")), (1600, 600));
    assert_eq!(png_size(&plots.join("labels-partial-run.png")), (1200, 600));
    let full = std::fs::read_to_string(plots.join("zero-shot.svg")).unwrap();
    let sample = std::fs::read_to_string(plots.join("zero-shot-n2442.svg")).unwrap();
    for svg in [&full, &sample] {
        for text in ["Restaurant", "Avg", "ReasoningNER 8B (paper)", "GPT-4 (paper)"] {
            assert!(svg.contains(text), "a zero-shot plot lacks {text:?}");
        }
    }
    assert!(full.contains("full sets") && full.contains("tiny-model (direct, free)"));
    assert!(!full.contains("other-model"), "the sample run is not drawn among the full-set runs");
    assert!(sample.contains("samples of 2442 test sentences per set") && sample.contains("other-model (direct, free)"));
    assert!(!sample.contains("tiny-model"), "the full-set run is not drawn among the samples");
    let labels = std::fs::read_to_string(plots.join("labels-complete-run.svg")).unwrap();
    assert!(labels.contains("person (60)") && labels.contains("location (40)"));
    assert!(!labels.contains("made-up label"), "labels absent from the gold are not drawn");
    // no temp files left behind
    let leftovers: Vec<_> = std::fs::read_dir(&plots).unwrap().filter_map(|e| e.ok()).filter(|e| e.file_name().to_string_lossy().contains("tmp")).collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn label_plots_can_be_chosen_per_run() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    two_runs(&results);
    let opts = ZeroShotOptions { label_runs: LabelRuns::Only(vec!["partial-run".into()]), ..Default::default() };
    let summary = report::zero_shot_with(&results, &reports, &paper_file(), &opts).unwrap();
    assert_eq!(summary.plots.len(), 6, "two zero-shot plots (full, 2442 per set) and one label plot");
    assert!(reports.join("plots/labels-partial-run.png").is_file());
    assert!(!reports.join("plots/labels-complete-run.png").exists());

    let none = ZeroShotOptions { label_runs: LabelRuns::None, ..Default::default() };
    assert_eq!(report::zero_shot_with(&results, &tmp.path().join("r2"), &paper_file(), &none).unwrap().plots.len(), 4);

    let only = report::run_labels(&results, "complete-run", &tmp.path().join("one")).unwrap();
    assert_eq!(only, vec![tmp.path().join("one/labels-complete-run.svg"), tmp.path().join("one/labels-complete-run.png")]);
    assert_eq!(png_size(&only[1]), (1600, 600));

    let bad = ZeroShotOptions { label_runs: LabelRuns::Only(vec!["nope".into()]), ..Default::default() };
    let e = report::zero_shot_with(&results, &reports, &paper_file(), &bad).unwrap_err().to_string();
    assert!(e.contains("nope") && e.contains("complete-run"), "{e}");
    let e = report::run_labels(&results, "nope", &reports).unwrap_err().to_string();
    assert!(e.contains("nope"), "{e}");
}

#[test]
fn bad_inputs_are_errors_naming_the_file() {
    let tmp = tempfile::tempdir().unwrap();
    let (results, reports) = (tmp.path().join("results"), tmp.path().join("reports"));
    two_runs(&results);
    std::fs::create_dir_all(results.join("broken")).unwrap();
    std::fs::write(results.join("broken/scores.json"), "{\"run_id\": \"broken\", ").unwrap();
    let e = report::zero_shot(&results, &reports, &paper_file()).unwrap_err().to_string();
    assert!(e.contains("broken/scores.json"), "{e}");

    // a well-formed file with an impossible F1
    write_run(&results, "broken", "m", None, json!({"mit-movie": dataset(140.0, 1, 1, 0)}));
    let e = report::zero_shot(&results, &reports, &paper_file()).unwrap_err().to_string();
    assert!(e.contains("broken/scores.json") && e.contains("140"), "{e}");
    std::fs::remove_dir_all(results.join("broken")).unwrap();

    let e = report::zero_shot(&results, &reports, &tmp.path().join("missing.toml")).unwrap_err().to_string();
    assert!(e.contains("missing.toml"), "{e}");

    // no results folder at all: the paper's rows alone
    let s = report::zero_shot(&tmp.path().join("no-results"), &tmp.path().join("r3"), &paper_file()).unwrap();
    assert_eq!((s.runs, s.paper_rows), (0, 17));
    assert_eq!(read_csv(&s.csv).height(), 17);
    assert_eq!(png_size(&tmp.path().join("r3/plots/zero-shot.png")), (1200, 600));
    assert_eq!(s.plots.len(), 2, "no sample plots without sample runs: {:?}", s.plots);
    let svg = std::fs::read_to_string(tmp.path().join("r3/plots/zero-shot.svg")).unwrap();
    assert!(svg.contains("no full-set runs in results/ yet"));
}

/// Not a check: writes a realistic report (the real label sets, three runs) into
/// `$RNER_DEMO_DIR` for a person to look at. `RNER_DEMO_DIR=/tmp/demo cargo test --release
/// --test suite report::demo -- --ignored`
#[test]
#[ignore]
fn demo() {
    let Some(out) = std::env::var_os("RNER_DEMO_DIR").map(std::path::PathBuf::from) else { return };
    let labels: [&[&str]; 7] = [
        &["genre", "year", "plot", "average ratings", "actor", "title", "song", "character", "rating", "review", "director", "trailer"],
        &["rating", "location", "amenity", "cuisine", "hours", "price", "dish", "restaurant name"],
        &["algorithm", "conference", "product", "task", "field", "metrics", "organization", "researcher", "program language", "country", "location", "person", "university"],
        &["person", "country", "writer", "book", "award", "literary genre", "poem", "location", "magazine", "event", "organization"],
        &["location", "event", "country", "band", "person", "song", "musical artist", "music genre", "album", "organization", "award", "musical instrument"],
        &["election", "political party", "organization", "politician", "person", "event", "country", "location"],
        &["chemical compound", "scientist", "location", "astronomical object", "protein", "person", "university", "theory", "enzyme", "organization", "award", "country", "event", "discipline", "chemical element", "academic journal"],
    ];
    let sizes = [2442, 1520, 431, 416, 465, 650, 543];
    let results = out.join("results");
    let _ = std::fs::remove_dir_all(&out);
    for (r, (id, model, mode, scale, done)) in [
        ("smollm2-direct-1a2b3c", "smollm2-135m-instruct", "direct", 0.18, 7),
        ("qwen-coder-cot-4d5e6f", "qwen2.5-coder-0.5b-instruct", "cot", 0.45, 7),
        ("gemma3-direct-789abc", "gemma3-270m", "direct", 0.3, 3),
    ]
    .into_iter()
    .enumerate()
    {
        let mut ds = serde_json::Map::new();
        for (i, set) in SETS.iter().enumerate().take(done) {
            let f = round2(100.0 * scale * (0.6 + 0.1 * ((i * 7 + r * 3) % 9) as f64 / 2.0));
            let n = if done < 7 && i == done - 1 { sizes[i] / 3 } else { sizes[i] };
            let mut per = serde_json::Map::new();
            for (k, l) in labels[i].iter().enumerate() {
                let lf = round2((f * (0.3 + ((k * 5 + i + r) % 11) as f64 / 7.0)).min(100.0));
                per.insert(l.to_string(), json!({"precision": lf, "recall": lf, "f1": lf, "gold": 400 / (k + 1), "predicted": 300 / (k + 1), "matched": 100 / (k + 1)}));
            }
            per.insert("misc thing".into(), json!({"precision": 0.0, "recall": 0.0, "f1": 0.0, "gold": 0, "predicted": 9, "matched": 0}));
            ds.insert(set.to_string(), json!({
                "precision": f, "recall": f, "f1": f, "ci95": [round2(f * 0.9), round2((f * 1.1).min(100.0))],
                "sentences": n, "gold": 1000, "predicted": 900, "matched": 300, "parse_failures": r * 3 + i,
                "truncated": 0, "expected": sizes[i], "per_label": per
            }));
        }
        let dir = results.join(id);
        std::fs::create_dir_all(&dir).unwrap();
        let scores = json!({"run_id": id, "model": model, "mode": mode, "decoding": "free", "split": "test", "limit": null,
            "seed": 0, "command": format!("rner eval --model {model} --mode {mode}"), "datasets": ds, "average": null});
        std::fs::write(dir.join("scores.json"), serde_json::to_string_pretty(&scores).unwrap()).unwrap();
    }
    report::zero_shot(&results, &out.join("reports"), &paper_file()).unwrap();
    // and the report of a checkout with no runs yet
    report::zero_shot(&out.join("no-results"), &out.join("paper-only"), &paper_file()).unwrap();
}

#[test]
fn compare_counts_identical_outputs_and_sentences_that_got_better() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("results/smollm2-135m-instruct-direct-free-test-n50-s42-b2db9753");
    let tmp = tempfile::tempdir().unwrap();
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    for d in [&a, &b] {
        std::fs::create_dir_all(d).unwrap();
        std::fs::copy(src.join("manifest.json"), d.join("manifest.json")).unwrap();
    }
    let text = std::fs::read_to_string(src.join("samples.jsonl")).unwrap();
    std::fs::write(a.join("samples.jsonl"), &text).unwrap();
    // in b, the first sentence with gold mentions gets the gold answer
    let mut changed = None;
    let lines: Vec<String> = text
        .lines()
        .map(|l| {
            let mut v: Value = serde_json::from_str(l).unwrap();
            if changed.is_none() && !v["gold"].as_array().unwrap().is_empty() {
                let mut ents: serde_json::Map<String, Value> = serde_json::Map::new();
                for g in v["gold"].as_array().unwrap() {
                    let e = ents.entry(g["label"].as_str().unwrap().to_string()).or_insert(json!([]));
                    e.as_array_mut().unwrap().push(g["text"].clone());
                }
                v["output"] = json!(json!({"entities": ents}).to_string());
                changed = Some(v["dataset"].as_str().unwrap().to_string());
            }
            v.to_string()
        })
        .collect();
    std::fs::write(b.join("samples.jsonl"), lines.join("\n") + "\n").unwrap();
    let c = rner::report::compare::compare(&a, &b).unwrap();
    let changed = changed.unwrap();
    let total: usize = c.datasets.values().map(|d| d.shared).sum();
    let same: usize = c.datasets.values().map(|d| d.identical).sum();
    assert_eq!((total, same), (350, 349));
    let d = &c.datasets[&changed];
    assert_eq!((d.better, d.worse), (1, 0));
    assert!(d.f1_b > d.f1_a && d.f1_a == 0.0);
    // the paired bootstrap: the one fixed sentence is the whole difference, on its set and on the average
    assert_eq!(d.diff.delta, rner::score::round2(d.f1_b - d.f1_a));
    assert!(d.diff.ci95[0] >= 0.0 && d.diff.ci95[1] >= d.diff.delta, "{:?}", d.diff);
    for (name, o) in c.datasets.iter().filter(|(n, _)| **n != changed) {
        assert_eq!((o.diff.delta, o.diff.ci95, o.diff.p), (0.0, [0.0, 0.0], 1.0), "{name}");
    }
    let avg = |f: fn(&rner::report::compare::DatasetDiff) -> f64| rner::score::average(&c.datasets.values().map(f).collect::<Vec<_>>());
    assert_eq!(c.overall.delta, rner::score::round2(avg(|x| x.f1_b) - avg(|x| x.f1_a)));
    assert!(c.overall.delta > 0.0 && c.overall.ci95[0] >= 0.0, "{:?}", c.overall);
    let md = c.markdown("rner compare a b");
    assert!(md.contains("| all ") && md.contains("b − a [95% CI], p"), "{md}");
}
