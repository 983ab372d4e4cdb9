//! `rner bench generate`: llama.cpp generation throughput, one sequence per batch vs many and
//! prefix reuse off vs on, on the same sentences in one process; writes `reports/perf.md`.
use std::process::ExitCode;
use std::time::Instant;

use clap::{Args, Subcommand};
use serde::Serialize;

use super::{command_line, resolve_model, Global};
use crate::data::{registry, Registry};
use crate::engine::llama::{LlamaEngine, LlamaSettings};
use crate::engine::{Engine, Sampling};
use crate::prompt::{self, PromptSpec};

#[derive(Debug, Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: BenchWhat,
}

#[derive(Debug, Subcommand)]
pub enum BenchWhat {
    /// Sentences/s and tokens/s of the llama.cpp engine under four batching settings.
    Generate(GenerateArgs),
    /// Requests/s of `rner serve` under N concurrent loopback clients.
    Serve(ServeBenchArgs),
    /// Sentences/s and tokens/s under free, json and schema decoding (the grammar sampler's cost).
    Decoding(DecodingBenchArgs),
    /// Seconds, tokens/s, FLOP/s and peak memory of a candle training step at several lengths.
    Train(TrainBenchArgs),
    /// SFT updates on the real training set with each forward pass's shared prompt start run
    /// once against every sequence fed whole: seconds, tokens, peak memory, and loss agreement.
    Sft(SftBenchArgs),
    /// GRPO's log-prob and loss passes on realistic rollouts under candle's autograd, the
    /// hand-written pass with whole prompts, and the hand-written pass with each prompt run once
    /// for its completions: seconds, tokens, peak memory, and loss agreement.
    Grpo(GrpoBenchArgs),
    /// Load time of the report site's sample browser in headless Chromium, on the largest run.
    Site(SiteBenchArgs),
}

#[derive(Debug, Args)]
pub struct GrpoBenchArgs {
    #[arg(long, default_value = crate::baseline::DEFAULT_MODEL)]
    pub model: String,
    /// NER-CoT JSONL: its prompts are the step's prompts, its rationale + answer targets the
    /// completions (mixed lengths, as sampled ones are)
    #[arg(long, default_value = "results/cot/qwen2.5-coder-1.5b-instruct-conll2003+wnut17.jsonl")]
    pub data: std::path::PathBuf,
    /// steps measured per setting, after one warm-up step
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// prompts per step (the `cpu` preset's)
    #[arg(long, default_value_t = 2)]
    pub prompts_per_step: usize,
    /// completions per prompt (G)
    #[arg(long, default_value_t = 8)]
    pub num_generations: usize,
    /// sequences per forward pass (as `rner grpo --micro`)
    #[arg(long, default_value_t = 8)]
    pub micro: usize,
    /// completion tokens kept (as `rner grpo --max-completion-length`; the `cpu` preset's)
    #[arg(long, default_value_t = 256)]
    pub max_completion_length: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Args)]
pub struct SiteBenchArgs {
    /// the run (default: the one with most sentences in results/)
    #[arg(long)]
    pub run: Option<String>,
    #[arg(long, default_value_t = 3)]
    pub repeats: usize,
}

#[derive(Debug, Args)]
pub struct TrainBenchArgs {
    #[arg(long, default_value = crate::baseline::DEFAULT_MODEL)]
    pub model: String,
    /// sequence lengths (one sequence per step)
    #[arg(long, value_delimiter = ',', default_values_t = vec![256, 512, 1024])]
    pub lengths: Vec<usize>,
    /// measured steps per length (after one warm-up step)
    #[arg(long, default_value_t = 3)]
    pub steps: usize,
    /// backward passes to measure: candle's autograd, the hand-written pass SFT uses on CPU, or both
    #[arg(long, value_enum, default_value = "both")]
    pub backward: BackwardChoice,
}

#[derive(Debug, Args)]
pub struct SftBenchArgs {
    #[arg(long, default_value = crate::baseline::DEFAULT_MODEL)]
    pub model: String,
    /// NER-CoT JSONL (stage 1's output)
    #[arg(long, default_value = "results/cot/qwen2.5-coder-1.5b-instruct-conll2003+wnut17.jsonl")]
    pub data: std::path::PathBuf,
    /// SFT targets to measure (`direct`: the answer alone; `cot`: rationale + answer)
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = vec![crate::train::sft::Target::Direct, crate::train::sft::Target::Cot])]
    pub targets: Vec<crate::train::sft::Target>,
    /// updates measured per target and setting (the first updates of `rner sft`'s seeded order),
    /// after one warm-up update
    #[arg(long, default_value_t = 3)]
    pub updates: usize,
    /// sequences per update
    #[arg(long, default_value_t = 16)]
    pub batch: usize,
    #[arg(long, default_value_t = 2048)]
    pub micro_tokens: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackwardChoice {
    Autograd,
    HandWritten,
    Both,
}

#[derive(Debug, Args)]
pub struct DecodingBenchArgs {
    #[command(flatten)]
    pub sample: BenchSample,
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    #[arg(long, default_value_t = 512)]
    pub max_tokens: usize,
}

/// The model and the sentences a benchmark runs on.
#[derive(Debug, Args)]
pub struct BenchSample {
    #[arg(long, default_value = crate::baseline::DEFAULT_MODEL)]
    pub model: String,
    #[arg(long, default_value = "crossner_ai")]
    pub dataset: String,
    /// sentences (a seeded sample of the test split)
    #[arg(long, default_value_t = 32)]
    pub sentences: usize,
    #[arg(long, default_value_t = 42)]
    pub seed: u64,
}

impl BenchSample {
    /// The model and each sentence's prompt, rendered as an evaluation would.
    fn load(&self, g: &Global) -> anyhow::Result<(super::ResolvedModel, Vec<crate::prompt::Rendered>)> {
        let (m, examples) = self.examples(g)?;
        let spec = PromptSpec { template: m.template, add_source: false };
        let prompts = examples.iter().map(|e| prompt::render(e, &spec)).collect();
        Ok((m, prompts))
    }

