//! The error model every tool shares: one line on stderr, exit 2 for bad input, 1 otherwise.
//!
//! Library code returns `anyhow::Result`; a failure caused by the user's input is raised as
//! [`BadInput`] (via [`bad_input`]) so the binary can tell the two apart without parsing text.
use std::fmt;
use std::path::Path;
use std::process::ExitCode;

/// An input the user gave us is wrong: missing, malformed, or inconsistent with another input.
#[derive(Debug)]
pub struct BadInput(pub String);

impl fmt::Display for BadInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BadInput {}

/// A bad-input error that names the file and what is wrong with it.
pub fn bad_input(path: &Path, problem: impl fmt::Display) -> anyhow::Error {
    BadInput(format!("{}: {problem}", path.display())).into()
}

/// A bad-input error about something other than one file (a flag, a pair of inputs).
pub fn bad_usage(problem: impl fmt::Display) -> anyhow::Error {
    BadInput(problem.to_string()).into()
}

/// Refuse a flag's value given twice (`--candidates a a` would weigh one sender twice, a
/// report passed twice would count as two seeds). Values are compared as `key` makes them.
pub fn refuse_repeated<T>(flag: &str, values: &[T], key: impl Fn(&T) -> String) -> anyhow::Result<()> {
    let mut seen = std::collections::HashSet::new();
    match values.iter().map(key).find(|k| !seen.insert(k.clone())) {
        Some(twice) => Err(bad_usage(format!("{flag} '{twice}' is given twice"))),
        None => Ok(()),
    }
}

/// A path as [`refuse_repeated`] compares paths: resolved where it exists, so that two
/// spellings of one file are one.
pub fn path_key(path: &impl AsRef<Path>) -> String {
    let path = path.as_ref();
    std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()).display().to_string()
}

/// Exit status for bad input (the design's convention: 2 = the user's input, 1 = our failure).
pub const EXIT_BAD_INPUT: u8 = 2;

/// Flags every model-running tool shares (`infer-logits`, `evaluate`, `distill`).
#[derive(Debug, Clone, clap::Args)]
pub struct ModelArgs {
    /// Model folder (config.json, model.safetensors, tokenizer.json).
    #[arg(long)]
    pub model: std::path::PathBuf,
    /// PEFT LoRA adapter folder to apply (distill: the adapter to continue training, else a
    /// fresh one from --seed).
    #[arg(long)]
    pub adapter: Option<std::path::PathBuf>,
    /// cpu or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute dtype of the frozen weights and activations: f32, bf16 or f16 (LoRA parameters,
    /// their gradients and the optimiser's state stay f32). Scoring on a CPU with AVX-512 BF16
    /// (infer-logits, evaluate, measure-kd), bf16 rounds only the matrix products' inputs and
    /// keeps everything else f32: faster than f32 there, scores within bf16's rounding.
    #[arg(long, default_value = "f32")]
    pub dtype: String,
}

/// Parse the command line; a usage error is one line on stderr (clap's first line and the
/// flag it names, without its usage block) and exit 2, like every other bad input. A value
/// that looks like a negative number is a value (`--lr -1` reaches the check that names the
/// flag, not "unexpected argument '-1'").
pub fn parse_args<A: clap::Parser>() -> A {
    let parsed = A::command()
        .allow_negative_numbers(true)
        .try_get_matches()
        .and_then(|mut matches| <A as clap::FromArgMatches>::from_arg_matches_mut(&mut matches));
    match parsed {
        Ok(args) => args,
        Err(err) if !err.use_stderr() => err.exit(),
        Err(err) => {
            // clap's message runs up to its first blank line (a list of missing flags spans
            // several); its usage block and hint follow.
            let text = err.render().to_string();
            let message: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
            eprintln!("{}: {}", A::command().get_name(), message.join(" ").trim_start_matches("error: "));
            std::process::exit(EXIT_BAD_INPUT.into());
        }
    }
}

