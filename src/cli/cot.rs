//! `rner cot` (stage 1: build a CoT set with a teacher) and `rner cot stats FILE`.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::eval::{build_engine, resolve_with_api, ApiArgs};
use super::{command_line, Global};
use crate::data::{registry, Example, Registry};
use crate::engine::llama::LlamaSettings;
use crate::engine::Sampling;
use crate::train::cot::{self, Bounds, CotConfig};

#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct CotCmd {
    #[command(subcommand)]
    pub sub: Option<CotSub>,
    #[command(flatten)]
    pub build: CotArgs,
}

#[derive(Debug, Subcommand)]
pub enum CotSub {
    /// Kept rate per check and source, rationale lengths (plot), label coverage of a CoT set.
    Stats(StatsArgs),
    /// Check every decided row of a set again under the current validation rules (after a rule
    /// changes): rejects that pass now are kept, kept rows that fail now are rejected
    Revalidate(StatsArgs),
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// the kept file of a build (its .rejected.jsonl and .manifest.json beside it)
    pub file: PathBuf,
}

/// Settings of a CoT build.
#[derive(Debug, Args)]
pub struct CotArgs {
    /// the teacher: a baseline name (GGUF or API), a GGUF path, or with --base-url a server's model name
    #[arg(long, default_value = crate::baseline::DEFAULT_MODEL)]
    pub teacher: String,
    /// training corpora, comma-separated; `zero-shot` = CoNLL-2003 + WNUT-17 (the seven benchmarks stay unseen)
    #[arg(long, value_delimiter = ',', default_value = "zero-shot")]
    pub sources: Vec<String>,
    #[arg(long, default_value = "train")]
    pub split: String,
    /// a seeded sample of N sentences per source (default: all)
    #[arg(long)]
    pub per_source: Option<usize>,
    /// stop after N examples in all (sources interleaved), for quick runs
    #[arg(long)]
    pub limit: Option<usize>,
    /// stop once the set holds N kept examples, earlier sessions included (never more: the last
    /// batches ask only for the rows still wanted)
    #[arg(long)]
    pub until_kept: Option<usize>,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
    /// the kept records (NER-CoT JSONL); .rejected.jsonl, .manifest.json, .stats.json go beside it
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// token cap of a rationale (one that reaches it is rejected as truncated)
    #[arg(long, default_value_t = 256)]
    pub max_cot_tokens: usize,
    #[arg(long, default_value_t = 40)]
    pub min_cot_chars: usize,
    #[arg(long, default_value_t = 4000)]
    pub max_cot_chars: usize,
    /// teacher temperature (0 = greedy; small teachers loop under greedy decoding)
    #[arg(long, default_value_t = 0.6)]
    pub temperature: f32,
    #[arg(long, default_value_t = 0.95)]
    pub top_p: f32,
    /// penalty on tokens repeated within the last 64 generated (1 = off)
    #[arg(long, default_value_t = 1.1)]
    pub repeat_penalty: f32,
    /// `json`/`schema`: the teacher ends its rationale with `</think>` and a grammar-constrained
    /// answer (labels from the schema, spans from the sentence under `schema`; APIs get
    /// response_format) that must equal gold, or the example is rejected as answer_disagrees
    #[arg(long, value_enum, default_value_t = crate::prompt::grammar::Decoding::Free)]
    pub decoding: crate::prompt::grammar::Decoding,
    /// try an entity-less sentence only while such sentences stay at most this share of all tried
    /// (CoNLL-2003 and WNUT-17 are about half entity-less; default: try every sentence)
    #[arg(long, value_parser = share)]
    pub max_empty_share: Option<f64>,
    /// the teacher's instruction from a file instead of the built-in one (with the placeholders
    /// {{SENTENCE}}, {{SCHEMA}} and {{GOLD}}; recorded in the manifest)
    #[arg(long)]
    pub teacher_prompt: Option<PathBuf>,
    /// use an API's separate reasoning (`reasoning_content`) as the rationale
    #[arg(long)]
    pub use_reasoning: bool,
    /// a judge (baseline name or GGUF path) scoring each rationale 0-10
    #[arg(long)]
    pub judge: Option<String>,
    /// keep rationales the judge scores at least this (the paper: 9)
    #[arg(long, default_value_t = 9)]
    pub min_score: u8,
    /// sequences decoded together (local teachers)
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    #[arg(long, default_value_t = 2048)]
    pub ctx: usize,
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// examples per batched call (rows are appended as each finishes; a crash loses at most the chunk being judged)
    #[arg(long, default_value_t = 64)]
    pub chunk: usize,
    #[command(flatten)]
    pub api: ApiArgs,
}