    fn examples(&self, g: &Global) -> anyhow::Result<(super::ResolvedModel, Vec<crate::data::Example>)> {
        let reg = Registry::new(&g.data_dir)?;
        let all = reg.load(&self.dataset, "test")?;
        let examples = registry::sample(&all, self.sentences.min(all.len()), self.seed);
        Ok((resolve_model(g, &self.model)?, examples))
    }
}

#[derive(Debug, Args)]
pub struct ServeBenchArgs {
    #[command(flatten)]
    pub sample: BenchSample,
    /// concurrent clients, one measurement each
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    pub clients: Vec<usize>,
    /// the server's decode batch
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    #[arg(long, default_value_t = 128)]
    pub max_tokens: usize,
}

#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    pub sample: BenchSample,
    /// sequences per batch in the batched settings
    #[arg(long, default_value_t = 16)]
    pub parallel: usize,
    #[arg(long, default_value_t = 256)]
    pub max_tokens: usize,
    /// prompt-lookup draft tokens per sequence in the last setting
    #[arg(long, default_value_t = 8)]
    pub draft_max: usize,
    /// which settings to run (the plain one is the baseline of the speed-ups). A subset, e.g. for a
    /// larger sample whose all-settings run would take long, writes its own section of perf.md
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = GenSetting::all())]
    pub settings: Vec<GenSetting>,
}

/// The settings `rner bench generate` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum GenSetting {
    /// one sequence, no prefix reuse
    Plain,
    /// one sequence + prefix reuse
    Prefix,
    /// N sequences, no prefix reuse
    Batched,
    /// N sequences + prefix reuse
    BatchedPrefix,
    /// N sequences + prefix reuse + prompt-lookup drafts
    Lookup,
}

impl GenSetting {
    fn all() -> Vec<GenSetting> {
        vec![GenSetting::Plain, GenSetting::Prefix, GenSetting::Batched, GenSetting::BatchedPrefix, GenSetting::Lookup]
    }
}

#[derive(Debug, Serialize)]
struct Measured {
    setting: String,
    parallel: usize,
    prefix_reuse: bool,
    /// prompt-lookup draft tokens per sequence at most (0 = off)
    draft_max: usize,
    /// answers identical to the same setting's without drafts (None where it has no drafts)
    same_texts: Option<usize>,
    seconds: f64,
    sentences_per_s: f64,
    gen_tokens: usize,
    gen_tokens_per_s: f64,
    prompt_tokens: usize,
    steps: crate::engine::llama::StepTimes,
}

pub fn run(g: &Global, a: BenchArgs) -> anyhow::Result<ExitCode> {
    match a.what {
        BenchWhat::Generate(a) => generate(g, a),
        BenchWhat::Serve(a) => serve(g, a),
        BenchWhat::Decoding(a) => decoding(g, a),
        BenchWhat::Train(a) => train(g, a),
        BenchWhat::Sft(a) => sft(g, a),
        BenchWhat::Grpo(a) => grpo(g, a),
        BenchWhat::Site(a) => site(g, a),
    }
}

fn generate(g: &Global, a: GenerateArgs) -> anyhow::Result<ExitCode> {
    let (m, prompts) = a.sample.load(g)?;
    let sampling = Sampling { max_tokens: a.max_tokens, ..Sampling::default() };
    let reqs: Vec<_> = prompts.into_iter().map(|prompt| crate::engine::GenRequest { prompt, sampling: sampling.clone() }).collect();
    if !a.settings.contains(&GenSetting::Plain) {
        anyhow::bail!("--settings must include `plain`: it is the baseline of the speed-ups");
    }
    let all = GenSetting::all();
    let chosen: Vec<GenSetting> = all.iter().copied().filter(|s| a.settings.contains(s)).collect();
    let mut rows = Vec::new();
    // answers of `batched + prefix reuse`, which the drafting setting (run after it) is compared with
    let mut undrafted: Option<Vec<String>> = None;
    for setting in &chosen {
        let (parallel, prefix_reuse, draft_max, name) = match setting {
            GenSetting::Plain => (1, false, 0, "plain: 1 sequence, no prefix reuse"),
            GenSetting::Prefix => (1, true, 0, "1 sequence + prefix reuse"),
            GenSetting::Batched => (a.parallel, false, 0, "batched, no prefix reuse"),
            GenSetting::BatchedPrefix => (a.parallel, true, 0, "batched + prefix reuse"),
            GenSetting::Lookup => (a.parallel, true, a.draft_max, "batched + prefix reuse + prompt lookup"),
        };
        let mut engine =
            LlamaEngine::load(&m.path, LlamaSettings { parallel, prefix_reuse, draft_max, ctx_per_seq: 2048, ..LlamaSettings::default() })?;
        engine.take_step_times();
        let t = Instant::now();
        let outs = engine.generate(&reqs)?;
        let secs = t.elapsed().as_secs_f64();
        let gen: usize = outs.iter().map(|o| o.gen_tokens).sum();
        let these: Vec<String> = outs.iter().map(|o| o.text.clone()).collect();
        let same_texts = match setting {
            GenSetting::Lookup => undrafted.as_ref().map(|u| u.iter().zip(&these).filter(|(x, y)| x == y).count()),
            _ => None,
        };
        if *setting == GenSetting::BatchedPrefix {
            undrafted = Some(these);
        }
        let row = Measured {
            steps: engine.take_step_times(),
            setting: name.into(),
            parallel,
            prefix_reuse,
            draft_max,
            same_texts,
            seconds: secs,
            sentences_per_s: reqs.len() as f64 / secs,
            gen_tokens: gen,
            gen_tokens_per_s: gen as f64 / secs,
            prompt_tokens: outs.iter().map(|o| o.prompt_tokens).sum(),
        };
        eprintln!("{name}: {:.2} sentences/s, {:.1} generated tok/s ({secs:.1} s)", row.sentences_per_s, row.gen_tokens_per_s);
        rows.push(row);
    }
    let base = rows[0].sentences_per_s;
    let mut md = format!(
        "## Generation (llama.cpp engine)\n\nCommand: `{}`  \nModel: `{}`; {} sentences of `{}` test (seed {}), paper prompt, greedy, max {} new tokens.  \n\
         Machine: {} ({} threads). Build: release, `RUSTFLAGS=-C target-cpu=native` (set in .cargo/config.toml), llama-cpp-2 0.1.160. OpenMP: {}.  \nMeasured: {}\n\n\
         | setting | sequences/batch | prefix reuse | draft tokens | seconds | sentences/s | generated tok/s | speed-up |\n|---|---|---|---|---|---|---|---|\n",
        command_line(), m.name, reqs.len(), a.sample.dataset, a.sample.seed, a.max_tokens, crate::util::cpu_model(), crate::util::cpus(), openmp_note(), crate::util::now()
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {} | {} | {:.1} | {:.3} | {:.1} | {:.2}× |\n",
            r.setting,
            r.parallel,
            if r.prefix_reuse { "on" } else { "off" },
            if r.draft_max > 0 { format!("≤ {}", r.draft_max) } else { "off".into() },
            r.seconds,
            r.sentences_per_s,
            r.gen_tokens_per_s,
            r.sentences_per_s / base
        ));
    }
    for r in rows.iter().filter(|r| r.draft_max > 0) {
        md.push_str(&format!(
            "\nPrompt lookup (`{}`): {} draft tokens fed, {} confirmed by the model ({:.0}%)",
            r.setting,
            r.steps.draft_tokens,
            r.steps.draft_accepted,
            100.0 * r.steps.draft_accepted as f64 / r.steps.draft_tokens.max(1) as f64,
        ));
        match r.same_texts {
            Some(n) => md.push_str(&format!("; {n} of {} answers identical to the same setting without drafts.\n", reqs.len())),
            None => md.push_str(".\n"),
        }
    }
    md.push_str("\nEvery setting generates the same sentences; greedy text can differ slightly between batch settings (llama.cpp's batched kernels round differently), so token counts differ a little.\n");
    md.push_str(
        "\nWhere the time goes, per setting (`llama_decode` calls timed by the engine): steps that carry prompt tokens; pure decode steps \
         with at least ¾ of the slots busy; pure decode steps with fewer (the run's tail, once no sentence is waiting); the rest is \
         sampling, detokenising and KV copies.\n\n| setting | prompt steps: s / tokens / tok/s | full decode steps: s / tok/s | tail decode steps: s / tok/s | other s |\n|---|---|---|---|---|\n",
    );
    for r in &rows {
        let st = &r.steps;
        let rate = |b: &crate::engine::llama::StepBucket| b.tokens as f64 / b.seconds.max(1e-9);
        let other = r.seconds - st.prompt.seconds - st.full.seconds - st.partial.seconds;
        md.push_str(&format!(
            "| {} | {:.1} / {} / {:.0} | {:.1} / {:.0} | {:.1} / {:.0} | {:.1} |\n",
            r.setting,
            st.prompt.seconds,
            st.prompt.tokens,
            rate(&st.prompt),
            st.full.seconds,
            rate(&st.full),
            st.partial.seconds,
            rate(&st.partial),
            other
        ));
    }
    // the full comparison has its own section; a subset (a larger sample, say) one per sample size
    let name = if chosen == all { "generation".to_string() } else { format!("generation-n{}", reqs.len()) };
    crate::util::write_section(&g.reports.join("perf.md"), &name, &md)?;
    crate::util::write_json(&g.results.join("bench").join(format!("{name}.json")), &rows)?;
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}

