//! Stage 1 — CoT generation: a teacher (any [`Engine`]) sees a training sentence, its schema and its
//! gold entities and writes a rationale; named validation checks keep or reject it; kept examples
//! are NER-CoT records (`{guid, dataset, sentence, schema, cot, entities}`), the shape of the
//! paper's published file, so both are read by [`read_records`].
//!
//! The paper's teacher prompt (DeepSeek-R1) and its consistency-judge prompt (Qwen3-32B, keep ≥ 9)
//! are unpublished; [`TEACHER_PROMPT`] and [`JUDGE_PROMPT`] are ours.
use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::data::{Entity, Example};
use crate::engine::{Engine, Finish, GenOutput, GenRequest, Sampling};
use crate::prompt::grammar::Decoding;
use crate::prompt::{self, Message, Rendered, Template};
use crate::score::normalize;
use crate::{parse, util, Error, Result};

/// A regex compiled once per process.
macro_rules! static_regex {
    ($re:expr) => {{
        static RE: std::sync::OnceLock<regex::Regex> = std::sync::OnceLock::new();
        RE.get_or_init(|| regex::Regex::new($re).expect("static regex"))
    }};
}

/// Ours (the paper's is unpublished). The gold answer is shown; the teacher explains it. The
/// instruction and a worked example come first so that every prompt shares them (the engine decodes
/// a shared prefix once); the example sentence is made up, from no corpus of the registry.
/// Each gold entity gets one sentence "\"ENTITY\" is a TYPE, because …": on the same 50
/// entity-bearing CoNLL-2003/WNUT-17 sentences the 1.5B teacher had 41 kept against 23 under the
/// earlier free-form instruction (`assets/cot/teacher-v1.txt`, this constant until then), whose
/// rationales often never named a type (`results/cot/ab-prompt-*`).
pub const TEACHER_PROMPT: &str = include_str!("../../assets/cot/teacher-typed.txt");

/// Ours. The judge sees the example and the rationale and answers with one number.
pub const JUDGE_PROMPT: &str = "Rate a reasoning chain written for a named entity recognition example.

Sentence:
{{SENTENCE}}

Entity types (schema): {{SCHEMA}}

Correct entities:
{{GOLD}}

Reasoning:
{{COT}}

Score from 0 to 10 how logically coherent the reasoning is, how accurate it is about the sentence, and how consistent it is with the correct entities (10 = fully consistent; 0 = contradicts them). Answer with the number only.";

/// One NER-CoT record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CotRecord {
    pub guid: String,
    /// the source corpus (`null` in the published file)
    #[serde(default)]
    pub dataset: Option<String>,
    pub sentence: String,
    pub schema: Vec<String>,
    pub cot: Option<String>,
    pub entities: Vec<Entity>,
}

impl CotRecord {
    /// The record as a training example (its schema and entities as gold).
    pub fn example(&self) -> Example {
        Example {
            id: self.guid.clone(),
            dataset: self.dataset.clone().unwrap_or_default(),
            split: "train".into(),
            index: 0,
            text: self.sentence.clone(),
            tokens: None,
            gold: self.entities.clone(),
            labels: self.schema.clone(),
        }
    }
}

/// A rejected example and why (the check's name and what it found).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub guid: String,
    pub dataset: String,
    pub check: Check,
    pub detail: String,
    /// the teacher's raw text
    pub output: String,
}

/// The validation checks, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Check {
    /// the teacher ran into `--max-cot-tokens` (the rationale is cut off)
    Truncated,
    /// nothing left after trimming
    Empty,
    /// shorter than `--min-cot-chars` or longer than `--max-cot-chars`
    Length,
    /// a gold entity string does not occur in the rationale
    MissingGold,
    /// no clause of the rationale gives a gold entity its gold type (see [`untyped_gold`])
    UntypedGold,
    /// the rationale contains an answer (JSON / `<answer>`) that is not the gold answer
    AnswerDisagrees,
    /// the rationale presents a string the gold omits as an entity (heuristic, see [`extra_entity`])
    ExtraEntity,
    /// the judge's score is below `--min-score`
    JudgeLow,
    /// the judge's reply holds no score 0-10
    JudgeUnparsable,
}

impl Check {
    pub const ALL: [Check; 9] = [
        Check::Truncated,
        Check::Empty,
        Check::Length,
        Check::MissingGold,
        Check::UntypedGold,
        Check::AnswerDisagrees,
        Check::ExtraEntity,
        Check::JudgeLow,
        Check::JudgeUnparsable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Check::Truncated => "truncated",
            Check::Empty => "empty",
            Check::Length => "length",
            Check::MissingGold => "missing_gold",
            Check::UntypedGold => "untyped_gold",
            Check::AnswerDisagrees => "answer_disagrees",
            Check::ExtraEntity => "extra_entity",
            Check::JudgeLow => "judge_low",
            Check::JudgeUnparsable => "judge_unparsable",
        }
    }
}

/// Bounds of the length check.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Bounds {
    pub min_chars: usize,
    pub max_chars: usize,
}

impl Default for Bounds {
    fn default() -> Self {
        Bounds { min_chars: 40, max_chars: 4000 }
    }
}

fn gold_lines(gold: &[Entity]) -> String {
    if gold.is_empty() {
        return "none (the sentence has no entity of these types)".into();
    }
    gold.iter().map(|e| format!("\"{}\": {}", e.text, e.label)).collect::<Vec<_>>().join("; ")
}

fn fill(template: &str, ex: &Example) -> String {
    template
        .replace("{{SENTENCE}}", &ex.text)
        .replace("{{SCHEMA}}", &prompt::json_list(&ex.labels))
        .replace("{{GOLD}}", &gold_lines(&ex.gold))
}

fn wrap(user: String, template: Template, cue: &str) -> Rendered {
    let text = match template {
        Template::Model => None,
        Template::Qwen => Some(prompt::qwen_wrap(&user)),
        Template::Completion => Some(format!("{user}\n{cue}:")),
    };
    Rendered { messages: vec![Message { role: "user".into(), content: user }], text }
}

/// What [`TEACHER_PROMPT`] asks instead of "no JSON answer" under `--decoding json|schema`: the
/// rationale, `</think>`, then the answer, which the grammar constrains and validation compares to
/// gold.
const ANSWER_RULE: &str = "Write one paragraph of at most 100 words, then </think>, then the correct entities as JSON: {\"entities\": {\"type\": [\"entity\", ...]}}.";
const NO_ANSWER_RULE: &str = "Do not write a JSON answer. Write one paragraph of at most 100 words.";
const EXAMPLE_END: &str = "neither is one of the entity types.";
const EXAMPLE_ANSWER: &str = "\n</think>\n{\"entities\": {\"location\": [\"Paris\"], \"organization\": [\"Apple\"], \"person\": [\"Tim Cook\"]}}";

/// The teacher's instruction: [`TEACHER_PROMPT`], or under constrained decoding its variant that
/// ends the rationale with `</think>` and the JSON answer.
pub fn teacher_template(decoding: Decoding) -> String {
    teacher_template_from(TEACHER_PROMPT, decoding)
}

