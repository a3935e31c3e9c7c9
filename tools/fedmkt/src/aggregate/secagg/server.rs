//! The server's commands: `sum` of the masked adapters (round 2) and `unmask` (round 4),
//! which rebuilds the dropped clients' pair masks and the survivors' own masks from t shares.
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use anyhow::Result;
use x25519_dalek::{PublicKey, StaticSecret};

use crate::cli::{bad_input, bad_usage};
use crate::model::lora::save_adapter;
use crate::output::{self, Commit, Kind};

use super::fixed_point::{add_stream, decode, decode_average, pair_seed, pair_sign, self_seed};
use super::messages::{
    format, read_message, read_public_keys, read_words, stage_message, stage_words, MaskedHeader, RevealFile, Survivors,
};
use super::shamir;
use super::MASKED_FORMAT;

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

/// Shares by the party they belong to, each with its revealer's point.
pub(super) type SharesByParty = BTreeMap<u32, Vec<(u8, Vec<u8>)>>;

pub(super) fn read_reveals(paths: &[&Path], header: &MaskedHeader) -> Result<(SharesByParty, SharesByParty)> {
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

pub(super) fn rebuild(
    shares: &SharesByParty,
    party: u32,
    threshold: usize,
    what: &str,
    sum_path: &Path,
) -> Result<[u8; 32]> {
    let list: Vec<(u8, &[u8])> =
        shares.get(&party).map_or(Vec::new(), |l| l.iter().map(|(x, s)| (*x, s.as_slice())).collect());
    let secret = shamir::recover(&list, threshold)
        .map_err(|e| bad_input(sum_path, format!("cannot rebuild {what} of party {party}: {e}")))?;
    secret.try_into().map_err(|_| bad_input(sum_path, format!("{what} of party {party} is not 32 bytes")))
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
