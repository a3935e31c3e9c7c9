//! Training losses of `distill` (paper Eq. 4, 9–10): the task cross-entropy and the sparse
//! knowledge-distillation cross-entropy against a teacher's top-K.
//!
//! The teacher distribution is only ever held as its top-K: the student's log-probabilities
//! are gathered at the K teacher ids, so no [batch, length, vocabulary] teacher tensor
//! exists (the reference builds one densely, and runs out of memory with 7B–14B models).
use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};
use half::f16;

use crate::cli::bad_input;
use crate::io;
use crate::knowledge::{self, SampleKnowledge, KNOWLEDGE_FORMAT, PAD_ID};
use crate::select::SELECTED_FORMAT;
use crate::tokens::TokenizedSample;

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

/// What the teacher's targets are at each of their N positions, on the host: the entropy
/// H(q) (with the tail bucket when there is one), the floor of the KD cross-entropy, and
/// q(gold), the probability the targets give the true next token (0 outside the top-K).
#[derive(Debug, Clone, PartialEq)]
pub struct TargetStats {
    pub entropy: Vec<f64>,
    pub gold_probability: Vec<f64>,
    /// Whether the true next token is among the position's (valid) top-K ids.
    pub gold_in_top_k: Vec<bool>,
}

impl TeacherTargets {
    /// [`TargetStats`] of these targets, `gold[i]` being position i's true next token (None at
    /// a text's last position, which has none: its q(gold) is 0).
    pub fn stats(&self, gold: &[Option<u32>]) -> Result<TargetStats> {
        let (ids, probs, valid) =
            (self.ids.to_vec2::<u32>()?, self.probs.to_vec2::<f32>()?, self.valid.to_vec2::<f32>()?);
        let tails = self.tail.to_vec1::<f32>()?;
        let plogp = |q: f64| if q > 0.0 { -q * q.ln() } else { 0.0 };
        let mut stats = TargetStats { entropy: Vec::new(), gold_probability: Vec::new(), gold_in_top_k: Vec::new() };
        for (i, &gold) in gold.iter().enumerate() {
            let real = || (0..ids[i].len()).filter(|&j| valid[i][j] > 0.0);
            stats.entropy.push(real().map(|j| plogp(probs[i][j] as f64)).sum::<f64>() + plogp(tails[i] as f64));
            let is_gold = |&j: &usize| Some(ids[i][j]) == gold;
            stats.gold_probability.push(real().filter(is_gold).map(|j| probs[i][j] as f64).sum());
            stats.gold_in_top_k.push(real().any(|j| is_gold(&j)));
        }
        Ok(stats)
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

/// A teacher read for `distill` or `measure-kd`.
pub struct TeacherFile {
    /// Its rows by sample id.
    pub rows: HashMap<String, SampleKnowledge>,
    /// Entries per position.
    pub k: usize,
    /// Whether its rows are sampled draws (`infer-logits --sample`), weighted by their counts.
    pub sampled: bool,
}

impl TeacherFile {
    /// Sampled rows are counts: a temperature or a tail bucket would bias them.
    pub fn check_options(&self, path: &Path, opts: TeacherOptions) -> Result<()> {
        if self.sampled && (opts.temperature != 1.0 || opts.tail) {
            return Err(crate::cli::bad_usage(format!(
                "--temperature {} / --teacher-tail: {} holds sampled draws, which need temperature 1 and no tail",
                opts.temperature,
                path.display()
            )));
        }
        Ok(())
    }
}

/// A teacher's rows: a `selected` file (`select`) or a whole knowledge set (`infer-logits` on
/// `data`, or `align`ed to it: every sample then has targets), refusing a file made for other
/// tokens than `data`, or positions beyond a sample's tokens.
pub fn read_teacher(path: &Path, data: &Path, samples: &[TokenizedSample]) -> Result<TeacherFile> {
    let table = io::read_parquet_of(path, &[SELECTED_FORMAT, KNOWLEDGE_FORMAT])?;
    if table.input_hash("tokens")? != io::file_hash(data)? {
        return Err(bad_input(
            path,
            format!("was made for other tokens than {} (another tokenizer or public set)", data.display()),
        ));
    }
    let k = knowledge::top_k(&table)?;
    let rows = knowledge::knowledge_rows(&table, k)?;
    let lengths: HashMap<&str, usize> = samples.iter().map(|s| (s.id.as_str(), s.input_ids.len())).collect();
    for row in &rows {
        let length = lengths
            .get(row.id.as_str())
            .ok_or_else(|| bad_input(path, format!("has sample '{}', which {} lacks", row.id, data.display())))?;
        if row.positions.iter().any(|&p| p as usize >= *length) {
            return Err(bad_input(path, format!("sample '{}' has positions beyond its {length} tokens", row.id)));
        }
    }
    let sampled = table.provenance.extra.contains_key("sampled");
    Ok(TeacherFile { rows: rows.into_iter().map(|r| (r.id.clone(), r)).collect(), k, sampled })
}

/// Every teacher id must be a token of the student's vocabulary (padding aside).
pub fn check_teacher_fits(path: &Path, teacher: &HashMap<String, SampleKnowledge>, vocab: usize) -> Result<()> {
    let beyond = teacher.values().flat_map(|t| t.topk_ids.iter()).find(|&&id| id != PAD_ID && id as usize >= vocab);
    match beyond {
        Some(id) => Err(bad_input(path, format!("has teacher id {id}, beyond the model's vocabulary of {vocab}"))),
        None => Ok(()),
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

    /// Hand-worked: logits (ln 3, 0, −∞ pad) renormalise to (3/4, 1/4); H = −(¾ ln ¾ + ¼ ln ¼)
    /// = 0.5623; the gold id 7 has q = 1/4; a gold outside the top-K has q = 0. With the tail
    /// (0.2), the top-K share 0.8: (0.6, 0.2, tail 0.2).
    #[test]
    fn target_stats_by_hand() {
        let ids = [5u32, 7, PAD_ID, 5, 7, PAD_ID];
        let logits: Vec<f16> = [3f32.ln(), 0.0, f32::NEG_INFINITY].repeat(2).into_iter().map(f16::from_f32).collect();
        let plain = TeacherOptions { temperature: 1.0, tail: false };
        let targets = TeacherTargets::from_rows(&ids, &logits, &[0.2, 0.2], 3, plain, &Device::Cpu).unwrap();
        let stats = targets.stats(&[Some(7), None]).unwrap();
        let h = -(0.75f64 * 0.75f64.ln() + 0.25 * 0.25f64.ln());
        assert!((stats.entropy[0] - h).abs() < 1e-3, "{:?}", stats.entropy);
        assert!((stats.gold_probability[0] - 0.25).abs() < 1e-3);
        assert_eq!((stats.gold_probability[1], stats.gold_in_top_k.clone()), (0.0, vec![true, false]));
        let tail = TeacherTargets::from_rows(
            &ids,
            &logits,
            &[0.2, 0.2],
            3,
            TeacherOptions { tail: true, ..plain },
            &Device::Cpu,
        );
        let with_tail = tail.unwrap().stats(&[Some(5), Some(5)]).unwrap();
        let h_tail = -(0.6f64 * 0.6f64.ln() + 2.0 * 0.2 * 0.2f64.ln());
        assert!((with_tail.entropy[0] - h_tail).abs() < 1e-3, "{:?}", with_tail.entropy);
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
