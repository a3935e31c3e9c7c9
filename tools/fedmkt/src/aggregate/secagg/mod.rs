//! Secure aggregation of adapters: the protocol of Bonawitz et al., "Practical Secure
//! Aggregation for Privacy-Preserving Machine Learning", CCS 2017, §4 and Figure 4, in its
//! actively secure form (with the consistency check and signatures). The server learns the
//! weighted sum of the surviving clients' adapters and nothing else about any one of them,
//! and still recovers that sum when clients drop out. The threat model is in FORMATS.md
//! ("Secure aggregation").
//!
//! Each round of Figure 4 is one command run by its party, with files in between:
//!
//! | Figure 4 | command (party) | reads | writes |
//! |---|---|---|---|
//! | setup | `identity` (client) | – | signing key (kept), verification key (to every client, not via the server) |
//! | 0 AdvertiseKeys | `keygen` (client) | signing key | `secret.json` (kept), `public.json` (c^PK, s^PK, σ) |
//! | 1 ShareKeys | `share` (client) | the public keys of U1, verification keys | `to-v.json` for v ∈ U1 (AE ciphertexts) |
//! | 2 MaskedInputCollection | `mask` (client) | the ciphertexts addressed to it (their senders are U2) | masked adapter y_u |
//! | 2 (server) | `sum` (server) | the masked adapters (their senders are U3) | Σ y_u, `survivors.json` (U2, U3) |
//! | 3 ConsistencyCheck | `confirm` (client) | `survivors.json` | σ'_u on U3 |
//! | 4 Unmasking | `reveal` (client) | `survivors.json`, the σ' of U4, verification keys | b-shares of U3, s^SK-shares of U2 \ U3 |
//! | 4 (server) | `unmask` (server) | Σ y_u, the reveals (their senders are U5), public keys | the weighted average adapter |
//!
//! A client keeps its state of the round in its keys folder (`dealt.json`, `masked.json`,
//! `signed.json`) and acts on it, not on what the server sends later: it masks against the
//! clients whose ciphertexts it received, signs one survivor set per round, and reveals only
//! for the set it signed; a contradicting request is refused.
mod client;
mod crypto;
mod fixed_point;
mod messages;
mod server;
pub mod shamir;

pub use client::{confirm, identity, keygen, mask, reveal, share};
pub use messages::PublicFile;
pub use server::{sum, unmask};

pub const MASKED_FORMAT: &str = "masked-adapter";
