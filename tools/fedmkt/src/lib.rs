//! fedmkt: federated mutual knowledge transfer between one server LLM and client SLMs.
//!
//! Every tool in `tools/` is a thin binary over one function of this library. Modules are
//! split by concern, not by tool, so that a stage can be re-used or replaced in isolation;
//! file formats are specified in `tools/FORMATS.md`.
//!
//! Shared ground:
//! - [`cli`]: the error model (bad input → exit 2, internal failure → exit 1) and shared flags.
//! - [`formats`]: format names and the metadata prefix, imported by the readers and writers.
//! - [`io`]: Parquet with provenance metadata, content hashes.
//! - [`output`]: where a tool may write, and outputs that appear complete and together.
//!
//! The stages, in the order of a round:
//! - [`data`]: task records, prompt templates, seeded splits (`prepare-data`).
//! - [`gguf`]: GGUF → Hugging Face model folder and `tokenizer.json` (`import-gguf`).
//! - [`tokens`]: tokenisation with byte offsets (`tokenize`).
//! - [`model`]: the decoders (one file per architecture), LoRA, the CPU training kernels.
//! - [`scoring`]: batched forward passes, logits only where a tool needs them.
//! - [`knowledge`]: a party's knowledge set S_k of the public set (`infer-logits`).
//! - [`vocab`]: the MinED vocabulary map between two tokenizers (`vocab-map`).
//! - [`align`]: a sender's knowledge set in the receiver's tokens and vocabulary (`align`).
//! - [`select`]: DualMinCE, per sample the sender to learn from (`select`).
//! - [`train`]: the losses, optimiser, checkpoints, log and loop of `distill`.
//! - [`aggregate`]: FedAvg and secure aggregation of adapters (`aggregate`).
//! - [`eval`]: multiple-choice accuracy and generations as lm-eval scores them (`evaluate`).
//! - [`metrics`]: Rouge-L and the other metrics of the packages papers report with.
//!
//! Looking inside:
//! - [`kd_measure`]: what KD sees, without training (`measure-kd`).
//! - [`report`]: results, paired tests, tasks, bytes sent, what KD did (`report`).
//! - [`inspect`]: any fedmkt file in words (`inspect`).
pub mod aggregate;
pub mod align;
pub mod cli;
pub mod data;
pub mod eval;
pub mod formats;
pub mod gguf;
pub mod inspect;
pub mod io;
pub mod kd_measure;
pub mod knowledge;
pub mod metrics;
pub mod model;
pub mod output;
pub mod profile;
pub mod report;
pub mod scoring;
pub mod select;
pub mod tokens;
pub mod train;
pub mod vocab;
