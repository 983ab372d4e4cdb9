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
use crate::{Error, Result};

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
}

impl Default for Objective {
    fn default() -> Self {
        Objective { epsilon: 0.2, epsilon_high: 0.28, beta: 0.04, loss_type: LossType::DrGrpo, scale_rewards: ScaleRewards::Group, max_completion_length: 4096 }
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

/// Log-probabilities of each sequence's completion tokens under `model` (with gradients when
/// the model's weights are tracked), and the mean entropy of its next-token distributions.
pub fn completion_logps(model: &Model, seqs: &[(&[u32], &[u32])], pad: u32) -> Result<(Vec<Tensor>, f64)> {
    let joined: Vec<(Vec<u32>, usize)> = seqs.iter().map(|(p, c)| ([*p, *c].concat(), p.len())).collect();
    let (ids, rows, targets) = batch::pack(model, &joined, pad)?;
    let logits = batch::target_logits(model, &ids, rows)?;
    let logp = ops::nll(&logits, &targets)?.neg()?;
    let entropy = if targets.is_empty() {
        0.0
    } else {
        let l = logits.detach();
        let p = candle_nn::ops::softmax_last_dim(&l)?;
        let lp = candle_nn::ops::log_softmax(&l, candle_core::D::Minus1)?;
        (p * lp)?.sum(1)?.neg()?.mean_all()?.to_scalar::<f32>()? as f64
    };
    let mut out = Vec::with_capacity(seqs.len());
    let mut at = 0;
    for (_, c) in seqs {
        out.push(logp.narrow(0, at, c.len())?);
        at += c.len();
    }
    Ok((out, entropy))
}

/// The loss of a batch of rollouts (gradients flow into `policy`), and its statistics.
pub fn loss(policy: &Model, rollouts: &[Rollout], obj: &Objective, pad: u32) -> Result<(Tensor, LossStats)> {
    let seqs: Vec<(&[u32], &[u32])> = rollouts.iter().map(|r| (r.prompt.as_slice(), r.completion.as_slice())).collect();
    let (logps, entropy) = completion_logps(policy, &seqs, pad)?;
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
    Ok((l, stats))
}

/// Log-probs of each rollout's completion under `model`, without gradients (old policy or
/// reference), computed `micro` sequences at a time.
pub fn fixed_logps(model: &Model, seqs: &[(Vec<u32>, Vec<u32>)], pad: u32, micro: usize) -> Result<Vec<Vec<f32>>> {
    let mut out = Vec::with_capacity(seqs.len());
    for chunk in seqs.chunks(micro.max(1)) {
        let refs: Vec<(&[u32], &[u32])> = chunk.iter().map(|(p, c)| (p.as_slice(), c.as_slice())).collect();
        let (lps, _) = completion_logps(model, &refs, pad)?;
        for lp in lps {
            out.push(lp.detach().to_vec1::<f32>()?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

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
    use super::optim::{accumulate, clip_factor, cosine_lr, AdamW};
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
    let same = |st: &GrpoState| st.config == *cfg && st.pool_hash == pool_hash;
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
    let bar = crate::util::progress(!quiet, "grpo", "steps", cfg.steps, start);
    let mut last = None;
    let mut interrupted = false;
    for step in start..cfg.steps {
        let t_step = Instant::now();
        // the prompts of this step: the pool in order, wrapping around
        let prompts: Vec<&crate::data::Example> = (0..cfg.prompts_per_step).map(|i| &pool[(step * cfg.prompts_per_step + i) % pool.len()]).collect();
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
            let settings = LlamaSettings { parallel: reqs.len().min(16), ctx_per_seq: 2048, threads: 0, ..Default::default() };
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
        // each prompt is tokenised once for its G completions
        let prompt_ids: Vec<Vec<u32>> = prompts
            .iter()
            .map(|ex| Ok(tok.encode(&tok.prompt_text(&crate::prompt::render(ex, spec))?, true)))
            .collect::<Result<_>>()?;
        let mut seqs = Vec::with_capacity(outs.len());
        for (i, o) in outs.iter().enumerate() {
            let enc = prompt_ids[i / g].clone();
            let mut c = tok.encode(&o.text, false);
            if o.finish == Finish::Stop {
                c.push(tok.eos());
            }
            c.truncate(cfg.objective.max_completion_length.max(1));
            if c.is_empty() {
                c.push(tok.eos());
            }
            seqs.push((enc, c));
        }
        let old = if cfg.num_iterations > 1 { fixed_logps(policy, &seqs, pad, cfg.micro)? } else { vec![Vec::new(); seqs.len()] };
        let refl = if cfg.objective.beta != 0.0 {
            fixed_logps(reference, &seqs, pad, cfg.micro)?
        } else if cfg.num_iterations > 1 {
            old.clone()
        } else {
            fixed_logps(policy, &seqs, pad, cfg.micro)?
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
            let mut grads = Vec::new();
            let mut agg = LossStats::default();
            let n_mb = rollouts.chunks(cfg.micro.max(1)).count() as f64;
            for mb in rollouts.chunks(cfg.micro.max(1)) {
                let (l, s) = loss(policy, mb, &cfg.objective, pad)?;
                // every micro-batch is aggregated over itself: weight them equally
                let l = (l / n_mb)?;
                agg.loss += s.loss / n_mb;
                agg.kl += s.kl * s.tokens as f64;
                agg.clip_fraction += s.clip_fraction * s.tokens as f64;
                agg.entropy += s.entropy * s.tokens as f64;
                agg.tokens += s.tokens;
                if !all_zero || cfg.objective.beta != 0.0 {
                    accumulate(&mut grads, &policy.params.vars, &l.backward()?)?;
                }
            }
            let update = step * cfg.num_iterations + it;
            lr = cosine_lr(cfg.lr, update, total_updates, warmup);
            if !grads.is_empty() {
                let (norm, factor) = clip_factor(&grads, cfg.clip)?;
                grad_norm = norm;
                opt.step(&grads, lr, factor)?;
            }
            if it == 0 {
                let t = agg.tokens.max(1) as f64;
                stats = LossStats { loss: agg.loss, kl: agg.kl / t, clip_fraction: agg.clip_fraction / t, entropy: agg.entropy / t, tokens: agg.tokens };
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
