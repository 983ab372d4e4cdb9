//! The candle decoder that stages 2 and 3 train: full-sequence logits, weights held under their
//! GGUF names and layout from load to export, so a trained checkpoint goes back to llama.cpp
//! without any renaming or permutation.
//!
//! One file per architecture says how its checkpoint metadata becomes a [`Config`] and what its
//! blocks add (`llama`: nothing; `qwen2`: q/k/v biases; `qwen3`: per-head q/k RMSNorm); the
//! blocks themselves are in `layers`.
pub mod export;
pub mod gguf;
pub mod hf_meta;
pub mod layers;
pub mod llama;
pub mod ops;
pub mod qwen2;
pub mod qwen3;
pub mod safetensors;
#[cfg(feature = "llama")]
pub mod tokenizer;

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor, Var};
use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// The architectures the decoder implements (GGUF `general.architecture`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Arch {
    Llama,
    Qwen2,
    Qwen3,
}

impl Arch {
    pub fn parse(s: &str) -> Option<Arch> {
        match s {
            "llama" => Some(Arch::Llama),
            "qwen2" => Some(Arch::Qwen2),
            "qwen3" => Some(Arch::Qwen3),
            _ => None,
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
        }
    }
}

/// Everything the forward pass needs to know about a checkpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Config {
    pub arch: Arch,
    pub vocab: usize,
    pub hidden: usize,
    pub layers: usize,
    pub heads: usize,
    pub kv_heads: usize,
    pub head_dim: usize,
    pub ffn: usize,
    pub rms_eps: f64,
    pub rope_theta: f64,
    /// rotate adjacent pairs (ggml's "normal" RoPE: llama in GGUF, whose Q/K rows the converter
    /// permuted) rather than the two halves (NeoX: qwen, and llama in Hugging Face layout)
    pub rope_interleaved: bool,
    pub qkv_bias: bool,
    pub qk_norm: bool,
    /// the output projection is the token embedding (no `output.weight`)
    pub tied: bool,
}

impl Config {
    /// Trainable parameters (the tied embedding counted once).
    pub fn n_params(&self) -> usize {
        let (h, kv) = (self.hidden, self.kv_heads * self.head_dim);
        let q = self.heads * self.head_dim;
        let mut per = h * q + 2 * h * kv + q * h + 3 * h * self.ffn + 2 * h;
        if self.qkv_bias {
            per += q + 2 * kv;
        }
        if self.qk_norm {
            per += 2 * self.head_dim;
        }
        let out = if self.tied { 0 } else { self.vocab * h };
        self.vocab * h + out + h + self.layers * per
    }

    /// Floating-point operations of one forward+backward pass over `tokens` tokens of sequences of
    /// length `seq` (6·N per token for the weights, plus attention's 12·L·T·d per token).
    pub fn train_flops(&self, tokens: usize, seq: usize) -> f64 {
        let n = self.n_params() as f64 + if self.tied { (self.vocab * self.hidden) as f64 } else { 0.0 };
        let n = n - (self.vocab * self.hidden) as f64; // the embedding lookup is not a matmul
        let attn = 12.0 * self.layers as f64 * seq as f64 * (self.heads * self.head_dim) as f64 / 2.0;
        tokens as f64 * (6.0 * n + attn)
    }
}

/// A model's weights: candle Vars under their GGUF names, in the file's order.
pub struct Params {
    pub names: Vec<String>,
    pub vars: Vec<Var>,
    index: HashMap<String, usize>,
}

impl Params {
    pub fn new() -> Params {
        Params { names: Vec::new(), vars: Vec::new(), index: HashMap::new() }
    }
    pub fn insert(&mut self, name: &str, t: Tensor) -> Result<()> {
        let var = Var::from_tensor(&t)?;
        match self.index.get(name) {
            Some(&i) => self.vars[i] = var,
            None => {
                self.index.insert(name.to_string(), self.names.len());
                self.names.push(name.to_string());
                self.vars.push(var);
            }
        }
        Ok(())
    }
    pub fn get(&self, name: &str) -> Option<&Var> {
        self.index.get(name).map(|&i| &self.vars[i])
    }
    /// A weight the architecture needs, with its shape checked.
    pub fn need(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        let v = self.get(name).ok_or_else(|| Error::Engine(format!("checkpoint has no tensor {name}")))?;
        if v.dims() != shape {
            return Err(Error::Engine(format!("tensor {name} has shape {:?}, the config implies {shape:?}", v.dims())));
        }
        Ok(v.as_tensor().clone())
    }
    /// Where `name` stands in [`Params::vars`].
    pub fn position(&self, name: &str) -> Option<usize> {
        self.index.get(name).copied()
    }
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Var)> {
        self.names.iter().map(|s| s.as_str()).zip(self.vars.iter())
    }
    pub fn numel(&self) -> usize {
        self.vars.iter().map(|v| v.elem_count()).sum()
    }
}

