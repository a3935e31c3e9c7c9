//! `make measure-kd-estimates`: how well the two sparse teacher representations estimate the
//! dense KD cross-entropy −Σ_v q_v·ln p_v of a student against a teacher, on real models. At
//! every answer position of the first SAMPLES samples: the dense value from both full
//! softmaxes; the renormalised top-K (`infer-logits --top-k K`, what the paper distils); and K
//! sampled draws (`infer-logits --sample K`), once per seed. Both sparse losses go through the
//! library's own `TeacherTargets` and `sparse_kd`, with the stored rows' f16 logits (ln counts
//! for the draws). Prints each estimate's bias against the dense value, pooled over positions,
//! and for the draws the spread of that pooled value across seeds.
//!
//! Usage: kd_estimates MODEL_DIR TEACHER_ADAPTER TOKENS.parquet [K] [SAMPLES] [SEEDS]
//! (the student is the model as it comes, the teacher the same model with the adapter).
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use fedmkt::model::Model;
use fedmkt::scoring::{self, Request};
use fedmkt::train::kd::{sparse_kd, TeacherOptions, TeacherTargets};
use half::f16;

const RENORMALISED: TeacherOptions = TeacherOptions { temperature: 1.0, tail: false };

/// The summed sparse KD of the student's `logits` against rows of K (id, f16 logit) pairs.
fn sparse_sum(student: &Tensor, rows: &[Vec<(u32, f16)>], k: usize) -> Result<f64> {
    let ids: Vec<u32> = rows.iter().flat_map(|r| r.iter().map(|e| e.0)).collect();
    let logits: Vec<f16> = rows.iter().flat_map(|r| r.iter().map(|e| e.1)).collect();
    let targets = TeacherTargets::from_rows(&ids, &logits, &vec![0.0; rows.len()], k, RENORMALISED, &Device::Cpu)?;
    Ok(sparse_kd(student, &targets, 1.0)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?)
}

/// A sampled row as `infer-logits --sample` stores it: ln(count), padded to K.
fn sampled(counts: &[(u32, u32)], k: usize) -> Vec<(u32, f16)> {
    let padding = std::iter::repeat_n((fedmkt::align::PAD_ID, f16::NEG_INFINITY), k - counts.len());
    counts.iter().map(|&(id, n)| (id, f16::from_f32((n as f32).ln()))).chain(padding).collect()
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().collect();
    anyhow::ensure!(
        args.len() >= 4,
        "usage: kd_estimates MODEL_DIR TEACHER_ADAPTER TOKENS.parquet [K] [SAMPLES] [SEEDS]"
    );
    let k: usize = args.get(4).map_or(Ok(16), |v| v.parse())?;
    let limit: usize = args.get(5).map_or(Ok(40), |v| v.parse())?;
    let seeds: u64 = args.get(6).map_or(Ok(20), |v| v.parse())?;
    let dir = Path::new(&args[1]);
    let teacher = Model::load_for_scoring(dir, Some(Path::new(&args[2])), DType::F32, &Device::Cpu)?;
    let student = Model::load_for_scoring(dir, None, DType::F32, &Device::Cpu)?;
    let (samples, _) = fedmkt::tokens::read_tokens(Path::new(&args[3]))?;
    let (mut positions, mut dense, mut top_k) = (0usize, 0.0, 0.0);
    let mut draws = vec![0.0; seeds as usize];
    for (n, sample) in samples.iter().take(limit).enumerate() {
        let request =
            || Request { ids: &sample.input_ids, positions: fedmkt::knowledge::answer_positions(sample).collect() };
        let q = scoring::logits_at(&teacher, &[request()])?.remove(0);
        let p = scoring::logits_at(&student, &[request()])?.remove(0);
        let (log_q, log_p) = (candle_nn::ops::log_softmax(&q, 1)?, candle_nn::ops::log_softmax(&p, 1)?);
        dense -= (log_q.exp()? * &log_p)?.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
        let rows = q.to_vec2::<f32>()?;
        let tops: Vec<Vec<(u32, f16)>> = rows
            .iter()
            .map(|r| scoring::top_k(r, k).into_iter().map(|(id, v)| (id, f16::from_f32(v))).collect())
            .collect();
        top_k += sparse_sum(&p, &tops, k)?;
        for (seed, total) in draws.iter_mut().enumerate() {
            let row_seeds: Vec<u64> =
                (0..rows.len()).map(|i| (seed as u64) << 32 | (n as u64) << 16 | i as u64).collect();
            let rows: Vec<Vec<(u32, f16)>> =
                scoring::sample_rows(&q, k, &row_seeds)?.iter().map(|c| sampled(c, k)).collect();
            *total += sparse_sum(&p, &rows, k)?;
        }
        positions += rows.len();
    }
    let per_position = |sum: f64| sum / positions as f64;
    let estimates: Vec<f64> = draws.iter().map(|&d| per_position(d)).collect();
    let mean = estimates.iter().sum::<f64>() / seeds as f64;
    let sd = (estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (seeds as f64 - 1.0)).sqrt();
    let dense = per_position(dense);
    println!("{} answer positions of {} samples, K = {k}; nats per position:", positions, samples.len().min(limit));
    println!("  dense KD cross-entropy          {dense:.4}");
    println!("  top-{k}, renormalised            {:.4}  bias {:+.4}", per_position(top_k), per_position(top_k) - dense);
    println!(
        "  {k} draws, mean of {seeds} seeds     {mean:.4}  bias {:+.4} ± {:.4} (standard error); sd across seeds {sd:.4}",
        mean - dense,
        sd / (seeds as f64).sqrt()
    );
    Ok(())
}
