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
    /// Keep the probability outside the top-K as one extra bucket (the knowledge set's
    /// `tail_mass`), matched against the student's mass outside the same K ids; the top-K
    /// then share 1 − tail in proportion to their softmax (needs temperature 1: the tail is
    /// known only at temperature 1). Otherwise the top-K is renormalised to sum to 1 (the
    /// paper's and the reference's choice).
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
    /// From knowledge rows: `ids`/`logits` hold K entries per position, `tail_mass` one.
    pub fn from_rows(
        ids: &[u32],
        logits: &[f16],
        tail_mass: &[f32],
        k: usize,
        opts: TeacherOptions,
        device: &Device,
    ) -> Result<Self> {
        anyhow::ensure!(!opts.tail || opts.temperature == 1.0, "--teacher-tail needs temperature 1");
        let n = tail_mass.len();
        let mut probs = Vec::with_capacity(n * k);
        let mut tails = Vec::with_capacity(n);
        for (row, &tail) in logits.chunks(k).zip(tail_mass) {
            let scaled: Vec<f64> = row.iter().map(|l| l.to_f64() / opts.temperature).collect();
            let norm = scaled.iter().copied().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = scaled.iter().map(|l| (l - norm).exp()).sum();
            // With the tail, the top-K share 1 − tail: the stored tail is exact, and the f16
            // logits are used only for ratios within the top-K (KL ≤ 4.1e-5 on real models).
            let kept = if opts.tail { 1.0 - tail as f64 } else { 1.0 };
            probs.extend(scaled.iter().map(|l| ((l - norm).exp() / sum * kept) as f32));
            tails.push(if opts.tail { tail } else { 0.0 });
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

/// Per position ([N]), the cross-entropy between the teacher's targets and the student's
/// distribution at temperature T: −Σ_k q_k · log p_student(id_k), plus with a tail
/// −q_tail · log(1 − Σ_k p_student(id_k)). `student_logits` is [N, V].
pub fn sparse_kd(student_logits: &Tensor, teacher: &TeacherTargets, temperature: f64) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(&(student_logits.to_dtype(DType::F32)? / temperature)?, D::Minus1)?;
    let gathered = log_probs.gather(&teacher.ids, D::Minus1)?;
    let per_position = (&gathered * &teacher.probs)?.sum(D::Minus1)?.neg()?;
    let student_tail = (1.0 - (gathered.exp()? * &teacher.valid)?.sum(D::Minus1)?)?.clamp(1e-12, 1.0)?;
    let tail_term = (student_tail.log()? * &teacher.tail)?.neg()?;
    Ok((per_position + tail_term)?)
}

/// Per position ([N]), the cross-entropy of the student's prediction of `targets` ([N] u32)
/// from [N, V] logits.
pub fn token_cross_entropies(logits: &Tensor, targets: &Tensor) -> Result<Tensor> {
    let log_probs = candle_nn::ops::log_softmax(&logits.to_dtype(DType::F32)?, D::Minus1)?;
    Ok(log_probs.gather(&targets.unsqueeze(1)?, D::Minus1)?.squeeze(1)?.neg()?)
}

/// Σ_i weights[i]·values[i]: how per-token and per-position losses become a batch's estimate
/// of Eq. 9–10's expectations (see [`SampleWeights`]).
pub fn weighted_sum(values: &Tensor, weights: &[f32]) -> Result<Tensor> {
    let weights = Tensor::from_slice(weights, weights.len(), values.device())?;
    Ok((values * weights)?.sum_all()?)
}

/// Eq. 9–10 estimated on a batch B of b samples drawn from the N training samples, M of which
/// have teacher targets (the selected set S̃):
///
/// L_B = (1/b) Σ_{i∈B} [ λ·ce_i + (1 − λ)·(N/M)·1[i ∈ S̃]·kd_i ],
///
/// where ce_i is sample i's mean cross-entropy over its answer tokens and kd_i its mean KD
/// cross-entropy over its selected positions. Its expectation over batches is exactly
/// λ·E_{D_p}[ℓ_CE] + (1 − λ)·E_{S̃}[ℓ_KD]: every sample counts once in each expectation, λ is
/// fixed, and a selected sample's KD weight (1 − λ)·N/(M·b) does not depend on its batchmates.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SampleWeights {
    pub lambda: f64,
    /// N / M: the inverse share of training samples with teacher targets (0 without a teacher).
    pub kd_scale: f64,
}

