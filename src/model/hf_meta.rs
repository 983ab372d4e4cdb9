//! The GGUF metadata of a Hugging Face folder, built as llama.cpp's converter builds it: the
//! hyperparameters from `config.json`, the byte-level BPE vocabulary, merges and special tokens
//! from `tokenizer.json` + `tokenizer_config.json`, and the chat template. A vocab-only GGUF of it
//! gives training the very tokenizer llama.cpp decodes with, and an export of a model trained
//! from the folder carries it, so llama.cpp loads the result.
use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use serde_json::Value as Json;

use super::safetensors::HfConfig;
use crate::{Error, Result};

/// llama.cpp's token types (`LLAMA_TOKEN_TYPE_*`).
const NORMAL: i32 = 1;
const CONTROL: i32 = 3;
const USER_DEFINED: i32 = 4;
const UNUSED: i32 = 5;

fn read_json(path: &Path) -> Result<Json> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    serde_json::from_str(&text).map_err(|e| Error::Json { path: path.into(), err: e })
}

fn bad(path: &Path, msg: impl Into<String>) -> Error {
    Error::Model { path: path.into(), msg: msg.into() }
}

/// llama.cpp's pre-tokenizer name for a `tokenizer.json` pre-tokenizer, recognised by its shape
/// (the converter hashes a tokenisation instead; the shapes below are the ones it maps).
pub fn pre_tokenizer(pre: &Json) -> Option<&'static str> {
    let parts: Vec<&Json> = match pre.get("type").and_then(Json::as_str) {
        Some("Sequence") => pre.get("pretokenizers")?.as_array()?.iter().collect(),
        Some(_) => vec![pre],
        None => return None,
    };
    let kind = |p: &Json| p.get("type").and_then(Json::as_str).unwrap_or("").to_string();
    let byte_level = parts.iter().any(|p| kind(p) == "ByteLevel");
    let regex = parts.iter().find(|p| kind(p) == "Split").and_then(|p| p.pointer("/pattern/Regex")).and_then(Json::as_str);
    let single_digits = parts.iter().any(|p| kind(p) == "Digits" && p.get("individual_digits").and_then(Json::as_bool) == Some(true));
    match regex {
        // Llama 3: digits in runs of up to three
        Some(r) if byte_level && r.contains(r"\p{N}{1,3}") => Some("llama-bpe"),
        // Qwen2 / Qwen2.5 / Qwen3: one digit per piece, letters with one leading non-letter
        Some(r) if byte_level && r.contains(r"[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}|") => Some("qwen2"),
        Some(_) => None,
        // SmolLM (StarCoder-style): single digits, then GPT-2's byte-level split
        None if byte_level && single_digits && parts.len() == 2 => Some("smollm"),
        None => None,
    }
}

/// As llama.cpp's converter: added tokens marked special, or shaped like control tokens, are
/// control tokens; other added tokens are user-defined.
fn looks_special(t: &str) -> bool {
    matches!(t, "<pad>" | "<mask>") || (t.starts_with("<|") && t.ends_with("|>")) || (t.starts_with("<unused") && t.ends_with('>'))
}

/// A special token of `tokenizer_config.json` (`"eos_token": "<|im_end|>"` or `{"content": …}`).
fn special_text(cfg: &Json, key: &str) -> Option<String> {
    match cfg.get(key)? {
        Json::String(s) => Some(s.clone()),
        Json::Object(o) => o.get("content").and_then(Json::as_str).map(str::to_string),
        _ => None,
    }
}

/// The chat template: `tokenizer_config.json`'s (a string, or the `default` of a list), else
/// `chat_template.jinja` beside it.
fn chat_template(dir: &Path, cfg: &Json) -> Result<Option<String>> {
    match cfg.get("chat_template") {
        Some(Json::String(s)) => return Ok(Some(s.clone())),
        Some(Json::Array(list)) => {
            let default = list.iter().find(|t| t.get("name").and_then(Json::as_str) == Some("default")).or(list.first());
            if let Some(t) = default.and_then(|t| t.get("template")).and_then(Json::as_str) {
                return Ok(Some(t.to_string()));
            }
        }
        _ => {}
    }
    let jinja = dir.join("chat_template.jinja");
    if jinja.is_file() {
        return Ok(Some(std::fs::read_to_string(&jinja).map_err(|e| Error::io(&jinja, e))?));
    }
    Ok(None)
}

