//! Stage 3, reasoning enhancement: GRPO with TRL's names for every knob.
//!
//! A step samples G completions per prompt from a snapshot of the policy (llama.cpp, on a GGUF
//! exported that step — the paper's stack samples with vLLM the same way), scores them with the
//! reward components, turns rewards into group advantages, and takes `num_iterations` updates
//! on that generation batch. Log-probabilities for the loss always come from the candle policy;
//! the KL term compares them with the frozen reference (the SFT checkpoint).
use candle_core::Tensor;
use serde::{Deserialize, Serialize};

use super::batch;
use crate::model::{ops, Model};
use crate::Result;

/// How rewards become advantages (`scale_rewards`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ScaleRewards {
    /// (r − group mean) / (group std + 1e-4): TRL's default, most likely the paper's run
    Group,
    /// (r − group mean) / (batch std + 1e-4)
    Batch,
    /// r − group mean (the paper's formula; Dr. GRPO)
    None,
}

/// How token losses are aggregated (`loss_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum LossType {
    /// mean over each sequence's tokens, then over sequences
    Grpo,
    /// sum over all tokens / number of tokens
    Bnpo,
    /// sum over all tokens / (sequences × max completion length): the paper's choice
    DrGrpo,
}

/// The objective's settings (paper / TRL defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Objective {
    pub epsilon: f64,
    pub epsilon_high: f64,
    pub beta: f64,
    pub loss_type: LossType,
    pub scale_rewards: ScaleRewards,
    pub max_completion_length: usize,
    /// log-probs are those of the logits divided by this, the temperature the completions were
    /// sampled at, as TRL takes them: the ratios and the KL then compare the distributions sampled
    /// from. Set by the trainer from [`GrpoConfig::temperature`], so it is not written twice.
    #[serde(skip, default = "one")]
    pub temperature: f64,
}

fn one() -> f64 {
    1.0
}

impl Default for Objective {
    fn default() -> Self {
        Objective { epsilon: 0.2, epsilon_high: 0.28, beta: 0.04, loss_type: LossType::DrGrpo, scale_rewards: ScaleRewards::Group, max_completion_length: 4096, temperature: 1.0 }
    }
}

/// Group advantages of `rewards` laid out as consecutive groups of `g`.
pub fn advantages(rewards: &[f64], g: usize, scale: ScaleRewards) -> Vec<f64> {
    // torch.std: Bessel-corrected
    fn std(x: &[f64]) -> f64 {
        if x.len() < 2 {
            return 0.0;
        }
        let m = x.iter().sum::<f64>() / x.len() as f64;
        (x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64).sqrt()
    }
    let batch_std = std(rewards);
    let mut out = Vec::with_capacity(rewards.len());
    for grp in rewards.chunks(g.max(1)) {
        let mean = grp.iter().sum::<f64>() / grp.len() as f64;
        let div = match scale {
            ScaleRewards::Group => std(grp) + 1e-4,
            ScaleRewards::Batch => batch_std + 1e-4,
            ScaleRewards::None => 1.0,
        };
        out.extend(grp.iter().map(|r| (r - mean) / div));
    }
    out
}

/// One completion ready for the loss: tokens, advantage and the log-probs it was scored with.
#[derive(Debug, Clone)]
pub struct Rollout {
    pub prompt: Vec<u32>,
    pub completion: Vec<u32>,
    pub advantage: f64,
    /// per completion token, from the policy before this generation batch's first update (empty:
    /// the current policy, as TRL when `num_iterations` is 1)
    pub old_logp: Vec<f32>,
    /// per completion token, from the reference model
    pub ref_logp: Vec<f32>,
}

/// Statistics of one update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct LossStats {
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub entropy: f64,
    pub tokens: usize,
}

/// Per-token loss pieces for one sequence (tensors over its completion tokens): the clipped
/// surrogate and the k3 KL estimate, with how many ratios the clip changed.
pub fn token_terms(logp: &Tensor, old: &Tensor, reference: &Tensor, adv: f64, obj: &Objective) -> Result<(Tensor, Tensor, usize)> {
    let ratio = (logp - old)?.exp()?;
    let clipped = ratio.clamp(1.0 - obj.epsilon, 1.0 + obj.epsilon_high)?;
    let s1 = (&ratio * adv)?;
    let s2 = (&clipped * adv)?;
    let surrogate = s1.minimum(&s2)?.neg()?;
    // k3: exp(ref − logp) − (ref − logp) − 1
    let d = (reference - logp)?;
    let kl = ((d.exp()? - &d)? - 1.0)?;
    let r = ratio.to_vec1::<f32>()?;
    let hi = 1.0 + obj.epsilon_high as f32;
    let lo = 1.0 - obj.epsilon as f32;
    let n_clip = r.iter().filter(|&&x| (adv > 0.0 && x > hi) || (adv < 0.0 && x < lo)).count();
    Ok((surrogate, kl, n_clip))
}

/// Aggregate per-sequence token losses as `loss_type` says; `lens` are completion lengths.
pub fn aggregate(per_token: &[Tensor], obj: &Objective) -> Result<Tensor> {
    let n = per_token.len().max(1) as f64;
    match obj.loss_type {
        LossType::Grpo => {
            let means: Vec<Tensor> = per_token.iter().map(|t| t.mean_all()).collect::<candle_core::Result<_>>()?;
            Ok((Tensor::stack(&means, 0)?.sum_all()? / n)?)
        }
        LossType::Bnpo => {
            let total: usize = per_token.iter().map(|t| t.elem_count()).sum();
            let sums: Vec<Tensor> = per_token.iter().map(|t| t.sum_all()).collect::<candle_core::Result<_>>()?;
            Ok((Tensor::stack(&sums, 0)?.sum_all()? / total.max(1) as f64)?)
        }
        LossType::DrGrpo => {
            let sums: Vec<Tensor> = per_token.iter().map(|t| t.sum_all()).collect::<candle_core::Result<_>>()?;
            Ok((Tensor::stack(&sums, 0)?.sum_all()? / (n * obj.max_completion_length as f64))?)
        }
    }
}

