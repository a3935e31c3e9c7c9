//! `infer-logits`: a model (+ LoRA adapter) over a token file → the paper's knowledge set.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Per sample: the answer's summed negative log-likelihood (nats), its token and byte counts;
/// per position: top-K next-token ids and logits (f16) and the full-vocabulary log-sum-exp.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  infer-logits --model runs/default/models/smollm2-135m --input runs/default/tok/smollm2-135m/public.parquet \\\n               --top-k 16 --out runs/default/round-1/client-1/knowledge.parquet\n  infer-logits --model runs/default/models/smollm2-135m --input runs/default/tok/smollm2-135m/public.parquet \\\n               --sample 16 --seed 1 --out sampled.parquet\n\nFormat: tools/FORMATS.md (knowledge)."
)]
struct Args {
    #[command(flatten)]
    model: fedmkt::cli::ModelArgs,
    /// Token Parquet file (from tokenize), made with the model's tokenizer.
    #[arg(long)]
    input: PathBuf,
    /// Knowledge Parquet file to write.
    #[arg(long)]
    out: PathBuf,
    /// Logits kept per position.
    #[arg(long, default_value_t = 16, conflicts_with = "sample")]
    top_k: usize,
    /// Instead of the top-K, K ids drawn with replacement from the whole distribution per
    /// position, stored as logit ln(count) (an unbiased KD target: Sparse Logit Sampling).
    #[arg(long, value_name = "K", requires = "seed")]
    sample: Option<usize>,
    /// Seed of --sample's draws.
    #[arg(long, requires = "sample")]
    seed: Option<u64>,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// Every non-pad position, not only those predicting answer tokens.
    #[arg(long)]
    all_positions: bool,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("infer-logits", || {
        let (device, dtype) = fedmkt::model::placement(&args.model)?;
        let opts = fedmkt::knowledge::InferOptions {
            top_k: args.sample.unwrap_or(args.top_k),
            all_positions: args.all_positions,
            sample_seed: args.seed,
            batch_size: args.batch_size,
            dtype,
            device,
        };
        fedmkt::knowledge::infer_logits(&args.model.model, args.model.adapter.as_deref(), &args.input, &args.out, &opts)
    })
}
