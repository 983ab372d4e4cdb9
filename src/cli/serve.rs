//! `rner serve`: the llama.cpp engine behind an OpenAI-compatible HTTP API.
use std::process::ExitCode;
use std::sync::atomic::Ordering;
use std::time::Duration;

use clap::Args;

use super::{resolve_model, Global};
use crate::engine::llama::{LlamaEngine, LlamaSettings};
use crate::serve::{self, Served};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// a baseline name (fetched when missing) or a path to any GGUF
    #[arg(long, default_value = crate::baseline::DEFAULT_MODEL)]
    pub model: String,
    /// the model id clients name (default: the baseline name or file stem)
    #[arg(long)]
    pub name: Option<String>,
    /// address to bind (loopback by default; 0.0.0.0 exposes the server to the network)
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// port (0 = any free port; the address is printed)
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// requests decoded together in one batch
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    /// context tokens per request (prompt + answer)
    #[arg(long, default_value_t = 4096)]
    pub ctx: usize,
    /// CPU threads (0 = all)
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// decode every prompt from scratch instead of reusing the KV of a prefix shared with earlier ones
    #[arg(long)]
    pub no_prefix_reuse: bool,
    /// prompt-lookup drafts for greedy requests without a grammar (as `rner eval --draft-max`; 0 = off)
    #[arg(long, default_value_t = 0)]
    pub draft_max: usize,
}

impl ServeArgs {
    pub fn settings(&self) -> LlamaSettings {
        LlamaSettings {
            parallel: self.parallel,
            ctx_per_seq: self.ctx,
            threads: self.threads,
            prefix_reuse: !self.no_prefix_reuse,
            draft_max: self.draft_max,
            ..LlamaSettings::default()
        }
    }
}

/// Load the model and start serving in the background.
pub fn start(g: &Global, a: &ServeArgs) -> anyhow::Result<serve::Running> {
    let m = resolve_model(g, &a.model)?;
    let engine = LlamaEngine::load(&m.path, a.settings())?;
    let served = Served { engine, model_id: a.name.clone().unwrap_or(m.name), created: crate::util::unix_time() };
    Ok(serve::spawn(served, &format!("{}:{}", a.host, a.port))?)
}

pub fn run(g: &Global, a: ServeArgs) -> anyhow::Result<ExitCode> {
    let running = start(g, &a)?;
    // tests and scripts read this line to find the port
    eprintln!("rner serve: listening on {} (model {}; Ctrl-C stops)", running.base_url(), a.name.as_deref().unwrap_or(&a.model));
    while !crate::run::INTERRUPTED.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(200));
    }
    running.shutdown()?;
    Ok(ExitCode::SUCCESS)
}
