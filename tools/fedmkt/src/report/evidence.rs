//! What an evaluation can claim: per-sample outcomes read back from `evaluate`'s predictions,
//! every score with its 95% bootstrap interval, and paired comparisons of two models on the
//! same samples (difference with interval, McNemar's exact p for accuracy).
use std::collections::HashMap;
use std::path::Path;

use anyhow::Result;
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::Array;

use crate::cli::bad_input;
use crate::eval::PREDICTIONS_FORMAT;
use crate::io;
use crate::report::stats::{self, Estimate};

/// Seed of every bootstrap in a report: the same resampled indices for every cell of size n.
pub const BOOTSTRAP_SEED: u64 = 42;

/// One model's per-sample results on an eval set, in file order.
pub struct Outcomes {
    pub ids: Vec<String>,
    /// 1 where the argmax choice is gold, else 0 (acc); the same per character (acc_norm).
    pub correct: Vec<f64>,
    pub correct_norm: Vec<f64>,
    pub gold_per_byte: Vec<f64>,
    pub margin: Vec<f64>,
}

pub fn read_outcomes(path: &Path) -> Result<Outcomes> {
    let table = io::read_parquet(path, PREDICTIONS_FORMAT)?;
    let flat_u32 = |name: &str| table.values::<UInt32Type>(name);
    let flat_f64 = |name: &str| table.values::<Float64Type>(name);
    let ids = table.strings("id")?;
    let (gold, pred, pred_norm) = (flat_u32("gold")?, flat_u32("pred")?, flat_u32("pred_norm")?);
    let hit = |p: &[u32]| p.iter().zip(&gold).map(|(p, g)| f64::from(u8::from(p == g))).collect();
    let outcomes = Outcomes {
        ids,
        correct: hit(&pred),
        correct_norm: hit(&pred_norm),
        gold_per_byte: flat_f64("gold_loglik_per_byte")?,
        margin: flat_f64("margin")?,
    };
    if outcomes.ids.is_empty() {
        return Err(bad_input(path, "holds no predictions"));
    }
    if outcomes.gold_per_byte.iter().chain(&outcomes.margin).any(|v| v.is_nan()) {
        return Err(bad_input(path, "a gold_loglik_per_byte or margin is NaN"));
    }
    check_against_logliks(&table, &outcomes.ids, [&gold, &pred], &outcomes.margin)?;
    Ok(outcomes)
}

/// Each row's numbers follow from its choices' log-likelihoods, or the file is refused: `gold`
/// and `pred` index a choice, no log-likelihood is NaN, `pred` is their argmax (first on
/// ties) and `margin` the gold one's lead over the best other.
fn check_against_logliks(
    table: &io::ParquetTable,
    ids: &[String],
    [gold, pred]: [&[u32]; 2],
    margin: &[f64],
) -> Result<()> {
    let lists = table.column::<arrow_array::ListArray>("loglik")?;
    let rows = lists.iter().flat_map(|list| (0..list.len()).map(move |r| list.value(r)));
    for (i, row) in rows.enumerate() {
        let values = row.as_any().downcast_ref::<arrow_array::Float64Array>();
        let values = values.ok_or_else(|| bad_input(&table.path, "column 'loglik' is not a list of float64"))?.values();
        let wrong = |what: String| Err(bad_input(&table.path, format!("sample '{}': {what}", ids[i])));
        if values.iter().any(|v| v.is_nan()) || gold[i] as usize >= values.len() || pred[i] as usize >= values.len() {
            return wrong(format!(
                "gold {} or pred {} is not one of its {} choices, or a loglik is NaN",
                gold[i],
                pred[i],
                values.len()
            ));
        }
        let argmax = (0..values.len()).fold(0, |best, j| if values[j] > values[best] { j } else { best });
        let best_other =
            (0..values.len()).filter(|&j| j != gold[i] as usize).map(|j| values[j]).fold(f64::NEG_INFINITY, f64::max);
        let lead = values[gold[i] as usize] - best_other;
        if argmax != pred[i] as usize || (values.len() > 1 && (lead - margin[i]).abs() > 1e-9 * lead.abs().max(1.0)) {
            return wrong(format!("pred {} and margin {} do not follow from its log-likelihoods", pred[i], margin[i]));
        }
    }
    Ok(())
}