/// What [`completion_logps`] computes for a batch of sequences.
pub struct Logps {
    /// each sequence's completion-token log-probabilities
    pub per_seq: Vec<Tensor>,
    /// the mean entropy of the completion positions' next-token distributions
    pub entropy: f64,
    /// the tokens through the model, padding included
    pub fed: usize,
}

/// Log-probabilities of each sequence's completion tokens under `model` at `temperature` (with
/// gradients when the model's weights are tracked), the mean entropy of its next-token
/// distributions and the tokens fed.
pub fn completion_logps(model: &Model, seqs: &[(&[u32], &[u32])], pad: u32, temperature: f64) -> Result<Logps> {
    let (logits, targets, fed) = completion_logits(model, seqs, pad, temperature)?;
    let logp = ops::nll(&logits, &targets)?.neg()?;
    // the entropy is a statistic, taken off the graph
    let entropy = ops::nll_entropy(&logits.detach(), &targets)?.1;
    let mut out = Vec::with_capacity(seqs.len());
    let mut at = 0;
    for (_, c) in seqs {
        out.push(logp.narrow(0, at, c.len())?);
        at += c.len();
    }
    Ok(Logps { per_seq: out, entropy, fed })
}

/// The logits `[completion tokens, vocab]` divided by `temperature` that predict each sequence's
/// completion tokens (by candle's graph), those tokens, and the tokens fed (padding included).
fn completion_logits(model: &Model, seqs: &[(&[u32], &[u32])], pad: u32, temperature: f64) -> Result<(Tensor, Vec<u32>, usize)> {
    let (ids, rows, targets) = batch::pack(model, &joined(seqs.iter().copied()), pad)?;
    let fed = ids.elem_count();
    let logits = batch::target_logits(model, &ids, rows)?;
    Ok((if temperature == 1.0 { logits } else { (logits / temperature)? }, targets, fed))
}

/// Each rollout as one sequence (`(prompt + completion, first target)`).
fn joined<P: AsRef<[u32]>, C: AsRef<[u32]>>(pairs: impl Iterator<Item = (P, C)>) -> Vec<(Vec<u32>, usize)> {
    pairs.map(|(p, c)| ([p.as_ref(), c.as_ref()].concat(), p.as_ref().len())).collect()
}

/// The loss of a micro-batch from its completion tokens' log-probs (`logp`, rollout after
/// rollout, as [`completion_logps`] orders them) and the loss's derivative with respect to each
/// of them: [`token_terms`] aggregated as [`aggregate`] does, differentiated by hand for the
/// hand-written backward pass. Also the summed k3 KL and how many ratios the clip changed.
pub fn terms_by_hand(logp: &[f32], rollouts: &[Rollout], obj: &Objective) -> (f64, Vec<f64>, f64, usize) {
    let n = rollouts.len().max(1) as f64;
    let total: usize = rollouts.iter().map(|r| r.completion.len()).sum();
    let (lo, hi) = (1.0 - obj.epsilon, 1.0 + obj.epsilon_high);
    let (mut loss, mut kl_sum, mut clipped) = (0.0, 0.0, 0);
    let mut dlogp = Vec::with_capacity(logp.len());
    let mut at = 0;
    for r in rollouts {
        let len = r.completion.len();
        let coef = match obj.loss_type {
            LossType::Grpo => 1.0 / (n * len.max(1) as f64),
            LossType::Bnpo => 1.0 / total.max(1) as f64,
            LossType::DrGrpo => 1.0 / (n * obj.max_completion_length as f64),
        };
        let a = r.advantage;
        for (t, &lp) in logp[at..at + len].iter().enumerate() {
            let lp = lp as f64;
            // one update per generation batch: the sampling policy is the current one (ratio 1)
            let old = r.old_logp.get(t).map_or(lp, |&o| o as f64);
            let ratio = (lp - old).exp();
            // −min(ratio·A, clip(ratio)·A): the unclipped side carries the gradient −A·ratio,
            // the clipped side none
            let (s1, s2) = (ratio * a, ratio.clamp(lo, hi) * a);
            let (sur, dsur) = if s1 <= s2 { (-s1, -s1) } else { (-s2, 0.0) };
            // k3 = exp(ref − logp) − (ref − logp) − 1, whose derivative is 1 − exp(ref − logp)
            let dd = r.ref_logp[t] as f64 - lp;
            let kl = dd.exp() - dd - 1.0;
            kl_sum += kl;
            if (a > 0.0 && ratio > hi) || (a < 0.0 && ratio < lo) {
                clipped += 1;
            }
            let (term, dterm) = if obj.beta != 0.0 { (sur + obj.beta * kl, dsur + obj.beta * (1.0 - dd.exp())) } else { (sur, dsur) };
            loss += coef * term;
            dlogp.push(coef * dterm);
        }
        at += len;
    }
    (loss, dlogp, kl_sum, clipped)
}

