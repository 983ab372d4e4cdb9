//! Llama (SmolLM2): RMSNorm, grouped-query attention without biases, SwiGLU. In a GGUF the
//! converter has permuted Q/K rows so that RoPE rotates adjacent pairs; in a Hugging Face
//! checkpoint it rotates the two halves.
use super::gguf::Meta;
use super::{Arch, Config};
use crate::Result;

pub fn from_gguf(m: &Meta, vocab: usize, tied: bool) -> Result<Config> {
    let hidden = m.usize("embedding_length")?;
    let heads = m.usize("attention.head_count")?;
    Ok(Config {
        arch: Arch::Llama,
        vocab,
        hidden,
        layers: m.usize("block_count")?,
        heads,
        kv_heads: m.usize_or("attention.head_count_kv", heads)?,
        head_dim: m.usize_or("rope.dimension_count", hidden / heads)?,
        ffn: m.usize("feed_forward_length")?,
        rms_eps: m.f64_or("attention.layer_norm_rms_epsilon", 1e-5)?,
        rope_theta: m.f64_or("rope.freq_base", 10_000.0)?,
        rope_interleaved: true,
        qkv_bias: false,
        qk_norm: false,
        tied,
    })
}

pub fn from_hf(c: &super::safetensors::HfConfig) -> Result<Config> {
    let mut cfg = c.common(Arch::Llama)?;
    cfg.rope_interleaved = false;
    Ok(cfg)
}
