//! llama.cpp engine (llama-cpp-2): GGUF models, continuous batching of many sequences, and the
//! prompt prefix shared by a batch (instruction + schema) decoded once and reused from the KV
//! cache by every sequence, as vLLM's prefix caching does for the paper.
//!
//! A llama.cpp context borrows its model and is not `Send`, so model and context live on a worker
//! thread of their own; [`LlamaEngine`] talks to it over channels.
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use super::{find_stop, Engine, EngineInfo, Finish, GenOutput, GenRequest, Sampling};
use crate::prompt::Rendered;
use crate::{Error, Result};

/// How long llama.cpp's idle OpenMP threads spin before they sleep (libgomp's `GOMP_SPINCOUNT`):
/// the `rner` binary runs with it unless the user set their own, and `.cargo/config.toml` sets it
/// for `cargo test`, whose tests share the cores. See `spin_less_when_cores_are_shared` in main.rs.
pub const GOMP_SPINCOUNT: &str = "1000";

/// Engine settings (all plain data, recorded in manifests).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LlamaSettings {
    /// sequences decoded together in one batch
    pub parallel: usize,
    /// decode the prompt prefix shared by all requests of a call once and reuse its KV
    pub prefix_reuse: bool,
    /// context length available to each sequence (prompt + generated tokens)
    pub ctx_per_seq: usize,
    /// CPU threads (0 = all cores)
    pub threads: usize,
    /// tokens per llama_decode call at most
    pub n_batch: usize,
    /// flash attention (measured slower on this CPU with an f16 KV cache: off by default)
    pub flash_attn: bool,
    /// one KV cache shared by all sequences (the prefix's cells shared, not copied). Off by default:
    /// every token then attends over every sequence's cells (masked), so a step costs O(parallel²);
    /// with one stream per sequence the prefix is copied once per sentence, which is cheap.
    pub kv_unified: bool,
    /// under a grammar, choose each token from the raw logits first and only check it against
    /// the grammar, masking the whole vocabulary only when it is rejected (as llama.cpp's common
    /// sampler does). The same tokens as masking every step, where the sampler allows it (greedy
    /// or plain temperature sampling); off = always mask, for comparison.
    #[serde(default = "yes")]
    pub grammar_check_first: bool,
    /// with check-first under greedy decoding, a rejected first choice is followed by the next
    /// best this many, each checked alone in order, before the whole vocabulary is masked: the
    /// first one accepted is the masked argmax (ties to the lower id, as llama.cpp's greedy
    /// sampler breaks them), so the tokens stay the same (0 = mask at once)
    #[serde(default = "default_ranked")]
    pub grammar_ranked: usize,
    /// prompt-lookup drafting for free greedy decoding: each step, a sequence whose last tokens
    /// occur earlier in its prompt or answer also feeds up to this many of the tokens that followed
    /// them there, and keeps those the model's own argmax confirms (0 = off). The same greedy
    /// choices up to the rounding of multi-token steps, in fewer steps: NER answers copy spans,
    /// labels and JSON from the prompt. Slower on a 2-core CPU, where a step's cost grows with
    /// every token in it (reports/perf.md).
    #[serde(default)]
    pub draft_max: usize,
    /// drafted tokens in one decode step at most, shared by the sequences in it: a full batch
    /// gets short drafts (its step is already compute-bound), the run's tail long ones
    #[serde(default = "draft_budget")]
    pub draft_budget: usize,
    /// the element type of the KV cache's keys and values (llama.cpp's default is f16)
    #[serde(default)]
    pub kv_type: KvType,
}

/// The KV cache's element type: f16 (llama.cpp's default) or f32, which doubles the cache and
/// spares the attention products their f16 conversions (12–15% slower on the 2-core AMD EPYC,
/// `reports/perf.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum KvType {
    #[default]
    F16,
    F32,
}

fn draft_budget() -> usize {
    64
}

fn default_ranked() -> usize {
    32
}

fn yes() -> bool {
    true
}

impl Default for LlamaSettings {
    fn default() -> Self {
        LlamaSettings {
            parallel: 16,
            prefix_reuse: true,
            ctx_per_seq: 4096,
            threads: 0,
            n_batch: 2048,
            flash_attn: false,
            kv_unified: false,
            grammar_check_first: true,
            grammar_ranked: default_ranked(),
            draft_max: 0,
            draft_budget: draft_budget(),
            kv_type: KvType::F16,
        }
    }
}

impl KvType {
    fn cache_type(self) -> llama_cpp_2::context::params::KvCacheType {
        use llama_cpp_2::context::params::KvCacheType;
        match self {
            KvType::F16 => KvCacheType::F16,
            KvType::F32 => KvCacheType::F32,
        }
    }

    fn of(t: llama_cpp_2::context::params::KvCacheType) -> Option<KvType> {
        use llama_cpp_2::context::params::KvCacheType;
        match t {
            KvCacheType::F16 => Some(KvType::F16),
            KvCacheType::F32 => Some(KvType::F32),
            _ => None,
        }
    }
}

/// llama.cpp's backend may be initialised once per process.
pub(crate) fn backend() -> Result<&'static LlamaBackend> {
    static BACKEND: OnceLock<std::result::Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            LlamaBackend::init().map(|mut b| {
                if std::env::var_os("RNER_LLAMA_LOG").is_none() {
                    b.void_logs();
                }
                b
            })
            .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Engine(format!("llama.cpp backend: {e}")))
}

enum Job {
    Generate { reqs: Vec<GenRequest>, events: Sender<Event> },
    Tokenize { text: String, reply: Sender<Result<usize>> },
    Stream { req: GenRequest, sink: StreamSink },
}

/// What a submitted request (see [`LlamaEngine::submit`]) reports as it is decoded.
#[derive(Debug)]
pub enum StreamEvent {
    /// more answer text (whole characters; a stop string's possible start held back)
    Delta(String),
    /// the answer, complete
    Done(GenOutput),
    Failed(Error),
}

/// The sending side of a submitted request's events.
pub type StreamSink = tokio::sync::mpsc::UnboundedSender<StreamEvent>;

enum Event {
    Done(usize, GenOutput),
    Failed(Error),
    Finished,
}

