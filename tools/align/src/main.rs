//! `align`: a sender's knowledge set mapped into a receiver's vocabulary and positions.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fedmkt::align::{Fallback, Strategy};

/// Aligns the sender's and receiver's tokenisations of the same public set and, for each
/// receiver position whose next token is matched to a sender token, maps the sender's top-K
/// through the vocabulary map (ids landing together merged by log-sum-exp).
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  align --sender-tokens runs/default/tok/smollm2-135m/public.parquet \\\n        --knowledge runs/default/round-1/client-1/knowledge.parquet \\\n        --receiver-tokens runs/default/tok/gemma3-270m/public.parquet \\\n        --map runs/default/maps/smollm2-135m_to_gemma3-270m.parquet \\\n        --sender-tokenizer runs/default/models/smollm2-135m/tokenizer.json \\\n        --receiver-tokenizer runs/default/models/gemma3-270m/tokenizer.json \\\n        --sender client-1 --out runs/default/round-1/server/from-client-1.parquet\n\nFormat: tools/FORMATS.md (knowledge, aligned)."
)]
struct Args {
    /// The sender's token file of the public set.
    #[arg(long)]
    sender_tokens: PathBuf,
    /// The sender's knowledge set (infer-logits on --sender-tokens).
    #[arg(long)]
    knowledge: PathBuf,
    /// The receiver's token file of the same public set.
    #[arg(long)]
    receiver_tokens: PathBuf,
    /// Sender→receiver vocabulary map (vocab-map; its .map file beside it).
    #[arg(long)]
    map: PathBuf,
    /// The sender's tokenizer.json (token texts for dtw).
    #[arg(long)]
    sender_tokenizer: PathBuf,
    /// The receiver's tokenizer.json.
    #[arg(long)]
    receiver_tokenizer: PathBuf,
    #[arg(long, value_enum, default_value_t = Strategy::Offsets)]
    strategy: Strategy,
    #[arg(long, value_enum, default_value_t = Fallback::Skip)]
    fallback: Fallback,
    /// Name of the sending party (default: the knowledge file's name).
    #[arg(long)]
    sender: Option<String>,
    /// Aligned knowledge Parquet file to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("align", || {
        let inputs = fedmkt::align::AlignInputs {
            sender_tokens: &args.sender_tokens,
            knowledge: &args.knowledge,
            receiver_tokens: &args.receiver_tokens,
            map: &args.map,
            sender_tokenizer: &args.sender_tokenizer,
            receiver_tokenizer: &args.receiver_tokenizer,
        };
        let sender = args.sender.clone().unwrap_or_else(|| fedmkt::align::default_sender(&args.knowledge));
        let opts = fedmkt::align::AlignOptions { strategy: args.strategy, fallback: args.fallback, sender };
        fedmkt::align::align(&inputs, &args.out, &opts)
    })
}
