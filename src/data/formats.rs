//! Readers for every file format under `../shared/data` (see its `SOURCES.md`).
//!
//! All readers return [`RawSentence`]s: the InstructUIE shape `{sentence, entities[{name, type, pos}]}`
//! with the *raw* entity types of the file (no label processing, nothing dropped), so that the raw
//! counts of `SOURCES.md` can be checked and the paper's loader can be applied on top
//! (see [`crate::data::registry`]).
//!
//! Column formats (one token per line, blank line between sentences):
//! - [`Columns::TokenTag`]: `token<TAB>tag`, BIO/IOB2 (CrossNER, WNUT-17);
//! - [`Columns::TagToken`]: `tag<TAB>token`, BIO (MIT Movie, MIT Restaurant);
//! - [`Columns::Conll2003`]: `token POS chunk NER` space separated, IOB1, `-DOCSTART-` lines.
//!
//! One span rule decodes all of them (the rule `SOURCES.md` counts with): a span starts at `B-X`,
//! or at `I-X` following a different type or `O`; this reads IOB2 and IOB1 alike.
//! The sentence text of a token format is its tokens joined by single spaces, and entity
//! positions are *char* offsets into that text (end exclusive), as in InstructUIE's `pos`.
use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;
use std::path::Path;

use serde::de::{DeserializeOwned, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One entity mention as written in a source file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawEntity {
    /// surface string (token formats: its tokens joined by single spaces)
    pub name: String,
    /// the raw type of the file (`organisation`, `RATINGS_AVERAGE`, `Restaurant Name`, ...)
    #[serde(rename = "type")]
    pub kind: String,
    /// char span `[start, end)` into [`RawSentence::sentence`], when known
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pos: Option<(usize, usize)>,
}

/// One sentence of a source file, with its raw entities in file order (duplicates kept).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawSentence {
    pub sentence: String,
    /// the file's tokens, for token formats (`sentence == tokens.join(" ")`)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<String>>,
    pub entities: Vec<RawEntity>,
}

/// Which reader a file needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// `token<TAB>tag` (CrossNER, WNUT-17)
    TokenTag,
    /// `tag<TAB>token` (MIT Movie / Restaurant `.bio`)
    TagToken,
    /// CoNLL-2003 original 4 columns, IOB1
    Conll2003,
    /// InstructUIE JSON list of `{sentence, entities}` (+ `labels.json` next to it)
    InstructUie,
    /// UniversalNER conversation JSON (one record per sentence × queried type)
    UniversalNer,
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Format::TokenTag => "token-tag",
            Format::TagToken => "tag-token",
            Format::Conll2003 => "conll2003",
            Format::InstructUie => "instructuie",
            Format::UniversalNer => "universal-ner",
        })
    }
}

/// Read `path` with the reader for `format`.
pub fn read(path: &Path, format: Format) -> Result<Vec<RawSentence>> {
    match format {
        Format::TokenTag => read_token_tag(path),
        Format::TagToken => read_tag_token(path),
        Format::Conll2003 => read_conll2003(path),
        Format::InstructUie => read_instructuie(path),
        Format::UniversalNer => read_universal_ner(path),
    }
}

// ---------------------------------------------------------------------------------------------
// Column (BIO) formats
// ---------------------------------------------------------------------------------------------

/// Column layout of a one-token-per-line file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Columns {
    /// `token<TAB>tag`
    TokenTag,
    /// `tag<TAB>token`
    TagToken,
    /// `token POS chunk NER`, whitespace separated, `-DOCSTART-` lines
    Conll2003,
}

/// A BIO tag. `B-`/`I-` carry the raw type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tag {
    O,
    B(String),
    I(String),
}

impl Tag {
    /// `O`, `B-<type>` or `I-<type>` with a non-empty type; anything else is `None`.
    pub fn parse(s: &str) -> Option<Tag> {
        if s == "O" {
            return Some(Tag::O);
        }
        let (kind, ty) = s.split_at_checked(2)?;
        if ty.is_empty() {
            return None;
        }
        match kind {
            "B-" => Some(Tag::B(ty.to_string())),
            "I-" => Some(Tag::I(ty.to_string())),
            _ => None,
        }
    }
}