/// A GGUF model on a llama.cpp worker thread.
/// Where decode time went, by kind of `llama_decode` step (for `rner bench generate`).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepTimes {
    /// steps that carry prompt tokens (a prefix, or new sentences' prompt tails, with or without
    /// the running sequences' next tokens)
    pub prompt: StepBucket,
    /// pure decode steps with at least three quarters of the slots busy
    pub full: StepBucket,
    /// pure decode steps with fewer busy slots (the tail of a run, when the queue is empty)
    pub partial: StepBucket,
    /// tokens chosen under a grammar (a lazy one's included before its trigger), and how many of
    /// them had the grammar applied to the whole vocabulary (the first choice and the ranked ones
    /// after it were rejected, or check-first was off or inexact for the sampler), and how many
    /// were found among the ranked choices after a rejected first one
    pub grammar_tokens: usize,
    pub grammar_full_masks: usize,
    pub grammar_ranked_hits: usize,
    /// prompt-lookup tokens fed as drafts, and how many of them the model confirmed
    pub draft_tokens: usize,
    pub draft_accepted: usize,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StepBucket {
    pub steps: usize,
    pub seconds: f64,
    /// tokens decoded (prompt tokens included)
    pub tokens: usize,
}

impl StepBucket {
    fn add(&mut self, tokens: usize, secs: f64) {
        self.steps += 1;
        self.tokens += tokens;
        self.seconds += secs;
    }
}

pub struct LlamaEngine {
    jobs: Option<Sender<Job>>,
    cancel: Arc<AtomicBool>,
    steps: Arc<std::sync::Mutex<StepTimes>>,
    worker: Option<std::thread::JoinHandle<()>>,
    info: EngineInfo,
}

impl LlamaEngine {
    /// Load a GGUF and start its worker thread.
    pub fn load(path: &Path, settings: LlamaSettings) -> Result<LlamaEngine> {
        if !path.exists() {
            return Err(Error::Model { path: path.into(), msg: "no such file (pass --model PATH or a baseline name; `rner fetch-model NAME` fetches one)".into() });
        }
        if settings.parallel == 0 {
            return Err(Error::config("--parallel", "must be at least 1"));
        }
        let (jobs_tx, jobs_rx) = channel::<Job>();
        let (ready_tx, ready_rx) = channel::<Result<EngineInfo>>();
        let cancel = Arc::new(AtomicBool::new(false));
        let worker_cancel = cancel.clone();
        let steps = Arc::new(std::sync::Mutex::new(StepTimes::default()));
        let worker_steps = steps.clone();
        let path: PathBuf = path.into();
        let worker = std::thread::Builder::new()
            .name("llama".into())
            .spawn(move || worker_main(path, settings, jobs_rx, ready_tx, worker_cancel, worker_steps))
            .map_err(|e| Error::Engine(format!("cannot start the llama.cpp worker: {e}")))?;
        let info = ready_rx
            .recv()
            .map_err(|_| Error::Engine("the llama.cpp worker died while loading".into()))??;
        Ok(LlamaEngine { jobs: Some(jobs_tx), cancel, steps, worker: Some(worker), info })
    }

    /// The decode steps' times since the last call (and reset them).
    pub fn take_step_times(&self) -> StepTimes {
        std::mem::take(&mut *self.steps.lock().expect("step times"))
    }

    /// Number of tokens of a text under this model's tokenizer (special tokens parsed).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let (tx, rx) = channel();
        self.send(Job::Tokenize { text: text.to_string(), reply: tx })?;
        rx.recv().map_err(|_| Error::Engine("the llama.cpp worker stopped".into()))?
    }

    /// Queue one request; it joins the running decode batch at the next free slot, and its text
    /// arrives as it grows. Safe to call from many threads at once (this is what `rner serve`
    /// uses). Dropping the receiver abandons the request once its slot is next visited.
    pub fn submit(&self, req: GenRequest) -> Result<tokio::sync::mpsc::UnboundedReceiver<StreamEvent>> {
        let (sink, rx) = tokio::sync::mpsc::unbounded_channel();
        self.send(Job::Stream { req, sink })?;
        Ok(rx)
    }

    fn send(&self, job: Job) -> Result<()> {
        self.jobs
            .as_ref()
            .ok_or_else(|| Error::Engine("engine closed".into()))?
            .send(job)
            .map_err(|_| Error::Engine("the llama.cpp worker stopped".into()))
    }
}