/// [`loss`] times `scale` and its gradients, by the hand-written backward pass (CPU f32; see
/// [`Model::target_grads`]); with `share`, the start the rollouts share runs once — for the G
/// completions of one prompt, the whole prompt but its last token. Also the statistics of
/// [`loss`] (unscaled) and the tokens through the model. Without `learn`, the pass runs forward
/// only and returns no gradient.
pub fn manual_grads(policy: &Model, rollouts: &[Rollout], obj: &Objective, pad: u32, scale: f64, share: bool, learn: bool) -> Result<(LossStats, usize, Vec<Option<Tensor>>)> {
    let seqs = joined(rollouts.iter().map(|r| (&r.prompt, &r.completion)));
    let b = batch::pack_shared(policy, &seqs, pad, share)?;
    let mut stats = LossStats::default();
    let (_, grads) = policy.target_grads(&b.prefix, &b.ids, &b.rows, &b.targets, obj.temperature, &mut |logits| {
        let (nll, entropy) = ops::nll_entropy(logits, &b.targets)?;
        let logp: Vec<f32> = nll.into_iter().map(|x| -x).collect();
        let (loss, dlogp, kl, clipped) = terms_by_hand(&logp, rollouts, obj);
        let tokens = logp.len();
        stats = LossStats { loss, kl: kl / tokens.max(1) as f64, clip_fraction: clipped as f64 / tokens.max(1) as f64, entropy, tokens };
        // the backward pass takes the derivative with respect to −log-prob
        if !learn {
            return Ok((loss * scale, None));
        }
        let dnll: Vec<f32> = dlogp.iter().map(|d| (-d * scale) as f32).collect();
        Ok((loss * scale, Some(Tensor::from_vec(dnll, tokens, logits.device())?)))
    })?;
    Ok((stats, b.fed, if learn { grads } else { Vec::new() }))
}

/// The loss of a batch of rollouts (gradients flow into `policy`), its statistics and the
/// tokens fed through the model.
pub fn loss(policy: &Model, rollouts: &[Rollout], obj: &Objective, pad: u32) -> Result<(Tensor, LossStats, usize)> {
    let seqs: Vec<(&[u32], &[u32])> = rollouts.iter().map(|r| (r.prompt.as_slice(), r.completion.as_slice())).collect();
    let Logps { per_seq: logps, entropy, fed } = completion_logps(policy, &seqs, pad, obj.temperature)?;
    let dev = &policy.device;
    let mut per_token = Vec::with_capacity(rollouts.len());
    let (mut kl_sum, mut clipped, mut tokens) = (0f64, 0usize, 0usize);
    for (r, lp) in rollouts.iter().zip(&logps) {
        // one update per generation batch: the sampling policy is the current one (ratio 1)
        let old = if r.old_logp.is_empty() { lp.detach() } else { Tensor::new(r.old_logp.as_slice(), dev)? };
        let reference = Tensor::new(r.ref_logp.as_slice(), dev)?;
        let (sur, kl, nc) = token_terms(lp, &old, &reference, r.advantage, obj)?;
        kl_sum += kl.sum_all()?.to_scalar::<f32>()? as f64;
        clipped += nc;
        tokens += r.completion.len();
        per_token.push(if obj.beta != 0.0 { (sur + (kl * obj.beta)?)? } else { sur });
    }
    let l = aggregate(&per_token, obj)?;
    let stats = LossStats {
        loss: l.to_scalar::<f32>()? as f64,
        kl: kl_sum / tokens.max(1) as f64,
        clip_fraction: clipped as f64 / tokens.max(1) as f64,
        entropy,
        tokens,
    };
    Ok((l, stats, fed))
}

/// How the loss and log-prob passes run: candle's autograd (any device), or the hand-written
/// pass (CPU f32) with every completion's prompt fed whole or the prompt a pass's completions
/// share run once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Pass {
    Autograd,
    Whole,
    Shared,
}

impl Pass {
    /// What training uses on `model`: the hand-written pass where it applies.
    pub fn for_model(model: &Model, share: bool) -> Pass {
        match (model.manual_backward(), share) {
            (false, _) => Pass::Autograd,
            (true, false) => Pass::Whole,
            (true, true) => Pass::Shared,
        }
    }
}

/// Log-probs of each rollout's completion under `model` at `temperature`, without gradients (old
/// policy or reference), computed `micro` sequences at a time.
pub fn fixed_logps(model: &Model, seqs: &[(Vec<u32>, Vec<u32>)], pad: u32, micro: usize, pass: Pass, temperature: f64) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(micro.max(1)) {
        let mut nll = Vec::new();
        if pass == Pass::Autograd {
            let refs: Vec<(&[u32], &[u32])> = chunk.iter().map(|(p, c)| (p.as_slice(), c.as_slice())).collect();
            let (logits, targets, _) = completion_logits(model, &refs, pad, temperature)?;
            nll = ops::nll(&logits.detach(), &targets)?.to_vec1::<f32>()?;
        } else {
            let b = batch::pack_shared(model, &joined(chunk.iter().map(|(p, c)| (p, c))), pad, pass == Pass::Shared)?;
            model.target_grads(&b.prefix, &b.ids, &b.rows, &b.targets, temperature, &mut |logits| {
                nll = ops::nll(logits, &b.targets)?.to_vec1::<f32>()?;
                Ok((0.0, None))
            })?;
        }
        let mut at = 0;
        for (_, c) in chunk {
            out.push(nll[at..at + c.len()].iter().map(|x| -x).collect());
            at += c.len();
        }
    }
    Ok(out)
}