/// A cell of the results table: each metric with its 95% interval.
pub struct CellStats {
    pub acc: Estimate,
    pub acc_norm: Estimate,
    pub gold_per_byte: Estimate,
    pub margin: Estimate,
}

pub fn cell_stats(o: &Outcomes) -> CellStats {
    let estimate = |values: &[f64]| stats::bootstrap_mean(values, stats::RESAMPLES, BOOTSTRAP_SEED);
    CellStats {
        acc: estimate(&o.correct),
        acc_norm: estimate(&o.correct_norm),
        gold_per_byte: estimate(&o.gold_per_byte),
        margin: estimate(&o.margin),
    }
}

/// Several evaluations of the same samples as one: per sample (in the first run's order) the
/// mean over the runs (one model's training seeds, or several clients of one base model).
pub fn mean_outcomes(runs: &[(&Outcomes, &Path)]) -> Result<Outcomes> {
    let (first, first_path) = runs[0];
    let mut sums = Outcomes {
        ids: first.ids.clone(),
        correct: vec![0.0; first.ids.len()],
        correct_norm: vec![0.0; first.ids.len()],
        gold_per_byte: vec![0.0; first.ids.len()],
        margin: vec![0.0; first.ids.len()],
    };
    let position: HashMap<&str, usize> = first.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    for (run, path) in runs {
        if run.ids.len() != first.ids.len() || run.ids.iter().any(|id| !position.contains_key(id.as_str())) {
            return Err(bad_input(path, format!("was evaluated on other samples than {}", first_path.display())));
        }
        for (k, id) in run.ids.iter().enumerate() {
            let i = position[id.as_str()];
            sums.correct[i] += run.correct[k];
            sums.correct_norm[i] += run.correct_norm[k];
            sums.gold_per_byte[i] += run.gold_per_byte[k];
            sums.margin[i] += run.margin[k];
        }
    }
    let count = runs.len() as f64;
    for values in [&mut sums.correct, &mut sums.correct_norm, &mut sums.gold_per_byte, &mut sums.margin] {
        values.iter_mut().for_each(|v| *v /= count);
    }
    Ok(sums)
}

/// Model A against model B on the same samples.
pub struct Paired {
    pub n: usize,
    /// acc(A) − acc(B), and the paired bootstrap interval.
    pub acc: Estimate,
    /// Samples right only under A, and only under B: McNemar's discordant pairs. With seeds
    /// pooled (outcomes are means over seeds), the samples A gets right more often than B and
    /// the reverse; the same exact test on them is then the sign test, which for one seed is
    /// McNemar's.
    pub only_a: u64,
    pub only_b: u64,
    pub mcnemar_p: f64,
    pub gold_per_byte: Estimate,
    pub margin: Estimate,
}

/// Compare A with B sample by sample (joined by id); both must hold the same samples.
pub fn paired(a: &Outcomes, b: &Outcomes, a_path: &Path, b_path: &Path) -> Result<Paired> {
    let position: HashMap<&str, usize> = b.ids.iter().enumerate().map(|(i, id)| (id.as_str(), i)).collect();
    if a.ids.len() != b.ids.len() || a.ids.iter().any(|id| !position.contains_key(id.as_str())) {
        return Err(bad_input(a_path, format!("was evaluated on other samples than {}", b_path.display())));
    }
    let order: Vec<usize> = a.ids.iter().map(|id| position[id.as_str()]).collect();
    let matched = |values: &[f64]| -> Vec<f64> { order.iter().map(|&i| values[i]).collect() };
    let difference = |x: &[f64], y: &[f64]| stats::paired_difference(x, &matched(y), stats::RESAMPLES, BOOTSTRAP_SEED);
    let b_correct = matched(&b.correct);
    let only = |x: &[f64], y: &[f64]| x.iter().zip(y).filter(|(p, q)| **p > **q).count() as u64;
    let (only_a, only_b) = (only(&a.correct, &b_correct), only(&b_correct, &a.correct));
    Ok(Paired {
        n: a.ids.len(),
        acc: difference(&a.correct, &b.correct),
        only_a,
        only_b,
        mcnemar_p: stats::mcnemar_exact(only_a, only_b),
        gold_per_byte: difference(&a.gold_per_byte, &b.gold_per_byte),
        margin: difference(&a.margin, &b.margin),
    })
}
