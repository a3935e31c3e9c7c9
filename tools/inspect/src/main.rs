//! `inspect`: a fedmkt file in words: a knowledge, aligned or selected set decoded position by
//! position, any other table summarised.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Per sample of a knowledge, aligned or selected set: the answer loss, the text, and at each
/// position the true next token and the top-K decoded with their probabilities and the mass
/// outside them (for a selected set, the winning sender and both losses). The tokenizer and the
/// token file are found from the file's provenance in the run's folders, or --tokenizer is
/// used. A vocabulary map token by token (--find TEXT), predictions sample by sample, an
/// adapter folder's settings; any other fedmkt table: format, rows, columns, inputs and metadata.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  inspect runs/default/round-1/client-1/from-server.parquet --limit 2\n  inspect runs/default/round-1/server/selected.parquet --sample Mercury_7220990 --json | jq .selected\n  inspect runs/default/maps/smollm2-135m_to_gemma3-270m.parquet --find mouth\n  inspect runs/default/round-1/eval/client-1.parquet --limit 3\n\nFormats: tools/FORMATS.md."
)]
struct Args {
    /// A fedmkt Parquet file, or an adapter folder.
    file: PathBuf,
    /// The tokenizer.json that decodes its ids (found from its provenance when left out).
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Only this sample.
    #[arg(long)]
    sample: Option<String>,
    /// Only the first N samples.
    #[arg(long)]
    limit: Option<usize>,
    /// One JSON object per sample (or the summary), for jq.
    #[arg(long)]
    json: bool,
    /// A vocabulary map's rows whose source or target text contains this.
    #[arg(long)]
    find: Option<String>,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("inspect", || {
        let opts = fedmkt::inspect::InspectOptions {
            tokenizer: args.tokenizer.clone(),
            sample: args.sample.clone(),
            limit: args.limit,
            json: args.json,
            find: args.find.clone(),
        };
        fedmkt::inspect::inspect(&args.file, &opts)
    })
}
