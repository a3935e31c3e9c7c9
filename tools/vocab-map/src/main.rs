//! `vocab-map`: the MinED vocabulary mapping table from one tokenizer to another.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// For every token of --from, the token of --to at minimum edit distance between the bytes
/// they stand for (ties: lexicographically smallest, then lowest id); special tokens by role.
/// Writes a Parquet table and, beside it with .map, a little-endian u32 per source id.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  vocab-map --from runs/default/models/gemma3-270m/tokenizer.json --to runs/default/models/smollm2-135m/tokenizer.json \\\n            --out runs/default/maps/gemma3-270m_to_smollm2-135m.parquet\n\nFormats: tools/FORMATS.md (vocab-map)."
)]
struct Args {
    /// Source tokenizer.json.
    #[arg(long)]
    from: PathBuf,
    /// Target tokenizer.json.
    #[arg(long)]
    to: PathBuf,
    /// Parquet table to write (the .map file goes beside it).
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("vocab-map", || fedmkt::vocab::vocab_map(&args.from, &args.to, &args.out))
}
