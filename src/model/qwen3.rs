//! Qwen3 (the paper's backbone): no projection biases, an RMSNorm over each head of Q and K
//! before RoPE, head size set explicitly (`attention.key_length`); NeoX RoPE.
use super::gguf::Meta;
use super::{Arch, Config};
use crate::Result;

pub fn from_gguf(m: &Meta, vocab: usize, tied: bool) -> Result<Config> {
    let mut cfg = super::llama::from_gguf(m, vocab, tied)?;
    cfg.arch = Arch::Qwen3;
    cfg.rope_interleaved = false;
    cfg.qk_norm = true;
    cfg.head_dim = m.usize_or("attention.key_length", cfg.hidden / cfg.heads)?;
    cfg.rms_eps = m.f64_or("attention.layer_norm_rms_epsilon", 1e-6)?;
    cfg.rope_theta = m.f64_or("rope.freq_base", 1_000_000.0)?;
    Ok(cfg)
}

pub fn from_hf(c: &super::safetensors::HfConfig) -> Result<Config> {
    let mut cfg = c.common(Arch::Qwen3)?;
    cfg.qk_norm = true;
    Ok(cfg)
}
