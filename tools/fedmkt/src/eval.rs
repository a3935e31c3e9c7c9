//! Multiple-choice accuracy as lm-evaluation-harness scores it (`evaluate`).
//!
//! Each choice's summed log-likelihood as a continuation of the context: `acc` is the argmax,
//! `acc_norm` the argmax of log-likelihood divided by the choice's length in characters
//! (the choice text without its leading space, as the harness counts it). Optionally Rouge-L
//! of greedy generations against the target, for generation tasks.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use arrow_array::builder::{Float64Builder, ListBuilder, UInt32Builder};
use arrow_array::{Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use candle_core::{DType, Device};
use rayon::prelude::*;
use serde_json::json;
use tokenizers::Tokenizer;

use crate::cli::{bad_input, bad_usage};
use crate::data::{self, TaskRecord};
use crate::io::{self, Provenance};
use crate::knowledge::answer_positions;
use crate::metrics::{argmax, rouge_l};
use crate::model::{self, Model};
use crate::output::{self, Commit, Kind};
use crate::scoring::{self, Request, SharedPrefix};
use crate::tokens::{self, TokenizedSample};

pub const PREDICTIONS_FORMAT: &str = "predictions";
/// `fedmkt_format` of the JSON summary `evaluate` writes.
pub const SUMMARY_FORMAT: &str = "eval-summary";

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Samples whose contexts run in one pass (and choices per pass after them).
    pub batch_size: usize,
    pub dtype: DType,
    pub device: Device,
    /// Score only the first N samples.
    pub limit: Option<usize>,
    /// Also generate greedily up to this many tokens and report Rouge-L against the target.
    pub generate: Option<usize>,
}

/// Per sample: every choice's log-likelihood and the two predictions.
struct Scored {
    loglik: Vec<f64>,
    chars: Vec<u32>,
    pred: usize,
    pred_norm: usize,
    /// The gold choice's log-likelihood per UTF-8 byte (without its leading space).
    gold_per_byte: f64,
    /// The gold choice's log-likelihood minus the best wrong choice's (> 0: `pred` is right).
    margin: f64,
}

/// Each sample's choices as continuations of the tokens they all start with (the context's,
/// and any the choices share), scored at their answers' positions.
fn shared_prefixes<'a>(
    records: &[TaskRecord],
    seqs: &'a [TokenizedSample],
    first_seq: &[usize],
) -> Vec<SharedPrefix<'a>> {
    records
        .iter()
        .zip(first_seq)
        .map(|(r, &first)| {
            let choices = &seqs[first..first + r.choices.len()];
            let ids = &choices[0].input_ids;
            let cut = choices.iter().map(|s| s.input_ids.iter().zip(ids).take_while(|(a, b)| a == b).count()).min();
            let cut = cut.unwrap_or(0);
            let continuations = choices
                .iter()
                .map(|s| Request { ids: &s.input_ids[cut..], positions: answer_positions(s).collect() })
                .collect();
            SharedPrefix { prefix: &ids[..cut], continuations }
        })
        .collect()
}

/// Summed log-likelihood of each sequence's continuation: samples in batches of similar
/// context length, each context computed once for all its choices.
fn continuation_logliks(
    model: &Model,
    records: &[TaskRecord],
    seqs: &[TokenizedSample],
    batch_size: usize,
    progress: &indicatif::ProgressBar,
) -> Result<Vec<f64>> {
    // Where each sample's choices start in `seqs`.
    let first_seq: Vec<usize> =
        records.iter().scan(0, |next, r| Some(std::mem::replace(next, *next + r.choices.len()))).collect();
    let groups = shared_prefixes(records, seqs, &first_seq);
    progress.set_length(groups.len() as u64);
    let lengths: Vec<usize> = groups.iter().map(|g| g.prefix.len()).collect();
    let mut logliks = vec![0.0; seqs.len()];
    for batch in scoring::length_sorted_batches(&lengths, CONTINUATION_POOL * batch_size) {
        let chosen: Vec<&SharedPrefix> = batch.iter().map(|&g| &groups[g]).collect();
        let logits = scoring::logits_after_prefixes(model, &chosen, batch_size)?;
        let batch_seqs: Vec<usize> =
            batch.iter().flat_map(|&g| first_seq[g]..first_seq[g] + groups[g].continuations.len()).collect();
        // Each sequence's sum on one thread, in order: the same bytes on any number of threads.
        let sums = batch_seqs.par_iter().zip(&logits).map(|(&seq, l)| loglik(&seqs[seq], l)).collect::<Vec<_>>();
        for (&seq, sum) in batch_seqs.iter().zip(sums) {
            logliks[seq] = sum?;
        }
        progress.inc(batch.len() as u64);
    }
    Ok(logliks)
}

/// Batches of samples per call of [`scoring::logits_after_prefixes`]: their choices are
/// sorted by length across the lot, so a pass of choices pads only to others of similar length.
const CONTINUATION_POOL: usize = 2;

