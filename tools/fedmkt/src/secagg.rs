//! Secure aggregation of adapters (Bonawitz et al., CCS 2017, semi-honest server): the
//! server learns the weighted sum of the clients' adapters, never one client's adapter, and
//! still recovers the sum when clients drop out after masking.
//!
//! Each step is a separate command run by its own party, with files in between:
//! 1. `keygen` (client k): an X25519 key pair and a self-mask seed; `public.json` is published.
//! 2. `share` (client k): Shamir shares (threshold t) of its X25519 secret and of its seed, one
//!    per other client, each encrypted with ChaCha20 under the pair's X25519 agreement.
//! 3. `mask` (client k): the weighted adapter `w·θ` and the weight `w`, fixed-point encoded
//!    as integers modulo 2^64 (`round(v·2^24)`), plus a self mask and, for every other client
//!    j, ± the ChaCha20 stream keyed by their agreement (+ when k < j): pairs cancel in a sum.
//! 4. `sum` (server): adds the masked files modulo 2^64.
//! 5. `reveal` (each surviving client): for clients present in the sum, its share of their
//!    seed; for clients that dropped out, its share of their X25519 secret — never both.
//! 6. `unmask` (server): rebuilds the seeds and the dropped clients' secrets from t reveals,
//!    removes the self masks and the dropped clients' pair masks, decodes, and divides by the
//!    summed weight: the weighted average adapter.
//!
//! Cryptography comes from maintained crates: `x25519-dalek`, `chacha20`, `sharks` (Shamir
//! over GF(256)). Fixed-point error: each value is off by at most 2^-25 per client before the
//! division by the total weight.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema};
use candle_core::{DType, Device, Tensor};
use chacha20::cipher::{KeyIvInit, StreamCipher};
use chacha20::ChaCha20;
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sharks::{Share, Sharks};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::cli::bad_input;
use crate::io::{self, Provenance};
use crate::model::lora::{read_adapter, save_adapter, Adapter, LoraSpec};

pub const MASKED_FORMAT: &str = "masked-adapter";
const FRAC_BITS: i32 = 24;

/// Purposes of the ChaCha20 streams, part of each nonce so no key stream is reused.
#[derive(Clone, Copy)]
enum Stream {
    PairMask = 0,
    SelfMask = 1,
    SecretShare = 2,
    SeedShare = 3,
}

fn nonce(round: u64, from: u32, stream: Stream) -> [u8; 12] {
    let mut n = [0u8; 12];
    n[..8].copy_from_slice(&round.to_le_bytes());
    n[8..11].copy_from_slice(&from.to_le_bytes()[..3]);
    n[11] = stream as u8;
    n
}

fn keystream_xor(key: &[u8; 32], nonce: [u8; 12], bytes: &mut [u8]) {
    ChaCha20::new(&(*key).into(), &nonce.into()).apply_keystream(bytes);
}

/// `n` pseudo-random words modulo 2^64 from a key.
fn mask_words(key: &[u8; 32], nonce: [u8; 12], n: usize) -> Vec<u64> {
    let mut bytes = vec![0u8; n * 8];
    keystream_xor(key, nonce, &mut bytes);
    bytes.chunks_exact(8).map(|c| u64::from_le_bytes(c.try_into().expect("8 bytes"))).collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(path: &Path, text: &str) -> Result<Vec<u8>> {
    (0..text.len())
        .step_by(2)
        .map(|i| {
            text.get(i..i + 2)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| bad_input(path, "malformed hex"))
        })
        .collect()
}

fn key32(path: &Path, text: &str) -> Result<[u8; 32]> {
    unhex(path, text)?.try_into().map_err(|_| bad_input(path, "a key is not 32 bytes"))
}

fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|e| bad_input(path, format!("cannot read: {e}")))?;
    serde_json::from_str(&text).map_err(|e| bad_input(path, format!("not a valid file of this step ({e})")))
}

fn write_json(path: &Path, value: &impl Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value)? + "\n";
    io::write_atomically(path, |f| Ok(std::io::Write::write_all(f, text.as_bytes())?))
}

#[derive(Serialize, Deserialize)]
pub struct PublicFile {
    pub party: u32,
    pub round: u64,
    pub key: String,
}

#[derive(Serialize, Deserialize)]
struct SecretFile {
    party: u32,
    round: u64,
    secret: String,
    seed: String,
}

/// Shares one client deals to another, encrypted for the recipient.
#[derive(Serialize, Deserialize)]
struct ShareFile {
    from: u32,
    to: u32,
    round: u64,
    threshold: u8,
    secret_share: String,
    seed_share: String,
}