/// Run a tool's body and turn its result into an exit code and a one-line message.
///
/// The body runs on candle's CPU thread pool (`Device::with_context`): a training step makes
/// thousands of small parallel GEMMs, and started from a pool thread each one begins without
/// a round trip through a sleeping main thread (a LoRA step on SmolLM2-135M, 2 cores: 1.11 →
/// 0.99 s).
pub fn run(tool: &str, body: impl FnOnce() -> anyhow::Result<()> + Send) -> ExitCode {
    shorten_worker_spinning();
    keep_freed_memory();
    match candle_core::Device::Cpu.with_context(body) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let code = if err.chain().any(|e| e.is::<BadInput>()) { EXIT_BAD_INPUT } else { 1 };
            eprintln!("{tool}: {}", one_line(&err));
            ExitCode::from(code)
        }
    }
}

/// candle's element-wise workers spin `CANDLE_BARRIER_POOL_SPIN_LIMIT` times (default 25,000)
/// waiting for the next op before they sleep; meanwhile the GEMM's threads need those cores.
/// 2,000–5,000 measured fastest for LoRA steps on 2 cores (3,000: 1.01 → 0.93 s a step); a
/// value set in the environment wins. Called before any thread exists, as `set_var` requires.
fn shorten_worker_spinning() {
    const SPIN_LIMIT: &str = "CANDLE_BARRIER_POOL_SPIN_LIMIT";
    if std::env::var_os(SPIN_LIMIT).is_none() {
        std::env::set_var(SPIN_LIMIT, "3000");
    }
}

/// A training step allocates and frees hundreds of activation and gradient buffers of 0.1–10
/// MB. glibc serves those from fresh `mmap`s and unmaps them when freed, so every step
/// page-faults and zeroes them anew. Serving them from the heap and keeping what is freed
/// there: page faults of a 12-step LoRA run 1.31 M → 0.36 M, a step 0.98 → 0.90 s on 2 cores;
/// peak memory unchanged (1,317 MiB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_memory() {
    /// glibc's ceiling for the mmap threshold on 64-bit systems.
    const LARGEST_MMAP_THRESHOLD: libc::c_int = 32 << 20;
    // SAFETY: mallopt only changes allocator parameters; called before any thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, LARGEST_MMAP_THRESHOLD);
        libc::mallopt(libc::M_TRIM_THRESHOLD, libc::c_int::MAX);
        libc::mallopt(libc::M_TOP_PAD, 64 << 20);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_memory() {}

/// The error chain joined with ": ", each cause cut to its first line: some dependencies
/// (candle with `RUST_BACKTRACE` set) append a backtrace to their messages.
fn one_line(err: &anyhow::Error) -> String {
    let causes: Vec<String> =
        err.chain().map(|e| e.to_string().lines().next().unwrap_or_default().trim().to_string()).collect();
    causes.join(": ")
}

thread_local! {
    /// Set while [`contain_panics`] runs: a panic then is a corrupt file's, not a bug's.
    static READING_FILE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Run `read` over a file's bytes; None if it panicked. The parquet crate panics on some
/// corrupt files instead of returning an error (3 of 560 byte-flipped files): a corrupt input
/// must end in one line naming the file and exit 2, never a panic. Its panic message is kept
/// quiet; every other panic still reports as before.
pub fn contain_panics<T>(read: impl FnOnce() -> T) -> Option<T> {
    static QUIET_HOOK: std::sync::Once = std::sync::Once::new();
    QUIET_HOOK.call_once(|| {
        let report = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !READING_FILE.with(|reading| reading.get()) {
                report(info)
            }
        }));
    });
    let was = READING_FILE.with(|reading| reading.replace(true));
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(read));
    READING_FILE.with(|reading| reading.set(was));
    result.ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_one_line_per_cause() {
        let err = anyhow::anyhow!("inner\n   0: backtrace frame").context("outer");
        assert_eq!(one_line(&err), "outer: inner");
    }

    #[test]
    fn bad_input_names_the_file() {
        let err = bad_input(Path::new("data/x.parquet"), "missing column 'id'");
        assert_eq!(err.to_string(), "data/x.parquet: missing column 'id'");
        assert!(err.is::<BadInput>());
    }
}
