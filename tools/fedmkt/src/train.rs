//! Training losses of `distill` (paper Eq. 4, 9–10): the task cross-entropy and the sparse
//! knowledge-distillation cross-entropy against a teacher's top-K.
//!
//! The teacher distribution is only ever held as its top-K: the student's log-probabilities
//! are gathered at the K teacher ids, so no [batch, length, vocabulary] teacher tensor
//! exists (the reference builds one densely, and runs out of memory with 7B–14B models).
use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use half::f16;

use crate::align::PAD_ID;

/// How the teacher's top-K becomes a target distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TeacherOptions {
    /// Softening temperature for teacher and student (paper: 1).
    pub temperature: f64,
    /// Keep the probability outside the top-K as one extra bucket, matched against the
    /// student's mass outside the same K ids (needs temperature 1: the teacher's
    /// full-vocabulary normaliser is known only at temperature 1). Otherwise the top-K is
    /// renormalised to sum to 1 (the paper's and the reference's choice).
    pub tail: bool,
}

/// Teacher targets of N distilled positions: K ids each and their target probabilities.
/// Padding slots (id `PAD_ID`, logit −∞) get id 0 and probability 0.
#[derive(Debug, Clone)]
pub struct TeacherTargets {
    /// [N, K] u32 ids into the student's vocabulary.
    pub ids: Tensor,
    /// [N, K] f32 target probabilities of those ids.
    pub probs: Tensor,
    /// [N] f32 teacher mass outside the top-K (zero unless `tail`).
    pub tail: Tensor,
    /// [N, K] f32: 1 for a real entry, 0 for padding (whose id 0 must not count twice).
    pub valid: Tensor,
}

impl TeacherTargets {
    /// From knowledge rows: `ids`/`logits` hold K entries per position, `logsumexp` one.
    pub fn from_rows(
        ids: &[u32],
        logits: &[f16],
        logsumexp: &[f32],
        k: usize,
        opts: TeacherOptions,
        device: &Device,
    ) -> Result<Self> {
        anyhow::ensure!(!opts.tail || opts.temperature == 1.0, "--teacher-tail needs temperature 1");
        let n = logsumexp.len();
        let mut probs = Vec::with_capacity(n * k);
        let mut tails = Vec::with_capacity(n);
        for (row, &lse) in logits.chunks(k).zip(logsumexp) {
            let scaled: Vec<f64> = row.iter().map(|l| l.to_f64() / opts.temperature).collect();
            let row_probs: Vec<f64> = if opts.tail {
                scaled.iter().map(|l| (l - lse as f64).exp()).collect()
            } else {
                let norm = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = scaled.iter().map(|l| (l - norm).exp()).sum();
                scaled.iter().map(|l| (l - norm).exp() / sum).collect()
            };
            let kept: f64 = row_probs.iter().sum();
            tails.push(if opts.tail { (1.0 - kept).max(0.0) as f32 } else { 0.0 });
            probs.extend(row_probs.iter().map(|&p| p as f32));
        }
        let valid: Vec<f32> = ids.iter().map(|&id| f32::from(u8::from(id != PAD_ID))).collect();
        let ids: Vec<u32> = ids.iter().map(|&id| if id == PAD_ID { 0 } else { id }).collect();
        Ok(TeacherTargets {
            valid: Tensor::from_vec(valid, (n, k), device)?,
            ids: Tensor::from_vec(ids, (n, k), device)?,
            probs: Tensor::from_vec(probs, (n, k), device)?,
            tail: Tensor::from_vec(tails, n, device)?,
        })
    }
}

/// Mean over positions of the cross-entropy between the teacher's targets and the student's
/// distribution at temperature T: −Σ_k q_k · log p_student(id_k), plus with a tail
/// −q_tail · log(1 − Σ_k p_student(id_k)). `student_logits` is [N, V].
pub fn sparse_kd(student_logits: &Tensor, teacher: &TeacherTargets, temperature: f64) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(&(student_logits.to_dtype(DType::F32)? / temperature)?, D::Minus1)?;
    let gathered = log_probs.gather(&teacher.ids, D::Minus1)?;
    let per_position = (&gathered * &teacher.probs)?.sum(D::Minus1)?.neg()?;
    let student_tail = (1.0 - (gathered.exp()? * &teacher.valid)?.sum(D::Minus1)?)?.clamp(1e-12, 1.0)?;
    let tail_term = (student_tail.log()? * &teacher.tail)?.neg()?;
    Ok((per_position + tail_term)?.mean_all()?)
}

/// Mean cross-entropy of the student's predictions of `targets` ([N] u32) from [N, V] logits.
pub fn cross_entropy(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    Ok(candle_nn::loss::cross_entropy(&logits.to_dtype(DType::F32)?, targets)?)
}

/// Eq. 9–10: `λ·L_FT + (1 − λ)·L_KD`.
pub fn combined(task: &Tensor, kd: Option<&Tensor>, lambda: f64) -> Result<Tensor> {
    Ok(match kd {
        Some(kd) => ((task * lambda)? + (kd * (1.0 - lambda))?)?,
        None => task.clone(),
    })
}