/// One update's loss statistics and gradients over `rollouts`, `micro` at a time; no gradient and
/// no backward pass unless `learn`. Also the tokens through the model (padding included). Each
/// micro-batch's loss is aggregated over itself and weighted by its share of the update (of its
/// rollouts for `grpo` and `dr_grpo`, of its tokens for `bnpo`), so the update's loss is the one
/// aggregated over all `rollouts` whatever `micro` is. TRL's equal per-device batches give the
/// same; a last, smaller micro-batch no longer counts as much as a full one.
pub fn update_grads(policy: &Model, rollouts: &[Rollout], obj: &Objective, pad: u32, micro: usize, pass: Pass, learn: bool) -> Result<(LossStats, usize, Vec<Option<Tensor>>)> {
    use super::optim::{accumulate, add_grads};
    let mut grads = Vec::new();
    let mut agg = LossStats::default();
    let mut fed = 0;
    let all_tokens: usize = rollouts.iter().map(|r| r.completion.len()).sum();
    for mb in rollouts.chunks(micro.max(1)) {
        let share = match obj.loss_type {
            LossType::Grpo | LossType::DrGrpo => mb.len() as f64 / rollouts.len() as f64,
            LossType::Bnpo => mb.iter().map(|r| r.completion.len()).sum::<usize>() as f64 / all_tokens.max(1) as f64,
        };
        let s = if pass == Pass::Autograd {
            let (l, s, n) = loss(policy, mb, obj, pad)?;
            if learn {
                accumulate(&mut grads, &policy.params.vars, &(l * share)?.backward()?)?;
            }
            fed += n;
            s
        } else {
            let (s, n, g) = manual_grads(policy, mb, obj, pad, share, pass == Pass::Shared, learn)?;
            if learn {
                add_grads(&mut grads, g)?;
            }
            fed += n;
            s
        };
        agg.loss += s.loss * share;
        agg.kl += s.kl * s.tokens as f64;
        agg.clip_fraction += s.clip_fraction * s.tokens as f64;
        agg.entropy += s.entropy * s.tokens as f64;
        agg.tokens += s.tokens;
    }
    let t = agg.tokens.max(1) as f64;
    Ok((LossStats { kl: agg.kl / t, clip_fraction: agg.clip_fraction / t, entropy: agg.entropy / t, ..agg }, fed, grads))
}

