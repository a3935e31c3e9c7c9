//! Where the time goes (`FEDMKT_PROFILE=1`): wall time per kind of work, summed over a run and
//! printed on stderr at its end by `distill`, `infer-logits` and `evaluate`, so that the next optimisation
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
/// Time per kind of work, in nanoseconds.
struct Totals([AtomicU64; 4]);

impl Totals {
    const fn new() -> Totals {
        Totals([const { AtomicU64::new(0) }; 4])
    }

    /// `f`, its wall time added to `work`'s total unless it runs inside another timed op.
    fn time<T>(&self, work: Work, f: impl FnOnce() -> T) -> T {
        if OPEN.get() {
            return f();
        }
        OPEN.set(true);
        let start = Instant::now();
        let out = f();
        self.0[work as usize].fetch_add(start.elapsed().as_nanos() as u64, Ordering::Relaxed);
        OPEN.set(false);
        out
    }

    fn seconds(&self) -> Vec<f64> {
        self.0.iter().map(|t| t.load(Ordering::Relaxed) as f64 / 1e9).collect()
    }
}

static TOTALS: Totals = Totals::new();

thread_local! {
    /// Whether a timed op is running on this thread: one op may run another inside it (a LoRA
    /// layer its frozen product), and only the outermost counts, so no time counts twice.
    static OPEN: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn enabled() -> bool {
    static ON: OnceLock<bool> = OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("FEDMKT_PROFILE").is_some_and(|v| v != "0"))
}

/// `f`, its wall time added to `work`'s total when profiling.
pub fn timed<T>(work: Work, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    TOTALS.time(work, f)
}

/// The breakdown of `wall` seconds of `what` on stderr: each kind's seconds and share (those
/// that ran), and the rest (candle's own ops: embeddings, the softmax when inferring, the loss,
/// copies and reshapes; reading batches).
pub fn report(tool: &str, what: &str, wall: f64) {
    if !enabled() {
        return;
    }
    let seconds = TOTALS.seconds();
    let rest = (wall - seconds.iter().sum::<f64>()).max(0.0);
    eprintln!("{tool}: where the time of {what} went ({wall:.2} s):");
    let rest_name = "the rest (candle's ops: embeddings, the softmax when inferring, the loss, copies)";
    let ran = NAMES.iter().zip(&seconds).filter(|(_, s)| **s > 0.0);
    for (name, s) in ran.chain([(&rest_name, &rest)]) {
        eprintln!("  {:>8.3} s {:>5.1} %  {name}", s, 100.0 * s / wall.max(1e-9));
    }
}

#[cfg(test)]
mod tests {
    use super::{Totals, Work};
    use std::time::{Duration, Instant};

    #[test]
    fn an_op_timed_inside_another_counts_once() {
        let totals = Totals::new();
        let start = Instant::now();
        totals.time(Work::Matmul, || {
            std::thread::sleep(Duration::from_millis(10));
            totals.time(Work::Matmul, || std::thread::sleep(Duration::from_millis(20)));
        });
        let outer = start.elapsed().as_secs_f64();
        let counted = totals.seconds()[Work::Matmul as usize];
        assert!(counted >= 0.03 && counted <= outer, "counted {counted} s of an op that took {outer} s");
    }
}
