//! `rner report --html`: a static site under `reports/site/` that opens from the file system (no
//! server, no network; CSS and JS are inlined from the crate): an index of runs, a page per run
//! with the breakdowns of `analysis` and a sample browser, and side-by-side pages of two runs.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use minijinja::{context, Environment};
use serde::Serialize;

use super::analysis::{breakdowns, error_kinds, grounded, ErrorKind};
use super::{file_stem, Run, ZERO_SHOT_COLUMNS};
use crate::run::SampleRow;
use crate::score::sentence_f1;
use crate::{Error, Result};

const CSS: &str = include_str!("site/style.css");
const BROWSER_JS: &str = include_str!("site/browser.js");

fn env() -> Environment<'static> {
    let mut e = Environment::new();
    e.add_template("index.html", include_str!("site/index.html")).expect("template");
    e.add_template("run.html", include_str!("site/run.html")).expect("template");
    e.add_template("compare.html", include_str!("site/compare.html")).expect("template");
    e.add_template("samples.html", include_str!("site/samples.html")).expect("template");
    e
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// The sentence with gold spans underlined and predictions shaded by error kind (`kinds` as
/// [`error_kinds`] gives them for this row).
pub fn highlight(row: &SampleRow, kinds: &[(crate::data::Entity, ErrorKind, bool)]) -> String {
    let chars: Vec<char> = row.sentence.chars().collect();
    let n = chars.len();
    let mut gold = vec![false; n];
    let mut kind: Vec<Option<ErrorKind>> = vec![None; n];
    for g in &row.gold {
        if let Some((a, b)) = super::analysis::locate(&row.sentence, g) {
            for x in gold.iter_mut().take(b.min(n)).skip(a) {
                *x = true;
            }
        }
    }
    for (e, k, predicted) in kinds {
        let (e, k) = (e, *k);
        if !predicted {
            continue;
        }
        if let Some((a, b)) = super::analysis::locate(&row.sentence, e) {
            for x in kind.iter_mut().take(b.min(n)).skip(a) {
                *x = Some(x.map_or(k, |old: ErrorKind| old.min(k)));
            }
        }
    }
    let mut out = String::new();
    let mut i = 0;
    while i < n {
        let (g, k) = (gold[i], kind[i]);
        let mut j = i;
        while j < n && gold[j] == g && kind[j] == k {
            j += 1;
        }
        let text: String = chars[i..j].iter().collect();
        let mut classes = Vec::new();
        if g {
            classes.push("g".to_string());
        }
        if let Some(k) = k {
            classes.push(format!("p-{}", k.css()));
        }
        if classes.is_empty() {
            out.push_str(&esc(&text));
        } else {
            out.push_str(&format!("<span class=\"{}\">{}</span>", classes.join(" "), esc(&text)));
        }
        i = j;
    }
    out
}

/// One sample as the browser shows it (pre-rendered HTML plus what the filters read).
#[derive(Serialize)]
struct SampleView {
    dataset: String,
    labels: Vec<String>,
    kinds: Vec<String>,
    failed: bool,
    html: String,
}

fn sample_view(row: &SampleRow) -> SampleView {
    let kinds = error_kinds(row);
    let mut tags = String::new();
    for (e, k, predicted) in &kinds {
        let g = if *predicted {
            let (s, r) = grounded(row, e);
            format!("{}{}", if s { " ✓s" } else { "" }, if r { " ✓r" } else { "" })
        } else {
            String::new()
        };
        tags.push_str(&format!(
            "<span class=\"tag k-{}\" title=\"{}\">{} · {}{}</span>",
            k.css(),
            k.name(),
            esc(&e.text),
            esc(&e.label),
            g
        ));
    }
    let gold: Vec<String> = row.gold.iter().map(|e| format!("{} · {}", esc(&e.text), esc(&e.label))).collect();
    let failed = row.parse_error.is_some_and(|e| e.is_failure());
    let mut html = format!(
        "<div class=\"sample\"><div class=\"muted\">{} · sentence F1 {:.2}{}</div><div class=\"sent\">{}</div><div>gold: {}</div><div>{}</div>",
        esc(&row.id),
        100.0 * row.counts.f1(),
        if failed { " · <b>answer does not parse</b>" } else { "" },
        highlight(row, &kinds),
        if gold.is_empty() { "<i>none</i>".to_string() } else { gold.join("; ") },
        tags
    );
    if let Some(t) = &row.think {
        html.push_str(&format!("<details><summary>rationale</summary><pre>{}</pre></details>", esc(t)));
    }
    html.push_str(&format!("<details><summary>raw output</summary><pre>{}</pre></details></div>", esc(&row.output)));
    let mut labels: BTreeSet<String> = row.gold.iter().map(|e| e.label.clone()).collect();
    labels.extend(row.prediction.iter().map(|e| e.label.clone()));
    let ks: BTreeSet<String> = kinds.iter().map(|(_, k, _)| k.name().to_string()).collect();
    SampleView { dataset: row.dataset.clone(), labels: labels.into_iter().collect(), kinds: ks.into_iter().collect(), failed, html }
}