/// One AdamW update of `vars` from `grads` clipped to global norm `clip`; gives the norm before
/// clipping. Empty `grads` (no backward pass: every advantage 0 and no KL term) step with zero
/// gradients, as TRL does: its loss is then 0 and its gradients zeros, but AdamW still steps, and
/// the momentum it keeps (and weight decay) moves the weights.
#[cfg(any(feature = "llama", test))]
fn optimizer_step(opt: &mut super::optim::AdamW, grads: Vec<Option<Tensor>>, lr: f64, clip: f64) -> Result<f64> {
    if grads.is_empty() {
        opt.step_zero_grads(lr)?;
        return Ok(0.0);
    }
    let (norm, factor) = super::optim::clip_factor(&grads, clip)?;
    opt.step(&grads, lr, factor)?;
    Ok(norm)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_step_without_signal_still_moves_the_weights_by_their_momentum() {
        let var = candle_core::Var::from_tensor(&Tensor::new(&[1f32, -2.0], &Device::Cpu).unwrap()).unwrap();
        let mut opt = crate::train::optim::AdamW::new(vec![var.clone()], Default::default()).unwrap();
        let g = Tensor::new(&[0.5f32, -0.5], &Device::Cpu).unwrap();
        assert_eq!(optimizer_step(&mut opt, vec![Some(g)], 0.1, 1.0).unwrap(), 0.5f64.sqrt());
        let after_one = var.as_tensor().to_vec1::<f32>().unwrap();
        assert_eq!(optimizer_step(&mut opt, Vec::new(), 0.1, 1.0).unwrap(), 0.0);
        let after_two = var.as_tensor().to_vec1::<f32>().unwrap();
        // PyTorch's AdamW at t = 2 with g = 0: m = 0.9·m₁, v = 0.999·v₁, p −= lr·m̂ / (√v̂ + eps)
        for i in 0..2 {
            let (m1, v1) = (0.1 * 0.5f64, 0.001 * 0.25f64);
            let (m, v) = (0.9 * m1 / (1.0 - 0.81), 0.999 * v1 / (1.0 - 0.999f64.powi(2)));
            let want = after_one[i] as f64 - 0.1 * m / (v.sqrt() + 1e-8) * if i == 0 { 1.0 } else { -1.0 };
            assert!((after_two[i] as f64 - want).abs() < 1e-5, "{i}: {} vs {want}", after_two[i]);
        }
        assert_eq!(opt.t, 2);
    }

    /// The hand-written GRPO pass against candle's autograd of [`loss`]: loss, statistics and
    /// every gradient, for each aggregation, with and without the KL term, with ratios off 1
    /// (some clipped on each side), one prompt's completions alone and two prompts mixed, with
    /// and without the shared prompt run once.
    #[test]
    fn hand_written_grpo_gradients_match_autograd() {
        use crate::model::testing::{configs, tiny};
        let (pa, pb): (Vec<u32>, Vec<u32>) = (vec![3, 7, 11, 2, 9], vec![3, 7, 5, 6]);
        let pairs: Vec<(Vec<u32>, Vec<u32>)> = vec![
            (pa.clone(), vec![4, 30, 8]),
            (pa.clone(), vec![12, 6]),
            (pa.clone(), vec![21, 17, 1, 5]),
            (pb.clone(), vec![9, 40]),
        ];
        for cfg in configs() {
            let m = tiny(&cfg);
            let refs: Vec<(&[u32], &[u32])> = pairs.iter().map(|(p, c)| (p.as_slice(), c.as_slice())).collect();
            // the hand-written forward gives the same log-probs, shared prompt or not, at any temperature
            for temperature in [1.0, 0.7] {
                let now = completion_logps(&m, &refs, 0, temperature).unwrap().per_seq;
                for pass in [Pass::Autograd, Pass::Whole, Pass::Shared] {
                    let fixed = fixed_logps(&m, &pairs, 0, 3, pass, temperature).unwrap();
                    for (a, b) in fixed.iter().zip(&now) {
                        let b = b.to_vec1::<f32>().unwrap();
                        assert!(a.iter().zip(&b).all(|(x, y)| (x - y).abs() < 1e-4), "{:?} {pass:?} T {temperature}: {a:?} vs {b:?}", cfg.arch);
                    }
                }
            }
            let now = completion_logps(&m, &refs, 0, 1.0).unwrap().per_seq;
            // a lower temperature sharpens the distribution: the likeliest token's log-prob rises
            let cold = completion_logps(&m, &refs, 0, 0.5).unwrap().per_seq;
            assert_ne!(now[0].to_vec1::<f32>().unwrap(), cold[0].to_vec1::<f32>().unwrap());
            let offsets = [0.0f32, 0.5, -0.6, 0.1, -0.05, 0.3];
            let rollouts: Vec<Rollout> = pairs
                .iter()
                .zip(&now)
                .zip([1.2, -0.7, 0.9, -0.4])
                .enumerate()
                .map(|(i, (((p, c), lp), a))| {
                    let lp = lp.to_vec1::<f32>().unwrap();
                    Rollout {
                        prompt: p.clone(),
                        completion: c.clone(),
                        advantage: a,
                        // the first rollout samples from the current policy; the others from an
                        // older one, so ratios leave [1 − ε, 1 + ε_high] on both sides
                        old_logp: if i == 0 { Vec::new() } else { lp.iter().enumerate().map(|(t, x)| x + offsets[(t + i) % 6]).collect() },
                        ref_logp: lp.iter().enumerate().map(|(t, x)| x - offsets[(t + 2 * i) % 6]).collect(),
                    }
                })
                .collect();
            let scale = 0.5;
            let mut clipped_somewhere = false;
            for loss_type in [LossType::Grpo, LossType::Bnpo, LossType::DrGrpo] {
                for beta in [0.0, 0.04] {
                    // the KL runs are also taken at a sampling temperature other than 1
                    let temperature = if beta == 0.0 { 1.0 } else { 0.8 };
                    let obj = Objective { beta, loss_type, max_completion_length: 6, temperature, ..Objective::default() };
                    for mb in [&rollouts[..3], &rollouts[..]] {
                        let (l, want, fed_autograd) = loss(&m, mb, &obj, 0).unwrap();
                        let store = (l * scale).unwrap().backward().unwrap();
                        clipped_somewhere |= want.clip_fraction > 0.0;
                        let mut fed = Vec::new();
                        for share in [false, true] {
                            let what = format!("{:?} {loss_type:?} beta {beta} {} rollouts share {share}", cfg.arch, mb.len());
                            let (got, n, grads) = manual_grads(&m, mb, &obj, 0, scale, share, true).unwrap();
                            fed.push(n);
                            for (x, y, name) in [(got.loss, want.loss, "loss"), (got.kl, want.kl, "kl"), (got.clip_fraction, want.clip_fraction, "clip"), (got.entropy, want.entropy, "entropy")] {
                                assert!((x - y).abs() <= 1e-5 * y.abs().max(1.0), "{what}: {name} {x} vs {y}");
                            }
                            assert_eq!(got.tokens, want.tokens);
                            for (i, (name, var)) in m.params.iter().enumerate() {
                                let want = store.get(var.as_tensor()).unwrap_or_else(|| panic!("{what} {name}: autograd gave no gradient"));
                                let g = grads[i].as_ref().unwrap_or_else(|| panic!("{what} {name}: no hand-written gradient"));
                                let diff = (g - want).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                                let size = want.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                                assert!(size > 0.0, "{what} {name}: no gradient to compare");
                                assert!(diff <= 1e-4 * size.max(1e-3), "{what} {name}: max |Δ| {diff} against max |g| {size}");
                            }
                        }
                        // one prompt's completions share all of it but its last token
                        let saved = if mb.len() == 3 { 2 * (pa.len() - 1) } else { 3 * 2 };
                        assert!(fed[0] - fed[1] >= saved, "{:?}: fed {fed:?}", cfg.arch);
                        // whole prompts feed what autograd's packing feeds
                        assert_eq!(fed[0], fed_autograd, "{:?}: fed {fed:?}", cfg.arch);
                    }
                }
            }
            assert!(clipped_somewhere, "the test's ratios never left the clip range");
            // a whole update, two micro-batches: the trainer's passes agree
            let obj = Objective::default();
            let (a, fa, ga) = update_grads(&m, &rollouts, &obj, 0, 2, Pass::Autograd, true).unwrap();
            let (b, fb, gb) = update_grads(&m, &rollouts, &obj, 0, 2, Pass::Shared, true).unwrap();
            assert!(fb < fa, "{:?}: the shared pass fed {fb} tokens, autograd {fa}", cfg.arch);
            // whole prompts feed what autograd's packing feeds
            assert_eq!(update_grads(&m, &rollouts, &obj, 0, 2, Pass::Whole, false).unwrap().1, fa);
            assert!((a.loss - b.loss).abs() <= 1e-5 * a.loss.abs().max(1.0) && (a.kl - b.kl).abs() <= 1e-5 && a.tokens == b.tokens, "{a:?} vs {b:?}");
            let (na, nb) = (crate::train::optim::clip_factor(&ga, 1.0).unwrap().0, crate::train::optim::clip_factor(&gb, 1.0).unwrap().0);
            assert!((na - nb).abs() <= 1e-4 * na, "gradient norms {na} vs {nb}");
            // without learning: the same statistics and tokens, forward only, no gradient
            let (c, fc, gc) = update_grads(&m, &rollouts, &obj, 0, 2, Pass::Shared, false).unwrap();
            assert!(gc.is_empty() && fc == fb && (c.loss - b.loss).abs() <= 1e-9 * b.loss.abs().max(1.0) && c.tokens == b.tokens, "{c:?} vs {b:?}");
            assert!(update_grads(&m, &rollouts, &obj, 0, 2, Pass::Autograd, false).unwrap().2.is_empty());
            // `micro` is memory, not the objective: micro-batches of 3 + 1 give the loss and
            // gradients of one batch of 4, for every aggregation
            for loss_type in [LossType::Grpo, LossType::Bnpo, LossType::DrGrpo] {
                let obj = Objective { loss_type, max_completion_length: 6, ..Objective::default() };
                for pass in [Pass::Autograd, Pass::Shared] {
                    let (one, _, g1) = update_grads(&m, &rollouts, &obj, 0, 4, pass, true).unwrap();
                    let (split, _, g2) = update_grads(&m, &rollouts, &obj, 0, 3, pass, true).unwrap();
                    assert!((one.loss - split.loss).abs() <= 1e-5 * one.loss.abs().max(1e-3), "{loss_type:?} {pass:?}: {one:?} vs {split:?}");
                    for (a, b) in g1.iter().zip(&g2) {
                        let (a, b) = (a.as_ref().unwrap(), b.as_ref().unwrap());
                        let diff = (a - b).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                        let size = a.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
                        assert!(diff <= 1e-4 * size.max(1e-3), "{loss_type:?} {pass:?}: max |Δ| {diff} against {size}");
                    }
                }
            }
        }
    }

    #[test]
    fn advantages_by_hand() {
        let r = [1.0, 3.0, 0.0, 0.0];
        // group 1: mean 2, std √2; group 2: all equal → 0
        let a = advantages(&r, 2, ScaleRewards::Group);
        let s = 2f64.sqrt() + 1e-4;
        assert!((a[0] + 1.0 / s).abs() < 1e-12 && (a[1] - 1.0 / s).abs() < 1e-12);
        assert_eq!(&a[2..], &[0.0, 0.0]);
        assert_eq!(advantages(&r, 2, ScaleRewards::None), vec![-1.0, 1.0, 0.0, 0.0]);
        // batch std of [1,3,0,0]: mean 1, var (0+4+1+1)/3 = 2
        let b = advantages(&r, 2, ScaleRewards::Batch);
        assert!((b[0] + 1.0 / (2f64.sqrt() + 1e-4)).abs() < 1e-12);
    }

    #[test]
    fn ratios_clipping_and_kl_by_hand() {
        let dev = Device::Cpu;
        let obj = Objective { epsilon: 0.2, epsilon_high: 0.28, beta: 0.04, ..Default::default() };
        // ratios e^0.5 ≈ 1.6487 (clipped to 1.28 for A > 0), e^-0.5 ≈ 0.6065, 1
        let logp = Tensor::new(&[-0.5f32, -1.5, -1.0], &dev).unwrap();
        let old = Tensor::new(&[-1.0f32, -1.0, -1.0], &dev).unwrap();
        let reference = Tensor::new(&[-1.0f32, -1.0, -1.2], &dev).unwrap();
        let (sur, kl, nclip) = token_terms(&logp, &old, &reference, 2.0, &obj).unwrap();
        let s = sur.to_vec1::<f32>().unwrap();
        assert!((s[0] + 2.0 * 1.28).abs() < 1e-5, "{s:?}");
        assert!((s[1] + 2.0 * (-0.5f32).exp()).abs() < 1e-5);
        assert!((s[2] + 2.0).abs() < 1e-6);
        assert_eq!(nclip, 1);
        let k = kl.to_vec1::<f32>().unwrap();
        let k3 = |d: f32| d.exp() - d - 1.0;
        assert!((k[0] - k3(-0.5)).abs() < 1e-6 && (k[1] - k3(0.5)).abs() < 1e-6 && (k[2] - k3(-0.2)).abs() < 1e-6);
        // negative advantage: the low side clips (ratio 0.6065 < 0.8 → max(−A·r, −A·0.8))
        let (sur, _, nclip) = token_terms(&logp, &old, &reference, -1.0, &obj).unwrap();
        let s = sur.to_vec1::<f32>().unwrap();
        assert!((s[1] - 0.8).abs() < 1e-6 && (s[0] - 0.5f32.exp()).abs() < 1e-5);
        assert_eq!(nclip, 1);
    }

    #[test]
    fn aggregations_by_hand() {
        let dev = Device::Cpu;
        let a = Tensor::new(&[1f32, 2.0, 3.0], &dev).unwrap();
        let b = Tensor::new(&[5f32], &dev).unwrap();
        let mut obj = Objective { max_completion_length: 4, ..Default::default() };
        let v = |o: &Objective| aggregate(&[a.clone(), b.clone()], o).unwrap().to_scalar::<f32>().unwrap();
        obj.loss_type = LossType::Grpo;
        assert!((v(&obj) - (2.0 + 5.0) / 2.0).abs() < 1e-6);
        obj.loss_type = LossType::Bnpo;
        assert!((v(&obj) - 11.0 / 4.0).abs() < 1e-6);
        obj.loss_type = LossType::DrGrpo;
        assert!((v(&obj) - 11.0 / 8.0).abs() < 1e-6);
    }
}

