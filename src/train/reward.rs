//! Stage 3's reward: named components, each a function of (completion, example) built from the
//! very parser and scorer the benchmark uses, combined with weights set on the command line
//! (`--reward f1=10,schema=1` is the paper's; weight 0 disables a component).
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::data::Example;
use crate::parse::{first_think, json_loads, prediction, process_completion, Prediction};
use crate::score::{normalize, sentence_f1};

/// One reward component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// the paper's `R_F1`: the sentence's F1 on the parsed answer (empty gold and empty answer: 0;
    /// an answer `from_completion` raises on: 0)
    F1,
    /// the paper's `R_schema`: the processed answer is valid JSON, `from_completion` does not raise,
    /// every predicted label is in the schema (so `{"entities": {}}` and even `[1,2]` earn it)
    Schema,
    /// ours: a correct abstention (no gold entity, a valid answer with none) earns 1
    EmptyOk,
    /// ours: a closed `<think>…</think>` block, then an answer that parses
    Format,
    /// ours: the share of predicted entities that occur in the sentence and in the rationale
    Grounded,
}

impl Component {
    pub const ALL: [Component; 5] = [Component::F1, Component::Schema, Component::EmptyOk, Component::Format, Component::Grounded];

    pub fn name(self) -> &'static str {
        match self {
            Component::F1 => "f1",
            Component::Schema => "schema",
            Component::EmptyOk => "empty_ok",
            Component::Format => "format",
            Component::Grounded => "grounded",
        }
    }

    /// The component's value in [0, 1].
    pub fn value(self, completion: &str, answer: &Answer, ex: &Example) -> f64 {
        let pred = &answer.pred;
        let raised = pred.error.is_some_and(|e| e.raises());
        match self {
            Component::F1 if raised => 0.0,
            Component::F1 => sentence_f1(&pred.entities, &ex.gold),
            Component::Schema => {
                (answer.json_ok && !raised && pred.entities.iter().all(|e| ex.labels.contains(&e.label))) as u8 as f64
            }
            Component::EmptyOk => (ex.gold.is_empty() && pred.entities.is_empty() && pred.error.is_none()) as u8 as f64,
            Component::Format => {
                let closed = completion.trim_start().starts_with("<think>") && completion.contains("</think>");
                (closed && pred.error.is_none()) as u8 as f64
            }
            Component::Grounded => grounded_share(pred, &ex.text).unwrap_or(0.0),
        }
    }
}

/// A completion as the paper's reward functions read it: they take `ans = process_completion(o)`,
/// `R_schema` asks whether `json.loads(ans)` succeeds, and both parse `ans` with `from_completion`,
/// which runs `process_completion` on it once more (that changes only nested tags, e.g.
/// `<answer><answer>{…}</answer>`). The rationale is the completion's own first `<think>` block.
#[derive(Debug, Clone)]
pub struct Answer {
    pub pred: Prediction,
    /// `json.loads(process_completion(o))` succeeds
    pub json_ok: bool,
}

impl Answer {
    pub fn read(completion: &str) -> Answer {
        let ans = process_completion(completion);
        let mut pred = prediction(&ans);
        pred.think = first_think(completion);
        Answer { pred, json_ok: json_loads(&ans).is_some() }
    }
}

/// Share of predicted entities whose normalised text occurs in the normalised sentence and in the
/// normalised rationale (`None` when nothing was predicted).
pub fn grounded_share(pred: &Prediction, sentence: &str) -> Option<f64> {
    if pred.entities.is_empty() {
        return None;
    }
    let s = format!(" {} ", normalize(sentence));
    let r = format!(" {} ", normalize(pred.think.as_deref().unwrap_or("")));
    let ok = pred
        .entities
        .iter()
        .filter(|e| {
            let t = normalize(&e.text);
            !t.is_empty() && s.contains(&format!(" {t} ")) && r.contains(&format!(" {t} "))
        })
        .count();
    Some(ok as f64 / pred.entities.len() as f64)
}

/// Component weights, e.g. `f1=10,schema=1`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Weights(pub Vec<(Component, f64)>);

impl Weights {
    /// The paper's `10·F1 + 1·schema`.
    pub fn paper() -> Weights {
        Weights(vec![(Component::F1, 10.0), (Component::Schema, 1.0)])
    }

    /// Total reward and every component's value (components with weight 0 are still reported).
    pub fn score(&self, completion: &str, ex: &Example) -> (f64, Vec<(Component, f64)>) {
        let answer = Answer::read(completion);
        let values: Vec<(Component, f64)> = Component::ALL.iter().map(|&c| (c, c.value(completion, &answer, ex))).collect();
        let total = self.0.iter().map(|(c, w)| w * values.iter().find(|(k, _)| k == c).map(|(_, v)| *v).unwrap_or(0.0)).sum();
        (total, values)
    }
}

impl fmt::Display for Weights {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(c, w)| format!("{}={w}", c.name())).collect();
        write!(f, "{}", parts.join(","))
    }
}

