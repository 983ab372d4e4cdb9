//! rner: reproduce and extend ReasoningNER — data, prompts, engines, parsing, scoring, runs, reports.
pub mod data;
pub mod engine;
pub mod model;
pub mod error;
pub mod baseline;
#[cfg(feature = "llama")]
pub mod cli;
pub mod parse;
pub mod prompt;
pub mod report;
pub mod run;
pub mod score;
pub mod train;
#[cfg(feature = "llama")]
pub mod serve;
pub mod util;

pub use error::{Error, Result};