#[derive(Serialize)]
struct Cell {
    f1: Option<f64>,
    lo: f64,
    hi: f64,
    complete: bool,
    done: usize,
    total: usize,
}

#[derive(Serialize)]
struct RunRow {
    system: String,
    sample: String,
    page: String,
    cells: Vec<Cell>,
    avg: Option<f64>,
}

#[derive(Serialize)]
struct DatasetCompare {
    name: String,
    shared: usize,
    f1_a: f64,
    f1_b: f64,
    /// paired bootstrap of F1 b − a: `+1.20 [-0.5, 2.9], p 0.180`
    diff: String,
    better: usize,
    worse: usize,
    same: usize,
}

#[derive(Serialize)]
struct SentenceCompare {
    id: String,
    f1_a: f64,
    f1_b: f64,
    html_a: String,
    html_b: String,
}

#[derive(Serialize)]
struct CompareLink {
    a: String,
    b: String,
    shared: usize,
    page: String,
}

/// Write the site; `pairs` are (run a, run b) ids shown side by side. Returns the index path.
/// `reports/plots/errors-<run>.{svg,png}`: errors by kind and grounded shares per dataset.
fn error_figure(r: &Run, bds: &[super::analysis::Breakdowns], reports_dir: &Path) -> Result<()> {
    let bars: Vec<super::plot::ErrorBars> = bds
        .iter()
        .map(|b| super::plot::ErrorBars {
            dataset: ZERO_SHOT_COLUMNS.iter().find(|(d, _)| *d == b.dataset).map(|(_, n)| n.to_string()).unwrap_or_else(|| b.dataset.clone()),
            kinds: ErrorKind::ALL.iter().map(|k| (k.name().to_string(), b.errors.get(k.name()).copied().unwrap_or(0))).collect(),
            grounded: (b.predicted_entities > 0).then(|| {
                let n = b.predicted_entities as f64;
                (100.0 * b.grounded_sentence as f64 / n, 100.0 * b.grounded_rationale as f64 / n)
            }),
        })
        .collect();
    super::plot::errors(&format!("Errors of {} ({})", r.system(), r.limit_text()), &bars, &reports_dir.join("plots"), &format!("errors-{}", file_stem(&r.id())))?;
    Ok(())
}

