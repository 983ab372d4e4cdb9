//! The ReasoningNER training stages: `cot` (stage 1, teacher rationales validated against gold),
//! `sft` (stage 2, CoT tuning), with the optimiser and checkpoints they share.
pub mod checkpoint;
pub mod cot;
pub mod optim;
pub mod sft;
