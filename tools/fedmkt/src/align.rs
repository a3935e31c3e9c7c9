//! `align`: map a sender's knowledge set into a receiver's vocabulary (paper §3.2, App. B).
//!
//! Two tokenisations of the same public text are aligned token to token, then each receiver
//! position whose **next** token is matched to a sender token receives the sender's
//! distribution at the position before that token, with ids mapped through the MinED table.
//!
//! Where we differ from the authors' code, and why:
//! - **Direction.** Logits at position t predict token t+1. We match *next* tokens and fall
//!   back to a one-hot on the receiver's *next* token; the reference's fallback is a one-hot
//!   on the current input token, which teaches the model to repeat its input.
//! - **Merging.** Sender ids that land on the same receiver id are merged by log-sum-exp
//!   (their probabilities add); the paper and the reference keep the first and drop the rest,
//!   losing that mass.
//! - **Masking.** By default (`--fallback skip`) unmatched positions are left out of
//!   distillation instead of receiving a one-hot (`--fallback onehot` is the paper's rule).
//! - **Only real tokens.** Alignment runs over each sample's own tokens, never padding.
//! - Two strategies: `dtw`, the paper's dynamic programming with edit distance between token
//!   texts as the cost, and `offsets`, exact alignment by the byte spans of the tokens.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{ArrayRef, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field};
use half::f16;

use crate::cli::bad_input;
use crate::io::{self, Provenance};
use crate::knowledge::{self, SampleKnowledge, KNOWLEDGE_FORMAT, KNOWLEDGE_FORMAT_VERSION};
use crate::output::{self, Kind};
use crate::tokens::{self, TokenizedSample};
use crate::vocab::{self, TokenText, VOCAB_MAP_FORMAT};

