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
use llama_cpp_2::token::LlamaToken;
use serde::{Deserialize, Serialize};

use super::{find_stop, Engine, EngineInfo, Finish, GenOutput, GenRequest, Sampling};
use crate::prompt::Rendered;
use crate::{Error, Result};

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
        }
    }
}

/// llama.cpp's backend may be initialised once per process.
fn backend() -> Result<&'static LlamaBackend> {
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
}

enum Event {
    Done(usize, GenOutput),
    Failed(Error),
    Finished,
}

/// A GGUF model on a llama.cpp worker thread.
pub struct LlamaEngine {
    jobs: Option<Sender<Job>>,
    cancel: Arc<AtomicBool>,
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
        let path: PathBuf = path.into();
        let worker = std::thread::Builder::new()
            .name("llama".into())
            .spawn(move || worker_main(path, settings, jobs_rx, ready_tx, worker_cancel))
            .map_err(|e| Error::Engine(format!("cannot start the llama.cpp worker: {e}")))?;
        let info = ready_rx
            .recv()
            .map_err(|_| Error::Engine("the llama.cpp worker died while loading".into()))??;
        Ok(LlamaEngine { jobs: Some(jobs_tx), cancel, worker: Some(worker), info })
    }

    /// Number of tokens of a text under this model's tokenizer (special tokens parsed).
    pub fn count_tokens(&self, text: &str) -> Result<usize> {
        let (tx, rx) = channel();
        self.send(Job::Tokenize { text: text.to_string(), reply: tx })?;
        rx.recv().map_err(|_| Error::Engine("the llama.cpp worker stopped".into()))?
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
    let mut worker = Worker { model: &model, backend, tmpl, settings: settings.clone(), threads, cancel, ctx: None };
    // one context of a single sequence's size proves the settings work before the first job
    match worker.context(settings.ctx_per_seq) {
        Ok(c) => worker.ctx = Some((c, settings.ctx_per_seq.div_ceil(256) * 256)),
        Err(e) => {
            let _ = ready.send(Err(e));
            return;
        }
    }
    let info = EngineInfo {
        engine: "llama.cpp".into(),
        model: path.display().to_string(),
        n_params: model.n_params(),
        n_ctx_train: model.n_ctx_train(),
        chat_template: worker.tmpl.as_ref().and_then(|t| t.to_string().ok()),
        settings: serde_json::json!({
            "parallel": settings.parallel, "prefix_reuse": settings.prefix_reuse,
            "ctx_per_seq": settings.ctx_per_seq, "threads": threads, "n_batch": settings.n_batch,
            "kv_unified": settings.kv_unified, "flash_attn": settings.flash_attn, "llama_cpp_2": "0.1.160",
        }),
    };
    if ready.send(Ok(info)).is_err() {
        return;
    }
    for job in jobs {
        match job {
            Job::Tokenize { text, reply } => {
                let _ = reply.send(Ok(worker.tokenize(&text).len()));
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
    /// the context and its size in KV cells
    ctx: Option<(LlamaContext<'m>, usize)>,
}

/// A sequence being decoded.
struct Slot {
    req: usize,
    seq: i32,
    /// position of the next token to add
    pos: i32,
    /// token sampled last, to be fed next step
    next: Option<LlamaToken>,
    /// index of this sequence's logits in the current batch
    logits_at: i32,
    bytes: Vec<u8>,
    n_gen: usize,
    prompt_tokens: usize,
    sampler: LlamaSampler,
    started: Instant,
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
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(cells as u32))
            .with_n_batch(self.settings.n_batch as u32)
            .with_n_ubatch(self.settings.n_batch.min(512) as u32)
            .with_n_seq_max((self.settings.parallel + 1) as u32) // seq 0 holds the shared prefix
            .with_kv_unified(self.settings.kv_unified)
            .with_flash_attention_policy(if self.settings.flash_attn { 1 } else { 0 })
            .with_swa_full(true)
            .with_n_threads(self.threads as i32)
            .with_n_threads_batch(self.threads as i32);
        self.model.new_context(self.backend, params).map_err(|e| {
            Error::Engine(format!("cannot create a llama.cpp context of {cells} tokens: {e} (lower --ctx or --parallel)"))
        })
    }

    fn tokenize(&self, text: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(text.as_bytes(), true, true)
    }

    /// The prompt text: the request's own text, or the model's chat template applied.
    fn prompt_text(&self, r: &Rendered) -> Result<String> {
        if let Some(t) = &r.text {
            return Ok(t.clone());
        }
        let tmpl = self.tmpl.as_ref().ok_or_else(|| {
            Error::Engine("the model has no chat template: use --template completion or qwen".into())
        })?;
        let msgs = r
            .messages
            .iter()
            .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Engine(format!("chat message: {e}")))?;
        self.model
            .apply_chat_template(tmpl, &msgs, true)
            .map_err(|e| Error::Engine(format!("applying the model's chat template: {e}")))
    }

    fn sampler(s: &Sampling) -> LlamaSampler {
        if s.temperature <= 0.0 {
            return LlamaSampler::greedy();
        }
        let mut chain = Vec::new();
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
                n = n.min(first.iter().zip(p).take_while(|(a, b)| a == b).count());
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
        let result = self.decode_all(&mut ctx, &prompts, prefix_len, reqs, events);
        self.ctx = Some((ctx, cells_have));
        result
    }

    fn decode_all(
        &mut self,
        ctx: &mut LlamaContext<'m>,
        prompts: &[Vec<LlamaToken>],
        prefix_len: usize,
        reqs: &[GenRequest],
        events: &Sender<Event>,
    ) -> Result<()> {
        let n_batch = self.settings.n_batch;
        let mut batch = LlamaBatch::new(n_batch, (self.settings.parallel + 1) as i32);
        ctx.clear_kv_cache();
        let map_err = |e: &dyn std::fmt::Display| Error::Engine(format!("llama.cpp: {e}"));
        // decode the shared prefix once, on sequence 0
        for (ci, chunk) in prompts[0][..prefix_len].chunks(n_batch).enumerate() {
            batch.clear();
            for (j, t) in chunk.iter().enumerate() {
                batch.add(*t, (ci * n_batch + j) as i32, &[0], false).map_err(|e| map_err(&e))?;
            }
            ctx.decode(&mut batch).map_err(|e| map_err(&e))?;
        }
        let eos_pieces = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
        let mut queue = 0usize;
        let mut slots: Vec<Option<Slot>> = (0..self.settings.parallel).map(|_| None).collect();
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(Error::Interrupted);
            }
            batch.clear();
            let mut used = 0usize;
            // continue every active sequence by one token
            for s in slots.iter_mut().flatten() {
                if let Some(t) = s.next.take() {
                    s.logits_at = batch.n_tokens();
                    batch.add(t, s.pos, &[s.seq], true).map_err(|e| map_err(&e))?;
                    s.pos += 1;
                    used += 1;
                }
            }
            // start new requests in free slots while their prompt tail fits in this batch
            for (si, slot) in slots.iter_mut().enumerate() {
                if slot.is_some() || queue >= reqs.len() {
                    continue;
                }
                let tail = &prompts[queue][prefix_len..];
                if used + tail.len() > n_batch && used > 0 {
                    break;
                }
                let seq = (si + 1) as i32;
                ctx.clear_kv_cache_seq(Some(seq as u32), None, None).map_err(|e| map_err(&e))?;
                if prefix_len > 0 {
                    ctx.copy_kv_cache_seq(0, seq, None, None).map_err(|e| map_err(&e))?;
                }
                // a prompt tail longer than a batch is decoded in chunks first
                let mut pos = prefix_len;
                let mut rest = tail;
                while used + rest.len() > n_batch {
                    let take = n_batch - used;
                    for t in &rest[..take] {
                        batch.add(*t, pos as i32, &[seq], false).map_err(|e| map_err(&e))?;
                        pos += 1;
                    }
                    ctx.decode(&mut batch).map_err(|e| map_err(&e))?;
                    batch.clear();
                    used = 0;
                    rest = &rest[take..];
                }
                for (j, t) in rest.iter().enumerate() {
                    batch.add(*t, pos as i32, &[seq], j + 1 == rest.len()).map_err(|e| map_err(&e))?;
                    pos += 1;
                }
                used += rest.len();
                *slot = Some(Slot {
                    req: queue,
                    seq,
                    pos: pos as i32,
                    next: None,
                    logits_at: batch.n_tokens() - 1,
                    bytes: Vec::new(),
                    n_gen: 0,
                    prompt_tokens: prompts[queue].len(),
                    sampler: Self::sampler(&reqs[queue].sampling),
                    started: Instant::now(),
                });
                queue += 1;
            }
            if batch.n_tokens() == 0 {
                break;
            }
            ctx.decode(&mut batch).map_err(|e| map_err(&e))?;
            let vocab = self.model.vocab();
            for slot in slots.iter_mut() {
                let Some(s) = slot.as_mut() else { continue };
                let token = s.sampler.sample(&*ctx, s.logits_at);
                let sampling = &reqs[s.req].sampling;
                let mut finish = None;
                if vocab.is_eog(token) {
                    s.n_gen += 1;
                    finish = Some(Finish::Stop);
                } else {
                    vocab.token_to_piece_into(token, &mut s.bytes, false, None);
                    s.n_gen += 1;
                    if !sampling.stop.is_empty() && find_stop(&eos_pieces(&s.bytes), &sampling.stop).is_some() {
                        finish = Some(Finish::Stop);
                    } else if s.n_gen >= sampling.max_tokens {
                        finish = Some(Finish::Length);
                    } else {
                        s.next = Some(token);
                    }
                }
                if let Some(finish) = finish {
                    let s = slot.take().expect("slot is active");
                    let mut text = eos_pieces(&s.bytes);
                    if let Some(cut) = find_stop(&text, &sampling.stop) {
                        text.truncate(cut);
                    }
                    let out = GenOutput {
                        text,
                        reasoning: None,
                        prompt_tokens: s.prompt_tokens,
                        gen_tokens: s.n_gen,
                        finish,
                        latency_ms: s.started.elapsed().as_secs_f64() * 1000.0,
                    };
                    if events.send(Event::Done(s.req, out)).is_err() {
                        return Err(Error::Interrupted);
                    }
                }
            }
        }
        Ok(())
    }
}