/// What one surviving client reveals to the server for the unmasking.
#[derive(Serialize, Deserialize)]
struct RevealFile {
    from: u32,
    round: u64,
    /// Shares of the seeds of clients present in the sum, by party.
    seed_shares: BTreeMap<u32, String>,
    /// Shares of the X25519 secrets of clients that dropped out, by party.
    secret_shares: BTreeMap<u32, String>,
}

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

fn secret_file(dir: &Path) -> PathBuf {
    dir.join("secret.json")
}

/// `keygen`: a fresh X25519 key pair and self-mask seed for `party` in `round`.
pub fn keygen(party: u32, round: u64, out: &Path) -> Result<()> {
    let mut rng = rand::rng();
    let (mut secret, mut seed) = ([0u8; 32], [0u8; 32]);
    rng.fill_bytes(&mut secret);
    rng.fill_bytes(&mut seed);
    let public = PublicKey::from(&StaticSecret::from(secret));
    std::fs::create_dir_all(out)?;
    write_json(&secret_file(out), &SecretFile { party, round, secret: hex(&secret), seed: hex(&seed) })?;
    write_json(&out.join("public.json"), &PublicFile { party, round, key: hex(public.as_bytes()) })
}

struct Keys {
    party: u32,
    round: u64,
    secret: StaticSecret,
    seed: [u8; 32],
}

fn read_keys(dir: &Path) -> Result<Keys> {
    let path = secret_file(dir);
    let file: SecretFile = read_json(&path)?;
    Ok(Keys {
        party: file.party,
        round: file.round,
        secret: StaticSecret::from(key32(&path, &file.secret)?),
        seed: key32(&path, &file.seed)?,
    })
}

/// Every client's public key, all of one round, by party.
fn read_publics(paths: &[&Path], round: u64) -> Result<BTreeMap<u32, PublicKey>> {
    let mut publics = BTreeMap::new();
    for path in paths {
        let file: PublicFile = read_json(path)?;
        if file.round != round {
            return Err(bad_input(path, format!("is for round {}, not {round}", file.round)));
        }
        publics.insert(file.party, PublicKey::from(key32(path, &file.key)?));
    }
    Ok(publics)
}

fn agreement(secret: &StaticSecret, public: &PublicKey) -> [u8; 32] {
    *secret.diffie_hellman(public).as_bytes()
}

/// `share`: Shamir shares of this client's secret and seed for every client (itself
/// included), each encrypted under the pair's agreement; files `to-<party>.json` in `out`.
pub fn share(keys_dir: &Path, publics: &[&Path], threshold: u8, out: &Path) -> Result<()> {
    let keys = read_keys(keys_dir)?;
    let publics = read_publics(publics, keys.round)?;
    let n = publics.len();
    if threshold < 2 || threshold as usize > n {
        return Err(crate::cli::bad_usage(format!("--threshold must be within 2..={n}")));
    }
    let dealer = Sharks(threshold);
    let secret_shares: Vec<Share> = dealer.dealer(keys.secret.as_bytes()).take(n).collect();
    let seed_shares: Vec<Share> = dealer.dealer(&keys.seed).take(n).collect();
    std::fs::create_dir_all(out)?;
    for (i, (&to, public)) in publics.iter().enumerate() {
        let key = agreement(&keys.secret, public);
        let seal = |share: &Share, stream| {
            let mut bytes = Vec::from(share);
            keystream_xor(&key, nonce(keys.round, keys.party, stream), &mut bytes);
            hex(&bytes)
        };
        let file = ShareFile {
            from: keys.party,
            to,
            round: keys.round,
            threshold,
            secret_share: seal(&secret_shares[i], Stream::SecretShare),
            seed_share: seal(&seed_shares[i], Stream::SeedShare),
        };
        write_json(&out.join(format!("to-{to}.json")), &file)?;
    }
    Ok(())
}

fn encode(value: f64) -> u64 {
    (value * 2f64.powi(FRAC_BITS)).round() as i64 as u64
}

