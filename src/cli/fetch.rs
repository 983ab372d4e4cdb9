//! `rner fetch-model` and `rner datasets`.
use std::process::ExitCode;

use clap::Args;

use super::Global;
use crate::baseline::{fetch_model, Baseline};
use crate::data::Registry;

#[derive(Debug, Args)]
pub struct FetchArgs {
    /// baseline name (a file in baselines/), or `all`
    #[arg(default_value = crate::baseline::DEFAULT_MODEL)]
    pub name: String,
}

pub fn run(g: &Global, a: FetchArgs) -> anyhow::Result<ExitCode> {
    let names = if a.name == "all" {
        Baseline::names(&g.baselines)
            .into_iter()
            .filter(|n| Baseline::load(&g.baselines, n).is_ok_and(|b| b.kind == "gguf"))
            .collect()
    } else {
        vec![a.name]
    };
    for n in names {
        let b = Baseline::load(&g.baselines, &n)?;
        let p = fetch_model(&b, &g.models)?;
        println!("{}\t{}\tsha256 {}", b.name, p.display(), b.sha256);
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Args)]
pub struct DatasetsArgs {
    /// splits to count
    #[arg(long, value_delimiter = ',', default_value = "train,dev,test")]
    pub splits: Vec<String>,
}

pub fn datasets(g: &Global, a: DatasetsArgs) -> anyhow::Result<ExitCode> {
    let reg = Registry::new(&g.data_dir)?;
    println!("dataset\tsplit\tsentences\tgold mentions (paper loader)\tlabels");
    for name in Registry::names() {
        let splits = Registry::splits(name)?;
        for split in a.splits.iter().filter(|s| splits.contains(&s.as_str())) {
            let ex = reg.load(name, split)?;
            let mentions: usize = ex.iter().map(|e| e.gold.len()).sum();
            let labels = ex.first().map(|e| e.labels.join(", ")).unwrap_or_default();
            println!("{name}\t{split}\t{}\t{mentions}\t{labels}", ex.len());
        }
    }
    Ok(ExitCode::SUCCESS)
}