#[derive(Debug, Serialize)]
struct ServeMeasured {
    clients: usize,
    requests: usize,
    seconds: f64,
    requests_per_s: f64,
    sentences_per_s: f64,
    gen_tokens: usize,
    gen_tokens_per_s: f64,
    latency_p50_ms: f64,
    latency_p95_ms: f64,
}

/// Start `rner serve` in this process, then send the same chat requests from N concurrent clients
/// over loopback HTTP (each client sends its next request when its last is answered).
fn serve(g: &Global, a: ServeBenchArgs) -> anyhow::Result<ExitCode> {
    let (m, prompts) = a.sample.load(g)?;
    let bodies: Vec<serde_json::Value> =
        prompts.iter().map(|r| serde_json::json!({"messages": r.messages, "temperature": 0, "max_tokens": a.max_tokens})).collect();
    let engine = LlamaEngine::load(&m.path, LlamaSettings { parallel: a.parallel, ctx_per_seq: 2048, ..LlamaSettings::default() })?;
    let running = crate::serve::spawn(crate::serve::Served { engine, model_id: m.name.clone(), created: 0 }, "127.0.0.1:0")?;
    let url = format!("{}/chat/completions", running.base_url());
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let mut rows = Vec::new();
    for &clients in &a.clients {
        let queue = std::sync::Arc::new(std::sync::Mutex::new(bodies.clone()));
        let t = Instant::now();
        let results: Vec<anyhow::Result<Vec<(f64, usize)>>> = rt.block_on(async {
            let http = reqwest::Client::new();
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..clients.max(1) {
                let (queue, http, url) = (queue.clone(), http.clone(), url.clone());
                set.spawn(async move {
                    let mut got = Vec::new();
                    loop {
                        let Some(body) = queue.lock().expect("queue").pop() else { break };
                        let t = Instant::now();
                        let r = http.post(&url).json(&body).send().await?;
                        let status = r.status();
                        let v: serde_json::Value = r.json().await?;
                        anyhow::ensure!(status.is_success(), "HTTP {status}: {v}");
                        let n = v["usage"]["completion_tokens"].as_u64().unwrap_or(0) as usize;
                        got.push((t.elapsed().as_secs_f64() * 1000.0, n));
                    }
                    Ok(got)
                });
            }
            let mut all = Vec::new();
            while let Some(r) = set.join_next().await {
                all.push(r.unwrap_or_else(|e| Err(anyhow::anyhow!("client task: {e}"))));
            }
            all
        });
        let secs = t.elapsed().as_secs_f64();
        let mut lat = Vec::new();
        let mut gen = 0;
        for r in results {
            for (ms, n) in r? {
                lat.push(ms);
                gen += n;
            }
        }
        lat.sort_by(f64::total_cmp);
        let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
        let row = ServeMeasured {
            clients,
            requests: lat.len(),
            seconds: secs,
            requests_per_s: lat.len() as f64 / secs,
            sentences_per_s: lat.len() as f64 / secs,
            gen_tokens: gen,
            gen_tokens_per_s: gen as f64 / secs,
            latency_p50_ms: pct(0.5),
            latency_p95_ms: pct(0.95),
        };
        eprintln!("{clients} clients: {:.2} requests/s, {:.1} generated tok/s", row.requests_per_s, row.gen_tokens_per_s);
        rows.push(row);
    }
    running.shutdown()?;
    let base = rows[0].requests_per_s;
    let mut md = format!(
        "## rner serve under concurrent clients\n\nCommand: `{}`  \nModel: `{}` served with `--parallel {}`; {} chat requests (one sentence each: `{}` test, seed {}, paper prompt), \
         greedy, max {} new tokens, over loopback HTTP; each client sends its next request when the last is answered.  \n\
         Machine: {} ({} threads), release build with `-C target-cpu=native`.  \nMeasured: {}\n\n\
         | clients | requests | seconds | requests/s | sentences/s | generated tok/s | latency p50 (ms) | p95 (ms) | vs 1 client |\n|---|---|---|---|---|---|---|---|---|\n",
        command_line(), m.name, a.parallel, bodies.len(), a.sample.dataset, a.sample.seed, a.max_tokens, crate::util::cpu_model(), crate::util::cpus(), crate::util::now()
    );
    for r in &rows {
        md.push_str(&format!(
            "| {} | {} | {:.1} | {:.3} | {:.3} | {:.1} | {:.0} | {:.0} | {:.2}× |\n",
            r.clients, r.requests, r.seconds, r.requests_per_s, r.sentences_per_s, r.gen_tokens_per_s, r.latency_p50_ms, r.latency_p95_ms, r.requests_per_s / base
        ));
    }
    md.push_str("\nOne request carries one sentence, so requests/s = sentences/s. Concurrent requests join the server's running decode batch and reuse the KV of the prompt prefix they share with the request that seeded it.\n");
    crate::util::write_section(&g.reports.join("perf.md"), "serve", &md)?;
    crate::util::write_json(&g.results.join("bench").join("serve.json"), &rows)?;
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}