/// The prompts of a GRPO run as the paper's `sample_grpo.py` draws them: from each source
/// `floor(total · min(n, cap) / Σ min(n, cap))` examples after a seeded shuffle, then shuffled.
pub fn prompt_pool(per_source: Vec<Vec<crate::data::Example>>, total: usize, cap: usize, seed: u64) -> Vec<crate::data::Example> {
    use rand::seq::SliceRandom;
    use rand::SeedableRng;
    let counts: Vec<usize> = per_source.iter().map(|v| v.len().min(cap)).collect();
    let sum: usize = counts.iter().sum::<usize>().max(1);
    let mut out = Vec::new();
    for (mut v, c) in per_source.into_iter().zip(counts) {
        v.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
        v.truncate(total * c / sum);
        out.extend(v);
    }
    out.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    out
}

/// Everything that decides a GRPO run (a resume must match).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GrpoConfig {
    pub steps: usize,
    pub prompts_per_step: usize,
    pub num_generations: usize,
    pub num_iterations: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub lr: f64,
    pub warmup_ratio: f64,
    pub clip: f64,
    pub seed: u64,
    /// sequences per forward pass
    pub micro: usize,
    pub reward: super::reward::Weights,
    pub objective: Objective,
    pub adam: super::optim::AdamConfig,
    /// constrained rollouts (`json`/`schema`; not written when `free`, as runs made before the option)
    #[serde(default, skip_serializing_if = "crate::prompt::grammar::Decoding::is_free")]
    pub decoding: crate::prompt::grammar::Decoding,
    /// the constraint starts after `</think>` (a CoT policy) rather than at the first token
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub constrain_after_think: bool,
    /// run the prompt that a micro-batch's completions share once in the loss and log-prob
    /// passes (CPU f32). It changes only the order of float sums, so a resume may switch it; it
    /// is written only when off, so runs made before it keep their names.
    #[serde(default = "yes", skip_serializing_if = "is_yes")]
    pub share_prompt: bool,
}

