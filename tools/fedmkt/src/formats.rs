//! Names every reader and writer agrees on, in a module that imports nothing of ours: the
//! prefix of fedmkt's Parquet metadata keys, and the format names that `output` needs to
//! recognise an earlier output (so that `io`, `output` and the tools' modules form no circle).

/// Prefix of every key fedmkt writes into a Parquet file's key-value metadata.
pub const META_PREFIX: &str = "fedmkt.";

/// The `vocab-map` table (`vocab-map` → `align`).
pub const VOCAB_MAP_FORMAT: &str = "vocab-map";