/// [`teacher_template`] from another instruction (`--teacher-prompt`): the constrained variant
/// swaps the same phrases, where the instruction has them.
pub fn teacher_template_from(base: &str, decoding: Decoding) -> String {
    let base = base.trim_end();
    match decoding {
        Decoding::Free => base.to_string(),
        _ => base.replace(NO_ANSWER_RULE, ANSWER_RULE).replace(EXAMPLE_END, &format!("{EXAMPLE_END}{EXAMPLE_ANSWER}")),
    }
}

/// The teacher's prompt for one example.
pub fn teacher_prompt(ex: &Example, template: Template, decoding: Decoding) -> Rendered {
    teacher_prompt_from(TEACHER_PROMPT, ex, template, decoding)
}

/// The teacher's prompt for one example from instruction `base` (with `{{SENTENCE}}`,
/// `{{SCHEMA}}` and `{{GOLD}}` in it).
pub fn teacher_prompt_from(base: &str, ex: &Example, template: Template, decoding: Decoding) -> Rendered {
    wrap(fill(&teacher_template_from(base, decoding), ex), template, "Reasoning")
}

/// Checks an instruction given with `--teacher-prompt` has the three placeholders.
pub fn check_teacher_prompt(text: &str, path: &Path) -> Result<()> {
    let missing: Vec<&str> = ["{{SENTENCE}}", "{{SCHEMA}}", "{{GOLD}}"].into_iter().filter(|p| !text.contains(p)).collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::data(path, 1, format!("a teacher prompt needs the placeholders {{{{SENTENCE}}}}, {{{{SCHEMA}}}} and {{{{GOLD}}}}; this one lacks {}", missing.join(", "))))
    }
}

/// The judge's prompt for one example and rationale.
pub fn judge_prompt(ex: &Example, cot: &str, template: Template) -> Rendered {
    wrap(fill(JUDGE_PROMPT, ex).replace("{{COT}}", cot), template, "Score")
}

/// The judge's score: the first whole number 0-10 in its reply (after any `<think>` block).
pub fn judge_score(reply: &str) -> Option<u8> {
    let text = parse::process_completion(reply);
    static_regex!(r"\b(10|[0-9])(?:\.[0-9]+)?\b").captures(&text).and_then(|c| c[1].parse().ok())
}

/// The rationale in a teacher's output: the API's separate reasoning when asked for, else the text
/// with `<think>` tags dropped (their content kept) and surrounding whitespace trimmed.
pub fn rationale(out: &GenOutput, use_reasoning: bool) -> String {
    if use_reasoning {
        if let Some(r) = &out.reasoning {
            return r.trim().to_string();
        }
    }
    let text = out.text.replace("<think>", "").replace("</think>", "");
    let text = text.trim();
    text.strip_prefix("Reasoning:").unwrap_or(text).trim().to_string()
}