/// The knowledge format's padding id, which merging frees slots to (its logit is −∞).
pub use crate::knowledge::PAD_ID;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Strategy {
    /// Dynamic programming over the token sequences, edit distance between texts as cost.
    Dtw,
    /// Tokens covering the same bytes match; overlapping spans form groups.
    Offsets,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fallback {
    /// Leave unmatched positions out (masked from distillation).
    Skip,
    /// One-hot on the receiver's true next token (the paper's rule).
    Onehot,
}

/// For each token of each side, the tokens of the other side it is aligned with (ascending).
#[derive(Debug, Clone, PartialEq)]
pub struct Alignment {
    pub sender_to_receiver: Vec<Vec<usize>>,
    pub receiver_to_sender: Vec<Vec<usize>>,
}

impl Alignment {
    fn from_pairs(senders: usize, receivers: usize, pairs: impl IntoIterator<Item = (usize, usize)>) -> Self {
        let mut alignment = Alignment {
            sender_to_receiver: vec![Vec::new(); senders],
            receiver_to_sender: vec![Vec::new(); receivers],
        };
        for (i, j) in pairs {
            alignment.sender_to_receiver[i].push(j);
            alignment.receiver_to_sender[j].push(i);
        }
        alignment.sender_to_receiver.iter_mut().chain(alignment.receiver_to_sender.iter_mut()).for_each(|v| {
            v.sort_unstable();
            v.dedup();
        });
        alignment
    }
}

/// The paper's dynamic programming (FuseLLM's `dtw`): cumulative cost
/// `D[i][j] = lev(s_i, r_j) + min(D[i-1][j-1], D[i-1][j], D[i][j-1])`, traced back from the
/// last pair preferring the diagonal, then the sender step, then the receiver step.
pub fn dtw(sender: &[&[u32]], receiver: &[&[u32]]) -> Alignment {
    let (n, m) = (sender.len(), receiver.len());
    if n == 0 || m == 0 {
        return Alignment::from_pairs(n, m, []);
    }
    let mut cost = vec![u64::MAX; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    cost[0] = 0;
    for i in 1..=n {
        for j in 1..=m {
            let best = cost[at(i - 1, j - 1)].min(cost[at(i - 1, j)]).min(cost[at(i, j - 1)]);
            cost[at(i, j)] = best + vocab::levenshtein(sender[i - 1], receiver[j - 1]) as u64;
        }
    }
    let (mut i, mut j) = (n, m);
    let mut pairs = vec![(i - 1, j - 1)];
    while i > 1 || j > 1 {
        let options =
            [(i - 1, j - 1), (i - 1, j), (i, j - 1)]
                .map(|(a, b)| if a >= 1 && b >= 1 { cost[at(a, b)] } else { u64::MAX });
        let step = (0..3).min_by_key(|&k| options[k]).expect("three options");
        (i, j) = [(i - 1, j - 1), (i - 1, j), (i, j - 1)][step];
        pairs.push((i - 1, j - 1));
    }
    Alignment::from_pairs(n, m, pairs)
}

/// Exact alignment by byte spans: tokens whose spans overlap are aligned. Tokens with empty
/// spans (special tokens) align with nothing.
pub fn by_offsets(sender: &[(u32, u32)], receiver: &[(u32, u32)]) -> Alignment {
    let mut pairs = Vec::new();
    let mut first = 0;
    for (i, &(s_start, s_end)) in sender.iter().enumerate().filter(|(_, (s, e))| s < e) {
        while first < receiver.len() && receiver[first].1 <= s_start {
            first += 1;
        }
        let overlapping = receiver[first..].iter().enumerate().take_while(|(_, &(r_start, _))| r_start < s_end);
        pairs.extend(
            overlapping
                .filter(|(_, (r_start, r_end))| r_start < r_end && *r_end > s_start)
                .map(|(k, _)| (i, first + k)),
        );
    }
    Alignment::from_pairs(sender.len(), receiver.len(), pairs)
}

/// For each receiver token, the sender token it is matched with: the two must be the first
/// of each other's aligned tokens (they start together), and either align one to one or,
/// in a many-to-one or one-to-many group, the vocabulary map takes the sender token to the
/// receiver token (the paper's 'util' + 'ize' ↔ 'utilize': 'util' maps to 'utilize').
pub fn matches(alignment: &Alignment, sender_ids: &[u32], receiver_ids: &[u32], map: &[u32]) -> Vec<Option<usize>> {
    (0..receiver_ids.len())
        .map(|j| {
            let &i = alignment.receiver_to_sender[j].first()?;
            let partners = &alignment.sender_to_receiver[i];
            if partners.first() != Some(&j) {
                return None;
            }
            let one_to_one = partners.len() == 1 && alignment.receiver_to_sender[j].len() == 1;
            let mapped = map.get(sender_ids[i] as usize) == Some(&receiver_ids[j]);
            (one_to_one || mapped).then_some(i)
        })
        .collect()
}

/// A sender distribution's top-K moved into the receiver's vocabulary: ids mapped, those
/// landing on one id merged by log-sum-exp, sorted by logit (ties: lower id), padded.
pub fn map_top_k(ids: &[u32], logits: &[f16], map: &[u32]) -> (Vec<u32>, Vec<f16>) {
    let mut merged: BTreeMap<u32, Vec<f32>> = BTreeMap::new();
    for (&id, &logit) in ids.iter().zip(logits) {
        if let Some(&target) = map.get(id as usize).filter(|_| logit.is_finite()) {
            merged.entry(target).or_default().push(logit.to_f32());
        }
    }
    let mut entries: Vec<(u32, f32)> =
        merged.into_iter().map(|(id, l)| (id, crate::scoring::logsumexp(&l) as f32)).collect();
    entries.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let pad = ids.len() - entries.len();
    let ids = entries.iter().map(|e| e.0).chain(std::iter::repeat_n(PAD_ID, pad)).collect();
    let logits =
        entries.iter().map(|e| f16::from_f32(e.1)).chain(std::iter::repeat_n(f16::NEG_INFINITY, pad)).collect();
    (ids, logits)
}

/// What `align` needs besides its input files.
#[derive(Debug, Clone)]
pub struct AlignOptions {
    pub strategy: Strategy,
    pub fallback: Fallback,
    /// Name of the sending party, recorded in the output.
    pub sender: String,
}

/// The files of one alignment.
pub struct AlignInputs<'a> {
    pub sender_tokens: &'a Path,
    pub knowledge: &'a Path,
    pub receiver_tokens: &'a Path,
    pub map: &'a Path,
    pub sender_tokenizer: &'a Path,
    pub receiver_tokenizer: &'a Path,
}

/// One aligned sample and its position counts.
#[derive(Debug, Clone, PartialEq)]
pub struct Aligned {
    pub knowledge: SampleKnowledge,
    pub matched: u32,
    pub unmatched: u32,
}

/// Sender and receiver sides of one sample: the sender's tokens and knowledge (top-K `k`
/// per position) and the receiver's tokens.
pub struct Pair<'a> {
    pub sender: &'a TokenizedSample,
    pub knowledge: &'a SampleKnowledge,
    pub receiver: &'a TokenizedSample,
    pub k: usize,
}

