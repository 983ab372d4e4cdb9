//! Model text → [`Prediction`], in the paper's order of operations (`process_completion`, then
//! `from_completion`). A parse failure is a value, never a panic or an error.
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::data::Entity;

/// Why an answer yielded no (or only some) entities. The paper's `from_completion` gives `{}` for the
/// first three and raises on the last two (its eval crashes, its rewards catch it and give 0); we
/// record them and go on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ParseError {
    /// `json.loads` failed on the processed text.
    InvalidJson,
    /// Valid JSON, but not an object.
    NotObject,
    /// An object with no `entities` key (the paper silently reads it as no entities).
    MissingEntities,
    /// `entities` is present but not an object (e.g. a list): the paper's eval would crash.
    EntitiesNotObject,
    /// A label's value is neither a list, a string nor an object (skipped; the paper would crash).
    BadSpans,
}

impl ParseError {
    /// Whether the paper's own `R_schema` / eval would treat the answer as unusable.
    pub fn is_failure(self) -> bool {
        !matches!(self, ParseError::MissingEntities)
    }

    /// Whether the paper's `from_completion` raises on it (`.items()` on a non-dict, iterating a
    /// value that is no list, string or dict), which its rewards catch and score 0.
    pub fn raises(self) -> bool {
        matches!(self, ParseError::EntitiesNotObject | ParseError::BadSpans)
    }
}

/// The parsed answer of one completion.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct Prediction {
    pub entities: Vec<Entity>,
    /// the first `<think>…</think>` block's content
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub think: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ParseError>,
}

/// Python's `str.strip()`: Unicode whitespace plus the separators `\x1c`–`\x1f` that Python counts.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || ('\x1c'..='\x1f').contains(&c))
}

/// First `open(.*?)close` (DOTALL) → the inner text.
fn first_between<'a>(s: &'a str, open: &str, close: &str) -> Option<&'a str> {
    let start = s.find(open)? + open.len();
    let end = s[start..].find(close)? + start;
    Some(&s[start..end])
}

/// `re.sub(open + ".*?" + close, "", s, flags=DOTALL)`
fn remove_all_between(s: &str, open: &str, close: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    loop {
        match rest.find(open) {
            Some(i) => match rest[i + open.len()..].find(close) {
                Some(j) => {
                    out.push_str(&rest[..i]);
                    rest = &rest[i + open.len() + j + close.len()..];
                }
                None => {
                    out.push_str(rest);
                    return out;
                }
            },
            None => {
                out.push_str(rest);
                return out;
            }
        }
    }
}

/// The paper's `process_completion`: drop think blocks, take the `<answer>` body, take the
/// first ```` ```json ```` fence, strip.
pub fn process_completion(s: &str) -> String {
    let mut s = s.to_string();
    if s.contains("<think>") || s.contains("</think>") {
        s = remove_all_between(&s, "<think>", "</think>").replace("<think>", "").replace("</think>", "");
    }
    if s.contains("<answer>") {
        s = match first_between(&s, "<answer>", "</answer>") {
            Some(inner) => inner.to_string(),
            None => s.replace("<answer>", "").replace("</answer>", ""),
        };
    }
    if s.contains("```json") {
        if let Some(inner) = first_between(&s, "```json", "```") {
            s = inner.to_string();
        }
    }
    py_strip(&s).to_string()
}

/// Python `json.loads` on the processed text. What Python reads and serde_json refuses is
/// rewritten and parsed in a second attempt: see [`python_json_compat`].
pub(crate) fn json_loads(s: &str) -> Option<Value> {
    match serde_json::from_str::<Value>(s) {
        Ok(v) => Some(v),
        Err(_) => python_json_compat(s).and_then(|compat| serde_json::from_str(&compat).ok()),
    }
}

