//! `tokenize`: a task Parquet + a tokenizer.json → a token Parquet with byte offsets.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Encode each sample's context + target as one string and record where the answer starts
/// and which bytes every token covers.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  tokenize --tokenizer runs/default/models/smollm2-135m/tokenizer.json \\\n           --input runs/default/data/arc-easy/public.parquet --out runs/default/tok/smollm2-135m/public.parquet"
)]
struct Args {
    /// The tokenizer.json to encode with.
    #[arg(long)]
    tokenizer: PathBuf,
    /// A task Parquet file (from prepare-data).
    #[arg(long)]
    input: PathBuf,
    /// Contexts alone, answers never read: each sample's text is its context, scored as its
    /// own continuation (an unlabelled public set, `PUBLIC_LABELS=no`).
    #[arg(long)]
    unlabelled: bool,
    /// The token Parquet file to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("tokenize", || {
        fedmkt::tokens::tokenize_file(&args.tokenizer, &args.input, &args.out, args.unlabelled)
    })
}