fn texts_of<'a>(ids: &[u32], vocab: &'a [TokenText]) -> Vec<&'a [u32]> {
    ids.iter().map(|&id| vocab.get(id as usize).map_or(&[][..], |t| t.symbols.as_slice())).collect()
}

fn spans_of(sample: &TokenizedSample) -> Vec<(u32, u32)> {
    sample.token_start.iter().copied().zip(sample.token_end.iter().copied()).collect()
}

/// One sample's aligned knowledge: receiver positions (answer positions, or all of them) with the sender's mapped distribution where matched, else the fallback. `texts`
/// are the two vocabularies' token texts (sender, receiver), used by `dtw`.
pub fn align_sample(
    pair: &Pair,
    map: &[u32],
    texts: (&[TokenText], &[TokenText]),
    all_positions: bool,
    opts: &AlignOptions,
) -> Aligned {
    let (sender, receiver) = (pair.sender, pair.receiver);
    let alignment = match opts.strategy {
        Strategy::Dtw => dtw(&texts_of(&sender.input_ids, texts.0), &texts_of(&receiver.input_ids, texts.1)),
        Strategy::Offsets => by_offsets(&spans_of(sender), &spans_of(receiver)),
    };
    let mut matched_to = matches(&alignment, &sender.input_ids, &receiver.input_ids, map);
    if opts.strategy == Strategy::Dtw {
        // The text-based path pairs e.g. '▁BEST' with 'EST' or 'dragon' with 'ragon'; the
        // authors' own match rule rejects such pairs, and so does ours: a matched pair's two
        // tokens must start at the same byte (offsets guarantees this by construction).
        for (j, matched) in matched_to.iter_mut().enumerate() {
            if matched.is_some_and(|i| sender.token_start[i] != receiver.token_start[j]) {
                *matched = None;
            }
        }
    }
    let sender_rows: BTreeMap<u32, usize> =
        pair.knowledge.positions.iter().enumerate().map(|(row, &p)| (p, row)).collect();
    let last_sender_row = sender.input_ids.len().checked_sub(1).and_then(|last| sender_rows.get(&(last as u32)));
    let (positions, end) = match all_positions {
        // The last position too, where the sender has its own last one to give it.
        true => (0..receiver.input_ids.len().saturating_sub(1), last_sender_row.map(|_| receiver.input_ids.len() - 1)),
        false => (knowledge::answer_positions(receiver), None),
    };
    let k = pair.k;
    let mut out = SampleKnowledge {
        positions: Vec::new(),
        topk_ids: Vec::new(),
        topk_logits: Vec::new(),
        logsumexp: Vec::new(),
        tail_mass: Vec::new(),
        ..pair.knowledge.clone()
    };
    let (mut matched, mut unmatched) = (0, 0);
    for p in positions.chain(end) {
        // Receiver logits at p predict token p+1; the sender's at i−1 predict its token i. At
        // the text's end both sides' last positions predict what follows it (the answer of an
        // unlabelled sample), which has no token to match or to fall back on.
        let at_end = p + 1 == receiver.input_ids.len();
        let row = match at_end {
            true => last_sender_row,
            false => matched_to[p + 1].filter(|&i| i >= 1).and_then(|i| sender_rows.get(&(i as u32 - 1))),
        };
        // Mapping merges ids but drops none, so the mass outside the top-K stays the sender's.
        let (ids, logits, lse, tail) = match row {
            Some(&row) => {
                matched += 1;
                let (ids, logits) = map_top_k(
                    &pair.knowledge.topk_ids[row * k..(row + 1) * k],
                    &pair.knowledge.topk_logits[row * k..(row + 1) * k],
                    map,
                );
                (ids, logits, pair.knowledge.logsumexp[row], pair.knowledge.tail_mass[row])
            }
            None => {
                unmatched += 1;
                if opts.fallback == Fallback::Skip {
                    continue;
                }
                let ids =
                    std::iter::once(receiver.input_ids[p + 1]).chain(std::iter::repeat_n(PAD_ID, k - 1)).collect();
                let logits = std::iter::once(f16::ZERO).chain(std::iter::repeat_n(f16::NEG_INFINITY, k - 1)).collect();
                (ids, logits, 0.0, 0.0)
            }
        };
        out.positions.push(p as u32);
        out.topk_ids.extend::<Vec<u32>>(ids);
        out.topk_logits.extend::<Vec<f16>>(logits);
        out.logsumexp.push(lse);
        out.tail_mass.push(tail);
    }
    Aligned { knowledge: out, matched, unmatched }
}