/// Σ log p(next token) over a sequence's answer positions, from their logits.
fn loglik(seq: &TokenizedSample, logits: &candle_core::Tensor) -> Result<f64> {
    let next: Vec<u32> = answer_positions(seq).map(|p| seq.input_ids[p + 1]).collect();
    Ok(scoring::summarise_rows(logits, 0, &next)?.iter().map(|r| r.picked as f64 - r.logsumexp).sum())
}

fn score_choices(records: &[TaskRecord], logliks: &[f64]) -> Vec<Scored> {
    let mut offset = 0;
    records
        .iter()
        .map(|r| {
            let loglik = logliks[offset..offset + r.choices.len()].to_vec();
            offset += r.choices.len();
            let chars: Vec<u32> =
                r.choices.iter().map(|c| c.strip_prefix(' ').unwrap_or(c).chars().count() as u32).collect();
            let normed: Vec<f64> = loglik.iter().zip(&chars).map(|(ll, &n)| ll / n.max(1) as f64).collect();
            let gold = r.gold as usize;
            let gold_bytes = r.choices[gold].strip_prefix(' ').unwrap_or(&r.choices[gold]).len().max(1);
            let best_wrong = loglik
                .iter()
                .enumerate()
                .filter(|&(i, _)| i != gold)
                .map(|(_, &l)| l)
                .fold(f64::NEG_INFINITY, f64::max);
            Scored {
                pred: argmax(&loglik),
                pred_norm: argmax(&normed),
                gold_per_byte: loglik[gold] / gold_bytes as f64,
                margin: loglik[gold] - best_wrong,
                loglik,
                chars,
            }
        })
        .collect()
}

/// Greedy continuation of `ids` until `eos` or `max_new` tokens (recomputing the prefix each
/// step: generation is only for small evaluation sets).
/// A ceiling on `--generate`: far beyond any answer of the tasks (lm-evaluation-harness
/// generates 256 tokens at most by default), and short of a run that never ends.
pub const MAX_GENERATED_TOKENS: usize = 4096;

fn generate_greedy(model: &Model, ids: &[u32], max_new: usize, eos: Option<u32>) -> Result<Vec<u32>> {
    let mut seq = ids.to_vec();
    for _ in 0..max_new {
        let logits = scoring::logits_at(model, &[Request { ids: &seq, positions: vec![seq.len() - 1] }])?.remove(0);
        let next = logits.get(0)?.argmax(0)?.to_scalar::<u32>()?;
        if Some(next) == eos {
            break;
        }
        seq.push(next);
    }
    Ok(seq[ids.len()..].to_vec())
}

fn predictions_batch(
    records: &[TaskRecord],
    scored: &[Scored],
    generations: Option<&[String]>,
) -> Result<(Arc<Schema>, RecordBatch)> {
    let list = |t: DataType| DataType::List(Arc::new(Field::new("item", t, true)));
    let mut fields = vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("gold", DataType::UInt32, false),
        Field::new("pred", DataType::UInt32, false),
        Field::new("pred_norm", DataType::UInt32, false),
        Field::new("loglik", list(DataType::Float64), false),
        Field::new("choice_chars", list(DataType::UInt32), false),
        Field::new("gold_loglik_per_byte", DataType::Float64, false),
        Field::new("margin", DataType::Float64, false),
    ];
    let (mut ll, mut chars) = (ListBuilder::new(Float64Builder::new()), ListBuilder::new(UInt32Builder::new()));
    for s in scored {
        ll.values().append_slice(&s.loglik);
        ll.append(true);
        chars.values().append_slice(&s.chars);
        chars.append(true);
    }
    let mut columns: Vec<arrow_array::ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(records.iter().map(|r| &r.id))),
        Arc::new(UInt32Array::from_iter_values(records.iter().map(|r| r.gold))),
        Arc::new(UInt32Array::from_iter_values(scored.iter().map(|s| s.pred as u32))),
        Arc::new(UInt32Array::from_iter_values(scored.iter().map(|s| s.pred_norm as u32))),
        Arc::new(ll.finish()),
        Arc::new(chars.finish()),
        Arc::new(Float64Array::from_iter_values(scored.iter().map(|s| s.gold_per_byte))),
        Arc::new(Float64Array::from_iter_values(scored.iter().map(|s| s.margin))),
    ];
    if let Some(texts) = generations {
        fields.push(Field::new("generation", DataType::Utf8, false));
        fields.push(Field::new("rouge_l", DataType::Float64, false));
        columns.push(Arc::new(StringArray::from_iter_values(texts)));
        columns.push(Arc::new(Float64Array::from_iter_values(
            records.iter().zip(texts).map(|(r, g)| rouge_l(g, r.target())),
        )));
    }
    let schema = Arc::new(Schema::new(fields));
    Ok((schema.clone(), RecordBatch::try_new(schema, columns)?))
}

/// Where the per-sample predictions go: the summary's path with `.parquet`.
pub fn predictions_path(summary: &Path) -> PathBuf {
    summary.with_extension("parquet")
}