/// Where an answer block starts in a rationale, if it has one.
fn answer_start(cot: &str) -> Option<usize> {
    static_regex!(r#"(?s)```(?:json)?\s*\{|<answer>|\{\s*"entities"\s*:"#).find(cot).map(|m| m.start())
}

/// Words that, in the clause that mentions a candidate, mark it as *not* an entity.
const NEGATIONS: [&str; 14] =
    ["not", "no", "isn't", "isnt", "aren't", "neither", "nor", "none", "excluded", "exclude", "ignore", "ignored", "rather than", "instead of"];

fn clauses(cot: &str) -> Vec<&str> {
    static_regex!(r"\n|[.;!?](?:\s|$)").split(cot).collect()
}

/// Where the first negation word of a normalised, space-padded clause starts.
fn negation_at(c: &str) -> Option<usize> {
    NEGATIONS.iter().filter_map(|n| [format!(" {n} "), format!(" {n},")].iter().filter_map(|p| c.find(p.as_str())).min()).min()
}

/// The words a rationale may name normalised label `l` by: the label, its plural, and the
/// irregular plural or British spelling of the labels that have one ("people" for person, as in
/// "they are both people"; "organisation").
fn label_forms(l: &str) -> Vec<String> {
    let mut forms = vec![l.to_string(), format!("{l}s")];
    let extra: &[&str] = match l {
        "person" => &["people", "persons"],
        "organization" => &["organisation", "organisations"],
        "organisation" => &["organization", "organizations"],
        _ => &[],
    };
    forms.extend(extra.iter().map(|s| s.to_string()));
    forms
}

/// Where, in a normalised, space-padded clause, a form of label `l` first occurs as a word.
fn label_at(c: &str, l: &str) -> Option<usize> {
    label_forms(l).iter().flat_map(|f| [format!(" {f} "), format!(" {f},"), format!("\"{f}\"")]).filter_map(|p| c.find(p.as_str())).min()
}

/// The gold entity no clause types. A clause types `e` when it contains `e`'s text and its label
/// (or a form of it, see `label_forms`), the label coming before any negation word in the clause:
/// "\"EU\" is an organization, not a location" types EU; "\"Peter Blackburn\" is not an entity of
/// the types location, organization or person" does not type Peter Blackburn.
pub fn untyped_gold(cot: &str, ex: &Example) -> Option<String> {
    let cs: Vec<String> = clauses(cot).iter().map(|c| format!(" {} ", normalize(c))).collect();
    ex.gold
        .iter()
        .find(|e| {
            let (t, l) = (normalize(&e.text), normalize(&e.label));
            !cs.iter().any(|c| {
                if !c.contains(&t) {
                    return false;
                }
                let at = label_at(c, &l);
                match (at, negation_at(c)) {
                    (Some(a), Some(n)) => a < n,
                    (Some(_), None) => true,
                    (None, _) => false,
                }
            })
        })
        .map(|e| format!("{}: {}", e.text, e.label))
}

/// The extra-entity heuristic. A clause (a line, or a sentence within one) of the rationale
/// presents `s` as an entity when it quotes `s` ("…", “…” or **…**), `s` occurs in the sentence,
/// `s` is not a gold entity and does not overlap one (neither contains the other), `s` is not a
/// schema label, the clause names a schema label, and the clause has no negation word. Returns the
/// first such string. Cheap and conservative: it misses unquoted claims and may flag a clause
/// that quotes a candidate while naming a label for another reason.
pub fn extra_entity(cot: &str, ex: &Example) -> Option<String> {
    let quoted = static_regex!(r#""([^"\n]{1,80})"|“([^”\n]{1,80})”|\*\*([^*\n]{1,80})\*\*"#);
    let sentence = format!(" {} ", normalize(&ex.text));
    let gold: Vec<String> = ex.gold.iter().map(|e| normalize(&e.text)).collect();
    let labels: Vec<String> = ex.labels.iter().map(|l| normalize(l)).collect();
    for clause in clauses(cot) {
        let c = format!(" {} ", normalize(clause));
        // a label word inside a quoted candidate ("Some people fail …") does not name the label
        let unquoted = format!(" {} ", normalize(&quoted.replace_all(clause, " ")));
        let has_label = labels.iter().any(|l| label_at(&unquoted, l).is_some());
        if !has_label || negation_at(&c).is_some() {
            continue;
        }
        for cap in quoted.captures_iter(clause) {
            let s = cap.get(1).or(cap.get(2)).or(cap.get(3)).map(|m| m.as_str()).unwrap_or("");
            let n = normalize(s);
            if n.is_empty() || labels.contains(&n) || !sentence.contains(&format!(" {n} ")) {
                continue;
            }
            if gold.iter().any(|g| g.contains(&n) || n.contains(g.as_str())) {
                continue;
            }
            return Some(s.to_string());
        }
    }
    None
}

/// Run every check but the judge's on one teacher output. On success returns the rationale to
/// keep (an answer block that agrees with gold is cut off: the SFT target adds the answer itself).
/// `answer_required` (constrained decoding): the output must end in an answer (after the rationale,
/// or an API's content beside its reasoning) equal to gold.
pub fn validate(out: &GenOutput, ex: &Example, bounds: Bounds, use_reasoning: bool, answer_required: bool) -> std::result::Result<String, (Check, String)> {
    if out.finish == Finish::Length {
        return Err((Check::Truncated, format!("{} tokens, the cap", out.gen_tokens)));
    }
    let mut cot = rationale(out, use_reasoning);
    if cot.is_empty() {
        return Err((Check::Empty, String::new()));
    }
    let answer = match answer_start(&cot) {
        Some(at) => {
            let a = cot[at..].to_string();
            cot = cot[..at].trim_end().to_string();
            Some(a)
        }
        None if answer_required => answer_start(&out.text).map(|at| out.text[at..].to_string()),
        None => None,
    };
    match answer {
        Some(a) => {
            let pred = parse::prediction(&a);
            if pred.error.is_some_and(|e| e.is_failure()) || crate::score::to_set(&pred.entities) != crate::score::to_set(&ex.gold) {
                let got: Vec<String> = pred.entities.iter().map(|e| format!("{}: {}", e.text, e.label)).collect();
                return Err((Check::AnswerDisagrees, format!("answer block gives [{}]", got.join(", "))));
            }
            if cot.is_empty() {
                return Err((Check::Empty, "only an answer block".into()));
            }
        }
        None if answer_required => return Err((Check::AnswerDisagrees, "no answer after the rationale (constrained decoding asks for one)".into())),
        None => {}
    }
    let chars = cot.chars().count();
    if chars < bounds.min_chars || chars > bounds.max_chars {
        return Err((Check::Length, format!("{chars} characters, bounds {}..={}", bounds.min_chars, bounds.max_chars)));
    }
    let text = normalize(&cot);
    let missing: Vec<&str> = ex.gold.iter().filter(|e| !text.contains(&normalize(&e.text))).map(|e| e.text.as_str()).collect();
    if !missing.is_empty() {
        return Err((Check::MissingGold, missing.join(" | ")));
    }
    if let Some(s) = untyped_gold(&cot, ex) {
        return Err((Check::UntypedGold, s));
    }
    if let Some(s) = extra_entity(&cot, ex) {
        return Err((Check::ExtraEntity, s));
    }
    Ok(cot)
}

/// [`validate`] on a stored text (a kept rationale, or a rejected output) that the teacher finished
/// normally, as `revalidate` and the checked-in sample's test recheck it.
pub fn validate_stored(text: &str, ex: &Example, bounds: Bounds, answer_required: bool) -> std::result::Result<String, (Check, String)> {
    let out = GenOutput { text: text.into(), reasoning: None, prompt_tokens: 0, gen_tokens: 0, finish: Finish::Stop, latency_ms: 0.0, tokens: Vec::new() };
    validate(&out, ex, bounds, false, answer_required)
}

/// Everything that decides a CoT build (recorded in `<out>.manifest.json`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CotConfig {
    pub teacher: String,
    pub teacher_sha256: String,
    pub engine: String,
    pub template: Template,
    pub sampling: Sampling,
    pub bounds: Bounds,
    pub use_reasoning: bool,
    pub judge: Option<String>,
    pub min_score: u8,
    pub sources: Vec<String>,
    pub split: String,
    pub per_source: Option<usize>,
    pub seed: u64,
    /// `json`/`schema`: the teacher ends with a grammar-constrained answer that must equal gold
    /// (not written when `free`, as builds made before the option)
    #[serde(default, skip_serializing_if = "Decoding::is_free")]
    pub decoding: Decoding,
    /// entity-less sentences are tried only while they stay at most this share of all tried
    /// (None: every sentence, as builds made before the option)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_empty_share: Option<f64>,
    /// the teacher's instruction when not the built-in [`TEACHER_PROMPT`] (`--teacher-prompt`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_prompt: Option<String>,
}

/// The examples still to try, in order, holding back an entity-less one whenever trying it would
/// raise the entity-less share of everything tried (`tried`, of which `tried_empty` had no gold
/// entity) above `cap`. Held-back sentences are tried by a later session once the share allows.
pub fn cap_empty_share<'a>(todo: Vec<&'a Example>, tried: usize, tried_empty: usize, cap: Option<f64>) -> Vec<&'a Example> {
    let Some(cap) = cap else { return todo };
    let (mut n, mut empty) = (tried, tried_empty);
    todo.into_iter()
        .filter(|e| {
            if e.gold.is_empty() {
                if (empty + 1) as f64 > cap * (n + 1) as f64 {
                    return false;
                }
                empty += 1;
            }
            n += 1;
            true
        })
        .collect()
}

/// Sentences tried by the end of a build with a kept target: the `tried` so far (`kept` of them
/// kept) plus those still needed for `wanted` more kept rows at the kept share so far (smoothed,
/// so a build that has kept nothing yet assumes one in two), never more than the `left` untried.
pub fn expected_tries(tried: usize, kept: usize, wanted: usize, left: usize) -> usize {
    let share = (kept as f64 + 1.0) / (tried as f64 + 2.0);
    tried + left.min((wanted as f64 / share).ceil() as usize)
}

/// One working session on a build.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CotSession {
    pub command: String,
    pub git_commit: Option<String>,
    pub start: String,
    pub end: Option<String>,
    pub kept: usize,
    pub rejected: usize,
    pub gen_tokens: usize,
    pub seconds: f64,
    /// kept + rejected per hour
    pub rationales_per_hour: f64,
    /// the teacher's instruction in this session (absent in sessions made before it was recorded:
    /// the built-in one of their commit)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub teacher_prompt: Option<String>,
    /// the machine this session ran on (absent in sessions made before it was recorded)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub machine: Option<crate::run::Machine>,
    /// the teacher engine's settings in this session (threads, batch, ...; absent in sessions made
    /// before they were recorded)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub settings: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CotManifest {
    pub config: CotConfig,
    pub teacher_info: crate::engine::EngineInfo,
    pub machine: crate::run::Machine,
    pub sessions: Vec<CotSession>,
    /// `rner cot revalidate` passes over the set, oldest first
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revalidations: Vec<Revalidation>,
}

/// One `rner cot revalidate` pass: every decided row checked again under the rules of its commit.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Revalidation {
    pub command: String,
    pub git_commit: Option<String>,
    pub date: String,
    /// rows checked again (kept rows, and rejects whose check can be rerun from the stored text)
    pub rechecked: usize,
    /// rejects that pass now, appended to the kept file
    pub rejected_to_kept: usize,
    /// kept rows that fail now, moved to the rejected file
    pub kept_to_rejected: usize,
    /// rejects that still fail, now under another check or detail
    pub reasons_changed: usize,
}

