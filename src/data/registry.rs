//! The dataset registry: dataset names → files under the data directory, the paper's gold loader
//! that turns them into [`Example`]s, and seeded samplers.
//!
//! Dataset names (matched case-insensitively; splits `train`/`dev`/`test` unless noted):
//!
//! | name | files | format |
//! |---|---|---|
//! | `mit-movie`, `mit-restaurant`, `crossner_ai`, `crossner_literature`, `crossner_music`, `crossner_politics`, `crossner_science` ([`ZERO_SHOT`]) | `InstructUIE-IE_INSTRUCTIONS-NER/<mit-movie, mit-restaurant, CrossNER_AI, …>/{train,dev,test}.json` | InstructUIE |
//! | `conll2003` | `InstructUIE-IE_INSTRUCTIONS-NER/CoNLL 2003/` | InstructUIE |
//! | `conll2003-raw` | `CoNLL-2003/eng.train` / `eng.testa` / `eng.testb` as train / dev / test | CoNLL-2003 IOB1 |
//! | `wnut17` | `WNUT-17/wnut17train.conll` / `emerging.dev.conll` / `emerging.test.annotated` | token TAB tag |
//! | `crossner-raw_ai`, `crossner-raw_literature`, `crossner-raw_music`, `crossner-raw_politics`, `crossner-raw_science`, `crossner-raw_conll2003` | `CrossNER/<domain>/{train,dev,test}.txt` | token TAB tag |
//! | `mit-movie-raw` (train, test) | `MIT-Movie/engtrain.bio` / `engtest.bio` | tag TAB token |
//! | `mit-movie-trivia` (train, test) | `MIT-Movie/trivia10k13train.bio` / `trivia10k13test.bio` | tag TAB token |
//! | `mit-restaurant-raw` (train, test) | `MIT-Restaurant/restauranttrain.bio` / `restauranttest.bio` | tag TAB token |
//! | `uniner_crossner_ai`, `uniner_crossner_literature`, `uniner_crossner_music`, `uniner_crossner_politics`, `uniner_crossner_science`, `uniner_mit-restaurant` (test) | `UniversalNER-eval/<CrossNER_AI, …, mit-restaurant>.json` | UniversalNER |
//!
//! The loader follows the paper's code (paper.md §5): the schema is `process_schema(labels.json)`
//! (raw formats: the natural-language labels of the file's types), and gold keeps, in file order
//! and with duplicates, the entities whose type is valid and whose processed type is in the
//! schema. So `misc`/`else` mentions disappear, and so do the `organisation` mentions that
//! InstructUIE's `CrossNER_music` dev/test still carry; [`GoldVariant::Corrected`] maps those
//! instead (paper.md §10).
use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::formats::{self, crossner_natural, natural_label, Format, RawSentence};
use super::{is_valid_label, process_label, process_schema, Entity, Example};
use crate::error::{Error, Result};

/// The seven zero-shot benchmarks of the paper, in its table order.
pub const ZERO_SHOT: [&str; 7] = [
    "mit-movie",
    "mit-restaurant",
    "crossner_ai",
    "crossner_literature",
    "crossner_music",
    "crossner_politics",
    "crossner_science",
];

/// One registered dataset: its name, format and the file of each split (relative to the root).
struct Spec {
    name: &'static str,
    format: Format,
    splits: &'static [(&'static str, &'static str)],
}

macro_rules! uie {
    ($name:literal, $dir:literal) => {
        Spec {
            name: $name,
            format: Format::InstructUie,
            splits: &[
                ("train", concat!("InstructUIE-IE_INSTRUCTIONS-NER/", $dir, "/train.json")),
                ("dev", concat!("InstructUIE-IE_INSTRUCTIONS-NER/", $dir, "/dev.json")),
                ("test", concat!("InstructUIE-IE_INSTRUCTIONS-NER/", $dir, "/test.json")),
            ],
        }
    };
}

macro_rules! crossner_raw {
    ($name:literal, $dir:literal) => {
        Spec {
            name: $name,
            format: Format::TokenTag,
            splits: &[
                ("train", concat!("CrossNER/", $dir, "/train.txt")),
                ("dev", concat!("CrossNER/", $dir, "/dev.txt")),
                ("test", concat!("CrossNER/", $dir, "/test.txt")),
            ],
        }
    };
}

