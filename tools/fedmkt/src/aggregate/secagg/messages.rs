//! The files the parties exchange and the state a client keeps between its commands, with
//! their readers: each message is checked (format, round, signature) where it is read.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use ed25519_dalek::{Signature, SigningKey, Verifier, VerifyingKey};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::cli::bad_input;
use crate::io::{self, Provenance};
use crate::output::{Commit, Kind};

use super::crypto;
use super::fixed_point::Manifest;
use super::MASKED_FORMAT;

/// Formats (`fedmkt_format`) of the secure-aggregation files.
pub(super) mod format {
    pub const SIGNING_KEY: &str = "secagg-signing-key";
    pub const VERIFY_KEY: &str = "secagg-verify-key";
    pub const SECRET: &str = "secagg-secret";
    pub const PUBLIC: &str = "secagg-public";
    pub const SHARE: &str = "secagg-share";
    pub const DEALT: &str = "secagg-dealt";
    pub const MASKED_STATE: &str = "secagg-masked";
    pub const SURVIVORS: &str = "secagg-survivors";
    pub const SIGNATURE: &str = "secagg-signature";
    pub const SIGNED: &str = "secagg-signed";
    pub const REVEAL: &str = "secagg-reveal";
}

/// A client's long-term Ed25519 signing key (the PKI of Figure 4's actively secure version).
#[derive(Serialize, Deserialize)]
pub(super) struct SigningKeyFile {
    pub(super) party: u32,
    #[serde(with = "hex")]
    pub(super) key: [u8; 32],
}

/// Its verification key: handed to every other client by a channel the server does not control.
#[derive(Serialize, Deserialize)]
pub(super) struct VerifyKeyFile {
    pub(super) party: u32,
    #[serde(with = "hex")]
    pub(super) key: [u8; 32],
}

/// Round 0, kept by the client: c^SK (share encryption), s^SK (masks), the self-mask seed
/// b_u, and the seed of its dealing (Shamir coefficients and nonces, so a rerun repeats it).
#[derive(Serialize, Deserialize)]
pub(super) struct SecretFile {
    pub(super) party: u32,
    pub(super) round: u64,
    #[serde(with = "hex")]
    pub(super) encryption: [u8; 32],
    #[serde(with = "hex")]
    pub(super) masking: [u8; 32],
    #[serde(with = "hex")]
    pub(super) seed: [u8; 32],
    #[serde(with = "hex")]
    pub(super) dealing: [u8; 32],
}

/// Round 0, published: c^PK ‖ s^PK and the client's signature on them.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct PublicFile {
    pub(super) party: u32,
    pub(super) round: u64,
    #[serde(with = "hex")]
    pub(super) encryption: [u8; 32],
    #[serde(with = "hex")]
    pub(super) masking: [u8; 32],
    #[serde(with = "hex")]
    pub(super) signature: Vec<u8>,
}

/// Round 1: e_{u,v}, the shares of s_u^SK and b_u for v, sealed for v.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub(super) struct ShareFile {
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) round: u64,
    pub(super) threshold: usize,
    /// U1 as the sender saw it (authenticated with the ciphertext).
    pub(super) parties: Vec<u32>,
    #[serde(with = "hex")]
    pub(super) nonce: [u8; 12],
    #[serde(with = "hex")]
    pub(super) ciphertext: Vec<u8>,
}

/// A client's state after round 1: the threshold and the verified public keys of U1.
#[derive(Serialize, Deserialize, PartialEq)]
pub(super) struct Dealt {
    pub(super) round: u64,
    pub(super) threshold: usize,
    pub(super) publics: Vec<PublicFile>,
}

/// A client's state after round 2: the ciphertexts it received (their senders are U2).
#[derive(Serialize, Deserialize, PartialEq)]
pub(super) struct MaskedState {
    pub(super) round: u64,
    pub(super) threshold: usize,
    pub(super) received: Vec<ShareFile>,
}

/// The server's message after round 2: who masked against whom (U2), whose input is in the sum (U3).
#[derive(Serialize, Deserialize, PartialEq, Clone)]
pub(super) struct Survivors {
    pub(super) round: u64,
    pub(super) threshold: usize,
    pub(super) masked_with: Vec<u32>,
    pub(super) survivors: Vec<u32>,
}

/// Round 3: σ'_u, the client's signature on U3.
#[derive(Serialize, Deserialize)]
pub(super) struct SignatureFile {
    pub(super) party: u32,
    pub(super) round: u64,
    pub(super) survivors: Vec<u32>,
    #[serde(with = "hex")]
    pub(super) signature: Vec<u8>,
}

