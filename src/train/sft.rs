//! Stage 2, CoT tuning: supervised fine-tuning on `<think>\nCOT\n</think>\n` + JSON answer (or the
//! answer alone, the no-CoT ablation), loss on the assistant turn only, EOS trained — as the
//! paper's `sft.py` — with AdamW, gradient accumulation, global-norm clipping, a cosine schedule
//! with warmup, seeded shuffling and length bucketing. Every update is logged (JSONL) and every
//! N updates a checkpoint is written; a rerun resumes from the newest one and continues the very
//! same loss curve.
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use candle_core::Tensor;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::batch::{pack, target_logits};
use super::checkpoint;
use super::optim::{accumulate, add_grads, clip_factor, cosine_lr, AdamConfig, AdamW};
use crate::model::Model;
use crate::{Error, Result};

/// What the assistant turn holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    /// `<think>\nCOT\n</think>\n` + answer (CoT tuning)
    Cot,
    /// the answer alone (the paper's "w/o CoT" ablation)
    Direct,
}

/// One training sequence: prompt tokens (not trained) then target tokens (trained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    pub id: String,
    pub prompt: Vec<u32>,
    pub target: Vec<u32>,
}

impl Sample {
    pub fn len(&self) -> usize {
        self.prompt.len() + self.target.len()
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// The sequence, left-truncated to `max_len` as the paper's tokenisation does, and where its
    /// trained tokens start; `None` when no target token would be predicted.
    fn tokens(&self, max_len: usize) -> Option<(Vec<u32>, usize)> {
        let mut all: Vec<u32> = self.prompt.iter().chain(&self.target).copied().collect();
        let mut first_target = self.prompt.len();
        if all.len() > max_len {
            let cut = all.len() - max_len;
            all.drain(..cut);
            first_target = first_target.saturating_sub(cut);
        }
        // position j predicts token j+1: the first trained prediction comes from first_target-1;
        // when the cut reaches into the target, its first kept token is context only
        let first_target = first_target.max(1);
        (first_target < all.len()).then_some((all, first_target))
    }
}

/// Every setting that decides the result (hashed into the run's identity; a resume must match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftConfig {
    pub epochs: usize,
    /// sequences per optimiser update (the effective batch)
    pub batch: usize,
    /// padded tokens per forward pass at most (micro-batches of one update are summed)
    pub micro_tokens: usize,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub max_len: usize,
    pub clip: f64,
    pub seed: u64,
    pub adam: AdamConfig,
    /// stop after this many updates (the schedule still spans every epoch)
    #[serde(default)]
    pub max_steps: Option<usize>,
}

impl Default for SftConfig {
    fn default() -> Self {
        SftConfig {
            epochs: 2,
            batch: 16,
            micro_tokens: 2048,
            lr: 2e-5,
            warmup_ratio: 0.03,
            max_len: 1024,
            clip: 1.0,
            seed: 42,
            adam: AdamConfig::default(),
            max_steps: None,
        }
    }
}

/// One logged update.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StepLog {
    pub step: usize,
    pub epoch: f64,
    pub loss: f64,
    pub lr: f64,
    pub grad_norm: f64,
    pub sequences: usize,
    /// tokens fed (padding included)
    pub tokens: usize,
    /// tokens trained on
    pub target_tokens: usize,
    pub seconds: f64,
    pub tokens_per_s: f64,
    pub rss_mb: f64,
}

/// What a checkpoint's `state.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TrainState {
    pub step: usize,
    /// the GGUF (or folder) training started from: an export copies its metadata
    pub source: PathBuf,
    pub total_steps: usize,
    pub config: SftConfig,
    pub data_hash: String,
}

/// Where a run writes: `log_dir` (steps.jsonl, committed) and `ckpt_dir` (checkpoints, large).
pub struct Dirs {
    pub log_dir: PathBuf,
    pub ckpt_dir: PathBuf,
    pub save_every: usize,
    pub keep: usize,
}

/// The order of updates: each epoch a seeded shuffle, cut into updates of `batch` sequences.
pub fn plan(n: usize, cfg: &SftConfig) -> Vec<Vec<usize>> {
    let mut steps = Vec::new();
    for epoch in 0..cfg.epochs {
        let mut idx: Vec<usize> = (0..n).collect();
        idx.shuffle(&mut ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(epoch as u64)));
        for chunk in idx.chunks(cfg.batch.max(1)) {
            steps.push(chunk.to_vec());
        }
    }
    steps
}

