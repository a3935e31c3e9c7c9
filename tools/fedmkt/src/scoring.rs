//! Batched scoring: run a model over right-padded token sequences and return next-token
//! logits only at the positions a tool asks for (the vocabulary projection is most of the
//! cost for small models: 262k × 640 per position for Gemma-3-270M).
use anyhow::Result;
use candle_core::{Device, Tensor};

use crate::model::Model;

/// Pad id for batching: any valid id works, padding is never attended to or scored.
const PAD_ID: u32 = 0;

/// One sequence of a batch and the positions whose next-token logits are wanted
/// (position p's logits predict `ids[p + 1]`).
pub struct Request<'a> {
    pub ids: &'a [u32],
    pub positions: Vec<usize>,
}

/// Logits `[positions, vocab]` (f32, on the CPU) for each request, in order.
pub fn logits_at(model: &Model, requests: &[Request]) -> Result<Vec<Tensor>> {
    let width = requests.iter().map(|r| r.ids.len()).max().unwrap_or(0);
    let counts: Vec<usize> = requests.iter().map(|r| r.positions.len()).collect();
    let total: usize = counts.iter().sum();
    if total == 0 {
        let vocab = model.config.vocab_size;
        return requests.iter().map(|_| Ok(Tensor::zeros((0, vocab), candle_core::DType::F32, &Device::Cpu)?)).collect();
    }
    let mut padded = Vec::with_capacity(requests.len() * width);
    let mut rows = Vec::with_capacity(total);
    for (b, r) in requests.iter().enumerate() {
        padded.extend_from_slice(r.ids);
        padded.resize((b + 1) * width, PAD_ID);
        rows.extend(r.positions.iter().map(|&p| (b * width + p) as u32));
    }
    let ids = Tensor::from_vec(padded, (requests.len(), width), &model.device)?;
    let hidden = model.hidden_states(&ids)?;
    let hidden = hidden.reshape((requests.len() * width, hidden.dim(2)?))?;
    let picked = hidden.index_select(&Tensor::from_vec(rows, total, &model.device)?, 0)?;
    let logits = model.logits(&picked)?.to_device(&Device::Cpu)?;
    let mut out = Vec::with_capacity(requests.len());
    let mut start = 0;
    for n in counts {
        out.push(logits.narrow(0, start, n)?);
        start += n;
    }
    Ok(out)
}

/// `log Σ exp(row)`, accumulated in f64.
pub fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    max + row.iter().map(|&x| (x as f64 - max).exp()).sum::<f64>().ln()
}

/// The `k` largest entries of `row` as `(id, value)`, by value descending, ties by lower id
/// (so the result never depends on thread count or sort stability).
pub fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let order = |a: &u32, b: &u32| row[*b as usize].total_cmp(&row[*a as usize]).then(a.cmp(b));
    let mut ids: Vec<u32> = (0..row.len() as u32).collect();
    let k = k.min(ids.len());
    if k < ids.len() {
        ids.select_nth_unstable_by(k, order);
        ids.truncate(k);
    }
    ids.sort_unstable_by(order);
    ids.into_iter().map(|i| (i, row[i as usize])).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn top_k_orders_by_value_then_id() {
        let row = [0.5, 2.0, -1.0, 2.0, 0.7];
        assert_eq!(top_k(&row, 3), vec![(1, 2.0), (3, 2.0), (4, 0.7)]);
        assert_eq!(top_k(&row, 9).len(), 5);
    }

    #[test]
    fn logsumexp_is_stable() {
        assert!((logsumexp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert!((logsumexp(&[0.0, 0.0, 0.0]) - 3f64.ln()).abs() < 1e-12);
    }
}
