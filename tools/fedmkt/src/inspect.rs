//! `inspect`: what a fedmkt file says, in words. Per sample of a knowledge, aligned or
//! selected set: its answer loss, and at each position the token it predicts and its top-K
//! decoded with their probabilities and the mass outside them; for a selected set, which sender
//! won and the losses that decided it. A vocabulary map token by token (searchable by text),
//! predictions sample by sample (the choices' scores, the gold, the pick), an adapter folder
//! (its LoRA settings, base and tensors); any other fedmkt table gets a summary of its format,
//! rows and metadata.
//!
//! The tokenizer is found from the file's provenance where it can (a `tokenizer.json` of the
//! run whose hash the file records, in `models/*/` of a folder above it), else `--tokenizer`;
//! the token file (for the text and the true next tokens) the same way, in `tok/*/`.
use std::path::{Path, PathBuf};

use anyhow::Result;
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::{Array, Float64Array, ListArray};
use serde_json::{json, Value};
use tokenizers::Tokenizer;

use crate::cli::bad_input;
use crate::eval::PREDICTIONS_FORMAT;
use crate::formats::VOCAB_MAP_FORMAT;
use crate::io::{self, ParquetTable};
use crate::knowledge::{self, SampleKnowledge, KNOWLEDGE_FORMAT};
use crate::select::SELECTED_FORMAT;
use crate::tokens::{self, TokenizedSample};

/// What `inspect` shows.
#[derive(Debug, Clone, Default)]
pub struct InspectOptions {
    pub tokenizer: Option<PathBuf>,
    pub sample: Option<String>,
    pub limit: Option<usize>,
    pub json: bool,
    /// Only the vocabulary map's rows whose source or target text contains this.
    pub find: Option<String>,
}

/// A file of the run whose content hash is `hash`, among `pattern`'s matches (`models/*/
/// tokenizer.json`, `tok/*/*.parquet`) in the folders above `start`, nearest first.
fn find_by_hash(start: &Path, pattern: &[&str], hash: &str) -> Option<PathBuf> {
    let absolute = std::path::absolute(start).ok()?;
    for folder in absolute.ancestors().skip(1).take(5) {
        let Ok(entries) = std::fs::read_dir(folder.join(pattern[0])) else { continue };
        for entry in entries.flatten() {
            let candidates: Vec<PathBuf> = match pattern[1] {
                "*.parquet" => std::fs::read_dir(entry.path())
                    .map(|d| {
                        d.flatten()
                            .map(|e| e.path())
                            .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
                            .collect()
                    })
                    .unwrap_or_default(),
                name => vec![entry.path().join(name)],
            };
            if let Some(found) =
                candidates.into_iter().find(|c| c.is_file() && io::file_hash(c).is_ok_and(|h| h == hash))
            {
                return Some(found);
            }
        }
    }
    None
}

/// A token's text as the tokenizer decodes it alone, quoted so that spaces show.
fn token_text(tokenizer: Option<&Tokenizer>, id: u32) -> String {
    match tokenizer.and_then(|t| t.decode(&[id], false).ok()) {
        Some(text) => format!("{text:?}"),
        None => format!("#{id}"),
    }
}

/// One position of a sample as JSON: the true next token (where known), and the top-K with
/// their probabilities (`exp(logit − logsumexp)`: for a sampled set, the draws' shares).
fn position_json(
    sample: &SampleKnowledge,
    row: usize,
    k: usize,
    next: Option<u32>,
    tokenizer: Option<&Tokenizer>,
) -> Value {
    let lse = sample.logsumexp[row] as f64;
    let top: Vec<Value> = (row * k..(row + 1) * k)
        .filter(|&j| sample.topk_ids[j] != knowledge::PAD_ID)
        .map(|j| {
            let id = sample.topk_ids[j];
            json!({"id": id, "token": token_text(tokenizer, id), "p": (sample.topk_logits[j].to_f64() - lse).exp()})
        })
        .collect();
    json!({
        "position": sample.positions[row],
        "next": next.map(|id| json!({"id": id, "token": token_text(tokenizer, id)})),
        "top": top,
        "tail": sample.tail_mass[row],
    })
}

fn sample_json(
    sample: &SampleKnowledge,
    k: usize,
    tokens: Option<&TokenizedSample>,
    tokenizer: Option<&Tokenizer>,
) -> Value {
    let next = |p: u32| tokens.and_then(|t| t.input_ids.get(p as usize + 1).copied());
    let text = tokens.zip(tokenizer).and_then(|(t, tk)| tk.decode(&t.input_ids, false).ok());
    json!({
        "id": sample.id,
        "text": text,
        "answer_nll": sample.answer_nll,
        "answer_tokens": sample.answer_tokens,
        "answer_bytes": sample.answer_bytes,
        "positions": (0..sample.positions.len())
            .map(|row| position_json(sample, row, k, next(sample.positions[row]), tokenizer))
            .collect::<Vec<_>>(),
    })
}

