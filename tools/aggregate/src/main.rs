//! `aggregate`: FedAvg of LoRA adapters.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fedmkt::secagg;

#[derive(Parser)]
#[command(
    version,
    after_help = "Examples:\n  aggregate average --adapters r1/client-1/adapter r1/client-2/adapter --out r1/fedavg/adapter\n\n  Secure (each line run by the party named):\n  client k: aggregate keygen --party K --round 1 --out sec/client-K\n  client k: aggregate share --keys sec/client-K --publics sec/*/public.json --threshold 2 --out sec/shares/from-K\n  client k: aggregate mask --keys sec/client-K --publics sec/*/public.json --adapter r1/client-K/adapter --weight 450 --out sec/masked/client-K.parquet\n  server:   aggregate sum --masked sec/masked/*.parquet --out sec/sum.parquet\n  client k: aggregate reveal --keys sec/client-K --shares sec/shares/*/to-K.json --publics sec/*/public.json --sum sec/sum.parquet --out sec/reveal/K.json\n  server:   aggregate unmask --sum sec/sum.parquet --reveals sec/reveal/*.json --publics sec/*/public.json --threshold 2 --out r1/fedavg/adapter\n\nFormats: tools/FORMATS.md (adapter folders, secure aggregation)."
)]
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
    /// Client: a key pair and self-mask seed (secret.json stays, public.json is published).
    Keygen {
        #[arg(long)]
        party: u32,
        #[arg(long)]
        round: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Client: encrypted Shamir shares of its key and seed for every client (to-<party>.json).
    Share {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long, num_args = 1.., required = true)]
        publics: Vec<PathBuf>,
        /// Reveals needed to unmask (clients that may drop: n − threshold).
        #[arg(long)]
        threshold: u8,
        #[arg(long)]
        out: PathBuf,
    },
    /// Client: its adapter times --weight, fixed-point encoded and masked.
    Mask {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long, num_args = 1.., required = true)]
        publics: Vec<PathBuf>,
        #[arg(long)]
        adapter: PathBuf,
        /// Its private sample count (default: the count distill recorded in the adapter's training log).
        #[arg(long)]
        weight: Option<f64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Server: masked files added modulo 2^64.
    Sum {
        #[arg(long, num_args = 1.., required = true)]
        masked: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Client: the shares the server needs (seeds of present clients, keys of dropped ones).
    Reveal {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long, num_args = 1.., required = true)]
        shares: Vec<PathBuf>,
        #[arg(long, num_args = 1.., required = true)]
        publics: Vec<PathBuf>,
        #[arg(long)]
        sum: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Server: the weighted average adapter from the sum and at least --threshold reveals.
    Unmask {
        #[arg(long)]
        sum: PathBuf,
        #[arg(long, num_args = 1.., required = true)]
        reveals: Vec<PathBuf>,
        #[arg(long, num_args = 1.., required = true)]
        publics: Vec<PathBuf>,
        #[arg(long)]
        threshold: u8,
        #[arg(long)]
        out: PathBuf,
    },
}

fn paths(list: &[PathBuf]) -> Vec<&Path> {
    list.iter().map(PathBuf::as_path).collect()
}

fn main() -> ExitCode {
    let args = Args::parse();
    fedmkt::cli::run("aggregate", || match &args.command {
        Command::Average { adapters, weights, out } => {
            fedmkt::aggregate::average(&paths(adapters), weights.as_deref(), out)
        }
        Command::Keygen { party, round, out } => secagg::keygen(*party, *round, out),
        Command::Share { keys, publics, threshold, out } => secagg::share(keys, &paths(publics), *threshold, out),
        Command::Mask { keys, publics, adapter, weight, out } => {
            let weight = match weight {
                Some(w) => *w,
                None => fedmkt::aggregate::recorded_samples(adapter)?,
            };
            secagg::mask(keys, &paths(publics), adapter, weight, out)
        }
        Command::Sum { masked, out } => secagg::sum(&paths(masked), out),
        Command::Reveal { keys, shares, publics, sum, out } => {
            secagg::reveal(keys, &paths(shares), &paths(publics), sum, out)
        }
        Command::Unmask { sum, reveals, publics, threshold, out } => {
            secagg::unmask(sum, &paths(reveals), &paths(publics), *threshold, out)
        }
    })
}
