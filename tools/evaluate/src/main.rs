//! `evaluate`: multiple-choice accuracy of a model (+ LoRA adapter) on a task file.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Scores every choice by its summed log-likelihood after the context, as
/// lm-evaluation-harness does: acc (argmax) and acc_norm (argmax per character). Writes a JSON
/// summary and, beside it, a Parquet file of per-sample predictions.
#[derive(Parser)]
#[command(version, after_help = "Example:\n  evaluate --model runs/default/models/smollm2-135m --data runs/default/data/arc-easy/eval.parquet \\\n           --out runs/default/round-1/eval/client-1.json")]
struct Args {
    /// Model folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    model: PathBuf,
    /// PEFT LoRA adapter folder to apply.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Task Parquet file (from prepare-data).
    #[arg(long)]
    data: PathBuf,
    /// JSON summary to write; predictions go to the same path with .parquet.
    #[arg(long)]
    out: PathBuf,
    /// Score only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Also generate greedily up to N tokens per sample and report Rouge-L against the target.
    #[arg(long)]
    generate: Option<usize>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Compute dtype: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn main() -> ExitCode {
    let args = Args::parse();
    fedmkt::cli::run("evaluate", || {
        let opts = fedmkt::eval::EvalOptions {
            batch_size: args.batch_size,
            dtype: fedmkt::model::parse_dtype(&args.dtype)?,
            device: fedmkt::model::parse_device(&args.device)?,
            limit: args.limit,
            generate: args.generate,
        };
        fedmkt::eval::evaluate(&args.model, args.adapter.as_deref(), &args.data, &args.out, &opts)
    })
}
