//! `select`: DualMinCE (paper Algorithm 2). Per public sample, the sender with the smallest
//! loss wins, and is kept only if its loss is below the receiver's own.
//!
//! Where we differ from the authors' code, and why:
//! - Losses are compared on one scale across tokenizers: the answer's negative
//!   log-likelihood per byte of answer text (nats/byte), in f64. The reference compares
//!   mean token cross-entropies of different tokenizers (not comparable: a tokenizer with
//!   longer tokens has larger per-token losses) after rounding them to bfloat16.
//! - Ties are explicit: a sender must beat the receiver by more than `--tolerance`
//!   (nats/byte); anything closer goes to the receiver. Among senders, equal losses go to
//!   the one listed first.
//! - A sample the receiver wins is not distilled (it keeps its task loss only), the
//!   paper's rule; the reference (FATE-LLM's `fedmkt_trainer.py`) distils the receiver
//!   towards its own top-K instead, which `--fallback self` reproduces.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray};
use arrow_schema::{DataType, Field};

use crate::cli::bad_input;
use crate::io::{self, ParquetTable, Provenance};
use crate::knowledge::{self, SampleKnowledge};
use crate::output::{self, Kind};

pub const SELECTED_FORMAT: &str = "selected";

/// The loss DualMinCE compares: answer NLL per answer byte (None without answer bytes).
pub fn nats_per_byte(sample: &SampleKnowledge) -> Option<f64> {
    (sample.answer_bytes > 0).then(|| sample.answer_nll / sample.answer_bytes as f64)
}

/// What a sample no sender wins becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Left out of distillation: the receiver trains on it with its task loss only (the paper).
    Drop,
    /// The receiver's own top-K becomes its teacher, party `self` (the authors' code).
    #[value(name = "self")]
    Own,
}

/// The party name of a receiver's own rows under `--fallback self`.
pub const SELF_PARTY: &str = "self";

/// One candidate set: the sending party and its aligned samples by id.
struct Candidate {
    party: String,
    samples: HashMap<String, SampleKnowledge>,
}

/// The winning sender of one sample, if any beats the receiver.
pub struct Choice<'a> {
    pub party: &'a str,
    pub knowledge: &'a SampleKnowledge,
    pub receiver_loss: f64,
    pub sender_loss: f64,
}

/// Algorithm 2 for one sample: smallest sender loss (first listed among equals), kept only
/// if below the receiver's loss by more than `tolerance`; else, under `Fallback::Own`, the
/// receiver's own row.
fn choose<'a>(
    local: &'a SampleKnowledge,
    candidates: &'a [Candidate],
    tolerance: f64,
    fallback: Fallback,
) -> Option<Choice<'a>> {
    let receiver_loss = nats_per_byte(local)?;
    let own = Choice { party: SELF_PARTY, knowledge: local, receiver_loss, sender_loss: receiver_loss };
    let best = best_sender(local, candidates, receiver_loss).filter(|b| b.sender_loss < b.receiver_loss - tolerance);
    best.or((fallback == Fallback::Own).then_some(own))
}

/// The sender with the smallest loss on `local`'s sample (first listed among equals).
fn best_sender<'a>(local: &SampleKnowledge, candidates: &'a [Candidate], receiver_loss: f64) -> Option<Choice<'a>> {
    let mut best: Option<Choice> = None;
    for candidate in candidates {
        let Some(sample) = candidate.samples.get(&local.id) else { continue };
        let Some(loss) = nats_per_byte(sample) else { continue };
        if best.as_ref().is_none_or(|b| loss < b.sender_loss) {
            best = Some(Choice { party: &candidate.party, knowledge: sample, receiver_loss, sender_loss: loss });
        }
    }
    best
}

/// Refuse a candidate that does not belong to the receiver's knowledge set.
fn check_candidate(
    local: &ParquetTable,
    local_ids: &HashSet<&str>,
    table: &ParquetTable,
    samples: &[SampleKnowledge],
) -> Result<String> {
    let party =
        table.provenance.extra.get("sender").cloned().ok_or_else(|| {
            bad_input(&table.path, "is not an aligned knowledge set (no fedmkt.sender; run align first)")
        })?;
    if crate::formats::RESERVED_PARTY_NAMES.contains(&party.as_str()) {
        return Err(bad_input(
            &table.path,
            format!("names its sender '{party}', a word select reserves for the receiver"),
        ));
    }
    if table.input_hash("tokens")? != local.input_hash("tokens")? {
        return Err(bad_input(
            &table.path,
            format!("is aligned to other receiver tokens than {}", local.path.display()),
        ));
    }
    for (key, what) in [("top_k", "top-K"), ("sampled", "number of sampled draws")] {
        let (theirs, ours) = (table.provenance.extra.get(key), local.provenance.extra.get(key));
        if theirs != ours {
            return Err(bad_input(
                &table.path,
                format!("has another {what} ({theirs:?}) than {} ({ours:?})", local.path.display()),
            ));
        }
    }
    if let Some(extra) = samples.iter().find(|s| !local_ids.contains(s.id.as_str())) {
        return Err(bad_input(&table.path, format!("has sample '{}', which {} lacks", extra.id, local.path.display())));
    }
    let ids: HashSet<&str> = samples.iter().map(|s| s.id.as_str()).collect();
    if let Some(lacking) = local_ids.iter().filter(|id| !ids.contains(*id)).min() {
        return Err(bad_input(&table.path, format!("lacks sample '{lacking}' of {}", local.path.display())));
    }
    Ok(party)
}

