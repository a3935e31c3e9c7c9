//! Names every reader and writer agrees on, in a module that imports nothing of ours: the
//! prefix of fedmkt's Parquet metadata keys, the format names that `output` needs to
//! recognise an earlier output (so that `io`, `output` and the tools' modules form no circle),
//! and the party names a selected set reserves.

/// Prefix of every key fedmkt writes into a Parquet file's key-value metadata.
pub const META_PREFIX: &str = "fedmkt.";

/// The `vocab-map` table (`vocab-map` → `align`).
pub const VOCAB_MAP_FORMAT: &str = "vocab-map";

/// Words a `selected` set gives a meaning of its own (`party` `self`, the `receiver=` count of
/// `fedmkt.wins`): no sender may be named by them, or its wins would read as the receiver's.
pub const RESERVED_PARTY_NAMES: [&str; 2] = ["self", "receiver"];
