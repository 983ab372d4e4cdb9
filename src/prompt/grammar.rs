//! Constrained decoding of the answer (an option beside the paper's free decoding, never a silent
//! change to it): `json` forces `{"entities": {"label": ["span", …], …}}`; `schema` also limits the
//! labels to the sentence's schema and the spans to runs of the sentence's words. Grammars are
//! GBNF for llama.cpp's grammar sampler, and a JSON schema for OpenAI-style `response_format`.
use serde::{Deserialize, Serialize};

use crate::data::Example;

/// How the answer is decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Decoding {
    /// unconstrained (the paper's protocol)
    #[default]
    Free,
    /// syntactically valid `{"entities": {…}}`
    Json,
    /// `json`, with labels from the schema and spans from the sentence
    Schema,
}

impl Decoding {
    pub fn is_free(&self) -> bool {
        *self == Decoding::Free
    }

    pub fn name(self) -> &'static str {
        match self {
            Decoding::Free => "free",
            Decoding::Json => "json",
            Decoding::Schema => "schema",
        }
    }
}

/// A constraint on one request's answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Constraint {
    pub decoding: Decoding,
    /// GBNF with root rule `root`
    pub gbnf: String,
    /// the grammar applies from this text on (CoT: `</think>`, the rationale stays free)
    pub after: Option<String>,
    /// the same shape as a JSON schema (labels as properties; spans cannot be expressed)
    pub json_schema: serde_json::Value,
}

/// Entities per label at most, and characters per free string: bounds keep a constrained answer
/// from running to the token cap (where it would be cut and unparsable).
const MAX_SPANS: usize = 16;
const MAX_CHARS: usize = 120;

