//! Knowledge sets `S_k = {loss, logits}` of the paper (§3.3): what a party sends about the
//! public data set (`infer-logits`).
//!
//! Per sample: the answer's summed negative log-likelihood in nats with its token and byte
//! counts (nats per byte compares across tokenizers, unlike the reference's per-token mean),
//! and per position the top-K next-token ids and logits plus the full-vocabulary
//! log-sum-exp, which turns top-K logits into probabilities and gives the tail mass.
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::builder::{FixedSizeListBuilder, Float16Builder, Float32Builder, ListBuilder, UInt32Builder};
use arrow_array::{Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use candle_core::{DType, Device, Tensor};
use half::f16;

use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::model::{self, Model};
use crate::output::{self, Kind};
use crate::scoring::{self, Request};
use crate::tokens::{self, TokenizedSample};

pub const KNOWLEDGE_FORMAT: &str = "knowledge";
/// Id of a padding slot in a position's top-K (its logit is −∞): after `align` merges ids,
/// and in a sampled row with fewer distinct ids than draws.
pub const PAD_ID: u32 = u32::MAX;
/// Version 2 added `tail_mass` (version 1's tail, 1 − Σ exp(f16 logit − lse), was off by up
/// to 3.6 nats of KL: `make measure-logit-storage`).
pub const KNOWLEDGE_FORMAT_VERSION: u32 = 2;

/// What `infer-logits` computes, beyond the model and data.
#[derive(Debug, Clone)]
pub struct InferOptions {
    pub top_k: usize,
    /// Every non-pad position instead of the answer-predicting ones only.
    pub all_positions: bool,
    /// Some(seed): each row holds `top_k` ids drawn from the full distribution instead of the
    /// top-K (see [`sampled_row`]).
    pub sample_seed: Option<u64>,
    pub batch_size: usize,
    pub dtype: DType,
    pub device: Device,
}

/// One sample's knowledge: `positions[i]`'s next-token distribution has top-K
/// `topk_ids[i·K..(i+1)·K]` / `topk_logits[…]`, log-normaliser `logsumexp[i]` and mass
/// outside the top-K `tail_mass[i]`.
#[derive(Debug, Clone, PartialEq)]
pub struct SampleKnowledge {
    pub id: String,
    pub answer_nll: f64,
    pub answer_tokens: u32,
    pub answer_bytes: u32,
    pub positions: Vec<u32>,
    pub topk_ids: Vec<u32>,
    pub topk_logits: Vec<f16>,
    pub logsumexp: Vec<f32>,
    /// 1 − Σ_K softmax: computed from the f32 logits, since f16 logits leave it to cancellation.
    pub tail_mass: Vec<f32>,
}

/// Positions whose logits predict answer tokens: `answer_start − 1 … len − 2` (logits at p
/// predict token p+1). An answer token at position 0 has no prediction and is not scored.
pub fn answer_positions(sample: &TokenizedSample) -> std::ops::Range<usize> {
    let first = (sample.answer_start as usize).max(1) - 1;
    first..sample.input_ids.len().saturating_sub(1)
}

fn positions_of(sample: &TokenizedSample, all: bool) -> Vec<usize> {
    if all {
        (0..sample.input_ids.len()).collect()
    } else {
        answer_positions(sample).collect()
    }
}

/// The seed of the draws at `position` of sample `id`: the same whatever the batch.
fn row_seed(seed: u64, id: &str, position: usize) -> u64 {
    let digest = io::sha256_hex(format!("{seed}\0{id}\0{position}").as_bytes());
    u64::from_str_radix(&digest[..16], 16).expect("hex digits")
}

/// A sampled row (Sparse Logit Sampling, Anshumann et al., ACL 2025): K draws with replacement
/// from the teacher's full softmax, each distinct id with logit ln(count) and the row's
/// `logsumexp` ln K, so that `exp(logit − logsumexp)` = count / K, the empirical distribution,
/// and `tail_mass` 0. Its KD cross-entropy −Σ (count/K)·ln p(id) is an unbiased estimate of the
/// dense −Σ_v q_v·ln p_v, which a renormalised top-K is not.
fn sampled_row(counts: &[(u32, u32)], draws: usize) -> scoring::RowSummary {
    let top = counts.iter().map(|&(id, n)| (id, (n as f32).ln())).collect();
    scoring::RowSummary { top, logsumexp: (draws as f64).ln(), picked: 0.0 }
}

/// Summarise one sample's logits `[positions, vocab]` into its knowledge.
fn summarise(
    sample: &TokenizedSample,
    positions: &[usize],
    logits: &Tensor,
    k: usize,
    sample_seed: Option<u64>,
) -> Result<SampleKnowledge> {
    // Each position's next token (the last position has none: any id serves, it is not scored).
    let next: Vec<u32> = positions.iter().map(|&p| sample.input_ids.get(p + 1).copied().unwrap_or(0)).collect();
    let summaries = scoring::summarise_rows(logits, k, &next)?;
    let rows: Vec<scoring::RowSummary> = match sample_seed {
        None => summaries.clone(),
        Some(seed) => {
            let seeds: Vec<u64> = positions.iter().map(|&p| row_seed(seed, &sample.id, p)).collect();
            scoring::sample_rows(logits, k, &seeds)?.iter().map(|counts| sampled_row(counts, k)).collect()
        }
    };
    let answer = answer_positions(sample);
    let mut answer_nll = 0.0;
    for (row, &p) in summaries.iter().zip(positions) {
        if answer.contains(&p) {
            answer_nll += row.logsumexp - row.picked as f64;
        }
    }
    let padded = |r: &scoring::RowSummary| {
        let padding = std::iter::repeat_n((PAD_ID, f32::NEG_INFINITY), k - r.top.len());
        r.top.iter().copied().chain(padding).collect::<Vec<_>>()
    };
    let tail = |r: &scoring::RowSummary| 1.0 - r.top.iter().map(|&(_, v)| (v as f64 - r.logsumexp).exp()).sum::<f64>();
    Ok(SampleKnowledge {
        id: sample.id.clone(),
        answer_nll,
        answer_tokens: answer.len() as u32,
        answer_bytes: sample.text_bytes - sample.context_bytes,
        positions: positions.iter().map(|&p| p as u32).collect(),
        topk_ids: rows.iter().flat_map(|r| padded(r).into_iter().map(|(id, _)| id)).collect(),
        topk_logits: rows.iter().flat_map(|r| padded(r).into_iter().map(|(_, v)| f16::from_f32(v))).collect(),
        logsumexp: rows.iter().map(|r| r.logsumexp as f32).collect(),
        tail_mass: rows.iter().map(|r| tail(r).max(0.0) as f32).collect(),
    })
}

pub fn knowledge_schema(k: usize) -> Arc<Schema> {
    let item = |t: DataType| Arc::new(Field::new("item", t, true));
    let topk = |t: DataType| DataType::List(item(DataType::FixedSizeList(item(t), k as i32)));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("answer_nll", DataType::Float64, false),
        Field::new("answer_tokens", DataType::UInt32, false),
        Field::new("answer_bytes", DataType::UInt32, false),
        Field::new("positions", DataType::List(item(DataType::UInt32)), false),
        Field::new("topk_ids", topk(DataType::UInt32), false),
        Field::new("topk_logits", topk(DataType::Float16), false),
        Field::new("logsumexp", DataType::List(item(DataType::Float32)), false),
        Field::new("tail_mass", DataType::List(item(DataType::Float32)), false),
    ]))
}