impl SampleWeights {
    pub fn new(lambda: f64, samples: usize, selected: usize) -> SampleWeights {
        if selected == 0 {
            return SampleWeights { lambda: if samples > 0 { lambda } else { 1.0 }, kd_scale: 0.0 };
        }
        SampleWeights { lambda, kd_scale: samples as f64 / selected as f64 }
    }

    /// The task loss alone (Eq. 4, the private phase): λ = 1, no KD.
    pub fn task_only() -> SampleWeights {
        SampleWeights { lambda: 1.0, kd_scale: 0.0 }
    }

    /// Per-token weights of the CE term: λ / (b·n_i) for each of sample i's n_i answer tokens.
    pub fn task(&self, tokens_per_sample: &[usize]) -> Vec<f32> {
        let b = tokens_per_sample.len() as f64;
        tokens_per_sample.iter().flat_map(|&n| std::iter::repeat_n((self.lambda / (b * n as f64)) as f32, n)).collect()
    }

    /// Per-position weights of the KD term: (1 − λ)·(N/M) / (b·p_i) for each of sample i's
    /// p_i selected positions (p_i = 0 for a sample without targets).
    pub fn kd(&self, positions_per_sample: &[usize]) -> Vec<f32> {
        let b = positions_per_sample.len() as f64;
        let scale = (1.0 - self.lambda) * self.kd_scale;
        positions_per_sample.iter().flat_map(|&p| std::iter::repeat_n((scale / (b * p as f64)) as f32, p)).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Hand-worked: N = 4 samples, M = 1 selected, λ = 0.9, batches of b = 2. The selected
    /// sample (3 positions) weighs (0.1·4)/(2·3) per position wherever it lands; a sample with
    /// 2 answer tokens weighs 0.9/(2·2) per token.
    #[test]
    fn a_selected_samples_weight_does_not_depend_on_its_batch() {
        let w = SampleWeights::new(0.9, 4, 1);
        let with_unselected = w.kd(&[3, 0]);
        let with_other = w.kd(&[0, 3]);
        let per_position = (0.1 * 4.0 / (2.0 * 3.0)) as f32;
        assert_eq!(with_unselected, vec![per_position; 3]);
        assert_eq!(with_other, vec![per_position; 3]);
        assert_eq!(w.task(&[2, 1]), vec![0.225, 0.225, 0.45]);
        // With every kd = 1, the KD term of the epoch's two batch losses averages to
        // (1 − λ)·E_S̃[kd] = 0.1: the selected sample's batch carries 3·per_position = 0.2,
        // the other batch 0.
        let epoch_mean: f32 = with_unselected.iter().sum::<f32>() / 2.0;
        assert!((epoch_mean - 0.1).abs() < 1e-6);
    }

    #[test]
    fn lambda_stays_fixed_and_the_private_phase_is_the_task_loss_alone() {
        assert_eq!(SampleWeights::new(0.9, 10, 3).lambda, 0.9);
        assert_eq!(SampleWeights::new(0.9, 10, 0), SampleWeights { lambda: 0.9, kd_scale: 0.0 });
        assert_eq!(SampleWeights::task_only().task(&[1, 1]), vec![0.5, 0.5]);
    }

    #[test]
    fn token_cross_entropies_match_candle_nn_mean() {
        let logits = Tensor::new(&[[1.0f32, 2.0, 0.5], [0.0, -1.0, 3.0]], &Device::Cpu).unwrap();
        let targets = Tensor::new(&[1u32, 2], &Device::Cpu).unwrap();
        let each = token_cross_entropies(&logits, &targets).unwrap().to_vec1::<f32>().unwrap();
        let mean = candle_nn::loss::cross_entropy(&logits, &targets).unwrap().to_scalar::<f32>().unwrap();
        assert!(((each[0] + each[1]) / 2.0 - mean).abs() < 1e-6);
    }
}