/// The vocabulary map's flat file, memory-mapped, checked against its table's record.
fn load_map(path: &Path) -> Result<(memmap2::Mmap, io::ParquetTable)> {
    let table = io::read_parquet(path, VOCAB_MAP_FORMAT)?;
    let flat_path = path.with_extension("map");
    let file = std::fs::File::open(&flat_path).map_err(|e| bad_input(&flat_path, format!("cannot open: {e}")))?;
    // SAFETY: the map is read-only and written atomically by `vocab-map`; we only read it.
    let flat = unsafe { memmap2::Mmap::map(&file) }.map_err(|e| bad_input(&flat_path, format!("cannot map: {e}")))?;
    let recorded = table.provenance.extra.get("map_sha256").cloned().unwrap_or_default();
    if recorded != format!("sha256:{}", io::sha256_hex(&flat)) {
        return Err(bad_input(
            &flat_path,
            format!("does not belong to {} (fedmkt.map_sha256 differs)", path.display()),
        ));
    }
    let vocab = |key: &str| -> Result<usize> {
        let text = table.provenance.extra.get(key).cloned().unwrap_or_default();
        text.parse().map_err(|_| bad_input(path, format!("fedmkt.{key} '{text}' is not a number")))
    };
    let (source, target) = (vocab("source_vocab")?, vocab("target_vocab")?);
    if flat.len() != 4 * source {
        return Err(bad_input(
            &flat_path,
            format!("holds {} bytes, not 4 per each of the {source} source tokens", flat.len()),
        ));
    }
    let beyond = flat
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes")))
        .find(|&t| t as usize >= target);
    if let Some(t) = beyond {
        return Err(bad_input(&flat_path, format!("maps to token {t}, beyond the {target}-token target vocabulary")));
    }
    Ok((flat, table))
}

/// Refuse inputs that do not belong together, before any work.
/// A knowledge row's positions lie within the sender's tokens, and every top-K id has an entry
/// in the vocabulary map (ids are never dropped silently).
fn check_in_range(
    sample: &SampleKnowledge,
    sender: &TokenizedSample,
    map_len: usize,
) -> std::result::Result<(), String> {
    if let Some(p) = sample.positions.iter().find(|&&p| p as usize >= sender.input_ids.len()) {
        return Err(format!("position {p} is beyond its {} sender tokens", sender.input_ids.len()));
    }
    match sample.topk_ids.iter().find(|&&id| id != PAD_ID && id as usize >= map_len) {
        Some(id) => Err(format!("top-K id {id} has no entry in the {map_len}-token vocabulary map")),
        None => Ok(()),
    }
}

