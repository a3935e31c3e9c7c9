//! `evaluate`: multiple-choice accuracy of a model (+ LoRA adapter) on a task file.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Scores every choice by its summed log-likelihood after the context, as
/// lm-evaluation-harness does: acc (argmax) and acc_norm (argmax per character). Writes a JSON
/// summary and, beside it, a Parquet file of per-sample predictions.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  evaluate --model runs/default/models/smollm2-135m --data runs/default/data/arc-easy/eval.parquet \\\n           --out runs/default/round-1/eval/client-1.json"
)]
struct Args {
    #[command(flatten)]
    model: fedmkt::cli::ModelArgs,
    /// Task Parquet file (from prepare-data).
    #[arg(long)]
    data: PathBuf,
    /// JSON summary to write; predictions go to the same path with .parquet.
    #[arg(long)]
    out: PathBuf,
    /// Samples per forward pass: their contexts in one pass, then as many of their choices at
    /// a time (each after its context's cached keys and values).
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Score only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// Also generate greedily up to N tokens per sample and report Rouge-L against the target.
    #[arg(long)]
    generate: Option<usize>,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("evaluate", || {
        let (device, dtype) = fedmkt::model::placement(&args.model)?;
        let opts = fedmkt::eval::EvalOptions {
            batch_size: args.batch_size,
            dtype,
            device,
            limit: args.limit,
            generate: args.generate,
        };
        fedmkt::eval::evaluate(&args.model.model, args.model.adapter.as_deref(), &args.data, &args.out, &opts)
    })
}