/// A decoded BIO span: token range `[start, end)` and raw type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpan {
    pub start: usize,
    pub end: usize,
    pub kind: String,
}

/// Decode tags into spans: a span starts at `B-X`, or at `I-X` after `O` or another type, and
/// continues over `I-X` of the same type. Reads IOB1 (CoNLL-2003) and IOB2 alike.
pub fn bio_spans(tags: &[Tag]) -> Vec<TokenSpan> {
    let mut spans = Vec::new();
    let mut open: Option<(usize, &str)> = None;
    for (i, tag) in tags.iter().enumerate() {
        let (starts, ty) = match tag {
            Tag::O => {
                if let Some((s, t)) = open.take() {
                    spans.push(TokenSpan { start: s, end: i, kind: t.to_string() });
                }
                continue;
            }
            Tag::B(t) => (true, t.as_str()),
            Tag::I(t) => (open.is_none_or(|(_, cur)| cur != t), t.as_str()),
        };
        if starts {
            if let Some((s, t)) = open.take() {
                spans.push(TokenSpan { start: s, end: i, kind: t.to_string() });
            }
            open = Some((i, ty));
        }
    }
    if let Some((s, t)) = open {
        spans.push(TokenSpan { start: s, end: tags.len(), kind: t.to_string() });
    }
    spans
}

/// `token<TAB>tag` BIO file (CrossNER, WNUT-17).
pub fn read_token_tag(path: &Path) -> Result<Vec<RawSentence>> {
    parse_columns(&read_utf8(path)?, path, Columns::TokenTag)
}

/// `tag<TAB>token` BIO file (MIT Movie / MIT Restaurant `.bio`).
pub fn read_tag_token(path: &Path) -> Result<Vec<RawSentence>> {
    parse_columns(&read_utf8(path)?, path, Columns::TagToken)
}

/// CoNLL-2003 original file (`eng.train`, `eng.testa`, `eng.testb`).
pub fn read_conll2003(path: &Path) -> Result<Vec<RawSentence>> {
    parse_columns(&read_utf8(path)?, path, Columns::Conll2003)
}

/// Parse the text of a column file; `file` only names the source in errors.
///
/// Sentences are separated by blank lines; whitespace-only lines count as blank because
/// `wnut17train.conll` separates most of its sentences with a lone `\t`. A leading BOM, CRLF line
/// ends and BOMs glued to a token (`Dubbz\u{feff}` in `emerging.dev.conll`) are removed. Empty
/// blocks (e.g. a `-DOCSTART-` line followed by a blank) yield no sentence.
pub fn parse_columns(src: &str, file: &Path, columns: Columns) -> Result<Vec<RawSentence>> {
    let src = src.strip_prefix('\u{feff}').unwrap_or(src);
    let mut out = Vec::new();
    let mut tokens: Vec<String> = Vec::new();
    let mut tags: Vec<Tag> = Vec::new();
    for (i, line) in src.split('\n').enumerate() {
        let lineno = i + 1;
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.trim().is_empty() {
            flush(&mut tokens, &mut tags, &mut out);
            continue;
        }
        let fields: Vec<&str> = match columns {
            Columns::TokenTag | Columns::TagToken => line.split('\t').collect(),
            Columns::Conll2003 => line.split_whitespace().collect(),
        };
        if columns == Columns::Conll2003 && fields.first() == Some(&"-DOCSTART-") {
            flush(&mut tokens, &mut tags, &mut out);
            continue;
        }
        let (token, tag) = match (columns, fields.as_slice()) {
            (Columns::TokenTag, [tok, tag]) => (*tok, *tag),
            (Columns::TagToken, [tag, tok]) => (*tok, *tag),
            (Columns::Conll2003, [tok, _pos, _chunk, tag]) => (*tok, *tag),
            (Columns::Conll2003, _) => {
                let msg = format!("expected 4 space-separated columns (token POS chunk NER), found {}", fields.len());
                return Err(Error::data(file, lineno, msg));
            }
            _ => {
                let order = if columns == Columns::TokenTag { "token<TAB>tag" } else { "tag<TAB>token" };
                let msg = format!("expected 2 tab-separated columns ({order}), found {}", fields.len());
                return Err(Error::data(file, lineno, msg));
            }
        };
        let token = clean_field(token);
        let tag_str = clean_field(tag);
        if token.is_empty() {
            return Err(Error::data(file, lineno, "empty token"));
        }
        if token.chars().any(char::is_whitespace) {
            // the sentence text is the tokens joined by spaces: a token with a space would split
            return Err(Error::data(file, lineno, format!("token {token:?} contains whitespace")));
        }
        let Some(tag) = Tag::parse(tag_str) else {
            let msg = format!("invalid tag {tag_str:?}: expected O, B-<type> or I-<type>");
            return Err(Error::data(file, lineno, msg));
        };
        tokens.push(token.to_string());
        tags.push(tag);
    }
    flush(&mut tokens, &mut tags, &mut out);
    Ok(out)
}