impl FromStr for Weights {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let mut out = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (name, w) = part.split_once('=').ok_or_else(|| format!("{part:?}: expected NAME=WEIGHT"))?;
            let c = Component::ALL
                .iter()
                .copied()
                .find(|c| c.name() == name.trim())
                .ok_or_else(|| format!("{name:?}: unknown component (f1, schema, empty_ok, format, grounded)"))?;
            let w: f64 = w.trim().parse().map_err(|_| format!("{part:?}: the weight is not a number"))?;
            if out.iter().any(|(k, _)| *k == c) {
                return Err(format!("{name} given twice"));
            }
            if w != 0.0 {
                out.push((c, w));
            }
        }
        if out.is_empty() {
            return Err("every component has weight 0: nothing to optimise".into());
        }
        Ok(Weights(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::Entity;

    fn ex(gold: Vec<Entity>) -> Example {
        Example {
            id: "t/0".into(),
            dataset: "t".into(),
            split: "test".into(),
            index: 0,
            text: "Steve Jobs founded Apple in California".into(),
            tokens: None,
            gold,
            labels: vec!["location".into(), "organization".into(), "person".into()],
        }
    }

    #[test]
    fn paper_reward_edge_cases() {
        let w = Weights::paper();
        let gold = ex(vec![Entity::new("Steve Jobs", "person"), Entity::new("Apple", "organization")]);
        let perfect = "<think>\nSteve Jobs is a person; Apple is an organization.\n</think>\n{\"entities\": {\"person\": [\"Steve Jobs\"], \"organization\": [\"Apple\"]}}";
        assert_eq!(w.score(perfect, &gold).0, 11.0);
        // half right: P = 1, R = 1/2
        let half = "{\"entities\": {\"person\": [\"Steve Jobs\"]}}";
        assert!((w.score(half, &gold).0 - (10.0 * 2.0 / 3.0 + 1.0)).abs() < 1e-12);
        // a label outside the schema: schema 0
        let (r, v) = w.score("{\"entities\": {\"company\": [\"Apple\"]}}", &gold);
        assert_eq!(r, 0.0);
        assert_eq!(v.iter().find(|c| c.0 == Component::Schema).unwrap().1, 0.0);
        // empty gold, empty answer: F1 is 0, only schema pays (the paper's loophole)
        let none = ex(vec![]);
        let (r, v) = w.score("{\"entities\": {}}", &none);
        assert_eq!(r, 1.0);
        assert_eq!(v.iter().find(|c| c.0 == Component::EmptyOk).unwrap().1, 1.0);
        // a truncated rationale: nothing parses
        assert_eq!(w.score("<think>\nSteve Jobs is", &gold).0, 0.0);
    }

    fn component(v: &[(Component, f64)], c: Component) -> f64 {
        v.iter().find(|k| k.0 == c).unwrap().1
    }

    #[test]
    fn paper_reward_on_odd_shapes() {
        let w = Weights::paper();
        let gold = ex(vec![Entity::new("Steve Jobs", "person"), Entity::new("Apple", "organization")]);
        // valid JSON that is no object: `from_completion` reads it as `{}`, so the schema point is earned
        for text in ["[1,2]", "\"x\"", "{\"x\": 1}"] {
            let (r, v) = w.score(text, &gold);
            assert_eq!((r, component(&v, Component::Schema)), (1.0, 1.0), "{text}");
        }
        // a label whose spans are not iterable makes `from_completion` raise: 0, whatever else is right
        let (r, v) = w.score("{\"entities\": {\"person\": [\"Steve Jobs\"], \"organization\": null}}", &gold);
        assert_eq!((r, component(&v, Component::F1)), (0.0, 0.0));
        assert_eq!(w.score("{\"entities\": [\"Steve Jobs\"]}", &gold).0, 0.0);
        // nested answer tags: `json.loads(ans)` fails (no schema point), `from_completion(ans)` strips
        // the rest and finds the entities (full F1)
        let nested = "<answer><answer>{\"entities\": {\"person\": [\"Steve Jobs\"], \"organization\": [\"Apple\"]}}</answer>";
        let (r, v) = w.score(nested, &gold);
        assert_eq!((r, component(&v, Component::F1), component(&v, Component::Schema)), (10.0, 1.0, 0.0));
    }

    #[test]
    fn our_components() {
        let gold = ex(vec![Entity::new("Apple", "organization")]);
        let text = "<think>\nApple is a company.\n</think>\n{\"entities\": {\"organization\": [\"Apple\", \"Microsoft\"]}}";
        let answer = Answer::read(text);
        assert_eq!(Component::Format.value(text, &answer, &gold), 1.0);
        // Microsoft is in neither the sentence nor the rationale
        assert_eq!(Component::Grounded.value(text, &answer, &gold), 0.5);
        let bare = "{\"entities\": {\"organization\": [\"Apple\"]}}";
        assert_eq!(Component::Format.value(bare, &Answer::read(bare), &gold), 0.0);
        assert_eq!(Component::Grounded.value(bare, &Answer::read(bare), &gold), 0.0, "no rationale: not grounded in it");
    }

    #[test]
    fn weights_parse_and_print() {
        let w: Weights = "f1=10, schema=1,grounded=0".parse().unwrap();
        assert_eq!(w, Weights::paper());
        assert_eq!(w.to_string(), "f1=10,schema=1");
        assert!("f1=x".parse::<Weights>().unwrap_err().contains("not a number"));
        assert!("bleu=1".parse::<Weights>().unwrap_err().contains("unknown component"));
        assert!("f1=0".parse::<Weights>().is_err());
    }
}
