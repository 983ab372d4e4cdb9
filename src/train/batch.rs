//! Token batches for the training losses shared by SFT and GRPO: sequences packed into one padded
//! `[b, t]` tensor with the flat positions of their targets, and the logits at exactly those
//! positions (never the full `[b, t, vocab]`).
use candle_core::{DType, Tensor};

use crate::model::Model;
use crate::{Error, Result};

/// Sequences right-padded to `[b, t]`, the flat positions whose next token is a target (each
/// sequence's tokens from index `first` on, `first ≥ 1`), and those targets in order.
pub(crate) fn pack<S: AsRef<[u32]>>(model: &Model, seqs: &[(S, usize)], pad: u32) -> Result<(Tensor, Vec<u32>, Vec<u32>)> {
    let t = seqs.iter().map(|(s, _)| s.as_ref().len()).max().unwrap_or(0);
    let b = seqs.len();
    let mut ids = Vec::with_capacity(b * t);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    for (bi, (s, first)) in seqs.iter().enumerate() {
        let s = s.as_ref();
        if *first == 0 {
            return Err(Error::Engine("a training sequence or rollout has an empty prompt (no context before its first target)".into()));
        }
        ids.extend_from_slice(s);
        ids.extend(std::iter::repeat_n(pad, t - s.len()));
        for j in (first - 1)..(s.len().saturating_sub(1)) {
            rows.push((bi * t + j) as u32);
            targets.push(s[j + 1]);
        }
    }
    Ok((Tensor::from_vec(ids, (b, t), &model.device)?, rows, targets))
}

/// The f32 logits `[rows, vocab]` of `ids [b, t]` at the flat positions `rows` (differentiable).
pub(crate) fn target_logits(model: &Model, ids: &Tensor, rows: Vec<u32>) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    let h = model.hidden(ids)?.reshape((b * t, model.config.hidden))?;
    let n = rows.len();
    let h = h.index_select(&Tensor::from_vec(rows, n, &model.device)?, 0)?;
    Ok(model.logits(&h)?.to_dtype(DType::F32)?)
}

/// A micro-batch ready for the hand-written backward pass: with `share`, the start every sequence
/// shares (short of its first target) taken out as `prefix`, to run once; the rest packed as by
/// [`pack`]. `fed` counts the tokens through the model (prefix once, padding included).
pub(crate) struct Shared {
    pub prefix: Vec<u32>,
    pub ids: Tensor,
    pub rows: Vec<u32>,
    pub targets: Vec<u32>,
    pub fed: usize,
}

pub(crate) fn pack_shared<S: AsRef<[u32]>>(model: &Model, seqs: &[(S, usize)], pad: u32, share: bool) -> Result<Shared> {
    let p = if share && seqs.len() > 1 { super::sft::shared_prefix(seqs) } else { 0 };
    let rest: Vec<(&[u32], usize)> = seqs.iter().map(|(s, f)| (&s.as_ref()[p..], f - p)).collect();
    let (ids, rows, targets) = pack(model, &rest, pad)?;
    let prefix = seqs.first().map(|(s, _)| s.as_ref()[..p].to_vec()).unwrap_or_default();
    Ok(Shared { fed: p + ids.elem_count(), prefix, ids, rows, targets })
}