fn check_inputs(inputs: &AlignInputs, tables: [&io::ParquetTable; 4]) -> Result<()> {
    let [sender_tokens, knowledge, receiver_tokens, map] = tables;
    let same = |a: &io::ParquetTable, role_a: &str, b: &io::ParquetTable, role_b: &str, what: &str| -> Result<()> {
        if a.input_hash(role_a)? != b.input_hash(role_b)? {
            return Err(bad_input(&b.path, format!("{what} than {}", a.path.display())));
        }
        Ok(())
    };
    same(sender_tokens, "dataset", receiver_tokens, "dataset", "made from another public data set")?;
    same(sender_tokens, "tokenizer", knowledge, "tokenizer", "made with another tokenizer")?;
    if knowledge.input_hash("tokens")? != io::file_hash(inputs.sender_tokens)? {
        return Err(bad_input(inputs.knowledge, format!("was not computed from {}", inputs.sender_tokens.display())));
    }
    same(sender_tokens, "tokenizer", map, "from", "built for another source tokenizer")?;
    same(receiver_tokens, "tokenizer", map, "to", "built for another target tokenizer")?;
    for (path, table) in [(inputs.sender_tokenizer, sender_tokens), (inputs.receiver_tokenizer, receiver_tokens)] {
        if table.input_hash("tokenizer")? != io::file_hash(path)? {
            return Err(bad_input(path, format!("is not the tokenizer {} was made with", table.path.display())));
        }
    }
    Ok(())
}

fn aligned_batch(samples: &[Aligned], k: usize) -> Result<RecordBatch> {
    let count = |name: &str, value: fn(&Aligned) -> u32| -> (Field, ArrayRef) {
        (Field::new(name, DataType::UInt32, false), Arc::new(samples.iter().map(value).collect::<UInt32Array>()))
    };
    let knowledge: Vec<SampleKnowledge> = samples.iter().map(|s| s.knowledge.clone()).collect();
    knowledge::knowledge_batch_with(
        &knowledge,
        k,
        vec![count("matched_positions", |s| s.matched), count("unmatched_positions", |s| s.unmatched)],
    )
}

/// A sender's name, as reports and `select` read it.
fn check_sender_name(sender: &str) -> Result<()> {
    if sender.trim().is_empty() || sender.contains(',') {
        return Err(crate::cli::bad_usage(format!(
            "--sender '{sender}': name the sending party (no comma: reports list parties by it)"
        )));
    }
    if crate::formats::RESERVED_PARTY_NAMES.contains(&sender) {
        return Err(crate::cli::bad_usage(format!(
            "--sender '{sender}': a word select gives its own meaning (the receiver's rows); name the sending party"
        )));
    }
    Ok(())
}

/// A knowledge set covers its token file: one lacking a sample would leave the receiver
/// without that sender's vote on it, silently.
fn check_covers(inputs: &AlignInputs, knowledge: &[SampleKnowledge], sender: &[TokenizedSample]) -> Result<()> {
    let known: std::collections::HashSet<&str> = knowledge.iter().map(|s| s.id.as_str()).collect();
    match sender.iter().find(|s| !known.contains(s.id.as_str())) {
        Some(lacking) => Err(bad_input(
            inputs.knowledge,
            format!(
                "lacks sample '{}' of {}: a knowledge set covers its token file",
                lacking.id,
                inputs.sender_tokens.display()
            ),
        )),
        None => Ok(()),
    }
}

/// What an aligned set records: the receiver's data, tokenizer and tokens, the sender's
/// knowledge and the map it went through, how it was aligned and how many positions matched.
fn provenance_of(
    inputs: &AlignInputs,
    opts: &AlignOptions,
    [receiver_table, knowledge_table, map_table]: [&io::ParquetTable; 3],
    (k, all_positions): (usize, bool),
    (matched, unmatched): (u64, u64),
) -> Result<Provenance> {
    let provenance = Provenance::new(KNOWLEDGE_FORMAT, KNOWLEDGE_FORMAT_VERSION, "align")
        .input("dataset", receiver_table.input_hash("dataset")?.to_string())
        .input("tokenizer", receiver_table.input_hash("tokenizer")?.to_string())
        .input("tokens", io::file_hash(inputs.receiver_tokens)?)
        .input("sender_knowledge", io::file_hash(inputs.knowledge)?)
        .input("map", io::file_hash(inputs.map)?)
        .extra("top_k", k)
        .extra("positions", if all_positions { "all" } else { "answer" })
        .extra("vocab_size", map_table.provenance.extra.get("target_vocab").cloned().unwrap_or_default())
        .extra("sender", &opts.sender)
        .extra("strategy", format!("{:?}", opts.strategy).to_lowercase())
        .extra("fallback", format!("{:?}", opts.fallback).to_lowercase())
        .extra("matched_positions", matched)
        .extra("unmatched_positions", unmatched);
    // A sampled set stays one: its rows are draws, whatever vocabulary they are in.
    Ok(match knowledge_table.provenance.extra.get("sampled") {
        Some(draws) => provenance.extra("sampled", draws),
        None => provenance,
    })
}

