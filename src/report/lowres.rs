//! `reports/low-resource.{md,csv}` and `plots/low-resource.{svg,png}`: F1 on a dataset's test
//! split after supervised fine-tuning on a seeded share of its train split, per starting model
//! (the base student, our ReasoningNER model), mean ± sd over seeds.
//!
//! Found from results/ alone: a training run whose `run.json` has `train_set` and `fraction` is a
//! cell; its model's runs on that dataset are its scores; runs of the model it started from on the
//! same dataset and sample are the 0% point.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::training::TrainRun;
use super::Run;
use crate::score::PairedDiff;
use crate::Result;

/// The paper's low-resource CoNLL-2003 F1 (ReasoningNER 8B; `paper.md` §8.2): (share, F1).
pub const PAPER_CONLL: [(f64, f64); 3] = [(0.01, 87.1), (0.05, 91.0), (0.10, 92.9)];

/// One scored cell: a seed's F1 at a share.
#[derive(Debug, Clone)]
pub struct Point {
    pub fraction: f64,
    pub seed: Option<u64>,
    pub f1: f64,
    pub ci95: [f64; 2],
    pub run_id: String,
    pub command: String,
    /// test sentences scored, of `expected`
    pub sentences: usize,
    pub expected: usize,
    /// the tensor type of the fine-tune's export (`f16`, `q8_0`, `source`; None for a 0% point,
    /// an untouched start)
    pub export: Option<String>,
    /// of the weights the fine-tune moved, the share its export writes as it writes the untouched
    /// start (the training log's `export_rounded`; None where not measured)
    pub rounded_back: Option<f64>,
}

/// (dataset, starting model, eval limit, eval seed): a cell's key.
pub type CellKey = (String, String, Option<usize>, u64);

/// Cell key → points.
pub type Cells = BTreeMap<CellKey, Vec<Point>>;

/// The name a starting model goes by in the tables: its baseline name, a checkpoint folder's
/// name, or a GGUF file's stem.
pub(super) fn init_name(model: &str) -> String {
    let last = Path::new(model).file_name().and_then(|s| s.to_str()).unwrap_or(model);
    last.strip_suffix(".gguf").unwrap_or(last).to_string()
}

/// What a starting model's name carries in the tables when its cells were fine-tuned on the
/// rationale and answer (`--target cot`) rather than the answer alone.
pub const COT_TARGET: &str = " (CoT target)";

/// The starting model a table row names (its name without [`COT_TARGET`] or a
/// [`first_token_suffix`]).
fn start_name(label: &str) -> &str {
    label.split_once(" (").map_or(label, |(start, _)| start)
}

/// What a starting model's name carries when its cells weighed the first target token `w` times
/// in the loss (`rner sft --first-token-weight`).
fn first_token_suffix(w: f64) -> String {
    format!(" (first token ×{w})")
}

/// Whether a row is a variant of its start (another target or loss), shown as a start of its own.
fn variant(label: &str) -> bool {
    start_name(label) != label
}

/// Why a scored low-resource run is in no cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Aside {
    /// its dataset is not complete yet (rerunning the step resumes it)
    Partial,
    /// it was fine-tuned from another file of its starting model than the one that model's
    /// training log now records (the start was trained again since)
    OtherStart,
    /// its export rounds the fine-tune back onto its start ([`super::training::rounded_onto_start`]:
    /// measured, or in older logs exported as Q8_0 from a start that is itself a Q8_0 export);
    /// training it again (F16 exports are the default) replaces it
    Rounded,
}

impl Aside {
    /// The CSV's status for a run set aside for this reason.
    fn status(self) -> &'static str {
        match self {
            Aside::Partial => "partial",
            Aside::OtherStart => "other_start",
            Aside::Rounded => "rounded_export",
        }
    }
}

/// The cells, from runs whose dataset is complete and that started from the starting model's
/// logged export; and the runs set aside (with the cell they would join, their F1 so far and
/// why), which no cell counts.
pub fn cells(runs: &[Run], train: &[TrainRun]) -> (Cells, Vec<(CellKey, Point, Aside)>) {
    let mut out: Cells = BTreeMap::new();
    let mut aside = Vec::new();
    // current logs only: the runs of an earlier export of a cell's name are not the cell's
    let train: Vec<&TrainRun> = train.iter().filter(|t| t.earlier.is_none()).collect();
    let start_of = |init: &str| train.iter().copied().find(|s| s.name == init);
    let lr: Vec<&TrainRun> = train.iter().copied().filter(|t| t.run.get("train_set").and_then(|v| v.as_str()).is_some()).collect();
    for t in &lr {
        let set = t.run["train_set"].as_str().unwrap_or_default().to_string();
        let fraction = t.run.get("fraction").and_then(|v| v.as_f64()).unwrap_or(1.0);
        let seed = t.run.pointer("/config/seed").and_then(|v| v.as_u64());
        let init = init_name(&t.init);
        let start = start_of(&init);
        let from_start = start.map_or(true, |s| t.from_export_of(s));
        let rounded = super::training::rounded_onto_start(&t.run, start.map(|s| &s.run));
        let mut label = match t.run.get("target").and_then(|v| v.as_str()) {
            Some("cot") => format!("{init}{COT_TARGET}"),
            _ => init.clone(),
        };
        if let Some(w) = t.run.pointer("/config/first_token_weight").and_then(|v| v.as_f64()).filter(|&w| w != 1.0) {
            label.push_str(&first_token_suffix(w));
        }
        let command = t.run.get("command").and_then(|v| v.as_str()).unwrap_or_default().to_string();
        for r in runs.iter().filter(|r| r.scores.model == t.name && r.scores.split == "test" && t.exported_as(r)) {
            if let Some(d) = r.scores.datasets.get(&set) {
                let key = (set.clone(), label.clone(), r.scores.limit, r.scores.seed);
                let point = Point {
                    fraction,
                    seed,
                    f1: d.f1,
                    ci95: d.ci95,
                    run_id: r.id(),
                    command: command.clone(),
                    sentences: d.sentences,
                    expected: d.expected,
                    export: super::training::export_type(&t.run),
                    rounded_back: super::training::export_rounded(&t.run).map(|r| r.share()),
                };
                match (from_start, rounded, d.complete()) {
                    (false, _, _) => aside.push((key, point, Aside::OtherStart)),
                    (true, true, _) => aside.push((key, point, Aside::Rounded)),
                    (true, false, false) => aside.push((key, point, Aside::Partial)),
                    (true, false, true) => out.entry(key).or_default().push(point),
                }
            }
        }
    }
    // the 0% point: the starting model itself (its logged export, where it is a trained one) on
    // the same dataset and sample
    let keys: Vec<_> = out.keys().cloned().collect();
    for (set, label, limit, seed) in keys {
        let init = start_name(&label);
        let start = start_of(init);
        if let Some(r) = runs.iter().find(|r| {
            r.scores.model == init
                && start.map_or(true, |s| s.exported_as(r))
                && r.scores.limit == limit
                && r.scores.seed == seed
                && r.scores.split == "test"
                && r.scores.datasets.get(&set).is_some_and(|d| d.complete())
        }) {
            let d = &r.scores.datasets[&set];
            let p = Point { fraction: 0.0, seed: None, f1: d.f1, ci95: d.ci95, run_id: r.id(), command: String::new(), sentences: d.sentences, expected: d.expected, export: None, rounded_back: None };
            out.get_mut(&(set, label, limit, seed)).expect("key").push(p);
        }
    }
    for v in out.values_mut() {
        v.sort_by(|a, b| a.fraction.total_cmp(&b.fraction).then(a.seed.cmp(&b.seed)));
    }
    (out, aside)
}

