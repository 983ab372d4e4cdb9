//! GGUF in: metadata → [`Config`] (through the architecture's file), tensors dequantised to
//! trainable Vars under their GGUF names.
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::{DType, Device};

use super::{llama, qwen2, qwen3, Arch, Config, Params};
use crate::{Error, Result};

/// A GGUF's metadata, read under the architecture's key prefix.
pub struct Meta<'a> {
    pub path: &'a Path,
    pub kv: &'a HashMap<String, Value>,
    pub arch: String,
}

impl<'a> Meta<'a> {
    fn err(&self, key: &str, msg: &str) -> Error {
        Error::Model { path: self.path.into(), msg: format!("metadata {key}: {msg}") }
    }
    fn value(&self, key: &str) -> Option<&Value> {
        self.kv.get(&format!("{}.{key}", self.arch))
    }
    pub fn usize(&self, key: &str) -> Result<usize> {
        let v = self.value(key).ok_or_else(|| self.err(key, "missing"))?;
        let n = match v {
            Value::U32(x) => *x as u64,
            Value::U64(x) => *x,
            Value::I32(x) if *x >= 0 => *x as u64,
            Value::I64(x) if *x >= 0 => *x as u64,
            _ => return Err(self.err(key, "not an unsigned integer")),
        };
        Ok(n as usize)
    }
    pub fn usize_or(&self, key: &str, default: usize) -> Result<usize> {
        if self.value(key).is_none() {
            return Ok(default);
        }
        self.usize(key)
    }
    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        match self.value(key) {
            None => Ok(default),
            Some(Value::F32(x)) => Ok(*x as f64),
            Some(Value::F64(x)) => Ok(*x),
            Some(_) => Err(self.err(key, "not a float")),
        }
    }
}

/// Read a GGUF's header (metadata and tensor table).
pub fn read_content(path: &Path) -> Result<Content> {
    let mut f = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
    Content::read(&mut f).map_err(|e| Error::Model { path: path.into(), msg: format!("not a readable GGUF: {e}") })
}

/// The tensor names in file order (the order an export writes them back in).
pub fn tensor_order(content: &Content) -> Vec<String> {
    let mut names: Vec<(&String, u64)> = content.tensor_infos.iter().map(|(n, i)| (n, i.offset)).collect();
    names.sort_by_key(|(_, o)| *o);
    names.into_iter().map(|(n, _)| n.clone()).collect()
}

/// The config a GGUF's metadata describes.
pub fn config(path: &Path, content: &Content) -> Result<Config> {
    let arch = match content.metadata.get("general.architecture") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(Error::Model { path: path.into(), msg: "no general.architecture".into() }),
    };
    let meta = Meta { path, kv: &content.metadata, arch: arch.clone() };
    let tied = !content.tensor_infos.contains_key("output.weight");
    let vocab = content
        .tensor_infos
        .get("token_embd.weight")
        .map(|i| i.shape.dims()[0])
        .ok_or_else(|| Error::Model { path: path.into(), msg: "no token_embd.weight".into() })?;
    match Arch::parse(&arch) {
        Some(Arch::Llama) => llama::from_gguf(&meta, vocab, tied),
        Some(Arch::Qwen2) => qwen2::from_gguf(&meta, vocab, tied),
        Some(Arch::Qwen3) => qwen3::from_gguf(&meta, vocab, tied),
        None => Err(Error::Model {
            path: path.into(),
            msg: format!("architecture {arch:?} cannot be trained (llama, qwen2 and qwen3 can)"),
        }),
    }
}

/// A GGUF open for reading tensors one at a time, on the CPU.
pub struct Reader<'a> {
    path: &'a Path,
    pub content: Content,
    file: BufReader<File>,
}

impl<'a> Reader<'a> {
    pub fn open(path: &'a Path) -> Result<Reader<'a>> {
        let content = read_content(path)?;
        let file = BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?);
        Ok(Reader { path, content, file })
    }

    /// Tensor `name` as stored (None when the file has none of that name).
    pub fn quantized(&mut self, name: &str) -> Result<Option<candle_core::quantized::QTensor>> {
        if !self.content.tensor_infos.contains_key(name) {
            return Ok(None);
        }
        let q = self.content.tensor(&mut self.file, name, &Device::Cpu).map_err(|e| Error::Model { path: self.path.into(), msg: format!("tensor {name}: {e}") })?;
        Ok(Some(q))
    }

    /// Every tensor dequantised to f32, in file order (any architecture).
    pub fn dequantized(&mut self) -> Result<Vec<(String, candle_core::Tensor)>> {
        tensor_order(&self.content)
            .into_iter()
            .map(|name| {
                let q = self.quantized(&name)?.expect("a tensor of the file's own table");
                Ok((name, q.dequantize(&Device::Cpu)?))
            })
            .collect()
    }
}

/// Load a GGUF: every tensor dequantised to `dtype` on `device`.
pub fn load(path: &Path, device: &Device, dtype: DType) -> Result<(Config, Params)> {
    let mut reader = Reader::open(path)?;
    let config = config(path, &reader.content)?;
    let mut params = Params::new();
    for (name, t) in reader.dequantized()? {
        params.insert(&name, t.to_dtype(dtype)?.to_device(device)?)?;
    }
    Ok((config, params))
}