/// The same sentences under each decoding mode, in one process: the constrained modes three
/// times, with the grammar masking the whole vocabulary at every step, checking the model's first
/// choice first, and checking it and then its next-best choices (the default); the texts must be
/// the same.
fn decoding(g: &Global, a: DecodingBenchArgs) -> anyhow::Result<ExitCode> {
    use crate::prompt::grammar::{constraint, Decoding};
    let (m, examples) = a.sample.examples(g)?;
    let spec = PromptSpec { template: m.template, add_source: false };
    let ranked = LlamaSettings::default().grammar_ranked;
    let settings = |check_first, grammar_ranked| LlamaSettings { parallel: a.parallel, ctx_per_seq: 2048, grammar_check_first: check_first, grammar_ranked, ..LlamaSettings::default() };
    let mut md = format!(
        "## Decoding modes (grammar sampler cost): {}\n\nCommand: `{}`  \nModel: `{}`; {} sentences of `{}` test (seed {}), paper prompt, greedy, max {} new tokens, \
         {} sequences per batch with prefix reuse.  \nMachine: {} ({} threads), release build with `-C target-cpu=native`.  \nMeasured: {}\n\n\
         | decoding | grammar | seconds | sentences/s | generated tokens | generated tok/s | ms per generated token | full-vocabulary masks | found among the next-best | same text as mask-every-step | parse failures | hit the cap |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        m.name, command_line(), m.name, examples.len(), a.sample.dataset, a.sample.seed, a.max_tokens, a.parallel, crate::util::cpu_model(), crate::util::cpus(), crate::util::now()
    );
    let mut rows = Vec::new();
    for d in [Decoding::Free, Decoding::Json, Decoding::Schema] {
        let reqs: Vec<_> = examples
            .iter()
            .map(|e| {
                let sampling = Sampling { max_tokens: a.max_tokens, constraint: constraint(d, e, false), ..Sampling::default() };
                crate::engine::GenRequest { prompt: prompt::render(e, &spec), sampling }
            })
            .collect();
        let ways: Vec<(String, bool, usize)> = if d.is_free() {
            vec![("none".into(), true, 0)]
        } else {
            vec![("mask every step".into(), false, 0), ("check first".into(), true, 0), (format!("check first, then the next {ranked}"), true, ranked)]
        };
        let mut reference: Option<Vec<String>> = None;
        for (way, check_first, grammar_ranked) in ways {
            let mut engine = LlamaEngine::load(&m.path, settings(check_first, grammar_ranked))?;
            let t = Instant::now();
            let outs = engine.generate(&reqs)?;
            let secs = t.elapsed().as_secs_f64();
            let steps = engine.take_step_times();
            let texts: Vec<String> = outs.iter().map(|o| o.text.clone()).collect();
            let same = match &reference {
                None if !d.is_free() => {
                    reference = Some(texts);
                    "(reference)".to_string()
                }
                None => "".to_string(),
                Some(r) => format!("{}/{}", r.iter().zip(&texts).filter(|(x, y)| x == y).count(), r.len()),
            };
            let gen: usize = outs.iter().map(|o| o.gen_tokens).sum();
            let failures = outs.iter().filter(|o| crate::parse::prediction(&o.text).error.is_some_and(|e| e.is_failure())).count();
            let capped = outs.iter().filter(|o| o.finish == crate::engine::Finish::Length).count();
            let (masks, hits) = if d.is_free() { (String::new(), String::new()) } else { (format!("{} of {}", steps.grammar_full_masks, steps.grammar_tokens), steps.grammar_ranked_hits.to_string()) };
            md.push_str(&format!(
                "| {} | {way} | {:.1} | {:.3} | {} | {:.1} | {:.2} | {masks} | {hits} | {same} | {} | {} |\n",
                d.name(), secs, outs.len() as f64 / secs, gen, gen as f64 / secs, 1000.0 * secs / gen.max(1) as f64, failures, capped
            ));
            eprintln!("{} ({way}): {:.2} sentences/s", d.name(), outs.len() as f64 / secs);
            rows.push(serde_json::json!({"decoding": d.name(), "grammar": way, "seconds": secs, "sentences": outs.len(), "gen_tokens": gen,
                "grammar_tokens": steps.grammar_tokens, "grammar_full_masks": steps.grammar_full_masks, "grammar_ranked_hits": steps.grammar_ranked_hits, "same_text": same,
                "parse_failures": failures, "capped": capped}));
        }
    }
    md.push_str("\nms per generated token includes prompt prefill, so it compares the modes' cost per token only roughly; \
                 sentences/s is what a run feels. *Mask every step*: llama.cpp's grammar sampler checks every token of the vocabulary \
                 against the grammar at every step. *Check first* (`LlamaSettings::grammar_check_first`): the model's greedy \
                 choice is checked alone and the vocabulary is masked only when the grammar rejects it. *Then the next N* (the default, \
                 `LlamaSettings::grammar_ranked`): a rejected choice is followed by the next-best N, each checked alone in order, and the \
                 vocabulary is masked only when all are rejected. The chosen token is the masked argmax every way, so the texts must match.\n");
    // one section per model (the default model's keeps its old name)
    let name = if m.name == crate::baseline::DEFAULT_MODEL { "decoding".to_string() } else { format!("decoding-{}", m.name) };
    crate::util::write_section(&g.reports.join("perf.md"), &name, &md)?;
    crate::util::write_json(&g.results.join("bench").join(format!("{name}.json")), &rows)?;
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}

