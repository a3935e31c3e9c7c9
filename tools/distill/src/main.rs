//! `distill`: train a LoRA adapter with the task loss, optionally mixed with sparse KD.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fedmkt::model::lora::LoraSpec;
use fedmkt::train::kd::TeacherOptions;

/// Without --teacher: fine-tuning on the answer tokens (the private phase). With --teacher
/// (a `select` output aligned to --data): Eq. 9–10, λ·E_{D_p}[ℓ_CE] + (1−λ)·E_{S̃}[ℓ_KD], the KD
/// term a cross-entropy against the teacher's top-K at the selected positions. A batch of b
/// samples estimates it as (1/b)·Σ_i [λ·ce_i + (1−λ)·(N/M)·1[i selected]·kd_i] (N samples, M
/// selected, per-sample means over tokens and positions): λ is fixed and a selected sample
/// weighs the same whatever its batchmates. AdamW (0.9, 0.95, decay 0.1), clip
/// 1.0, warmup 0.008 then cosine. Writes a PEFT adapter and training_log.parquet to --out.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example:\n  distill --model runs/default/models/smollm2-135m --data runs/default/tok/smollm2-135m/client-1.parquet \\\n          --epochs 1 --lr 3e-5 --out runs/default/round-1/client-1/private/\n  distill --model runs/default/models/gemma3-270m --data runs/default/tok/gemma3-270m/public.parquet \\\n          --teacher runs/default/round-1/server/selected.parquet --lambda 0.9 --out runs/default/round-1/server/adapter/\n\nFormats: tools/FORMATS.md (adapter folders, training-log)."
)]
struct Args {
    #[command(flatten)]
    model: fedmkt::cli::ModelArgs,
    /// Token file to train on (tokenize); repeat to train on several of one tokenizer.
    #[arg(long, required = true)]
    data: Vec<PathBuf>,
    /// Teacher targets for --data: a selected file (select), or a whole knowledge set made on
    /// --data (infer-logits) or aligned to it (align), every sample then distilled.
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Weight of the task loss; 1 − λ weighs the KD loss.
    #[arg(long, default_value_t = 0.9)]
    lambda: f64,
    #[arg(long, default_value_t = 1)]
    epochs: usize,
    #[arg(long, default_value_t = 3e-5)]
    lr: f64,
    #[arg(long, default_value_t = 4)]
    batch_size: usize,
    /// Micro-batches per optimiser step.
    #[arg(long, default_value_t = 1)]
    grad_accum: usize,
    #[arg(long, default_value_t = 0.008)]
    warmup_ratio: f64,
    #[arg(long, default_value_t = 0.1)]
    weight_decay: f64,
    #[arg(long, default_value_t = 1.0)]
    max_grad_norm: f64,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 8)]
    lora_r: usize,
    #[arg(long, default_value_t = 16.0)]
    lora_alpha: f64,
    /// Dropout on the adapter path's input while training (seeded).
    #[arg(long, default_value_t = 0.05)]
    lora_dropout: f64,
    /// Modules to adapt, by name [default: the architecture's: q_proj,k_proj,v_proj,o_proj
    /// for llama-family models and Gemma-3 (the paper's LLM setting), PEFT's c_attn for
    /// GPT-2, q_proj,v_proj for OPT, query_key_value for Bloom].
    #[arg(long, value_delimiter = ',')]
    lora_targets: Option<Vec<String>>,
    /// Softening temperature of teacher and student in L_KD.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Keep the teacher's mass outside its top-K as one bucket (default: renormalise the top-K).
    #[arg(long)]
    teacher_tail: bool,
    /// Write a checkpoint (<out>.checkpoint) every this many steps; 0: never.
    #[arg(long, default_value_t = 0)]
    checkpoint_every: usize,
    /// Continue from <out>.checkpoint if it exists.
    #[arg(long)]
    resume: bool,
    /// Stop after this many steps in all, leaving a checkpoint to resume from.
    #[arg(long)]
    max_steps: Option<usize>,
    /// Adapter folder to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("distill", || {
        let (device, dtype) = fedmkt::model::placement(&args.model)?;
        let mut targets = match &args.lora_targets {
            Some(targets) => targets.clone(),
            None => fedmkt::model::default_lora_targets(&args.model.model)?,
        };
        targets.sort();
        let opts = fedmkt::train::distill::DistillOptions {
            lambda: args.lambda,
            epochs: args.epochs,
            lr: args.lr,
            batch_size: args.batch_size,
            grad_accum: args.grad_accum,
            warmup_ratio: args.warmup_ratio,
            weight_decay: args.weight_decay,
            max_grad_norm: args.max_grad_norm,
            seed: args.seed,
            lora: LoraSpec { r: args.lora_r, alpha: args.lora_alpha, dropout: args.lora_dropout, targets },
            teacher: TeacherOptions { temperature: args.temperature, tail: args.teacher_tail },
            device,
            dtype,
            checkpoint_every: args.checkpoint_every,
            resume: args.resume,
            max_steps: args.max_steps,
        };
        fedmkt::train::distill::distill(
            &args.model.model,
            args.model.adapter.as_deref(),
            &args.data,
            args.teacher.as_deref(),
            &args.out,
            &opts,
        )
    })
}