/// Split one update's sequences into forward passes: sorted by length (bucketing), packed while
/// `count × longest` stays within the token budget.
pub fn micro_batches(lens: &[(usize, usize)], micro_tokens: usize) -> Vec<Vec<usize>> {
    let mut sorted = lens.to_vec();
    sorted.sort_by_key(|&(_, l)| l);
    let mut out: Vec<Vec<usize>> = Vec::new();
    let mut cur: Vec<usize> = Vec::new();
    let mut longest = 0;
    for (i, l) in sorted {
        if !cur.is_empty() && (cur.len() + 1) * longest.max(l) > micro_tokens {
            out.push(std::mem::take(&mut cur));
            longest = 0;
        }
        cur.push(i);
        longest = longest.max(l);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

/// `scale` × the summed target cross-entropy of a micro-batch, its padded token count, and the
/// gradients aligned with the model's vars: the hand-written backward pass on CPU f32 (no
/// autograd graph; see [`Model::nll_grads`]), candle's autograd elsewhere.
pub fn batch_grads(model: &Model, seqs: &[(Vec<u32>, usize)], pad: u32, scale: f64) -> Result<(f64, usize, Vec<Option<Tensor>>)> {
    if model.manual_backward() {
        let (ids, rows, targets) = pack(model, seqs, pad)?;
        let padded = ids.elem_count();
        let (loss, grads) = model.nll_grads(&ids, &rows, &targets, scale)?;
        return Ok((loss, padded, grads));
    }
    autograd_grads(model, seqs, pad, scale)
}

/// [`batch_grads`] through candle's autograd (any device; what `rner bench train` compares with).
pub fn autograd_grads(model: &Model, seqs: &[(Vec<u32>, usize)], pad: u32, scale: f64) -> Result<(f64, usize, Vec<Option<Tensor>>)> {
    let (ids, rows, targets) = pack(model, seqs, pad)?;
    let padded = ids.elem_count();
    let logits = target_logits(model, &ids, rows)?;
    let scaled = (crate::model::ops::nll(&logits, &targets)?.sum_all()? * scale)?;
    let store = scaled.backward()?;
    let mut grads = Vec::new();
    accumulate(&mut grads, &model.params.vars, &store)?;
    Ok((scaled.to_scalar::<f32>()? as f64, padded, grads))
}

/// Peak resident memory of this process so far (MiB), from /proc.
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok()))
        .map(|kb| kb / 1024.0)
        .unwrap_or(0.0)
}

/// A hash of the training data (sample ids and tokens), so a resume on other data is refused.
pub fn data_hash(samples: &[Sample]) -> String {
    let mut s = String::new();
    for x in samples {
        s.push_str(&format!("{}:{:?}:{:?};", x.id, x.prompt, x.target));
    }
    crate::prompt::short_hash(&s)
}

/// What a finished (or interrupted) call did.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Outcome {
    pub steps_done: usize,
    pub total_steps: usize,
    pub resumed_from: Option<usize>,
    pub last_checkpoint: Option<PathBuf>,
    pub interrupted: bool,
}

