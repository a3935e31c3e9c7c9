//! `select`: DualMinCE, the paper's selective knowledge transfer (Algorithm 2).
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Per public sample, the candidate sender with the smallest answer loss (nats per byte)
/// wins, and is kept only if it beats the receiver's own loss by more than --tolerance.
/// Writes the winners' aligned top-K (possibly none: an empty file is valid).
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  select --local runs/default/round-1/server/local.parquet \\\n         --candidates runs/default/round-1/server/from-client-1.parquet runs/default/round-1/server/from-client-2.parquet \\\n         --out runs/default/round-1/server/selected.parquet\n\nFormat: tools/FORMATS.md (selected)."
)]
struct Args {
    /// The receiver's own knowledge set (infer-logits).
    #[arg(long)]
    local: PathBuf,
    /// Aligned knowledge sets of the senders (align), in priority order for exact ties.
    #[arg(long, num_args = 1.., required = true)]
    candidates: Vec<PathBuf>,
    /// A sender must beat the receiver by more than this many nats per byte.
    #[arg(long, default_value_t = 1e-6)]
    tolerance: f64,
    /// A sample no sender wins: drop it from distillation (the paper), or distil the receiver
    /// towards its own top-K, party `self` (FATE-LLM's fedmkt_trainer.py).
    #[arg(long, value_enum, default_value_t = fedmkt::select::Fallback::Drop)]
    fallback: fedmkt::select::Fallback,
    /// Selected targets Parquet file to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("select", || {
        let candidates: Vec<&std::path::Path> = args.candidates.iter().map(PathBuf::as_path).collect();
        fedmkt::select::select(&args.local, &candidates, args.tolerance, args.fallback, &args.out)
    })
}