/// Holds a build's lock file (`X.lock`) for as long as it lives: one build or revalidation of a
/// set at a time (the lock is the OS's, so a crashed holder leaves nothing to clean up).
pub struct SetLock {
    _file: std::fs::File,
}

impl SetLock {
    pub fn take(out: &Path) -> Result<SetLock> {
        let path = sibling(out, "lock");
        let f = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(|e| Error::io(&path, e))?;
        match f.try_lock() {
            Ok(()) => Ok(SetLock { _file: f }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Run {
                dir: path,
                msg: format!("another `rner cot` process is building or revalidating {} now: wait for it, or stop it", out.display()),
            }),
            Err(std::fs::TryLockError::Error(e)) => Err(Error::io(&path, e)),
        }
    }
}

/// Check every decided row of the set at `out` again under the current rules, as a rule change
/// would: kept rationales (their text as the teacher's output), and rejected outputs whose check
/// can be rerun from the stored text (not `truncated`, which needs the finish reason, nor the
/// judge's). `examples` gives each rejected row's sentence and gold by guid; a reject whose guid it
/// lacks stays as it is. Both files are rewritten atomically (kept rows keep their order, newly
/// kept ones come last) and the pass is recorded in the manifest.
pub fn revalidate(out: &Path, examples: &[Example], command: &str) -> Result<Revalidation> {
    let _lock = SetLock::take(out)?;
    let manifest_path = sibling(out, "manifest.json");
    let rejected_path = sibling(out, "rejected.jsonl");
    let mut manifest: CotManifest = util::read_json(&manifest_path)?;
    let cfg = &manifest.config;
    if cfg.use_reasoning {
        return Err(Error::Run { dir: manifest_path, msg: "this set took an API's reasoning as the rationale, which the rejected file does not store: it cannot be revalidated".into() });
    }
    let answer_required = cfg.decoding != Decoding::Free;
    let by_id: std::collections::HashMap<&str, &Example> = examples.iter().map(|e| (e.id.as_str(), e)).collect();
    let mut r = Revalidation { command: command.into(), git_commit: util::git_commit(Path::new(env!("CARGO_MANIFEST_DIR"))), date: util::now(), ..Default::default() };
    let (mut kept, mut rejected) = (Vec::new(), Vec::new());
    let records = read_records(out)?;
    // a pass cut short between its writes can leave a row in both files: the kept one decides
    let kept_ids: HashSet<String> = records.iter().map(|k| k.guid.clone()).collect();
    for rec in records {
        r.rechecked += 1;
        let cot = rec.cot.clone().unwrap_or_default();
        // the kept text had its answer block cut off (and checked) when it was kept
        match validate_stored(&cot, &rec.example(), cfg.bounds, false) {
            Ok(_) => kept.push(rec),
            Err((check, detail)) => {
                r.kept_to_rejected += 1;
                // as the teacher's output would read, so that a later pass checks it the same way
                let output = if answer_required { format!("{cot}\n</think>\n{}", prompt::answer_json(&rec.entities)) } else { cot };
                rejected.push(Rejected { guid: rec.guid, dataset: rec.dataset.unwrap_or_default(), check, detail, output });
            }
        }
    }
    let mut newly_kept = Vec::new();
    // newly kept rows stay in the rejected file until the kept file holds them
    let mut interim = Vec::new();
    for rej in util::read_jsonl::<Rejected>(&rejected_path)? {
        if kept_ids.contains(&rej.guid) {
            continue;
        }
        let ex = by_id.get(rej.guid.as_str());
        let rerun = !matches!(rej.check, Check::Truncated | Check::JudgeLow | Check::JudgeUnparsable);
        let (Some(ex), true) = (ex, rerun) else {
            rejected.push(rej);
            continue;
        };
        r.rechecked += 1;
        match validate_stored(&rej.output, ex, cfg.bounds, answer_required) {
            Ok(cot) if cfg.judge.is_none() => {
                r.rejected_to_kept += 1;
                interim.push(rej);
                newly_kept.push(CotRecord { guid: ex.id.clone(), dataset: Some(ex.dataset.clone()), sentence: ex.text.clone(), schema: ex.labels.clone(), cot: Some(cot), entities: ex.gold.clone() });
            }
            // passing the rules is not enough where a judge decides next: left as it was
            Ok(_) => rejected.push(rej),
            Err((check, detail)) => {
                r.reasons_changed += usize::from(check != rej.check || detail != rej.detail);
                rejected.push(Rejected { check, detail, ..rej });
            }
        }
    }
    kept.extend(newly_kept);
    // Three writes, so that a crash between any two loses no row: the rejected file gains the
    // rows leaving the kept file (still holding those about to be kept), then the kept file is
    // written, then the rejected file loses the rows now kept. A row left in both files by a
    // crash is mended by the next pass (the kept copy decides).
    let with_interim: Vec<Rejected> = rejected.iter().cloned().chain(interim).collect();
    util::write_jsonl(&rejected_path, &with_interim)?;
    util::write_jsonl(out, &kept)?;
    util::write_jsonl(&rejected_path, &rejected)?;
    manifest.revalidations.push(r.clone());
    util::write_json(&manifest_path, &manifest)?;
    Ok(r)
}

/// The files of a build: `X.jsonl` (kept), `X.rejected.jsonl`, `X.manifest.json`, `X.stats.json`.
pub fn sibling(out: &Path, suffix: &str) -> PathBuf {
    let stem = out.file_name().and_then(|n| n.to_str()).unwrap_or("cot.jsonl");
    let stem = stem.strip_suffix(".jsonl").unwrap_or(stem);
    out.with_file_name(format!("{stem}.{suffix}"))
}

/// The sentence ids a build at `out` has decided (kept or rejected), and how many it kept: what a
/// resumed build skips.
pub fn decided(out: &Path) -> Result<(HashSet<String>, usize)> {
    let mut done: HashSet<String> = HashSet::new();
    let mut kept = 0;
    if out.exists() {
        let records = read_records(out)?;
        kept = records.len();
        done.extend(records.into_iter().map(|r| r.guid));
    }
    done.extend(util::read_jsonl::<Rejected>(&sibling(out, "rejected.jsonl"))?.into_iter().map(|r| r.guid));
    Ok((done, kept))
}

/// NER-CoT records from a JSONL file (ours or the published one), naming the line of a bad record.
pub fn read_records(path: &Path) -> Result<Vec<CotRecord>> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    let mut out = Vec::new();
    let n = text.lines().count();
    for (i, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        match serde_json::from_str::<CotRecord>(line) {
            Ok(r) => out.push(r),
            // a line cut by a crash mid-write is the last one: drop it
            Err(_) if i + 1 == n && !text.ends_with('\n') => break,
            Err(e) => return Err(Error::data(path, i + 1, format!("not a NER-CoT record: {e}"))),
        }
    }
    Ok(out)
}

/// What a call did.
#[derive(Debug, Clone, Default)]
pub struct CotOutcome {
    pub kept: usize,
    pub rejected: usize,
    pub skipped: usize,
    /// entity-less sentences left untried by `max_empty_share`
    pub held_back: usize,
    pub interrupted: bool,
    /// kept rows in the set after this session, earlier sessions included
    pub kept_total: usize,
}

