//! Tokenisation of task data with byte offsets (`tokenize`).
//!
//! Each sample is encoded as one string, `context + target`, so merges across the boundary
//! happen exactly as the model sees the text; the answer starts at the first token that ends
//! beyond the context's last byte (lm-evaluation-harness splits the same way, by encoding the
//! context alone: the two agree except when a token straddles the boundary, where we count
//! the straddling token as part of the answer rather than the context).
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::builder::{ListBuilder, UInt32Builder};
use arrow_array::{RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use tokenizers::Tokenizer;

use crate::cli::bad_input;
use crate::data::{self, TaskRecord};
use crate::io::{self, Provenance};
use crate::output::{self, Kind};

/// Format name of token files (`fedmkt.format`).
pub const TOKENS_FORMAT: &str = "tokens";
pub const TOKENS_FORMAT_VERSION: u32 = 1;

/// One tokenised sample: `input_ids[answer_start..]` are the answer's tokens and token `i`
/// covers bytes `token_start[i]..token_end[i]` of `context + target` (special tokens such as
/// `<bos>` cover the empty span `0..0`).
#[derive(Debug, Clone, PartialEq)]
pub struct TokenizedSample {
    pub id: String,
    pub input_ids: Vec<u32>,
    pub answer_start: u32,
    pub token_start: Vec<u32>,
    pub token_end: Vec<u32>,
    pub context_bytes: u32,
    pub text_bytes: u32,
}

/// Load a `tokenizer.json`, turning every failure into a bad-input error naming the file.
pub fn load_tokenizer(path: &Path) -> Result<Tokenizer> {
    if !path.is_file() {
        return Err(bad_input(path, "no such file"));
    }
    Tokenizer::from_file(path).map_err(|e| bad_input(path, format!("not a valid tokenizer.json ({e})")))
}

/// Tokenise one record as `context + target` (with the tokenizer's special tokens, e.g. `<bos>`).
pub fn tokenize_record(tokenizer: &Tokenizer, record: &TaskRecord) -> Result<TokenizedSample> {
    tokenize_continuation(tokenizer, &record.id, &record.context, record.target())
}

/// Tokenise `context + continuation` as one string and find where the continuation starts.
pub fn tokenize_continuation(
    tokenizer: &Tokenizer,
    id: &str,
    context: &str,
    continuation: &str,
) -> Result<TokenizedSample> {
    let text = format!("{context}{continuation}");
    let encoding = tokenizer.encode(text.as_str(), true).map_err(|e| anyhow::anyhow!("sample '{id}': {e}"))?;
    let context_bytes = context.len() as u32;
    let (token_start, token_end): (Vec<u32>, Vec<u32>) =
        encoding.get_offsets().iter().map(|&(s, e)| (s as u32, e as u32)).unzip();
    let answer_start = token_end.iter().position(|&end| end > context_bytes).unwrap_or(token_end.len()) as u32;
    Ok(TokenizedSample {
        id: id.to_string(),
        input_ids: encoding.get_ids().to_vec(),
        answer_start,
        token_start,
        token_end,
        context_bytes,
        text_bytes: text.len() as u32,
    })
}

fn tokens_schema() -> Arc<Schema> {
    let list = || DataType::List(Arc::new(Field::new("item", DataType::UInt32, true)));
    Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("input_ids", list(), false),
        Field::new("answer_start", DataType::UInt32, false),
        Field::new("token_start", list(), false),
        Field::new("token_end", list(), false),
        Field::new("context_bytes", DataType::UInt32, false),
        Field::new("text_bytes", DataType::UInt32, false),
    ]))
}

fn u32_lists<'a>(rows: impl Iterator<Item = &'a Vec<u32>>) -> arrow_array::ListArray {
    let mut builder = ListBuilder::new(UInt32Builder::new());
    for row in rows {
        builder.values().append_slice(row);
        builder.append(true);
    }
    builder.finish()
}

/// Write tokenised samples as a token Parquet file (see FORMATS.md).
pub fn write_tokens(path: &Path, samples: &[TokenizedSample], provenance: &Provenance) -> Result<()> {
    let schema = tokens_schema();
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(StringArray::from_iter_values(samples.iter().map(|s| &s.id))),
            Arc::new(u32_lists(samples.iter().map(|s| &s.input_ids))),
            Arc::new(UInt32Array::from_iter_values(samples.iter().map(|s| s.answer_start))),
            Arc::new(u32_lists(samples.iter().map(|s| &s.token_start))),
            Arc::new(u32_lists(samples.iter().map(|s| &s.token_end))),
            Arc::new(UInt32Array::from_iter_values(samples.iter().map(|s| s.context_bytes))),
            Arc::new(UInt32Array::from_iter_values(samples.iter().map(|s| s.text_bytes))),
        ],
    )?;
    io::write_parquet(path, schema, &[batch], provenance)
}