pub fn knowledge_batch(samples: &[SampleKnowledge], k: usize) -> Result<RecordBatch> {
    let mut positions = ListBuilder::new(UInt32Builder::new());
    let mut ids = ListBuilder::new(FixedSizeListBuilder::new(UInt32Builder::new(), k as i32));
    let mut logits = ListBuilder::new(FixedSizeListBuilder::new(Float16Builder::new(), k as i32));
    let mut lse = ListBuilder::new(Float32Builder::new());
    let mut tail = ListBuilder::new(Float32Builder::new());
    for s in samples {
        tail.values().append_slice(&s.tail_mass);
        tail.append(true);
        positions.values().append_slice(&s.positions);
        positions.append(true);
        for (row_ids, row_logits) in s.topk_ids.chunks(k).zip(s.topk_logits.chunks(k)) {
            ids.values().values().append_slice(row_ids);
            ids.values().append(true);
            logits.values().values().append_slice(row_logits);
            logits.values().append(true);
        }
        ids.append(true);
        logits.append(true);
        lse.values().append_slice(&s.logsumexp);
        lse.append(true);
    }
    Ok(RecordBatch::try_new(
        knowledge_schema(k),
        vec![
            Arc::new(StringArray::from_iter_values(samples.iter().map(|s| &s.id))),
            Arc::new(Float64Array::from_iter_values(samples.iter().map(|s| s.answer_nll))),
            Arc::new(UInt32Array::from_iter_values(samples.iter().map(|s| s.answer_tokens))),
            Arc::new(UInt32Array::from_iter_values(samples.iter().map(|s| s.answer_bytes))),
            Arc::new(positions.finish()),
            Arc::new(ids.finish()),
            Arc::new(logits.finish()),
            Arc::new(lse.finish()),
            Arc::new(tail.finish()),
        ],
    )?)
}

