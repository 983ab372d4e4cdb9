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