fn clean_field(s: &str) -> &str {
    s.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
}

/// Turn the collected block into a sentence (if any) and reset the buffers.
fn flush(tokens: &mut Vec<String>, tags: &mut Vec<Tag>, out: &mut Vec<RawSentence>) {
    if tokens.is_empty() {
        return;
    }
    let tokens = std::mem::take(tokens);
    let tags = std::mem::take(tags);
    out.push(sentence_from_tokens(tokens, &tags));
}

/// Build the text (tokens joined by one space) and the char spans of each BIO span.
fn sentence_from_tokens(tokens: Vec<String>, tags: &[Tag]) -> RawSentence {
    // char offset of each token's start in the joined text
    let mut starts = Vec::with_capacity(tokens.len());
    let mut off = 0;
    for t in &tokens {
        starts.push(off);
        off += t.chars().count() + 1;
    }
    let entities = bio_spans(tags)
        .into_iter()
        .map(|s| {
            let name = tokens[s.start..s.end].join(" ");
            let begin = starts[s.start];
            let end = begin + name.chars().count();
            RawEntity { name, kind: s.kind, pos: Some((begin, end)) }
        })
        .collect();
    RawSentence { sentence: tokens.join(" "), tokens: Some(tokens), entities }
}

// ---------------------------------------------------------------------------------------------
// JSON formats
// ---------------------------------------------------------------------------------------------

#[derive(Deserialize)]
struct UieRecord {
    sentence: String,
    entities: Vec<UieEntity>,
}

#[derive(Deserialize)]
struct UieEntity {
    name: String,
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    pos: Option<(usize, usize)>,
}

/// InstructUIE `train/dev/test.json`: a list of `{sentence, entities[{name, type, pos}]}`.
///
/// `pos` is kept when `sentence[pos]` (in chars) is the name; otherwise the first occurrence of
/// the name is used, or no position when the name is not in the sentence.
pub fn read_instructuie(path: &Path) -> Result<Vec<RawSentence>> {
    read_json_array(path, |_, rec: UieRecord| {
        let entities = rec
            .entities
            .into_iter()
            .map(|e| {
                let pos = e
                    .pos
                    .filter(|&(s, t)| char_slice(&rec.sentence, s, t) == Some(e.name.as_str()))
                    .or_else(|| find_chars(&rec.sentence, &e.name));
                RawEntity { name: e.name, kind: e.kind, pos }
            })
            .collect();
        Ok(RawSentence { sentence: rec.sentence, tokens: None, entities })
    })
}

/// InstructUIE `labels.json`: a JSON list of label names.
pub fn read_instructuie_labels(path: &Path) -> Result<Vec<String>> {
    let text = read_utf8(path)?;
    serde_json::from_str(&text).map_err(|err| Error::Json { path: path.to_path_buf(), err })
}

#[derive(Deserialize)]
struct UniRecord {
    conversations: Vec<UniTurn>,
}

#[derive(Deserialize)]
struct UniTurn {
    value: String,
}

