//! The ReasoningNER training stages: `cot` (stage 1, teacher rationales validated against gold),
//! `sft` (stage 2, CoT tuning), `grpo` with `reward` (stage 3, reasoning enhancement), and the
//! token batches, optimiser and checkpoints they share.
pub mod batch;
pub mod checkpoint;
pub mod cot;
pub mod grpo;
pub mod optim;
pub mod reward;
pub mod sft;
