//! Seeded generator of the test assets in `testdata/` (run by hand with `make testdata`;
//! outputs are committed, so `make test` needs no download and no generation).
//!
//! - `tokenizers/bytelevel/tokenizer.json`: GPT-2-style byte-level BPE (SmolLM2's family).
//! - `tokenizers/spm/tokenizer.json`: SentencePiece-style BPE with byte fallback and `<bos>`
//!   (Gemma's family).
//! - `tokenizers/bloom-style/tokenizer.json`: byte-level BPE behind Bloom's split (the
//!   paper's Bloom clients), all three trained on `corpus/kjv-genesis.txt`.
//! - `models/tiny-llama.gguf`, `models/tiny-gemma3.gguf`: random tiny models carrying those
//!   tokenizers in GGUF metadata, with several quantisation types; `models/bad-arch.gguf`.
//! - `bad/`: malformed inputs for the bad-input tests.
mod tiny_gguf;
mod train_tokenizers;

use std::path::PathBuf;

use anyhow::Result;
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// The testdata/ folder to write into.
    #[arg(long, default_value = "testdata")]
    out: PathBuf,
    /// Seed of the random model weights.
    #[arg(long, default_value_t = 7)]
    seed: u64,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let corpus = args.out.join("corpus/kjv-genesis.txt");
    let bytelevel = train_tokenizers::byte_level(&corpus, &args.out.join("tokenizers/bytelevel/tokenizer.json"))?;
    let spm = train_tokenizers::sentencepiece_style(&corpus, &args.out.join("tokenizers/spm/tokenizer.json"))?;
    train_tokenizers::bloom_style(&corpus, &args.out.join("tokenizers/bloom-style/tokenizer.json"))?;
    tiny_gguf::write_tiny_llama(&bytelevel, args.seed, &args.out.join("models/tiny-llama.gguf"))?;
    tiny_gguf::write_tiny_gemma3(&spm, args.seed, &args.out.join("models/tiny-gemma3.gguf"))?;
    tiny_gguf::write_bad_arch(&args.out.join("models/bad-arch.gguf"))?;
    write_bad_task_file(&args.out.join("bad/task-without-choices.parquet"))?;
    Ok(())
}

/// A task file whose `choices` column is missing (for the bad-input tests).
fn write_bad_task_file(path: &std::path::Path) -> Result<()> {
    use arrow_array::{RecordBatch, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    use std::sync::Arc;
    let schema = Arc::new(Schema::new(vec![
        Field::new("id", DataType::Utf8, false),
        Field::new("context", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![Arc::new(StringArray::from(vec!["q1"])), Arc::new(StringArray::from(vec!["Question: ?\nAnswer:"]))],
    )?;
    let provenance =
        fedmkt::io::Provenance::new(fedmkt::data::TASK_FORMAT, fedmkt::data::TASK_FORMAT_VERSION, "gen-testdata");
    fedmkt::io::write_parquet(path, schema, &[batch], &provenance)
}
