//! A Hugging Face folder in (config.json + *.safetensors), the form GPU users hold the paper's
//! Qwen3 backbone in. Tensors are renamed to their GGUF names on the way in, so the decoder and
//! checkpoints have one naming; a llama checkpoint keeps HF's half-split RoPE layout.
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device};
use serde::Deserialize;

use super::{llama, qwen2, qwen3, Arch, Config, Params};
use crate::{Error, Result};

/// The fields of a Hugging Face `config.json` the decoder needs.
#[derive(Debug, Clone, Deserialize)]
pub struct HfConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: Option<usize>,
    pub head_dim: Option<usize>,
    pub intermediate_size: usize,
    pub rms_norm_eps: f64,
    #[serde(default = "default_theta")]
    pub rope_theta: f64,
    #[serde(default)]
    pub tie_word_embeddings: bool,
    #[serde(default)]
    pub max_position_embeddings: Option<usize>,
}

fn default_theta() -> f64 {
    10_000.0
}

impl HfConfig {
    pub fn common(&self, arch: Arch) -> Result<Config> {
        Ok(Config {
            arch,
            vocab: self.vocab_size,
            hidden: self.hidden_size,
            layers: self.num_hidden_layers,
            heads: self.num_attention_heads,
            kv_heads: self.num_key_value_heads.unwrap_or(self.num_attention_heads),
            head_dim: self.head_dim.unwrap_or(self.hidden_size / self.num_attention_heads),
            ffn: self.intermediate_size,
            rms_eps: self.rms_norm_eps,
            rope_theta: self.rope_theta,
            rope_interleaved: false,
            qkv_bias: false,
            qk_norm: false,
            tied: self.tie_word_embeddings,
        })
    }
}

/// The GGUF name of a Hugging Face tensor name (`None`: not a weight the decoder uses).
pub fn gguf_name(hf: &str) -> Option<String> {
    let fixed = match hf {
        "model.embed_tokens.weight" => Some("token_embd.weight"),
        "model.norm.weight" => Some("output_norm.weight"),
        "lm_head.weight" => Some("output.weight"),
        _ => None,
    };
    if let Some(f) = fixed {
        return Some(f.to_string());
    }
    let rest = hf.strip_prefix("model.layers.")?;
    let (layer, rest) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let (module, kind) = rest.rsplit_once('.')?;
    let g = match module {
        "input_layernorm" => "attn_norm",
        "post_attention_layernorm" => "ffn_norm",
        "self_attn.q_proj" => "attn_q",
        "self_attn.k_proj" => "attn_k",
        "self_attn.v_proj" => "attn_v",
        "self_attn.o_proj" => "attn_output",
        "self_attn.q_norm" => "attn_q_norm",
        "self_attn.k_norm" => "attn_k_norm",
        "mlp.gate_proj" => "ffn_gate",
        "mlp.up_proj" => "ffn_up",
        "mlp.down_proj" => "ffn_down",
        _ => return None,
    };
    Some(format!("blk.{layer}.{g}.{kind}"))
}

/// A folder's `config.json`.
pub fn read_config(dir: &Path) -> Result<HfConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).map_err(|e| Error::io(&path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json { path, err: e })
}

/// Load a Hugging Face folder.
pub fn load(dir: &Path, device: &Device, dtype: DType) -> Result<(Config, Params)> {
    let cfg_path = dir.join("config.json");
    let hf = read_config(dir)?;
    let config = match hf.model_type.as_str() {
        "llama" => llama::from_hf(&hf)?,
        "qwen2" => qwen2::from_hf(&hf)?,
        "qwen3" => qwen3::from_hf(&hf)?,
        other => {
            return Err(Error::Model { path: cfg_path, msg: format!("model_type {other:?} cannot be trained (llama, qwen2 and qwen3 can)") })
        }
    };
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(Error::Model { path: dir.into(), msg: "no *.safetensors file".into() });
    }
    let mut named: HashMap<String, candle_core::Tensor> = HashMap::new();
    for f in &files {
        let ts = candle_core::safetensors::load(f, &Device::Cpu).map_err(|e| Error::Model { path: f.clone(), msg: e.to_string() })?;
        for (k, t) in ts {
            if let Some(g) = gguf_name(&k) {
                named.insert(g, t);
            }
        }
    }
    let mut names: Vec<String> = named.keys().cloned().collect();
    names.sort_by_key(|n| order_key(n));
    let mut params = Params::new();
    for n in names {
        let t = named.remove(&n).expect("key listed");
        params.insert(&n, t.to_dtype(dtype)?.to_device(device)?)?;
    }
    Ok((config, params))
}

/// Embedding first, blocks in order, head last (the order a GGUF converter writes).
pub(crate) fn order_key(name: &str) -> (usize, usize, String) {
    if name == "token_embd.weight" {
        return (0, 0, String::new());
    }
    if let Some(rest) = name.strip_prefix("blk.") {
        let (l, r) = rest.split_once('.').unwrap_or((rest, ""));
        return (1, l.parse().unwrap_or(0), r.to_string());
    }
    (2, 0, name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hf_names_map_to_gguf_names() {
        assert_eq!(gguf_name("model.layers.3.self_attn.q_proj.bias").as_deref(), Some("blk.3.attn_q.bias"));
        assert_eq!(gguf_name("model.layers.0.mlp.down_proj.weight").as_deref(), Some("blk.0.ffn_down.weight"));
        assert_eq!(gguf_name("model.layers.1.self_attn.k_norm.weight").as_deref(), Some("blk.1.attn_k_norm.weight"));
        assert_eq!(gguf_name("lm_head.weight").as_deref(), Some("output.weight"));
        assert_eq!(gguf_name("model.rotary_emb.inv_freq"), None);
    }
}