impl Default for Params {
    fn default() -> Self {
        Params::new()
    }
}

/// Where a model's weights came from; an export needs the GGUF (its metadata is copied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Origin {
    pub path: PathBuf,
    pub format: String,
}

/// A loaded decoder: config, weights and the forward pass.
pub struct Model {
    pub config: Config,
    pub params: Params,
    pub origin: Origin,
    pub device: Device,
    pub dtype: DType,
    decoder: layers::Decoder,
}

impl Model {
    /// Load a GGUF file (dequantised to trainable `dtype` tensors) or a Hugging Face folder
    /// (config.json + *.safetensors).
    pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<Model> {
        let (config, params, format) = if path.is_dir() {
            let (c, p) = safetensors::load(path, device, dtype)?;
            (c, p, "safetensors")
        } else {
            let (c, p) = gguf::load(path, device, dtype)?;
            (c, p, "gguf")
        };
        Model::from_params(config, params, Origin { path: path.into(), format: format.into() }, device, dtype)
    }

    pub fn from_params(config: Config, params: Params, origin: Origin, device: &Device, dtype: DType) -> Result<Model> {
        let decoder = layers::Decoder::new(&config, &params, device)?;
        Ok(Model { config, params, origin, device: device.clone(), dtype, decoder })
    }

    /// Final hidden states `[B, T, hidden]` for token ids `[B, T]` (right padding is harmless:
    /// attention is causal).
    pub fn hidden(&self, ids: &Tensor) -> Result<Tensor> {
        Ok(self.decoder.hidden(ids)?)
    }

    /// Logits `[.., vocab]` for hidden states `[.., hidden]`.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        Ok(self.decoder.logits(hidden)?)
    }

    /// Logits for every position of one token sequence: `[T, vocab]`.
    pub fn sequence_logits(&self, ids: &[u32]) -> Result<Tensor> {
        let t = Tensor::new(ids, &self.device)?.unsqueeze(0)?;
        let h = self.hidden(&t)?.squeeze(0)?;
        self.logits(&h)
    }

    /// Whether [`Model::nll_grads`] applies: the hand-written backward pass runs on CPU in f32.
    pub fn manual_backward(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::F32
    }

    /// `scale` × the summed cross-entropy of `targets` at the flat positions `rows` of `ids [b, t]`,
    /// and its gradients aligned with [`Params::vars`], by the hand-written backward pass (see
    /// [`layers::Decoder::nll_grads`]; CPU f32 only).
    pub fn nll_grads(&self, prefix: &[u32], ids: &Tensor, rows: &[u32], targets: &[u32], scale: f64) -> Result<(f64, Vec<Option<Tensor>>)> {
        self.aligned(self.decoder.nll_grads(prefix, ids, rows, targets, scale)?)
    }

    /// [`Model::nll_grads`] for any loss of the target log-probs at `temperature` (see
    /// [`layers::Decoder::target_grads`]; CPU f32 only).
    pub fn target_grads(&self, prefix: &[u32], ids: &Tensor, rows: &[u32], targets: &[u32], temperature: f64, weigh: &mut layers::Weigh) -> Result<(f64, Vec<Option<Tensor>>)> {
        self.aligned(self.decoder.target_grads(prefix, ids, rows, targets, temperature, weigh)?)
    }

    /// Named gradients put in the order of [`Params::vars`].
    fn aligned(&self, (loss, named): (f64, Vec<(String, Tensor)>)) -> Result<(f64, Vec<Option<Tensor>>)> {
        let mut grads: Vec<Option<Tensor>> = vec![None; self.params.vars.len()];
        for (name, g) in named {
            let i = self.params.position(&name).ok_or_else(|| Error::Engine(format!("a gradient for {name}, which is no weight")))?;
            grads[i] = Some(g);
        }
        Ok((loss, grads))
    }

    /// The weights as plain tensors (a snapshot that later updates do not change).
    pub fn snapshot(&self) -> Result<Vec<(String, Tensor)>> {
        self.params.iter().map(|(n, v)| Ok((n.to_string(), v.as_tensor().copy()?))).collect()
    }

    /// Overwrite the weights from named tensors (a checkpoint); every weight must be present.
    pub fn set_weights(&self, named: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.params.iter() {
            let t = named.get(name).ok_or_else(|| Error::Engine(format!("checkpoint lacks tensor {name}")))?;
            var.set(&t.to_dtype(self.dtype)?.to_device(&self.device)?)?;
        }
        Ok(())
    }
}