/// A starting model's name and its points.
type Start<'a> = (&'a str, &'a [Point]);

/// The pairs a dataset's Δ rows compare: each of our starting models (a model trained here, so a
/// training run's name; once per fine-tuning target or loss) against the one that is not (none
/// unless exactly one is not), then each variant row (CoT target, weighted first token) against
/// the same start's plain answer-only row.
fn ours_and_base<'a>(inits: &'a [(String, &'a Vec<Point>)], train: &[TrainRun]) -> Vec<(Start<'a>, Start<'a>)> {
    let trained = |n: &str| train.iter().any(|t| t.name == start_name(n));
    let starts = || inits.iter().map(|(n, p)| (n.as_str(), p.as_slice()));
    let base: Vec<Start> = starts().filter(|s| !trained(s.0) && !variant(s.0)).collect();
    let mut pairs: Vec<(Start, Start)> = match base[..] {
        [base] => starts().filter(|s| trained(s.0)).map(|ours| (ours, base)).collect(),
        _ => Vec::new(),
    };
    for v in starts().filter(|s| variant(s.0)) {
        if let Some(plain) = starts().find(|s| s.0 == start_name(v.0)) {
            pairs.push((v, plain));
        }
    }
    pairs
}

/// What a run's answers on one dataset look like (from its `samples.jsonl`): the form a fine-tune
/// taught, which F1 alone does not show (a start that still reasons first, or answers empty).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Form {
    /// share of answers whose text opens with a `<think>` block
    pub think: f64,
    /// share parsed without error and with no entity
    pub empty: f64,
    /// share that fails to parse
    pub unparsed: f64,
    /// generated tokens per answer
    pub gen_tokens: f64,
    /// predicted entities over gold entities, summed over the sentences
    pub pred_per_gold: f64,
}

impl Form {
    pub fn of(rows: &[&crate::run::SampleRow]) -> Form {
        let n = rows.len().max(1) as f64;
        let share = |f: &dyn Fn(&crate::run::SampleRow) -> bool| rows.iter().filter(|r| f(r)).count() as f64 / n;
        let (pred, gold) = rows.iter().fold((0, 0), |(p, g), r| (p + r.counts.predicted, g + r.counts.gold));
        Form {
            think: share(&|r| r.output.trim_start().starts_with("<think>")),
            empty: share(&|r| r.parse_error.is_none() && r.prediction.is_empty()),
            unparsed: share(&|r| r.parse_error.is_some()),
            gen_tokens: rows.iter().map(|r| r.gen_tokens as f64).sum::<f64>() / n,
            pred_per_gold: if gold == 0 { f64::NAN } else { pred as f64 / gold as f64 },
        }
    }

    /// The mean of several (a cell's seeds).
    fn mean(forms: &[Form]) -> Form {
        let m = |f: fn(&Form) -> f64| mean_sd(&forms.iter().map(f).collect::<Vec<_>>()).0;
        Form { think: m(|f| f.think), empty: m(|f| f.empty), unparsed: m(|f| f.unparsed), gen_tokens: m(|f| f.gen_tokens), pred_per_gold: m(|f| f.pred_per_gold) }
    }
}

/// Each run's answer form per dataset, read once per run (a 0% run scores several datasets).
fn forms(runs: &[Run], ids: impl Iterator<Item = String>) -> Result<BTreeMap<(String, String), Form>> {
    let mut out = BTreeMap::new();
    let mut ids: Vec<String> = ids.collect();
    ids.sort();
    ids.dedup();
    for id in ids {
        let Some(r) = runs.iter().find(|r| r.id() == id) else { continue };
        let rows = crate::run::read_samples(r.dir())?;
        let mut by_set: BTreeMap<&str, Vec<&crate::run::SampleRow>> = BTreeMap::new();
        for row in &rows {
            by_set.entry(row.dataset.as_str()).or_default().push(row);
        }
        for (set, rows) in by_set {
            out.insert((id.clone(), set.to_string()), Form::of(&rows));
        }
    }
    Ok(out)
}

/// Mean and sample standard deviation (0 for one value).
pub fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    if v.is_empty() {
        return (f64::NAN, f64::NAN);
    }
    let m = v.iter().sum::<f64>() / n;
    let sd = if v.len() > 1 { (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / (n - 1.0)).sqrt() } else { 0.0 };
    (m, sd)
}

/// (fraction, mean, sd, values) per share of one cell list.
pub fn by_fraction(points: &[Point]) -> Vec<(f64, f64, f64, Vec<f64>)> {
    let mut m: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
    for p in points {
        m.entry(p.fraction.to_bits()).or_default().push(p.f1);
    }
    let mut out: Vec<(f64, f64, f64, Vec<f64>)> = m.into_iter().map(|(k, v)| {
        let (mean, sd) = mean_sd(&v);
        (f64::from_bits(k), mean, sd, v)
    }).collect();
    out.sort_by(|a, b| a.0.total_cmp(&b.0));
    out
}