fn share(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(x) if (0.0..=1.0).contains(&x) => Ok(x),
        _ => Err(format!("`{s}` is not a share between 0 and 1")),
    }
}

/// The examples of the sources, each sampled, interleaved round-robin so a partial build covers all.
fn examples(reg: &Registry, a: &CotArgs) -> anyhow::Result<(Vec<String>, Vec<Example>)> {
    let mut sources = Vec::new();
    for s in &a.sources {
        match s.as_str() {
            "zero-shot" => sources.extend(["conll2003".to_string(), "wnut17".to_string()]),
            _ => sources.push(s.clone()),
        }
    }
    let mut per: Vec<Vec<Example>> = Vec::new();
    for s in &sources {
        if crate::data::ZERO_SHOT.contains(&s.as_str()) && a.split == "test" {
            anyhow::bail!("--sources {s} --split test: the zero-shot benchmarks' test sets must stay unseen");
        }
        let all = reg.load(s, &a.split)?;
        per.push(match a.per_source {
            Some(n) if n < all.len() => registry::sample(&all, n, a.seed),
            _ => all,
        });
    }
    let mut out = Vec::new();
    let longest = per.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        for p in &per {
            if let Some(e) = p.get(i) {
                out.push(e.clone());
            }
        }
    }
    if let Some(n) = a.limit {
        out.truncate(n);
    }
    Ok((sources, out))
}

pub fn run(g: &Global, c: CotCmd) -> anyhow::Result<ExitCode> {
    match c.sub {
        Some(CotSub::Stats(s)) => return stats(g, &s.file),
        Some(CotSub::Revalidate(s)) => return revalidate(g, &s.file),
        None => {}
    }
    let a = c.build;
    // read before the teacher loads, so a bad file fails at once
    let custom_prompt = match &a.teacher_prompt {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| anyhow::anyhow!("--teacher-prompt {}: {e}", p.display()))?;
            cot::check_teacher_prompt(&text, p)?;
            Some(text.trim_end().to_string())
        }
        None => None,
    };
    let reg = Registry::new(&g.data_dir)?;
    let (sources, examples) = examples(&reg, &a)?;
    let m = resolve_with_api(g, &a.teacher, &a.api)?;
    let settings = LlamaSettings { parallel: a.parallel, ctx_per_seq: a.ctx, threads: a.threads, ..LlamaSettings::default() };
    let (sha, mut teacher) = build_engine(&m, settings.clone())?;
    let mut judge = match &a.judge {
        Some(j) => {
            let jm = resolve_with_api(g, j, &ApiArgs::default())?;
            Some((jm.name.clone(), build_engine(&jm, settings)?.1))
        }
        None => None,
    };
    let out = a.out.clone().unwrap_or_else(|| {
        g.results.join("cot").join(format!("{}-{}.jsonl", m.name, sources.join("+")))
    });
    let cfg = CotConfig {
        teacher: m.name.clone(),
        teacher_sha256: sha,
        engine: teacher.info().engine.clone(),
        template: m.template,
        sampling: Sampling {
            temperature: a.temperature,
            top_p: a.top_p,
            seed: a.seed,
            max_tokens: a.max_cot_tokens,
            repeat_penalty: a.repeat_penalty,
            ..Sampling::default()
        },
        bounds: Bounds { min_chars: a.min_cot_chars, max_chars: a.max_cot_chars },
        use_reasoning: a.use_reasoning,
        judge: judge.as_ref().map(|(n, _)| n.clone()),
        min_score: a.min_score,
        sources,
        split: a.split.clone(),
        per_source: a.per_source,
        seed: a.seed,
        decoding: a.decoding,
        max_empty_share: a.max_empty_share,
        teacher_prompt: custom_prompt,
    };
    eprintln!("cot: {} examples, teacher {} → {}", examples.len(), m.name, out.display());
    let o = cot::build(
        &cfg,
        teacher.as_mut(),
        judge.as_mut().map(|(_, e)| e.as_mut() as &mut dyn crate::engine::Engine),
        &examples,
        &out,
        a.chunk,
        a.until_kept,
        &command_line(),
        !g.quiet,
    )?;
    eprintln!(
        "kept {}, rejected {} this session ({} done before, {} entity-less held back); the set holds {} kept{}",
        o.kept,
        o.rejected,
        o.skipped,
        o.held_back,
        o.kept_total,
        match a.until_kept {
            Some(n) if o.kept_total >= n => format!(", the --until-kept {n} target"),
            Some(n) if o.interrupted => format!(" of the {n} wanted (rerun to go on)"),
            Some(n) => format!(", short of --until-kept {n}: no sentence is left to try"),
            None => String::new(),
        }
    );
    stats(g, &out)?;
    Ok(if o.interrupted { ExitCode::from(130) } else { ExitCode::SUCCESS })
}