impl Drop for LlamaEngine {
    fn drop(&mut self) {
        self.cancel.store(true, Ordering::SeqCst);
        self.jobs.take();
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

impl Engine for LlamaEngine {
    fn info(&self) -> &EngineInfo {
        &self.info
    }

    fn generate_each(
        &mut self,
        reqs: &[GenRequest],
        on_done: &mut dyn FnMut(usize, GenOutput) -> Result<()>,
    ) -> Result<()> {
        self.cancel.store(false, Ordering::SeqCst);
        let (tx, rx) = channel();
        self.send(Job::Generate { reqs: reqs.to_vec(), events: tx })?;
        let mut failure: Option<Error> = None;
        loop {
            match rx.recv() {
                Ok(Event::Done(i, out)) => {
                    if failure.is_none() {
                        if let Err(e) = on_done(i, out) {
                            // stop the worker, then drain its remaining events
                            self.cancel.store(true, Ordering::SeqCst);
                            failure = Some(e);
                        }
                    }
                }
                Ok(Event::Failed(e)) => return Err(failure.unwrap_or(e)),
                Ok(Event::Finished) => break,
                Err(_) => return Err(failure.unwrap_or_else(|| Error::Engine("the llama.cpp worker stopped".into()))),
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }
}

fn worker_main(
    path: PathBuf,
    settings: LlamaSettings,
    jobs: Receiver<Job>,
    ready: Sender<Result<EngineInfo>>,
    cancel: Arc<AtomicBool>,
    steps: Arc<std::sync::Mutex<StepTimes>>,
) {
    let loaded = (|| -> Result<(LlamaModel, Option<LlamaChatTemplate>)> {
        let backend = backend()?;
        let model = LlamaModel::load_from_file(backend, &path, &LlamaModelParams::default())
            .map_err(|e| Error::Model { path: path.clone(), msg: format!("llama.cpp cannot load it: {e}") })?;
        let tmpl = model.chat_template(None).ok();
        Ok((model, tmpl))
    })();
    let (model, tmpl) = match loaded {
        Ok(x) => x,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let threads = if settings.threads == 0 { crate::util::cpus() } else { settings.threads };
    let backend = match backend() {
        Ok(b) => b,
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    };
    let mut worker = Worker { model: &model, backend, tmpl, settings: settings.clone(), threads, cancel, steps, ctx: None, serve_prefix: Vec::new() };
    // one context of a single sequence's size proves the settings work before the first job
    match worker.context(settings.ctx_per_seq) {
        Ok(c) => worker.ctx = Some((c, settings.ctx_per_seq.div_ceil(256) * 256)),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    }
    let mut recorded = serde_json::json!({
        "parallel": settings.parallel, "prefix_reuse": settings.prefix_reuse,
        "ctx_per_seq": settings.ctx_per_seq, "threads": threads, "n_batch": settings.n_batch,
        "kv_unified": settings.kv_unified, "flash_attn": settings.flash_attn, "llama_cpp_2": "0.1.160",
        "grammar_check_first": settings.grammar_check_first, "grammar_ranked": settings.grammar_ranked,
    });
    // read back from the parameters the contexts are made with; recorded where it is not
    // llama.cpp's default (f16), so earlier manifests read the same
    let params = context_params(&settings, settings.ctx_per_seq, threads);
    if let Some(kv) = KvType::of(params.type_k()).filter(|k| *k != KvType::F16 && KvType::of(params.type_v()) == Some(*k)) {
        recorded["kv_type"] = serde_json::to_value(kv).expect("a plain enum");
    }
    let info = EngineInfo {
        engine: "llama.cpp".into(),
        model: path.display().to_string(),
        n_params: model.n_params(),
        n_ctx_train: model.n_ctx_train(),
        chat_template: worker.tmpl.as_ref().and_then(|t| t.to_string().ok()),
        settings: recorded,
        price: None,
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    let mut deferred: std::collections::VecDeque<Job> = Default::default();
    while let Some(job) = deferred.pop_front().or_else(|| jobs.recv().ok()) {
        match job {
            Job::Tokenize { text, reply } => {
                let _ = reply.send(Ok(worker.tokenize(&text).len()));
            }
            Job::Stream { req, sink } => {
                deferred.extend(worker.serve((req, sink), &jobs));
            }
            Job::Generate { reqs, events } => {
                match worker.generate(&reqs, &events) {
                    Ok(()) => {
                        let _ = events.send(Event::Finished);
                    }
                    Err(e) => {
                        let _ = events.send(Event::Failed(e));
                    }
                }
            }
        }
    }
}

struct Worker<'m> {
    model: &'m LlamaModel,
    backend: &'static LlamaBackend,
    tmpl: Option<LlamaChatTemplate>,
    settings: LlamaSettings,
    threads: usize,
    cancel: Arc<AtomicBool>,
    steps: Arc<std::sync::Mutex<StepTimes>>,
    /// the context and its size in KV cells
    ctx: Option<(LlamaContext<'m>, usize)>,
    /// what sequence 0 holds between served requests
    serve_prefix: Vec<LlamaToken>,
}

/// What a decode step carried.
#[derive(Clone, Copy)]
enum Step {
    Prompt,
    Decode { active: usize },
}

/// A sequence being decoded.
struct Slot {
    tag: usize,
    seq: i32,
    /// position of the next token to add
    pos: i32,
    /// token sampled last, to be fed next step
    next: Option<LlamaToken>,
    /// index of this sequence's logits in the current batch
    logits_at: i32,
    bytes: Vec<u8>,
    /// bytes of `bytes` already streamed
    streamed: usize,
    n_gen: usize,
    /// the sampled tokens, in order
    sampled: Vec<u32>,
    prompt_tokens: usize,
    /// prompt and generated tokens, for prompt-lookup drafts (None when this sequence does not draft)
    hist: Option<Vec<LlamaToken>>,
    /// tokens fed after `next` in the current step, to be confirmed
    draft: Vec<LlamaToken>,
    /// draft length to try next: doubled after a fully confirmed draft, cut to what was confirmed
    /// (at least one) after a rejection
    draft_want: usize,
    sampler: Picker,
    sampling: Sampling,
    started: Instant,
}

/// How one sequence's tokens are chosen.
enum Picker {
    /// one llama.cpp sampler chain; `grammar`: it ends in a grammar that masks every candidate
    Chain { chain: LlamaSampler, grammar: bool },
    /// a grammar checked after the rest of the chain has chosen from the raw logits: the
    /// vocabulary is masked only when the choice is rejected. For greedy decoding the token is the
    /// masked argmax; for temperature sampling, a rejected draw redrawn from the masked
    /// distribution has exactly the masked distribution. `ranked`: under greedy decoding, how many
    /// next-best choices are checked alone before masking (`LlamaSettings::grammar_ranked`).
    CheckFirst { grammar: LlamaSampler, rest: LlamaSampler, cur: Vec<LlamaTokenData>, ranked: usize },
}

/// Whether `grammar` accepts `token` (of logit `logit`) next, checked alone.
fn accepts(grammar: &mut LlamaSampler, token: LlamaToken, logit: f32) -> bool {
    let mut one = LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, logit, 0.0)], false);
    grammar.apply(&mut one);
    one.data[0].logit() > f32::NEG_INFINITY
}

/// The `k` best of `data` other than `skip`, best first, in the order llama.cpp's greedy sampler
/// prefers them (higher logit; among equal logits, the lower id, as it keeps the first maximum);
/// −∞ logits left out. None when a logit is NaN, which that sampler's comparisons do not order.
fn ranked(data: &[LlamaTokenData], skip: LlamaToken, k: usize) -> Option<Vec<(f32, i32)>> {
    let mut top: Vec<(f32, i32)> = Vec::with_capacity(data.len());
    for d in data {
        let l = d.logit();
        if l.is_nan() {
            return None;
        }
        if d.id() != skip && l > f32::NEG_INFINITY {
            // + 0.0 makes −0.0 equal to 0.0, as `>` has it
            top.push((l + 0.0, d.id().0));
        }
    }
    let order = |a: &(f32, i32), b: &(f32, i32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    if k < top.len() {
        top.select_nth_unstable_by(k, order);
        top.truncate(k);
    }
    top.sort_unstable_by(order);
    Some(top)
}

/// Greedy choice under `grammar` among the `k` best of `data` other than `skip` ([`ranked`]):
/// the first the grammar accepts is the masked argmax, since every token after them ranks lower.
/// The grammar judges each candidate on its own, so one pass over the `k` checks them all.
fn ranked_choice(grammar: &mut LlamaSampler, data: &[LlamaTokenData], skip: LlamaToken, k: usize) -> Option<LlamaToken> {
    let top = ranked(data, skip, k)?;
    let mut arr = LlamaTokenDataArray::new(top.iter().map(|&(l, id)| LlamaTokenData::new(LlamaToken(id), l, 0.0)).collect(), false);
    grammar.apply(&mut arr);
    arr.data.iter().find(|d| d.logit() > f32::NEG_INFINITY).map(|d| d.id())
}

impl Picker {
    /// The next token from output `idx` of the last decode, accepted by every sampler; counts
    /// constrained tokens and full-vocabulary masks into `st`.
    fn pick(&mut self, ctx: &LlamaContext<'_>, idx: i32, st: &std::sync::Mutex<StepTimes>) -> LlamaToken {
        match self {
            Picker::Chain { chain, grammar } => {
                let token = chain.sample(ctx, idx);
                if *grammar {
                    let mut st = st.lock().expect("step times");
                    st.grammar_tokens += 1;
                    st.grammar_full_masks += 1;
                }
                token
            }
            Picker::CheckFirst { grammar, rest, cur, ranked } => {
                let logits = ctx.get_logits_ith(idx);
                let fill = |cur: &mut Vec<LlamaTokenData>| {
                    cur.clear();
                    cur.extend(logits.iter().enumerate().map(|(i, &l)| LlamaTokenData::new(LlamaToken(i as i32), l, 0.0)));
                };
                fill(cur);
                let mut arr = LlamaTokenDataArray::new(std::mem::take(cur), false);
                rest.apply(&mut arr);
                let first = arr.selected_token().expect("the sampler chain ends in a selecting sampler");
                let allowed = accepts(grammar, first, logits[first.0 as usize]);
                // ranked by the logits the chain chose from (a penalty sampler's included)
                let next = if allowed || *ranked == 0 { None } else { ranked_choice(grammar, &arr.data, first, *ranked) };
                let token = if allowed {
                    first
                } else if let Some(t) = next {
                    t
                } else {
                    let mut buf = arr.data;
                    fill(&mut buf);
                    arr = LlamaTokenDataArray::new(buf, false);
                    grammar.apply(&mut arr);
                    rest.apply(&mut arr);
                    arr.selected_token().expect("the grammar leaves a token")
                };
                *cur = arr.data;
                grammar.accept(token);
                rest.accept(token);
                let mut st = st.lock().expect("step times");
                st.grammar_tokens += 1;
                st.grammar_full_masks += usize::from(!allowed && next.is_none());
                st.grammar_ranked_hits += usize::from(next.is_some());
                token
            }
        }
    }
}

/// The parameters of a llama.cpp context of `cells` KV cells under `settings` (what every context
/// is made with, and what the engine's recorded settings are read from).
fn context_params(settings: &LlamaSettings, cells: usize, threads: usize) -> LlamaContextParams {
    LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(cells as u32))
        .with_n_batch(settings.n_batch as u32)
        .with_n_ubatch(settings.n_batch.min(512) as u32)
        .with_n_seq_max((settings.parallel + 1) as u32) // seq 0 holds the shared prefix
        .with_kv_unified(settings.kv_unified)
        .with_flash_attention_policy(if settings.flash_attn { 1 } else { 0 })
        .with_type_k(settings.kv_type.cache_type())
        .with_type_v(settings.kv_type.cache_type())
        .with_swa_full(true)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32)
}

impl<'m> Worker<'m> {
    /// A context of about `cells` KV cells, reusing the current one when its size fits. Sized to
    /// the job rather than to `parallel × --ctx`: attention runs over every cell up to the highest
    /// one in use, so an oversized unified cache makes each decode step slower.
    fn context(&mut self, cells: usize) -> Result<LlamaContext<'m>> {
        let cells = cells.div_ceil(256) * 256;
        if let Some((ctx, have)) = self.ctx.take() {
            if have >= cells && have <= 2 * cells {
                return Ok(ctx);
            }
        }
        // a new context holds no KV: nothing is left of a served prefix
        self.serve_prefix.clear();
        let params = context_params(&self.settings, cells, self.threads);
        self.model.new_context(self.backend, params).map_err(|e| {
            let kv = if self.settings.kv_type == KvType::F16 { "" } else { ", or drop --kv-type f32" };
            Error::Engine(format!("cannot create a llama.cpp context of {cells} tokens: {e} (lower --ctx or --parallel{kv})"))
        })
    }

    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), true, true)
    }

    fn prompt_text(&self, r: &Rendered) -> Result<String> {
        prompt_text(self.model, r)
    }

    fn sampler(&self, s: &Sampling) -> Result<Picker> {
        let mut chain = Vec::new();
        if s.repeat_penalty != 1.0 {
            chain.push(LlamaSampler::penalties(self.model.n_vocab(), 64, s.repeat_penalty, 0.0, 0.0));
        }
        let Some(c) = &s.constraint else {
            return Ok(Picker::Chain { chain: Self::finish_chain(s, chain), grammar: false });
        };
        let grammar = match &c.after {
            None => LlamaSampler::grammar(self.model, &c.gbnf, "root"),
            Some(trigger) => LlamaSampler::grammar_lazy(self.model, &c.gbnf, "root", [trigger.as_bytes()], &[]),
        }
        .map_err(|e| Error::Engine(format!("llama.cpp rejects the {} grammar: {e}", c.decoding.name())))?;
        // top-k / top-p over all tokens then a check is not top-k / top-p over the allowed ones
        let exact = s.temperature <= 0.0 || (s.top_k <= 0 && s.top_p >= 1.0);
        if self.settings.grammar_check_first && exact {
            let ranked = if s.temperature <= 0.0 { self.settings.grammar_ranked } else { 0 };
            return Ok(Picker::CheckFirst { grammar, rest: Self::finish_chain(s, chain), cur: Vec::new(), ranked });
        }
        chain.push(grammar);
        Ok(Picker::Chain { chain: Self::finish_chain(s, chain), grammar: true })
    }

    fn finish_chain(s: &Sampling, mut chain: Vec<LlamaSampler>) -> LlamaSampler {
        if s.temperature <= 0.0 {
            if chain.is_empty() {
                return LlamaSampler::greedy();
            }
            chain.push(LlamaSampler::greedy());
            return LlamaSampler::chain_simple(chain);
        }
        if s.top_k > 0 {
            chain.push(LlamaSampler::top_k(s.top_k));
        }
        if s.top_p < 1.0 {
            chain.push(LlamaSampler::top_p(s.top_p, 1));
        }
        chain.push(LlamaSampler::temp(s.temperature));
        chain.push(LlamaSampler::dist(s.seed as u32));
        LlamaSampler::chain_simple(chain)
    }

    fn generate(&mut self, reqs: &[GenRequest], events: &Sender<Event>) -> Result<()> {
        if reqs.is_empty() {
            return Ok(());
        }
        let prompts: Vec<Vec<LlamaToken>> = reqs
            .iter()
            .map(|r| self.prompt_text(&r.prompt).map(|t| self.tokenize(&t)))
            .collect::<Result<_>>()?;
        for (p, r) in prompts.iter().zip(reqs) {
            if p.is_empty() {
                return Err(Error::Engine("empty prompt".into()));
            }
            if p.len() + r.sampling.max_tokens > self.settings.ctx_per_seq {
                return Err(Error::Context { prompt: p.len(), max_tokens: r.sampling.max_tokens, n_ctx: self.settings.ctx_per_seq });
            }
        }
        // the longest token prefix shared by every prompt, leaving each at least one own token
        let prefix_len = if self.settings.prefix_reuse {
            let first = &prompts[0];
            let mut n = first.len();
            for p in &prompts[1..] {
                n = n.min(common_prefix(first, p));
            }
            let shortest = prompts.iter().map(Vec::len).min().unwrap_or(0);
            n.min(shortest.saturating_sub(1))
        } else {
            0
        };
        // worst case in use at once: the prefix plus the longest tail + answer in every slot;
        // slack for fragmentation of the unified cache
        let per_seq = prompts.iter().zip(reqs).map(|(p, r)| p.len() - prefix_len + r.sampling.max_tokens).max().unwrap_or(0);
        let slots_used = self.settings.parallel.min(reqs.len());
        let cells = if self.settings.kv_unified {
            prefix_len + slots_used * per_seq
        } else {
            // one stream per sequence (the prefix's included), each as long as the longest
            (self.settings.parallel + 1) * (prefix_len + per_seq)
        };
        let mut ctx = self.context(cells + cells / 4 + 256)?;
        let cells_have = ctx.n_ctx() as usize;
        ctx.clear_kv_cache();
        self.serve_prefix.clear();
        let mut prefix = prompts[0][..prefix_len].to_vec();
        let result = self.decode_prefix(&mut ctx, &prefix).and_then(|()| {
            let mut src = BatchSource { prompts, reqs, next: 0, events };
            self.decode_loop(&mut ctx, &mut src, &mut prefix, false)
        });
        self.ctx = Some((ctx, cells_have));
        result
    }

    /// Serve streamed requests, starting with `first`, taking more as they arrive while any
    /// sequence is decoding; returns when all are answered. Other jobs that arrive meanwhile
    /// are answered (tokenize) or handed back (batches) to run next.
    fn serve(&mut self, first: (GenRequest, StreamSink), jobs: &Receiver<Job>) -> Vec<Job> {
        let cells = (self.settings.parallel + 1) * self.settings.ctx_per_seq;
        let mut ctx = match self.context(cells) {
            Ok(c) => c,
            Err(e) => {
                let _ = first.1.send(StreamEvent::Failed(e));
                return Vec::new();
            }
        };
        let cells_have = ctx.n_ctx() as usize;
        let mut prefix = std::mem::take(&mut self.serve_prefix);
        if prefix.is_empty() {
            ctx.clear_kv_cache();
        }
        let mut src = StreamSource { first: Some(first), jobs, sinks: Vec::new(), deferred: Vec::new(), worker_tokenize: self.model };
        if let Err(e) = self.decode_loop(&mut ctx, &mut src, &mut prefix, true) {
            for s in src.sinks.iter().flatten() {
                let _ = s.send(StreamEvent::Failed(Error::Engine(e.to_string())));
            }
            // the cache may be half-updated: start the next request from scratch
            prefix.clear();
            ctx.clear_kv_cache();
        }
        self.serve_prefix = prefix;
        self.ctx = Some((ctx, cells_have));
        std::mem::take(&mut src.deferred)
    }

    /// Decode `prefix` on sequence 0.
    fn decode_prefix(&self, ctx: &mut LlamaContext<'m>, prefix: &[LlamaToken]) -> Result<()> {
        let n_batch = self.settings.n_batch;
        let mut batch = LlamaBatch::new(n_batch, 1);
        ctx.clear_kv_cache_seq(Some(0), None, None).map_err(|e| engine_err(&e))?;
        for (ci, chunk) in prefix.chunks(n_batch).enumerate() {
            batch.clear();
            for (j, t) in chunk.iter().enumerate() {
                batch.add(*t, (ci * n_batch + j) as i32, &[0], false).map_err(|e| engine_err(&e))?;
            }
            self.timed_decode(ctx, &mut batch, Step::Prompt)?;
        }
        Ok(())
    }

    /// One `llama_decode`, its time added to the step times under `kind`.
    fn timed_decode(&self, ctx: &mut LlamaContext<'m>, batch: &mut LlamaBatch, kind: Step) -> Result<()> {
        let t = Instant::now();
        let n = batch.n_tokens() as usize;
        ctx.decode(batch).map_err(|e| engine_err(&e))?;
        let secs = t.elapsed().as_secs_f64();
        let mut st = self.steps.lock().expect("step times");
        match kind {
            Step::Prompt => st.prompt.add(n, secs),
            Step::Decode { active } if active * 4 >= self.settings.parallel * 3 => st.full.add(n, secs),
            Step::Decode { .. } => st.partial.add(n, secs),
        }
        Ok(())
    }

    /// Continuous batching: every active sequence advances one token per step; free slots take
    /// the next request, whose prompt reuses the KV of the tokens it shares with `prefix`
    /// (sequence 0). With `reseed`, an idle engine replaces the prefix by a request's prompt
    /// when it shares less than half of it (a server sees prompts it cannot know in advance).
    fn decode_loop(
        &mut self,
        ctx: &mut LlamaContext<'m>,
        src: &mut dyn Source,
        prefix: &mut Vec<LlamaToken>,
        reseed: bool,
    ) -> Result<()> {
        let n_batch = self.settings.n_batch;
        let mut batch = LlamaBatch::new(n_batch, (self.settings.parallel + 1) as i32);
        let mut waiting: Option<Start> = None;
        let mut slots: Vec<Option<Slot>> = (0..self.settings.parallel).map(|_| None).collect();
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(Error::Interrupted);
            }
            batch.clear();
            let mut used = 0usize;
            // continue every active sequence by one token, and drafts where it has them
            let active = slots.iter().flatten().filter(|s| s.next.is_some()).count();
            let draft_len = self.settings.draft_budget.checked_div(active).map_or(0, |share| self.settings.draft_max.min(share));
            for s in slots.iter_mut().flatten() {
                if let Some(t) = s.next.take() {
                    s.logits_at = batch.n_tokens();
                    batch.add(t, s.pos, &[s.seq], true).map_err(|e| engine_err(&e))?;
                    s.pos += 1;
                    used += 1;
                    if let Some(hist) = &s.hist {
                        let room = s.sampling.max_tokens.saturating_sub(s.n_gen + 1);
                        lookup_draft(hist, draft_len.min(room).min(s.draft_want), &mut s.draft);
                        for &d in &s.draft {
                            batch.add(d, s.pos, &[s.seq], true).map_err(|e| engine_err(&e))?;
                            s.pos += 1;
                        }
                        used += s.draft.len();
                    }
                }
            }
            let mut continued = used;
            // start new requests in free slots while their prompt tail fits in this batch
            for si in 0..slots.len() {
                if slots[si].is_some() {
                    continue;
                }
                let st = loop {
                    let Some(st) = waiting.take().or_else(|| src.next()) else { break None };
                    let max_tokens = if st.sampling.max_tokens == 0 {
                        self.settings.ctx_per_seq.saturating_sub(st.tokens.len())
                    } else {
                        st.sampling.max_tokens
                    };
                    if st.tokens.is_empty() {
                        src.done(st.tag, Err(Error::Engine("empty prompt".into())))?;
                    } else if max_tokens == 0 || st.tokens.len() + max_tokens > self.settings.ctx_per_seq {
                        let e = Error::Context { prompt: st.tokens.len(), max_tokens, n_ctx: self.settings.ctx_per_seq };
                        src.done(st.tag, Err(e))?;
                    } else {
                        break Some(Start { sampling: Sampling { max_tokens, ..st.sampling }, ..st });
                    }
                };
                let Some(st) = st else { break };
                let sampler = match self.sampler(&st.sampling) {
                    Ok(x) => x,
                    Err(e) => {
                        src.done(st.tag, Err(e))?;
                        continue;
                    }
                };
                let mut shared = common_prefix(prefix, &st.tokens).min(st.tokens.len() - 1);
                let idle = batch.n_tokens() == 0 && slots.iter().all(Option::is_none);
                if reseed && self.settings.prefix_reuse && idle && shared < st.tokens.len() / 2 {
                    *prefix = st.tokens[..st.tokens.len() - 1].to_vec();
                    self.decode_prefix(ctx, prefix)?;
                    shared = prefix.len();
                }
                let tail = &st.tokens[shared..];
                if used + tail.len() > n_batch && used > 0 {
                    waiting = Some(st);
                    break;
                }
                let seq = (si + 1) as i32;
                ctx.clear_kv_cache_seq(Some(seq as u32), None, None).map_err(|e| engine_err(&e))?;
                if shared > 0 {
                    // a copy across KV streams takes the whole stream: drop what is not shared
                    ctx.copy_kv_cache_seq(0, seq, None, None).map_err(|e| engine_err(&e))?;
                    ctx.clear_kv_cache_seq(Some(seq as u32), Some(shared as u32), None).map_err(|e| engine_err(&e))?;
                }
                // a prompt tail longer than a batch is decoded in chunks first
                let mut pos = shared;
                let mut rest = tail;
                while used + rest.len() > n_batch {
                    let take = n_batch - used;
                    for t in &rest[..take] {
                        batch.add(*t, pos as i32, &[seq], false).map_err(|e| engine_err(&e))?;
                        pos += 1;
                    }
                    self.timed_decode(ctx, &mut batch, Step::Prompt)?;
                    batch.clear();
                    used = 0;
                    continued = 0;
                    rest = &rest[take..];
                }
                for (j, t) in rest.iter().enumerate() {
                    batch.add(*t, pos as i32, &[seq], j + 1 == rest.len()).map_err(|e| engine_err(&e))?;
                    pos += 1;
                }
                used += rest.len();
                // drafts are confirmed by the argmax alone: free greedy decoding with a stateless sampler
                let drafts = self.settings.draft_max > 0
                    && st.sampling.temperature <= 0.0
                    && st.sampling.repeat_penalty == 1.0
                    && st.sampling.constraint.is_none();
                slots[si] = Some(Slot {
                    tag: st.tag,
                    seq,
                    pos: pos as i32,
                    next: None,
                    logits_at: batch.n_tokens() - 1,
                    bytes: Vec::new(),
                    streamed: 0,
                    n_gen: 0,
                    sampled: Vec::new(),
                    prompt_tokens: st.tokens.len(),
                    hist: drafts.then(|| st.tokens.clone()),
                    draft: Vec::new(),
                    draft_want: 1,
                    sampler,
                    sampling: st.sampling,
                    started: Instant::now(),
                });
            }
            if batch.n_tokens() == 0 {
                break;
            }
            let kind = if batch.n_tokens() as usize > continued { Step::Prompt } else { Step::Decode { active } };
            self.timed_decode(ctx, &mut batch, kind)?;
            let vocab = self.model.vocab();
            for slot in slots.iter_mut() {
                let Some(s) = slot.as_mut() else { continue };
                if src.abandoned(s.tag) {
                    // the client went away: free the slot
                    src.done(s.tag, Err(Error::Interrupted))?;
                    *slot = None;
                    continue;
                }
                // the token after `next`, then after each draft token the model confirms
                let mut finish = None;
                let mut confirmed = 0;
                loop {
                    let token = s.sampler.pick(&*ctx, s.logits_at + confirmed as i32, &self.steps);
                    s.n_gen += 1;
                    s.sampled.push(token.0 as u32);
                    if vocab.is_eog(token) {
                        finish = Some(Finish::Stop);
                    } else {
                        vocab.token_to_piece_into(token, &mut s.bytes, false, None);
                        let stopped = !s.sampling.stop.is_empty() && find_stop(&lossy(&s.bytes), &s.sampling.stop).is_some();
                        if stopped || s.sampling.stop_at_json && crate::prompt::grammar::json_object_end(&lossy(&s.bytes)).is_some() {
                            finish = Some(Finish::Stop);
                        } else if s.n_gen >= s.sampling.max_tokens {
                            finish = Some(Finish::Length);
                        }
                    }
                    if finish.is_some() {
                        break;
                    }
                    if let Some(hist) = &mut s.hist {
                        hist.push(token);
                    }
                    if s.draft.get(confirmed) == Some(&token) {
                        // already in the KV cache, its logits in this batch
                        confirmed += 1;
                        continue;
                    }
                    s.next = Some(token);
                    let rejected = s.draft.len() - confirmed;
                    if rejected > 0 {
                        s.pos -= rejected as i32;
                        ctx.clear_kv_cache_seq(Some(s.seq as u32), Some(s.pos as u32), None).map_err(|e| engine_err(&e))?;
                    }
                    if src.streams(s.tag) {
                        let upto = streamable(&s.bytes, &s.sampling.stop);
                        if upto > s.streamed {
                            let delta = String::from_utf8_lossy(&s.bytes[s.streamed..upto]).into_owned();
                            s.streamed = upto;
                            src.delta(s.tag, delta);
                        }
                    }
                    break;
                }
                if !s.draft.is_empty() {
                    let mut st = self.steps.lock().expect("step times");
                    st.draft_tokens += s.draft.len();
                    st.draft_accepted += confirmed;
                    s.draft_want = if confirmed == s.draft.len() { 2 * s.draft.len() } else { confirmed.max(1) };
                    s.draft.clear();
                }
                if let Some(finish) = finish {
                    let s = slot.take().expect("slot is active");
                    let mut text = lossy(&s.bytes);
                    if let Some(cut) = find_stop(&text, &s.sampling.stop) {
                        text.truncate(cut);
                    }
                    // a constrained answer cut by the cap or by a stop string (a completion prompt's
                    // "\n\n" may fall between its brackets) is closed, so that it always parses; one
                    // the grammar ended is complete and stays as it is
                    if let Some(c) = &s.sampling.constraint {
                        if let Some(closed) = crate::prompt::grammar::close_answer(&text, c.after.as_deref()) {
                            text = closed;
                        }
                    }
                    if src.streams(s.tag) && text.len() > s.streamed {
                        src.delta(s.tag, text[s.streamed..].to_string());
                    }
                    let out = GenOutput {
                        text,
                        reasoning: None,
                        prompt_tokens: s.prompt_tokens,
                        gen_tokens: s.n_gen,
                        finish,
                        latency_ms: s.started.elapsed().as_secs_f64() * 1000.0,
                        tokens: s.sampled,
                    };
                    src.done(s.tag, Ok(out))?;
                }
            }
        }
        Ok(())
    }
}