/// Reset this process's peak-RSS counter (Linux: `5` into clear_refs), so each length's peak is
/// its own.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// f32 GFLOP/s of large square matmuls in candle: the ceiling the training step is judged by.
/// The best of 6 runs at each of 1024², 2048² and 3072² after a warm-up: more samples of a
/// machine whose speed drifts (best-of-4 at 2048² read 117 and about 153 GFLOP/s minutes apart
/// on one VM), though no count of runs removes the drift between this and the steps.
fn matmul_peak() -> anyhow::Result<(f64, usize)> {
    use candle_core::{Device, Tensor};
    let mut best = (0.0, 0);
    for n in [1024, 2048, 3072] {
        let a = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
        let b = Tensor::randn(0f32, 1.0, (n, n), &Device::Cpu)?;
        let _ = a.matmul(&b)?;
        for _ in 0..6 {
            let t = Instant::now();
            let c = a.matmul(&b)?;
            let s = t.elapsed().as_secs_f64();
            drop(c);
            let gflops = 2.0 * (n * n * n) as f64 / s / 1e9;
            if gflops > best.0 {
                best = (gflops, n);
            }
        }
    }
    Ok(best)
}

#[derive(Serialize)]
struct TrainPoint {
    backward: &'static str,
    tokens: usize,
    /// forward + backward (+ gradient collection and clipping norm)
    grad_s: f64,
    optimizer_s: f64,
    step_s: f64,
    tokens_per_s: f64,
    gflops: f64,
    peak_rss_mb: f64,
    /// the matmul peak measured in the same process, and the size it was reached at
    matmul_peak_gflops: f64,
    matmul_peak_n: usize,
}

fn train(g: &Global, a: TrainBenchArgs) -> anyhow::Result<ExitCode> {
    use crate::model::Model;
    use crate::train::optim::{clip_factor, AdamConfig, AdamW};
    use crate::train::sft::{autograd_grads, batch_grads, peak_rss_mb};
    use candle_core::{DType, Device};
    use rand::{Rng, SeedableRng};
    let m = resolve_model(g, &a.model)?;
    let (peak, peak_n) = matmul_peak()?;
    eprintln!("matmul peak {peak:.1} GFLOP/s ({peak_n}²)");
    let model = Model::load(&m.path, &Device::Cpu, DType::F32)?;
    let weights_mb = model.params.numel() as f64 * 4.0 / (1 << 20) as f64;
    let mut opt = AdamW::new(model.params.vars.clone(), AdamConfig::default())?;
    let methods: &[&'static str] = match a.backward {
        BackwardChoice::Autograd => &["autograd"],
        BackwardChoice::HandWritten => &["hand-written"],
        // the smaller first: freed memory stays with the process, so a later method's peak
        // includes what an earlier one left
        BackwardChoice::Both => &["hand-written", "autograd"],
    };
    let mut points = Vec::new();
    for &method in methods {
        // the same random sequences for both methods
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for &len in &a.lengths {
            reset_peak_rss();
            let mut runs = Vec::new();
            for i in 0..=a.steps {
                let seq: Vec<u32> = (0..len).map(|_| rng.gen_range(100..model.config.vocab as u32)).collect();
                let t0 = Instant::now();
                let (seqs, scale) = ([(seq, 1)], 1.0 / (len - 1) as f64);
                let grads = if method == "autograd" { autograd_grads(&model, &seqs, 0, scale) } else { batch_grads(&model, &seqs, 0, scale, false) }?.2;
                let (_, f) = clip_factor(&grads, 1.0)?;
                let t1 = Instant::now();
                opt.step(&grads, 1e-7, f)?;
                let t2 = Instant::now();
                if i > 0 {
                    runs.push(((t1 - t0).as_secs_f64(), (t2 - t1).as_secs_f64()));
                }
            }
            let k = runs.len() as f64;
            let (gr, op) = runs.iter().fold((0.0, 0.0), |acc, r| (acc.0 + r.0 / k, acc.1 + r.1 / k));
            let step = gr + op;
            let gflops = model.config.train_flops(len, len) / step / 1e9;
            let p = TrainPoint { backward: method, tokens: len, grad_s: gr, optimizer_s: op, step_s: step, tokens_per_s: len as f64 / step, gflops, peak_rss_mb: peak_rss_mb(), matmul_peak_gflops: peak, matmul_peak_n: peak_n };
            eprintln!("{method}, {len} tokens: gradients {gr:.2}s optimizer {op:.2}s — {:.0} tok/s, {gflops:.1} GFLOP/s, peak {:.0} MiB", p.tokens_per_s, p.peak_rss_mb);
            points.push(p);
        }
    }
    let mut md = String::from("## Training step (candle, CPU)\n\n");
    md.push_str(&format!(
        "Command: `{}` — {} ({} threads), model {} ({:.1} M parameters, f32), one sequence of random tokens per step, loss on every position, {} measured steps after one warm-up; matmul peak measured in the same process: **{peak:.1} GFLOP/s** (f32, the best of 6 runs at each of 1024², 2048² and 3072²; reached at {peak_n}²). FLOPs = 6·N per token (embedding lookup excluded, output projection included) + attention. \
         `autograd`: candle's `backward()`; `hand-written`: the decoder's own backward pass (`Decoder::nll_grads`), which SFT uses on CPU. Gradients s = forward + backward + collecting the gradients and their norm. Peak RSS is the process's, reset before each length; freed memory stays with the process (glibc never trims, see `main.rs`), so the hand-written pass runs first. Date {}.\n\n",
        command_line(),
        crate::util::cpu_model(),
        crate::util::cpus(),
        m.name,
        model.config.n_params() as f64 / 1e6,
        a.steps,
        crate::util::now()
    ));
    md.push_str("| backward | tokens | gradients s | optimizer s | step s | tokens/s | GFLOP/s | % of matmul peak | peak RSS MiB | weights+grads+Adam MiB |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for p in &points {
        md.push_str(&format!(
            "| {} | {} | {:.2} | {:.3} | {:.2} | {:.0} | {:.1} | {:.0}% | {:.0} | {:.0} |\n",
            p.backward, p.tokens, p.grad_s, p.optimizer_s, p.step_s, p.tokens_per_s, p.gflops, 100.0 * p.gflops / peak, p.peak_rss_mb, 4.0 * weights_mb
        ));
    }
    crate::util::write_section(&g.reports.join("perf.md"), "train", &md)?;
    crate::util::write_json(&g.results.join("bench").join("train.json"), &points)?;
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}

