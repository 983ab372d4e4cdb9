//! Vars → GGUF: the source GGUF's metadata and tensor order, trained weights quantised to F16
//! or Q8_0 (vectors stay F32, as converters write them), so llama.cpp loads the result.
use std::path::{Path, PathBuf};

use candle_core::quantized::gguf_file::Value;
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};

use super::gguf::{read_content, tensor_order, Reader};
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
/// how many the export wrote as it writes the untouched start (the start rounded to the export's
/// type), so that the file cannot tell them from the start. An export on the start's own grid (a
/// Q8_0 export of a Q8_0 start, `source`, an F16 export of an F16 start) rounds updates smaller
/// than half a quantisation step back: where most are, the file measures the start, not the
/// fine-tune.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rounding {
    /// weights whose trained value differs from the start's (as training held it: bf16 on CUDA)
    pub moved: u64,
    /// of those, the ones the export writes as it writes the start
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

/// The weights a training started from, as [`rounding`] reads them (GGUF names and layout).
pub enum Start<'a> {
    /// a GGUF file, dequantised
    Gguf(&'a Path),
    /// weights in memory (a checkpoint's)
    Weights(&'a std::collections::HashMap<String, Tensor>),
}

/// The [`Rounding`] of the export at `out` of `trained` (GGUF names and layout), a training that
/// began at `start`. Tensors missing from the start or the export are not counted.
pub fn rounding(start: Start, trained: &[(String, Tensor)], out: &Path) -> Result<Rounding> {
    let cpu = Device::Cpu;
    let mut export = Reader::open(out)?;
    // the start's tensors: read from its file as they are asked for, or held
    let (mut file, in_memory) = match start {
        Start::Gguf(p) => (Some(Reader::open(p)?), None),
        Start::Weights(w) => (None, Some(w)),
    };
    let mut r = Rounding { moved: 0, rounded_back: 0 };
    for (name, t) in trained {
        let s = match (file.as_mut(), in_memory) {
            (Some(f), _) => f.quantized(name)?.map(|q| q.dequantize(&cpu)).transpose()?,
            (None, w) => w.and_then(|w| w.get(name)).map(|s| s.to_device(&cpu)).transpose()?,
        };
        let (Some(s), Some(q)) = (s, export.quantized(name)?) else { continue };
        let s = s.to_dtype(DType::F32)?;
        let e = q.dequantize(&cpu)?;
        if s.elem_count() != t.elem_count() || e.elem_count() != t.elem_count() {
            return Err(Error::Model {
                path: out.into(),
                msg: format!("tensor {name}: {} trained weights, {} in the start, {} in the export", t.elem_count(), s.elem_count(), e.elem_count()),
            });
        }
        // the start as training held it, and as the export writes it
        let held = s.to_dtype(t.dtype())?.to_dtype(DType::F32)?;
        let written = QTensor::quantize(&s.reshape(e.shape())?, q.dtype())?.dequantize(&cpu)?;
        let flat = |x: &Tensor| -> Result<Vec<f32>> { Ok(x.flatten_all()?.to_vec1()?) };
        let t = flat(&t.to_device(&cpu)?.to_dtype(DType::F32)?)?;
        let (held, written, e) = (flat(&held)?, flat(&written)?, flat(&e)?);
        for (((t, h), w), e) in t.iter().zip(&held).zip(&written).zip(&e) {
            if t != h {
                r.moved += 1;
                r.rounded_back += u64::from(e == w);
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

    fn q8_0_start(d: &Path) -> (std::path::PathBuf, Vec<f32>) {
        // each block of 32 has a largest weight 1.0 (step 1/127 ≈ 7.9e-3); the others within ±0.1
        let w: Vec<f32> = (0..4 * 64).map(|i| if fixed(i) { 1.0 } else { ((i * 37 % 101) as f32 - 50.0) / 500.0 }).collect();
        let q = QTensor::quantize(&Tensor::from_vec(w, (4, 64), &Device::Cpu).unwrap(), GgmlDType::Q8_0).unwrap();
        let start = d.join("start.gguf");
        let arch = Value::String("llama".into());
        let mut f = std::fs::File::create(&start).unwrap();
        candle_core::quantized::gguf_file::write(&mut f, &[("general.architecture", &arch)], &[(NAME, &q)]).unwrap();
        // the start as training sees it (dequantised)
        (start, q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap().to_vec1().unwrap())
    }

    const NAME: &str = "blk.0.ffn_up.weight";

    fn fixed(i: usize) -> bool {
        i % 32 == 0
    }

    fn measure(d: &Path, start: &Path, trained: &[f32], ty: ExportType) -> Rounding {
        let trained = vec![(NAME.to_string(), Tensor::from_vec(trained.to_vec(), (4, 64), &Device::Cpu).unwrap())];
        let out = d.join(format!("{ty:?}.gguf"));
        write(start, &trained, ty, &out).unwrap();
        rounding(Start::Gguf(start), &trained, &out).unwrap()
    }

    /// A Q8_0 start, a training that moves every weight but each block's largest by an eighth of
    /// a quantisation step: a Q8_0 (or `source`) export puts all of them back, an F16 export none.
    #[test]
    fn exports_on_the_start_grid_round_small_updates_back() {
        let d = tempfile::tempdir().unwrap();
        let (start, on_grid) = q8_0_start(d.path());
        // moved by 1e-3 (F16's spacing below 0.1 is at most 6.1e-5)
        let moved: Vec<f32> = on_grid.iter().enumerate().map(|(i, v)| if fixed(i) { *v } else { v + 1e-3 }).collect();
        for ty in [ExportType::Q8_0, ExportType::Source] {
            let r = measure(d.path(), &start, &moved, ty);
            assert_eq!(r, Rounding { moved: 248, rounded_back: 248 }, "{ty:?}");
            assert!(r.lost());
        }
        let r = measure(d.path(), &start, &moved, ExportType::F16);
        assert_eq!(r, Rounding { moved: 248, rounded_back: 0 });
        assert!(!r.lost());
        // an update below half of F16's own spacing: the F16 export writes what it writes for the
        // start, although neither equals the start's Q8_0 value exactly
        let tiny: Vec<f32> = on_grid.iter().map(|v| v * (1.0 + 1e-5)).collect();
        let r = measure(d.path(), &start, &tiny, ExportType::F16);
        assert!(r.moved > 200 && r.lost() && r.share() > 0.9, "{r:?}");
        // an untrained model moved nothing and lost nothing
        let r = measure(d.path(), &start, &on_grid, ExportType::Q8_0);
        assert_eq!((r.moved, r.share(), r.lost()), (0, 0.0, false));
        // nor did one trained in bf16 from the start's bf16 copy, nor one that started from
        // weights in memory (a checkpoint) and kept them
        let held = Tensor::from_vec(on_grid.clone(), (4, 64), &Device::Cpu).unwrap();
        let bf16 = vec![(NAME.to_string(), held.to_dtype(DType::BF16).unwrap())];
        let out = d.path().join("bf16.gguf");
        write(&start, &bf16, ExportType::F16, &out).unwrap();
        assert_eq!(rounding(Start::Gguf(&start), &bf16, &out).unwrap().moved, 0);
        let weights: std::collections::HashMap<String, Tensor> = [(NAME.to_string(), held.clone())].into();
        let same = vec![(NAME.to_string(), held)];
        write(&start, &same, ExportType::F16, &out).unwrap();
        assert_eq!(rounding(Start::Weights(&weights), &same, &out).unwrap().moved, 0);
    }

    /// Training in bf16 (on CUDA, as the `paper` preset does) moves a weight by at least one bf16
    /// step, eight of F16's at the same magnitude, so an F16 export keeps every update in F16's
    /// normal range (|w| ≥ 6.1e-5): the quarter of small CPU (f32) updates that F16 rounds back
    /// does not arise there.
    #[test]
    fn an_f16_export_keeps_every_bf16_update() {
        let d = tempfile::tempdir().unwrap();
        let (start, on_grid) = q8_0_start(d.path());
        // the start as bf16 training holds it, then the smallest step up for every weight that F16
        // holds as a normal number (each bf16 value is an f32 whose low 16 bits are zero)
        let held: Vec<f32> = Tensor::from_vec(on_grid.clone(), (4, 64), &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap().to_dtype(DType::F32).unwrap().flatten_all().unwrap().to_vec1().unwrap();
        // (each block's largest stays, so that a Q8_0 export keeps its scale)
        let steps = |i: usize, v: f32| !fixed(i) && v.abs() >= 6.1e-5;
        let stepped: Vec<f32> = held.iter().enumerate().map(|(i, &v)| if steps(i, v) { f32::from_bits(v.to_bits() + (1 << 16)) } else { v }).collect();
        let normal = held.iter().enumerate().filter(|&(i, &v)| steps(i, v)).count();
        let trained = vec![(NAME.to_string(), Tensor::from_vec(stepped, (4, 64), &Device::Cpu).unwrap().to_dtype(DType::BF16).unwrap())];
        let out = d.path().join("bf16-f16.gguf");
        write(&start, &trained, ExportType::F16, &out).unwrap();
        let r = rounding(Start::Gguf(&start), &trained, &out).unwrap();
        assert_eq!(r, Rounding { moved: normal as u64, rounded_back: 0 });
        // the same steps are below Q8_0's spacing: a Q8_0 export loses most of them
        write(&start, &trained, ExportType::Q8_0, &out).unwrap();
        assert!(rounding(Start::Gguf(&start), &trained, &out).unwrap().lost());
    }
}
