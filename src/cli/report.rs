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
}

pub fn run(g: &Global, a: ReportArgs) -> anyhow::Result<ExitCode> {
    let paper = g.baselines.join("paper-table1.toml");
    let opts = ZeroShotOptions { label_runs: if a.labels.is_empty() { LabelRuns::All } else { LabelRuns::Only(a.labels) } };
    let s = crate::report::zero_shot_with(&g.results, &g.reports, &paper, &opts)?;
    println!("{} ({} runs, {} paper-reported rows)", s.markdown.display(), s.runs, s.paper_rows);
    println!("{}", s.csv.display());
    for p in &s.plots {
        println!("{}", p.display());
    }
    for p in &s.partial {
        println!("partial: {p}");
    }
    Ok(ExitCode::SUCCESS)
}