fn selected_batch(choices: &[Choice], k: usize) -> Result<RecordBatch> {
    let loss = |name: &str, value: fn(&Choice) -> f64| -> (Field, ArrayRef) {
        (Field::new(name, DataType::Float64, false), Arc::new(choices.iter().map(value).collect::<Float64Array>()))
    };
    let party: ArrayRef = Arc::new(StringArray::from_iter_values(choices.iter().map(|c| c.party)));
    let knowledge: Vec<SampleKnowledge> = choices.iter().map(|c| c.knowledge.clone()).collect();
    let extra = vec![
        (Field::new("party", DataType::Utf8, false), party),
        loss("receiver_loss", |c| c.receiver_loss),
        loss("sender_loss", |c| c.sender_loss),
    ];
    knowledge::knowledge_batch_with(&knowledge, k, extra)
}

/// `select`: DualMinCE over the receiver's own knowledge set and aligned candidates.
pub fn select(
    local_path: &Path,
    candidate_paths: &[&Path],
    tolerance: f64,
    fallback: Fallback,
    out: &Path,
) -> Result<()> {
    if !(tolerance.is_finite() && tolerance >= 0.0) {
        return Err(crate::cli::bad_usage(format!(
            "--tolerance {tolerance}: must be a finite number of nats per byte, 0 or more"
        )));
    }
    crate::cli::refuse_repeated("--candidates", candidate_paths, crate::cli::path_key)?;
    output::claim(&[(out, Kind::parquet(SELECTED_FORMAT))], &[&[local_path], candidate_paths].concat())?;
    let (local, local_table) = knowledge::read_knowledge(local_path)?;
    if local_table.provenance.extra.contains_key("sender") {
        return Err(bad_input(
            local_path,
            "is an aligned set; --local takes the receiver's own knowledge (infer-logits)",
        ));
    }
    let local_ids: HashSet<&str> = local.iter().map(|s| s.id.as_str()).collect();
    let mut candidates = Vec::new();
    let mut provenance = Provenance::new(SELECTED_FORMAT, 1, "select")
        .input("dataset", local_table.input_hash("dataset")?.to_string())
        .input("tokenizer", local_table.input_hash("tokenizer")?.to_string())
        .input("tokens", local_table.input_hash("tokens")?.to_string())
        .input("local", io::file_hash(local_path)?);
    for (n, path) in candidate_paths.iter().enumerate() {
        let (samples, table) = knowledge::read_knowledge(path)?;
        let party = check_candidate(&local_table, &local_ids, &table, &samples)?;
        if let Some(earlier) = candidates.iter().position(|c: &Candidate| c.party == party) {
            return Err(bad_input(
                path,
                format!(
                    "is from sender '{party}' as {} is: their wins would be counted as one",
                    candidate_paths[earlier].display()
                ),
            ));
        }
        provenance = provenance.input(&format!("candidate{}", n + 1), io::file_hash(path)?);
        candidates.push(Candidate { party, samples: samples.into_iter().map(|s| (s.id.clone(), s)).collect() });
    }
    let choices: Vec<Choice> = local.iter().filter_map(|s| choose(s, &candidates, tolerance, fallback)).collect();
    let mut wins: BTreeMap<&str, usize> = candidates.iter().map(|c| (c.party.as_str(), 0)).collect();
    choices.iter().filter(|c| c.party != SELF_PARTY).for_each(|c| *wins.entry(c.party).or_default() += 1);
    let receiver_wins = local.len() - wins.values().sum::<usize>();
    let k = knowledge::top_k(&local_table)?;
    let summary: Vec<String> =
        wins.iter().map(|(p, n)| format!("{p}={n}")).chain([format!("receiver={receiver_wins}")]).collect();
    provenance = provenance.extra("top_k", k).extra("tolerance", tolerance).extra("wins", summary.join(","));
    if fallback == Fallback::Own {
        provenance = provenance.extra("fallback", SELF_PARTY);
    }
    for key in ["positions", "vocab_size", "sampled"] {
        if let Some(v) = local_table.provenance.extra.get(key) {
            provenance = provenance.extra(key, v);
        }
    }
    let batch = selected_batch(&choices, k)?;
    io::write_parquet(out, batch.schema(), &[batch], &provenance)?;
    eprintln!("select: {} samples; won: {} -> {}", local.len(), summary.join(", "), out.display());
    Ok(())
}
