//! Stage 2, CoT tuning: supervised fine-tuning on `<think>\nCOT\n</think>\n` + JSON answer (or the
//! answer alone, the no-CoT ablation), loss on the assistant turn only, its end token trained —
//! as the paper's `sft.py`, except that it also trains the assistant header and the `\n` + EOS
//! after `<|im_end|>`, tokens inference never generates (see `Tokenizer::encode_pair`) — with AdamW, gradient accumulation, global-norm clipping, a cosine schedule
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

impl Target {
    /// The name `--target` takes and run names carry.
    pub fn name(self) -> &'static str {
        match self {
            Target::Cot => "cot",
            Target::Direct => "direct",
        }
    }
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
    /// run the prompt start that a micro-batch's sequences share once (CPU f32; see
    /// [`micro_batches`]). Changes only the order of float sums, so a resume may switch it.
    #[serde(default = "yes")]
    pub share_prefix: bool,
    /// the weight of each sequence's first target token in the loss (1: every target token alike,
    /// the paper's loss). That token decides the answer's form (`<think>` or the answer itself)
    /// and weighs little in a mean over ~30 answer tokens; above 1 it weighs more. Left out of
    /// the config (and of a run's identity) at 1.
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub first_token_weight: f64,
}

fn yes() -> bool {
    true
}

fn one() -> f64 {
    1.0
}