/// GGUF metadata (sorted by key) for the folder `dir` whose `config.json` is `hf`
/// ([`super::safetensors::read_config`]): architecture hyperparameters and tokenizer.
pub fn metadata(dir: &Path, hf: &HfConfig) -> Result<Vec<(String, Value)>> {
    let arch = hf.model_type.as_str();
    if !matches!(arch, "llama" | "qwen2" | "qwen3") {
        return Err(bad(&dir.join("config.json"), format!("model_type {arch:?}: llama, qwen2 and qwen3 folders can be read")));
    }
    let tok_path = dir.join("tokenizer.json");
    let tok = read_json(&tok_path)?;
    let model = tok.get("model").ok_or_else(|| bad(&tok_path, "no \"model\""))?;
    if model.get("type").and_then(Json::as_str) != Some("BPE") {
        return Err(bad(&tok_path, "only byte-level BPE tokenizers are read (pass --tokenizer FILE.gguf, a GGUF of the same model)"));
    }
    let pre = tok.get("pre_tokenizer").and_then(pre_tokenizer).ok_or_else(|| {
        bad(&tok_path, "pre_tokenizer not recognised (the Qwen2/Qwen3, Llama 3 and SmolLM shapes are); pass --tokenizer FILE.gguf, a GGUF of the same model")
    })?;

    // id → (text, type): the vocabulary, then the added tokens
    let mut by_id: HashMap<usize, (String, i32)> = HashMap::new();
    for (text, id) in model.get("vocab").and_then(Json::as_object).ok_or_else(|| bad(&tok_path, "model.vocab is not an object"))? {
        let id = id.as_u64().ok_or_else(|| bad(&tok_path, format!("model.vocab[{text:?}] is not an id")))? as usize;
        by_id.insert(id, (text.clone(), NORMAL));
    }
    for t in tok.get("added_tokens").and_then(Json::as_array).map(Vec::as_slice).unwrap_or(&[]) {
        let (Some(id), Some(text)) = (t.get("id").and_then(Json::as_u64), t.get("content").and_then(Json::as_str)) else {
            return Err(bad(&tok_path, format!("added token {t}: no id or content")));
        };
        let special = t.get("special").and_then(Json::as_bool).unwrap_or(false) || looks_special(text);
        by_id.insert(id as usize, (text.to_string(), if special { CONTROL } else { USER_DEFINED }));
    }
    // as the converter: as many tokens as the embedding has rows, unused ids padded
    let n = hf.vocab_size.max(by_id.keys().max().map_or(0, |m| m + 1));
    let (mut tokens, mut types) = (Vec::with_capacity(n), Vec::with_capacity(n));
    for i in 0..n {
        let (text, ty) = by_id.remove(&i).unwrap_or_else(|| (format!("[PAD{i}]"), UNUSED));
        tokens.push(Value::String(text));
        types.push(Value::I32(ty));
    }
    let merges: Vec<Value> = model
        .get("merges")
        .and_then(Json::as_array)
        .ok_or_else(|| bad(&tok_path, "model.merges is not a list"))?
        .iter()
        .map(|m| match m {
            Json::String(s) => Ok(Value::String(s.clone())),
            Json::Array(pair) if pair.len() == 2 && pair.iter().all(Json::is_string) => {
                Ok(Value::String(format!("{} {}", pair[0].as_str().unwrap_or(""), pair[1].as_str().unwrap_or(""))))
            }
            other => Err(bad(&tok_path, format!("merge {other}: expected \"a b\" or [\"a\", \"b\"]"))),
        })
        .collect::<Result<_>>()?;

    let cfg_path = dir.join("tokenizer_config.json");
    let tcfg = if cfg_path.is_file() { read_json(&cfg_path)? } else { Json::Null };
    let id_of = |key: &str| -> Result<Option<u32>> {
        let Some(text) = special_text(&tcfg, key) else { return Ok(None) };
        let id = tokens.iter().position(|t| matches!(t, Value::String(s) if *s == text));
        id.map(|i| Some(i as u32)).ok_or_else(|| bad(&cfg_path, format!("{key} {text:?} is not in tokenizer.json")))
    };

    let a = |k: &str| format!("{arch}.{k}");
    let heads = hf.num_attention_heads;
    let head_dim = hf.head_dim.unwrap_or(hf.hidden_size / heads);
    let mut meta: Vec<(String, Value)> = vec![
        ("general.architecture".into(), Value::String(arch.into())),
        ("general.name".into(), Value::String(dir.file_name().and_then(|s| s.to_str()).unwrap_or("model").into())),
        (a("context_length"), Value::U32(hf.max_position_embeddings.unwrap_or(4096) as u32)),
        (a("embedding_length"), Value::U32(hf.hidden_size as u32)),
        (a("block_count"), Value::U32(hf.num_hidden_layers as u32)),
        (a("feed_forward_length"), Value::U32(hf.intermediate_size as u32)),
        (a("attention.head_count"), Value::U32(heads as u32)),
        (a("attention.head_count_kv"), Value::U32(hf.num_key_value_heads.unwrap_or(heads) as u32)),
        (a("attention.key_length"), Value::U32(head_dim as u32)),
        (a("attention.value_length"), Value::U32(head_dim as u32)),
        (a("attention.layer_norm_rms_epsilon"), Value::F32(hf.rms_norm_eps as f32)),
        (a("rope.freq_base"), Value::F32(hf.rope_theta as f32)),
        (a("rope.dimension_count"), Value::U32(head_dim as u32)),
        (a("vocab_size"), Value::U32(n as u32)),
        ("tokenizer.ggml.model".into(), Value::String("gpt2".into())),
        ("tokenizer.ggml.pre".into(), Value::String(pre.into())),
        ("tokenizer.ggml.add_bos_token".into(), Value::Bool(tcfg.get("add_bos_token").and_then(Json::as_bool).unwrap_or(false))),
    ];
    for (key, gguf) in [("bos_token", "bos_token_id"), ("eos_token", "eos_token_id"), ("pad_token", "padding_token_id"), ("unk_token", "unknown_token_id")] {
        if let Some(id) = id_of(key)? {
            meta.push((format!("tokenizer.ggml.{gguf}"), Value::U32(id)));
        }
    }
    if let Some(t) = chat_template(dir, &tcfg)? {
        meta.push(("tokenizer.chat_template".into(), Value::String(t)));
    }
    meta.push(("tokenizer.ggml.tokens".into(), Value::Array(tokens)));
    meta.push(("tokenizer.ggml.token_type".into(), Value::Array(types)));
    meta.push(("tokenizer.ggml.merges".into(), Value::Array(merges)));
    meta.sort_by(|x, y| x.0.cmp(&y.0));
    Ok(meta)
}

