//! What a run found, as tables (`report`): accuracy beside every baseline with paired tests
//! and verdicts on the paper's claims, tasks side by side, bytes on the wire, and what KD did.
//!
//! - [`results`]: the paper's Tables 2–4 from `evaluate` summaries, pooled over seeds.
//! - [`evidence`]: per-sample outcomes and paired comparisons between two methods.
//! - [`stats`]: seeded bootstrap intervals and McNemar's exact test.
//! - [`tasks`]: several tasks' reports in one table (the paper's Table 2 layout).
//! - [`comms`]: bytes each party sent and received per round, and on a federation's wire.
//! - [`kd`]: what knowledge distillation did per round and party (`measure-kd` files).
pub mod comms;
pub mod evidence;
pub mod kd;
pub mod results;
pub mod stats;
pub mod tasks;