/// What Python's `json.loads` accepts and serde_json does not: `NaN`, `Infinity` and `-Infinity`
/// outside strings, and numbers past f64's range (`1e400`, or an integer of 400 digits): floats
/// or ints there, null here, and a non-string is no span either way; and a lone UTF-16 surrogate
/// escape inside a string (a lone surrogate character there; `\ufffd` here: neither occurs in any
/// gold span, so F1 and R_schema come out the same). A string's own text and every other escape
/// are left alone. `None` when there is nothing to rewrite.
fn python_json_compat(s: &str) -> Option<String> {
    let hex4 = |h: &str| h.get(..4).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit())).and_then(|h| u32::from_str_radix(h, 16).ok());
    let mut out = String::with_capacity(s.len());
    let mut changed = false;
    let mut in_string = false;
    let mut rest = s;
    while let Some(c) = rest.chars().next() {
        if in_string && c == '\\' {
            // an escape, taken whole: `\uXXXX` (a surrogate pair as one) or a backslash and one character
            let len = match rest.strip_prefix("\\u").and_then(hex4) {
                Some(n) => {
                    let low = |n: u32| (0xDC00..=0xDFFF).contains(&n);
                    let pair = (0xD800..=0xDBFF).contains(&n) && rest[6..].strip_prefix("\\u").and_then(hex4).is_some_and(low);
                    if (0xD800..=0xDFFF).contains(&n) && !pair {
                        out.push_str("\\ufffd");
                        rest = &rest[6..];
                        changed = true;
                        continue;
                    }
                    if pair { 12 } else { 6 }
                }
                None => 1 + rest[1..].chars().next().map_or(0, char::len_utf8),
            };
            out.push_str(&rest[..len]);
            rest = &rest[len..];
            continue;
        }
        if c == '"' {
            in_string = !in_string;
        } else if !in_string {
            if let Some(token) = ["-Infinity", "Infinity", "NaN"].into_iter().find(|t| rest.starts_with(t)) {
                out.push_str("null");
                rest = &rest[token.len()..];
                changed = true;
                continue;
            }
            if c == '-' || c.is_ascii_digit() {
                // a number token, taken whole; one past f64's range becomes null
                let len = rest.find(|c: char| !(c.is_ascii_digit() || "+-.eE".contains(c))).unwrap_or(rest.len());
                let number = &rest[..len];
                if number.parse::<f64>().is_ok_and(f64::is_infinite) {
                    out.push_str("null");
                    changed = true;
                } else {
                    out.push_str(number);
                }
                rest = &rest[len..];
                continue;
            }
        }
        out.push(c);
        rest = &rest[c.len_utf8()..];
    }
    changed.then_some(out)
}

/// The content of the first `<think>…</think>` block.
pub fn first_think(text: &str) -> Option<String> {
    first_between(text, "<think>", "</think>").map(str::to_string)
}

fn span(text: &str, label: &str) -> Entity {
    Entity::new(py_strip(text), py_strip(&label.to_lowercase()))
}