/// UniversalNER evaluation file: one record per (sentence, queried type),
/// `[{"Text: <s>"}, {"I've read this text."}, {"What describes <type> in the text?"}, {"[json list]"}, ...]`.
///
/// Records are grouped by text (a text can occur under several ids when the source test set
/// repeats a sentence), giving one sentence per distinct text in order of first appearance, whose
/// entities are the answers of all its queries in record order (type = the queried phrase).
/// Positions are the first occurrence of each answer in the text (UniversalNER gives none).
pub fn read_universal_ner(path: &Path) -> Result<Vec<RawSentence>> {
    let records = read_json_array(path, |_, rec: UniRecord| {
        let mut turns = rec.conversations.into_iter().map(|t| t.value);
        let first = turns.next().ok_or("empty conversation")?;
        let text = first
            .strip_prefix("Text: ")
            .ok_or_else(|| format!("first turn does not start with \"Text: \": {first:?}"))?
            .to_string();
        let _ack = turns.next();
        let mut answers = Vec::new();
        while let Some(question) = turns.next() {
            let kind = question
                .strip_prefix("What describes ")
                .and_then(|q| q.strip_suffix(" in the text?"))
                .ok_or_else(|| format!("unexpected question {question:?}"))?
                .to_string();
            let answer = turns.next().ok_or_else(|| format!("question {question:?} has no answer"))?;
            let names: Vec<String> = serde_json::from_str(&answer)
                .map_err(|e| format!("answer {answer:?} is not a JSON list of strings: {e}"))?;
            answers.extend(names.into_iter().map(|n| (n, kind.clone())));
        }
        Ok((text, answers))
    })?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut out: Vec<RawSentence> = Vec::new();
    for (text, answers) in records {
        let i = *index.entry(text.clone()).or_insert_with(|| {
            out.push(RawSentence { sentence: text.clone(), tokens: None, entities: Vec::new() });
            out.len() - 1
        });
        let s = &mut out[i];
        for (name, kind) in answers {
            let pos = find_chars(&s.sentence, &name);
            s.entities.push(RawEntity { name, kind, pos });
        }
    }
    Ok(out)
}

/// Deserialize a JSON list record by record, converting each with `convert`.
///
/// Streaming through a visitor lets an error name both the record index and serde's line and
/// column (the data files are single-line JSON, so the column is what locates it): errors inside
/// a record are [`Error::Data`] `file:line: record i: ... (column c)`; syntax errors outside any
/// record are [`Error::Json`].
fn read_json_array<T, U, F>(path: &Path, convert: F) -> Result<Vec<U>>
where
    T: DeserializeOwned,
    F: FnMut(usize, T) -> std::result::Result<U, String>,
{
    /// Visits the list element by element, noting in `at` which record is being read so that
    /// an error (whose category serde_json keeps: syntax, EOF or data) can name it.
    struct ArrayVisitor<'a, T, U, F> {
        convert: F,
        at: &'a Cell<Option<usize>>,
        _marker: PhantomData<fn(T) -> U>,
    }
    impl<'de, T, U, F> Visitor<'de> for ArrayVisitor<'_, T, U, F>
    where
        T: DeserializeOwned,
        F: FnMut(usize, T) -> std::result::Result<U, String>,
    {
        type Value = Vec<U>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a JSON list of records")
        }
        fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> std::result::Result<Vec<U>, A::Error> {
            use serde::de::Error as _;
            let mut out = Vec::with_capacity(seq.size_hint().unwrap_or(0));
            loop {
                let i = out.len();
                self.at.set(Some(i));
                let Some(rec) = seq.next_element::<T>()? else { break };
                out.push((self.convert)(i, rec).map_err(A::Error::custom)?);
            }
            self.at.set(None);
            Ok(out)
        }
    }

    let text = read_utf8(path)?;
    let src = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let at = Cell::new(None);
    let mut de = serde_json::Deserializer::from_str(src);
    let visitor = ArrayVisitor { convert, at: &at, _marker: PhantomData };
    let parsed = serde::Deserializer::deserialize_seq(&mut de, visitor).and_then(|v| de.end().map(|()| v));
    parsed.map_err(|e| {
        use serde_json::error::Category;
        let line = e.line();
        let col = if e.column() > 0 { format!(" (column {})", e.column()) } else { String::new() };
        let what = strip_position(&e.to_string()).to_string();
        match (at.get(), e.classify()) {
            (Some(i), Category::Data) => Error::data(path, line, format!("record {i}: {what}{col}")),
            (Some(i), _) => Error::data(path, line, format!("record {i}: invalid JSON: {what}{col}")),
            (None, Category::Data) => Error::data(path, line, format!("{what}{col}")),
            (None, _) => Error::Json { path: path.to_path_buf(), err: e },
        }
    })
}

