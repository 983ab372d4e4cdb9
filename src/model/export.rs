//! Vars → GGUF: the source GGUF's metadata and tensor order, trained weights quantised to F16
//! or Q8_0 (vectors stay F32, as converters write them), so llama.cpp loads the result.
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::gguf::{read_content, tensor_order};
use crate::{Error, Result};

/// The weight type of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum ExportType {
    /// each tensor in its source file's type (an untrained model round-trips to the same weights)
    Source,
    F16,
    Q8_0,
    F32,
}

impl ExportType {
    fn ggml(self) -> GgmlDType {
        match self {
            ExportType::Source => GgmlDType::F32,
            ExportType::F16 => GgmlDType::F16,
            ExportType::Q8_0 => GgmlDType::Q8_0,
            ExportType::F32 => GgmlDType::F32,
        }
    }
    /// llama.cpp's `general.file_type` (LLAMA_FTYPE_*).
    fn file_type(self) -> Option<u32> {
        Some(match self {
            ExportType::Source => return None,
            ExportType::F32 => 0,
            ExportType::F16 => 1,
            ExportType::Q8_0 => 7,
        })
    }
}

/// Write `weights` (GGUF names) into a GGUF at `out`, copying metadata from `source` (a GGUF).
/// Every tensor of the source must be among the weights. The file appears atomically.
///
/// `source` may also be the Hugging Face folder the weights came from: the metadata is then built
/// from its config and tokenizer files ([`super::hf_meta`]), tensors go in the converter's order,
/// `Source` writes F16, and a llama's Q/K rows move from HF's half-split RoPE layout to the
/// interleaved one llama.cpp applies to llama.
pub fn write(source: &Path, weights: &[(String, Tensor)], ty: ExportType, out: &Path) -> Result<()> {
    Target::read(source)?.write(weights, ty, out)
}

/// What an export copies from its source, read once: a run that exports many snapshots of one
/// model (GRPO's rollout policy, every step) reads the tokenizer and metadata only once.
pub struct Target {
    source: PathBuf,
    /// the source GGUF's tensor order (HF folders: the converter's, from the weights' names)
    order: Option<Vec<String>>,
    meta: Vec<(String, Value)>,
    source_types: Option<std::collections::HashMap<String, GgmlDType>>,
    /// a llama from an HF folder: (heads, kv heads), whose Q/K rows are permuted
    heads: Option<(usize, usize)>,
}

impl Target {
    pub fn read(source: &Path) -> Result<Target> {
        let source = source.to_path_buf();
        if source.is_dir() {
            let hf = super::safetensors::read_config(&source)?;
            let heads = (hf.model_type == "llama").then(|| (hf.num_attention_heads, hf.num_key_value_heads.unwrap_or(hf.num_attention_heads)));
            let meta = super::hf_meta::metadata(&source, &hf)?;
            Ok(Target { source, order: None, meta, source_types: None, heads })
        } else {
            let content = read_content(&source)?;
            let order = tensor_order(&content);
            let types = content.tensor_infos.iter().map(|(n, i)| (n.clone(), i.ggml_dtype)).collect();
            let mut meta: Vec<(String, Value)> = content.metadata.into_iter().collect();
            meta.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(Target { source, order: Some(order), meta, source_types: Some(types), heads: None })
        }
    }