/// `abc1234`, or `abc1234 plus uncommitted changes` for a `-dirty` working tree.
fn short_commit(c: &str) -> String {
    let (hash, dirty) = match c.strip_suffix("-dirty") {
        Some(h) => (h, " plus uncommitted changes"),
        None => (c, ""),
    };
    format!("{}{dirty}", hash.get(..7).unwrap_or(hash))
}

fn revalidate(g: &Global, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let mpath = cot::sibling(file, "manifest.json");
    let m: cot::CotManifest = crate::util::read_json(&mpath).map_err(|e| anyhow::anyhow!("{e} (revalidate needs the set's manifest, written by `rner cot`)"))?;
    let reg = Registry::new(&g.data_dir)?;
    let mut examples = Vec::new();
    for s in &m.config.sources {
        examples.extend(reg.load(s, &m.config.split)?);
    }
    let r = cot::revalidate(file, &examples, &command_line())?;
    eprintln!(
        "rechecked {}: {} rejected → kept, {} kept → rejected, {} rejects under another check or detail",
        r.rechecked, r.rejected_to_kept, r.kept_to_rejected, r.reasons_changed
    );
    stats(g, file)
}

/// Stats JSON beside the set, `reports/cot-<stem>.md` and a rationale-length plot.
fn stats(g: &Global, file: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (s, kept) = cot::stats(file)?;
    crate::util::write_json(&cot::sibling(file, "stats.json"), &s)?;
    let stem = file.file_stem().and_then(|x| x.to_str()).unwrap_or("cot").to_string();
    let manifest: Option<cot::CotManifest> = crate::util::read_json(&cot::sibling(file, "manifest.json")).ok();
    let plot_stem = format!("cot-{}-words", crate::report::file_stem(&stem));
    let plots = crate::report::plot::histogram(&cot::rationale_words(&kept), &format!("Rationale length, {} kept ({stem})", s.kept), "words per rationale", &g.reports.join("plots"), &plot_stem)?;
    let mut md = format!("# CoT set `{}`\n\nMade by `rner cot stats {}` from the set's files.", stem, file.display());
    if let Some(m) = &manifest {
        md.push_str(&format!(
            " Built by teacher `{}` ({}, template {:?}, temperature {}, max {} tokens, decoding {}{}) from {} ({} split).\n\nSessions (the command of each):\n\n",
            m.config.teacher,
            m.config.engine,
            m.config.template,
            m.config.sampling.temperature,
            m.config.sampling.max_tokens,
            m.config.decoding.name(),
            m.config.judge.as_ref().map(|j| format!(", judge `{j}` keeping ≥ {}", m.config.min_score)).unwrap_or_default(),
            m.config.sources.join(" + "),
            m.config.split
        ));
        for ses in &m.sessions {
            md.push_str(&format!(
                "- `{}` — {} kept, {} rejected, {:.0} s, {:.0} rationales/hour\n",
                ses.command, ses.kept, ses.rejected, ses.seconds, ses.rationales_per_hour
            ));
        }
        for r in &m.revalidations {
            md.push_str(&format!(
                "- `{}` ({}, commit {}) — rechecked {} rows under that commit's rules: {} rejected → kept, {} kept → rejected\n",
                r.command,
                r.date.get(..10).unwrap_or(&r.date),
                r.git_commit.as_deref().map(short_commit).unwrap_or_else(|| "unknown".into()),
                r.rechecked,
                r.rejected_to_kept,
                r.kept_to_rejected
            ));
        }
    }
    md.push_str(&format!(
        "\n**Kept {} of {} ({:.1}%)**; {} kept examples ({:.0}%) have no entity{}.\n\n| check | rejected |\n|---|---|\n",
        s.kept,
        s.kept + s.rejected,
        100.0 * s.kept_rate,
        s.kept_with_no_entity,
        100.0 * s.kept_with_no_entity as f64 / s.kept.max(1) as f64,
        match manifest.as_ref().and_then(|m| m.config.max_empty_share) {
            Some(c) => format!(" (the last session tried an entity-less sentence only while they were at most {:.0}% of all tried)", 100.0 * c),
            None => String::new(),
        }
    ));
    for (c, n) in &s.rejects_by_check {
        md.push_str(&format!("| {c} | {n} |\n"));
    }
    md.push_str("\n| source | kept | rejected | kept rate |\n|---|---|---|---|\n");
    for (src, (k, r)) in &s.by_source {
        md.push_str(&format!("| {src} | {k} | {r} | {:.1}% |\n", 100.0 * *k as f64 / (k + r).max(1) as f64));
    }
    md.push_str(&format!(
        "\nWords per kept rationale: min {:.0}, quartiles {:.0} / {:.0} / {:.0}, max {:.0}, mean {:.1} (plot: `plots/{plot_stem}.svg`).\n\n| label | gold mentions in kept examples |\n|---|---|\n",
        s.words[0], s.words[1], s.words[2], s.words[3], s.words[4], s.words[5]
    ));
    for (l, n) in &s.label_mentions {
        md.push_str(&format!("| {l} | {n} |\n"));
    }
    if !s.labels_unseen.is_empty() {
        md.push_str(&format!("\nSchema labels no kept example mentions: {}.\n", s.labels_unseen.join(", ")));
    }
    if let Some(m) = &manifest {
        // teacher speed, from the build's own sessions
        let mut perf = format!(
            "## CoT generation: `{stem}`\n\nFrom `{}` (sessions of the build; regenerated by `rner cot stats {}`). Teacher `{}`; \
             the build began on {} ({} cores) with llama.cpp settings {}; max {} tokens per rationale. Each session's machine and \
             llama.cpp threads are those it recorded (sessions before they were recorded show \"not recorded\").\n\n\
             | session | command | machine | threads | examples | seconds | rationales/hour | generated tokens |\n|---|---|---|---|---|---|---|---|\n",
            cot::sibling(file, "manifest.json").display(),
            file.display(),
            m.config.teacher,
            m.machine.cpu,
            m.machine.cpus,
            m.teacher_info.settings,
            m.config.sampling.max_tokens
        );
        for (i, ses) in m.sessions.iter().enumerate().filter(|(_, s)| s.kept + s.rejected > 0) {
            let machine = ses.machine.as_ref().map_or("not recorded".to_string(), |m| format!("{} ({} cores)", m.cpu, m.cpus));
            let threads = ses.settings.as_ref().and_then(|s| s.get("threads")).map_or("not recorded".to_string(), |t| t.to_string());
            perf.push_str(&format!(
                "| {} | `{}` | {machine} | {threads} | {} | {:.0} | {:.0} | {} |\n",
                i + 1,
                ses.command,
                ses.kept + ses.rejected,
                ses.seconds,
                ses.rationales_per_hour,
                ses.gen_tokens
            ));
        }
        crate::util::write_section(&g.reports.join("perf.md"), &format!("cot-{}", crate::report::file_stem(&stem)), &perf)?;
    }
    let report = g.reports.join(format!("cot-{}.md", crate::report::file_stem(&stem)));
    crate::util::write_atomic(&report, md.as_bytes())?;
    println!("{}", report.display());
    for p in plots {
        println!("{}", p.display());
    }
    Ok(ExitCode::SUCCESS)
}