/// Build (or resume) a CoT set at `out` from `examples`: teacher requests in chunks of `chunk`
/// (each chunk one batched call), each output validated, then judged if a judge is given, and
/// appended to the kept or rejected file as it is decided. With `until_kept`, the build stops once
/// the set (earlier sessions included) holds that many kept rows; chunks shrink to the rows still
/// wanted, so it never holds more.
#[allow(clippy::too_many_arguments)]
pub fn build(
    cfg: &CotConfig,
    teacher: &mut dyn Engine,
    mut judge: Option<&mut dyn Engine>,
    examples: &[Example],
    out: &Path,
    chunk: usize,
    until_kept: Option<usize>,
    command: &str,
    progress: bool,
) -> Result<CotOutcome> {
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let _lock = SetLock::take(out)?;
    let rejected_path = sibling(out, "rejected.jsonl");
    let manifest_path = sibling(out, "manifest.json");
    let (done, kept_before) = decided(out)?;
    let mut manifest: CotManifest = if manifest_path.exists() {
        let m: CotManifest = util::read_json(&manifest_path)?;
        if m.config.decoding != cfg.decoding {
            return Err(Error::Run {
                dir: manifest_path.clone(),
                msg: format!("this set was built with --decoding {}, not {}: pass another --out", m.config.decoding.name(), cfg.decoding.name()),
            });
        }
        // the selection rule in force now (each session's command shows the one it used)
        let mut m = m;
        m.config.max_empty_share = cfg.max_empty_share;
        m.config.teacher_prompt = cfg.teacher_prompt.clone();
        m
    } else {
        CotManifest { config: cfg.clone(), teacher_info: teacher.info().clone(), machine: crate::run::Machine::this(), sessions: Vec::new(), revalidations: Vec::new() }
    };
    let mut session = CotSession {
        command: command.into(),
        git_commit: util::git_commit(Path::new(env!("CARGO_MANIFEST_DIR"))),
        start: util::now(),
        end: None,
        kept: 0,
        rejected: 0,
        gen_tokens: 0,
        seconds: 0.0,
        rationales_per_hour: 0.0,
        teacher_prompt: Some(cfg.teacher_prompt.as_deref().unwrap_or(TEACHER_PROMPT).trim_end().to_string()),
        machine: Some(crate::run::Machine::this()),
        settings: Some(teacher.info().settings.clone()),
    };
    manifest.sessions.push(session.clone());
    util::write_json(&manifest_path, &manifest)?;
    let open = |p: &Path| std::fs::OpenOptions::new().create(true).append(true).open(p).map_err(|e| Error::io(p, e));
    let (mut kept_file, mut rej_file) = (open(out)?, open(&rejected_path)?);
    let todo: Vec<&Example> = examples.iter().filter(|e| !done.contains(&e.id)).collect();
    let skipped = examples.len() - todo.len();
    let tried_empty = examples.iter().filter(|e| e.gold.is_empty() && done.contains(&e.id)).count();
    let n_todo = todo.len();
    let todo = cap_empty_share(todo, skipped, tried_empty, cfg.max_empty_share);
    let mut outcome = CotOutcome { skipped, held_back: n_todo - todo.len(), ..Default::default() };
    let bar = crate::util::progress(progress, "cot", "examples", skipped + todo.len(), skipped);
    let t0 = Instant::now();
    let mut rest: &[&Example] = &todo;
    while !rest.is_empty() {
        // with a kept target, ask no more than the rows still wanted, so the set never passes it
        let wanted = until_kept.map_or(usize::MAX, |n| n.saturating_sub(kept_before + outcome.kept));
        if wanted == 0 {
            break;
        }
        if let (Some(b), Some(_)) = (&bar, until_kept) {
            // the bar's end (and so its ETA) is the sentences the kept share so far says are needed
            let tried = skipped + outcome.kept + outcome.rejected;
            b.set_length(expected_tries(tried, kept_before + outcome.kept, wanted, rest.len()) as u64);
        }
        let (part, tail) = rest.split_at(chunk.max(1).min(wanted).min(rest.len()));
        rest = tail;
        let reqs: Vec<GenRequest> = part
            .iter()
            .map(|e| GenRequest {
                prompt: teacher_prompt_from(cfg.teacher_prompt.as_deref().unwrap_or(TEACHER_PROMPT), e, cfg.template, cfg.decoding),
                sampling: Sampling { constraint: prompt::grammar::constraint(cfg.decoding, e, true), ..cfg.sampling.clone() },
            })
            .collect();
        // decided now (no judge) or after judging
        let mut candidates: Vec<(usize, String, GenOutput)> = Vec::new();
        let mut decide = |i: usize, result: std::result::Result<String, (Check, String)>, raw: &GenOutput, s: &mut CotSession, o: &mut CotOutcome| -> Result<()> {
            let ex = part[i];
            match result {
                Ok(cot) => {
                    let rec = CotRecord { guid: ex.id.clone(), dataset: Some(ex.dataset.clone()), sentence: ex.text.clone(), schema: ex.labels.clone(), cot: Some(cot), entities: ex.gold.clone() };
                    append(&mut kept_file, out, &rec)?;
                    s.kept += 1;
                    o.kept += 1;
                }
                Err((check, detail)) => {
                    let rej = Rejected { guid: ex.id.clone(), dataset: ex.dataset.clone(), check, detail, output: raw.text.clone() };
                    append(&mut rej_file, &rejected_path, &rej)?;
                    s.rejected += 1;
                    o.rejected += 1;
                }
            }
            if let Some(b) = &bar {
                b.inc(1);
                b.set_message(format!("kept {} rejected {}", s.kept, s.rejected));
            }
            Ok(())
        };
        let judging = judge.is_some();
        let result = teacher.generate_each(&reqs, &mut |i, o| {
            session.gen_tokens += o.gen_tokens;
            match validate(&o, part[i], cfg.bounds, cfg.use_reasoning, cfg.decoding != Decoding::Free) {
                Ok(cot) if judging => candidates.push((i, cot, o)),
                r => decide(i, r, &o, &mut session, &mut outcome)?,
            }
            if crate::run::INTERRUPTED.load(Ordering::SeqCst) {
                return Err(Error::Interrupted);
            }
            Ok(())
        });
        let stop = match result {
            Ok(()) => false,
            Err(Error::Interrupted) => true,
            Err(e) => {
                finish(&mut manifest, session, t0, &manifest_path)?;
                return Err(e);
            }
        };
        if let (Some(j), false) = (judge.as_deref_mut(), stop) {
            let jreqs: Vec<GenRequest> = candidates
                .iter()
                .map(|(i, cot, _)| GenRequest {
                    prompt: judge_prompt(part[*i], cot, cfg.template),
                    sampling: Sampling { max_tokens: 512, temperature: 0.0, ..Sampling::default() },
                })
                .collect();
            let replies = j.generate(&jreqs)?;
            for ((i, cot, raw), reply) in candidates.drain(..).zip(replies) {
                let r = match judge_score(&reply.text) {
                    Some(s) if s >= cfg.min_score => Ok(cot),
                    Some(s) => Err((Check::JudgeLow, format!("score {s} < {}", cfg.min_score))),
                    None => Err((Check::JudgeUnparsable, reply.text.chars().take(200).collect())),
                };
                decide(i, r, &raw, &mut session, &mut outcome)?;
            }
        }
        if stop {
            outcome.interrupted = true;
            break;
        }
        let mut snapshot = session.clone();
        close(&mut snapshot, t0);
        snapshot.end = None;
        *manifest.sessions.last_mut().expect("pushed above") = snapshot;
        util::write_json(&manifest_path, &manifest)?;
    }
    if let Some(b) = &bar {
        b.finish();
    }
    outcome.kept_total = kept_before + outcome.kept;
    finish(&mut manifest, session, t0, &manifest_path)?;
    Ok(outcome)
}

