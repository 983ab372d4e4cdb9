//! `rner report --html` in a real browser (headless Chromium): the pages show the scorer's numbers
//! and the sample browser's filters select exactly the sentences they should.
use std::path::{Path, PathBuf};
use std::process::Command;

use rner::report::analysis::error_kinds;
use rner::run::SampleRow;

use crate::util::{rner, root};

const RUN: &str = "smollm2-135m-instruct-direct-schema-test-n50-s42-50bee662";

fn chromium() -> PathBuf {
    for c in ["chromium", "chromium-browser", "google-chrome"] {
        if Command::new("which").arg(c).output().map(|o| o.status.success()).unwrap_or(false) {
            return PathBuf::from(c);
        }
    }
    panic!("the site test needs headless Chromium: apt-get install chromium (.ci/run installs it)");
}

/// The DOM after the page's scripts ran, and a screenshot beside it.
fn dom(page: &Path, hash: &str, shot: &Path) -> String {
    let url = format!("file://{}{}", page.display(), hash);
    let base = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=1300,2000"];
    let out = Command::new(chromium()).args(base).arg("--dump-dom").arg(&url).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let s = Command::new(chromium()).args(base).arg(format!("--screenshot={}", shot.display())).arg(&url).output().unwrap();
    assert!(s.status.success());
    String::from_utf8(out.stdout).unwrap()
}

fn copy_run(to: &Path) {
    let from = root().join("results").join(RUN);
    std::fs::create_dir_all(to.join(RUN)).unwrap();
    for f in ["samples.jsonl", "scores.json", "manifest.json"] {
        std::fs::copy(from.join(f), to.join(RUN).join(f)).unwrap();
    }
}

#[test]
fn the_site_renders_the_scorers_numbers_and_its_filters_work() {
    let dir = tempfile::tempdir().unwrap();
    let (results, reports) = (dir.path().join("results"), dir.path().join("reports"));
    copy_run(&results);
    let out = rner().args(["-q", "report", "--html", "--results"]).arg(&results).arg("--reports").arg(&reports).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let site = reports.join("site");
    let shots = root().join("target/site-screenshots");
    std::fs::create_dir_all(&shots).unwrap();

    // the index shows each dataset's F1 as scores.json has it
    let scores: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(results.join(RUN).join("scores.json")).unwrap()).unwrap();
    let index = dom(&site.join("index.html"), "", &shots.join("index.png"));
    for ds in ["mit-movie", "crossner_ai", "crossner_science"] {
        let f1 = format!("{:.2}", scores["datasets"][ds]["f1"].as_f64().unwrap());
        assert!(index.contains(&format!("<span class=\"f1\">{f1}</span>")), "index lacks {ds} F1 {f1}");
    }

    // the filters: sentences of one dataset with a missed gold entity, and parse failures
    let rows: Vec<SampleRow> = rner::util::read_jsonl(&results.join(RUN).join("samples.jsonl")).unwrap();
    let want = rows.iter().filter(|r| r.dataset == "mit-movie" && error_kinds(r).iter().any(|(_, k, _)| k.name() == "missed")).count();
    let page = site.join(format!("samples-{RUN}.html"));
    let html = dom(&page, "#dataset=mit-movie&kind=missed", &shots.join("run-filtered.png"));
    assert!(html.contains(&format!("data-n=\"{want}\"")), "expected {want} sentences after filtering");
    let shown = html.matches("<div class=\"sample\">").count();
    assert_eq!(shown, want.min(50));
    let all = dom(&page, "", &shots.join("run.png"));
    assert!(all.contains(&format!("data-n=\"{}\"", rows.len())));
    assert_eq!(all.matches("<div class=\"sample\">").count(), 50, "one page of 50");
    let failed = rows.iter().filter(|r| r.parse_error.is_some_and(|e| e.is_failure())).count();
    let f = dom(&page, "#failed=1", &shots.join("run-failed.png"));
    assert!(f.contains(&format!("data-n=\"{failed}\"")));
}

/// A side-by-side page (`--pair`) shows the same paired-bootstrap difference as `rner compare`,
/// which re-scores the two runs by its own path.
#[test]
fn a_side_by_side_page_shows_the_paired_difference_rner_compare_computes() {
    const B: &str = "smollm2-135m-instruct-direct-free-test-n50-s42-b2db9753";
    let dir = tempfile::tempdir().unwrap();
    let (results, reports) = (dir.path().join("results"), dir.path().join("reports"));
    copy_run(&results);
    for f in ["samples.jsonl", "scores.json", "manifest.json"] {
        std::fs::create_dir_all(results.join(B)).unwrap();
        std::fs::copy(root().join("results").join(B).join(f), results.join(B).join(f)).unwrap();
    }
    let out = rner().args(["-q", "report", "--html", "--pair", &format!("{RUN}:{B}"), "--results"]).arg(&results).arg("--reports").arg(&reports).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let page = std::fs::read_dir(reports.join("site")).unwrap().map(|e| e.unwrap().path()).find(|p| p.file_name().unwrap().to_string_lossy().starts_with("compare-")).expect("a compare page");
    let html = std::fs::read_to_string(&page).unwrap();
    let c = rner::report::compare::compare(&results.join(RUN), &results.join(B)).unwrap();
    let cell = |d: &rner::score::PairedDiff| d.cell().replace('<', "&lt;");
    assert!(html.contains(&format!("<b>{}</b>", cell(&c.overall))), "overall {} not on the page", cell(&c.overall));
    for (name, d) in &c.datasets {
        assert!(html.contains(&format!("<td class=\"l\">{name}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{}</td>", d.shared, d.f1_a, d.f1_b, cell(&d.diff))), "{name}: {:?}\n{html}", d.diff);
    }
}