/// The paper's `from_completion`, kept total: odd shapes become data, not crashes.
pub fn prediction(text: &str) -> Prediction {
    let mut pred = Prediction { entities: Vec::new(), think: first_think(text), error: None };
    let Some(data) = json_loads(&process_completion(text)) else {
        pred.error = Some(ParseError::InvalidJson);
        return pred;
    };
    let Value::Object(obj) = data else {
        pred.error = Some(ParseError::NotObject);
        return pred;
    };
    let entities = match obj.get("entities") {
        None => {
            pred.error = Some(ParseError::MissingEntities);
            return pred;
        }
        Some(Value::Object(m)) => m,
        Some(_) => {
            pred.error = Some(ParseError::EntitiesNotObject);
            return pred;
        }
    };
    for (label, spans) in entities {
        match spans {
            Value::Array(items) => {
                pred.entities.extend(items.iter().filter_map(|v| v.as_str()).map(|t| span(t, label)))
            }
            // Python iterates a string by characters and a dict by keys: kept for metric parity.
            Value::String(s) => pred.entities.extend(s.chars().map(|c| span(&c.to_string(), label))),
            Value::Object(m) => pred.entities.extend(m.keys().map(|k| span(k, label))),
            _ => pred.error = Some(ParseError::BadSpans),
        }
    }
    pred
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(p: &Prediction) -> Vec<(String, String)> {
        p.entities.iter().map(|e| (e.text.clone(), e.label.clone())).collect()
    }

    #[test]
    fn plain_json() {
        let p = prediction("{\"entities\": {\"Person\": [\" Bob \", \"Ann\", 3]}}");
        assert_eq!(texts(&p), vec![("Bob".into(), "person".into()), ("Ann".into(), "person".into())]);
        assert_eq!(p.error, None);
    }

    #[test]
    fn think_blocks_are_removed_non_greedily() {
        let s = "<think>a {</think>{\"entities\": {}}<think>b</think>";
        assert_eq!(process_completion(s), "{\"entities\": {}}");
        assert_eq!(prediction(s).think.as_deref(), Some("a {"));
        // unclosed think: tags removed, text stays, JSON fails
        let p = prediction("<think>still thinking {\"entities\": {}}");
        assert_eq!(process_completion("<think>still thinking"), "still thinking");
        assert_eq!(p.error, Some(ParseError::InvalidJson));
        // a stray closing tag alone
        assert_eq!(process_completion("x</think> y"), "x y");
    }

    #[test]
    fn answer_tags_then_fences() {
        assert_eq!(process_completion("pre <answer> {\"a\":1} </answer> post"), "{\"a\":1}");
        assert_eq!(process_completion("<answer>{\"a\":1}"), "{\"a\":1}");
        assert_eq!(process_completion("Here:\n```json\n{\"a\":1}\n```\nbye"), "{\"a\":1}");
        // an unclosed fence is left alone
        assert_eq!(process_completion("```json\n{\"a\":1}"), "```json\n{\"a\":1}");
        // order: think removed before the answer tag is looked for
        assert_eq!(process_completion("<think><answer>x</answer></think><answer>y</answer>"), "y");
    }

    #[test]
    fn trailing_text_fails_like_json_loads() {
        assert_eq!(prediction("{\"entities\": {}} and more").error, Some(ParseError::InvalidJson));
    }

    #[test]
    fn odd_shapes_are_data() {
        assert_eq!(prediction("[1,2]").error, Some(ParseError::NotObject));
        assert_eq!(prediction("{\"x\":1}").error, Some(ParseError::MissingEntities));
        let p = prediction("{\"entities\": [{\"text\":\"Bob\",\"label\":\"person\"}]}");
        assert_eq!(p.error, Some(ParseError::EntitiesNotObject));
        assert!(p.entities.is_empty());
        // a bare string is iterated by characters, as Python does
        let p = prediction("{\"entities\": {\"person\": \"Bo b\"}}");
        assert_eq!(texts(&p).iter().map(|t| t.0.as_str()).collect::<Vec<_>>(), vec!["B", "o", "", "b"]);
        let p = prediction("{\"entities\": {\"person\": 5, \"loc\": [\"Rome\"]}}");
        assert_eq!(p.error, Some(ParseError::BadSpans));
        assert_eq!(texts(&p), vec![("Rome".into(), "loc".into())]);
        assert_eq!(prediction("{\"entities\": {\"a\": [NaN, \"x\"]}}").entities.len(), 1);
        // Python reads NaN as a float outside strings only: a span's own text is kept
        let p = prediction("{\"entities\": {\"org\": [\"NaN Ltd\", \"Infinity \\\" Co\"]}, \"x\": -Infinity}");
        assert_eq!(texts(&p), vec![("NaN Ltd".into(), "org".into()), ("Infinity \" Co".into(), "org".into())]);
        // Python reads a lone surrogate escape (serde_json refuses it); a pair, another escape and an
        // escaped backslash before `u` are left as they are
        let p = prediction("{\"entities\": {\"person\": [\"a\\ud800b\", \"\\udc00\\u0041\", \"\\ud83d\\ude00\\ud800\", \"Bob\"]}}");
        assert_eq!(p.error, None);
        let want = ["a\u{fffd}b", "\u{fffd}A", "\u{1F600}\u{fffd}", "Bob"];
        assert_eq!(texts(&p), want.iter().map(|t| (t.to_string(), "person".to_string())).collect::<Vec<_>>());
        let p = prediction("{\"entities\": {\"x\": [\"a\\\\ud800\\\"\"]}, \"n\": NaN}");
        assert_eq!(texts(&p), vec![("a\\ud800\"".into(), "x".into())]);
        assert_eq!(prediction("{\"entities\": {\"x\": [\"\\ud80\"]}}").error, Some(ParseError::InvalidJson));
        // numbers past f64's range: Python reads an inf float or a big int, neither a span
        let big = format!("1{}", "0".repeat(400));
        let p = prediction(&format!("{{\"entities\": {{\"x\": [1e400, \"Rome\", -2.5E+999, {big}], \"y\": [\"1e400\"]}}, \"n\": 1e-400}}"));
        assert_eq!(p.error, None);
        assert_eq!(texts(&p), vec![("Rome".into(), "x".into()), ("1e400".into(), "y".into())]);
        assert_eq!(prediction("{\"entities\": 1e400}").error, Some(ParseError::EntitiesNotObject));
        // a malformed number stays malformed
        assert_eq!(prediction("{\"entities\": {\"x\": [1e, \"Rome\"]}}").error, Some(ParseError::InvalidJson));
        assert_eq!(prediction("{\"entities\": {\"x\": [01, \"Rome\"]}}").error, Some(ParseError::InvalidJson));
    }

    #[test]
    fn never_panics_on_junk() {
        let mut seed = 7u64;
        let alphabet: Vec<char> = "{}[]\":,<>/thinkanswer`json \n\\é\u{FF1A}0aNud8c".chars().collect();
        for _ in 0..20_000 {
            let len = (seed % 40) as usize;
            let s: String = (0..len)
                .map(|_| {
                    seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                    alphabet[(seed >> 33) as usize % alphabet.len()]
                })
                .collect();
            let _ = prediction(&s);
        }
    }
}
