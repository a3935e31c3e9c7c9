//! `measure-kd`: a model's KD cross-entropy, the teacher's entropy, their difference (KL) and
//! the task loss, against a teacher's knowledge, without training.
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use fedmkt::train::kd::TeacherOptions;

/// Per sample of --input: the sparse KD cross-entropy of the model (+ adapter) against the
/// teacher's top-K at the teacher's positions (what `distill` trains on), the teacher's
/// entropy H(q) there (KD's floor), KL = KD − H(q), the teacher's probability of the true next
/// token, and the task cross-entropy on the answer tokens. Pooled figures go to stderr and
/// the file's metadata.
#[derive(Parser)]
#[command(
    version,
    after_help = "Example (the client's distance to the server's knowledge before and after its KD phase):\n  measure-kd --model runs/default/models/smollm2-135m --adapter runs/default/round-1/client-1/private \\\n             --input runs/default/tok/smollm2-135m/public.parquet --teacher runs/default/round-1/client-1/from-server.parquet \\\n             --out before.parquet\n  measure-kd --model runs/default/models/smollm2-135m --adapter runs/default/round-1/client-1/adapter \\\n             --input runs/default/tok/smollm2-135m/public.parquet --teacher runs/default/round-1/client-1/from-server.parquet \\\n             --out after.parquet\n\nFormat: tools/FORMATS.md (kd-measure)."
)]
struct Args {
    #[command(flatten)]
    model: fedmkt::cli::ModelArgs,
    /// Token Parquet file (tokenize) made with the model's tokenizer.
    #[arg(long)]
    input: PathBuf,
    /// The teacher for --input: a selected file (select), or a knowledge set made on --input
    /// (infer-logits) or aligned to it (align).
    #[arg(long)]
    teacher: PathBuf,
    /// Softening temperature of teacher and student, as in distill.
    #[arg(long, default_value_t = 1.0)]
    temperature: f64,
    /// Keep the teacher's mass outside its top-K as one bucket, as distill --teacher-tail.
    #[arg(long)]
    teacher_tail: bool,
    /// Sequences per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
    /// kd-measure Parquet file to write.
    #[arg(long)]
    out: PathBuf,
}

fn main() -> ExitCode {
    let args: Args = fedmkt::cli::parse_args();
    fedmkt::cli::run("measure-kd", || {
        let (device, dtype) = fedmkt::model::placement(&args.model)?;
        let opts = fedmkt::kd_measure::MeasureOptions {
            teacher: TeacherOptions { temperature: args.temperature, tail: args.teacher_tail },
            batch_size: args.batch_size,
            dtype,
            device,
        };
        fedmkt::kd_measure::measure_kd(
            &args.model.model,
            args.model.adapter.as_deref(),
            &args.input,
            &args.teacher,
            &args.out,
            &opts,
        )
    })
}
