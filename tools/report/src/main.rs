//! `report`: a run's results and communication as Parquet tables and Markdown.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use fedmkt::report::comms::CommsEntry;
use fedmkt::report::results::ResultEntry;

/// Tables of a run, in the layout of the paper's Tables 2–4 (methods as rows, parties as
/// columns, "acc / acc_norm" in percent), and bytes each party sent and received per round.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  report results --result Zero-Shot,-,server=runs/default/baselines/zero-shot/gemma3-270m.json \\\n                 --result FedMKT,1,server=runs/default/round-1/eval/server.json \\\n                 --out runs/default/report.parquet --paired runs/default/paired.parquet --markdown runs/default/report.md\n  report results --reports runs/one-to-one-seed-1/report.parquet --copy-into results/one-to-one/arc-easy/seed-1 \\\n                 --out results/one-to-one/arc-easy/seed-1/report.parquet --paired results/one-to-one/arc-easy/seed-1/paired.parquet \\\n                 --markdown results/one-to-one/arc-easy/seed-1/report.md\n  report comms --top-k 16 --entry 1,client-1,runs/default/round-1/client-1/knowledge.parquet,runs/default/round-1/server/knowledge.parquet,runs/default/round-1/client-1/adapter/adapter_model.safetensors,runs/default/tok/smollm2-135m/public.parquet \\\n               --out runs/default/round-1/comms.parquet --markdown runs/default/round-1/comms.md\n  report wire --wire runs/default-federation/wire.json --comms runs/default-federation/server/runs/default/round-1/comms.parquet \\\n              --out runs/default-federation/comms.parquet --markdown runs/default-federation/comms.md\n  report tasks --report arc-easy=runs/one-to-one-arc-easy/report.parquet --report boolq=runs/one-to-one-boolq/report.parquet \\\n               --out runs/one-to-one-tasks/report.parquet --markdown runs/one-to-one-tasks/report.md\n  report kd --public 1,client-1,runs/default/round-1/client-1/selected.parquet,runs/default/round-1/kd/client-1/public-before.parquet,runs/default/round-1/kd/client-1/public-after.parquet \\\n            --held-out 1,client-1,server,runs/default/round-1/kd/client-1/heldout-before.parquet,runs/default/round-1/kd/client-1/heldout-after.parquet \\\n            --out runs/default/kd.parquet --markdown runs/default/kd.md\n\nFormats: tools/FORMATS.md (results, task-results, comms, wire, kd-report)."
)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Accuracy table from `evaluate` summaries.
    Results {
        /// METHOD,ROUND,PARTY=FILE (ROUND '-' for a baseline; FILE an evaluate JSON summary, or its
        /// predictions Parquet file alone, the model then unnamed).
        #[arg(long = "result")]
        results: Vec<ResultEntry>,
        /// Results tables of earlier reports, one per training seed (`make seeds`): their
        /// entries are pooled per method, round and party.
        #[arg(long, num_args = 1..)]
        reports: Vec<PathBuf>,
        /// Methods compared with every other method on the same party.
        #[arg(long = "subject", default_values_t = [String::from("FedMKT"), String::from("FedCoLLM")])]
        subjects: Vec<String>,
        /// Copy every entry's evaluation (summary and predictions) into this folder as
        /// <method>[-round-<n>]-<party>.{json,parquet}; the table then names the copies.
        #[arg(long)]
        copy_into: Option<PathBuf>,
        /// Parquet table to write (one row per entry).
        #[arg(long)]
        out: PathBuf,
        /// Parquet table of the paired comparisons to write.
        #[arg(long)]
        paired: PathBuf,
        /// Markdown table to write.
        #[arg(long)]
        markdown: PathBuf,
    },
    /// Several tasks' results tables as one (the paper's Table 2: task and method as rows).
    Tasks {
        /// TASK=FILE: a `report results` Parquet table per task.
        #[arg(long = "report", required = true)]
        reports: Vec<fedmkt::report::tasks::TaskReport>,
        /// Parquet table to write (the rows of every report, a `task` column in front).
        #[arg(long)]
        out: PathBuf,
        /// Markdown table to write.
        #[arg(long)]
        markdown: PathBuf,
    },
    /// Bytes sent and received beside the LoRA adapter's size and the paper's N·S·K estimate.
    Comms {
        /// ROUND,PARTY,SENT,RECEIVED,ADAPTER,TOKENS ('-' for nothing sent or received).
        #[arg(long = "entry", required = true)]
        entries: Vec<CommsEntry>,
        /// K of the knowledge sets (for the paper's estimate).
        #[arg(long, default_value_t = 16)]
        top_k: u64,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        markdown: PathBuf,
    },
    /// What knowledge distillation did: per round and party, the senders' DualMinCE wins and
    /// losses, the teacher's entropy, and the KL to the teacher before and after the KD phase
    /// and of the noKD ablation, on the public set and held-out samples (measure-kd files).
    Kd {
        /// ROUND,PARTY,SELECTED,BEFORE,AFTER[,NOKD]: the party's selected file and the
        /// measure-kd files of its adapters on the public set against it.
        #[arg(long = "public", value_parser = |s: &str| fedmkt::report::kd::KdEntry::parse(s, false))]
        public: Vec<fedmkt::report::kd::KdEntry>,
        /// ROUND,PARTY,SENDER,BEFORE,AFTER[,NOKD]: measure-kd files of the party's adapters on
        /// held-out samples against the sender's knowledge of them.
        #[arg(long = "held-out", value_parser = |s: &str| fedmkt::report::kd::KdEntry::parse(s, true))]
        held_out: Vec<fedmkt::report::kd::KdEntry>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        markdown: PathBuf,
    },
    /// A federation's bytes on the wire (make federation's wire.json) beside the comms tables' files.
    Wire {
        /// wire.json: a list of {round, party, sent, received}, one per node and round.
        #[arg(long)]
        wire: PathBuf,
        /// The server's comms table of each round.
        #[arg(long = "comms", required = true)]
        comms: Vec<PathBuf>,
        #[arg(long)]
        out: PathBuf,
        #[arg(long)]
        markdown: PathBuf,
    },
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("report", || match &args.command {
        Command::Results { results, reports, subjects, copy_into, out, paired, markdown } => {
            let reports: Vec<&std::path::Path> = reports.iter().map(PathBuf::as_path).collect();
            fedmkt::report::results::results(results, &reports, subjects, copy_into.as_deref(), out, paired, markdown)
        }
        Command::Tasks { reports, out, markdown } => fedmkt::report::tasks::tasks(reports, out, markdown),
        Command::Comms { entries, top_k, out, markdown } => {
            fedmkt::report::comms::comms(entries, *top_k, out, markdown)
        }
        Command::Wire { wire, comms, out, markdown } => fedmkt::report::comms::wire(wire, comms, out, markdown),
        Command::Kd { public, held_out, out, markdown } => fedmkt::report::kd::kd(public, held_out, out, markdown),
    })
}