/// A GBNF string literal matching exactly `s`.
pub fn literal(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\x{:02X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// `s` as the inside of a JSON string (what the model must write for it).
fn json_inner(s: &str) -> String {
    let q = serde_json::to_string(s).expect("strings serialise");
    q[1..q.len() - 1].to_string()
}

const COMMON: &str = r#"ws ::= [ \t\n]{0,8}
"#;

const FREE_STRING: &str = r#"str ::= "\"" chr{0,MAXC} "\""
chr ::= [^"\\\x7F\x00-\x1F] | "\\" (["\\/bfnrt] | "u" [0-9a-fA-F]{4})
"#;

/// The answer grammar for one example (`schema` needs its labels and sentence).
pub fn answer_gbnf(decoding: Decoding, ex: &Example) -> Option<String> {
    let answer = r#"answer ::= "{" ws "\"entities\"" ws ":" ws "{" ws members? ws "}" ws "}"
pair ::= key ws ":" ws "[" ws values? ws "]"
"#;
    let mut g = String::from(answer);
    match decoding {
        Decoding::Free => return None,
        Decoding::Json => {
            g.push_str("members ::= pair (ws \",\" ws pair){0,31}\n");
            g.push_str(&format!("values ::= str (ws \",\" ws str){{0,{}}}\n", MAX_SPANS - 1));
            g.push_str("key ::= str\n");
            g.push_str(&FREE_STRING.replace("MAXC", &MAX_CHARS.to_string()));
        }
        Decoding::Schema => {
            let n = ex.labels.len().max(1);
            g.push_str(&format!("members ::= pair (ws \",\" ws pair){{0,{}}}\n", n - 1));
            g.push_str(&format!("values ::= span (ws \",\" ws span){{0,{}}}\n", MAX_SPANS - 1));
            let keys: Vec<String> = ex.labels.iter().map(|l| literal(&format!("\"{}\"", json_inner(l)))).collect();
            if keys.is_empty() {
                // no label to use: only the empty answer
                g = g.replace("ws members? ws", "ws");
                g.push_str("key ::= \"\\\"\"\n");
            } else {
                g.push_str(&format!("key ::= {}\n", keys.join(" | ")));
            }
            // a span is a run of consecutive words: w_i then either the closing quote or w_{i+1}…
            let words: Vec<&str> = ex.text.split_whitespace().collect();
            if words.is_empty() {
                g.push_str("span ::= \"\\\"\\\"\"\n");
            } else {
                let starts: Vec<String> = (0..words.len()).map(|i| format!("\"\\\"\" w{i}")).collect();
                g.push_str(&format!("span ::= {}\n", starts.join(" | ")));
                for (i, w) in words.iter().enumerate() {
                    let lit = literal(&json_inner(w));
                    if i + 1 < words.len() {
                        g.push_str(&format!("w{i} ::= {lit} (\"\\\"\" | \" \" w{})\n", i + 1));
                    } else {
                        g.push_str(&format!("w{i} ::= {lit} \"\\\"\"\n"));
                    }
                }
            }
        }
    }
    g.push_str(COMMON);
    Some(g)
}

/// The constraint of one request: the answer grammar, after `</think>` in CoT mode.
pub fn constraint(decoding: Decoding, ex: &Example, cot: bool) -> Option<Constraint> {
    let answer = answer_gbnf(decoding, ex)?;
    let (root, after) = if cot {
        // the token that completes `</think>` may carry a few more characters (`>.`, `>:`):
        // llama.cpp feeds them to the grammar at once and aborts the process when the grammar
        // rejects them, so anything but `{` is allowed for a few characters before the answer
        ("root ::= \"</think>\" [^{]{0,16} answer\n", Some("</think>".to_string()))
    } else {
        ("root ::= answer\n", None)
    };
    Some(Constraint { decoding, gbnf: format!("{root}{answer}"), after, json_schema: json_schema(decoding, ex) })
}

/// Any JSON object (OpenAI's `response_format: {"type": "json_object"}`), for `rner serve`.
pub fn json_object_gbnf() -> String {
    let mut g = String::from(
        r#"root ::= object
object ::= "{" ws (str ws ":" ws value (ws "," ws str ws ":" ws value)*)? ws "}"
array ::= "[" ws (value (ws "," ws value)*)? ws "]"
value ::= object | array | str | num | "true" | "false" | "null"
num ::= "-"? [0-9]{1,16} ("." [0-9]{1,16})? ([eE] [-+]? [0-9]{1,3})?
"#,
    );
    g.push_str(&FREE_STRING.replace("MAXC", "4096"));
    g.push_str(COMMON);
    g
}

/// The answer's shape as a JSON schema (for `response_format: json_schema`).
pub fn json_schema(decoding: Decoding, ex: &Example) -> serde_json::Value {
    let list = serde_json::json!({"type": "array", "items": {"type": "string"}});
    let entities = match decoding {
        Decoding::Schema => {
            let props: serde_json::Map<String, serde_json::Value> = ex.labels.iter().map(|l| (l.clone(), list.clone())).collect();
            serde_json::json!({"type": "object", "properties": props, "additionalProperties": false})
        }
        _ => serde_json::json!({"type": "object", "additionalProperties": list}),
    };
    serde_json::json!({"type": "object", "properties": {"entities": entities}, "required": ["entities"], "additionalProperties": false})
}

/// Where the first complete top-level JSON object of an answer ends (after any `</think>`), for
/// stopping as soon as the answer is complete.
pub fn json_object_end(text: &str) -> Option<usize> {
    let start_from = text.rfind("</think>").map_or(0, |i| i + "</think>".len());
    let rest = &text[start_from..];
    let open = rest.find('{')?;
    let (mut depth, mut in_str, mut esc) = (0usize, false, false);
    for (i, c) in rest[open..].char_indices() {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_str = true,
            '{' | '[' => depth += 1,
            '}' | ']' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Some(start_from + open + i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// A constrained answer cut by the token cap, closed: the text up to its last complete value (or
/// open bracket) plus the brackets still open, so it parses to what was complete. `None` when the
/// answer (after `after`, if given) has not started or is already complete.
pub fn close_answer(text: &str, after: Option<&str>) -> Option<String> {
    let from = match after {
        Some(t) => text.find(t)? + t.len(),
        None => 0,
    };
    let open = from + text[from..].find('{')?;
    let mut stack: Vec<char> = Vec::new();
    let (mut in_str, mut esc, mut is_key, mut expect_key) = (false, false, false, false);
    let mut safe: Option<(usize, Vec<char>)> = None;
    for (i, c) in text[open..].char_indices() {
        let at = open + i + c.len_utf8();
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, '\\') => esc = true,
                (false, '"') => {
                    in_str = false;
                    if !is_key {
                        safe = Some((at, stack.clone()));
                    }
                }
                _ => {}
            }
            continue;
        }
        match c {
            '{' | '[' => {
                stack.push(c);
                expect_key = c == '{';
                safe = Some((at, stack.clone()));
            }
            '}' | ']' => {
                stack.pop();
                if stack.is_empty() {
                    return None;
                }
                expect_key = false;
                safe = Some((at, stack.clone()));
            }
            '"' => {
                in_str = true;
                is_key = expect_key && stack.last() == Some(&'{');
                expect_key = false;
            }
            ',' => expect_key = stack.last() == Some(&'{'),
            _ => {}
        }
    }
    let (cut, open_brackets) = safe?;
    let mut out = text[..cut].trim_end_matches([' ', '\n', '\t', ',']).to_string();
    out.extend(open_brackets.iter().rev().map(|b| if *b == '{' { '}' } else { ']' }));
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Entity;

    fn ex(labels: &[&str], text: &str) -> Example {
        Example {
            id: "x/test/0".into(),
            dataset: "x".into(),
            split: "test".into(),
            index: 0,
            text: text.into(),
            tokens: None,
            gold: Vec::<Entity>::new(),
            labels: labels.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn literals_escape_what_gbnf_needs() {
        assert_eq!(literal("a\"b\\c\nd"), r#""a\"b\\c\nd""#);
        assert_eq!(literal("café"), "\"café\"");
    }

    #[test]
    fn schema_grammar_names_each_label_and_word() {
        let g = answer_gbnf(Decoding::Schema, &ex(&["music genre", "o\"k", "país"], "Los \"Lobos\" played")).unwrap();
        assert!(g.contains(r#"key ::= "\"music genre\"" | "\"o\\\"k\"" | "\"país\"""#), "{g}");
        // the word `"Lobos"` is written `\"Lobos\"` inside a JSON string
        assert!(g.contains(r#"w1 ::= "\\\"Lobos\\\"" ("\"" | " " w2)"#), "{g}");
        assert!(g.contains(r#"w2 ::= "played" "\"""#), "{g}");
        assert!(answer_gbnf(Decoding::Free, &ex(&["a"], "b")).is_none());
    }

    #[test]
    fn cot_grammars_start_at_the_end_of_the_rationale() {
        let c = constraint(Decoding::Json, &ex(&["a"], "b"), true).unwrap();
        assert!(c.gbnf.starts_with("root ::= \"</think>\" [^{]{0,16} answer"));
        assert_eq!(c.after.as_deref(), Some("</think>"));
        assert_eq!(json_schema(Decoding::Schema, &ex(&["a"], "b"))["properties"]["entities"]["properties"]["a"]["type"], "array");
    }

    #[test]
    fn cut_answers_are_closed_after_their_last_complete_value() {
        let close = |t: &str| close_answer(t, None);
        assert_eq!(close(r#"{"entities": {"a": ["x", "y"#).as_deref(), Some(r#"{"entities": {"a": ["x"]}}"#));
        assert_eq!(close(r#"{"entities": {"a": ["x", "#).as_deref(), Some(r#"{"entities": {"a": ["x"]}}"#));
        assert_eq!(close(r#"{"entities": {"a": ["x"], "b"#).as_deref(), Some(r#"{"entities": {"a": ["x"]}}"#));
        assert_eq!(close(r#"{"entities": {"la"#).as_deref(), Some(r#"{"entities": {}}"#));
        assert_eq!(close(r#"{"entities": {"a": ["x\"]"#).as_deref(), Some(r#"{"entities": {"a": []}}"#));
        assert_eq!(close(r#"{"entities": {}}"#), None);
        assert_eq!(close_answer("<think>abc", Some("</think>")), None);
        assert_eq!(close_answer("<think>a</think>{\"entities\": {", Some("</think>")).as_deref(), Some("<think>a</think>{\"entities\": {}}"));
        for t in [r#"{"entities": {"a": ["x", "y"#, r#"{"entities": {"a": ["x"], "b": ["#] {
            assert!(crate::parse::prediction(&close(t).unwrap()).error.is_none());
        }
    }

    #[test]
    fn the_first_complete_object_is_found() {
        assert_eq!(json_object_end(r#"x {"entities": {"a": ["}"]}} tail"#), Some(28));
        assert_eq!(json_object_end(r#"{"entities": {"a": ["x"#), None);
        assert_eq!(json_object_end("<think>{</think>\n{}"), Some(19));
        assert_eq!(json_object_end("no json"), None);
    }
}