/// serde_json appends " at line L column C" to its messages; we report the position ourselves.
fn strip_position(msg: &str) -> &str {
    match msg.rfind(" at line ") {
        Some(i)
            if msg[i + 9..].split_once(" column ").is_some_and(|(l, c)| {
                !l.is_empty()
                    && !c.is_empty()
                    && l.bytes().all(|b| b.is_ascii_digit())
                    && c.bytes().all(|b| b.is_ascii_digit())
            }) =>
        {
            &msg[..i]
        }
        _ => msg,
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Read a file as UTF-8; invalid UTF-8 is a data error naming the line of the first bad byte.
fn read_utf8(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    String::from_utf8(bytes).map_err(|e| {
        let at = e.utf8_error().valid_up_to();
        let line = e.as_bytes()[..at].iter().filter(|&&b| b == b'\n').count() + 1;
        Error::data(path, line, format!("invalid UTF-8 at byte {at}"))
    })
}

/// `s[start..end]` in chars, if in range.
fn char_slice(s: &str, start: usize, end: usize) -> Option<&str> {
    if start > end {
        return None;
    }
    let byte_at = |c: usize| s.char_indices().map(|(b, _)| b).chain(std::iter::once(s.len())).nth(c);
    let b0 = byte_at(start)?;
    let b1 = byte_at(end)?;
    s.get(b0..b1)
}

/// Char span of the first occurrence of `needle` in `s`.
fn find_chars(s: &str, needle: &str) -> Option<(usize, usize)> {
    if needle.is_empty() {
        return None;
    }
    let b = s.find(needle)?;
    let start = s[..b].chars().count();
    Some((start, start + needle.chars().count()))
}

/// Natural-language form of a raw type from the BIO files, as InstructUIE names it
/// (`programlang` → `program language`, `RATINGS_AVERAGE` → `average ratings`, `PER` → `person`,
/// `organisation` → `organization`, `creative-work` → `creative work`). Types without an
/// InstructUIE counterpart get `_`/`-` replaced by spaces (`Character_Name` → `Character Name`).
/// `MISC`/`misc` map to `misc`, which the paper's loader drops as invalid. Case is otherwise kept:
/// the loader lower-cases labels anyway.
pub fn natural_label(raw: &str) -> String {
    if let Some(known) = crossner_natural(raw) {
        return known.to_string();
    }
    let mapped = match raw {
        "PER" => "person",
        "LOC" => "location",
        "ORG" => "organization",
        "MISC" => "misc",
        "RATINGS_AVERAGE" => "average ratings",
        _ => return raw.replace(['_', '-'], " "),
    };
    mapped.to_string()
}

/// CrossNER's concatenated / British raw type names and their InstructUIE forms. Also used by the
/// corrected gold variant, because InstructUIE's `CrossNER_music` dev/test still carry
/// `organisation`.
pub(crate) fn crossner_natural(raw: &str) -> Option<&'static str> {
    Some(match raw {
        "organisation" => "organization",
        "programlang" => "program language",
        "musicalartist" => "musical artist",
        "musicalinstrument" => "musical instrument",
        "musicgenre" => "music genre",
        "politicalparty" => "political party",
        "literarygenre" => "literary genre",
        "academicjournal" => "academic journal",
        "astronomicalobject" => "astronomical object",
        "chemicalcompound" => "chemical compound",
        "chemicalelement" => "chemical element",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p() -> &'static Path {
        Path::new("test.txt")
    }

    #[test]
    fn iob2_and_iob1_spans() {
        let tags: Vec<Tag> = ["B-PER", "I-PER", "O", "I-LOC", "I-LOC", "B-LOC", "I-ORG", "I-PER"]
            .iter()
            .map(|t| Tag::parse(t).unwrap())
            .collect();
        let spans = bio_spans(&tags);
        let got: Vec<(usize, usize, &str)> = spans.iter().map(|s| (s.start, s.end, s.kind.as_str())).collect();
        assert_eq!(got, vec![(0, 2, "PER"), (3, 5, "LOC"), (5, 6, "LOC"), (6, 7, "ORG"), (7, 8, "PER")]);
    }

    #[test]
    fn tags_are_validated() {
        assert_eq!(Tag::parse("O"), Some(Tag::O));
        assert_eq!(Tag::parse("B-x-y"), Some(Tag::B("x-y".into())));
        for bad in ["B-", "I", "o", "S-PER", "", "Bé-"] {
            assert_eq!(Tag::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn token_tag_char_spans_and_separators() {
        let src = "\u{feff}Zoë\tB-person\r\nvon\tI-person\nsaid\tO\n\t\nBerlin\tB-location\n\n\n";
        let s = parse_columns(src, p(), Columns::TokenTag).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!(s[0].sentence, "Zoë von said");
        assert_eq!(s[0].entities, vec![RawEntity { name: "Zoë von".into(), kind: "person".into(), pos: Some((0, 7)) }]);
        assert_eq!(s[1].entities[0].pos, Some((0, 6)));
    }

    #[test]
    fn tag_token_and_conll() {
        let s = parse_columns("B-ACTOR\tbruce\nI-ACTOR\twillis\nO\tfilms\n", p(), Columns::TagToken).unwrap();
        assert_eq!(s[0].entities[0].name, "bruce willis");
        let conll = "-DOCSTART- -X- O O\n\nEU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\n\n";
        let s = parse_columns(conll, p(), Columns::Conll2003).unwrap();
        assert_eq!(s.len(), 1);
        let names: Vec<_> = s[0].entities.iter().map(|e| (e.name.as_str(), e.kind.as_str(), e.pos)).collect();
        assert_eq!(names, vec![("EU", "ORG", Some((0, 2))), ("German", "MISC", Some((11, 17)))]);
    }

    #[test]
    fn malformed_lines_name_the_line() {
        let cases = [
            ("a\tO\nb\tO\nc O\n", Columns::TokenTag, ":3:"),
            ("a\tO\nb\tX-PER\n", Columns::TokenTag, ":2:"),
            ("a\tO\tO\n", Columns::TokenTag, ":1:"),
            ("EU NNP I-ORG\n", Columns::Conll2003, ":1:"),
            ("\tO\n", Columns::TokenTag, ":1:"),
        ];
        for (src, cols, want) in cases {
            let err = parse_columns(src, p(), cols).unwrap_err().to_string();
            assert!(err.starts_with("test.txt") && err.contains(want), "{err}");
        }
    }

    #[test]
    fn char_helpers() {
        assert_eq!(char_slice("Zoë ab", 4, 6), Some("ab"));
        assert_eq!(char_slice("Zoë", 0, 3), Some("Zoë"));
        assert_eq!(char_slice("Zoë", 2, 9), None);
        assert_eq!(find_chars("Zoë ab", "ab"), Some((4, 6)));
        assert_eq!(strip_position("missing field `x` at line 1 column 7"), "missing field `x`");
        assert_eq!(strip_position("plain"), "plain");
    }

    #[test]
    fn natural_labels() {
        for (raw, want) in [
            ("PER", "person"),
            ("organisation", "organization"),
            ("programlang", "program language"),
            ("RATINGS_AVERAGE", "average ratings"),
            ("ACTOR", "ACTOR"),
            ("Restaurant_Name", "Restaurant Name"),
            ("creative-work", "creative work"),
            ("misc", "misc"),
        ] {
            assert_eq!(natural_label(raw), want);
        }
    }
}