/// Train `model` on `samples`; resumes from `dirs.ckpt_dir/latest` when present.
pub fn train(model: &Model, samples: &[Sample], cfg: &SftConfig, dirs: &Dirs, pad: u32, quiet: bool) -> Result<Outcome> {
    let usable: Vec<(Vec<u32>, usize)> = samples.iter().filter_map(|s| s.tokens(cfg.max_len)).collect();
    if usable.is_empty() {
        return Err(Error::config("--data", "no training sequence has a target token within --max-len"));
    }
    let steps = plan(usable.len(), cfg);
    let total = steps.len();
    let warmup = (cfg.warmup_ratio * total as f64).ceil() as usize;
    let dhash = data_hash(samples);
    let mut opt = AdamW::new(model.params.vars.clone(), cfg.adam)?;
    let log_path = dirs.log_dir.join("steps.jsonl");
    std::fs::create_dir_all(&dirs.log_dir).map_err(|e| Error::io(&dirs.log_dir, e))?;

    let unbounded = |c: &SftConfig| SftConfig { max_steps: None, ..c.clone() };
    let same = |st: &TrainState| unbounded(&st.config) == unbounded(cfg) && st.data_hash == dhash;
    let resumed_from = checkpoint::resume(&dirs.ckpt_dir, model, &mut opt, same, |st: &TrainState| st.step)?.map(|st| st.step);
    let start = resumed_from.unwrap_or(0);
    let mut log = checkpoint::reopen_log(&log_path, |r: &StepLog| r.step <= start)?;

    let end = cfg.max_steps.map(|m| m.min(total)).unwrap_or(total);
    let bar = crate::util::progress(!quiet, "sft", "updates", end, start);
    let mut last_ckpt = None;
    let mut interrupted = false;
    let save = |step: usize, opt: &AdamW| -> Result<PathBuf> {
        let state = TrainState { step, source: model.origin.path.clone(), total_steps: total, config: cfg.clone(), data_hash: dhash.clone() };
        checkpoint::save(&dirs.ckpt_dir, step, model, opt, &state, dirs.keep)
    };
    for (si, step) in steps.iter().enumerate().take(end).skip(start) {
        let t0 = Instant::now();
        let lens: Vec<(usize, usize)> = step.iter().map(|&i| (i, usable[i].0.len())).collect();
        let n_target: usize = step.iter().map(|&i| usable[i].0.len() - usable[i].1).sum();
        let mut grads = Vec::new();
        let (mut loss_sum, mut tokens) = (0f64, 0usize);
        for mb in micro_batches(&lens, cfg.micro_tokens) {
            let seqs: Vec<(Vec<u32>, usize)> = mb.iter().map(|&i| usable[i].clone()).collect();
            let (loss, padded, g) = batch_grads(model, &seqs, pad, 1.0 / n_target as f64)?;
            loss_sum += loss;
            tokens += padded;
            add_grads(&mut grads, g)?;
        }
        let (norm, factor) = clip_factor(&grads, cfg.clip)?;
        let lr = cosine_lr(cfg.lr, si, total, warmup);
        opt.step(&grads, lr, factor)?;
        drop(grads);
        let secs = t0.elapsed().as_secs_f64();
        let row = StepLog {
            step: si + 1,
            epoch: (si + 1) as f64 / (total as f64 / cfg.epochs as f64),
            loss: loss_sum,
            lr,
            grad_norm: norm,
            sequences: step.len(),
            tokens,
            target_tokens: n_target,
            seconds: secs,
            tokens_per_s: tokens as f64 / secs,
            rss_mb: peak_rss_mb(),
        };
        writeln!(log, "{}", serde_json::to_string(&row).expect("row")).map_err(|e| Error::io(&log_path, e))?;
        if let Some(b) = &bar {
            b.set_message(format!("loss {:.4}", row.loss));
            b.inc(1);
        }
        if checkpoint::after_step(si + 1, end, dirs.save_every, &mut last_ckpt, || save(si + 1, &opt))? {
            interrupted = true;
            break;
        }
    }
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let steps_done = crate::util::read_jsonl::<StepLog>(&log_path)?.last().map(|r| r.step).unwrap_or(start);
    Ok(Outcome { steps_done, total_steps: total, resumed_from, last_checkpoint: last_ckpt.or_else(|| checkpoint::latest(&dirs.ckpt_dir)), interrupted })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_shuffles_each_epoch_with_the_seed() {
        let cfg = SftConfig { epochs: 2, batch: 3, seed: 7, ..Default::default() };
        let p = plan(7, &cfg);
        assert_eq!(p.len(), 6);
        let mut first: Vec<usize> = p[..3].concat();
        first.sort();
        assert_eq!(first, (0..7).collect::<Vec<_>>());
        assert_eq!(p, plan(7, &cfg));
        assert_ne!(p[..3].concat(), p[3..].concat());
    }

    #[test]
    fn micro_batches_respect_the_token_budget() {
        let lens = [(0, 100), (1, 30), (2, 40), (3, 90), (4, 35)];
        let mb = micro_batches(&lens, 120);
        assert_eq!(mb, vec![vec![1, 4, 2], vec![3], vec![0]]);
        let all: usize = mb.iter().map(|m| m.len()).sum();
        assert_eq!(all, 5);
    }

    #[test]
    fn truncation_keeps_the_end_and_needs_a_target() {
        let s = Sample { id: "x".into(), prompt: vec![1, 2, 3, 4], target: vec![5, 6] };
        assert_eq!(s.tokens(10), Some((vec![1, 2, 3, 4, 5, 6], 4)));
        assert_eq!(s.tokens(3), Some((vec![4, 5, 6], 1)));
        assert_eq!(s.tokens(2), Some((vec![5, 6], 1)));
        assert_eq!(s.tokens(1), None);
    }
}
