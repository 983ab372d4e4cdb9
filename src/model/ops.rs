//! The decoder's elementwise pieces, differentiable: RMSNorm, the two RoPE layouts, softmax.
use candle_core::{Result, Tensor, D};

/// `x / sqrt(mean(x²) + eps) * w` over the last dimension.
pub fn rms_norm(x: &Tensor, w: &Tensor, eps: f32) -> Result<Tensor> {
    let ms = x.sqr()?.mean_keepdim(D::Minus1)?;
    let r = (ms + eps as f64)?.sqrt()?.recip()?;
    x.broadcast_mul(&r)?.broadcast_mul(w)
}

/// RoPE on adjacent pairs `(x[2i], x[2i+1])` of `x [b, h, t, d]`; cos/sin `[t, d/2]`.
pub fn rope_interleaved(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    candle_nn::rotary_emb::rope_i_slow(x, cos, sin)
}

/// RoPE on the two halves `(x[i], x[i + d/2])` (NeoX layout).
pub fn rope_halves(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    candle_nn::rotary_emb::rope_slow(x, cos, sin)
}

/// Softmax over the last dimension.
pub fn softmax_last(x: &Tensor) -> Result<Tensor> {
    candle_nn::ops::softmax(x, D::Minus1)
}
