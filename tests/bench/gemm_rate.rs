//! The f32 matrix-product rate our CPU path reaches at a model's own shapes (`make bench-*`'s
//! roofline; tests/bench/roofline.py sets PyTorch's BLAS beside it on the same shapes).
//!
//! usage: gemm_rate MODEL_DIR ROWS [SECONDS_PER_SHAPE [DTYPE]]
//!
//! For each of a decoder layer's seven projections (q, k, v, o, gate, up, down; `x·Wᵀ` with W
//! `[out, in]` as the model stores it) and the vocabulary head: `ROWS` rows through the
//! layer path training and inference both take (`model::Linear` on the CPU in f32: one gemm
//! call per thread block, no zero-filling), forward and the backward pass's `∂x = ∂y·W`.
//! Prints one JSON line per shape: `name`, `rows`, `inner`, `outer`, `forward_s`, `backward_s`
//! (seconds per call, the best of repeated calls, so other load only slows a shape).
//! DTYPE bf16: the bf16 products `evaluate --dtype bf16` takes on a CPU with AVX-512 BF16,
//! forward only (`backward_s` null: scoring has no backward pass).
//! Threads: RAYON_NUM_THREADS.
use std::io::Write;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor, Var};
use fedmkt::model::{Linear, ModelConfig};

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [model, rows, rest @ ..] = args.as_slice() else {
        anyhow::bail!("usage: gemm_rate MODEL_DIR ROWS [SECONDS_PER_SHAPE [DTYPE]]");
    };
    let config = ModelConfig::from_file(&std::path::Path::new(model).join("config.json"))?;
    let rows: usize = rows.parse().with_context(|| format!("ROWS: {rows}"))?;
    let budget: f64 = rest.first().map(|s| s.parse()).transpose()?.unwrap_or(0.5);
    let bf16 = match rest.get(1).map(String::as_str) {
        None | Some("f32") => false,
        Some("bf16") => true,
        Some(other) => anyhow::bail!("DTYPE must be f32 or bf16, not '{other}'"),
    };
    if bf16 && !std::arch::is_x86_feature_detected!("avx512bf16") {
        anyhow::bail!("DTYPE bf16: this CPU has no AVX-512 BF16");
    }
    for (name, inner, outer) in shapes(&config) {
        let (forward_s, backward_s) = time_shape(rows, inner, outer, budget, bf16)?;
        let backward_s = backward_s.map_or("null".to_string(), |s| format!("{s:.6e}"));
        writeln!(
            std::io::stdout(),
            "{{\"name\": \"{name}\", \"rows\": {rows}, \"inner\": {inner}, \"outer\": {outer}, \
             \"forward_s\": {forward_s:.6e}, \"backward_s\": {backward_s}}}"
        )?;
    }
    Ok(())
}

/// The projections a token goes through in one decoder layer, then the vocabulary head:
/// (name, input width, output width).
fn shapes(c: &ModelConfig) -> Vec<(&'static str, usize, usize)> {
    let (h, q, kv, i) =
        (c.hidden_size, c.num_attention_heads * c.head_dim, c.num_key_value_heads * c.head_dim, c.intermediate_size);
    vec![
        ("q", h, q),
        ("k", h, kv),
        ("v", h, kv),
        ("o", q, h),
        ("gate", h, i),
        ("up", h, i),
        ("down", i, h),
        ("head", h, c.vocab_size),
    ]
}

/// Best seconds per forward call and per backward pass (none in bf16) of `rows × inner`
/// through a frozen `[outer, inner]` weight, calls repeated until `budget` seconds each.
fn time_shape(rows: usize, inner: usize, outer: usize, budget: f64, bf16: bool) -> Result<(f64, Option<f64>)> {
    let device = Device::Cpu;
    let layer = Linear::new(Tensor::randn(0f32, 0.02, (outer, inner), &device)?, None, None, bf16)?;
    let x = Var::from_tensor(&Tensor::randn(0f32, 1.0, (rows, inner), &device)?)?;
    let forward = best_of(budget, || layer.forward(&x).map(drop))?;
    if bf16 {
        return Ok((forward, None));
    }
    let y = layer.forward(&x)?;
    // The whole backward pass less its forward part: ∂x = ones·W through the frozen weight.
    let backward = best_of(budget, || y.backward().map(drop))?;
    Ok((forward, Some(backward)))
}

fn best_of<E: Into<anyhow::Error>>(budget: f64, mut call: impl FnMut() -> std::result::Result<(), E>) -> Result<f64> {
    call().map_err(Into::into)?; // warm-up: first-touch of buffers, thread start
    let (started, mut best) = (Instant::now(), f64::INFINITY);
    while started.elapsed().as_secs_f64() < budget {
        let t = Instant::now();
        call().map_err(Into::into)?;
        best = best.min(t.elapsed().as_secs_f64());
    }
    Ok(best)
}