/// Write a GGUF holding `meta` and no tensors (llama.cpp's vocab-only load reads it).
pub fn write_vocab_only(meta: &[(String, Value)], out: &Path) -> Result<()> {
    let mut f = std::io::BufWriter::new(std::fs::File::create(out).map_err(|e| Error::io(out, e))?);
    let m: Vec<(&str, &Value)> = meta.iter().map(|(k, v)| (k.as_str(), v)).collect();
    candle_core::quantized::gguf_file::write(&mut f, &m, &[])?;
    use std::io::Write;
    f.flush().map_err(|e| Error::io(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const QWEN2: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
    const LLAMA3: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

    fn split_then_bytes(regex: &str) -> Json {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false},
            {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": false, "use_regex": false}]})
    }

    #[test]
    fn pre_tokenizers_are_recognised_by_shape() {
        assert_eq!(pre_tokenizer(&split_then_bytes(QWEN2)), Some("qwen2"));
        assert_eq!(pre_tokenizer(&split_then_bytes(LLAMA3)), Some("llama-bpe"));
        let smollm = json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}]});
        assert_eq!(pre_tokenizer(&smollm), Some("smollm"));
        // an unknown split, or a bare byte-level one, is not guessed
        assert_eq!(pre_tokenizer(&split_then_bytes(r"\s+")), None);
        assert_eq!(pre_tokenizer(&json!({"type": "ByteLevel"})), None);
        assert_eq!(pre_tokenizer(&json!({"type": "Metaspace"})), None);
    }

    /// A tiny Qwen3-shaped folder: config, tokenizer.json (merges as pairs, as newer files write
    /// them), tokenizer_config.json with the special tokens and the template.
    fn tiny_qwen3(dir: &Path, vocab_size: usize) {
        std::fs::write(
            dir.join("config.json"),
            json!({"model_type": "qwen3", "vocab_size": vocab_size, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
                   "num_key_value_heads": 1, "head_dim": 16, "intermediate_size": 32, "rms_norm_eps": 1e-6, "rope_theta": 1000000.0,
                   "max_position_embeddings": 40960, "tie_word_embeddings": true})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join("tokenizer.json"),
            json!({"model": {"type": "BPE", "vocab": {"a": 0, "b": 1, "ab": 2, "Ġ": 3}, "merges": [["a", "b"]]},
                   "added_tokens": [{"id": 4, "content": "<|endoftext|>", "special": true}, {"id": 5, "content": "<|im_end|>", "special": true},
                                    {"id": 6, "content": "<think>", "special": false}],
                   "pre_tokenizer": split_then_bytes(QWEN2)})
            .to_string(),
        )
        .unwrap();
        std::fs::write(
            dir.join("tokenizer_config.json"),
            json!({"eos_token": {"content": "<|im_end|>"}, "pad_token": "<|endoftext|>", "bos_token": null, "chat_template": "{{ messages }}"}).to_string(),
        )
        .unwrap();
    }

    fn get<'a>(meta: &'a [(String, Value)], key: &str) -> &'a Value {
        &meta.iter().find(|(k, _)| k == key).unwrap_or_else(|| panic!("no {key}")).1
    }

    #[test]
    fn a_qwen3_folder_gives_the_converters_metadata() {
        let dir = tempfile::tempdir().unwrap();
        tiny_qwen3(dir.path(), 9);
        let meta = metadata(dir.path(), &super::super::safetensors::read_config(dir.path()).unwrap()).unwrap();
        assert!(meta.windows(2).all(|w| w[0].0 < w[1].0), "sorted, no key twice");
        assert!(matches!(get(&meta, "general.architecture"), Value::String(s) if s == "qwen3"));
        assert!(matches!(get(&meta, "tokenizer.ggml.pre"), Value::String(s) if s == "qwen2"));
        assert!(matches!(get(&meta, "qwen3.attention.head_count_kv"), Value::U32(1)));
        assert!(matches!(get(&meta, "qwen3.context_length"), Value::U32(40960)));
        let Value::Array(tokens) = get(&meta, "tokenizer.ggml.tokens") else { panic!() };
        let Value::Array(types) = get(&meta, "tokenizer.ggml.token_type") else { panic!() };
        let texts: Vec<&str> = tokens.iter().map(|t| if let Value::String(s) = t { s.as_str() } else { panic!() }).collect();
        // padded to the embedding's 9 rows; added tokens typed as the converter types them
        assert_eq!(texts, ["a", "b", "ab", "Ġ", "<|endoftext|>", "<|im_end|>", "<think>", "[PAD7]", "[PAD8]"]);
        let tys: Vec<i32> = types.iter().map(|t| if let Value::I32(x) = t { *x } else { panic!() }).collect();
        assert_eq!(tys, [NORMAL, NORMAL, NORMAL, NORMAL, CONTROL, CONTROL, USER_DEFINED, UNUSED, UNUSED]);
        assert!(matches!(get(&meta, "tokenizer.ggml.merges"), Value::Array(m) if matches!(&m[..], [Value::String(s)] if s == "a b")));
        assert!(matches!(get(&meta, "tokenizer.ggml.eos_token_id"), Value::U32(5)));
        assert!(matches!(get(&meta, "tokenizer.ggml.padding_token_id"), Value::U32(4)));
        assert!(!meta.iter().any(|(k, _)| k == "tokenizer.ggml.bos_token_id"), "bos_token is null");
        assert!(matches!(get(&meta, "tokenizer.ggml.add_bos_token"), Value::Bool(false)));
        assert!(matches!(get(&meta, "tokenizer.chat_template"), Value::String(s) if s == "{{ messages }}"));
    }

    #[test]
    fn a_folder_that_cannot_be_converted_says_which_file_and_why() {
        let dir = tempfile::tempdir().unwrap();
        tiny_qwen3(dir.path(), 9);
        let tok = dir.path().join("tokenizer.json");
        let text = std::fs::read_to_string(&tok).unwrap();
        std::fs::write(&tok, text.replace("\"BPE\"", "\"Unigram\"")).unwrap();
        let err = metadata(dir.path(), &super::super::safetensors::read_config(dir.path()).unwrap()).unwrap_err().to_string();
        assert!(err.contains("tokenizer.json") && err.contains("--tokenizer"), "{err}");
        std::fs::write(&tok, &text).unwrap();
        let cfg = dir.path().join("tokenizer_config.json");
        std::fs::write(&cfg, json!({"eos_token": "</s>"}).to_string()).unwrap();
        let err = metadata(dir.path(), &super::super::safetensors::read_config(dir.path()).unwrap()).unwrap_err().to_string();
        assert!(err.contains("tokenizer_config.json") && err.contains("</s>"), "{err}");
    }
}
