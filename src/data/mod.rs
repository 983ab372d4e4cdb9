//! Benchmark data: readers for every format in `../shared/data`, the dataset registry, the paper's
//! label handling, and seeded samplers. Knows nothing about prompts or models.
pub mod formats;
pub mod labels;
pub mod registry;

use serde::{Deserialize, Serialize};

pub use labels::{is_valid_label, process_label, process_schema};
pub use registry::{Dataset, Registry, ZERO_SHOT};

/// A gold or predicted entity: surface text and (processed) label; `span` is a char range into
/// the sentence when the source gives or lets us recover one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entity {
    pub text: String,
    pub label: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub span: Option<(usize, usize)>,
}

impl Entity {
    pub fn new(text: impl Into<String>, label: impl Into<String>) -> Self {
        Entity { text: text.into(), label: label.into(), span: None }
    }
}

/// One sentence of a dataset, ready for prompting and scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Example {
    /// `<dataset>/<split>/<index>`
    pub id: String,
    pub dataset: String,
    pub split: String,
    /// position in the source file (0-based)
    pub index: usize,
    /// the sentence as the prompt shows it (InstructUIE: whitespace-tokenised text)
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<Vec<String>>,
    /// gold entities after the paper's loader (invalid and out-of-schema labels dropped)
    pub gold: Vec<Entity>,
    /// the processed schema: lower-cased, stripped, invalid removed, sorted
    pub labels: Vec<String>,
}
