//! The ReasoningNER training stages: `cot` (stage 1, teacher rationales validated against gold).
pub mod cot;