/// `align`: the sender's knowledge set in the receiver's vocabulary and positions.
pub fn align(inputs: &AlignInputs, out: &Path, opts: &AlignOptions) -> Result<()> {
    check_sender_name(&opts.sender)?;
    let flat_map = inputs.map.with_extension("map");
    let paths = [inputs.sender_tokens, inputs.knowledge, inputs.receiver_tokens, inputs.map, &flat_map];
    let paths = [&paths[..], &[inputs.sender_tokenizer, inputs.receiver_tokenizer]].concat();
    output::claim(&[(out, Kind::parquet(KNOWLEDGE_FORMAT))], &paths)?;
    let (sender_samples, sender_table) = tokens::read_tokens(inputs.sender_tokens)?;
    let (receiver_samples, receiver_table) = tokens::read_tokens(inputs.receiver_tokens)?;
    let (knowledge_samples, knowledge_table) = knowledge::read_knowledge(inputs.knowledge)?;
    let (flat, map_table) = load_map(inputs.map)?;
    check_inputs(inputs, [&sender_table, &knowledge_table, &receiver_table, &map_table])?;
    let map: Vec<u32> = flat.chunks_exact(4).map(|c| u32::from_le_bytes(c.try_into().expect("4 bytes"))).collect();
    let texts = (vocab::token_texts(inputs.sender_tokenizer)?, vocab::token_texts(inputs.receiver_tokenizer)?);
    let k = knowledge::top_k(&knowledge_table)?;
    let all_positions = knowledge_table.provenance.extra.get("positions").is_some_and(|p| p == "all");
    let (senders, receivers) = (by_id(&sender_samples), by_id(&receiver_samples));
    check_covers(inputs, &knowledge_samples, &sender_samples)?;
    let progress = indicatif::ProgressBar::new(knowledge_samples.len() as u64).with_message("align");
    let aligned = knowledge_samples
        .iter()
        .map(|sample| {
            progress.inc(1);
            let missing = |path: &Path| {
                bad_input(path, format!("has no sample '{}' (it is in {})", sample.id, inputs.knowledge.display()))
            };
            let sender = senders.get(sample.id.as_str()).ok_or_else(|| missing(inputs.sender_tokens))?;
            check_in_range(sample, sender, map.len())
                .map_err(|p| bad_input(inputs.knowledge, format!("sample '{}': {p}", sample.id)))?;
            let pair = Pair {
                sender,
                knowledge: sample,
                receiver: receivers.get(sample.id.as_str()).ok_or_else(|| missing(inputs.receiver_tokens))?,
                k,
            };
            Ok(align_sample(&pair, &map, (&texts.0, &texts.1), all_positions, opts))
        })
        .collect::<Result<Vec<_>>>()?;
    progress.finish_and_clear();
    let (matched, unmatched): (u64, u64) =
        aligned.iter().fold((0, 0), |(m, u), a| (m + a.matched as u64, u + a.unmatched as u64));
    let tables = [&receiver_table, &knowledge_table, &map_table];
    let provenance = provenance_of(inputs, opts, tables, (k, all_positions), (matched, unmatched))?;
    let batch = aligned_batch(&aligned, k)?;
    io::write_parquet(out, batch.schema(), &[batch], &provenance)?;
    let share = 100.0 * matched as f64 / (matched + unmatched).max(1) as f64;
    eprintln!(
        "align: {} samples, {matched} of {} positions matched ({share:.1}%) -> {}",
        aligned.len(),
        matched + unmatched,
        out.display()
    );
    Ok(())
}

fn by_id(samples: &[TokenizedSample]) -> BTreeMap<&str, &TokenizedSample> {
    samples.iter().map(|s| (s.id.as_str(), s)).collect()
}

/// Default sender name: the knowledge file's stem.
pub fn default_sender(knowledge: &Path) -> String {
    knowledge.file_stem().map_or_else(|| knowledge.display().to_string(), |s| s.to_string_lossy().into_owned())
}