fn close(s: &mut CotSession, t0: Instant) {
    s.seconds = t0.elapsed().as_secs_f64();
    s.end = Some(util::now());
    if s.seconds > 0.0 {
        s.rationales_per_hour = (s.kept + s.rejected) as f64 / s.seconds * 3600.0;
    }
}

fn finish(m: &mut CotManifest, mut s: CotSession, t0: Instant, path: &Path) -> Result<()> {
    close(&mut s, t0);
    *m.sessions.last_mut().expect("pushed above") = s;
    util::write_json(path, m)
}

/// Append one JSON line and flush it.
fn append(file: &mut std::fs::File, path: &Path, v: &impl Serialize) -> Result<()> {
    let mut line = serde_json::to_string(v).map_err(|e| Error::Json { path: path.into(), err: e })?;
    line.push('\n');
    file.write_all(line.as_bytes()).map_err(|e| Error::io(path, e))?;
    file.flush().map_err(|e| Error::io(path, e))
}

/// The statistics of a build, from its files.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct CotStats {
    pub kept: usize,
    pub rejected: usize,
    pub kept_rate: f64,
    /// check name → rejects
    pub rejects_by_check: BTreeMap<String, usize>,
    /// source → (kept, rejected)
    pub by_source: BTreeMap<String, (usize, usize)>,
    /// words per kept rationale: min, 25th, median, 75th percentile, max, mean
    pub words: [f64; 6],
    /// label → gold mentions in kept examples
    pub label_mentions: BTreeMap<String, usize>,
    /// schema labels of the sources that no kept example mentions
    pub labels_unseen: Vec<String>,
    pub kept_with_no_entity: usize,
}

/// Words per kept rationale (for plots and stats).
pub fn rationale_words(kept: &[CotRecord]) -> Vec<usize> {
    kept.iter().map(|r| r.cot.as_deref().unwrap_or("").split_whitespace().count()).collect()
}

