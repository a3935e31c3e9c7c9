//! fedmkt: federated mutual knowledge transfer between one server LLM and client SLMs.
//!
//! Every tool in `tools/` is a thin binary over one function of this library. Modules are
//! split by concern, not by tool, so that a stage can be re-used or replaced in isolation:
//!
//! - [`cli`]: the error model (bad input → exit 2, internal failure → exit 1) shared by all tools.
//! - [`io`]: Parquet with provenance metadata, content hashes.
//! - [`output`]: where a tool may write, and outputs that appear complete and together.
//! - [`data`]: task records, prompt templates, seeded splits (`prepare-data`).
//! - [`gguf`]: GGUF → Hugging Face model folder and `tokenizer.json` (`import-gguf`).
//! - [`tokens`]: tokenisation with byte offsets (`tokenize`).
//!
//! File formats are specified in `tools/FORMATS.md`.
pub mod aggregate;
pub mod align;
pub mod cli;
pub mod comms;
pub mod data;
pub mod distill;
pub mod eval;
pub mod evidence;
pub mod formats;
pub mod gguf;
pub mod inspect;
pub mod io;
pub mod kd_measure;
pub mod kd_report;
pub mod knowledge;
pub mod metrics;
pub mod model;
pub mod output;
pub mod report;
pub mod scoring;
pub mod secagg;
pub mod select;
pub mod stats;
pub mod task_table;
pub mod tokens;
pub mod train;
pub mod vocab;