/// One setting of `rner bench sft` on one target, averaged over the measured updates.
#[derive(Debug, Serialize)]
struct SftPoint {
    target: crate::train::sft::Target,
    shared: bool,
    updates: usize,
    /// forward + backward of one update (no optimiser step: both settings see the same weights)
    grad_s: f64,
    /// tokens through the model per update
    tokens: f64,
    /// the sequences' own tokens per update
    seq_tokens: f64,
    seq_tokens_per_s: f64,
    peak_rss_mb: f64,
    /// per update: summed loss and gradient norm, to compare the settings
    losses: Vec<f64>,
    grad_norms: Vec<f64>,
}

fn sft(g: &Global, a: SftBenchArgs) -> anyhow::Result<ExitCode> {
    use crate::model::Model;
    use crate::train::optim::clip_factor;
    use crate::train::sft::{plan, sequences, update_grads, SftConfig};
    use candle_core::{DType, Device};
    if a.updates == 0 || a.batch == 0 {
        anyhow::bail!("--updates and --batch must be at least 1");
    }
    let m = resolve_model(g, &a.model)?;
    let records = crate::train::cot::read_records(&a.data)?;
    let tok = crate::model::tokenizer::Tokenizer::load(&m.path)?;
    let model = Model::load(&m.path, &Device::Cpu, DType::F32)?;
    let cfg = SftConfig { epochs: 1, batch: a.batch, micro_tokens: a.micro_tokens, seed: a.seed, ..SftConfig::default() };
    let mut points = Vec::new();
    for &target in &a.targets {
        let (samples, _) = super::train::encode(&tok, &records, target, m.template)?;
        let usable = sequences(&samples, cfg.max_len);
        let steps = plan(usable.len(), &cfg);
        if steps.len() < a.updates + 1 {
            anyhow::bail!("--data {}: {} updates of {} sequences, fewer than --updates {} + 1", a.data.display(), steps.len(), a.batch, a.updates);
        }
        // the smaller first: freed memory stays with the process (see `rner bench train`)
        for shared in [true, false] {
            update_grads(&model, &usable, &steps[0], a.micro_tokens, tok.eos(), shared, 1.0)?;
            reset_peak_rss();
            let (mut secs, mut tokens, mut seq_tokens, mut losses, mut norms) = (0.0, 0usize, 0usize, Vec::new(), Vec::new());
            for step in &steps[1..=a.updates] {
                let t0 = Instant::now();
                let u = update_grads(&model, &usable, step, a.micro_tokens, tok.eos(), shared, 1.0)?;
                let (norm, _) = clip_factor(&u.grads, 1.0)?;
                secs += t0.elapsed().as_secs_f64();
                (tokens, seq_tokens) = (tokens + u.tokens, seq_tokens + u.seq_tokens);
                losses.push(u.loss);
                norms.push(norm);
            }
            let k = a.updates as f64;
            let name = target.name();
            eprintln!("{name}, shared {shared}: {:.2} s per update, {:.0} tokens through the model of {:.0}", secs / k, tokens as f64 / k, seq_tokens as f64 / k);
            points.push(SftPoint {
                target,
                shared,
                updates: a.updates,
                grad_s: secs / k,
                tokens: tokens as f64 / k,
                seq_tokens: seq_tokens as f64 / k,
                seq_tokens_per_s: seq_tokens as f64 / secs,
                peak_rss_mb: crate::train::sft::peak_rss_mb(),
                losses,
                grad_norms: norms,
            });
        }
    }
    let mut md = String::from("## SFT update: the shared prompt start run once (candle, CPU)\n\n");
    md.push_str(&format!(
        "Command: `{}` — {} ({} threads), model {} (f32, hand-written backward), data `{}`, updates 2–{} of `rner sft`'s seeded order (seed {}, {} sequences each, micro-batches of at most {} tokens; update 1 is a warm-up). \
         *whole*: every sequence fed with its prompt, micro-batches bucketed by length (`rner sft --no-share-prefix`). *shared*: micro-batches grouped by prompt, and the start their sequences share (chat header, instruction, schema) run once, its keys and values seen by each sequence (the default). \
         Seconds = forward + backward + gradient norm of one update, no optimiser step, so both settings see the same weights. Tokens = through the model per update (padding included); sequence tokens = the sequences' own. Δ loss, Δ norm = the largest relative difference of an update's loss and gradient norm between the settings. Peak RSS is the process's, reset before each setting (shared first). Date {}.\n\n",
        command_line(),
        crate::util::cpu_model(),
        crate::util::cpus(),
        m.name,
        a.data.display(),
        a.updates + 1,
        a.seed,
        a.batch,
        a.micro_tokens,
        crate::util::now()
    ));
    md.push_str("| target | setting | s per update | tokens through the model | sequence tokens | sequence tokens/s | speed-up | Δ loss | Δ norm | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|---|\n");
    for pair in points.chunks(2) {
        let (sh, whole) = (&pair[0], &pair[1]);
        let rel = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| (a - b).abs() / b.abs().max(1e-12)).fold(0.0, f64::max);
        let name = sh.target.name();
        for p in [whole, sh] {
            let (speed, dl, dn) = if p.shared { (format!("{:.2}×", whole.grad_s / sh.grad_s), format!("{:.1e}", rel(&sh.losses, &whole.losses)), format!("{:.1e}", rel(&sh.grad_norms, &whole.grad_norms))) } else { ("1×".into(), "—".into(), "—".into()) };
            md.push_str(&format!(
                "| {name} | {} | {:.2} | {:.0} | {:.0} | {:.0} | {speed} | {dl} | {dn} | {:.0} |\n",
                if p.shared { "shared" } else { "whole" },
                p.grad_s,
                p.tokens,
                p.seq_tokens,
                p.seq_tokens_per_s,
                p.peak_rss_mb
            ));
        }
    }
    crate::util::write_section(&g.reports.join("perf.md"), "sft", &md)?;
    crate::util::write_json(&g.results.join("bench").join("sft.json"), &points)?;
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}