pub fn write(runs: &[Run], pairs: &[(String, String)], reports_dir: &Path) -> Result<PathBuf> {
    let dir = reports_dir.join("site");
    std::fs::create_dir_all(dir.join("data")).map_err(|e| Error::io(&dir, e))?;
    // one copy of the assets beside the pages (no network needed: they are in the crate)
    crate::util::write_atomic(&dir.join("style.css"), CSS.as_bytes())?;
    crate::util::write_atomic(&dir.join("browser.js"), BROWSER_JS.as_bytes())?;
    let env = env();
    let render = |name: &str, ctx: minijinja::Value| -> Result<String> {
        env.get_template(name).and_then(|t| t.render(ctx)).map_err(|e| Error::Report(format!("template {name}: {e:#}")))
    };
    let mut index_rows = Vec::new();
    let mut rows_by_run: BTreeMap<String, Vec<SampleRow>> = BTreeMap::new();
    for r in runs {
        let id = r.id();
        let stem = file_stem(&id);
        let rows = crate::run::read_samples(r.dir())?;
        let mut by_ds: BTreeMap<&str, Vec<&SampleRow>> = BTreeMap::new();
        for row in &rows {
            by_ds.entry(row.dataset.as_str()).or_default().push(row);
        }
        let order: Vec<&str> = ZERO_SHOT_COLUMNS.iter().map(|(d, _)| *d).filter(|d| by_ds.contains_key(d)).chain(by_ds.keys().copied().filter(|d| !ZERO_SHOT_COLUMNS.iter().any(|(z, _)| z == d))).collect();
        let bds: Vec<_> = order.iter().map(|d| breakdowns(d, &by_ds[d], r.scores.seed)).collect();
        error_figure(r, &bds, reports_dir)?;
        let views: Vec<SampleView> = order.iter().flat_map(|d| by_ds[d].iter().map(|row| sample_view(row))).collect();
        let labels: BTreeSet<String> = views.iter().flat_map(|v| v.labels.iter().cloned()).collect();
        let data_js = format!("data/{stem}.js");
        let json = serde_json::to_string(&views).map_err(|e| Error::Report(e.to_string()))?;
        crate::util::write_atomic(&dir.join(&data_js), format!("window.RNER_SAMPLES = {json};\n").as_bytes())?;
        let page = format!("run-{stem}.html");
        let samples_page = format!("samples-{stem}.html");
        let kinds: Vec<&str> = ErrorKind::ALL.iter().map(|k| k.name()).collect();
        let html = render(
            "run.html",
            context! {
                system => r.system(), run_id => id.clone(), sample => r.sample_text(), stem => stem.clone(),
                command => r.scores.command.clone(), breakdowns => bds, samples_page => samples_page.clone(),
            },
        )?;
        let browser = render(
            "samples.html",
            context! {
                system => r.system(), run_page => page.clone(),
                datasets => order, labels => labels, kinds => kinds, data_js => data_js,
            },
        )?;
        crate::util::write_atomic(&dir.join(&samples_page), browser.as_bytes())?;
        crate::util::write_atomic(&dir.join(&page), html.as_bytes())?;
        let cells = r
            .zero_shot()
            .iter()
            .map(|d| match d {
                Some(d) => Cell { f1: Some(d.f1), lo: d.ci95[0], hi: d.ci95[1], complete: d.complete(), done: d.sentences, total: d.expected },
                None => Cell { f1: None, lo: 0.0, hi: 0.0, complete: false, done: 0, total: 0 },
            })
            .collect();
        index_rows.push(RunRow { system: r.system(), sample: r.sample_text(), page, cells, avg: r.scores.average });
        rows_by_run.insert(id, rows);
    }
    let mut links = Vec::new();
    for (a, b) in pairs {
        let (Some(ra), Some(rb)) = (rows_by_run.get(a), rows_by_run.get(b)) else { continue };
        let name = |id: &str| runs.iter().find(|r| r.id() == id).map(|r| r.system()).unwrap_or_else(|| id.to_string());
        let (na, nb) = (name(a), name(b));
        let bmap: BTreeMap<&str, &SampleRow> = rb.iter().map(|r| (r.id.as_str(), r)).collect();
        // per dataset: shared sentences, (id, counts) of a and of b, better, worse, same
        type Paired = Vec<(String, crate::score::Counts)>;
        let mut per: BTreeMap<String, (usize, Paired, Paired, usize, usize, usize)> = BTreeMap::new();
        let (mut better, mut worse) = (Vec::new(), Vec::new());
        for x in ra {
            let Some(y) = bmap.get(x.id.as_str()) else { continue };
            let (fa, fb) = (sentence_f1(&x.prediction, &x.gold), sentence_f1(&y.prediction, &y.gold));
            let e = per.entry(x.dataset.clone()).or_default();
            e.0 += 1;
            e.1.push((x.id.clone(), x.counts));
            e.2.push((x.id.clone(), y.counts));
            let s = SentenceCompare { id: x.id.clone(), f1_a: 100.0 * fa, f1_b: 100.0 * fb, html_a: highlight(x, &error_kinds(x)), html_b: highlight(y, &error_kinds(y)) };
            if fb > fa {
                e.3 += 1;
                better.push(s);
            } else if fb < fa {
                e.4 += 1;
                worse.push(s);
            } else {
                e.5 += 1;
            }
        }
        let shared: usize = per.values().map(|v| v.0).sum();
        const LIMIT: usize = 200;
        better.truncate(LIMIT);
        worse.truncate(LIMIT);
        let seed = runs.iter().find(|r| r.id() == *b).map_or(42, |r| r.scores.seed);
        let paired = |sets: &[(Vec<crate::score::Counts>, Vec<crate::score::Counts>)]| crate::score::paired_bootstrap(sets, crate::score::BOOTSTRAP_SAMPLES, seed).cell();
        // in sentence-id order, as `rner compare` aligns them, so that both draw the same resamples
        let counts = |v: &Paired| {
            let mut v = v.clone();
            v.sort_by(|x, y| x.0.cmp(&y.0));
            v.into_iter().map(|x| x.1).collect::<Vec<_>>()
        };
        let sets: Vec<_> = per.values().map(|v| (counts(&v.1), counts(&v.2))).collect();
        let overall = paired(&sets);
        let datasets: Vec<DatasetCompare> = per
            .into_iter()
            .zip(sets)
            .map(|((name, v), set)| DatasetCompare { name, shared: v.0, f1_a: crate::score::micro_f1(&set.0), f1_b: crate::score::micro_f1(&set.1), diff: paired(&[set]), better: v.3, worse: v.4, same: v.5 })
            .collect();
        let page = format!("compare-{}-vs-{}.html", file_stem(a), file_stem(b));
        let html = render("compare.html", context! { a => na.clone(), b => nb.clone(), shared => shared, datasets => datasets, overall => overall, better => better, worse => worse, limit => LIMIT })?;
        crate::util::write_atomic(&dir.join(&page), html.as_bytes())?;
        links.push(CompareLink { a: na, b: nb, shared, page });
    }
    let plot = std::fs::read_to_string(reports_dir.join("plots/zero-shot.svg")).ok();
    let columns: Vec<&str> = ZERO_SHOT_COLUMNS.iter().map(|(_, n)| *n).collect();
    let html = render("index.html", context! { runs => index_rows, columns => columns, comparisons => links, plot => plot })?;
    let index = dir.join("index.html");
    crate::util::write_atomic(&index, html.as_bytes())?;
    Ok(index)
}
