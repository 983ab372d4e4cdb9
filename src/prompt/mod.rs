//! The NER instruction exactly as the paper's code words it, chat rendering (the model's own
//! template or the paper's qwen wrapper), completion prompts for base models, and the CoT
//! training target `<think>\nCOT\n</think>\n` + JSON answer.
pub mod grammar;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::data::{Entity, Example};

/// `rner/prompt.py NER_PROMPT` after `.strip()`. Note the full-width colon after `Schema`.
pub const NER_PROMPT: &str = "You are an excellent information extraction assistant. Please extract the corresponding entities from the following sentence based on the provided schema and return them in JSON format.

Note:
1) The schema specifies the list of entity types that can be extracted;
2) Only extract entities that are included in the schema.

Schema\u{FF1A}
{{SCHEMA}}

Output format:
{
  \"entities\": {
    \"label1\": [
      \"x1\",
      \"x2\"
    ],
    \"label2\": [
      \"x3\"
    ]
  }
}

Sentence:
{{SENTENCE}}";

/// How a prompt is wrapped for the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Template {
    /// The chat template stored in the model file (applied by the engine).
    #[default]
    Model,
    /// The paper's hard-coded qwen wrapper: `<|im_start|>user\n…<|im_end|>\n<|im_start|>assistant\n`.
    Qwen,
    /// No chat wrapping: instruction + "\n\nAnswer:\n" for base (non-instruct) models.
    Completion,
}

/// Everything that decides the prompt text; its hash goes into the run id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PromptSpec {
    pub template: Template,
    /// `add_source`: prefix "This sentence is from {source} dataset.\n\n" (off in the paper's eval).
    pub add_source: bool,
}

impl Default for PromptSpec {
    fn default() -> Self {
        PromptSpec { template: Template::Model, add_source: false }
    }
}

/// A chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub role: String,
    pub content: String,
}

/// A rendered prompt: the user message, and the exact text for engines that take raw text
/// (`None` when the engine must apply the model's own chat template to `messages`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendered {
    pub messages: Vec<Message>,
    pub text: Option<String>,
}

/// `json.dumps(list, ensure_ascii=False)`: `["a", "b"]` with `", "` separators.
pub fn json_list<S: AsRef<str>>(items: &[S]) -> String {
    let parts: Vec<String> = items
        .iter()
        .map(|s| serde_json::to_string(s.as_ref()).expect("string serialises"))
        .collect();
    format!("[{}]", parts.join(", "))
}

/// The instruction for one sentence with an already processed schema.
pub fn instruction(schema: &[String], sentence: &str) -> String {
    NER_PROMPT
        .replace("{{SCHEMA}}", &json_list(schema))
        .replace("{{SENTENCE}}", sentence)
}

/// The dataset name the paper's `add_source` shows (directory name, `_sample_N` removed).
fn source_name(dataset: &str) -> String {
    let re = regex::Regex::new(r"_sample_[0-9]+").expect("static regex");
    re.replace_all(dataset, "").into_owned()
}

/// The user message for an example.
pub fn user_message(ex: &Example, spec: &PromptSpec) -> String {
    let body = instruction(&ex.labels, &ex.text);
    if spec.add_source {
        format!("This sentence is from {} dataset.\n\n{}", source_name(&ex.dataset), body)
    } else {
        body
    }
}

/// Render an example under a prompt spec.
pub fn render(ex: &Example, spec: &PromptSpec) -> Rendered {
    let user = user_message(ex, spec);
    let text = match spec.template {
        Template::Model => None,
        Template::Qwen => Some(qwen_wrap(&user)),
        Template::Completion => Some(format!("{user}\n\nAnswer:\n")),
    };
    Rendered { messages: vec![Message { role: "user".into(), content: user }], text }
}

/// The paper's qwen chat wrapper for inference (no system turn, no BOS).
pub fn qwen_wrap(user: &str) -> String {
    format!("<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n")
}

