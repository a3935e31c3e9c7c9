//! Training a LoRA adapter (`distill`): the losses of Eq. 4 and 9–10, the optimiser and its
//! schedule, checkpoints, the training log, and the loop that ties them together.
//!
//! - [`kd`]: the task and sparse KD cross-entropies, teacher targets, Eq. 9–10's weights.
//! - [`optimizer`]: AdamW with its moments exposed, gradient clipping, warmup + cosine.
//! - [`checkpoint`]: a run's checkpoint beside its output, staged until it proves finite.
//! - [`log`]: one row per optimiser step (`training_log.parquet`).
//! - [`distill`]: the loop, in three parts: prepare a run, take a step, write the adapter.
pub mod checkpoint;
pub mod distill;
pub mod kd;
pub mod log;
pub mod optimizer;
