//! `make measure-logit-storage`: how much storing the top-K logits as f16 (the knowledge
//! format) changes the teacher distribution a student distils towards. For every answer
//! position of a token file: KL(q₃₂ ‖ q₁₆) in nats between the renormalised top-K computed
//! from the f32 logits and from their f16 copies; and with the tail bucket (`--teacher-tail`),
//! the exact distribution (top-K probabilities and the mass outside them) against the format
//! version 1 route (exp(f16 logit − lse), tail 1 − their sum) and the version 2 route (the
//! stored f32 `tail_mass`, the top-K sharing the rest by their f16 softmax).
//!
//! Usage: logit_storage MODEL_DIR TOKENS.parquet [TOP_K] [SAMPLES]
use anyhow::Result;
use candle_core::{DType, Device};
use fedmkt::model::{AdapterSource, Model};
use fedmkt::scoring::{self, Request};
use half::f16;

/// KL(p ‖ q) over matching entries, skipping zero-probability entries of p.
fn kl(p: &[f64], q: &[f64]) -> f64 {
    p.iter().zip(q).filter(|(a, _)| **a > 0.0).map(|(a, b)| a * (a / b).ln()).sum()
}

fn softmax(logits: &[f64]) -> Vec<f64> {
    let max = logits.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = logits.iter().map(|l| (l - max).exp()).sum();
    logits.iter().map(|l| (l - max).exp() / sum).collect()
}

/// The top-K probabilities exp(l − lse) and the tail 1 − Σ (format version 1's route).
fn tail_from_lse(logits: &[f64], lse: f64) -> Vec<f64> {
    let mut p: Vec<f64> = logits.iter().map(|l| (l - lse).exp()).collect();
    let kept: f64 = p.iter().sum();
    p.push((1.0 - kept).max(1e-300));
    p
}

/// The top-K sharing 1 − tail by their softmax, then the tail (format version 2's route).
fn tail_from_mass(logits: &[f64], tail: f64) -> Vec<f64> {
    let mut p: Vec<f64> = softmax(logits).into_iter().map(|q| q * (1.0 - tail)).collect();
    p.push(tail.max(1e-300));
    p
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(args.len() >= 3, "usage: logit_storage MODEL_DIR TOKENS.parquet [TOP_K] [SAMPLES]");
    let k: usize = args.get(3).map_or(Ok(16), |v| v.parse())?;
    let limit: usize = args.get(4).map_or(Ok(200), |v| v.parse())?;
    let model = Model::load(std::path::Path::new(&args[1]), AdapterSource::None, DType::F32, &Device::Cpu)?;
    let (samples, _) = fedmkt::tokens::read_tokens(std::path::Path::new(&args[2]))?;
    let (mut renormalised, mut version_1, mut version_2, mut largest) = (Vec::new(), Vec::new(), Vec::new(), 0f32);
    for sample in samples.iter().take(limit) {
        let positions: Vec<usize> = fedmkt::knowledge::answer_positions(sample).collect();
        let request = Request { ids: &sample.input_ids, positions };
        let logits = scoring::logits_at(&model, &[request])?.remove(0).to_vec2::<f32>()?;
        for row in &logits {
            let lse = scoring::logsumexp(row);
            let top: Vec<f32> = scoring::top_k(row, k).into_iter().map(|(_, v)| v).collect();
            largest = top.iter().fold(largest, |m, v| m.max(v.abs()));
            let exact: Vec<f64> = top.iter().map(|&v| v as f64).collect();
            let stored: Vec<f64> = top.iter().map(|&v| f16::from_f32(v).to_f64()).collect();
            let truth = tail_from_lse(&exact, lse);
            let tail_mass = truth[k.min(exact.len())] as f32 as f64;
            renormalised.push(kl(&softmax(&exact), &softmax(&stored)));
            version_1.push(kl(&truth, &tail_from_lse(&stored, lse as f32 as f64)));
            version_2.push(kl(&truth, &tail_from_mass(&stored, tail_mass)));
        }
    }
    let summary = |name: &str, v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        let mean = v.iter().sum::<f64>() / v.len() as f64;
        let p99 = v[(v.len() as f64 * 0.99) as usize].max(0.0);
        println!("{name}: mean {mean:.2e}, 99th percentile {p99:.2e}, max {:.2e} nats per position", v[v.len() - 1]);
    };
    println!(
        "{}: {} positions of {} samples, top-{k}; largest |logit| {largest:.1}",
        args[1],
        renormalised.len(),
        limit.min(samples.len())
    );
    summary("KL f32 -> f16, renormalised top-K", &mut renormalised);
    summary("KL with the tail, format 1 (tail from f16 logits)", &mut version_1);
    summary("KL with the tail, format 2 (stored tail_mass)", &mut version_2);
    Ok(())
}
