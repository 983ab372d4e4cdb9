//! `rner report`.
use std::process::ExitCode;

use clap::Args;

use super::Global;

#[derive(Debug, Args)]
pub struct ReportArgs {}

pub fn run(g: &Global, _a: ReportArgs) -> anyhow::Result<ExitCode> {
    let paper = g.baselines.join("paper-table1.toml");
    let summary = crate::report::zero_shot(&g.results, &g.reports, &paper)?;
    println!("{summary:?}");
    Ok(ExitCode::SUCCESS)
}