/// The JSON answer as `json.dumps({"entities": {...}}, ensure_ascii=False, indent=2)`: label keys
/// in order of first occurrence, texts in gold order, duplicates kept.
pub fn answer_json(entities: &[Entity]) -> String {
    let mut keys: Vec<&str> = Vec::new();
    for e in entities {
        if !keys.contains(&e.label.as_str()) {
            keys.push(&e.label);
        }
    }
    if keys.is_empty() {
        return "{\n  \"entities\": {}\n}".to_string();
    }
    let mut out = String::from("{\n  \"entities\": {\n");
    for (ki, k) in keys.iter().enumerate() {
        out.push_str(&format!("    {}: [\n", serde_json::to_string(k).expect("string")));
        let texts: Vec<&Entity> = entities.iter().filter(|e| e.label == *k).collect();
        for (ti, e) in texts.iter().enumerate() {
            let sep = if ti + 1 < texts.len() { "," } else { "" };
            out.push_str(&format!("      {}{sep}\n", serde_json::to_string(&e.text).expect("string")));
        }
        let sep = if ki + 1 < keys.len() { "," } else { "" };
        out.push_str(&format!("    ]{sep}\n"));
    }
    out.push_str("  }\n}");
    out
}

/// The SFT target (`to_completion`): `<think>\n{cot}\n</think>\n` + answer when a CoT is given.
pub fn completion(entities: &[Entity], cot: Option<&str>) -> String {
    match cot {
        Some(c) => format!("<think>\n{c}\n</think>\n{}", answer_json(entities)),
        None => answer_json(entities),
    }
}

/// A short stable hash of a string (first 12 hex chars of sha256).
pub fn short_hash(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))[..12].to_string()
}

/// Hash of everything that decides prompt text: the instruction template and the spec.
pub fn spec_hash(spec: &PromptSpec) -> String {
    short_hash(&format!("{NER_PROMPT}\u{0}{}", serde_json::to_string(spec).expect("spec")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex() -> Example {
        Example {
            id: "x/test/0".into(),
            dataset: "crossner_ai".into(),
            split: "test".into(),
            index: 0,
            text: "Geoffrey Hinton won the Turing Award .".into(),
            tokens: None,
            gold: vec![Entity::new("Geoffrey Hinton", "researcher")],
            labels: vec!["algorithm".into(), "person".into(), "researcher".into()],
        }
    }

    #[test]
    fn prompt_is_byte_exact() {
        let p = user_message(&ex(), &PromptSpec::default());
        assert!(p.starts_with("You are an excellent information extraction assistant. Please extract"));
        assert!(p.contains("Schema\u{FF1A}\n[\"algorithm\", \"person\", \"researcher\"]\n\nOutput format:\n{\n  \"entities\": {\n    \"label1\": [\n      \"x1\",\n      \"x2\"\n    ],\n    \"label2\": [\n      \"x3\"\n    ]\n  }\n}\n\nSentence:\nGeoffrey Hinton won the Turing Award ."));
        assert!(p.as_bytes().windows(3).any(|w| w == [0xEF, 0xBC, 0x9A]));
        assert!(p.ends_with("Award ."));
        assert_eq!(short_hash(&p), short_hash(&p));
    }

    #[test]
    fn qwen_wrapper_matches_paper() {
        let spec = PromptSpec { template: Template::Qwen, add_source: false };
        let r = render(&ex(), &spec);
        let t = r.text.unwrap();
        assert!(t.starts_with("<|im_start|>user\nYou are"));
        assert!(t.ends_with("Award .<|im_end|>\n<|im_start|>assistant\n"));
    }

    #[test]
    fn add_source_prefix_strips_sample_suffix() {
        let mut e = ex();
        e.dataset = "conll2003_sample_100".into();
        let p = user_message(&e, &PromptSpec { template: Template::Model, add_source: true });
        assert!(p.starts_with("This sentence is from conll2003 dataset.\n\nYou are"));
    }

    #[test]
    fn json_list_matches_python_dumps() {
        assert_eq!(json_list(&["a", "b\"c", "é"]), "[\"a\", \"b\\\"c\", \"é\"]");
        assert_eq!(json_list::<&str>(&[]), "[]");
    }

    #[test]
    fn answer_json_matches_python_indent2() {
        let ents = vec![
            Entity::new("Geoffrey Hinton", "researcher"),
            Entity::new("Turing Award", "award"),
            Entity::new("Yann", "researcher"),
            Entity::new("Yann", "researcher"),
        ];
        assert_eq!(
            answer_json(&ents),
            "{\n  \"entities\": {\n    \"researcher\": [\n      \"Geoffrey Hinton\",\n      \"Yann\",\n      \"Yann\"\n    ],\n    \"award\": [\n      \"Turing Award\"\n    ]\n  }\n}"
        );
        assert_eq!(answer_json(&[]), "{\n  \"entities\": {}\n}");
        assert_eq!(completion(&[], Some("r")), "<think>\nr\n</think>\n{\n  \"entities\": {}\n}");
    }
}
