//! The library's one error type: each variant names the phase and the file, line or flag at fault.
use std::path::PathBuf;

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{}:{line}: {msg}", file.display())]
    Data { file: PathBuf, line: usize, msg: String },
    /// (the OS error is part of the message, not a `source`, so error chains print it once)
    #[error("{}: {err}", path.display())]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{}: invalid JSON: {err}", path.display())]
    Json { path: PathBuf, err: serde_json::Error },
    #[error("{}: invalid TOML: {msg}", path.display())]
    Toml { path: PathBuf, msg: String },
    #[error("{flag}: {msg}")]
    Config { flag: String, msg: String },
    #[error("fetch-model {name}: {msg}")]
    Fetch { name: String, msg: String },
    #[error("model {}: {msg}", path.display())]
    Model { path: PathBuf, msg: String },
    #[error("engine: {0}")]
    Engine(String),
    #[error("prompt of {prompt} tokens + {max_tokens} new tokens exceeds the context of {n_ctx}: raise --ctx (or lower --max-tokens)")]
    Context { prompt: usize, max_tokens: usize, n_ctx: usize },
    #[error("API: {failed} of {total} requests failed (rerun to retry only those); first: {msg}")]
    Api { failed: usize, total: usize, msg: String, fatal: bool },
    #[error("run {}: {msg}", dir.display())]
    Run { dir: PathBuf, msg: String },
    #[error("report: {0}")]
    Report(String),
    #[error("tensor: {0}")]
    Tensor(#[from] candle_core::Error),
    #[error("interrupted")]
    Interrupted,
}

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), err: source }
    }
    pub fn data(file: impl Into<PathBuf>, line: usize, msg: impl Into<String>) -> Self {
        Error::Data { file: file.into(), line, msg: msg.into() }
    }
    pub fn config(flag: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { flag: flag.into(), msg: msg.into() }
    }
}