fn yes() -> bool {
    true
}

fn is_yes(b: &bool) -> bool {
    *b
}

/// One logged GRPO step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct GrpoLog {
    pub step: usize,
    pub lr: f64,
    pub reward: f64,
    pub reward_std: f64,
    /// mean and spread of each component (all five, weighted or not)
    pub components: std::collections::BTreeMap<String, (f64, f64)>,
    pub loss: f64,
    pub kl: f64,
    pub clip_fraction: f64,
    pub entropy: f64,
    pub grad_norm: f64,
    pub completion_len: f64,
    pub truncated: f64,
    pub rollout_tokens: usize,
    pub rollout_s: f64,
    pub rollout_tokens_per_s: f64,
    pub logp_s: f64,
    pub update_s: f64,
    pub step_s: f64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GrpoState {
    pub step: usize,
    pub source: std::path::PathBuf,
    pub config: GrpoConfig,
    pub pool_hash: String,
}

/// Train `policy` with GRPO from its current weights; `reference` is frozen.
#[cfg(feature = "llama")]
#[allow(clippy::too_many_arguments)]
pub fn train(
    policy: &Model,
    reference: &Model,
    tok: &crate::model::tokenizer::Tokenizer,
    pool: &[crate::data::Example],
    spec: &crate::prompt::PromptSpec,
    cfg: &GrpoConfig,
    dirs: &super::sft::Dirs,
    quiet: bool,
) -> Result<super::sft::Outcome> {
    use super::checkpoint;
    use crate::Error;
    use super::optim::{cosine_lr, AdamW};
    use crate::engine::llama::{LlamaEngine, LlamaSettings};
    use crate::engine::{Engine, Finish, GenRequest, Sampling};
    use std::io::Write;
    use std::time::Instant;

    let source = policy.origin.path.clone();
    if pool.is_empty() {
        return Err(Error::config("--sources", "no training prompt"));
    }
    let pool_hash = crate::prompt::short_hash(&pool.iter().map(|e| e.id.as_str()).collect::<Vec<_>>().join(","));
    let mut opt = AdamW::new(policy.params.vars.clone(), cfg.adam)?;
    let total_updates = cfg.steps * cfg.num_iterations;
    let warmup = (cfg.warmup_ratio * total_updates as f64).ceil() as usize;
    std::fs::create_dir_all(&dirs.log_dir).map_err(|e| Error::io(&dirs.log_dir, e))?;
    let log_path = dirs.log_dir.join("steps.jsonl");
    let same = |st: &GrpoState| GrpoConfig { share_prompt: cfg.share_prompt, ..st.config.clone() } == *cfg && st.pool_hash == pool_hash;
    let resumed_from = checkpoint::resume(&dirs.ckpt_dir, policy, &mut opt, same, |st: &GrpoState| st.step * cfg.num_iterations)?.map(|st| st.step);
    let start = resumed_from.unwrap_or(0);
    let mut log = checkpoint::reopen_log(&log_path, |r: &GrpoLog| r.step <= start)?;
    let save = |step: usize, opt: &AdamW| -> Result<std::path::PathBuf> {
        let state = GrpoState { step, source: source.clone(), config: cfg.clone(), pool_hash: pool_hash.clone() };
        checkpoint::save(&dirs.ckpt_dir, step, policy, opt, &state, dirs.keep)
    };
    let snapshot = dirs.ckpt_dir.join("policy-snapshot.gguf");
    let target = crate::model::export::Target::read(&source)?;
    let pad = tok.eos();
    let pass = Pass::for_model(policy, cfg.share_prompt);
    let obj = Objective { temperature: cfg.temperature as f64, ..cfg.objective.clone() };
    let bar = crate::util::progress(!quiet, "grpo", "steps", cfg.steps, start);
    let mut last = None;
    let mut interrupted = false;
    for step in start..cfg.steps {
        let t_step = Instant::now();
        // the prompts of this step: the pool in order, wrapping around
        let prompts: Vec<&crate::data::Example> = (0..cfg.prompts_per_step).map(|i| &pool[(step * cfg.prompts_per_step + i) % pool.len()]).collect();
        // each prompt is tokenised once for its G completions
        let prompt_ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|ex| Ok(tok.encode(&tok.prompt_text(&crate::prompt::render(ex, spec))?, true)))
            .collect::<Result<_>>()?;
        // 1. rollouts from a snapshot of the policy, in llama.cpp
        let t0 = Instant::now();
        target.write(&policy.snapshot()?, crate::model::export::ExportType::F16, &snapshot)?;
        let g = cfg.num_generations;
        let reqs: Vec<GenRequest> = prompts
            .iter()
            .flat_map(|ex| {
                let rendered = crate::prompt::render(ex, spec);
                (0..g).map(move |k| GenRequest {
                    prompt: rendered.clone(),
                    sampling: Sampling {
                        temperature: cfg.temperature,
                        top_p: cfg.top_p,
                        seed: cfg.seed.wrapping_mul(1_000_003).wrapping_add((step * 10_000 + k) as u64),
                        max_tokens: cfg.objective.max_completion_length,
                        constraint: crate::prompt::grammar::constraint(cfg.decoding, ex, cfg.constrain_after_think),
                        ..Sampling::default()
                    },
                })
            })
            .collect();
        let outs = {
            // room for the longest prompt and a completion of the longest length allowed
            let longest = prompt_ids.iter().map(Vec::len).max().unwrap_or(0);
            let ctx_per_seq = (longest + cfg.objective.max_completion_length + 16).max(2048);
            let settings = LlamaSettings { parallel: reqs.len().min(16), ctx_per_seq, threads: 0, ..Default::default() };
            let mut engine = LlamaEngine::load(&snapshot, settings)?;
            engine.generate(&reqs)?
        };
        let rollout_s = t0.elapsed().as_secs_f64();
        let rollout_tokens: usize = outs.iter().map(|o| o.gen_tokens).sum();
        // 2. rewards and advantages
        let mut rewards = Vec::with_capacity(outs.len());
        let mut comps: std::collections::BTreeMap<String, Vec<f64>> = Default::default();
        for (i, o) in outs.iter().enumerate() {
            let (r, values) = cfg.reward.score(&o.text, prompts[i / g]);
            rewards.push(r);
            for (c, v) in values {
                comps.entry(c.name().to_string()).or_default().push(v);
            }
        }
        let adv = advantages(&rewards, g, cfg.objective.scale_rewards);
        // 3. tokens and fixed log-probs (old policy, reference)
        let t1 = Instant::now();
        let mut seqs = Vec::with_capacity(outs.len());
        for (i, o) in outs.iter().enumerate() {
            let enc = prompt_ids[i / g].clone();
            // the tokens sampled, the end-of-generation token that stopped them included (a
            // re-tokenisation of the text could differ from them, and its end token with it)
            let mut c = o.tokens.clone();
            c.truncate(cfg.objective.max_completion_length.max(1));
            if c.is_empty() {
                c.push(tok.eos());
            }
            seqs.push((enc, c));
        }
        let t = obj.temperature;
        let old = if cfg.num_iterations > 1 { fixed_logps(policy, &seqs, pad, cfg.micro, pass, t)? } else { vec![Vec::new(); seqs.len()] };
        let refl = if obj.beta != 0.0 {
            fixed_logps(reference, &seqs, pad, cfg.micro, pass, t)?
        } else if cfg.num_iterations > 1 {
            old.clone()
        } else {
            fixed_logps(policy, &seqs, pad, cfg.micro, pass, t)?
        };
        let rollouts: Vec<Rollout> = seqs
            .into_iter()
            .zip(adv.iter())
            .zip(old.into_iter().zip(refl))
            .map(|(((p, c), &a), (o, r))| Rollout { prompt: p, completion: c, advantage: a, old_logp: o, ref_logp: r })
            .collect();
        let logp_s = t1.elapsed().as_secs_f64();
        // 4. num_iterations updates on this generation batch
        let t2 = Instant::now();
        let mut stats = LossStats::default();
        let mut grad_norm = 0.0;
        let mut lr = 0.0;
        let all_zero = adv.iter().all(|a| *a == 0.0);
        for it in 0..cfg.num_iterations {
            let (agg, _, grads) = update_grads(policy, &rollouts, &obj, pad, cfg.micro, pass, !all_zero || obj.beta != 0.0)?;
            let update = step * cfg.num_iterations + it;
            lr = cosine_lr(cfg.lr, update, total_updates, warmup);
            grad_norm = optimizer_step(&mut opt, grads, lr, cfg.clip)?;
            if it == 0 {
                stats = agg;
            }
        }
        let update_s = t2.elapsed().as_secs_f64();
        let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len().max(1) as f64;
        let sd = |v: &[f64]| {
            let m = mean(v);
            (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len().max(1) as f64).sqrt()
        };
        let row = GrpoLog {
            step: step + 1,
            lr,
            reward: mean(&rewards),
            reward_std: sd(&rewards),
            components: comps.iter().map(|(k, v)| (k.clone(), (mean(v), sd(v)))).collect(),
            loss: stats.loss,
            kl: stats.kl,
            clip_fraction: stats.clip_fraction,
            entropy: stats.entropy,
            grad_norm,
            completion_len: mean(&outs.iter().map(|o| o.gen_tokens as f64).collect::<Vec<_>>()),
            truncated: mean(&outs.iter().map(|o| (o.finish == Finish::Length) as u8 as f64).collect::<Vec<_>>()),
            rollout_tokens,
            rollout_s,
            rollout_tokens_per_s: rollout_tokens as f64 / rollout_s.max(1e-9),
            logp_s,
            update_s,
            step_s: t_step.elapsed().as_secs_f64(),
        };
        writeln!(log, "{}", serde_json::to_string(&row).expect("row")).map_err(|e| Error::io(&log_path, e))?;
        if let Some(b) = &bar {
            b.set_message(format!("reward {:.2}", row.reward));
            b.inc(1);
        }
        if checkpoint::after_step(step + 1, cfg.steps, dirs.save_every, &mut last, || save(step + 1, &opt))? {
            interrupted = true;
            break;
        }
    }
    let _ = std::fs::remove_file(&snapshot);
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let steps_done = crate::util::read_jsonl::<GrpoLog>(&log_path)?.last().map(|r| r.step).unwrap_or(start);
    Ok(super::sft::Outcome { steps_done, total_steps: cfg.steps, resumed_from, last_checkpoint: last.or_else(|| checkpoint::latest(&dirs.ckpt_dir)), interrupted })
}
