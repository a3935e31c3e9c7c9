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
mod crypto;
pub mod shamir;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use candle_core::{DType, Device, Tensor};
use ed25519_dalek::{Signature, Signer, SigningKey, Verifier, VerifyingKey};
use rand::{RngCore, SeedableRng};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::model::lora::{read_adapter, save_adapter, Adapter, LoraSpec};
use crate::output::{self, Commit, Kind};
use crypto::Purpose;

pub const MASKED_FORMAT: &str = "masked-adapter";
/// Fixed point: a value v is the integer round(v · 2^24) modulo 2^64.
const FRAC_BITS: i32 = 24;
/// Largest |weight · value| and weight `mask` encodes: 255 clients' sum stays below 2^(63−24).
const LARGEST_MASKED_VALUE: f64 = (1u64 << 30) as f64;

// ---------------------------------------------------------------- messages and state

/// Formats (`fedmkt_format`) of the secure-aggregation files.
mod format {
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
struct SigningKeyFile {
    party: u32,
    #[serde(with = "hex")]
    key: [u8; 32],
}

/// Its verification key: handed to every other client by a channel the server does not control.
#[derive(Serialize, Deserialize)]
struct VerifyKeyFile {
    party: u32,
    #[serde(with = "hex")]
    key: [u8; 32],
}

/// Round 0, kept by the client: c^SK (share encryption), s^SK (masks), the self-mask seed
/// b_u, and the seed of its dealing (Shamir coefficients and nonces, so a rerun repeats it).
#[derive(Serialize, Deserialize)]
struct SecretFile {
    party: u32,
    round: u64,
    #[serde(with = "hex")]
    encryption: [u8; 32],
    #[serde(with = "hex")]
    masking: [u8; 32],
    #[serde(with = "hex")]
    seed: [u8; 32],
    #[serde(with = "hex")]
    dealing: [u8; 32],
}

/// Round 0, published: c^PK ‖ s^PK and the client's signature on them.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
pub struct PublicFile {
    party: u32,
    round: u64,
    #[serde(with = "hex")]
    encryption: [u8; 32],
    #[serde(with = "hex")]
    masking: [u8; 32],
    #[serde(with = "hex")]
    signature: Vec<u8>,
}

/// Round 1: e_{u,v}, the shares of s_u^SK and b_u for v, sealed for v.
#[derive(Serialize, Deserialize, Clone, PartialEq)]
struct ShareFile {
    from: u32,
    to: u32,
    round: u64,
    threshold: usize,
    /// U1 as the sender saw it (authenticated with the ciphertext).
    parties: Vec<u32>,
    #[serde(with = "hex")]
    nonce: [u8; 12],
    #[serde(with = "hex")]
    ciphertext: Vec<u8>,
}

/// A client's state after round 1: the threshold and the verified public keys of U1.
#[derive(Serialize, Deserialize, PartialEq)]
struct Dealt {
    round: u64,
    threshold: usize,
    publics: Vec<PublicFile>,
}

/// A client's state after round 2: the ciphertexts it received (their senders are U2).
#[derive(Serialize, Deserialize, PartialEq)]
struct MaskedState {
    round: u64,
    threshold: usize,
    received: Vec<ShareFile>,
}

/// The server's message after round 2: who masked against whom (U2), whose input is in the sum (U3).
#[derive(Serialize, Deserialize, PartialEq, Clone)]
struct Survivors {
    round: u64,
    threshold: usize,
    masked_with: Vec<u32>,
    survivors: Vec<u32>,
}

/// Round 3: σ'_u, the client's signature on U3.
#[derive(Serialize, Deserialize)]
struct SignatureFile {
    party: u32,
    round: u64,
    survivors: Vec<u32>,
    #[serde(with = "hex")]
    signature: Vec<u8>,
}

/// A client's state after round 3: the one survivor set it signed this round.
#[derive(Serialize, Deserialize, PartialEq)]
struct Signed {
    round: u64,
    survivors: Vec<u32>,
}

#[derive(Serialize, Deserialize)]
struct PartyShare {
    party: u32,
    #[serde(with = "hex")]
    share: Vec<u8>,
}

/// Round 4: b-shares of the survivors, s^SK-shares of those that dropped after round 1.
#[derive(Serialize, Deserialize)]
struct RevealFile {
    from: u32,
    round: u64,
    survivors: Vec<u32>,
    seed_shares: Vec<PartyShare>,
    key_shares: Vec<PartyShare>,
}

/// Read a secure-aggregation file, checking its `fedmkt_format` first.
fn read_message<T: DeserializeOwned>(path: &Path, format: &str) -> Result<T> {
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
fn stage_message(commit: &mut Commit, path: &Path, format: &str, value: &impl Serialize) -> Result<()> {
    let mut json = serde_json::json!({ "fedmkt_format": format });
    json.as_object_mut()
        .expect("an object")
        .extend(serde_json::to_value(value)?.as_object().cloned().unwrap_or_default());
    let text = serde_json::to_string_pretty(&json)? + "\n";
    commit.file(path, Kind::json(format), |f| Ok(std::io::Write::write_all(f, text.as_bytes())?))
}

/// A client's round folder and the state files in it.
struct ClientDir(PathBuf);

impl ClientDir {
    fn secret(&self) -> PathBuf {
        self.0.join("secret.json")
    }
    fn public(&self) -> PathBuf {
        self.0.join("public.json")
    }
    fn dealt(&self) -> PathBuf {
        self.0.join("dealt.json")
    }
    fn masked(&self) -> PathBuf {
        self.0.join("masked.json")
    }
    fn signed(&self) -> PathBuf {
        self.0.join("signed.json")
    }

    /// A state file of an earlier step; `step` names the command that writes it.
    fn state<T: DeserializeOwned>(&self, path: PathBuf, format: &str, step: &str) -> Result<T> {
        if !path.is_file() {
            return Err(bad_input(&path, format!("missing: run `aggregate {step}` for this client first")));
        }
        read_message(&path, format)
    }
}

// ---------------------------------------------------------------- setup and round 0

/// `identity`: a client's long-term Ed25519 key pair; `verify-key.json` goes to every client.
pub fn identity(party: u32, out: &Path) -> Result<()> {
    check_party(party)?;
    let (signing, verify) = (out.join("signing-key.json"), out.join("verify-key.json"));
    output::claim(&[(&signing, Kind::json(format::SIGNING_KEY)), (&verify, Kind::json(format::VERIFY_KEY))], &[])?;
    if signing.exists() {
        return Err(bad_input(&signing, "exists: a client keeps one identity (remove it to make a new one)"));
    }
    let key = SigningKey::from_bytes(&random_bytes());
    let mut commit = Commit::new();
    stage_message(&mut commit, &signing, format::SIGNING_KEY, &SigningKeyFile { party, key: key.to_bytes() })?;
    let public = VerifyKeyFile { party, key: key.verifying_key().to_bytes() };
    stage_message(&mut commit, &verify, format::VERIFY_KEY, &public)?;
    commit.finish()
}

fn check_party(party: u32) -> Result<()> {
    if !(1..=255).contains(&party) {
        return Err(bad_usage(format!("--party {party}: must be within 1..=255 (it is the client's Shamir point)")));
    }
    Ok(())
}

fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes
}

fn read_signing_key(dir: &Path) -> Result<(u32, SigningKey)> {
    let file: SigningKeyFile = read_message(&dir.join("signing-key.json"), format::SIGNING_KEY)?;
    Ok((file.party, SigningKey::from_bytes(&file.key)))
}

fn advertised_message(public: &PublicFile) -> Vec<u8> {
    crypto::signed_message(
        "advertise",
        public.round,
        &[&public.party.to_le_bytes(), &public.encryption, &public.masking],
    )
}

/// `keygen` (round 0): fresh key pairs (c, s), seed b_u and dealing seed for `round`.
pub fn keygen(identity_dir: &Path, round: u64, out: &Path) -> Result<()> {
    let dir = ClientDir(out.to_path_buf());
    let signing_path = identity_dir.join("signing-key.json");
    let (secret_path, public_path) = (dir.secret(), dir.public());
    output::claim(
        &[(&secret_path, Kind::json(format::SECRET)), (&public_path, Kind::json(format::PUBLIC))],
        &[&signing_path],
    )?;
    if secret_path.exists() {
        return Err(bad_input(&secret_path, "exists: keys are made once per round (a new round takes a new folder)"));
    }
    let (party, signing) = read_signing_key(identity_dir)?;
    let secret = SecretFile {
        party,
        round,
        encryption: random_bytes(),
        masking: random_bytes(),
        seed: random_bytes(),
        dealing: random_bytes(),
    };
    let public_of = |bytes: [u8; 32]| PublicKey::from(&StaticSecret::from(bytes)).to_bytes();
    let mut public = PublicFile {
        party,
        round,
        encryption: public_of(secret.encryption),
        masking: public_of(secret.masking),
        signature: Vec::new(),
    };
    public.signature = signing.sign(&advertised_message(&public)).to_bytes().to_vec();
    let mut commit = Commit::new();
    stage_message(&mut commit, &secret_path, format::SECRET, &secret)?;
    stage_message(&mut commit, &public_path, format::PUBLIC, &public)?;
    commit.finish()
}

fn read_secret(dir: &ClientDir) -> Result<SecretFile> {
    read_message(&dir.secret(), format::SECRET)
}

/// Verification keys by party, from files every client received outside the server's reach.
fn read_verify_keys(paths: &[&Path]) -> Result<BTreeMap<u32, VerifyingKey>> {
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

fn verify(keys: &BTreeMap<u32, VerifyingKey>, party: u32, message: &[u8], signature: &[u8]) -> bool {
    let Some(key) = keys.get(&party) else { return false };
    Signature::from_slice(signature).is_ok_and(|s| key.verify(message, &s).is_ok())
}

// ---------------------------------------------------------------- round 1: ShareKeys

/// The public keys of U1 as the server relayed them, each checked against its signature.
fn read_publics(paths: &[&Path], round: u64, verify_keys: &BTreeMap<u32, VerifyingKey>) -> Result<Vec<PublicFile>> {
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

/// The threshold for `n` clients: given, or ⌊n/2⌋ + 1; one of n/2 or less only when allowed.
fn choose_threshold(given: Option<usize>, n: usize, allow_low: bool) -> Result<usize> {
    let t = given.unwrap_or(n / 2 + 1);
    if t < 2 || t > n {
        return Err(bad_usage(format!("--threshold {t}: must be within 2..={n} for {n} clients")));
    }
    if 2 * t <= n {
        if !allow_low {
            return Err(bad_usage(format!(
                "--threshold {t} of {n}: at most half the clients would suffice, so a server could unmask two disjoint \
                 groups; use more than {} (or --allow-low-threshold)",
                n / 2
            )));
        }
        eprintln!("aggregate: warning: --threshold {t} of {n} clients is not more than half");
    }
    Ok(t)
}

/// What a share's ciphertext is bound to: sender, receiver, round, threshold and U1.
fn share_context(share: &ShareFile) -> Vec<u8> {
    let parties: Vec<u8> = share.parties.iter().flat_map(|p| p.to_le_bytes()).collect();
    let fields: [&[u8]; 4] =
        [&share.from.to_le_bytes(), &share.to.to_le_bytes(), &share.threshold.to_le_bytes(), &parties];
    crypto::signed_message("share", share.round, &fields)
}

fn share_key(own: &[u8; 32], other: &[u8; 32], round: u64, from: u32, to: u32) -> [u8; 32] {
    crypto::agree(&StaticSecret::from(*own), &PublicKey::from(*other), Purpose::ShareEncryption, round, &[from, to])
}

/// `share` (round 1): verify U1's keys, Shamir-share s^SK and b_u t-of-|U1|, seal each pair
/// of shares for its receiver. Deterministic given the keys, U1 and t, so a rerun writes the
/// same bytes; a rerun with another U1 or t is refused.
pub fn share(
    keys_dir: &Path,
    public_paths: &[&Path],
    verify_paths: &[&Path],
    threshold: Option<usize>,
    allow_low: bool,
    out: &Path,
) -> Result<()> {
    let dir = ClientDir(keys_dir.to_path_buf());
    let secret = read_secret(&dir)?;
    let verify_keys = read_verify_keys(verify_paths)?;
    let publics = read_publics(public_paths, secret.round, &verify_keys)?;
    let parties: Vec<u32> = publics.iter().map(|p| p.party).collect();
    if !publics.contains(&read_message::<PublicFile>(&dir.public(), format::PUBLIC)?) {
        return Err(bad_usage(format!("--publics: party {}'s own keys are missing or not its own", secret.party)));
    }
    let threshold = choose_threshold(threshold, parties.len(), allow_low)?;
    let dealt = Dealt { round: secret.round, threshold, publics: publics.clone() };
    let outputs: Vec<PathBuf> = parties.iter().map(|v| out.join(format!("to-{v}.json"))).collect();
    let mut claimed: Vec<(&Path, Kind)> = outputs.iter().map(|p| (p.as_path(), Kind::json(format::SHARE))).collect();
    let dealt_path = dir.dealt();
    claimed.push((&dealt_path, Kind::json(format::DEALT)));
    let secret_path = dir.secret();
    output::claim(&claimed, &[&[secret_path.as_path()], public_paths, verify_paths].concat())?;
    if dealt_path.exists() && dir.state::<Dealt>(dealt_path.clone(), format::DEALT, "share")? != dealt {
        return Err(bad_input(
            &dealt_path,
            "this client already dealt its shares this round to other clients or another threshold",
        ));
    }
    let mut rng = rand_chacha::ChaCha20Rng::from_seed(crypto::derive(
        &secret.dealing,
        Purpose::Dealing,
        secret.round,
        &[secret.party],
    ));
    let xs: Vec<u8> = parties.iter().map(|&p| p as u8).collect();
    let key_shares = shamir::split(&secret.masking, threshold, &xs, &mut rng)?;
    let seed_shares = shamir::split(&secret.seed, threshold, &xs, &mut rng)?;
    let mut commit = Commit::new();
    stage_message(&mut commit, &dealt_path, format::DEALT, &dealt)?;
    for (i, public) in publics.iter().enumerate() {
        let mut nonce = [0u8; 12];
        rng.fill_bytes(&mut nonce);
        let mut file = ShareFile {
            from: secret.party,
            to: public.party,
            round: secret.round,
            threshold,
            parties: parties.clone(),
            nonce,
            ciphertext: Vec::new(),
        };
        let plaintext =
            [&file.from.to_le_bytes()[..], &file.to.to_le_bytes(), &key_shares[i], &seed_shares[i]].concat();
        let key = share_key(&secret.encryption, &public.encryption, secret.round, file.from, file.to);
        file.ciphertext = crypto::seal(&key, &nonce, &plaintext, &share_context(&file));
        stage_message(&mut commit, &outputs[i], format::SHARE, &file)?;
    }
    commit.finish()
}

// ---------------------------------------------------------------- round 2: MaskedInputCollection

/// What a masked vector encodes: tensor keys and shapes in order, and the adapter's spec.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
struct Manifest {
    tensors: Vec<(String, Vec<usize>)>,
    r: usize,
    alpha: f64,
    dropout: f64,
    targets: Vec<String>,
    base_config: String,
}

fn manifest_of(adapter: &Adapter) -> Manifest {
    Manifest {
        tensors: adapter.tensors.iter().map(|(k, t)| (k.clone(), t.dims().to_vec())).collect(),
        r: adapter.spec.r,
        alpha: adapter.spec.alpha,
        dropout: adapter.spec.dropout,
        targets: adapter.spec.targets.clone(),
        base_config: adapter.base_config.clone(),
    }
}

fn encode(value: f64) -> u64 {
    (value * 2f64.powi(FRAC_BITS)).round() as i64 as u64
}

fn decode(word: u64) -> f64 {
    word as i64 as f64 / 2f64.powi(FRAC_BITS)
}

/// x_u: the weighted adapter w·θ, then w, as fixed-point words; refuses values that are not
/// finite or too large to sum without overflow.
fn encode_input(adapter: &Adapter, weight: f64, adapter_dir: &Path) -> Result<Vec<u64>> {
    if !(weight.is_finite() && weight > 0.0 && weight <= LARGEST_MASKED_VALUE) {
        return Err(bad_usage(format!("--weight {weight}: must be a positive number up to 2^30")));
    }
    let mut words = Vec::new();
    for (key, tensor) in &adapter.tensors {
        for v in tensor.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()? {
            let scaled = weight * v;
            if !(scaled.is_finite() && scaled.abs() <= LARGEST_MASKED_VALUE) {
                return Err(bad_input(
                    adapter_dir,
                    format!("'{key}' holds {v}, which cannot be masked (weight {weight})"),
                ));
            }
            words.push(encode(scaled));
        }
    }
    words.push(encode(weight));
    Ok(words)
}

/// Add `sign` · PRG(seed) to the words modulo 2^64.
fn add_stream(words: &mut [u64], seed: &[u8; 32], sign: i8) {
    let stream = crypto::prg_words(seed, words.len());
    for (w, m) in words.iter_mut().zip(stream) {
        *w = if sign > 0 { w.wrapping_add(m) } else { w.wrapping_sub(m) };
    }
}

/// Δ_{u,v}: +1 when u > v, −1 when u < v (Figure 4), so p_{u,v} + p_{v,u} = 0.
fn pair_sign(u: u32, v: u32) -> i8 {
    if u > v {
        1
    } else {
        -1
    }
}

fn pair_seed(own_masking: &[u8; 32], other_masking: &[u8; 32], round: u64, u: u32, v: u32) -> [u8; 32] {
    let key = StaticSecret::from(*own_masking);
    crypto::agree(&key, &PublicKey::from(*other_masking), Purpose::PairMask, round, &[u.min(v), u.max(v)])
}

fn self_seed(seed: &[u8; 32], round: u64, party: u32) -> [u8; 32] {
    crypto::derive(seed, Purpose::SelfMask, round, &[party])
}

/// The ciphertexts addressed to this client, from senders in U1 with the same threshold and
/// U1; its own among them. Their senders are U2.
fn read_received(paths: &[&Path], secret: &SecretFile, dealt: &Dealt) -> Result<Vec<ShareFile>> {
    let parties: Vec<u32> = dealt.publics.iter().map(|p| p.party).collect();
    let mut received: Vec<ShareFile> = Vec::new();
    for path in paths {
        let share: ShareFile = read_message(path, format::SHARE)?;
        if share.to != secret.party || share.round != secret.round {
            return Err(bad_input(path, format!("is not for party {} in round {}", secret.party, secret.round)));
        }
        if !parties.contains(&share.from) {
            return Err(bad_input(
                path,
                format!("comes from party {}, which advertised no keys in this round (not in U1)", share.from),
            ));
        }
        if share.parties != parties || share.threshold != dealt.threshold {
            return Err(bad_input(
                path,
                format!("party {} dealt to other clients or another threshold than this one", share.from),
            ));
        }
        if received.iter().any(|r| r.from == share.from) {
            return Err(bad_input(path, format!("a second share from party {}", share.from)));
        }
        received.push(share);
    }
    received.sort_by_key(|s| s.from);
    if !received.iter().any(|s| s.from == secret.party) {
        return Err(bad_usage(format!("--shares: party {}'s own share is missing", secret.party)));
    }
    if received.len() < dealt.threshold {
        return Err(bad_usage(format!(
            "--shares: {} clients completed the sharing, {} needed",
            received.len(),
            dealt.threshold
        )));
    }
    Ok(received)
}

/// `mask` (round 2): y_u = x_u + PRG(b_u) + Σ_{v ∈ U2 \ {u}} Δ_{u,v}·PRG(s_{u,v}) mod 2^64,
/// U2 being the senders of the ciphertexts this client received.
pub fn mask(keys_dir: &Path, shares: &[&Path], adapter_dir: &Path, weight: f64, out: &Path) -> Result<()> {
    let dir = ClientDir(keys_dir.to_path_buf());
    let state_path = dir.masked();
    let mut inputs = vec![adapter_dir];
    inputs.extend(shares);
    output::claim(&[(&state_path, Kind::json(format::MASKED_STATE)), (out, Kind::parquet(MASKED_FORMAT))], &inputs)?;
    let secret = read_secret(&dir)?;
    let dealt: Dealt = dir.state(dir.dealt(), format::DEALT, "share")?;
    let state = MaskedState {
        round: secret.round,
        threshold: dealt.threshold,
        received: read_received(shares, &secret, &dealt)?,
    };
    if state_path.exists() && dir.state::<MaskedState>(state_path.clone(), format::MASKED_STATE, "mask")? != state {
        return Err(bad_input(&state_path, "this client already masked its input this round against other clients"));
    }
    let adapter = read_adapter(adapter_dir)?;
    let mut words = encode_input(&adapter, weight, adapter_dir)?;
    add_stream(&mut words, &self_seed(&secret.seed, secret.round, secret.party), 1);
    let masked_with: Vec<u32> = state.received.iter().map(|s| s.from).collect();
    for public in dealt.publics.iter().filter(|p| p.party != secret.party && masked_with.contains(&p.party)) {
        let seed = pair_seed(&secret.masking, &public.masking, secret.round, secret.party, public.party);
        add_stream(&mut words, &seed, pair_sign(secret.party, public.party));
    }
    let header = MaskedHeader {
        round: secret.round,
        threshold: dealt.threshold,
        masked_with,
        parties: vec![secret.party],
        manifest: manifest_of(&adapter),
    };
    let mut commit = Commit::new();
    stage_message(&mut commit, &state_path, format::MASKED_STATE, &state)?;
    stage_words(&mut commit, out, words, &header)?;
    commit.finish()
}

/// What a masked (or summed) file says of itself, in its Parquet metadata.
#[derive(Clone, PartialEq)]
struct MaskedHeader {
    round: u64,
    threshold: usize,
    masked_with: Vec<u32>,
    parties: Vec<u32>,
    manifest: Manifest,
}

fn id_list(parties: &[u32]) -> String {
    parties.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

fn parse_id_list(path: &Path, text: &str) -> Result<Vec<u32>> {
    text.split(',').map(|p| p.parse().map_err(|_| bad_input(path, format!("bad party list '{text}'")))).collect()
}

fn stage_words(commit: &mut Commit, path: &Path, words: Vec<u64>, header: &MaskedHeader) -> Result<()> {
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

fn read_words(path: &Path) -> Result<(Vec<u64>, MaskedHeader)> {
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

/// `sum` (server, end of round 2): Σ y_u mod 2^64 over the masked files (their senders are
/// U3), and `survivors.json`, the message of U2 and U3 to every survivor.
pub fn sum(masked: &[&Path], out: &Path, survivors_out: &Path) -> Result<()> {
    output::claim(&[(survivors_out, Kind::json(format::SURVIVORS)), (out, Kind::parquet(MASKED_FORMAT))], masked)?;
    let mut total: Option<(Vec<u64>, MaskedHeader)> = None;
    for path in masked {
        let (words, part) = read_words(path)?;
        let Some((acc, header)) = total.as_mut() else {
            total = Some((words, part));
            continue;
        };
        let same = MaskedHeader { parties: header.parties.clone(), ..part.clone() };
        if same != *header || words.len() != acc.len() {
            return Err(bad_input(
                path,
                "was masked in another round, with another threshold or set of clients, or holds another adapter shape",
            ));
        }
        if part.parties.iter().any(|p| header.parties.contains(p)) {
            return Err(bad_input(path, "repeats a party already summed"));
        }
        if part.parties.iter().any(|p| !header.masked_with.contains(p)) {
            return Err(bad_input(path, "comes from a party outside the set the inputs were masked against"));
        }
        acc.iter_mut().zip(&words).for_each(|(a, b)| *a = a.wrapping_add(*b));
        header.parties.extend(&part.parties);
    }
    let (words, mut header) = total.ok_or_else(|| bad_usage("--masked: no masked files"))?;
    header.parties.sort_unstable();
    if header.parties.len() < header.threshold {
        return Err(bad_usage(format!(
            "--masked: {} inputs, the threshold is {}",
            header.parties.len(),
            header.threshold
        )));
    }
    let survivors = Survivors {
        round: header.round,
        threshold: header.threshold,
        masked_with: header.masked_with.clone(),
        survivors: header.parties.clone(),
    };
    let mut commit = Commit::new();
    stage_message(&mut commit, survivors_out, format::SURVIVORS, &survivors)?;
    stage_words(&mut commit, out, words, &header)?;
    commit.finish()
}

// ---------------------------------------------------------------- round 3: ConsistencyCheck

fn consistency_message(round: u64, survivors: &[u32]) -> Vec<u8> {
    let ids: Vec<u8> = survivors.iter().flat_map(|p| p.to_le_bytes()).collect();
    crypto::signed_message("consistency", round, &[&ids])
}

/// The survivor set the server announced, checked against what this client masked against.
fn read_survivors(path: &Path, secret: &SecretFile, state: &MaskedState) -> Result<Survivors> {
    let survivors: Survivors = read_message(path, format::SURVIVORS)?;
    let masked_with: Vec<u32> = state.received.iter().map(|s| s.from).collect();
    let problem = if survivors.round != secret.round || survivors.threshold != state.threshold {
        Some(format!(
            "is for round {} with threshold {}, this client's is round {} with {}",
            survivors.round, survivors.threshold, secret.round, state.threshold
        ))
    } else if survivors.masked_with != masked_with || survivors.survivors.iter().any(|p| !masked_with.contains(p)) {
        Some(format!(
            "names clients {:?} / {:?}; this client masked against {masked_with:?}",
            survivors.masked_with, survivors.survivors
        ))
    } else if !survivors.survivors.contains(&secret.party) {
        Some(format!("leaves this client ({}) out of the sum: it reveals nothing", secret.party))
    } else if survivors.survivors.len() < state.threshold
        || !survivors.survivors.is_sorted()
        || survivors.survivors.windows(2).any(|w| w[0] == w[1])
    {
        Some(format!("lists {} distinct survivors, the threshold is {}", survivors.survivors.len(), state.threshold))
    } else {
        None
    };
    problem.map_or(Ok(survivors), |p| Err(bad_input(path, p)))
}

/// `confirm` (round 3): sign U3 — once per round; another set in the same round is refused.
pub fn confirm(keys_dir: &Path, identity_dir: &Path, survivors_path: &Path, out: &Path) -> Result<()> {
    let dir = ClientDir(keys_dir.to_path_buf());
    let signed_path = dir.signed();
    output::claim(
        &[(&signed_path, Kind::json(format::SIGNED)), (out, Kind::json(format::SIGNATURE))],
        &[survivors_path],
    )?;
    let secret = read_secret(&dir)?;
    let state: MaskedState = dir.state(dir.masked(), format::MASKED_STATE, "mask")?;
    let survivors = read_survivors(survivors_path, &secret, &state)?;
    let signed = Signed { round: secret.round, survivors: survivors.survivors.clone() };
    if signed_path.exists() && dir.state::<Signed>(signed_path.clone(), format::SIGNED, "confirm")? != signed {
        return Err(bad_input(
            survivors_path,
            "differs from the survivor set this client already signed this round (a lying server?)",
        ));
    }
    let (party, signing) = read_signing_key(identity_dir)?;
    if party != secret.party {
        return Err(bad_input(
            identity_dir,
            format!("is party {party}'s identity, the keys are party {}'s", secret.party),
        ));
    }
    let signature = signing.sign(&consistency_message(secret.round, &signed.survivors)).to_bytes().to_vec();
    let file = SignatureFile { party, round: secret.round, survivors: signed.survivors.clone(), signature };
    let mut commit = Commit::new();
    stage_message(&mut commit, &signed_path, format::SIGNED, &signed)?;
    stage_message(&mut commit, out, format::SIGNATURE, &file)?;
    commit.finish()
}

// ---------------------------------------------------------------- round 4: Unmasking

/// U4: at least t survivors whose signatures on the same U3 verify.
fn check_signatures(paths: &[&Path], survivors: &Survivors, verify_keys: &BTreeMap<u32, VerifyingKey>) -> Result<()> {
    let message = consistency_message(survivors.round, &survivors.survivors);
    let mut signers = BTreeSet::new();
    for path in paths {
        let file: SignatureFile = read_message(path, format::SIGNATURE)?;
        if file.round != survivors.round
            || file.survivors != survivors.survivors
            || !survivors.survivors.contains(&file.party)
        {
            return Err(bad_input(
                path,
                format!("party {} signed another survivor set (the server told clients different sets?)", file.party),
            ));
        }
        if !verify(verify_keys, file.party, &message, &file.signature) {
            return Err(bad_input(path, format!("party {}'s signature does not verify", file.party)));
        }
        signers.insert(file.party);
    }
    if signers.len() < survivors.threshold {
        return Err(bad_usage(format!(
            "--signatures: {} survivors signed, {} needed",
            signers.len(),
            survivors.threshold
        )));
    }
    Ok(())
}

/// Open a received ciphertext: (share of s_v^SK, share of b_v), checking who sent it to whom.
fn open_share(share: &ShareFile, secret: &SecretFile, dealt: &Dealt, keys_dir: &Path) -> Result<(Vec<u8>, Vec<u8>)> {
    let sender = dealt.publics.iter().find(|p| p.party == share.from).ok_or_else(|| {
        bad_input(keys_dir, format!("a share from party {}, which advertised no keys (not in U1)", share.from))
    })?;
    let key = share_key(&secret.encryption, &sender.encryption, share.round, share.from, share.to);
    let plain = crypto::open(&key, &share.nonce, &share.ciphertext, &share_context(share))
        .filter(|p| p.len() == 72 && p[..4] == share.from.to_le_bytes() && p[4..8] == share.to.to_le_bytes())
        .ok_or_else(|| bad_input(keys_dir, format!("the share from party {} does not authenticate", share.from)))?;
    Ok((plain[8..40].to_vec(), plain[40..].to_vec()))
}

/// `reveal` (round 4): for the survivor set this client signed, and only once at least t
/// survivors signed it too: its shares of b_v for v ∈ U3 and of s_v^SK for v ∈ U2 \ U3.
pub fn reveal(
    keys_dir: &Path,
    survivors_path: &Path,
    signatures: &[&Path],
    verify_keys: &[&Path],
    out: &Path,
) -> Result<()> {
    let dir = ClientDir(keys_dir.to_path_buf());
    let mut inputs = vec![survivors_path];
    inputs.extend(signatures);
    output::claim(&[(out, Kind::json(format::REVEAL))], &inputs)?;
    let secret = read_secret(&dir)?;
    let dealt: Dealt = dir.state(dir.dealt(), format::DEALT, "share")?;
    let state: MaskedState = dir.state(dir.masked(), format::MASKED_STATE, "mask")?;
    let signed: Signed = dir.state(dir.signed(), format::SIGNED, "confirm")?;
    let survivors = read_survivors(survivors_path, &secret, &state)?;
    if survivors.survivors != signed.survivors {
        return Err(bad_input(
            survivors_path,
            format!("names survivors {:?}; this client signed {:?} this round", survivors.survivors, signed.survivors),
        ));
    }
    check_signatures(signatures, &survivors, &read_verify_keys(verify_keys)?)?;
    let mut file = RevealFile {
        from: secret.party,
        round: secret.round,
        survivors: survivors.survivors.clone(),
        seed_shares: Vec::new(),
        key_shares: Vec::new(),
    };
    for share in &state.received {
        let (key_share, seed_share) = open_share(share, &secret, &dealt, keys_dir)?;
        if survivors.survivors.contains(&share.from) {
            file.seed_shares.push(PartyShare { party: share.from, share: seed_share });
        } else {
            file.key_shares.push(PartyShare { party: share.from, share: key_share });
        }
    }
    let mut commit = Commit::new();
    stage_message(&mut commit, out, format::REVEAL, &file)?;
    commit.finish()
}

/// Shares by the party they belong to, each with its revealer's point.
type SharesByParty = BTreeMap<u32, Vec<(u8, Vec<u8>)>>;

fn read_reveals(paths: &[&Path], header: &MaskedHeader) -> Result<(SharesByParty, SharesByParty)> {
    let (mut seeds, mut keys) = (SharesByParty::new(), SharesByParty::new());
    let mut revealers = BTreeSet::new();
    for path in paths {
        let file: RevealFile = read_message(path, format::REVEAL)?;
        let stranger = !header.parties.contains(&file.from);
        if file.round != header.round || file.survivors != header.parties || stranger || !revealers.insert(file.from) {
            return Err(bad_input(
                path,
                format!("party {}'s reveal is for another round or survivor set, or repeated", file.from),
            ));
        }
        for (list, into) in [(file.seed_shares, &mut seeds), (file.key_shares, &mut keys)] {
            for s in list {
                into.entry(s.party).or_default().push((file.from as u8, s.share));
            }
        }
    }
    if revealers.len() < header.threshold {
        return Err(bad_usage(format!("--reveals: {} clients revealed, {} needed", revealers.len(), header.threshold)));
    }
    Ok((seeds, keys))
}

fn rebuild(shares: &SharesByParty, party: u32, threshold: usize, what: &str, sum_path: &Path) -> Result<[u8; 32]> {
    let list: Vec<(u8, &[u8])> =
        shares.get(&party).map_or(Vec::new(), |l| l.iter().map(|(x, s)| (*x, s.as_slice())).collect());
    let secret = shamir::recover(&list, threshold)
        .map_err(|e| bad_input(sum_path, format!("cannot rebuild {what} of party {party}: {e}")))?;
    secret.try_into().map_err(|_| bad_input(sum_path, format!("{what} of party {party} is not 32 bytes")))
}

/// The public keys the server relayed in round 1, by party (their signatures were checked by
/// every client; the server needs only the masking keys).
fn read_public_keys(paths: &[&Path], round: u64) -> Result<BTreeMap<u32, PublicFile>> {
    paths.iter().map(|path| read_public(path, round).map(|p| (p.party, p))).collect()
}

/// One client's published keys, of `round`.
fn read_public(path: &Path, round: u64) -> Result<PublicFile> {
    let public: PublicFile = read_message(path, format::PUBLIC)?;
    if public.round != round {
        return Err(bad_input(path, format!("is for round {}, not {round}", public.round)));
    }
    Ok(public)
}

/// `unmask` (server): Σ x_u = Σ y_u − Σ_{u∈U3} PRG(b_u) − Σ_{u∈U3, v∈U2\U3} Δ_{u,v}·PRG(s_{u,v}),
/// then divided by the summed weight: the weighted average adapter.
pub fn unmask(sum_path: &Path, reveals: &[&Path], publics: &[&Path], out: &Path) -> Result<()> {
    output::claim(&[(out, Kind::Adapter)], &[&[sum_path], reveals, publics].concat())?;
    let (mut words, header) = read_words(sum_path)?;
    let publics = read_public_keys(publics, header.round)?;
    let (seed_shares, key_shares) = read_reveals(reveals, &header)?;
    for &u in &header.parties {
        let seed = rebuild(&seed_shares, u, header.threshold, "the seed", sum_path)?;
        add_stream(&mut words, &self_seed(&seed, header.round, u), -1);
    }
    for &v in header.masked_with.iter().filter(|v| !header.parties.contains(v)) {
        let masking = rebuild(&key_shares, v, header.threshold, "the masking key", sum_path)?;
        let public = publics.get(&v).ok_or_else(|| bad_usage(format!("--publics: party {v}'s keys are missing")))?;
        if PublicKey::from(&StaticSecret::from(masking)).to_bytes() != public.masking {
            return Err(bad_input(
                sum_path,
                format!("the rebuilt masking key of party {v} does not match its public key (a wrong share)"),
            ));
        }
        for &u in &header.parties {
            let public_u =
                publics.get(&u).ok_or_else(|| bad_usage(format!("--publics: party {u}'s keys are missing")))?;
            add_stream(&mut words, &pair_seed(&masking, &public_u.masking, header.round, v, u), -pair_sign(u, v));
        }
    }
    let adapter = decode_average(&words, &header.manifest, header.parties.len(), sum_path)?;
    save_adapter(out, &adapter, "secure-average")?;
    eprintln!(
        "aggregate unmask: parties {:?} of {:?}, total weight {} -> {}",
        header.parties,
        header.masked_with,
        decode(*words.last().expect("the weight word")),
        out.display()
    );
    Ok(())
}

fn decode_average(words: &[u64], manifest: &Manifest, parties: usize, sum_path: &Path) -> Result<Adapter> {
    let total_weight = decode(*words.last().ok_or_else(|| bad_input(sum_path, "holds no words"))?);
    // Each survivor masked a weight in (0, 2^30]: any other total is a wrong reveal or sum.
    let largest = parties as f64 * LARGEST_MASKED_VALUE;
    if total_weight.is_nan() || total_weight <= 0.0 || total_weight > largest {
        return Err(bad_input(
            sum_path,
            format!(
                "the unmasked total weight {total_weight} is not within (0, {parties} · 2^30] (a wrong reveal or sum)"
            ),
        ));
    }
    let mut tensors = BTreeMap::new();
    let mut offset = 0;
    for (key, shape) in &manifest.tensors {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = words[offset..offset + n].iter().map(|&w| (decode(w) / total_weight) as f32).collect();
        tensors.insert(key.clone(), Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?);
        offset += n;
    }
    let spec =
        LoraSpec { r: manifest.r, alpha: manifest.alpha, dropout: manifest.dropout, targets: manifest.targets.clone() };
    Ok(Adapter { spec, base_config: manifest.base_config.clone(), tensors })
}