/// `evaluate`: accuracy of a model (+ adapter) on a task file → JSON summary + predictions.
pub fn evaluate(
    model_dir: &Path,
    adapter_dir: Option<&Path>,
    data_path: &Path,
    out: &Path,
    opts: &EvalOptions,
) -> Result<()> {
    for (flag, value) in [("batch-size", Some(opts.batch_size)), ("limit", opts.limit), ("generate", opts.generate)] {
        if value == Some(0) {
            return Err(bad_usage(format!("--{flag} 0: must be at least 1")));
        }
    }
    if let Some(n) = opts.generate.filter(|&n| n > MAX_GENERATED_TOKENS) {
        return Err(bad_usage(format!("--generate {n}: at most {MAX_GENERATED_TOKENS} tokens per answer")));
    }
    let predictions = predictions_path(out);
    let mut inputs = vec![model_dir, data_path];
    inputs.extend(adapter_dir);
    output::claim(&[(&predictions, Kind::parquet(PREDICTIONS_FORMAT)), (out, Kind::json(SUMMARY_FORMAT))], &inputs)?;
    let (mut records, table) = data::read_tasks(data_path)?;
    records.truncate(opts.limit.unwrap_or(usize::MAX));
    if records.is_empty() {
        return Err(bad_input(data_path, "holds no samples to evaluate"));
    }
    let tokenizer_path = model_dir.join("tokenizer.json");
    let tokenizer: Tokenizer = tokens::load_tokenizer(&tokenizer_path)?;
    let model = Model::load_for_scoring(model_dir, adapter_dir, opts.dtype, &opts.device)?;
    model::check_tokenizer_fits(&tokenizer, &tokenizer_path, model.config.vocab_size)?;
    let seqs = records
        .iter()
        .flat_map(|r| r.choices.iter().map(move |c| (r, c)))
        .map(|(r, c)| tokens::tokenize_continuation(&tokenizer, &r.id, &r.context, c))
        .collect::<Result<Vec<_>>>()?;
    let progress = indicatif::ProgressBar::new(seqs.len() as u64).with_message("evaluate");
    let scoring = std::time::Instant::now();
    let logliks = continuation_logliks(&model, &records, &seqs, opts.batch_size, &progress)
        .map_err(|e| bad_input(model_dir, e))?;
    progress.finish_and_clear();
    crate::profile::report("evaluate", "the scoring passes", scoring.elapsed().as_secs_f64());
    let scored = score_choices(&records, &logliks);
    let generations = opts.generate.map(|max_new| generate_all(&model, &tokenizer, &records, max_new)).transpose()?;
    let n = records.len().max(1) as f64;
    let acc = scored.iter().zip(&records).filter(|(s, r)| s.pred == r.gold as usize).count() as f64 / n;
    let acc_norm = scored.iter().zip(&records).filter(|(s, r)| s.pred_norm == r.gold as usize).count() as f64 / n;
    let mut summary = json!({
        "task": table.provenance.extra.get("task"), "split": table.provenance.extra.get("split"),
        "fedmkt_format": SUMMARY_FORMAT, "data": data_path.display().to_string(), "model": model_dir.display().to_string(),
        "adapter": adapter_dir.map(|d| d.display().to_string()), "n": records.len(), "acc": acc, "acc_norm": acc_norm,
        "scoring": "summed log-likelihood of each choice after the context; acc_norm divides by the choice's characters (lm-evaluation-harness)",
    });
    if let Some(texts) = &generations {
        let mean = records.iter().zip(texts).map(|(r, g)| rouge_l(g, r.target())).sum::<f64>() / n;
        summary["rouge_l"] = json!(mean);
    }
    let provenance = Provenance::new(PREDICTIONS_FORMAT, 1, "evaluate").input("dataset", io::file_hash(data_path)?);
    let provenance = model::with_model_inputs(provenance, model_dir, adapter_dir)?;
    let (schema, batch) = predictions_batch(&records, &scored, generations.as_deref())?;
    // Predictions first, the summary (make's target) last: they move into place together.
    let mut commit = Commit::new();
    io::stage_parquet(&mut commit, &predictions, schema, &[batch], &provenance)?;
    commit.file(out, Kind::json(SUMMARY_FORMAT), |f| {
        Ok(std::io::Write::write_all(f, (serde_json::to_string_pretty(&summary)? + "\n").as_bytes())?)
    })?;
    commit.finish()?;
    eprintln!("evaluate: n={} acc={acc:.4} acc_norm={acc_norm:.4} -> {}", records.len(), out.display());
    Ok(())
}

fn generate_all(model: &Model, tokenizer: &Tokenizer, records: &[TaskRecord], max_new: usize) -> Result<Vec<String>> {
    let eos = tokenizer
        .get_added_vocabulary()
        .get_vocab()
        .iter()
        .find(|(t, _)| ["<eos>", "</s>", "<|endoftext|>", "<|im_end|>"].contains(&t.as_str()))
        .map(|(_, &id)| id);
    records
        .iter()
        .map(|r| {
            let ids =
                tokenizer.encode(r.context.as_str(), true).map_err(|e| anyhow::anyhow!("{e}"))?.get_ids().to_vec();
            let new = generate_greedy(model, &ids, max_new, eos)?;
            tokenizer.decode(&new, true).map_err(|e| anyhow::anyhow!("{e}"))
        })
        .collect()
}
