//! Qwen2 / Qwen2.5: the llama block with biases on the Q, K and V projections; NeoX RoPE.
use super::gguf::Meta;
use super::{Arch, Config};
use crate::Result;

pub fn from_gguf(m: &Meta, vocab: usize, tied: bool) -> Result<Config> {
    let mut cfg = super::llama::from_gguf(m, vocab, tied)?;
    cfg.arch = Arch::Qwen2;
    cfg.rope_interleaved = false;
    cfg.qkv_bias = true;
    cfg.rms_eps = m.f64_or("attention.layer_norm_rms_epsilon", 1e-6)?;
    cfg.rope_theta = m.f64_or("rope.freq_base", 1_000_000.0)?;
    cfg.head_dim = cfg.hidden / cfg.heads;
    Ok(cfg)
}

pub fn from_hf(c: &super::safetensors::HfConfig) -> Result<Config> {
    let mut cfg = c.common(Arch::Qwen2)?;
    cfg.qkv_bias = true;
    Ok(cfg)
}