fn decode(word: u64) -> f64 {
    word as i64 as f64 / 2f64.powi(FRAC_BITS)
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

/// Pairwise mask of `party` with `other`: + when party < other, − otherwise.
fn add_pair_mask(words: &mut [u64], key: &[u8; 32], round: u64, party: u32, other: u32, sign: i8) {
    let stream = mask_words(key, nonce(round, party.min(other), Stream::PairMask), words.len());
    let plus = (party < other) == (sign > 0);
    for (w, m) in words.iter_mut().zip(stream) {
        *w = if plus { w.wrapping_add(m) } else { w.wrapping_sub(m) };
    }
}

fn add_self_mask(words: &mut [u64], seed: &[u8; 32], round: u64, party: u32, sign: i8) {
    let stream = mask_words(seed, nonce(round, party, Stream::SelfMask), words.len());
    for (w, m) in words.iter_mut().zip(stream) {
        *w = if sign > 0 { w.wrapping_add(m) } else { w.wrapping_sub(m) };
    }
}

fn write_words(path: &Path, words: Vec<u64>, provenance: &Provenance) -> Result<()> {
    let schema = Arc::new(Schema::new(vec![Field::new("word", DataType::UInt64, false)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(UInt64Array::from(words))])?;
    io::write_parquet(path, schema, &[batch], provenance)
}

struct Words {
    words: Vec<u64>,
    round: u64,
    parties: Vec<u32>,
    manifest: Manifest,
}

fn read_words(path: &Path) -> Result<Words> {
    let table = io::read_parquet(path, MASKED_FORMAT)?;
    let words = table.column::<UInt64Array>("word")?.iter().flat_map(|a| a.values().to_vec()).collect();
    let extra = &table.provenance.extra;
    let field = |k: &str| extra.get(k).cloned().ok_or_else(|| bad_input(path, format!("no fedmkt.{k}")));
    let manifest =
        serde_json::from_str(&field("manifest")?).map_err(|e| bad_input(path, format!("bad fedmkt.manifest ({e})")))?;
    let parties = field("parties")?
        .split(',')
        .map(|p| p.parse().map_err(|_| bad_input(path, "bad fedmkt.parties")))
        .collect::<Result<_>>()?;
    Ok(Words { words, round: field("round")?.parse()?, parties, manifest })
}

fn words_provenance(round: u64, parties: &[u32], manifest: &Manifest) -> Result<Provenance> {
    let parties: Vec<String> = parties.iter().map(u32::to_string).collect();
    Ok(Provenance::new(MASKED_FORMAT, 1, "aggregate")
        .extra("round", round)
        .extra("parties", parties.join(","))
        .extra("manifest", serde_json::to_string(manifest)?))
}

/// `mask`: this client's adapter times `weight`, and the weight, encoded and masked.
pub fn mask(keys_dir: &Path, publics: &[&Path], adapter_dir: &Path, weight: f64, out: &Path) -> Result<()> {
    let keys = read_keys(keys_dir)?;
    let publics = read_publics(publics, keys.round)?;
    let adapter = read_adapter(adapter_dir)?;
    let mut words = Vec::new();
    for tensor in adapter.tensors.values() {
        words.extend(
            tensor.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()?.into_iter().map(|v| encode(weight * v)),
        );
    }
    words.push(encode(weight));
    add_self_mask(&mut words, &keys.seed, keys.round, keys.party, 1);
    for (&other, public) in publics.iter().filter(|(&p, _)| p != keys.party) {
        add_pair_mask(&mut words, &agreement(&keys.secret, public), keys.round, keys.party, other, 1);
    }
    write_words(out, words, &words_provenance(keys.round, &[keys.party], &manifest_of(&adapter))?)
}

/// `sum`: the masked files added modulo 2^64 (one round, one manifest, distinct parties).
pub fn sum(masked: &[&Path], out: &Path) -> Result<()> {
    let mut total: Option<Words> = None;
    for path in masked {
        let part = read_words(path)?;
        let Some(acc) = total.as_mut() else {
            total = Some(part);
            continue;
        };
        if part.round != acc.round {
            return Err(bad_input(
                path,
                format!("is masked for round {}, the others for round {}", part.round, acc.round),
            ));
        }
        if part.manifest != acc.manifest || part.words.len() != acc.words.len() {
            return Err(bad_input(path, "holds another adapter shape than the others"));
        }
        if part.parties.iter().any(|p| acc.parties.contains(p)) {
            return Err(bad_input(path, "repeats a party already summed"));
        }
        acc.words.iter_mut().zip(&part.words).for_each(|(a, b)| *a = a.wrapping_add(*b));
        acc.parties.extend(&part.parties);
    }
    let mut total = total.ok_or_else(|| crate::cli::bad_usage("no masked files"))?;
    total.parties.sort_unstable();
    write_words(out, total.words, &words_provenance(total.round, &total.parties, &total.manifest)?)
}

/// `reveal`: this client's decrypted shares the server needs, given who is in the sum.
pub fn reveal(keys_dir: &Path, share_files: &[&Path], publics: &[&Path], sum_path: &Path, out: &Path) -> Result<()> {
    let keys = read_keys(keys_dir)?;
    let publics = read_publics(publics, keys.round)?;
    let summed = read_words(sum_path)?;
    if summed.round != keys.round {
        return Err(bad_input(sum_path, format!("is for round {}, the keys for round {}", summed.round, keys.round)));
    }
    let mut file = RevealFile {
        from: keys.party,
        round: keys.round,
        seed_shares: BTreeMap::new(),
        secret_shares: BTreeMap::new(),
    };
    for path in share_files {
        let share: ShareFile = read_json(path)?;
        if share.to != keys.party || share.round != keys.round {
            return Err(bad_input(path, format!("is not for party {} in round {}", keys.party, keys.round)));
        }
        let public = publics
            .get(&share.from)
            .ok_or_else(|| bad_input(path, format!("from party {}, whose public key is missing", share.from)))?;
        let key = agreement(&keys.secret, public);
        let open = |text: &str, stream| -> Result<String> {
            let mut bytes = unhex(path, text)?;
            keystream_xor(&key, nonce(keys.round, share.from, stream), &mut bytes);
            Ok(hex(&bytes))
        };
        if summed.parties.contains(&share.from) {
            file.seed_shares.insert(share.from, open(&share.seed_share, Stream::SeedShare)?);
        } else {
            file.secret_shares.insert(share.from, open(&share.secret_share, Stream::SecretShare)?);
        }
    }
    write_json(out, &file)
}

fn recover(threshold: u8, shares: &[Vec<u8>], path: &Path, what: &str) -> Result<[u8; 32]> {
    let shares: Vec<Share> = shares.iter().filter_map(|s| Share::try_from(s.as_slice()).ok()).collect();
    let secret =
        Sharks(threshold).recover(&shares).map_err(|e| bad_input(path, format!("cannot recover {what}: {e}")))?;
    secret.try_into().map_err(|_| bad_input(path, format!("{what} is not 32 bytes")))
}

/// `unmask`: remove every mask from the sum and write the weighted average adapter.
pub fn unmask(sum_path: &Path, reveals: &[&Path], publics: &[&Path], threshold: u8, out: &Path) -> Result<()> {
    let summed = read_words(sum_path)?;
    let publics = read_publics(publics, summed.round)?;
    let mut seed_shares: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    let mut secret_shares: BTreeMap<u32, Vec<Vec<u8>>> = BTreeMap::new();
    for path in reveals {
        let file: RevealFile = read_json(path)?;
        if file.round != summed.round {
            return Err(bad_input(path, format!("is for round {}, the sum for round {}", file.round, summed.round)));
        }
        for (party, text) in &file.seed_shares {
            seed_shares.entry(*party).or_default().push(unhex(path, text)?);
        }
        for (party, text) in &file.secret_shares {
            secret_shares.entry(*party).or_default().push(unhex(path, text)?);
        }
    }
    let mut words = summed.words.clone();
    for &party in &summed.parties {
        let seed = recover(
            threshold,
            seed_shares.get(&party).map_or(&[][..], Vec::as_slice),
            sum_path,
            &format!("the seed of party {party}"),
        )?;
        add_self_mask(&mut words, &seed, summed.round, party, -1);
    }
    for (&dropped, _) in publics.iter().filter(|(p, _)| !summed.parties.contains(p)) {
        let secret = StaticSecret::from(recover(
            threshold,
            secret_shares.get(&dropped).map_or(&[][..], Vec::as_slice),
            sum_path,
            &format!("the key of dropped party {dropped}"),
        )?);
        for &party in &summed.parties {
            add_pair_mask(&mut words, &agreement(&secret, &publics[&party]), summed.round, party, dropped, -1);
        }
    }
    let total_weight = decode(*words.last().expect("the weight word"));
    if !(total_weight > 0.0) {
        return Err(bad_input(sum_path, "the unmasked total weight is not positive (missing or wrong reveals?)"));
    }
    let manifest = &summed.manifest;
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
    save_adapter(out, &Adapter { spec, base_config: manifest.base_config.clone(), tensors }, "secure-average")?;
    eprintln!(
        "aggregate unmask: parties {:?} of {}, total weight {total_weight} -> {}",
        summed.parties,
        publics.len(),
        out.display()
    );
    Ok(())
}