/// One setting of `rner bench grpo`, averaged over the measured steps.
#[derive(Debug, Serialize)]
struct GrpoPoint {
    pass: crate::train::grpo::Pass,
    steps: usize,
    /// the reference log-prob pass of one step
    logp_s: f64,
    /// the loss forward + backward of one step, gradient norm included (no optimiser step)
    update_s: f64,
    /// tokens through the model per pass (padding included; a shared prompt once)
    tokens: f64,
    completion_tokens: f64,
    peak_rss_mb: f64,
    grad_norms: Vec<f64>,
}

fn grpo(g: &Global, a: GrpoBenchArgs) -> anyhow::Result<ExitCode> {
    use crate::model::Model;
    use crate::train::grpo::{advantages, fixed_logps, update_grads, Objective, Pass, Rollout, ScaleRewards};
    use crate::train::optim::clip_factor;
    use candle_core::{DType, Device};
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    if a.steps == 0 || a.prompts_per_step == 0 || a.num_generations < 2 {
        anyhow::bail!("--steps and --prompts-per-step must be at least 1, --num-generations at least 2");
    }
    let m = resolve_model(g, &a.model)?;
    let records = crate::train::cot::read_records(&a.data)?;
    let tok = crate::model::tokenizer::Tokenizer::load(&m.path)?;
    let model = Model::load(&m.path, &Device::Cpu, DType::F32)?;
    let (samples, _) = super::train::encode(&tok, &records, crate::train::sft::Target::Cot, m.template)?;
    let (p, gen) = (a.prompts_per_step, a.num_generations);
    let need = (a.steps + 1) * p * (gen + 1);
    if samples.len() < need {
        anyhow::bail!("--data {}: {} samples with a rationale, fewer than the {need} that {} steps of {p} prompts × {gen} completions use", a.data.display(), samples.len(), a.steps + 1);
    }
    let mut order: Vec<usize> = (0..samples.len()).collect();
    order.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(a.seed));
    // each step: P prompts, each with G other samples' rationale + answer as its completions, and
    // advantages from rewards that differ within each group
    let mut steps: Vec<Vec<(Vec<u32>, Vec<u32>)>> = Vec::new();
    for s in 0..=a.steps {
        let mut seqs = Vec::with_capacity(p * gen);
        for i in 0..p {
            let base = (s * p + i) * (gen + 1);
            for k in 1..=gen {
                let mut c = samples[order[base + k]].target.clone();
                c.truncate(a.max_completion_length);
                seqs.push((samples[order[base]].prompt.clone(), c));
            }
        }
        steps.push(seqs);
    }
    let rewards: Vec<f64> = (0..p * gen).map(|i| ((i * 7) % gen) as f64).collect();
    let adv = advantages(&rewards, gen, ScaleRewards::Group);
    let obj = Objective { max_completion_length: a.max_completion_length, ..Objective::default() };
    let pad = tok.eos();
    let mut points = Vec::new();
    // the smallest first: freed memory stays with the process (see `rner bench train`)
    for pass in [Pass::Shared, Pass::Whole, Pass::Autograd] {
        let (mut logp_s, mut update_s, mut tokens, mut ctokens, mut norms) = (0.0, 0.0, 0usize, 0usize, Vec::new());
        for (si, seqs) in steps.iter().enumerate() {
            if si == 1 {
                reset_peak_rss();
            }
            let t0 = Instant::now();
            let refl = fixed_logps(&model, seqs, pad, a.micro, pass, obj.temperature)?;
            let t1 = Instant::now();
            let rollouts: Vec<Rollout> = seqs
                .iter()
                .zip(&adv)
                .zip(refl)
                .map(|(((pr, c), &advantage), ref_logp)| Rollout { prompt: pr.clone(), completion: c.clone(), advantage, old_logp: Vec::new(), ref_logp })
                .collect();
            let (stats, fed, grads) = update_grads(&model, &rollouts, &obj, pad, a.micro, pass, true)?;
            let (norm, _) = clip_factor(&grads, 1.0)?;
            let t2 = Instant::now();
            if si == 0 {
                continue; // warm-up
            }
            logp_s += (t1 - t0).as_secs_f64();
            update_s += (t2 - t1).as_secs_f64();
            tokens += fed;
            ctokens += stats.tokens;
            norms.push(norm);
        }
        let k = a.steps as f64;
        eprintln!("{pass:?}: log-probs {:.2} s, update {:.2} s per step, {:.0} tokens through the model per pass", logp_s / k, update_s / k, tokens as f64 / k);
        points.push(GrpoPoint {
            pass,
            steps: a.steps,
            logp_s: logp_s / k,
            update_s: update_s / k,
            tokens: tokens as f64 / k,
            completion_tokens: ctokens as f64 / k,
            peak_rss_mb: crate::train::sft::peak_rss_mb(),
            grad_norms: norms,
        });
    }
    let mut md = String::from("## GRPO passes: the prompt run once for its completions (candle, CPU)\n\n");
    md.push_str(&format!(
        "Command: `{}` — {} ({} threads), model {} (f32), steps 2–{} of {} prompts × {} completions from `{}` (seed {}; each prompt's completions are {} other samples' rationale + answer, cut at {} tokens; step 1 is a warm-up), {} sequences per pass, the reference log-probs taken from the same model. \
         *autograd*: candle's graph, each completion fed with its whole prompt (what `rner grpo` ran before the hand-written pass, and runs on CUDA). *whole*: the hand-written pass, whole prompts (`rner grpo --no-share-prompt`). *shared*: the hand-written pass with the start a pass's sequences share run once — for one prompt's completions, all of the prompt but its last token (the default). \
         Log-prob s = the reference pass of a step; update s = the loss forward + backward + gradient norm (no optimiser step, so every setting sees the same weights). Tokens = through the model per step and pass (padding included). Δ norm = the largest relative difference of a step's gradient norm from autograd's (the loss itself says nothing here: with the reference equal to the policy and one update per batch, every ratio is 1 and every KL 0, so the loss is the advantages' alone). Peak RSS is the process's, reset before each setting's measured steps (shared first). Date {}.\n\n",
        command_line(),
        crate::util::cpu_model(),
        crate::util::cpus(),
        m.name,
        a.steps + 1,
        p,
        gen,
        a.data.display(),
        a.seed,
        gen,
        a.max_completion_length,
        a.micro,
        crate::util::now()
    ));
    md.push_str("| setting | log-prob s per step | update s per step | log-prob + update s | speed-up | tokens through the model | completion tokens | Δ norm | peak RSS MiB |\n|---|---|---|---|---|---|---|---|---|\n");
    let auto = points.iter().find(|p| p.pass == Pass::Autograd).expect("measured");
    let rel = |x: &[f64], y: &[f64]| x.iter().zip(y).map(|(a, b)| (a - b).abs() / b.abs().max(1e-12)).fold(0.0, f64::max);
    for pt in points.iter().rev() {
        let both = pt.logp_s + pt.update_s;
        let dn = if pt.pass == Pass::Autograd { "—".to_string() } else { format!("{:.1e}", rel(&pt.grad_norms, &auto.grad_norms)) };
        md.push_str(&format!(
            "| {} | {:.2} | {:.2} | {:.2} | {:.2}× | {:.0} | {:.0} | {dn} | {:.0} |\n",
            serde_json::to_value(pt.pass)?.as_str().unwrap_or_default(),
            pt.logp_s,
            pt.update_s,
            both,
            (auto.logp_s + auto.update_s) / both,
            pt.tokens,
            pt.completion_tokens,
            pt.peak_rss_mb
        ));
    }
    crate::util::write_section(&g.reports.join("perf.md"), "grpo-pass", &md)?;
    crate::util::write_json(&g.results.join("bench").join("grpo.json"), &points)?;
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}