    /// Write `weights` as [`write`] does.
    pub fn write(&self, weights: &[(String, Tensor)], ty: ExportType, out: &Path) -> Result<()> {
        let (source, source_types, heads) = (&self.source, &self.source_types, self.heads);
        let by_name: std::collections::HashMap<&str, &Tensor> = weights.iter().map(|(n, t)| (n.as_str(), t)).collect();
        let order = match &self.order {
            Some(o) => o.clone(),
            None => {
                let mut order: Vec<String> = weights.iter().map(|(n, _)| n.clone()).collect();
                order.sort_by_key(|n| super::safetensors::order_key(n));
                order
            }
        };
        let mut tensors = Vec::new();
        for name in order {
            let t = by_name
                .get(name.as_str())
                .ok_or_else(|| Error::Model { path: source.into(), msg: format!("the checkpoint has no tensor {name}") })?;
            let mut t = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?;
            if let Some((h, kv)) = heads {
                if name.ends_with(".attn_q.weight") {
                    t = half_split_to_interleaved(&t, h)?;
                } else if name.ends_with(".attn_k.weight") {
                    t = half_split_to_interleaved(&t, kv)?;
                }
            }
            let cols = *t.dims().last().unwrap_or(&0);
            let ggml = match (&source_types, ty) {
                (Some(types), ExportType::Source) => types[&name],
                _ if t.rank() < 2 => GgmlDType::F32,
                (None, ExportType::Source) => GgmlDType::F16,
                _ if ty == ExportType::Q8_0 && cols % 32 != 0 => GgmlDType::F16,
                _ => ty.ggml(),
            };
            tensors.push((name, QTensor::quantize(&t, ggml)?));
        }
        let file_type = match (&source_types, ty) {
            (None, ExportType::Source) => ExportType::F16.file_type(),
            _ => ty.file_type(),
        };
        let file_type = file_type.map(Value::U32);
        let mut m: Vec<(&str, &Value)> =
            self.meta.iter().filter(|(k, _)| file_type.is_none() || k != "general.file_type").map(|(k, v)| (k.as_str(), v)).collect();
        if let Some(ft) = &file_type {
            m.push(("general.file_type", ft));
        }
        let tmp = out.with_extension("gguf.tmp");
        if let Some(dir) = out.parent() {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        {
            let mut f = std::io::BufWriter::new(std::fs::File::create(&tmp).map_err(|e| Error::io(&tmp, e))?);
            let t: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
            candle_core::quantized::gguf_file::write(&mut f, &m, &t)?;
            use std::io::Write;
            f.flush().map_err(|e| Error::io(&tmp, e))?;
        }
        std::fs::rename(&tmp, out).map_err(|e| Error::io(out, e))?;
        Ok(())
    }
}

/// What an export kept of a fine-tune: of the weights the training moved off its start's values,
/// how many the export wrote back with the start's value. An export on the start's own grid (a
/// Q8_0 export of a Q8_0 start, or `source`) rounds updates smaller than one quantisation step
/// back onto the start: the file then measures the start, not the fine-tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rounding {
    /// weights whose trained value differs from the start's
    pub moved: u64,
    /// of those, the ones the export writes with the start's value
    pub rounded_back: u64,
}

impl Rounding {
    /// The share of the moved weights rounded back (0 when none moved).
    pub fn share(&self) -> f64 {
        if self.moved == 0 {
            0.0
        } else {
            self.rounded_back as f64 / self.moved as f64
        }
    }

    /// Whether the export lost the fine-tune: more than half of the moved weights rounded back.
    pub fn lost(&self) -> bool {
        self.share() > 0.5
    }
}

/// The [`Rounding`] of the export at `out` of `trained` (GGUF names and layout), a training that
/// started from the GGUF `start`. Tensors missing from either file are not counted.
pub fn rounding(start: &Path, trained: &[(String, Tensor)], out: &Path) -> Result<Rounding> {
    use std::io::BufReader;
    let (start_content, out_content) = (read_content(start)?, read_content(out)?);
    let open = |p: &Path| std::fs::File::open(p).map(BufReader::new).map_err(|e| Error::io(p, e));
    let (mut start_file, mut out_file) = (open(start)?, open(out)?);
    let read = |c: &candle_core::quantized::gguf_file::Content, f: &mut BufReader<std::fs::File>, path: &Path, name: &str| -> Result<Vec<f32>> {
        let q = c.tensor(f, name, &Device::Cpu).map_err(|e| Error::Model { path: path.into(), msg: format!("tensor {name}: {e}") })?;
        Ok(q.dequantize(&Device::Cpu)?.flatten_all()?.to_vec1()?)
    };
    let mut r = Rounding { moved: 0, rounded_back: 0 };
    for (name, t) in trained {
        if !start_content.tensor_infos.contains_key(name) || !out_content.tensor_infos.contains_key(name) {
            continue;
        }
        let s = read(&start_content, &mut start_file, start, name)?;
        let e = read(&out_content, &mut out_file, out, name)?;
        let t: Vec<f32> = t.to_device(&Device::Cpu)?.to_dtype(DType::F32)?.flatten_all()?.to_vec1()?;
        if s.len() != t.len() || e.len() != t.len() {
            return Err(Error::Model {
                path: out.into(),
                msg: format!("tensor {name}: {} trained weights, {} in the start {}, {} in the export", t.len(), s.len(), start.display(), e.len()),
            });
        }
        for ((s, t), e) in s.iter().zip(&t).zip(&e) {
            if t != s {
                r.moved += 1;
                r.rounded_back += u64::from(e == s);
            }
        }
    }
    Ok(r)
}