/// A knowledge batch with further columns after the knowledge ones (aligned and selected sets).
pub fn knowledge_batch_with(
    samples: &[SampleKnowledge],
    k: usize,
    extra: Vec<(Field, arrow_array::ArrayRef)>,
) -> Result<RecordBatch> {
    let base = knowledge_batch(samples, k)?;
    let (extra_fields, extra_columns): (Vec<Field>, Vec<_>) = extra.into_iter().unzip();
    let fields: Vec<Field> = base.schema().fields().iter().map(|f| f.as_ref().clone()).chain(extra_fields).collect();
    let columns = base.columns().iter().cloned().chain(extra_columns).collect();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// Samples are batched by length within windows of this many batches: little padding, and
/// memory bounded by the window whatever the data set's size.
const SORT_WINDOW_BATCHES: usize = 32;

/// Knowledge of a window of samples, computed in length-sorted batches, returned in order.
fn window_knowledge(
    model: &Model,
    window: &[TokenizedSample],
    opts: &InferOptions,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<SampleKnowledge>> {
    let lengths: Vec<usize> = window.iter().map(|s| s.input_ids.len()).collect();
    let mut results: Vec<Option<SampleKnowledge>> = vec![None; window.len()];
    for batch in scoring::length_sorted_batches(&lengths, opts.batch_size) {
        let requests: Vec<Request> = batch
            .iter()
            .map(|&i| Request { ids: &window[i].input_ids, positions: positions_of(&window[i], opts.all_positions) })
            .collect();
        for ((&i, request), logits) in batch.iter().zip(&requests).zip(scoring::logits_at(model, &requests)?) {
            results[i] = Some(summarise(&window[i], &request.positions, &logits, opts.top_k, opts.sample_seed)?);
        }
        progress.inc(batch.len() as u64);
    }
    Ok(results.into_iter().map(|k| k.expect("every sample is in one batch")).collect())
}

/// Refuse token files that do not belong to this model before any work.
pub fn check_tokens_fit_model(
    tokens_path: &Path,
    table: &io::ParquetTable,
    samples: &[TokenizedSample],
    model_dir: &Path,
    vocab: usize,
) -> Result<()> {
    let model_tokenizer = model_dir.join("tokenizer.json");
    if model_tokenizer.is_file() {
        model::check_tokenizer_fits(&tokens::load_tokenizer(&model_tokenizer)?, &model_tokenizer, vocab)?;
        if table.input_hash("tokenizer")? != io::file_hash(&model_tokenizer)? {
            return Err(bad_input(
                tokens_path,
                format!("made with another tokenizer than {}", model_tokenizer.display()),
            ));
        }
    }
    if let Some((s, id)) =
        samples.iter().flat_map(|s| s.input_ids.iter().map(move |id| (s, id))).find(|(_, &id)| id as usize >= vocab)
    {
        return Err(bad_input(
            tokens_path,
            format!("sample '{}' has token id {id}, beyond the model's vocabulary of {vocab}", s.id),
        ));
    }
    Ok(())
}

/// `infer-logits`: model (+ adapter) over a token file → knowledge set, streamed to disk.
pub fn infer_logits(
    model_dir: &Path,
    adapter_dir: Option<&Path>,
    input: &Path,
    out: &Path,
    opts: &InferOptions,
) -> Result<()> {
    if opts.top_k == 0 || opts.batch_size == 0 {
        return Err(bad_usage("--top-k and --batch-size must be at least 1"));
    }
    let mut inputs = vec![model_dir, input];
    inputs.extend(adapter_dir);
    output::claim(&[(out, Kind::parquet(KNOWLEDGE_FORMAT))], &inputs)?;
    let (samples, table) = tokens::read_tokens(input)?;
    let model = Model::load_for_scoring(model_dir, adapter_dir, opts.dtype, &opts.device)?;
    let vocab = model.config.vocab_size;
    check_tokens_fit_model(input, &table, &samples, model_dir, vocab)?;
    if opts.top_k > vocab {
        return Err(bad_usage(format!("--top-k {} exceeds the vocabulary ({vocab})", opts.top_k)));
    }
    let provenance = Provenance::new(KNOWLEDGE_FORMAT, KNOWLEDGE_FORMAT_VERSION, "infer-logits")
        .input("dataset", table.input_hash("dataset")?.to_string())
        .input("tokenizer", table.input_hash("tokenizer")?.to_string())
        .input("tokens", io::file_hash(input)?)
        .extra("top_k", opts.top_k)
        .extra("positions", if opts.all_positions { "all" } else { "answer" })
        .extra("vocab_size", vocab);
    let provenance = match opts.sample_seed {
        Some(seed) => provenance.extra("sampled", opts.top_k).extra("sample_seed", seed),
        None => provenance,
    };
    let provenance = model::with_model_inputs(provenance, model_dir, adapter_dir)?;
    let progress = indicatif::ProgressBar::new(samples.len() as u64).with_message("infer-logits");
    let inferring = std::time::Instant::now();
    io::write_parquet_stream(out, knowledge_schema(opts.top_k), &provenance, |sink| {
        for window in samples.chunks(opts.batch_size * SORT_WINDOW_BATCHES) {
            let knowledge = window_knowledge(&model, window, opts, &progress).map_err(|e| bad_input(model_dir, e))?;
            sink(&knowledge_batch(&knowledge, opts.top_k)?)?;
        }
        Ok(())
    })?;
    progress.finish_and_clear();
    crate::profile::report("infer-logits", "the forward passes", inferring.elapsed().as_secs_f64());
    eprintln!("infer-logits: {} samples -> {}", samples.len(), out.display());
    Ok(())
}

/// Read a knowledge file whole: its samples and its table (provenance, `top_k`).
pub fn read_knowledge(path: &Path) -> Result<(Vec<SampleKnowledge>, io::ParquetTable)> {
    let table = io::read_parquet(path, KNOWLEDGE_FORMAT)?;
    Ok((knowledge_rows(&table, top_k(&table)?)?, table))
}

/// Largest amount a stored top-K logit (f16) may exceed its row's log-sum-exp (f32) by:
/// f16 rounds values of magnitude 64–128 to 1/16.
const LOGIT_ABOVE_LSE_TOLERANCE: f32 = 0.07;

/// What every knowledge, aligned or selected row must satisfy, whoever wrote it: columns of
/// one length, positions strictly increasing, a finite non-negative answer loss, finite
/// log-sum-exps, and each top-K entry a real token (below `vocab`) with a finite logit no
/// larger than its row's log-sum-exp, or padding (`PAD_ID`, −∞).
fn check_values(sample: &SampleKnowledge, k: usize, vocab: Option<u32>) -> std::result::Result<(), String> {
    let n = sample.positions.len();
    if sample.logsumexp.len() != n
        || sample.tail_mass.len() != n
        || sample.topk_ids.len() != n * k
        || sample.topk_logits.len() != n * k
    {
        return Err("columns disagree on its number of positions".into());
    }
    if let Some(t) = sample.tail_mass.iter().find(|t| !(0.0..=1.0).contains(*t)) {
        return Err(format!("tail_mass {t} is not a probability"));
    }
    if sample.answer_tokens > 0 && sample.answer_bytes == 0 {
        return Err(format!("{} answer tokens but 0 answer bytes", sample.answer_tokens));
    }
    if !(sample.answer_nll.is_finite() && sample.answer_nll >= -1e-4) {
        return Err(format!("answer_nll {} is not a finite non-negative loss", sample.answer_nll));
    }
    if let Some(w) = sample.positions.windows(2).find(|w| w[0] >= w[1]) {
        return Err(format!("positions {} then {} are not increasing", w[0], w[1]));
    }
    for (row, &lse) in sample.logsumexp.iter().enumerate() {
        if !lse.is_finite() {
            return Err(format!("logsumexp {lse} at position {}", sample.positions[row]));
        }
        for j in row * k..(row + 1) * k {
            let (id, logit) = (sample.topk_ids[j], sample.topk_logits[j].to_f32());
            let padding = id == PAD_ID && logit == f32::NEG_INFINITY;
            let real = id != PAD_ID
                && vocab.is_none_or(|v| id < v)
                && logit.is_finite()
                && logit <= lse + LOGIT_ABOVE_LSE_TOLERANCE;
            if !(padding || real) {
                return Err(format!(
                    "top-K entry (id {id}, logit {logit}) at position {} is neither a token of the {} vocabulary \
                     with a finite logit up to logsumexp {lse}, nor padding",
                    sample.positions[row],
                    vocab.map_or("model's".to_string(), |v| format!("{v}-token"))
                ));
            }
        }
    }
    Ok(())
}

/// K of a table holding knowledge columns (`fedmkt.top_k`).
pub fn top_k(table: &io::ParquetTable) -> Result<usize> {
    table
        .provenance
        .extra
        .get("top_k")
        .and_then(|v| v.parse().ok())
        .ok_or_else(|| bad_input(&table.path, "no fedmkt.top_k"))
}

/// The values of one list cell of column `name`, or a bad-input error if they have another type.
fn primitive_values<T: arrow_array::types::ArrowPrimitiveType>(
    array: &arrow_array::ArrayRef,
    name: &str,
    path: &Path,
) -> Result<Vec<T::Native>> {
    let typed = array.as_any().downcast_ref::<arrow_array::PrimitiveArray<T>>();
    let typed = typed.ok_or_else(|| bad_input(path, format!("column '{name}' has an unexpected type")))?;
    Ok(typed.values().to_vec())
}

/// The knowledge columns of a table (a knowledge, aligned or selected file) as samples.
pub fn knowledge_rows(table: &io::ParquetTable, k: usize) -> Result<Vec<SampleKnowledge>> {
    use arrow_array::types::{Float16Type, Float32Type, UInt32Type};
    use arrow_array::{Array, FixedSizeListArray, ListArray};
    let path = table.path.as_path();
    table.refuse_nulls(&[
        "id",
        "answer_nll",
        "answer_tokens",
        "answer_bytes",
        "positions",
        "topk_ids",
        "topk_logits",
        "logsumexp",
        "tail_mass",
    ])?;
    let ids = table.column::<StringArray>("id")?;
    let nll = table.column::<Float64Array>("answer_nll")?;
    let (tokens, bytes) = (table.column::<UInt32Array>("answer_tokens")?, table.column::<UInt32Array>("answer_bytes")?);
    let lists = |name: &str| table.column::<ListArray>(name);
    let (positions, topk_ids, topk_logits, lse) =
        (lists("positions")?, lists("topk_ids")?, lists("topk_logits")?, lists("logsumexp")?);
    let tails = lists("tail_mass")?;
    let malformed = |name: &str| bad_input(path, format!("column '{name}' has an unexpected type"));
    let vocab = match table.provenance.extra.get("vocab_size") {
        Some(v) => {
            Some(v.parse::<u32>().map_err(|_| bad_input(path, format!("fedmkt.vocab_size '{v}' is not a number")))?)
        }
        None => None,
    };
    let mut samples = Vec::new();
    for b in 0..table.batches.len() {
        for row in 0..ids[b].len() {
            let flat = |list: &ListArray, name: &str| -> Result<arrow_array::ArrayRef> {
                let rows = list.value(row);
                let rows = rows.as_any().downcast_ref::<FixedSizeListArray>().ok_or_else(|| malformed(name))?;
                if rows.value_length() as usize != k {
                    return Err(bad_input(
                        path,
                        format!("column '{name}' holds {} per position, fedmkt.top_k says {k}", rows.value_length()),
                    ));
                }
                Ok(rows.values().clone())
            };
            let sample = SampleKnowledge {
                id: ids[b].value(row).to_string(),
                answer_nll: nll[b].value(row),
                answer_tokens: tokens[b].value(row),
                answer_bytes: bytes[b].value(row),
                positions: primitive_values::<UInt32Type>(&positions[b].value(row), "positions", path)?,
                topk_ids: primitive_values::<UInt32Type>(&flat(&topk_ids[b], "topk_ids")?, "topk_ids", path)?,
                topk_logits: primitive_values::<Float16Type>(
                    &flat(&topk_logits[b], "topk_logits")?,
                    "topk_logits",
                    path,
                )?,
                logsumexp: primitive_values::<Float32Type>(&lse[b].value(row), "logsumexp", path)?,
                tail_mass: primitive_values::<Float32Type>(&tails[b].value(row), "tail_mass", path)?,
            };
            check_values(&sample, k, vocab)
                .map_err(|problem| bad_input(path, format!("sample '{}': {problem}", sample.id)))?;
            samples.push(sample);
        }
    }
    crate::data::check_unique_ids(path, samples.iter().map(|s| s.id.as_str()))?;
    Ok(samples)
}