/// The human view of one sample's JSON.
fn sample_text(sample: &Value) -> String {
    let mut out = format!(
        "sample {}: answer NLL {:.3} nats over {} tokens",
        sample["id"].as_str().unwrap_or(""),
        sample["answer_nll"].as_f64().unwrap_or(0.0),
        sample["answer_tokens"]
    );
    if let Some(choice) = sample.get("selected") {
        out += &format!(
            "; won by {} ({:.3} against the receiver's {:.3} nats/byte)",
            choice["party"].as_str().unwrap_or(""),
            choice["sender_loss"].as_f64().unwrap_or(f64::NAN),
            choice["receiver_loss"].as_f64().unwrap_or(f64::NAN)
        );
    }
    if let Some(text) = sample["text"].as_str() {
        out += &format!("\n  text: {text:?}");
    }
    for position in sample["positions"].as_array().into_iter().flatten() {
        let next = position["next"].get("token").and_then(Value::as_str).map_or(String::new(), |t| format!(" → {t}"));
        let top: Vec<String> = position["top"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| format!("{} {:.3}", e["token"].as_str().unwrap_or(""), e["p"].as_f64().unwrap_or(0.0)))
            .collect();
        out += &format!(
            "\n  {}{next}: {} · tail {:.3}",
            position["position"],
            top.join(" · "),
            position["tail"].as_f64().unwrap_or(0.0)
        );
    }
    out
}

/// The rows to show of a file whose samples are `ids`: `--sample`, else the first `--limit`
/// (all without it).
fn chosen_rows(ids: &[&str], path: &Path, opts: &InspectOptions) -> Result<Vec<usize>> {
    match &opts.sample {
        Some(id) => ids
            .iter()
            .position(|i| i == id)
            .map(|i| vec![i])
            .ok_or_else(|| bad_input(path, format!("has no sample '{id}'"))),
        None => Ok((0..ids.len()).take(opts.limit.unwrap_or(usize::MAX)).collect()),
    }
}

fn inspect_knowledge(path: &Path, table: &ParquetTable, opts: &InspectOptions) -> Result<Vec<Value>> {
    let k = knowledge::top_k(table)?;
    let samples = knowledge::knowledge_rows(table, k)?;
    let tokenizer_path = match &opts.tokenizer {
        Some(given) => Some(given.clone()),
        None => table.input_hash("tokenizer").ok().and_then(|h| find_by_hash(path, &["models", "tokenizer.json"], h)),
    };
    let tokenizer = tokenizer_path.as_deref().map(tokens::load_tokenizer).transpose()?;
    let token_file = table.input_hash("tokens").ok().and_then(|h| find_by_hash(path, &["tok", "*.parquet"], h));
    let token_samples = match token_file {
        Some(file) => tokens::read_tokens(&file)?.0,
        None => Vec::new(),
    };
    let selected = table.provenance.format == SELECTED_FORMAT;
    let choices = |i: usize| -> Result<Value> {
        if !selected {
            return Ok(Value::Null);
        }
        let (party, sender, receiver) = (
            table.strings("party")?,
            table.values::<arrow_array::types::Float64Type>("sender_loss")?,
            table.values::<arrow_array::types::Float64Type>("receiver_loss")?,
        );
        Ok(json!({"party": party[i], "sender_loss": sender[i], "receiver_loss": receiver[i]}))
    };
    let mut out = Vec::new();
    let ids: Vec<&str> = samples.iter().map(|s| s.id.as_str()).collect();
    for index in chosen_rows(&ids, path, opts)? {
        let sample = &samples[index];
        let tokens = token_samples.iter().find(|t| t.id == sample.id);
        let mut value = sample_json(sample, k, tokens, tokenizer.as_ref());
        if selected {
            value["selected"] = choices(index)?;
        }
        out.push(value);
    }
    Ok(out)
}

/// Any other fedmkt table: its format, rows, columns and metadata.
fn summary(table: &ParquetTable) -> Value {
    let columns: Vec<String> =
        table.schema.fields().iter().map(|f| format!("{}: {}", f.name(), f.data_type())).collect();
    json!({
        "format": table.provenance.format,
        "format_version": table.provenance.format_version,
        "tool": table.provenance.tool,
        "rows": table.num_rows(),
        "columns": columns,
        "inputs": table.provenance.inputs,
        "metadata": table.provenance.extra,
    })
}

