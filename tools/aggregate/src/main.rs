//! `aggregate`: FedAvg of LoRA adapters, in the clear or by secure aggregation.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fedmkt::aggregate::secagg;

const EXAMPLES: &str = "Examples:
  aggregate average --adapters r1/client-1/adapter r1/client-2/adapter --out r1/fedavg/adapter

  Secure aggregation (Bonawitz et al. 2017, Figure 4), each line run by the party named:
  client k, once: aggregate identity --party K --out id/client-K   (id/client-K/verify-key.json to every client)
  client k: aggregate keygen --identity id/client-K --round 1 --out sec/client-K
  client k: aggregate share --keys sec/client-K --publics sec/*/public.json --verify id/*/verify-key.json \\
                --out sec/shares/from-K
  client k: aggregate mask --keys sec/client-K --shares sec/shares/*/to-K.json --adapter r1/client-K/adapter \\
                --out sec/masked/client-K.parquet
  server:   aggregate sum --masked sec/masked/*.parquet --out sec/sum.parquet --survivors sec/survivors.json
  client k: aggregate confirm --keys sec/client-K --identity id/client-K --survivors sec/survivors.json \\
                --out sec/signatures/K.json
  client k: aggregate reveal --keys sec/client-K --survivors sec/survivors.json --signatures sec/signatures/*.json \\
                --verify id/*/verify-key.json --out sec/reveal/K.json
  server:   aggregate unmask --sum sec/sum.parquet --reveals sec/reveal/*.json --publics sec/*/public.json \\
                --out r1/fedavg/adapter

Formats and threat model: tools/FORMATS.md (adapter folders, secure aggregation).";

#[derive(Parser)]
#[command(version, after_help = EXAMPLES)]
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
    /// Client, once: its long-term signing key; verify-key.json goes to every other client.
    Identity {
        /// The client's id, 1..=255.
        #[arg(long)]
        party: u32,
        #[arg(long)]
        out: PathBuf,
    },
    /// Client, round 0: key pairs and seeds (secret.json stays, public.json is published, signed).
    Keygen {
        /// The client's identity folder (from `identity`).
        #[arg(long)]
        identity: PathBuf,
        #[arg(long)]
        round: u64,
        #[arg(long)]
        out: PathBuf,
    },
    /// Client, round 1: checks every public key's signature, then seals Shamir shares of its
    /// masking key and seed for every client (to-<party>.json).
    Share {
        #[arg(long)]
        keys: PathBuf,
        /// The public.json of every client, as the server relayed them.
        #[arg(long, num_args = 1.., required = true)]
        publics: Vec<PathBuf>,
        /// Every client's verify-key.json, received outside the server's reach.
        #[arg(long, num_args = 1.., required = true)]
        verify: Vec<PathBuf>,
        /// Shares needed to unmask (default: more than half of the clients).
        #[arg(long)]
        threshold: Option<usize>,
        /// Accept a threshold of half the clients or fewer (prints a warning).
        #[arg(long)]
        allow_low_threshold: bool,
        #[arg(long)]
        out: PathBuf,
    },
    /// Client, round 2: its adapter times --weight, fixed-point encoded and masked against
    /// the clients whose shares it received.
    Mask {
        #[arg(long)]
        keys: PathBuf,
        /// The share files addressed to this client (to-<party>.json of every sender).
        #[arg(long, num_args = 1.., required = true)]
        shares: Vec<PathBuf>,
        #[arg(long)]
        adapter: PathBuf,
        /// Its private sample count (default: the count distill recorded in the adapter's training log).
        #[arg(long)]
        weight: Option<f64>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Server: masked files added modulo 2^64, and the survivor list sent to the clients.
    Sum {
        #[arg(long, num_args = 1.., required = true)]
        masked: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        survivors: PathBuf,
    },
    /// Client, round 3: signs the survivor list (one list per round).
    Confirm {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        identity: PathBuf,
        #[arg(long)]
        survivors: PathBuf,
        #[arg(long)]
        out: PathBuf,
    },
    /// Client, round 4: the shares the server needs (seeds of survivors, masking keys of
    /// clients that dropped), once at least the threshold of survivors signed the same list.
    Reveal {
        #[arg(long)]
        keys: PathBuf,
        #[arg(long)]
        survivors: PathBuf,
        #[arg(long, num_args = 1.., required = true)]
        signatures: Vec<PathBuf>,
        #[arg(long, num_args = 1.., required = true)]
        verify: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Server: the weighted average adapter from the sum and at least the threshold of reveals.
    Unmask {
        #[arg(long)]
        sum: PathBuf,
        #[arg(long, num_args = 1.., required = true)]
        reveals: Vec<PathBuf>,
        #[arg(long, num_args = 1.., required = true)]
        publics: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
}

fn paths(list: &[PathBuf]) -> Vec<&Path> {
    list.iter().map(PathBuf::as_path).collect()
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("aggregate", || match &args.command {
        Command::Average { adapters, weights, out } => {
            fedmkt::aggregate::fedavg::average(&paths(adapters), weights.as_deref(), out)
        }
        Command::Identity { party, out } => secagg::identity(*party, out),
        Command::Keygen { identity, round, out } => secagg::keygen(identity, *round, out),
        Command::Share { keys, publics, verify, threshold, allow_low_threshold, out } => {
            secagg::share(keys, &paths(publics), &paths(verify), *threshold, *allow_low_threshold, out)
        }
        Command::Mask { keys, shares, adapter, weight, out } => {
            let weight = match weight {
                Some(w) => *w,
                None => fedmkt::aggregate::fedavg::recorded_samples(adapter)?,
            };
            secagg::mask(keys, &paths(shares), adapter, weight, out)
        }
        Command::Sum { masked, out, survivors } => secagg::sum(&paths(masked), out, survivors),
        Command::Confirm { keys, identity, survivors, out } => secagg::confirm(keys, identity, survivors, out),
        Command::Reveal { keys, survivors, signatures, verify, out } => {
            secagg::reveal(keys, survivors, &paths(signatures), &paths(verify), out)
        }
        Command::Unmask { sum, reveals, publics, out } => secagg::unmask(sum, &paths(reveals), &paths(publics), out),
    })
}
