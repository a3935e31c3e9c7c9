//! `aggregate`: FedAvg of LoRA adapters.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(version, after_help = "Example:\n  aggregate average --adapters runs/x/round-1/client-1/adapter runs/x/round-1/client-2/adapter \\\n                    --out runs/x/round-1/fedavg/adapter\n\nFormat: tools/FORMATS.md (adapter folders).")]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Weighted average of same-shaped adapters (weights: private sample counts, read from
    /// each adapter's training_log.parquet unless --weights is given).
    Average {
        /// Adapter folders (same base model, rank, alpha and targets).
        #[arg(long, num_args = 1.., required = true)]
        adapters: Vec<PathBuf>,
        /// One positive weight per adapter.
        #[arg(long, num_args = 1..)]
        weights: Option<Vec<f64>>,
        /// Adapter folder to write.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let args = Args::parse();
    fedmkt::cli::run("aggregate", || match &args.command {
        Command::Average { adapters, weights, out } => {
            let dirs: Vec<&std::path::Path> = adapters.iter().map(PathBuf::as_path).collect();
            fedmkt::aggregate::average(&dirs, weights.as_deref(), out)
        }
    })
}