fn pct(f: f64) -> String {
    let p = f * 100.0;
    if (p - p.round()).abs() < 1e-9 { format!("{p:.0}%") } else { format!("{p}%") }
}

/// Write the table and the plot; `None` when no low-resource run is scored yet.
pub fn write(runs: &[Run], train: &[TrainRun], reports_dir: &Path) -> Result<Option<PathBuf>> {
    let (cells, aside) = cells(runs, train);
    if cells.is_empty() && aside.is_empty() {
        return Ok(None);
    }
    let mut md = String::from(
        "# Low-resource fine-tuning\n\nEach cell: SFT (answer only, `--target direct`) of the starting model on a seeded share of the dataset's train split, \
         exported and scored on its test split (a seeded sample of it where noted); **mean ± sd over the seeds** (n = seeds), each seed's own 95% bootstrap CI in the CSV. \
         0% = the starting model without fine-tuning. Starting models: the base student and our ReasoningNER model (the GRPO export). \
         A row `NAME (CoT target)`: cells of that start fine-tuned on rationale + answer (`--target cot`) instead, on the chosen train sentences that have a kept rationale from the teacher (fewer than the share; each run's `run.json` counts them). \
         *Δ* row: our model minus the base (and a CoT-target row minus the same start's answer-only row), per training seed on the same drawn train sentences and the same test sentences (paired bootstrap over the test sentences, the same draws for both); \
         a cell with several seeds gives the mean ± sd of the per-seed differences and in how many seeds the difference has p < 0.05 in favour of our model (up) or of the base (down) (each seed's difference, CI and p in the CSV). \
         Paper row: ReasoningNER 8B on CoNLL-2003 (`paper.md` §8.2), **paper-reported**, not a run of ours.\n\n",
    );
    // every run, complete or not: a partial one's F1 is over the sentences it has (sentences < expected)
    let mut csv = String::from("dataset,init,eval_limit,eval_seed,fraction,seed,f1,ci_low,ci_high,sentences,expected,export,export_rounded_back,status,run_id,command,vs_run_id,delta_vs,delta_ci_low,delta_ci_high,delta_p,think_share,empty_share,unparsed_share,gen_tokens,pred_per_gold\n");
    let form = forms(runs, cells.values().flatten().chain(aside.iter().map(|a| &a.1)).map(|p| p.run_id.clone()))?;
    let mut by_set: BTreeMap<(String, Option<usize>, u64), Vec<(String, &Vec<Point>)>> = BTreeMap::new();
    for ((set, init, limit, seed), pts) in &cells {
        by_set.entry((set.clone(), *limit, *seed)).or_default().push((init.clone(), pts));
    }
    // our model against the other start, the same share, training seed and test sentences
    // keyed by (dataset, run): a 0% run scores several datasets
    // keyed by (dataset, run, the row it is compared with)
    let mut paired: BTreeMap<(String, String, String), (String, PairedDiff)> = BTreeMap::new();
    for ((set, _, _), inits) in &by_set {
        for ((_, ours), (base_name, base)) in ours_and_base(inits, train) {
            for p in ours {
                // (a start's 0% run stands on each of its rows: never compared with itself)
                let Some(q) = base.iter().find(|q| q.fraction == p.fraction && q.seed == p.seed && q.run_id != p.run_id) else { continue };
                let run = |id: &str| runs.iter().find(|r| r.id() == id);
                if let (Some(a), Some(b)) = (run(&q.run_id), run(&p.run_id)) {
                    if let Some(d) = super::compare::dataset_diff(a, b, set)? {
                        paired.insert((set.clone(), p.run_id.clone(), base_name.to_string()), (q.run_id.clone(), d));
                    }
                }
            }
        }
    }
    // status: in a cell, or why not
    let rows = cells.iter().flat_map(|(k, pts)| pts.iter().map(move |p| (k, p, "cell"))).chain(aside.iter().map(|(k, p, why)| (k, p, why.status())));
    for ((set, init, limit, seed), p, status) in rows {
        csv.push_str(&format!(
            "{set},{init},{},{seed},{},{},{},{},{},{},{},{},{},{status},{},\"{}\",",
            limit.map(|n| n.to_string()).unwrap_or("full".into()),
            p.fraction,
            p.seed.map(|s| s.to_string()).unwrap_or_default(),
            p.f1,
            p.ci95[0],
            p.ci95[1],
            p.sentences,
            p.expected,
            p.export.as_deref().unwrap_or_default(),
            p.rounded_back.map(|r| format!("{r:.4}")).unwrap_or_default(),
            p.run_id,
            p.command.replace('"', "'")
        ));
        // the CSV's difference is against the untrained start (a CoT-target row's against its
        // answer-only twin is in the table)
        let vs_base = paired.iter().find(|(k, _)| k.0 == *set && k.1 == p.run_id && k.2 != start_name(init)).map(|(_, v)| v);
        match vs_base {
            Some((vs, d)) => csv.push_str(&format!("{vs},{},{},{},{:.4},", d.delta, d.ci95[0], d.ci95[1], d.p)),
            None => csv.push_str(",,,,,"),
        }
        match form.get(&(p.run_id.clone(), set.clone())) {
            Some(f) => csv.push_str(&format!("{:.4},{:.4},{:.4},{:.1},{:.4}\n", f.think, f.empty, f.unparsed, f.gen_tokens, f.pred_per_gold)),
            None => csv.push_str(",,,,\n"),
        }
    }
    let mut panels = Vec::new();
    let mut mixed_exports = false;
    for ((set, limit, seed), inits) in &by_set {
        let mut fracs: Vec<f64> = inits.iter().flat_map(|(_, p)| p.iter().map(|x| x.fraction)).collect();
        fracs.sort_by(f64::total_cmp);
        fracs.dedup();
        let paper = set == "conll2003";
        if paper {
            for (f, _) in PAPER_CONLL {
                if !fracs.iter().any(|x| (x - f).abs() < 1e-12) {
                    fracs.push(f);
                }
            }
            fracs.sort_by(f64::total_cmp);
        }
        let sample = match limit {
            Some(n) => format!("seeded sample of {n} test sentences (seed {seed})"),
            None => "full test split".to_string(),
        };
        md.push_str(&format!("## {set} — {sample}\n\n| starting model | {} |\n|---|{}\n", fracs.iter().map(|f| pct(*f)).collect::<Vec<_>>().join(" | "), "---|".repeat(fracs.len())));
        let pos = |f: f64| fracs.iter().position(|x| (x - f).abs() < 1e-12).unwrap_or(0) as f64;
        let mut bands = Vec::new();
        for (init, pts) in inits {
            let agg = by_fraction(pts);
            let cells: Vec<String> = fracs
                .iter()
                .map(|f| match agg.iter().find(|a| (a.0 - f).abs() < 1e-12) {
                    Some((_, m, sd, v)) if v.len() > 1 => format!("{m:.2} ± {sd:.2} (n={})", v.len()),
                    Some((_, m, _, _)) => format!("{m:.2} (n=1)"),
                    None => "—".into(),
                })
                .collect();
            md.push_str(&format!("| {init} | {} |\n", cells.join(" | ")));
            bands.push(super::plot::Band {
                name: init.clone(),
                points: agg.iter().map(|(f, m, sd, _)| (pos(*f), *m, (m - sd).max(0.0), (m + sd).min(100.0))).collect(),
                dots: pts.iter().map(|p| (pos(p.fraction), p.f1)).collect(),
                paper: false,
            });
        }
        for ((ours_name, ours), (base_name, base)) in ours_and_base(inits, train) {
            let cells: Vec<String> = fracs
                .iter()
                .map(|f| {
                    let pairs: Vec<(&Point, &(String, PairedDiff))> = ours.iter().filter(|p| p.fraction == *f).filter_map(|p| paired.get(&(set.clone(), p.run_id.clone(), base_name.to_string())).map(|x| (p, x))).collect();
                    let d: Vec<&PairedDiff> = pairs.iter().map(|(_, x)| &x.1).collect();
                    // fine-tunes exported as different types (F16 against an older Q8_0 cell)
                    let mixed = pairs.iter().any(|(p, (vs, _))| base.iter().find(|q| &q.run_id == vs).is_some_and(|q| q.export != p.export));
                    let mark = if mixed { " †" } else { "" };
                    match d.len() {
                        0 => "—".into(),
                        1 => format!("{}{mark}", d[0].cell()),
                        n => {
                            let (m, sd) = mean_sd(&d.iter().map(|x| x.delta).collect::<Vec<_>>());
                            let sig = |up: bool| d.iter().filter(|x| x.p < 0.05 && (x.delta > 0.0) == up).count();
                            format!("{m:+.2} ± {sd:.2} (n={n}; p < 0.05: {} up, {} down){mark}", sig(true), sig(false))
                        }
                    }
                })
                .collect();
            mixed_exports |= cells.iter().any(|c| c.ends_with(" †"));
            md.push_str(&format!("| Δ {ours_name} − {base_name} | {} |\n", cells.join(" | ")));
        }
        if paper {
            let cells: Vec<String> = fracs.iter().map(|f| PAPER_CONLL.iter().find(|p| (p.0 - f).abs() < 1e-12).map(|p| format!("{:.1}", p.1)).unwrap_or("—".into())).collect();
            md.push_str(&format!("| ReasoningNER 8B (paper-reported) | {} |\n", cells.join(" | ")));
            bands.push(super::plot::Band { name: "ReasoningNER 8B (paper)".into(), points: PAPER_CONLL.iter().map(|(f, v)| (pos(*f), *v, *v, *v)).collect(), dots: Vec::new(), paper: true });
        }
        md.push_str("\nWhat the answers look like (mean over the seeds; each seed in the CSV): answers that open with a `<think>` block, that parse to no entity, that fail to parse; generated tokens per answer; predicted over gold entities.\n\n| starting model | share | opens with `<think>` | empty | unparsed | tokens | predicted ÷ gold |\n|---|---|---|---|---|---|---|\n");
        for (init, pts) in inits {
            for f in &fracs {
                let here: Vec<Form> = pts.iter().filter(|p| p.fraction == *f).filter_map(|p| form.get(&(p.run_id.clone(), set.clone())).copied()).collect();
                if here.is_empty() {
                    continue;
                }
                let m = Form::mean(&here);
                let pc = |x: f64| format!("{:.0}%", x * 100.0);
                md.push_str(&format!("| {init} | {} | {} | {} | {} | {:.0} | {:.2} |\n", pct(*f), pc(m.think), pc(m.empty), pc(m.unparsed), m.gen_tokens, m.pred_per_gold));
            }
        }
        let mut runs_used: Vec<String> = Vec::new();
        for id in inits.iter().flat_map(|(_, p)| p.iter().map(|x| format!("`{}`", x.run_id))) {
            // a start's 0% run stands on each of its rows
            if !runs_used.contains(&id) {
                runs_used.push(id);
            }
        }
        md.push_str(&format!("\nRuns: {}.\n\n", runs_used.join(", ")));
        panels.push((format!("{set} ({})", limit.map(|n| format!("{n} test sentences")).unwrap_or("full test".into())), fracs.iter().map(|f| pct(*f)).collect(), bands));
    }
    if mixed_exports {
        md.push_str(
            "† The difference pairs fine-tunes exported as different types (the CSV's `export` column; here, cells exported as Q8_0 before exports were F16). \
             The same training exported both ways does not score the same (`reports/export-twins/`); `rner reproduce` trains such cells again as F16 exports.\n\n",
        );
    }
    let named = |why: Aside| -> Vec<String> { aside.iter().filter(|a| a.2 == why).map(|(_, p, _)| format!("`{}` ({}/{} sentences)", p.run_id, p.sentences, p.expected)).collect() };
    let partial = named(Aside::Partial);
    if !partial.is_empty() {
        md.push_str(&format!("Partial, in no cell until complete (rerunning the step resumes it; the CSV lists them with their F1 so far): {}.\n\n", partial.join(", ")));
    }
    let other = named(Aside::OtherStart);
    if !other.is_empty() {
        md.push_str(&format!(
            "Fine-tuned from an earlier file of their starting model than the one its training log now records (it was trained again since), in no cell (the CSV lists them): {}.\n\n",
            other.join(", ")
        ));
    }
    let rounded = named(Aside::Rounded);
    if !rounded.is_empty() {
        md.push_str(&format!(
            "Exported onto their start's grid, in no cell: the export writes most of the weights the fine-tune moved exactly as it writes the untouched start (as measured in the training log's `export_rounded`; in logs from before that measurement, a Q8_0 export of a start that is itself a Q8_0 export), so these runs score the start rather than the fine-tune (exports are F16 now; `rner reproduce` trains them again; the CSV lists them): {}.\n\n",
            rounded.join(", ")
        ));
    }
    if !panels.is_empty() {
        md.push_str("Plot: `plots/low-resource.png` — mean F1 per share (line), ± 1 sd over seeds (band), each seed (×).\n");
        super::plot::bands(&panels, "share of the train split", "F1 (%)", &reports_dir.join("plots"), "low-resource")?;
    }
    let p = reports_dir.join("low-resource.md");
    crate::util::write_atomic(&p, md.as_bytes())?;
    crate::util::write_atomic(&reports_dir.join("low-resource.csv"), csv.as_bytes())?;
    Ok(Some(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The committed runs and training logs, every export logged as F16: the tests of the other
    /// rules see the cells exported as Q8_0 from our Q8_0 start (set aside as [`Aside::Rounded`]
    /// until they train again) as cells.
    fn committed() -> (Vec<Run>, Vec<TrainRun>) {
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let mut train = super::super::training::load(&results).unwrap();
        for t in train.iter_mut().filter(|t| t.export_sha256().is_some()) {
            t.run["export_type"] = serde_json::json!("f16");
        }
        (super::super::load_runs(&results).unwrap(), train)
    }

    #[test]
    fn mean_and_sample_sd() {
        let (m, sd) = mean_sd(&[1.0, 2.0, 3.0]);
        assert!((m - 2.0).abs() < 1e-12 && (sd - 1.0).abs() < 1e-12);
        assert_eq!(mean_sd(&[5.0]), (5.0, 0.0));
        assert!(mean_sd(&[]).0.is_nan());
    }

    #[test]
    fn a_partial_run_is_named_and_counted_in_no_cell() {
        // real runs: the cpu preset's low-resource steps
        let (runs, train) = committed();
        let (cells, partial) = cells(&runs, &train);
        let ai = &cells[&("crossner_ai".to_string(), "smollm2-135m-instruct".to_string(), Some(200), 42)];
        assert_eq!(ai.iter().filter(|p| p.fraction == 0.1).count(), 3, "three complete seeds");
        let ids: Vec<String> = cells.values().flatten().map(|p| p.run_id.clone()).collect();
        for (_, p, why) in &partial {
            assert_eq!(*why, Aside::Partial, "{}: every committed cell started from its start's logged export", p.run_id);
            assert!(p.sentences < p.expected);
            assert!(!ids.contains(&p.run_id), "{} is partial and in a cell", p.run_id);
        }
        assert!(cells.values().flatten().all(|p| p.sentences == p.expected));
        // one seed's run cut short leaves its cell and is named
        let cut = ai.iter().find(|p| p.fraction == 0.1).unwrap().run_id.clone();
        let mut fewer = runs.clone();
        let r = fewer.iter_mut().find(|r| r.id() == cut).unwrap();
        r.scores.datasets.get_mut("crossner_ai").unwrap().sentences = 66;
        let (again, named) = super::cells(&fewer, &train);
        let ai = &again[&("crossner_ai".to_string(), "smollm2-135m-instruct".to_string(), Some(200), 42)];
        assert_eq!(ai.iter().filter(|p| p.fraction == 0.1).count(), 2);
        let (key, p, _) = named.iter().find(|(_, p, why)| p.run_id == cut && *why == Aside::Partial).expect("the cut run is named");
        assert_eq!((p.sentences, p.expected, p.fraction), (66, 200, 0.1));
        assert_eq!(key, &("crossner_ai".to_string(), "smollm2-135m-instruct".to_string(), Some(200), 42));
        assert_eq!(named.len(), partial.len() + 1);
    }

    #[test]
    fn the_delta_row_pairs_each_dataset_s_own_runs() {
        // real runs: the cpu preset's 0% and 10% CrossNER cells; one 0% run of each start scores
        // all five domains, so each domain's difference must come from its own sentences
        let (runs, train) = committed();
        let d = tempfile::tempdir().unwrap();
        let md = std::fs::read_to_string(write(&runs, &train, d.path()).unwrap().unwrap()).unwrap();
        let mut zeros = Vec::new();
        // our 10% seeds per domain (3 each once the preset's cells are done; fewer while a run
        // trains them again)
        let (cells, _) = cells(&runs, &train);
        let seeds = |set: &str, start: &str| -> std::collections::BTreeSet<Option<u64>> {
            cells.get(&(set.to_string(), start.to_string(), Some(200), 42)).map_or_else(Default::default, |v| v.iter().filter(|p| p.fraction == 0.1).map(|p| p.seed).collect())
        };
        let tens = |set: &str| seeds(set, "cpu-grpo-paper").len();
        assert_eq!(tens("crossner_ai"), 3);
        for set in ["crossner_ai", "crossner_literature", "crossner_music", "crossner_politics", "crossner_science"] {
            let block = md.split("## ").find(|b| b.starts_with(&format!("{set} — seeded sample of 200"))).unwrap();
            let row = |start: &str| block.lines().find(|l| l.starts_with(&format!("| {start} |"))).unwrap_or_else(|| panic!("{set}: no row {start}")).split(" | ").map(str::to_string).collect::<Vec<_>>();
            let f1 = |cell: &str| cell.split(' ').next().unwrap().parse::<f64>().unwrap();
            let (ours, base, delta) = (row("cpu-grpo-paper"), row("smollm2-135m-instruct"), row("Δ cpu-grpo-paper − smollm2-135m-instruct"));
            let zero = format!("{:+.2} [", crate::score::round2(f1(&ours[1]) - f1(&base[1])));
            assert!(delta[1].starts_with(&zero), "{set}: {} vs {zero}", delta[1]);
            zeros.push(delta[1].clone());
            // pairs: the seeds both starts have (the base's fewer while one of its cells trains again)
            let pairs = seeds(set, "cpu-grpo-paper").intersection(&seeds(set, "smollm2-135m-instruct")).count();
            if pairs > 1 {
                assert!(delta[2].contains(&format!("(n={pairs}; p < 0.05: ")), "{set}: {}", delta[2]);
            }
        }
        zeros.dedup();
        assert_eq!(zeros.len(), 5, "{zeros:?}");
        // every seed of our model's 10% cells is paired with the base's seed in the CSV
        let csv = std::fs::read_to_string(d.path().join("low-resource.csv")).unwrap();
        let ten: Vec<&str> = csv.lines().filter(|l| l.starts_with("crossner_") && l.contains(",cpu-grpo-paper,200,42,0.1,")).collect();
        assert_eq!(ten.len(), ["crossner_ai", "crossner_literature", "crossner_music", "crossner_politics", "crossner_science"].map(tens).iter().sum::<usize>());
        for l in ten {
            let (set, seed) = (l.split(',').next().unwrap(), l.split(',').nth(5).unwrap());
            if seeds(set, "smollm2-135m-instruct").contains(&seed.parse().ok()) {
                assert!(l.contains(&format!("-p10-s{seed}-base-direct-free-test-n200-s42-")), "{l}");
            }
        }
        // every export one type here: no mark; one base cell exported as Q8_0 marks its share's
        // difference (and only that one) and the note says why
        assert!(!md.contains(" †"), "{md}");
        let mut train = train;
        train.iter_mut().find(|t| t.name == "cpu-lr-crossner_ai-p10-s2-base" && t.earlier.is_none()).unwrap().run["export_type"] = serde_json::json!("q8_0");
        let md = std::fs::read_to_string(write(&runs, &train, d.path()).unwrap().unwrap()).unwrap();
        let block = md.split("## ").find(|b| b.starts_with("crossner_ai — seeded sample of 200")).unwrap();
        let delta: Vec<&str> = block.lines().find(|l| l.starts_with("| Δ cpu-grpo-paper − smollm2-135m-instruct |")).unwrap().split(" | ").collect();
        assert!(delta[2].ends_with(" †") && !delta[3].contains('†'), "{delta:?}");
        // (the CoT-target row's 10% difference with the base pairs the same base cell)
        assert_eq!(md.matches(" †").count(), block.matches(" †").count(), "only in CrossNER-AI");
        for l in block.lines().filter(|l| l.contains(" †")) {
            assert!(l.starts_with("| Δ ") && l.split(" | ").enumerate().all(|(i, c)| i == 2 || !c.contains('†')), "{l}");
        }
        assert!(md.contains("† The difference pairs fine-tunes exported as different types"), "{md}");
    }

    #[test]
    fn cells_from_an_earlier_file_of_a_retrained_start_are_set_aside() {
        // real runs; then the ReasoningNER start as if trained again (a new log: later date, other bytes)
        let (runs, mut train) = committed();
        let ours = |c: &Cells| c.keys().filter(|k| start_name(&k.1) == "cpu-grpo-paper").count();
        let (before, aside) = cells(&runs, &train);
        assert!(ours(&before) >= 5 && aside.iter().all(|a| a.2 == Aside::Partial), "as committed, every cell counts");
        let start = train.iter_mut().find(|t| t.name == "cpu-grpo-paper" && t.earlier.is_none()).unwrap();
        // a log of other bytes: no line of logs of the same file before it (`training::read_log`)
        start.run.as_object_mut().unwrap().remove("exported_since");
        start.run["date"] = serde_json::json!("2030-01-01T00:00:00Z");
        start.run["export_sha256"] = serde_json::json!("0".repeat(64));
        let (after, aside) = cells(&runs, &train);
        assert_eq!(ours(&after), 0, "neither the old cells nor the old export's 0% runs stand for the new file");
        let set_aside = aside.iter().filter(|a| a.2 == Aside::OtherStart).count();
        assert_eq!(set_aside, before.iter().filter(|(k, _)| start_name(&k.1) == "cpu-grpo-paper").map(|(_, v)| v.iter().filter(|p| p.fraction > 0.0).count()).sum::<usize>());
        // a cell that records the new file's sha counts again (its start's 0% run is not here)
        let cell = train.iter_mut().find(|t| t.name == "cpu-lr-crossner_ai-p10-s1-reasoningner").unwrap();
        cell.run["model_sha256"] = serde_json::json!("0".repeat(64));
        let (again, _) = cells(&runs, &train);
        let ai = &again[&("crossner_ai".to_string(), "cpu-grpo-paper".to_string(), Some(200), 42)];
        assert_eq!(ai.iter().map(|p| (p.fraction, p.seed)).collect::<Vec<_>>(), vec![(0.1, Some(1))]);
        // and one that records another file's sha does not, whatever its date
        train.iter_mut().find(|t| t.name == "cpu-lr-crossner_ai-p10-s1-reasoningner").unwrap().run["model_sha256"] = serde_json::json!("1".repeat(64));
        assert_eq!(ours(&cells(&runs, &train).0), 0);
    }

    #[test]
    fn q8_0_exports_of_a_q8_0_start_are_set_aside() {
        // real runs: a current ReasoningNER cell (F16) counts; logged as a Q8_0 export (by its
        // type, or by an older log's command) it is set aside; the base's Q8_0 cells, from a
        // start not trained here, count whatever their export
        let results = Path::new(env!("CARGO_MANIFEST_DIR")).join("results");
        let runs = super::super::load_runs(&results).unwrap();
        let mut train = super::super::training::load(&results).unwrap();
        let key = ("crossner_ai".to_string(), "cpu-grpo-paper".to_string(), Some(200), 42);
        let seeds = |c: &Cells| c.get(&key).map_or(0, |v| v.iter().filter(|p| p.fraction == 0.1).count());
        let base = ("crossner_ai".to_string(), "smollm2-135m-instruct".to_string(), Some(200), 42);
        let (before, _) = cells(&runs, &train);
        assert_eq!(seeds(&before), 3);
        assert!(before[&base].iter().any(|p| p.fraction == 0.1), "the base's Q8_0 cells count");
        log(&mut train)["export_type"] = serde_json::json!("q8_0");
        let (after, aside) = cells(&runs, &train);
        assert_eq!(seeds(&after), 2);
        let (_, p, why) = aside.iter().find(|a| a.1.run_id.contains("-p10-s1-reasoningner-")).expect("set aside");
        assert_eq!((*why, p.fraction, p.seed), (Aside::Rounded, 0.1, Some(1)));
        let ids = |c: &Cells| c[&base].iter().map(|p| p.run_id.clone()).collect::<Vec<_>>();
        assert_eq!(ids(&after), ids(&before));
        // the CSV names the export and why the run is in no cell; the table names it below
        let d = tempfile::tempdir().unwrap();
        let md = std::fs::read_to_string(write(&runs, &train, d.path()).unwrap().unwrap()).unwrap();
        let csv = std::fs::read_to_string(d.path().join("low-resource.csv")).unwrap();
        let row = csv.lines().find(|l| l.contains(&format!(",{},", p.run_id))).expect("its row");
        assert!(row.contains(",q8_0,,rounded_export,"), "{row}");
        assert!(md.contains("Exported onto their start's grid") && md.contains(&format!("`{}` (200/200 sentences)", p.run_id)), "{md}");
        // an older log: no `export_type`, its command's `--export` decides (Q8_0 when absent)
        fn log<'a>(train: &'a mut [TrainRun]) -> &'a mut serde_json::Value {
            &mut train.iter_mut().find(|t| t.name == "cpu-lr-crossner_ai-p10-s1-reasoningner" && t.earlier.is_none()).unwrap().run
        }
        log(&mut train).as_object_mut().unwrap().remove("export_type");
        assert_eq!(seeds(&cells(&runs, &train).0), 2);
        let command = log(&mut train)["command"].as_str().unwrap().to_string();
        log(&mut train)["command"] = serde_json::json!(format!("{command} --export f16"));
        assert_eq!(seeds(&cells(&runs, &train).0), 3);
        // the start exported as F16: its cells' Q8_0 exports keep their updates (with rounding noise)
        log(&mut train)["export_type"] = serde_json::json!("q8_0");
        train.iter_mut().find(|t| t.name == "cpu-grpo-paper" && t.earlier.is_none()).unwrap().run["export_type"] = serde_json::json!("f16");
        assert_eq!(seeds(&cells(&runs, &train).0), 3);
        // a measured rounding decides over the types, and for a base cell too (a `source` export
        // of the Q4_1 base rounds back onto it)
        log(&mut train)["export_rounded"] = serde_json::json!({"moved": 100, "rounded_back": 1});
        assert_eq!(seeds(&cells(&runs, &train).0), 3);
        let id = before[&base].iter().find(|p| p.fraction == 0.25).expect("a base 25% cell").run_id.clone();
        let t = train.iter_mut().find(|t| t.earlier.is_none() && id.starts_with(&t.name.replace('_', "-"))).expect("its log");
        t.run["export_rounded"] = serde_json::json!({"moved": 100, "rounded_back": 99});
        let (after, aside) = cells(&runs, &train);
        assert!(!after[&base].iter().any(|p| p.run_id == id));
        assert!(aside.iter().any(|(_, p, why)| p.run_id == id && *why == Aside::Rounded));
    }

    #[test]
    fn answer_forms_come_from_each_dataset_s_own_samples() {
        use crate::run::SampleRow;
        let row = |output: &str, gold: usize, pred: usize| -> SampleRow {
            let mut r: SampleRow = serde_json::from_value(serde_json::json!({
                "id": "x", "dataset": "d", "split": "test", "index": 0, "sentence": "s", "schema": [], "gold": [],
                "output": output, "reasoning": null, "think": null, "prediction": [], "parse_error": null,
                "counts": {"gold": gold, "predicted": pred, "matched": 0}, "prompt_tokens": 1, "gen_tokens": 10 * gold + 5,
                "finish": "stop", "latency_ms": 1.0
            }))
            .unwrap();
            r.reparse();
            r.counts = crate::score::Counts { gold, predicted: pred, matched: 0 };
            r
        };
        let rows = [row("<think>\nnone\n</think>\n{\"entities\": {}}", 1, 0), row("  <think>x</think>{\"entities\": {\"person\": [\"Ann\"]}}", 2, 1), row("{\"entities\": {}}", 1, 0), row("no json", 0, 0)];
        let f = Form::of(&rows.iter().collect::<Vec<_>>());
        assert_eq!((f.think, f.empty, f.unparsed), (0.5, 0.5, 0.25));
        assert_eq!((f.gen_tokens, f.pred_per_gold), ((15.0 + 25.0 + 15.0 + 5.0) / 4.0, 0.25));
        // the committed cpu cells: the ReasoningNER start still reasons first after answer-only
        // fine-tuning on 10 sentences of CrossNER-AI, the base never does; a 0% run's form is its
        // own dataset's (one run scores all the domains)
        let (runs, train) = committed();
        let d = tempfile::tempdir().unwrap();
        write(&runs, &train, d.path()).unwrap().unwrap();
        let csv = std::fs::read_to_string(d.path().join("low-resource.csv")).unwrap();
        let head: Vec<&str> = csv.lines().next().unwrap().split(',').collect();
        let col = |l: &str, name: &str| -> f64 {
            // the command column is quoted and may hold commas: count from the end
            let cells: Vec<&str> = l.rsplitn(head.len() - head.iter().position(|h| *h == "command").unwrap(), ',').collect();
            cells[head.len() - 1 - head.iter().position(|h| *h == name).unwrap()].parse().unwrap()
        };
        let ai = |init: &str, frac: &str| -> Vec<&str> { csv.lines().filter(|l| l.starts_with(&format!("crossner_ai,{init},200,42,{frac},"))).collect() };
        // our start untouched reasons first; the base fine-tuned on 10% never does
        let (ours, base) = (ai("cpu-grpo-paper", "0"), ai("smollm2-135m-instruct", "0.1"));
        assert_eq!((ours.len(), base.len()), (1, 3));
        assert!(ours.iter().all(|l| col(l, "think_share") > 0.9), "{ours:?}");
        assert!(base.iter().all(|l| col(l, "think_share") == 0.0), "{base:?}");
        let zero: Vec<f64> = csv.lines().filter(|l| l.contains(",cpu-grpo-paper,200,42,0,")).map(|l| col(l, "gen_tokens")).collect();
        assert_eq!(zero.len(), 5, "the five CrossNER domains (its CoNLL-2003 0% run joins no cell yet)");
        let mut distinct = zero.clone();
        distinct.dedup();
        assert!(distinct.len() > 1, "{zero:?}");
    }

    #[test]
    fn cells_tuned_on_rationales_are_a_start_of_their_own() {
        // real runs (the committed CoT-target cells too); one answer-only ReasoningNER 25% seed
        // of a set with no CoT-target cells in the preset (the first whose seeds 1 and 2 are
        // scored: a run may be training others again) as if fine-tuned with --target cot
        let (runs, mut train) = committed();
        let (before, _) = cells(&runs, &train);
        let has = |set: &str, seed: u64| before.get(&(set.to_string(), "cpu-grpo-paper".to_string(), Some(200), 42)).is_some_and(|v| v.iter().any(|p| p.fraction == 0.25 && p.seed == Some(seed)));
        let set = ["crossner_literature", "crossner_music", "crossner_politics", "crossner_science"].into_iter().find(|s| has(s, 1) && has(s, 2)).expect("a set with our 25% seeds 1 and 2");
        let key = |init: &str| (set.to_string(), init.to_string(), Some(200), 42);
        let seeds = |c: &Cells, init: &str| c.get(&key(init)).map(|v| v.iter().map(|p| (p.fraction, p.seed)).collect::<Vec<_>>()).unwrap_or_default();
        let t = train.iter_mut().find(|t| t.name == format!("cpu-lr-{set}-p25-s1-reasoningner") && t.earlier.is_none()).unwrap();
        t.run["target"] = serde_json::json!("cot");
        let (cells, _) = cells(&runs, &train);
        let zero = cells[&key("cpu-grpo-paper (CoT target)")].iter().find(|p| p.fraction == 0.0).expect("the start's 0% run").f1;
        let (cot, direct) = (seeds(&cells, "cpu-grpo-paper (CoT target)"), seeds(&cells, "cpu-grpo-paper"));
        assert!(cot.contains(&(0.0, None)) && cot.contains(&(0.25, Some(1))), "its own row, with the start's 0% run: {cot:?}");
        assert_eq!(cot.len(), seeds(&before, "cpu-grpo-paper (CoT target)").len().max(1) + 1, "{cot:?}");
        assert!(direct.contains(&(0.0, None)) && !direct.contains(&(0.25, Some(1))), "{direct:?}");
        assert_eq!(direct.len() + 1, seeds(&before, "cpu-grpo-paper").len());
        let d = tempfile::tempdir().unwrap();
        let md = std::fs::read_to_string(write(&runs, &train, d.path()).unwrap().unwrap()).unwrap();
        let block = md.split("## ").find(|b| b.starts_with(&format!("{set} — seeded sample of 200"))).unwrap();
        let own = format!("| cpu-grpo-paper (CoT target) | {zero:.2} (n=1) |");
        for row in [
            own.as_str(),
            "| Δ cpu-grpo-paper (CoT target) − smollm2-135m-instruct |",
            "| Δ cpu-grpo-paper − smollm2-135m-instruct |",
            // the same start's 0% run on both rows: no difference to show
            "| Δ cpu-grpo-paper (CoT target) − cpu-grpo-paper | — |",
        ] {
            assert!(block.contains(row), "{row}\n{block}");
        }
        // a cell tuned with the first target token weighed 30 times: a row of its own too, beside
        // the plain one, compared with the base and with the plain answer-only row
        let t = train.iter_mut().find(|t| t.name == format!("cpu-lr-{set}-p25-s2-reasoningner") && t.earlier.is_none()).unwrap();
        t.run["config"]["first_token_weight"] = serde_json::json!(30.0);
        let (weighted, _) = super::cells(&runs, &train);
        let w = seeds(&weighted, "cpu-grpo-paper (first token ×30)");
        assert_eq!(w, [(0.0, None), (0.25, Some(2))], "{w:?}");
        assert!(!seeds(&weighted, "cpu-grpo-paper").contains(&(0.25, Some(2))));
        let dw = tempfile::tempdir().unwrap();
        let md = std::fs::read_to_string(write(&runs, &train, dw.path()).unwrap().unwrap()).unwrap();
        let block = md.split("## ").find(|b| b.starts_with(&format!("{set} — seeded sample of 200"))).unwrap();
        for row in ["| Δ cpu-grpo-paper (first token ×30) − smollm2-135m-instruct |", "| Δ cpu-grpo-paper (first token ×30) − cpu-grpo-paper |"] {
            assert!(block.contains(row), "{row}\n{block}");
        }
        let t = train.iter_mut().find(|t| t.name == format!("cpu-lr-{set}-p25-s2-reasoningner") && t.earlier.is_none()).unwrap();
        t.run["config"].as_object_mut().unwrap().remove("first_token_weight");
        let csv = std::fs::read_to_string(d.path().join("low-resource.csv")).unwrap();
        let cot: Vec<&str> = csv.lines().filter(|l| l.starts_with(&format!("{set},cpu-grpo-paper (CoT target),200,42,0.25,1,"))).collect();
        assert_eq!(cot.len(), 1);
        assert!(cot[0].contains("-p25-s1-base-direct-free-test-n200-s42-"), "paired with the base's seed: {}", cot[0]);
        // the 0% rows of both our rows are compared with the base's 0% run, never with themselves
        for l in csv.lines().filter(|l| l.starts_with("crossner_") && l.contains(",cpu-grpo-paper") && l.contains(",200,42,0,,")) {
            assert!(l.contains(",smollm2-135m-instruct-direct-free-test-n200-s42-"), "{l}");
        }
    }

    #[test]
    fn percent_labels() {
        assert_eq!(pct(0.01), "1%");
        assert_eq!(pct(0.25), "25%");
        assert_eq!(pct(0.002), "0.2%");
    }
}