fn is_one(x: &f64) -> bool {
    *x == 1.0
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
            share_prefix: true,
            first_token_weight: 1.0,
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
    /// tokens through the model (padding included; a micro-batch's shared prompt start once)
    pub tokens: usize,
    /// the sequences' own tokens (each with its whole prompt, no padding): what a plain pass
    /// without padding would feed
    #[serde(default)]
    pub seq_tokens: usize,
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

/// How many leading tokens `a` and `b` have in common.
fn common_len(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// How many tokens every sequence of `seqs` (`(tokens, first target)`) starts with, up to the
/// first position that predicts a target (`first − 1`), so no trained position is shared.
pub fn shared_prefix<S: AsRef<[u32]>>(seqs: &[(S, usize)]) -> usize {
    let Some((head, _)) = seqs.first() else { return 0 };
    let head = head.as_ref();
    seqs.iter()
        .map(|(s, first)| {
            let same = common_len(head, s.as_ref());
            same.min(first.saturating_sub(1))
        })
        .min()
        .unwrap_or(0)
}

/// Split one update's sequences (`(index, tokens, first target)`) into forward passes within
/// a budget of `micro_tokens` tokens each. Plain: sorted by length (bucketing) and packed while
/// `count × longest` fits. With `share`: sorted by the few tokens that follow the update's common
/// start (the schema, for one prompt template, so a dataset's sentences fall together), then by
/// length, and cut into the runs that cost the fewest tokens in all, a pass costing
/// `prefix + count × (longest − prefix)` plus a fixed overhead, `prefix` being the start its
/// sequences share, which [`batch_grads`] runs once.
pub fn micro_batches(seqs: &[(usize, &[u32], usize)], micro_tokens: usize, share: bool) -> Vec<Vec<usize>> {
    if !share {
        let mut sorted: Vec<(usize, usize)> = seqs.iter().map(|&(i, s, _)| (i, s.len())).collect();
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
        return out;
    }
    // a few tokens tell prompts apart (two schemas rarely start alike for this long) without
    // reaching into the sentences, whose order would undo the length bucketing
    const KEY: usize = 4;
    // a forward pass's own cost in tokens' worth (the output projection's gradient copy, the
    // gradients' sum, smaller matrices): measured as about 70 with SmolLM2-135M on 2 cores
    const PASS: usize = 128;
    let all: Vec<(&[u32], usize)> = seqs.iter().map(|&(_, s, f)| (s, f)).collect();
    let common = shared_prefix(&all);
    // the most of a sequence that a pass may share: never a position that predicts a target
    let cap = |k: usize| seqs[k].2.saturating_sub(1);
    let key = |k: usize| &seqs[k].1[common..(common + KEY).min(cap(k)).max(common)];
    let mut order: Vec<usize> = (0..seqs.len()).collect();
    order.sort_by(|&x, &y| key(x).cmp(key(y)).then(seqs[x].1.len().cmp(&seqs[y].1.len())));
    let n = order.len();
    // best[j]: the cheapest cut of the first j sequences in order; from[j]: where its last pass starts
    let mut best = vec![usize::MAX; n + 1];
    let mut from = vec![0; n + 1];
    best[0] = 0;
    for j in 1..=n {
        let last = seqs[order[j - 1]].1;
        let (mut prefix, mut longest) = (cap(order[j - 1]), 0);
        for i in (1..=j).rev() {
            let (_, s, _) = seqs[order[i - 1]];
            let same = common_len(last, s);
            prefix = prefix.min(cap(order[i - 1])).min(same);
            longest = longest.max(s.len());
            let cost = prefix + (j - i + 1) * (longest - prefix);
            if cost > micro_tokens && i < j {
                break;
            }
            if best[i - 1] + cost + PASS < best[j] {
                (best[j], from[j]) = (best[i - 1] + cost + PASS, i - 1);
            }
        }
    }
    let mut out = Vec::new();
    let mut j = n;
    while j > 0 {
        out.push(order[from[j]..j].iter().map(|&k| seqs[k].0).collect());
        j = from[j];
    }
    out.reverse();
    out
}

/// `scale` × the summed target cross-entropy of a micro-batch, the tokens it ran through the
/// model, and the gradients aligned with the model's vars: the hand-written backward pass on
/// CPU f32 (no autograd graph; see [`Model::nll_grads`]), which with `share` runs the start
/// the sequences share once; candle's autograd elsewhere.
pub fn batch_grads(model: &Model, seqs: &[(Vec<u32>, usize)], pad: u32, scale: f64, share: bool) -> Result<(f64, usize, Vec<Option<Tensor>>)> {
    if model.manual_backward() {
        let b = super::batch::pack_shared(model, seqs, pad, share)?;
        let (loss, grads) = model.nll_grads(&b.prefix, &b.ids, &b.rows, &b.targets, scale)?;
        return Ok((loss, b.fed, grads));
    }
    autograd_grads(model, seqs, pad, scale)
}

/// Each target row's weight: `first` for each sequence's first target, 1 for the others (rows in
/// [`pack`]'s order).
fn first_token_weights(seqs: &[(Vec<u32>, usize)], first: f64) -> Vec<f32> {
    let mut w = Vec::new();
    for (s, f) in seqs {
        let n = s.len().saturating_sub(*f);
        w.extend((0..n).map(|j| if j == 0 { first as f32 } else { 1.0 }));
    }
    w
}

/// [`batch_grads`] with each sequence's first target token weighted `first` (the loss is
/// `scale · Σ wᵢ · CEᵢ`): the hand-written pass where the model has one, else autograd.
pub fn weighted_grads(model: &Model, seqs: &[(Vec<u32>, usize)], pad: u32, scale: f64, share: bool, first: f64) -> Result<(f64, usize, Vec<Option<Tensor>>)> {
    let w: Vec<f32> = first_token_weights(seqs, first).into_iter().map(|x| x * scale as f32).collect();
    if model.manual_backward() {
        let b = super::batch::pack_shared(model, seqs, pad, share)?;
        let n = b.targets.len();
        let wt = Tensor::from_vec(w, n, &model.device)?;
        let targets = b.targets.clone();
        let (loss, grads) = model.target_grads(&b.prefix, &b.ids, &b.rows, &b.targets, 1.0, &mut |logits| {
            let loss = (crate::model::ops::nll(logits, &targets)? * &wt)?.sum_all()?.to_scalar::<f32>()? as f64;
            Ok((loss, Some(wt.clone())))
        })?;
        return Ok((loss, b.fed, grads));
    }
    autograd(model, seqs, pad, Weights::Rows(w))
}

/// [`batch_grads`] through candle's autograd (any device; what `rner bench train` compares with).
pub fn autograd_grads(model: &Model, seqs: &[(Vec<u32>, usize)], pad: u32, scale: f64) -> Result<(f64, usize, Vec<Option<Tensor>>)> {
    autograd(model, seqs, pad, Weights::Scale(scale))
}

/// How the target rows' cross-entropies add up to the loss.
enum Weights {
    /// `scale · Σ CEᵢ`
    Scale(f64),
    /// `Σ wᵢ · CEᵢ`, one weight a target row
    Rows(Vec<f32>),
}

/// The loss over the target rows and its gradients through candle's autograd.
fn autograd(model: &Model, seqs: &[(Vec<u32>, usize)], pad: u32, w: Weights) -> Result<(f64, usize, Vec<Option<Tensor>>)> {
    let (ids, rows, targets) = pack(model, seqs, pad)?;
    let padded = ids.elem_count();
    let n = targets.len();
    let nll = crate::model::ops::nll(&target_logits(model, &ids, rows)?, &targets)?;
    let loss = match w {
        Weights::Scale(scale) => (nll.sum_all()? * scale)?,
        Weights::Rows(w) => (nll * Tensor::from_vec(w, n, &model.device)?)?.sum_all()?,
    };
    let store = loss.backward()?;
    let mut grads = Vec::new();
    accumulate(&mut grads, &model.params.vars, &store)?;
    Ok((loss.to_scalar::<f32>()? as f64, padded, grads))
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

/// The trainable sequences of `samples` (`(tokens, first target)`, left-truncated to `max_len`);
/// samples with no target token within it are left out.
pub fn sequences(samples: &[Sample], max_len: usize) -> Vec<(Vec<u32>, usize)> {
    samples.iter().filter_map(|s| s.tokens(max_len)).collect()
}

/// One update's summed loss and gradients (each sequence's target tokens weighted alike).
pub struct UpdateGrads {
    pub loss: f64,
    /// tokens through the model (see [`StepLog::tokens`])
    pub tokens: usize,
    pub seq_tokens: usize,
    pub target_tokens: usize,
    pub grads: Vec<Option<Tensor>>,
}

/// The loss and gradients of the update made of `usable[i]` for `i` in `step`, over micro-batches
/// of at most `micro_tokens`; `share` runs each micro-batch's shared prompt start once (CPU f32).
pub fn update_grads(model: &Model, usable: &[(Vec<u32>, usize)], step: &[usize], micro_tokens: usize, pad: u32, share: bool, first_weight: f64) -> Result<UpdateGrads> {
    let share = share && model.manual_backward();
    let of_step: Vec<(usize, &[u32], usize)> = step.iter().map(|&i| (i, usable[i].0.as_slice(), usable[i].1)).collect();
    let target_tokens: usize = step.iter().map(|&i| usable[i].0.len() - usable[i].1).sum();
    // the weighted mean's denominator: each sequence's first target token counts first_weight times
    let weight_sum = target_tokens as f64 + (first_weight - 1.0) * step.len() as f64;
    let seq_tokens: usize = step.iter().map(|&i| usable[i].0.len()).sum();
    let mut grads = Vec::new();
    let (mut loss, mut tokens) = (0f64, 0usize);
    for mb in micro_batches(&of_step, micro_tokens, share) {
        let seqs: Vec<(Vec<u32>, usize)> = mb.iter().map(|&i| usable[i].clone()).collect();
        let (l, fed, g) = if first_weight == 1.0 {
            batch_grads(model, &seqs, pad, 1.0 / target_tokens as f64, share)?
        } else {
            weighted_grads(model, &seqs, pad, 1.0 / weight_sum, share, first_weight)?
        };
        loss += l;
        tokens += fed;
        add_grads(&mut grads, g)?;
    }
    Ok(UpdateGrads { loss, tokens, seq_tokens, target_tokens, grads })
}

/// Train `model` on `samples`; resumes from `dirs.ckpt_dir/latest` when present.
pub fn train(model: &Model, samples: &[Sample], cfg: &SftConfig, dirs: &Dirs, pad: u32, quiet: bool) -> Result<Outcome> {
    let usable = sequences(samples, cfg.max_len);
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

    let unbounded = |c: &SftConfig| SftConfig { max_steps: None, share_prefix: true, ..c.clone() };
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
        let UpdateGrads { loss, tokens, seq_tokens, target_tokens, grads } = update_grads(model, &usable, step, cfg.micro_tokens, pad, cfg.share_prefix, cfg.first_token_weight)?;
        let (norm, factor) = clip_factor(&grads, cfg.clip)?;
        let lr = cosine_lr(cfg.lr, si, total, warmup);
        opt.step(&grads, lr, factor)?;
        drop(grads);
        let secs = t0.elapsed().as_secs_f64();
        let row = StepLog {
            step: si + 1,
            epoch: (si + 1) as f64 / (total as f64 / cfg.epochs as f64),
            loss,
            lr,
            grad_norm: norm,
            sequences: step.len(),
            tokens,
            seq_tokens,
            target_tokens,
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
        let toks: Vec<Vec<u32>> = [100usize, 30, 40, 90, 35].iter().map(|&n| (0..n as u32).collect()).collect();
        let seqs: Vec<(usize, &[u32], usize)> = toks.iter().enumerate().map(|(i, t)| (i, t.as_slice(), 1)).collect();
        let mb = micro_batches(&seqs, 120, false);
        assert_eq!(mb, vec![vec![1, 4, 2], vec![3], vec![0]]);
        let all: usize = mb.iter().map(|m| m.len()).sum();
        assert_eq!(all, 5);
    }

    #[test]
    fn shared_micro_batches_group_prompts_and_count_their_start_once() {
        // two "schemas" after a 50-token common start; each sequence 50 + 10 + its own 20–29
        // tokens, trained from its last 5
        let seq = |schema: u32, own: usize, salt: u32| -> Vec<u32> {
            let mut s: Vec<u32> = (0..50).collect();
            s.extend(std::iter::repeat_n(1000 + schema, 10));
            s.extend((0..own as u32).map(|j| 2000 + salt * 100 + j));
            s
        };
        let toks: Vec<Vec<u32>> = (0..8).map(|i| seq(i % 2, 20 + i as usize, i)).collect();
        let seqs: Vec<(usize, &[u32], usize)> = toks.iter().enumerate().map(|(i, t)| (i + 10, t.as_slice(), t.len() - 5)).collect();
        // plain: 8 sequences of up to 87 tokens fit 2 at a time in 180 tokens
        assert_eq!(micro_batches(&seqs, 180, false).len(), 4);
        // shared: each schema's 4 sequences in one pass: 60 + 4 × (longest − 60) ≤ 180
        let mb = micro_batches(&seqs, 180, true);
        assert_eq!(mb, vec![vec![10, 12, 14, 16], vec![11, 13, 15, 17]]);
        let first: Vec<(Vec<u32>, usize)> = mb[0].iter().map(|&i| (toks[i - 10].clone(), toks[i - 10].len() - 5)).collect();
        assert_eq!(shared_prefix(&first), 60);
        // prompts that share only the common start (a schema per record) still fill passes
        let own: Vec<Vec<u32>> = (0..6).map(|i| seq(10 + i, 20, i)).collect();
        let seqs: Vec<(usize, &[u32], usize)> = own.iter().enumerate().map(|(i, t)| (i, t.as_slice(), t.len() - 5)).collect();
        let mb = micro_batches(&seqs, 180, true);
        assert_eq!(mb.len(), 2, "{mb:?}");
        // the shared start never reaches a trained position
        let short = vec![(toks[0].clone(), 40usize), (toks[2].clone(), 70)];
        assert_eq!(shared_prefix(&short), 39);
    }

    /// The first-token weight: 1 gives the plain loss; above 1 the hand-written pass (shared
    /// prefix or not) gives autograd's loss and gradients of the weighted sum, which differ from
    /// the plain ones.
    #[test]
    fn first_token_weights_match_autograd_and_reduce_to_the_plain_loss() {
        use crate::model::testing::{configs, tiny};
        let p: Vec<u32> = vec![3, 7, 11, 2, 9];
        let seqs: Vec<(Vec<u32>, usize)> = vec![
            ([p.clone(), vec![4, 30, 8, 1]].concat(), 5),
            ([p.clone(), vec![12, 6]].concat(), 5),
            ([p.clone(), vec![21, 17, 1, 5, 2]].concat(), 4),
        ];
        assert_eq!(first_token_weights(&seqs, 5.0), vec![5.0, 1.0, 1.0, 1.0, 5.0, 1.0, 5.0, 1.0, 1.0, 1.0, 1.0, 1.0]);
        let flat = |g: &[Option<Tensor>]| -> Vec<f32> { g.iter().flatten().flat_map(|t| t.flatten_all().unwrap().to_vec1::<f32>().unwrap()).collect() };
        let close = |a: &[f32], b: &[f32]| a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-4 + 1e-3 * y.abs());
        for cfg in configs() {
            let m = tiny(&cfg);
            let scale = 0.1;
            let (plain, _, gp) = batch_grads(&m, &seqs, 0, scale, true).unwrap();
            let (one, _, g1) = weighted_grads(&m, &seqs, 0, scale, true, 1.0).unwrap();
            assert!((plain - one).abs() < 1e-5 && close(&flat(&g1), &flat(&gp)), "{plain} vs {one}");
            let w: Vec<f32> = first_token_weights(&seqs, 5.0).into_iter().map(|x| x * scale as f32).collect();
            let (reference, _, gr) = autograd(&m, &seqs, 0, Weights::Rows(w)).unwrap();
            for share in [true, false] {
                let (loss, _, g) = weighted_grads(&m, &seqs, 0, scale, share, 5.0).unwrap();
                assert!((loss - reference).abs() < 1e-4 * reference.abs().max(1.0), "share {share}: {loss} vs {reference}");
                assert!(close(&flat(&g), &flat(&gr)), "share {share}");
            }
            assert!(!close(&flat(&gr), &flat(&gp)), "weighting the first tokens changes the gradient");
        }
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