fn engine_err(e: &dyn std::fmt::Display) -> Error {
    Error::Engine(format!("llama.cpp: {e}"))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Prompt-lookup drafting: the tokens that followed the latest earlier occurrence of `hist`'s last
/// three tokens (or, failing that, two) in `hist`, at most `max` of them, into `out`.
fn lookup_draft(hist: &[LlamaToken], max: usize, out: &mut Vec<LlamaToken>) {
    out.clear();
    if max == 0 {
        return;
    }
    for n in (LOOKUP_MIN_NGRAM..=LOOKUP_MAX_NGRAM).rev() {
        if hist.len() <= n {
            continue;
        }
        let key = &hist[hist.len() - n..];
        if let Some(j) = (0..hist.len() - n).rev().find(|&j| &hist[j..j + n] == key) {
            let from = j + n;
            out.extend_from_slice(&hist[from..(from + max).min(hist.len())]);
            return;
        }
    }
}

const LOOKUP_MIN_NGRAM: usize = 2;
const LOOKUP_MAX_NGRAM: usize = 3;

/// Tokens two prompts share from the start.
fn common_prefix(a: &[LlamaToken], b: &[LlamaToken]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many bytes of a growing answer can be streamed: whole UTF-8 characters only, holding back
/// the tail a stop string might still begin in.
fn streamable(bytes: &[u8], stop: &[String]) -> usize {
    let valid = match std::str::from_utf8(bytes) {
        Ok(s) => s.len(),
        Err(e) => e.valid_up_to(),
    };
    let hold = stop.iter().map(|s| s.len().saturating_sub(1)).max().unwrap_or(0);
    let mut upto = valid.saturating_sub(hold);
    let text = std::str::from_utf8(&bytes[..valid]).expect("checked above");
    while !text.is_char_boundary(upto) {
        upto -= 1;
    }
    upto
}

/// A request ready to start: its prompt tokens and sampling, and who gets the answer.
struct Start {
    tag: usize,
    tokens: Vec<LlamaToken>,
    sampling: Sampling,
}

/// Where the decode loop takes requests from and delivers answers to.
trait Source {
    /// The next request, if one is waiting (never blocks).
    fn next(&mut self) -> Option<Start>;
    /// Whether this request wants its text as it grows.
    fn streams(&self, _tag: usize) -> bool {
        false
    }
    fn delta(&mut self, _tag: usize, _text: String) {}
    /// Whether nobody waits for this request any more.
    fn abandoned(&self, _tag: usize) -> bool {
        false
    }
    /// An answer (or this request's own failure); an error stops the loop.
    fn done(&mut self, tag: usize, out: Result<GenOutput>) -> Result<()>;
}

/// A fixed batch of requests (eval): answers go back in any order, tagged by index.
struct BatchSource<'a> {
    prompts: Vec<Vec<LlamaToken>>,
    reqs: &'a [GenRequest],
    next: usize,
    events: &'a Sender<Event>,
}

impl Source for BatchSource<'_> {
    fn next(&mut self) -> Option<Start> {
        let i = self.next;
        let tokens = std::mem::take(self.prompts.get_mut(i)?);
        self.next += 1;
        Some(Start { tag: i, tokens, sampling: self.reqs[i].sampling.clone() })
    }

    fn done(&mut self, tag: usize, out: Result<GenOutput>) -> Result<()> {
        let event = match out {
            Ok(o) => Event::Done(tag, o),
            Err(e) => return Err(e),
        };
        self.events.send(event).map_err(|_| Error::Interrupted)
    }
}