macro_rules! uniner {
    ($name:literal, $file:literal) => {
        Spec { name: $name, format: Format::UniversalNer, splits: &[("test", concat!("UniversalNER-eval/", $file))] }
    };
}

static SPECS: &[Spec] = &[
    uie!("mit-movie", "mit-movie"),
    uie!("mit-restaurant", "mit-restaurant"),
    uie!("crossner_ai", "CrossNER_AI"),
    uie!("crossner_literature", "CrossNER_literature"),
    uie!("crossner_music", "CrossNER_music"),
    uie!("crossner_politics", "CrossNER_politics"),
    uie!("crossner_science", "CrossNER_science"),
    uie!("conll2003", "CoNLL 2003"),
    Spec {
        name: "conll2003-raw",
        format: Format::Conll2003,
        splits: &[("train", "CoNLL-2003/eng.train"), ("dev", "CoNLL-2003/eng.testa"), ("test", "CoNLL-2003/eng.testb")],
    },
    Spec {
        name: "wnut17",
        format: Format::TokenTag,
        splits: &[
            ("train", "WNUT-17/wnut17train.conll"),
            ("dev", "WNUT-17/emerging.dev.conll"),
            ("test", "WNUT-17/emerging.test.annotated"),
        ],
    },
    crossner_raw!("crossner-raw_ai", "ai"),
    crossner_raw!("crossner-raw_literature", "literature"),
    crossner_raw!("crossner-raw_music", "music"),
    crossner_raw!("crossner-raw_politics", "politics"),
    crossner_raw!("crossner-raw_science", "science"),
    crossner_raw!("crossner-raw_conll2003", "conll2003"),
    Spec {
        name: "mit-movie-raw",
        format: Format::TagToken,
        splits: &[("train", "MIT-Movie/engtrain.bio"), ("test", "MIT-Movie/engtest.bio")],
    },
    Spec {
        name: "mit-movie-trivia",
        format: Format::TagToken,
        splits: &[("train", "MIT-Movie/trivia10k13train.bio"), ("test", "MIT-Movie/trivia10k13test.bio")],
    },
    Spec {
        name: "mit-restaurant-raw",
        format: Format::TagToken,
        splits: &[("train", "MIT-Restaurant/restauranttrain.bio"), ("test", "MIT-Restaurant/restauranttest.bio")],
    },
    uniner!("uniner_crossner_ai", "CrossNER_AI.json"),
    uniner!("uniner_crossner_literature", "CrossNER_literature.json"),
    uniner!("uniner_crossner_music", "CrossNER_music.json"),
    uniner!("uniner_crossner_politics", "CrossNER_politics.json"),
    uniner!("uniner_crossner_science", "CrossNER_science.json"),
    uniner!("uniner_mit-restaurant", "mit-restaurant.json"),
];

/// How gold types are mapped before the paper's filter (`--gold paper|corrected`, stored in run
/// manifests as `"paper"`/`"corrected"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum GoldVariant {
    /// Exactly the paper's loader: raw InstructUIE types as written (music's 208 test
    /// `organisation` mentions are dropped because the schema says `organization`).
    #[default]
    Paper,
    /// Map raw CrossNER type names left in InstructUIE files (`organisation` → `organization`, ...)
    /// before filtering. Raw BIO formats are always mapped, so for them both variants agree.
    Corrected,
}

impl fmt::Display for GoldVariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            GoldVariant::Paper => "paper",
            GoldVariant::Corrected => "corrected",
        })
    }
}

/// One split of one dataset, resolved to a file.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// canonical (registry) name
    pub name: String,
    pub split: String,
    pub path: PathBuf,
    pub format: Format,
    sha256: OnceLock<String>,
}

impl Dataset {
    /// `labels.json` next to an InstructUIE split; `None` for other formats.
    pub fn labels_path(&self) -> Option<PathBuf> {
        (self.format == Format::InstructUie).then(|| self.path.with_file_name("labels.json"))
    }

    /// Hex sha256 of the split's file, computed on first call and cached (for run manifests).
    pub fn sha256(&self) -> Result<String> {
        if let Some(h) = self.sha256.get() {
            return Ok(h.clone());
        }
        let bytes = std::fs::read(&self.path).map_err(|e| Error::io(&self.path, e))?;
        let h = hex::encode(Sha256::digest(&bytes));
        Ok(self.sha256.get_or_init(|| h).clone())
    }