/// Read a token Parquet file, validating each row.
/// What every token row must satisfy: columns of one length, the answer within the tokens,
/// each token's bytes `start ≤ end ≤ text_bytes` in order, the context within the text.
fn check_sample(sample: &TokenizedSample) -> std::result::Result<(), String> {
    let n = sample.input_ids.len();
    if sample.token_start.len() != n || sample.token_end.len() != n || sample.answer_start as usize > n {
        return Err("columns disagree on its length".into());
    }
    if sample.context_bytes > sample.text_bytes {
        return Err(format!("context_bytes {} exceed text_bytes {}", sample.context_bytes, sample.text_bytes));
    }
    let spans = sample.token_start.iter().zip(&sample.token_end);
    if let Some((i, (s, e))) = spans.enumerate().find(|(_, (s, e))| s > e || **e > sample.text_bytes) {
        return Err(format!("token {i} covers bytes {s}..{e}, outside 0..{}", sample.text_bytes));
    }
    if let Some(w) = sample.token_start.windows(2).find(|w| w[0] > w[1]) {
        return Err(format!("token starts {} then {} go backwards", w[0], w[1]));
    }
    Ok(())
}

pub fn read_tokens(path: &Path) -> Result<(Vec<TokenizedSample>, io::ParquetTable)> {
    use arrow_array::{Array, ListArray};
    let table = io::read_parquet(path, TOKENS_FORMAT)?;
    table.refuse_nulls(&[
        "id",
        "input_ids",
        "answer_start",
        "token_start",
        "token_end",
        "context_bytes",
        "text_bytes",
    ])?;
    let ids = table.column::<StringArray>("id")?;
    let lists = |name: &str| table.column::<ListArray>(name);
    let (input_ids, starts, ends) = (lists("input_ids")?, lists("token_start")?, lists("token_end")?);
    let nums = |name: &str| table.column::<UInt32Array>(name);
    let (answer_start, context_bytes, text_bytes) =
        (nums("answer_start")?, nums("context_bytes")?, nums("text_bytes")?);
    let values = |list: &ListArray, row: usize, name: &str| -> Result<Vec<u32>> {
        let v = list.value(row);
        let v = v
            .as_any()
            .downcast_ref::<UInt32Array>()
            .ok_or_else(|| bad_input(path, format!("column '{name}' is not a list of uint32")))?;
        Ok(v.values().to_vec())
    };
    let mut samples = Vec::with_capacity(table.num_rows());
    for b in 0..table.batches.len() {
        for row in 0..ids[b].len() {
            let sample = TokenizedSample {
                id: ids[b].value(row).to_string(),
                input_ids: values(&input_ids[b], row, "input_ids")?,
                answer_start: answer_start[b].value(row),
                token_start: values(&starts[b], row, "token_start")?,
                token_end: values(&ends[b], row, "token_end")?,
                context_bytes: context_bytes[b].value(row),
                text_bytes: text_bytes[b].value(row),
            };
            check_sample(&sample).map_err(|p| bad_input(path, format!("sample '{}': {p}", sample.id)))?;
            samples.push(sample);
        }
    }
    crate::data::check_unique_ids(path, samples.iter().map(|s| s.id.as_str()))?;
    Ok((samples, table))
}

/// An unlabelled sample: its context alone, scored as its own text (empty context, the
/// context as the continuation), so its "answer" positions predict the question's tokens and
/// its loss is the question's language-modelling loss. Its answer is never read.
fn tokenize_unlabelled(tokenizer: &Tokenizer, record: &TaskRecord) -> Result<TokenizedSample> {
    tokenize_continuation(tokenizer, &record.id, "", &record.context)
}

/// What an unlabelled token file was made from: the hash of its samples' ids and contexts,
/// the only task columns it reads (so blanking a task file's answers changes nothing).
fn contexts_hash(records: &[TaskRecord]) -> String {
    let mut text = Vec::new();
    for r in records {
        text.extend_from_slice(format!("{}\0{}\0", r.id, r.context).as_bytes());
    }
    format!("sha256:{}", io::sha256_hex(&text))
}

/// `tokenize`: a task Parquet + a `tokenizer.json` → a token Parquet (`unlabelled`: contexts
/// alone, see [`tokenize_unlabelled`]).
pub fn tokenize_file(tokenizer_path: &Path, input: &Path, out: &Path, unlabelled: bool) -> Result<()> {
    output::claim(&[(out, Kind::parquet(TOKENS_FORMAT))], &[tokenizer_path, input])?;
    let tokenizer = load_tokenizer(tokenizer_path)?;
    let (records, _) = data::read_tasks(input)?;
    let progress = indicatif::ProgressBar::new(records.len() as u64).with_message("tokenize");
    let encode = if unlabelled { tokenize_unlabelled } else { tokenize_record };
    let samples = records
        .iter()
        .map(|r| {
            progress.inc(1);
            encode(&tokenizer, r)
        })
        .collect::<Result<Vec<_>>>()?;
    progress.finish_and_clear();
    let dataset = if unlabelled { contexts_hash(&records) } else { io::file_hash(input)? };
    let mut provenance = Provenance::new(TOKENS_FORMAT, TOKENS_FORMAT_VERSION, "tokenize")
        .input("dataset", dataset)
        .input("tokenizer", io::file_hash(tokenizer_path)?);
    if unlabelled {
        provenance = provenance.extra("unlabelled", true);
    }
    write_tokens(out, &samples, &provenance)?;
    let n_tokens: usize = samples.iter().map(|s| s.input_ids.len()).sum();
    eprintln!("tokenize: {} samples, {n_tokens} tokens -> {}", samples.len(), out.display());
    Ok(())
}