/// A client's state after round 3: the one survivor set it signed this round.
#[derive(Serialize, Deserialize, PartialEq)]
pub(super) struct Signed {
    pub(super) round: u64,
    pub(super) survivors: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
pub(super) struct PartyShare {
    pub(super) party: u32,
    #[serde(with = "hex")]
    pub(super) share: Vec<u8>,
}

/// Round 4: b-shares of the survivors, s^SK-shares of those that dropped after round 1.
#[derive(Serialize, Deserialize)]
pub(super) struct RevealFile {
    pub(super) from: u32,
    pub(super) round: u64,
    pub(super) survivors: Vec<u32>,
    pub(super) seed_shares: Vec<PartyShare>,
    pub(super) key_shares: Vec<PartyShare>,
}

/// Read a secure-aggregation file, checking its `fedmkt_format` first.
pub(super) fn read_message<T: DeserializeOwned>(path: &Path, format: &str) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| bad_input(path, format!("cannot read: {e}")))?;
    let value: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad_input(path, format!("not JSON ({e})")))?;
    let found = value.get("fedmkt_format").and_then(serde_json::Value::as_str).unwrap_or("none");
    if found != format {
        return Err(bad_input(path, format!("expected a '{format}' file (fedmkt_format), found '{found}'")));
    }
    serde_json::from_value(value).map_err(|e| bad_input(path, format!("malformed '{format}' file ({e})")))
}

/// Stage a secure-aggregation file with its `fedmkt_format`.
pub(super) fn stage_message(commit: &mut Commit, path: &Path, format: &str, value: &impl Serialize) -> Result<()> {
    let mut json = serde_json::json!({ "fedmkt_format": format });
    json.as_object_mut()
        .expect("an object")
        .extend(serde_json::to_value(value)?.as_object().cloned().unwrap_or_default());
    let text = serde_json::to_string_pretty(&json)? + "\n";
    commit.file(path, Kind::json(format), |f| Ok(std::io::Write::write_all(f, text.as_bytes())?))
}

/// A client's round folder and the state files in it.
pub(super) struct ClientDir(pub(super) PathBuf);

impl ClientDir {
    pub(super) fn secret(&self) -> PathBuf {
        self.0.join("secret.json")
    }
    pub(super) fn public(&self) -> PathBuf {
        self.0.join("public.json")
    }
    pub(super) fn dealt(&self) -> PathBuf {
        self.0.join("dealt.json")
    }
    pub(super) fn masked(&self) -> PathBuf {
        self.0.join("masked.json")
    }
    pub(super) fn signed(&self) -> PathBuf {
        self.0.join("signed.json")
    }

    /// A state file of an earlier step; `step` names the command that writes it.
    pub(super) fn state<T: DeserializeOwned>(&self, path: PathBuf, format: &str, step: &str) -> Result<T> {
        if !path.is_file() {
            return Err(bad_input(&path, format!("missing: run `aggregate {step}` for this client first")));
        }
        read_message(&path, format)
    }
}

/// What a masked (or summed) file says of itself, in its Parquet metadata.
#[derive(Clone, PartialEq)]
pub(super) struct MaskedHeader {
    pub(super) round: u64,
    pub(super) threshold: usize,
    pub(super) masked_with: Vec<u32>,
    pub(super) parties: Vec<u32>,
    pub(super) manifest: Manifest,
}

pub(super) fn id_list(parties: &[u32]) -> String {
    parties.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

pub(super) fn parse_id_list(path: &Path, text: &str) -> Result<Vec<u32>> {
    text.split(',').map(|p| p.parse().map_err(|_| bad_input(path, format!("bad party list '{text}'")))).collect()
}

pub(super) fn stage_words(commit: &mut Commit, path: &Path, words: Vec<u64>, header: &MaskedHeader) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![Field::new("word", DataType::UInt64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(words))])?;
    let provenance = Provenance::new(MASKED_FORMAT, 2, "aggregate")
        .extra("round", header.round)
        .extra("threshold", header.threshold)
        .extra("masked_with", id_list(&header.masked_with))
        .extra("parties", id_list(&header.parties))
        .extra("manifest", serde_json::to_string(&header.manifest)?);
    io::stage_parquet(commit, path, schema, &[batch], &provenance)
}

