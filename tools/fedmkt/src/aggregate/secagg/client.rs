//! A client's commands, one per round of Figure 4: `identity`, `keygen` (round 0), `share`
//! (1), `mask` (2), `confirm` (3), `reveal` (4). Each acts on the state the client kept, not
//! on what the server says later.
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use anyhow::Result;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use rand::{RngCore, SeedableRng};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::cli::{bad_input, bad_usage};
use crate::model::lora::read_adapter;
use crate::output::{self, Commit, Kind};

use super::crypto::{self, Purpose};
use super::fixed_point::{add_stream, encode_input, manifest_of, pair_seed, pair_sign, self_seed};
use super::messages::{
    advertised_message, consistency_message, format, read_message, read_publics, read_secret, read_signing_key,
    read_verify_keys, share_context, stage_message, stage_words, verify, ClientDir, Dealt, MaskedHeader, MaskedState,
    PartyShare, PublicFile, RevealFile, SecretFile, ShareFile, SignatureFile, Signed, SigningKeyFile, Survivors,
    VerifyKeyFile,
};
use super::shamir;
use super::MASKED_FORMAT;

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

pub(super) fn check_party(party: u32) -> Result<()> {
    if !(1..=255).contains(&party) {
        return Err(bad_usage(format!("--party {party}: must be within 1..=255 (it is the client's Shamir point)")));
    }
    Ok(())
}

pub(super) fn random_bytes() -> [u8; 32] {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    bytes
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

/// The threshold for `n` clients: given, or ⌊n/2⌋ + 1; one of n/2 or less only when allowed.
pub(super) fn choose_threshold(given: Option<usize>, n: usize, allow_low: bool) -> Result<usize> {
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

pub(super) fn share_key(own: &[u8; 32], other: &[u8; 32], round: u64, from: u32, to: u32) -> [u8; 32] {
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

/// The ciphertexts addressed to this client, from senders in U1 with the same threshold and
/// U1; its own among them. Their senders are U2.
pub(super) fn read_received(paths: &[&Path], secret: &SecretFile, dealt: &Dealt) -> Result<Vec<ShareFile>> {
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

/// The survivor set the server announced, checked against what this client masked against.
pub(super) fn read_survivors(path: &Path, secret: &SecretFile, state: &MaskedState) -> Result<Survivors> {
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

/// U4: at least t survivors whose signatures on the same U3 verify.
pub(super) fn check_signatures(
    paths: &[&Path],
    survivors: &Survivors,
    verify_keys: &BTreeMap<u32, VerifyingKey>,
) -> Result<()> {
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
pub(super) fn open_share(
    share: &ShareFile,
    secret: &SecretFile,
    dealt: &Dealt,
    keys_dir: &Path,
) -> Result<(Vec<u8>, Vec<u8>)> {
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
