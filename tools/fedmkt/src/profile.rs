//! Where the time goes (`FEDMKT_PROFILE=1`): wall time per kind of work, summed over a run and
//! printed on stderr at its end by `distill` and `infer-logits`, so that the next optimisation
//! targets the largest share. Off, it costs one relaxed load per op.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;
use std::time::Instant;

/// The kinds of work a breakdown tells apart.
#[derive(Debug, Clone, Copy)]
pub enum Work {
    /// Products with the frozen weights and the LoRA adapters (`model/cpu/frozen.rs`).
    Matmul,
    /// Attention's per-head products and its softmax (`model/cpu/heads.rs`, `fused.rs`).
    Attention,
    /// RMS norm, rotary embedding, the MLP's gate and activation (`model/cpu/fused.rs`).
    Elementwise,
    /// Gradient clipping and the AdamW update (`train/optimizer.rs`).
    Optimiser,
}

const NAMES: [&str; 4] = [
    "matmuls (frozen weights and LoRA)",
    "attention (per-head products, softmax)",
    "norms and elementwise (RMS norm, rotary, MLP gate)",
    "optimiser (clipping, AdamW)",
];
static TOTALS: [AtomicU64; 4] = [const { AtomicU64::new(0) }; 4];

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FEDMKT_PROFILE").is_some_and(|v| v != "0"))
}

/// `f`, its wall time added to `work`'s total when profiling.
pub fn timed<T>(work: Work, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let start = Instant::now();
    let out = f();
    TOTALS[work as usize].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
    out
}

/// The breakdown of `wall` seconds of `what` on stderr: each kind's seconds and share (those
/// that ran), and the rest (candle's own ops: embeddings, attention when inferring, the loss,
/// copies and reshapes; reading batches).
pub fn report(tool: &str, what: &str, wall: f64) {
    if !enabled() {
        return;
    }
    let seconds: Vec<f64> = TOTALS.iter().map(|t| t.load(Ordering::Relaxed) as f64 / 1e9).collect();
    let rest = (wall - seconds.iter().sum::<f64>()).max(0.0);
    eprintln!("{tool}: where the time of {what} went ({wall:.2} s):");
    let rest_name = "the rest (candle's ops: embeddings, attention when inferring, the loss, copies)";
    let ran = NAMES.iter().zip(&seconds).filter(|(_, s)| **s > 0.0);
    for (name, s) in ran.chain([(&rest_name, &rest)]) {
        eprintln!("  {:>8.3} s {:>5.1} %  {name}", s, 100.0 * s / wall.max(1e-9));
    }
}
