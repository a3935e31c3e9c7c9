//! Averaging the clients' adapters (`aggregate`): in the clear, or so that the server learns
//! only the sum.
//!
//! - [`fedavg`]: FedAvg of LoRA adapters, weighted by the samples each trained on.
//! - [`secagg`]: secure aggregation as Bonawitz et al. (CCS 2017, Figure 4), one command per
//!   party and round, safe against a lying server (threat model in FORMATS.md).
pub mod fedavg;
pub mod secagg;