/// A vocabulary map token by token: each source token's text, its target and how they match
/// (only rows whose texts contain `--find`).
fn inspect_vocab_map(table: &ParquetTable, opts: &InspectOptions) -> Result<Vec<(Value, String)>> {
    let (src_ids, tgt_ids) = (table.values::<UInt32Type>("src_id")?, table.values::<UInt32Type>("tgt_id")?);
    let (src_texts, tgt_texts) = (table.strings("src_text")?, table.strings("tgt_text")?);
    let (distances, kinds) = (table.values::<UInt32Type>("distance")?, table.strings("match")?);
    let wanted = |i: &usize| opts.find.as_ref().is_none_or(|f| src_texts[*i].contains(f) || tgt_texts[*i].contains(f));
    let rows = (0..src_ids.len()).filter(wanted).take(opts.limit.unwrap_or(usize::MAX));
    Ok(rows
        .map(|i| {
            let line = format!(
                "{} {:?} → {} {:?} ({}, distance {})",
                src_ids[i], src_texts[i], tgt_ids[i], tgt_texts[i], kinds[i], distances[i]
            );
            let value = json!({"src_id": src_ids[i], "src_text": src_texts[i], "tgt_id": tgt_ids[i],
                "tgt_text": tgt_texts[i], "match": kinds[i], "distance": distances[i]});
            (value, line)
        })
        .collect())
}

/// `evaluate`'s predictions sample by sample: each choice's log-likelihood, the gold, the pick.
fn inspect_predictions(path: &Path, table: &ParquetTable, opts: &InspectOptions) -> Result<Vec<(Value, String)>> {
    let ids = table.strings("id")?;
    let (gold, pred, pred_norm) = (
        table.values::<UInt32Type>("gold")?,
        table.values::<UInt32Type>("pred")?,
        table.values::<UInt32Type>("pred_norm")?,
    );
    let (margin, per_byte) =
        (table.values::<Float64Type>("margin")?, table.values::<Float64Type>("gold_loglik_per_byte")?);
    let logliks: Vec<Vec<f64>> = table
        .column::<ListArray>("loglik")?
        .iter()
        .flat_map(|column| column.iter().map(|row| row.map_or_else(Vec::new, |r| list_values(&r))).collect::<Vec<_>>())
        .collect();
    let rows = chosen_rows(&ids.iter().map(String::as_str).collect::<Vec<_>>(), path, opts)?;
    Ok(rows
        .into_iter()
        .map(|i| {
            let mark = if pred[i] == gold[i] { "right" } else { "wrong" };
            let scores: Vec<String> = logliks[i].iter().map(|l| format!("{l:.3}")).collect();
            let line = format!(
                "{}: gold {}, pick {} ({mark}; by length {}), log-likelihoods [{}], margin {:+.3}, gold {:.4} nats/byte",
                ids[i], gold[i], pred[i], pred_norm[i], scores.join(", "), margin[i], per_byte[i]
            );
            let value = json!({"id": ids[i], "gold": gold[i], "pred": pred[i], "pred_norm": pred_norm[i],
                "loglik": logliks[i], "margin": margin[i], "gold_loglik_per_byte": per_byte[i]});
            (value, line)
        })
        .collect())
}

fn list_values(array: &arrow_array::ArrayRef) -> Vec<f64> {
    array.as_any().downcast_ref::<Float64Array>().map_or_else(Vec::new, |a| a.values().to_vec())
}

/// An adapter folder: its LoRA settings, the base it was made for, its tensors.
fn inspect_adapter(dir: &Path) -> Result<Value> {
    let adapter = crate::model::lora::read_adapter(dir)?;
    let parameters: usize = adapter.tensors.values().map(|t| t.elem_count()).sum();
    Ok(json!({
        "adapter": dir.display().to_string(),
        "r": adapter.spec.r, "lora_alpha": adapter.spec.alpha, "lora_dropout": adapter.spec.dropout,
        "target_modules": adapter.spec.targets,
        "base_model": adapter.base_config,
        "tensors": adapter.tensors.len(),
        "parameters": parameters,
    }))
}

/// `inspect`: `path` shown to stdout, as text or JSON lines.
pub fn inspect(path: &Path, opts: &InspectOptions) -> Result<()> {
    if path.is_dir() {
        return print(&[(inspect_adapter(path)?, String::new())], opts);
    }
    let table = io::read_parquet_of(path, &[])?;
    let format = table.provenance.format.as_str();
    let values: Vec<(Value, String)> = if format == KNOWLEDGE_FORMAT || format == SELECTED_FORMAT {
        inspect_knowledge(path, &table, opts)?
            .into_iter()
            .map(|v| {
                let line = sample_text(&v);
                (v, line)
            })
            .collect()
    } else if format == VOCAB_MAP_FORMAT {
        inspect_vocab_map(&table, opts)?
    } else if format == PREDICTIONS_FORMAT {
        inspect_predictions(path, &table, opts)?
    } else {
        vec![(summary(&table), String::new())]
    };
    print(&values, opts)
}

/// Each value as a line of JSON (`--json`), its text, or (without one) pretty JSON.
fn print(values: &[(Value, String)], opts: &InspectOptions) -> Result<()> {
    for (value, line) in values {
        match (opts.json, line.is_empty()) {
            (true, _) => println!("{value}"),
            (false, false) => println!("{line}"),
            (false, true) => println!("{}", serde_json::to_string_pretty(value)?),
        }
    }
    Ok(())
}