/// Statistics of the kept and rejected files of a build.
pub fn stats(out: &Path) -> Result<(CotStats, Vec<CotRecord>)> {
    let kept = read_records(out)?;
    let rejected: Vec<Rejected> = util::read_jsonl(&sibling(out, "rejected.jsonl"))?;
    let mut s = CotStats { kept: kept.len(), rejected: rejected.len(), ..Default::default() };
    s.kept_rate = kept.len() as f64 / (kept.len() + rejected.len()).max(1) as f64;
    for c in Check::ALL {
        s.rejects_by_check.insert(c.name().into(), 0);
    }
    for r in &rejected {
        *s.rejects_by_check.entry(r.check.name().into()).or_default() += 1;
        s.by_source.entry(r.dataset.clone()).or_default().1 += 1;
    }
    let mut schema: std::collections::BTreeSet<String> = Default::default();
    for r in &kept {
        s.by_source.entry(r.dataset.clone().unwrap_or_default()).or_default().0 += 1;
        schema.extend(r.schema.iter().cloned());
        for e in &r.entities {
            *s.label_mentions.entry(e.label.clone()).or_default() += 1;
        }
        s.kept_with_no_entity += usize::from(r.entities.is_empty());
    }
    s.labels_unseen = schema.into_iter().filter(|l| !s.label_mentions.contains_key(l)).collect();
    let mut w: Vec<usize> = rationale_words(&kept);
    w.sort_unstable();
    if !w.is_empty() {
        let q = |p: f64| w[((w.len() - 1) as f64 * p).round() as usize] as f64;
        s.words = [q(0.0), q(0.25), q(0.5), q(0.75), q(1.0), w.iter().sum::<usize>() as f64 / w.len() as f64];
    }
    Ok((s, kept))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex() -> Example {
        Example {
            id: "conll2003/train/0".into(),
            dataset: "conll2003".into(),
            split: "train".into(),
            index: 0,
            text: "EU rejects German call to boycott British lamb .".into(),
            tokens: None,
            gold: vec![Entity { text: "EU".into(), label: "organization".into(), span: None }],
            labels: vec!["location".into(), "organization".into(), "person".into()],
        }
    }

    fn out(text: &str) -> GenOutput {
        GenOutput { text: text.into(), reasoning: None, prompt_tokens: 10, gen_tokens: 20, finish: Finish::Stop, latency_ms: 0.0, tokens: Vec::new() }
    }

    const GOOD: &str = "Candidates: \"EU\", \"German\" and \"British\". \"EU\" is the European Union, a political and economic union, so it is an organization. \"German\" and \"British\" are adjectives of nationality, not entities of the schema.";

    #[test]
    fn a_kept_target_expects_the_tries_its_kept_share_needs() {
        // 5,000 tried, 1,999 kept: one more kept row needs about 2.5 more tries
        assert_eq!(expected_tries(5000, 1999, 1, 10_000), 5003);
        // a quarter kept so far: 100 more kept rows need about 400 tries
        assert_eq!(expected_tries(398, 99, 100, 17_000), 398 + 400);
        // never more than the sentences left, and a fresh build assumes one kept in two
        assert_eq!(expected_tries(100, 10, 1000, 50), 150);
        assert_eq!(expected_tries(0, 0, 10, 1000), 20);
    }

    #[test]
    fn the_empty_share_cap_holds_back_entity_less_sentences_until_the_share_allows() {
        let mk = |i: usize, has: bool| {
            let mut e = ex();
            e.id = format!("s{i}");
            if !has {
                e.gold.clear();
            }
            e
        };
        // pattern: empty, empty, entity, empty, entity, entity, empty, empty
        let all: Vec<Example> = [false, false, true, false, true, true, false, false].iter().enumerate().map(|(i, &h)| mk(i, h)).collect();
        let ids = |v: Vec<&Example>| v.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
        let refs = || all.iter().collect::<Vec<_>>();
        assert_eq!(ids(cap_empty_share(refs(), 0, 0, None)).len(), 8);
        // share 0.5 from scratch: s0 (1/1 > 0.5) held, s1 held, s2 kept (0/1), s3 (1/2) kept,
        // s4, s5 kept (1/4), s6 (2/5) kept, s7 (3/6) kept
        assert_eq!(ids(cap_empty_share(refs(), 0, 0, Some(0.5))), ["s2", "s3", "s4", "s5", "s6", "s7"]);
        // earlier sessions count: 10 tried, 6 of them empty, so no empty one fits until 3 entity ones
        assert_eq!(ids(cap_empty_share(refs(), 10, 6, Some(0.5))), ["s2", "s4", "s5", "s6"]);
        // 0 keeps only sentences with entities; 1 keeps all
        assert_eq!(ids(cap_empty_share(refs(), 0, 0, Some(0.0))), ["s2", "s4", "s5"]);
        assert_eq!(cap_empty_share(refs(), 3, 3, Some(1.0)).len(), 8);
    }

    #[test]
    fn a_faithful_rationale_is_kept() {
        assert_eq!(validate(&out(GOOD), &ex(), Bounds::default(), false, false).unwrap(), GOOD);
        // an agreeing answer block is cut off, the rest kept
        let with = format!("{GOOD}\n```json\n{{\"entities\": {{\"organization\": [\"EU\"]}}}}\n```");
        assert_eq!(validate(&out(&with), &ex(), Bounds::default(), false, false).unwrap(), GOOD);
    }

    #[test]
    fn each_check_rejects_what_it_names() {
        let b = Bounds::default();
        let check = |o: GenOutput| validate(&o, &ex(), b, false, false).unwrap_err().0;
        let mut cut = out(GOOD);
        cut.finish = Finish::Length;
        assert_eq!(check(cut), Check::Truncated);
        assert_eq!(check(out("  \n ")), Check::Empty);
        assert_eq!(check(out("EU is an org.")), Check::Length);
        assert_eq!(check(out(&"EU is an organization. ".repeat(300))), Check::Length);
        assert_eq!(check(out("The sentence mentions a union of countries, which is an organization of the schema.")), Check::MissingGold);
        assert_eq!(check(out("\"EU\" is a proper noun, not an entity of the types location, organization or person.")), Check::UntypedGold);
        assert_eq!(check(out("\"EU\" is the European Union. It is mentioned first in the sentence here.")), Check::UntypedGold);
        let wrong = format!("{GOOD}\n{{\"entities\": {{\"location\": [\"EU\"]}}}}");
        assert_eq!(check(out(&wrong)), Check::AnswerDisagrees);
        let extra = "\"EU\" is an organization. \"British\" refers to Britain, so it is a location.";
        let (c, detail) = validate(&out(extra), &ex(), b, false, false).unwrap_err();
        assert_eq!((c, detail.as_str()), (Check::ExtraEntity, "British"));
        // the same candidate, negated, is fine
        let negated = "\"EU\" is an organization. \"British\" is not a location here, only an adjective.";
        assert!(validate(&out(negated), &ex(), b, false, false).is_ok());
        // irregular plurals and British spellings name the label too
        let mut two = ex();
        two.text = "Sandrine Testud beat Ai Sugiyama at the EU open .".into();
        two.gold = vec![Entity::new("Sandrine Testud", "person"), Entity::new("Ai Sugiyama", "person"), Entity::new("EU", "organization")];
        let people = "The sentence reports a tennis match. \"Sandrine Testud\" and \"Ai Sugiyama\" are the players, so they are both people. \"EU\" is an organisation.";
        assert!(validate(&out(people), &two, b, false, false).is_ok());
        let unnamed = "\"Sandrine Testud\" and \"Ai Sugiyama\" are the players, both individuals. \"EU\" is an organisation.";
        assert_eq!(validate(&out(unnamed), &two, b, false, false).unwrap_err(), (Check::UntypedGold, "Sandrine Testud: person".into()));
        // and a clause naming a label through such a form can present an extra entity
        let extra_people = "\"Sandrine Testud\", \"Ai Sugiyama\" and \"tennis\" are people. \"EU\" is an organisation.";
        let mut three = two.clone();
        three.text = "Sandrine Testud beat Ai Sugiyama at the EU tennis open .".into();
        assert_eq!(validate(&out(extra_people), &three, b, false, false).unwrap_err(), (Check::ExtraEntity, "tennis".into()));
        // but a label word inside the quoted candidate itself does not
        let mut four = two.clone();
        four.text = "Some people say Sandrine Testud beat Ai Sugiyama at the EU open .".into();
        let inside = format!("{people} \"Some people say\" is an opinion, without a type.");
        assert!(validate(&out(&inside), &four, b, false, false).is_ok());
    }

    #[test]
    fn reasoning_from_an_api_can_be_the_rationale() {
        let mut o = out("{\"entities\": {\"organization\": [\"EU\"]}}");
        o.reasoning = Some(GOOD.into());
        assert_eq!(validate(&o, &ex(), Bounds::default(), true, false).unwrap(), GOOD);
        assert_eq!(validate(&o, &ex(), Bounds::default(), false, false).unwrap_err().0, Check::Empty);
    }

    #[test]
    fn constrained_decoding_requires_an_answer_equal_to_gold() {
        let b = Bounds::default();
        let answered = format!("{GOOD}\n</think>\n{{\"entities\": {{\"organization\": [\"EU\"]}}}}");
        assert_eq!(validate(&out(&answered), &ex(), b, false, true).unwrap(), GOOD);
        // no answer: fine when free, rejected when the answer is required
        assert!(validate(&out(GOOD), &ex(), b, false, false).is_ok());
        let (c, detail) = validate(&out(GOOD), &ex(), b, false, true).unwrap_err();
        assert_eq!(c, Check::AnswerDisagrees);
        assert!(detail.contains("no answer"), "{detail}");
        let wrong = format!("{GOOD}\n</think>\n{{\"entities\": {{\"organization\": [\"EU\", \"British\"]}}}}");
        assert_eq!(validate(&out(&wrong), &ex(), b, false, true).unwrap_err().0, Check::AnswerDisagrees);
        // an API's reasoning as the rationale and its constrained content as the answer
        let mut o = out("{\"entities\": {\"organization\": [\"EU\"]}}");
        o.reasoning = Some(GOOD.into());
        assert_eq!(validate(&o, &ex(), b, true, true).unwrap(), GOOD);
        o.text = "{\"entities\": {}}".into();
        assert_eq!(validate(&o, &ex(), b, true, true).unwrap_err().0, Check::AnswerDisagrees);
    }

    #[test]
    fn the_constrained_teacher_prompt_asks_for_the_answer_after_think() {
        let free = teacher_template(Decoding::Free);
        let c = teacher_template(Decoding::Schema);
        assert!(free.contains(NO_ANSWER_RULE) && !free.contains("</think>"));
        assert!(c.contains(ANSWER_RULE) && !c.contains(NO_ANSWER_RULE));
        // the worked example shows the answer, which the validator accepts for its own example
        assert!(c.contains(&format!("{EXAMPLE_END}{EXAMPLE_ANSWER}")));
        let p = teacher_prompt(&ex(), Template::Model, Decoding::Json);
        assert!(p.messages[0].content.ends_with("Correct entities: \"EU\": organization"));
    }

    #[test]
    fn judge_scores_are_read_from_the_reply() {
        assert_eq!(judge_score("9"), Some(9));
        assert_eq!(judge_score("Score: 10/10"), Some(10));
        assert_eq!(judge_score("<think>maybe 3</think>\n8.5"), Some(8));
        assert_eq!(judge_score("excellent"), None);
    }

    #[test]
    fn prompts_show_sentence_schema_and_gold() {
        let p = teacher_prompt(&ex(), Template::Model, Decoding::Free);
        let u = &p.messages[0].content;
        assert!(u.contains("Sentence: EU rejects German call") && u.contains("[\"location\", \"organization\", \"person\"]") && u.contains("Correct entities: \"EU\": organization"));
        assert!(p.text.is_none());
        let mut empty = ex();
        empty.gold.clear();
        assert!(teacher_prompt(&empty, Template::Completion, Decoding::Free).text.unwrap().contains("Correct entities: none"));
        assert!(judge_prompt(&ex(), "R", Template::Model).messages[0].content.contains("Reasoning:\nR"));
    }

    #[test]
    fn revalidation_moves_rows_whose_verdict_the_current_rules_change() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("set.jsonl");
        let cfg = CotConfig {
            teacher: "t".into(),
            teacher_sha256: String::new(),
            engine: "llama.cpp".into(),
            template: Template::Model,
            sampling: Sampling::default(),
            bounds: Bounds::default(),
            use_reasoning: false,
            judge: None,
            min_score: 9,
            sources: vec!["conll2003".into()],
            split: "train".into(),
            per_source: None,
            seed: 42,
            decoding: Decoding::Free,
            max_empty_share: None,
            teacher_prompt: None,
        };
        let m = CotManifest { config: cfg, teacher_info: Default::default(), machine: crate::run::Machine::this(), sessions: Vec::new(), revalidations: Vec::new() };
        util::write_json(&sibling(&out, "manifest.json"), &m).unwrap();
        let mk = |id: &str| {
            let mut e = ex();
            e.id = id.into();
            e
        };
        let (a, b, c, d, f, g) = (mk("a"), mk("b"), mk("c"), mk("d"), mk("f"), mk("g"));
        let rec = |e: &Example, cot: &str| CotRecord { guid: e.id.clone(), dataset: Some(e.dataset.clone()), sentence: e.text.clone(), schema: e.labels.clone(), cot: Some(cot.into()), entities: e.gold.clone() };
        let rej = |e: &Example, check: Check, output: &str| Rejected { guid: e.id.clone(), dataset: e.dataset.clone(), check, detail: "old".into(), output: output.into() };
        // a: kept and still fine; b: kept but (say, under an older rule) never typed EU
        // f: kept, and left in the rejected file too by a pass cut short
        let kept = [rec(&a, GOOD), rec(&b, "\"EU\" is mentioned first in the sentence, before the verb rejects."), rec(&f, GOOD)];
        // c: rejected by a rule that has since changed; d: truncated (not rerun); e: unknown guid;
        // g: still rejected, by another check now
        let rejected = [
            rej(&c, Check::UntypedGold, "\"EU\" and the European Commission are both organisations of the schema, found by their names."),
            rej(&d, Check::Truncated, GOOD),
            Rejected { guid: "e".into(), dataset: "conll2003".into(), check: Check::MissingGold, detail: "old".into(), output: GOOD.into() },
            rej(&f, Check::UntypedGold, "old"),
            rej(&g, Check::MissingGold, "\"EU\" is mentioned first in the sentence, before the verb rejects."),
        ];
        let lines = |v: Vec<String>| v.join("\n") + "\n";
        std::fs::write(&out, lines(kept.iter().map(|r| serde_json::to_string(r).unwrap()).collect())).unwrap();
        std::fs::write(sibling(&out, "rejected.jsonl"), lines(rejected.iter().map(|r| serde_json::to_string(r).unwrap()).collect())).unwrap();
        let all = [a, b, c, d, f, g];
        let r = revalidate(&out, &all, "rner cot revalidate set.jsonl").unwrap();
        assert_eq!((r.rechecked, r.rejected_to_kept, r.kept_to_rejected, r.reasons_changed), (5, 1, 1, 1));
        let kept_now: Vec<String> = read_records(&out).unwrap().into_iter().map(|r| r.guid).collect();
        assert_eq!(kept_now, ["a", "f", "c"]);
        let rej_now: Vec<Rejected> = util::read_jsonl(&sibling(&out, "rejected.jsonl")).unwrap();
        let rows = |v: &[Rejected]| v.iter().map(|r| (r.guid.clone(), r.check)).collect::<Vec<_>>();
        let expect = [("b", Check::UntypedGold), ("d", Check::Truncated), ("e", Check::MissingGold), ("g", Check::UntypedGold)].map(|(g, c)| (g.to_string(), c));
        assert_eq!(rows(&rej_now), expect);
        let m: CotManifest = util::read_json(&sibling(&out, "manifest.json")).unwrap();
        assert_eq!(m.revalidations, [r]);
        // a second pass changes nothing; a held lock refuses it
        let again = revalidate(&out, &all, "again").unwrap();
        assert_eq!((again.rejected_to_kept, again.kept_to_rejected, again.reasons_changed), (0, 0, 0));
        assert_eq!(rows(&util::read_jsonl::<Rejected>(&sibling(&out, "rejected.jsonl")).unwrap()), expect);
        let _held = SetLock::take(&out).unwrap();
        let e = revalidate(&out, &[], "locked").unwrap_err().to_string();
        assert!(e.contains("another `rner cot` process"), "{e}");
    }

    #[test]
    fn a_teacher_prompt_from_a_file_is_filled_like_the_built_in_one() {
        let custom = "Explain {{GOLD}} in {{SENTENCE}} ({{SCHEMA}}). Do not write a JSON answer. Write one paragraph of at most 100 words.\n";
        let p = teacher_prompt_from(custom, &ex(), Template::Model, Decoding::Free);
        assert_eq!(p.messages[0].content, "Explain \"EU\": organization in EU rejects German call to boycott British lamb . ([\"location\", \"organization\", \"person\"]). Do not write a JSON answer. Write one paragraph of at most 100 words.");
        // the constrained variant swaps the same phrase
        assert!(teacher_prompt_from(custom, &ex(), Template::Model, Decoding::Schema).messages[0].content.contains("then </think>, then the correct entities as JSON"));
        // the built-in one is the shipped file, and the earlier one still fills
        assert_eq!(teacher_prompt(&ex(), Template::Model, Decoding::Free), teacher_prompt_from(include_str!("../../assets/cot/teacher-typed.txt"), &ex(), Template::Model, Decoding::Free));
        assert!(teacher_prompt_from(include_str!("../../assets/cot/teacher-v1.txt"), &ex(), Template::Model, Decoding::Free).messages[0].content.ends_with("Correct entities: \"EU\": organization"));
        let path = Path::new("prompt.txt");
        assert!(check_teacher_prompt(custom, path).is_ok());
        let e = check_teacher_prompt("Explain {{GOLD}}.", path).unwrap_err().to_string();
        assert!(e.contains("prompt.txt") && e.contains("{{SENTENCE}}, {{SCHEMA}}") && !e.contains("{{GOLD}}, "), "{e}");
    }

    #[test]
    fn records_read_the_published_shape() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.jsonl");
        std::fs::write(&p, "{\"guid\": \"0\", \"dataset\": null, \"sentence\": \"node_modules\", \"schema\": [\"directory\"], \"cot\": \"Okay\", \"entities\": [{\"text\": \"node_modules\", \"label\": \"directory\"}]}\n{\"guid\": 1").unwrap();
        let r = read_records(&p).unwrap();
        assert_eq!(r.len(), 1);
        assert_eq!(r[0].dataset, None);
        std::fs::write(&p, "{\"guid\": 1}\n{}\n").unwrap();
        let e = read_records(&p).unwrap_err().to_string();
        assert!(e.contains("x.jsonl:1"), "{e}");
    }
}
