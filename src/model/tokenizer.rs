//! The tokenizer and chat template of a GGUF, through llama.cpp's vocab-only load: training
//! tokenises with the very code inference decodes with.
use std::path::Path;

use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaModel};
use llama_cpp_2::token::LlamaToken;

use crate::engine::llama::{backend, prompt_text};
use crate::prompt::Rendered;
use crate::{Error, Result};

pub struct Tokenizer {
    model: LlamaModel,
}

/// A prompt and its trained continuation, as token ids.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoded {
    pub prompt: Vec<u32>,
    /// the assistant turn up to and including its end-of-generation token
    pub target: Vec<u32>,
}

impl Tokenizer {
    /// Load the vocabulary (and chat template) of a GGUF, without its weights; or of a Hugging
    /// Face folder, through a vocab-only GGUF built from its tokenizer files as llama.cpp's
    /// converter builds it (the one an export of a model trained from the folder carries).
    pub fn load(path: &Path) -> Result<Tokenizer> {
        if path.is_dir() {
            let meta = super::hf_meta::metadata(path, &super::safetensors::read_config(path)?)?;
            let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
            let tmp = std::env::temp_dir().join(format!("rner-vocab-{}-{nanos}.gguf", std::process::id()));
            super::hf_meta::write_vocab_only(&meta, &tmp)?;
            let t = Self::load(&tmp);
            let _ = std::fs::remove_file(&tmp);
            return t.map_err(|e| Error::Model { path: path.into(), msg: format!("its tokenizer, converted: {e}") });
        }
        let params = LlamaModelParams::default().with_vocab_only(true);
        let model = LlamaModel::load_from_file(backend()?, path, &params)
            .map_err(|e| Error::Model { path: path.into(), msg: format!("llama.cpp cannot read its vocabulary: {e}") })?;
        Ok(Tokenizer { model })
    }

    /// Token ids of a text (special tokens parsed; BOS added when the model asks for it).
    pub fn encode(&self, text: &str, add_special: bool) -> Vec<u32> {
        self.model.vocab().tokenize(text.as_bytes(), add_special, true).into_iter().map(|t| t.0 as u32).collect()
    }

    pub fn decode(&self, ids: &[u32]) -> String {
        let toks: Vec<LlamaToken> = ids.iter().map(|&i| LlamaToken(i as i32)).collect();
        String::from_utf8_lossy(&self.model.vocab().detokenize(&toks, false, true)).into_owned()
    }

    pub fn eos(&self) -> u32 {
        self.model.vocab().eos().0 as u32
    }

    pub fn is_eog(&self, id: u32) -> bool {
        self.model.vocab().is_eog(LlamaToken(id as i32))
    }

    pub fn n_vocab(&self) -> usize {
        self.model.n_vocab() as usize
    }

    /// The prompt text exactly as the llama.cpp engine renders it.
    pub fn prompt_text(&self, r: &Rendered) -> Result<String> {
        prompt_text(&self.model, r)
    }

    /// Prompt and target for SFT: the prompt as inference renders it; the target is the assistant
    /// turn the chat template writes around `completion`, cut after its first end-of-generation
    /// token (appended when the template has none), so EOS is trained and nothing after it.
    /// The paper's `sft.py` masks the user turn only, so it also trains the assistant header
    /// (`<|im_start|>assistant\n`) and the `\n` + EOS after `<|im_end|>`. Inference never generates
    /// them (the prompt ends with the header; generation stops at `<|im_end|>`), so we leave them
    /// out of the loss: a deviation of about five tokens per example.
    pub fn encode_pair(&self, r: &Rendered, completion: &str) -> Result<Encoded> {
        let prompt = self.prompt_text(r)?;
        let turn = match &r.text {
            // a raw-text prompt (qwen wrapper, completion template): the turn is the completion
            Some(_) => completion.to_string(),
            None => {
                let tmpl = self.model.chat_template(None).map_err(|_| Error::Engine("the model has no chat template".into()))?;
                let mut msgs = r
                    .messages
                    .iter()
                    .map(|m| LlamaChatMessage::new(m.role.clone(), m.content.clone()))
                    .collect::<std::result::Result<Vec<_>, _>>()
                    .map_err(|e| Error::Engine(format!("chat message: {e}")))?;
                msgs.push(LlamaChatMessage::new("assistant".into(), completion.into()).map_err(|e| Error::Engine(e.to_string()))?);
                let full = self
                    .model
                    .apply_chat_template(&tmpl, &msgs, false)
                    .map_err(|e| Error::Engine(format!("applying the chat template: {e}")))?;
                match full.strip_prefix(&prompt) {
                    Some(rest) => rest.to_string(),
                    None => {
                        return Err(Error::Engine(
                            "the chat template renders the conversation with a different prefix than the prompt alone; use --template qwen".into(),
                        ))
                    }
                }
            }
        };
        let mut target = self.encode(&turn, false);
        match target.iter().position(|&t| self.is_eog(t)) {
            Some(i) => target.truncate(i + 1),
            None => target.push(self.eos()),
        }
        Ok(Encoded { prompt: self.encode(&prompt, true), target })
    }
}