/// The device training runs on: CUDA when built with `--features cuda` and one is present, else
/// the CPU. A CUDA build on a machine without an NVIDIA driver or GPU trains on the CPU with a
/// warning. Without a GPU the probe returns an error; without the driver library, cudarc (when
/// it loads the library at run time) panics instead, so the probe runs under `catch_unwind` (with
/// the panic message kept off stderr). Checked on a machine with the CUDA 11.8 toolkit and no GPU
/// (`tests` below, built with `--features cuda`): the CPU is chosen.
pub fn device(cpu: bool) -> Result<Device> {
    if cpu || !candle_core::utils::cuda_is_available() {
        return Ok(Device::Cpu);
    }
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let probe = std::panic::catch_unwind(|| Device::new_cuda(0));
    std::panic::set_hook(hook);
    match probe {
        Ok(Ok(d)) => Ok(d),
        Ok(Err(e)) => {
            tracing::warn!("built with CUDA, but no CUDA device 0 ({e}): training on the CPU");
            Ok(Device::Cpu)
        }
        Err(p) => {
            let msg = p.downcast_ref::<String>().map(String::as_str).or_else(|| p.downcast_ref::<&str>().copied()).unwrap_or("no message");
            tracing::warn!("built with CUDA, but the CUDA driver could not be loaded ({msg}): training on the CPU");
            Ok(Device::Cpu)
        }
    }
}

/// The training dtype for a device: f32 on CPU, bf16 on CUDA.
pub fn train_dtype(device: &Device) -> DType {
    if device.is_cuda() {
        DType::BF16
    } else {
        DType::F32
    }
}

/// Toy models for tests of the training code.
#[cfg(test)]
pub(crate) mod testing {
    use super::{Arch, Config, Model, Origin, Params};
    use candle_core::{DType, Device, Tensor};

    /// A random decoder of `cfg` with every weight the blocks need.
    pub(crate) fn tiny(cfg: &Config) -> Model {
        let dev = Device::Cpu;
        let (h, hd, f) = (cfg.hidden, cfg.head_dim, cfg.ffn);
        let (q, kv) = (cfg.heads * hd, cfg.kv_heads * hd);
        let mut shapes: Vec<(String, Vec<usize>)> = vec![("token_embd.weight".into(), vec![cfg.vocab, h]), ("output_norm.weight".into(), vec![h])];
        if !cfg.tied {
            shapes.push(("output.weight".into(), vec![cfg.vocab, h]));
        }
        for i in 0..cfg.layers {
            let n = |s: &str| format!("blk.{i}.{s}");
            shapes.extend([
                (n("attn_norm.weight"), vec![h]),
                (n("attn_q.weight"), vec![q, h]),
                (n("attn_k.weight"), vec![kv, h]),
                (n("attn_v.weight"), vec![kv, h]),
                (n("attn_output.weight"), vec![h, q]),
                (n("ffn_norm.weight"), vec![h]),
                (n("ffn_gate.weight"), vec![f, h]),
                (n("ffn_up.weight"), vec![f, h]),
                (n("ffn_down.weight"), vec![h, f]),
            ]);
            if cfg.qkv_bias {
                shapes.extend([(n("attn_q.bias"), vec![q]), (n("attn_k.bias"), vec![kv]), (n("attn_v.bias"), vec![kv])]);
            }
            if cfg.qk_norm {
                shapes.extend([(n("attn_q_norm.weight"), vec![hd]), (n("attn_k_norm.weight"), vec![hd])]);
            }
        }
        let mut p = Params::new();
        for (name, shape) in shapes {
            let t = if shape.len() == 1 && name.contains("norm") {
                (Tensor::randn(0f32, 0.1, shape.as_slice(), &dev).unwrap() + 1.0).unwrap()
            } else {
                Tensor::randn(0f32, 0.3, shape.as_slice(), &dev).unwrap()
            };
            p.insert(&name, t).unwrap();
        }
        Model::from_params(cfg.clone(), p, Origin { path: "tiny".into(), format: "test".into() }, &dev, DType::F32).unwrap()
    }

    /// The three architectures at toy size.
    pub(crate) fn configs() -> [Config; 3] {
        let base = Config {
            arch: Arch::Llama,
            vocab: 50,
            hidden: 16,
            layers: 2,
            heads: 4,
            kv_heads: 2,
            head_dim: 4,
            ffn: 24,
            rms_eps: 1e-5,
            rope_theta: 10000.0,
            rope_interleaved: true,
            qkv_bias: false,
            qk_norm: false,
            tied: true,
        };
        [
            base.clone(),
            Config { arch: Arch::Qwen2, rope_interleaved: false, qkv_bias: true, tied: false, ..base.clone() },
            Config { arch: Arch::Qwen3, rope_interleaved: false, qk_norm: true, kv_heads: 1, ..base.clone() },
        ]
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn training_runs_on_the_cpu_where_there_is_no_gpu() {
        // a plain build always trains on the CPU; a CUDA build takes CUDA device 0 where the
        // driver and a GPU are, and falls back to the CPU (no panic, no error) where they are not
        let gpu = std::path::Path::new("/dev/nvidia0").exists();
        let d = super::device(false).unwrap();
        assert_eq!(d.is_cuda(), candle_core::utils::cuda_is_available() && gpu);
        assert!(super::device(true).unwrap().is_cpu());
    }
}