fn site(g: &Global, a: SiteBenchArgs) -> anyhow::Result<ExitCode> {
    let runs = crate::report::load_runs(&g.results)?;
    let size = |r: &crate::report::Run| r.scores.datasets.values().map(|d| d.sentences).sum::<usize>();
    let run = match &a.run {
        Some(id) => runs.iter().find(|r| &r.id() == id).ok_or_else(|| anyhow::anyhow!("--run {id}: no such run in {}", g.results.display()))?,
        None => runs.iter().max_by_key(|r| size(r)).ok_or_else(|| anyhow::anyhow!("no runs in {}", g.results.display()))?,
    };
    let tmp = tempfile_dir()?;
    let index = crate::report::site::write(std::slice::from_ref(run), &[], &tmp)?;
    let page = index.with_file_name(format!("samples-{}.html", crate::report::file_stem(&run.id())));
    let data = index.parent().expect("site dir").join("data").join(format!("{}.js", crate::report::file_stem(&run.id())));
    let data_mb = std::fs::metadata(&data)?.len() as f64 / (1 << 20) as f64;
    let mut ms = Vec::new();
    for _ in 0..a.repeats {
        let out = std::process::Command::new("chromium")
            .args(["--headless", "--no-sandbox", "--disable-gpu", "--dump-dom"])
            .arg(format!("file://{}", page.canonicalize()?.display()))
            .output()
            .map_err(|e| anyhow::anyhow!("chromium: {e} (apt-get install chromium)"))?;
        let dom = String::from_utf8_lossy(&out.stdout);
        let v: f64 = dom
            .split("data-ms=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| anyhow::anyhow!("the page did not report its load time"))?;
        ms.push(v);
    }
    let _ = std::fs::remove_dir_all(&tmp);
    ms.sort_by(|x, y| x.total_cmp(y));
    let md = format!(
        "## Report site: sample browser load time\n\nCommand: `{}` — {} ({} threads), headless Chromium (`--headless --no-sandbox --disable-gpu`), run `{}` ({} sentences, sample data {:.1} MiB of JS). Time from navigation start until the data script is parsed and the first page of 50 samples is drawn (`performance.now()`), {} loads: median **{:.0} ms** (min {:.0}, max {:.0}). Date {}.\n",
        command_line(),
        crate::util::cpu_model(),
        crate::util::cpus(),
        run.id(),
        size(run),
        data_mb,
        ms.len(),
        ms[ms.len() / 2],
        ms[0],
        ms[ms.len() - 1],
        crate::util::now()
    );
    crate::util::write_section(&g.reports.join("perf.md"), "site", &md)?;
    println!("{md}");
    Ok(ExitCode::SUCCESS)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let d = std::env::temp_dir().join(format!("rner-site-bench-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

/// The OpenMP variables the run had (libgomp's defaults when none: its idle threads spin longer).
fn openmp_note() -> String {
    let vars = crate::run::openmp_env();
    if vars.is_empty() {
        return "libgomp defaults".into();
    }
    vars.iter().map(|(k, v)| format!("`{k}={v}`")).collect::<Vec<_>>().join(", ")
}