/// Rows of a Q or K projection `[heads · head_dim, n]` from HF's RoPE layout (each head's first
/// half rotated against its second half) to the interleaved one (pairs of adjacent rows), as
/// llama.cpp's converter permutes a Hugging Face llama.
pub fn half_split_to_interleaved(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, n) = w.dims2()?;
    Ok(w.reshape((heads, 2, rows / heads / 2, n))?.transpose(1, 2)?.contiguous()?.reshape((rows, n))?)
}

/// The inverse of [`half_split_to_interleaved`].
pub fn interleaved_to_half_split(w: &Tensor, heads: usize) -> Result<Tensor> {
    let (rows, n) = w.dims2()?;
    Ok(w.reshape((heads, rows / heads / 2, 2, n))?.transpose(1, 2)?.contiguous()?.reshape((rows, n))?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Q8_0 start, a training that moves every weight but each block's largest by an eighth
    /// of a quantisation step: a Q8_0 (or `source`) export puts all of them back, an F16 export
    /// none.
    #[test]
    fn exports_on_the_start_grid_round_small_updates_back() {
        let d = tempfile::tempdir().unwrap();
        let start = d.path().join("start.gguf");
        // each block of 32 has a largest weight 1.0 (step 1/127 ≈ 7.9e-3); the others within ±0.1
        let fixed = |i: usize| i % 32 == 0;
        let w: Vec<f32> = (0..4 * 64).map(|i| if fixed(i) { 1.0 } else { ((i * 37 % 101) as f32 - 50.0) / 500.0 }).collect();
        let q = QTensor::quantize(&Tensor::from_vec(w, (4, 64), &Device::Cpu).unwrap(), GgmlDType::Q8_0).unwrap();
        let arch = Value::String("llama".into());
        let mut f = std::fs::File::create(&start).unwrap();
        candle_core::quantized::gguf_file::write(&mut f, &[("general.architecture", &arch)], &[("blk.0.ffn_up.weight", &q)]).unwrap();
        drop(f);
        // the start as training sees it (dequantised), moved by 1e-3 (F16's spacing below 0.1 is
        // at most 6.1e-5)
        let on_grid: Vec<f32> = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        let moved: Vec<f32> = on_grid.iter().enumerate().map(|(i, v)| if fixed(i) { *v } else { v + 1e-3 }).collect();
        let trained = vec![("blk.0.ffn_up.weight".to_string(), Tensor::from_vec(moved, (4, 64), &Device::Cpu).unwrap())];
        let measure = |ty| {
            let out = d.path().join(format!("{ty:?}.gguf"));
            write(&start, &trained, ty, &out).unwrap();
            rounding(&start, &trained, &out).unwrap()
        };
        for ty in [ExportType::Q8_0, ExportType::Source] {
            let r = measure(ty);
            assert_eq!(r, Rounding { moved: 248, rounded_back: 248 }, "{ty:?}");
            assert!(r.lost());
        }
        let r = measure(ExportType::F16);
        assert_eq!(r, Rounding { moved: 248, rounded_back: 0 });
        assert!(!r.lost());
        // an untrained model moved nothing and lost nothing
        let same = vec![("blk.0.ffn_up.weight".to_string(), q.dequantize(&Device::Cpu).unwrap())];
        let out = d.path().join("same.gguf");
        write(&start, &same, ExportType::Q8_0, &out).unwrap();
        let r = rounding(&start, &same, &out).unwrap();
        assert_eq!((r.moved, r.share(), r.lost()), (0, 0.0, false));
    }
}