pub(super) fn read_words(path: &Path) -> Result<(Vec<u64>, MaskedHeader)> {
    let table = io::read_parquet(path, MASKED_FORMAT)?;
    if table.provenance.format_version != 2 {
        return Err(bad_input(path, format!("format version {}, this tool reads 2", table.provenance.format_version)));
    }
    let words = table.values::<arrow_array::types::UInt64Type>("word")?;
    let extra = &table.provenance.extra;
    let field = |k: &str| extra.get(k).cloned().ok_or_else(|| bad_input(path, format!("no fedmkt.{k}")));
    let number = |k: &str| field(k)?.parse().map_err(|_| bad_input(path, format!("fedmkt.{k} is not a number")));
    let manifest =
        serde_json::from_str(&field("manifest")?).map_err(|e| bad_input(path, format!("bad fedmkt.manifest ({e})")))?;
    let header = MaskedHeader {
        round: number("round")?,
        threshold: number("threshold")? as usize,
        masked_with: parse_id_list(path, &field("masked_with")?)?,
        parties: parse_id_list(path, &field("parties")?)?,
        manifest,
    };
    let expected = header.manifest.tensors.iter().map(|(_, shape)| shape.iter().product::<usize>()).sum::<usize>() + 1;
    if words.len() != expected {
        return Err(bad_input(
            path,
            format!("holds {} words, its manifest's tensors and weight need {expected}", words.len()),
        ));
    }
    Ok((words, header))
}

/// One client's published keys, of `round`.
pub(super) fn read_public(path: &Path, round: u64) -> Result<PublicFile> {
    let public: PublicFile = read_message(path, format::PUBLIC)?;
    if public.round != round {
        return Err(bad_input(path, format!("is for round {}, not {round}", public.round)));
    }
    Ok(public)
}

/// The public keys the server relayed in round 1, by party (their signatures were checked by
/// every client; the server needs only the masking keys).
pub(super) fn read_public_keys(paths: &[&Path], round: u64) -> Result<BTreeMap<u32, PublicFile>> {
    paths.iter().map(|path| read_public(path, round).map(|p| (p.party, p))).collect()
}

pub(super) fn read_signing_key(dir: &Path) -> Result<(u32, SigningKey)> {
    let file: SigningKeyFile = read_message(&dir.join("signing-key.json"), format::SIGNING_KEY)?;
    Ok((file.party, SigningKey::from_bytes(&file.key)))
}

pub(super) fn read_secret(dir: &ClientDir) -> Result<SecretFile> {
    read_message(&dir.secret(), format::SECRET)
}

/// Verification keys by party, from files every client received outside the server's reach.
pub(super) fn read_verify_keys(paths: &[&Path]) -> Result<BTreeMap<u32, VerifyingKey>> {
    let mut keys = BTreeMap::new();
    for path in paths {
        let file: VerifyKeyFile = read_message(path, format::VERIFY_KEY)?;
        let key = VerifyingKey::from_bytes(&file.key).map_err(|e| bad_input(path, format!("not a key ({e})")))?;
        if keys.insert(file.party, key).is_some() {
            return Err(bad_input(path, format!("a second verification key for party {}", file.party)));
        }
    }
    Ok(keys)
}

/// The public keys of U1 as the server relayed them, each checked against its signature.
pub(super) fn read_publics(
    paths: &[&Path],
    round: u64,
    verify_keys: &BTreeMap<u32, VerifyingKey>,
) -> Result<Vec<PublicFile>> {
    let mut publics: Vec<PublicFile> = Vec::new();
    for path in paths {
        let public = read_public(path, round)?;
        if !verify(verify_keys, public.party, &advertised_message(&public), &public.signature) {
            return Err(bad_input(path, format!("party {}'s keys are not signed by its identity", public.party)));
        }
        let keys = [public.encryption, public.masking];
        if publics.iter().any(|p| p.party == public.party || [p.encryption, p.masking].iter().any(|k| keys.contains(k)))
        {
            return Err(bad_input(path, format!("repeats a party or a key (party {})", public.party)));
        }
        publics.push(public);
    }
    publics.sort_by_key(|p| p.party);
    Ok(publics)
}

pub(super) fn advertised_message(public: &PublicFile) -> Vec<u8> {
    crypto::signed_message(
        "advertise",
        public.round,
        &[&public.party.to_le_bytes(), &public.encryption, &public.masking],
    )
}

pub(super) fn verify(keys: &BTreeMap<u32, VerifyingKey>, party: u32, message: &[u8], signature: &[u8]) -> bool {
    let Some(key) = keys.get(&party) else { return false };
    Signature::from_slice(signature).is_ok_and(|s| key.verify(message, &s).is_ok())
}

pub(super) fn consistency_message(round: u64, survivors: &[u32]) -> Vec<u8> {
    let ids: Vec<u8> = survivors.iter().flat_map(|p| p.to_le_bytes()).collect();
    crypto::signed_message("consistency", round, &[&ids])
}

/// What a share's ciphertext is bound to: sender, receiver, round, threshold and U1.
pub(super) fn share_context(share: &ShareFile) -> Vec<u8> {
    let parties: Vec<u8> = share.parties.iter().flat_map(|p| p.to_le_bytes()).collect();
    let fields: [&[u8]; 4] =
        [&share.from.to_le_bytes(), &share.to.to_le_bytes(), &share.threshold.to_le_bytes(), &parties];
    crypto::signed_message("share", share.round, &fields)
}