/// Requests arriving on the job channel while the loop runs (rner serve).
struct StreamSource<'a, 'm> {
    first: Option<(GenRequest, StreamSink)>,
    jobs: &'a Receiver<Job>,
    /// tag → the request's event channel (None once answered)
    sinks: Vec<Option<StreamSink>>,
    /// batch jobs that arrived meanwhile, run after
    deferred: Vec<Job>,
    worker_tokenize: &'m LlamaModel,
}

impl StreamSource<'_, '_> {
    fn start(&mut self, req: GenRequest, sink: StreamSink, text: Result<String>) -> Option<Start> {
        let tag = self.sinks.len();
        match text {
            Ok(t) => {
                let tokens = self.worker_tokenize.vocab().tokenize(t.as_bytes(), true, true);
                self.sinks.push(Some(sink));
                Some(Start { tag, tokens, sampling: req.sampling })
            }
            Err(e) => {
                let _ = sink.send(StreamEvent::Failed(e));
                None
            }
        }
    }
}

impl Source for StreamSource<'_, '_> {
    fn next(&mut self) -> Option<Start> {
        loop {
            let (req, sink) = match self.first.take() {
                Some(f) => f,
                None => match self.jobs.try_recv() {
                    Ok(Job::Stream { req, sink }) => (req, sink),
                    Ok(Job::Tokenize { text, reply }) => {
                        let n = self.worker_tokenize.vocab().tokenize(text.as_bytes(), true, true).len();
                        let _ = reply.send(Ok(n));
                        continue;
                    }
                    Ok(job) => {
                        self.deferred.push(job);
                        continue;
                    }
                    Err(_) => return None,
                },
            };
            if sink.is_closed() {
                continue; // the client went away before it started
            }
            let text = prompt_text(self.worker_tokenize, &req.prompt);
            if let Some(st) = self.start(req, sink, text) {
                return Some(st);
            }
        }
    }