    /// The file's sentences with raw types, nothing filtered.
    pub fn read_raw(&self) -> Result<Vec<RawSentence>> {
        formats::read(&self.path, self.format)
    }

    /// Examples through the paper's loader with the given gold variant.
    pub fn examples(&self, variant: GoldVariant) -> Result<Vec<Example>> {
        let raw = self.read_raw()?;
        let schema = match self.labels_path() {
            Some(p) => process_schema(&formats::read_instructuie_labels(&p)?),
            None => {
                let types: BTreeSet<String> =
                    raw.iter().flat_map(|s| &s.entities).map(|e| self.map_type(&e.kind, variant)).collect();
                process_schema(&types.into_iter().collect::<Vec<_>>())
            }
        };
        let allowed: HashSet<&str> = schema.iter().map(String::as_str).collect();
        let examples = raw
            .into_iter()
            .enumerate()
            .map(|(index, s)| {
                let gold = s
                    .entities
                    .into_iter()
                    .filter_map(|e| {
                        let ty = self.map_type(&e.kind, variant);
                        let label = process_label(&ty);
                        (is_valid_label(&ty) && allowed.contains(label.as_str())).then_some(Entity {
                            text: e.name,
                            label,
                            span: e.pos,
                        })
                    })
                    .collect();
                let tokens = s.tokens.unwrap_or_else(|| s.sentence.split_whitespace().map(str::to_string).collect());
                Example {
                    id: format!("{}/{}/{}", self.name, self.split, index),
                    dataset: self.name.clone(),
                    split: self.split.clone(),
                    index,
                    text: s.sentence,
                    tokens: Some(tokens),
                    gold,
                    labels: schema.clone(),
                }
            })
            .collect();
        Ok(examples)
    }

    /// The type the filter sees: natural-language form for BIO formats (as InstructUIE converted
    /// them), as written for JSON formats unless the corrected variant is asked for.
    fn map_type(&self, raw: &str, variant: GoldVariant) -> String {
        match (self.format, variant) {
            (Format::TokenTag | Format::TagToken | Format::Conll2003, _) => natural_label(raw),
            (_, GoldVariant::Corrected) => crossner_natural(raw).map_or_else(|| raw.to_string(), str::to_string),
            (_, GoldVariant::Paper) => raw.to_string(),
        }
    }
}

/// Resolves dataset names to files under a data directory (`../shared/data` layout).
#[derive(Debug, Clone)]
pub struct Registry {
    root: PathBuf,
}

impl Registry {
    /// A registry over `data_dir`; fails early, with a hint, when the directory is missing.
    pub fn new(data_dir: impl AsRef<Path>) -> Result<Self> {
        let root = data_dir.as_ref().to_path_buf();
        if !root.is_dir() {
            return Err(Error::config(
                "--data-dir",
                format!(
                    "data directory {} does not exist or is not a directory: pass --data-dir <dir> or set RNER_DATA \
                     (the folder holding SOURCES.md, CrossNER/, InstructUIE-IE_INSTRUCTIONS-NER/, ...)",
                    root.display()
                ),
            ));
        }
        Ok(Registry { root })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Every registered dataset name, in registry order; needs no data directory.
    pub fn names() -> Vec<&'static str> {
        SPECS.iter().map(|s| s.name).collect()
    }

