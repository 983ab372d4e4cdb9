//! `rner report`.
use std::process::ExitCode;

use clap::Args;

use super::Global;
use crate::report::{LabelRuns, ZeroShotOptions};

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// runs that get a per-label F1 plot (default: every run)
    #[arg(long, value_delimiter = ',')]
    pub labels: Vec<String>,
    /// also write the static site reports/site/ (runs, breakdowns, sample browser, side by side)
    #[arg(long)]
    pub html: bool,
    /// extra side-by-side pages in the site: RUN_A:RUN_B (run ids); each trained model is paired
    /// with its base model on the same sample automatically
    #[arg(long, value_delimiter = ',')]
    pub pair: Vec<String>,
}

pub fn run(g: &Global, a: ReportArgs) -> anyhow::Result<ExitCode> {
    let paper = g.baselines.join("paper-table1.toml");
    let train = crate::report::training::load(&g.results)?;
    let whole = a.labels.is_empty();
    let opts = ZeroShotOptions {
        label_runs: if a.labels.is_empty() { LabelRuns::All } else { LabelRuns::Only(a.labels) },
        exclude_models: crate::report::training::low_resource_models(&train),
    };
    let s = crate::report::zero_shot_with(&g.results, &g.reports, &paper, &opts)?;
    println!("{} ({} runs, {} paper-reported rows)", s.markdown.display(), s.runs, s.paper_rows);
    println!("{}", s.csv.display());
    for p in &s.plots {
        println!("{}", p.display());
    }
    for p in &s.partial {
        println!("partial: {p}");
    }
    // training runs: curves, the runs table, and the stage ablation on shared benchmark samples
    for t in train.iter().filter(|t| t.earlier.is_none()) {
        match t.stage.as_str() {
            "sft" => crate::report::training::plot_sft(&g.reports, &t.name, &t.dir)?,
            "grpo" => crate::report::training::plot_grpo(&g.reports, &t.name, &t.dir)?,
            _ => {}
        }
    }
    let runs = crate::report::load_runs(&g.results)?;
    if let Some(p) = crate::report::decoding::write(&runs, &g.reports)? {
        println!("{}", p.display());
    }
    if !train.is_empty() {
        println!("{}", crate::report::training::training_md(&train, &g.reports)?.display());
        crate::report::training::grpo_perf(&train, &g.reports)?;
        if let Some(p) = crate::report::training::stages(&runs, &train, &g.reports)? {
            println!("{}", p.display());
        }
        if let Some(p) = crate::report::training::rewards(&runs, &train, &g.reports)? {
            println!("{}", p.display());
        }
        if let Some(p) = crate::report::lowres::write(&runs, &train, &g.reports)? {
            println!("{}", p.display());
        }
    }
    if a.html {
        let mut pairs = crate::report::training::base_pairs(&runs, &train);
        for p in &a.pair {
            let (x, y) = p.split_once(':').ok_or_else(|| anyhow::anyhow!("--pair {p}: expected RUN_A:RUN_B"))?;
            pairs.push((x.to_string(), y.to_string()));
        }
        println!("{}", crate::report::site::write(&runs, &pairs, &g.reports)?.display());
    }
    // the whole report was written from results/: what it holds for runs no longer there goes
    if whole {
        let ids: Vec<String> = runs.iter().map(crate::report::Run::id).collect();
        let names: Vec<String> = train.iter().map(|t| t.name.clone()).collect();
        for p in crate::report::prune_stale(&g.reports, &ids, &names, a.html)? {
            println!("removed {} (its run is not in {})", p.display(), g.results.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct CompareArgs {
    /// run a (a results/ folder or run id)
    pub a: std::path::PathBuf,
    /// run b
    pub b: std::path::PathBuf,
    /// also write the markdown here (e.g. reports/serve-consistency.md)
    #[arg(long)]
    pub out: Option<std::path::PathBuf>,
}

pub fn compare(g: &Global, a: CompareArgs) -> anyhow::Result<ExitCode> {
    let dir = |r: &std::path::Path| if r.exists() { r.to_path_buf() } else { g.results.join(r) };
    let c = crate::report::compare::compare(&dir(&a.a), &dir(&a.b))?;
    let md = c.markdown(&super::command_line());
    if let Some(out) = &a.out {
        crate::util::write_atomic(out, md.as_bytes())?;
    }
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}