    fn streams(&self, tag: usize) -> bool {
        matches!(self.sinks.get(tag), Some(Some(_)))
    }

    fn abandoned(&self, tag: usize) -> bool {
        matches!(self.sinks.get(tag), Some(Some(s)) if s.is_closed())
    }

    fn delta(&mut self, tag: usize, text: String) {
        if let Some(Some(s)) = self.sinks.get(tag) {
            let _ = s.send(StreamEvent::Delta(text));
        }
    }

    fn done(&mut self, tag: usize, out: Result<GenOutput>) -> Result<()> {
        if let Some(s) = self.sinks.get_mut(tag).and_then(Option::take) {
            let _ = s.send(match out {
                Ok(o) => StreamEvent::Done(o),
                Err(e) => StreamEvent::Failed(e),
            });
        }
        Ok(())
    }
}

/// llama.cpp's logits at every position of one token sequence (for checking another
/// implementation of the same model against it).
pub fn position_logits(path: &Path, tokens: &[u32], threads: usize) -> Result<Vec<Vec<f32>>> {
    let backend = backend()?;
    let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
        .map_err(|e| Error::Model { path: path.into(), msg: e.to_string() })?;
    let n = tokens.len().max(1);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new((n as u32).max(64)))
        .with_n_batch(n as u32)
        .with_n_ubatch(n as u32)
        .with_n_threads(threads as i32)
        .with_n_threads_batch(threads as i32);
    let mut ctx = model.new_context(backend, params).map_err(|e| engine_err(&e))?;
    let mut batch = LlamaBatch::new(n, 1);
    for (i, &t) in tokens.iter().enumerate() {
        batch.add(LlamaToken(t as i32), i as i32, &[0], true).map_err(|e| engine_err(&e))?;
    }
    ctx.decode(&mut batch).map_err(|e| engine_err(&e))?;
    Ok((0..tokens.len()).map(|i| ctx.get_logits_ith(i as i32).to_vec()).collect())
}