    /// The splits a dataset has (unknown names are a `--datasets` error).
    pub fn splits(name: &str) -> Result<Vec<&'static str>> {
        Ok(spec(name)?.splits.iter().map(|(s, _)| *s).collect())
    }

    /// Resolve `name`/`split` (unknown ones are a `--datasets` config error listing valid values).
    pub fn dataset(&self, name: &str, split: &str) -> Result<Dataset> {
        let spec = spec(name)?;
        let Some((split, rel)) = spec.splits.iter().find(|(s, _)| s.eq_ignore_ascii_case(split)) else {
            let valid: Vec<&str> = spec.splits.iter().map(|(s, _)| *s).collect();
            return Err(Error::config(
                "--datasets",
                format!("dataset `{}` has no split `{split}`; valid splits: {}", spec.name, valid.join(", ")),
            ));
        };
        Ok(Dataset {
            name: spec.name.to_string(),
            split: split.to_string(),
            path: self.root.join(rel),
            format: spec.format,
            sha256: OnceLock::new(),
        })
    }

    /// The file behind `name`/`split`.
    pub fn file(&self, name: &str, split: &str) -> Result<PathBuf> {
        Ok(self.dataset(name, split)?.path)
    }

    /// Examples of `name`/`split` through the paper's loader ([`GoldVariant::Paper`]).
    pub fn load(&self, name: &str, split: &str) -> Result<Vec<Example>> {
        self.load_variant(name, split, GoldVariant::Paper)
    }

    /// Examples of `name`/`split` with the chosen gold variant.
    pub fn load_variant(&self, name: &str, split: &str, variant: GoldVariant) -> Result<Vec<Example>> {
        self.dataset(name, split)?.examples(variant)
    }
}

fn spec(name: &str) -> Result<&'static Spec> {
    SPECS.iter().find(|s| s.name.eq_ignore_ascii_case(name.trim())).ok_or_else(|| {
        Error::config("--datasets", format!("unknown dataset `{name}`; valid names: {}", Registry::names().join(", ")))
    })
}

/// `n` examples drawn without replacement with a ChaCha8 RNG seeded by `seed`, returned in source
/// order so a subset run reads like the full file. All of them when `n >= examples.len()`.
pub fn sample(examples: &[Example], n: usize, seed: u64) -> Vec<Example> {
    if n >= examples.len() {
        return examples.to_vec();
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let idx: Vec<usize> = (0..examples.len()).collect();
    let mut chosen: Vec<usize> = idx.choose_multiple(&mut rng, n).copied().collect();
    chosen.sort_unstable();
    chosen.into_iter().map(|i| examples[i].clone()).collect()
}

/// A seeded `frac` share of the examples (`round(frac · len)`, `frac` clamped to `[0, 1]`, NaN as
/// 0), chosen as in [`sample`].
pub fn fraction(examples: &[Example], frac: f64, seed: u64) -> Vec<Example> {
    let frac = if frac.is_nan() { 0.0 } else { frac.clamp(0.0, 1.0) };
    let n = (frac * examples.len() as f64).round() as usize;
    sample(examples, n, seed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ex(i: usize) -> Example {
        Example {
            id: format!("d/test/{i}"),
            dataset: "d".into(),
            split: "test".into(),
            index: i,
            text: format!("s{i}"),
            tokens: None,
            gold: vec![],
            labels: vec![],
        }
    }

    #[test]
    fn samplers_are_seeded_and_ordered() {
        let all: Vec<Example> = (0..100).map(ex).collect();
        let a = sample(&all, 10, 7);
        assert_eq!(a, sample(&all, 10, 7));
        assert_ne!(a, sample(&all, 10, 8));
        assert_eq!(a.len(), 10);
        assert!(a.windows(2).all(|w| w[0].index < w[1].index));
        assert_eq!(sample(&all, 1000, 1).len(), 100);
        assert_eq!(fraction(&all, 0.25, 3).len(), 25);
        assert_eq!(fraction(&all, 2.0, 3).len(), 100);
        assert!(fraction(&all, f64::NAN, 3).is_empty());
    }

    #[test]
    fn names_and_errors() {
        let names = Registry::names();
        for z in ZERO_SHOT {
            assert!(names.contains(&z));
        }
        let uniq: HashSet<_> = names.iter().collect();
        assert_eq!(uniq.len(), names.len());
        let dir = std::env::temp_dir();
        let reg = Registry::new(&dir).unwrap();
        let err = reg.load("nope", "test").unwrap_err().to_string();
        assert!(err.starts_with("--datasets") && err.contains("crossner_ai"), "{err}");
        let err = reg.file("mit-movie-raw", "dev").unwrap_err().to_string();
        assert!(err.contains("train, test"), "{err}");
        assert_eq!(reg.dataset("CrossNER_AI", "TEST").unwrap().name, "crossner_ai");
        let err = Registry::new(dir.join("definitely-missing-rner-data")).unwrap_err().to_string();
        assert!(err.contains("RNER_DATA") && err.contains("--data-dir"), "{err}");
    }
}