/// The prompt text: the request's own text, or the model's chat template applied.
pub(crate) fn prompt_text(model: &LlamaModel, r: &Rendered) -> Result<String> {
    if let Some(t) = &r.text {
        return Ok(t.clone());
    }
    let tmpl = model
        .chat_template(None)
        .map_err(|_| Error::Engine("the model has no chat template: use --template completion or qwen".into()))?;
    let msgs = r
        .messages
        .iter()
        .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| Error::Engine(format!("chat message: {e}")))?;
    model
        .apply_chat_template(&tmpl, &msgs, true)
        .map_err(|e| Error::Engine(format!("applying the model's chat template: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranked_choices_follow_the_greedy_samplers_order() {
        let data = |l: &[f32]| l.iter().enumerate().map(|(i, &x)| LlamaTokenData::new(LlamaToken(i as i32), x, 0.0)).collect::<Vec<_>>();
        let ids = |v: Option<Vec<(f32, i32)>>| v.map(|v| v.into_iter().map(|(_, id)| id).collect::<Vec<_>>());
        // the chosen token (id 1) is skipped; equal logits go to the lower id; −∞ never ranks
        let d = data(&[1.0, 9.0, 3.0, f32::NEG_INFINITY, 3.0, 2.0]);
        assert_eq!(ids(ranked(&d, LlamaToken(1), 10)), Some(vec![2, 4, 5, 0]));
        assert_eq!(ids(ranked(&d, LlamaToken(1), 2)), Some(vec![2, 4]));
        assert_eq!(ids(ranked(&d, LlamaToken(1), 1)), Some(vec![2]));
        assert_eq!(ids(ranked(&d, LlamaToken(1), 0)), Some(vec![]));
        // −0.0 and 0.0 are equal to the sampler's `>`: the lower id first
        assert_eq!(ids(ranked(&data(&[5.0, 0.0, -0.0]), LlamaToken(0), 2)), Some(vec![1, 2]));
        assert_eq!(ids(ranked(&data(&[5.0, -0.0, 0.0]), LlamaToken(0), 2)), Some(vec![1, 2]));
        // a NaN logit: no ranking (the caller masks the whole vocabulary instead)
        assert_eq!(ranked(&data(&[1.0, f32::NAN, 0.5]), LlamaToken(0), 2), None);
    }

    #[test]
    fn streaming_holds_back_partial_characters_and_stop_prefixes() {
        assert_eq!(streamable(b"abc", &[]), 3);
        // "é" is two bytes; only its first has arrived
        assert_eq!(streamable(&[b'a', 0xC3], &[]), 1);
        // a stop string of 3 bytes may begin in the last 2
        assert_eq!(streamable(b"hello", &["END".to_string()]), 3);
        assert_eq!(streamable("aé".as_bytes(), &["xy".to_string()]), 1);
    }

    #[test]
    fn lookup_drafts_follow_the_latest_earlier_match_of_the_last_tokens() {
        let t = |v: &[i32]| v.iter().map(|&x| LlamaToken(x)).collect::<Vec<_>>();
        let mut out = Vec::new();
        // last three tokens 1 2 3 occur at 0 and 5; the later match is followed by 9 9
        lookup_draft(&t(&[1, 2, 3, 4, 5, 1, 2, 3, 9, 9, 7, 1, 2, 3]), 4, &mut out);
        assert_eq!(out, t(&[9, 9, 7, 1]));
        // capped by `max`, and by the history's end
        lookup_draft(&t(&[1, 2, 3, 4, 5, 1, 2, 3, 9, 9, 7, 1, 2, 3]), 1, &mut out);
        assert_eq!(out, t(&[9]));
        lookup_draft(&t(&[5, 6, 7, 5, 6]), 8, &mut out);
        assert_eq!(out, t(&[7, 5, 6]));
        // no three-token match: the last two tokens (8 6) decide
        lookup_draft(&t(&[8, 6, 1, 4, 8, 6]), 3, &mut out);
        assert_eq!(out, t(&[1, 4, 8]));
        // a single shared token is not enough; nothing to draft, or drafting off
        lookup_draft(&t(&[3, 1, 4, 1]), 3, &mut out);
        assert_eq!(out, t(&[]));
        lookup_draft(&t(&[5, 6, 7, 5, 6]), 0, &mut out);
        assert!(out.is_empty());
    }
}
