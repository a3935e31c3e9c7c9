//! Batched scoring: run a model over right-padded token sequences and return next-token
//! logits only at the positions a tool asks for (the vocabulary projection is most of the
//! cost for small models: 262k × 640 per position for Gemma-3-270M).
use anyhow::Result;
use candle_core::{Device, Tensor};
use rayon::prelude::*;

use crate::model::{Model, Prefixes};

/// The id right-padded sequences are filled with for batching: any valid id works, padding is
/// never attended to or scored (not the knowledge format's `PAD_ID`).
pub const BATCH_FILL_ID: u32 = 0;

/// One sequence of a batch and the positions whose next-token logits are wanted
/// (position p's logits predict `ids[p + 1]`).
pub struct Request<'a> {
    pub ids: &'a [u32],
    pub positions: Vec<usize>,
}

/// Logits `[positions, vocab]` (f32, on the model's device) for each request, in order; an
/// error if any is NaN or infinite (broken weights), which every caller must refuse.
pub fn logits_at(model: &Model, requests: &[Request]) -> Result<Vec<Tensor>> {
    if requests.iter().all(|r| r.positions.is_empty()) {
        return no_logits(model, requests.len());
    }
    let (ids, width) = padded(model, requests.iter().map(|r| r.ids))?;
    let rows = requests.iter().enumerate().map(|(b, r)| r.positions.iter().map(|&p| (b * width + p) as u32).collect());
    logits_of(model, &flat(&model.hidden_states(&ids)?)?, rows.collect())
}

/// Sequences that start alike (a sample's choices after its context): the shared tokens once,
/// then each sequence's own. In `continuations`, `ids` are a sequence's tokens after the
/// prefix and `positions` count from the start of the whole sequence, so positions before
/// the prefix's end are read from the prefix's own pass.
pub struct SharedPrefix<'a> {
    pub prefix: &'a [u32],
    pub continuations: Vec<Request<'a>>,
}

/// [`logits_at`] for every continuation of `groups`, in order: the prefixes `per_pass` at a
/// time (callers sort them by length), then the continuations, shortest first, `per_pass`
/// rows at a time, reading the prefixes' cached keys and values. Each prefix is computed
/// once, not once per continuation, and continuations pad only to others of their length.
pub fn logits_after_prefixes(model: &Model, groups: &[&SharedPrefix], per_pass: usize) -> Result<Vec<Tensor>> {
    let requests: Vec<(usize, &Request)> =
        groups.iter().enumerate().flat_map(|(g, group)| group.continuations.iter().map(move |r| (g, r))).collect();
    if requests.iter().all(|(_, r)| r.positions.is_empty()) {
        return no_logits(model, requests.len());
    }
    let (prefix_hidden, prefix_row, prefixes) = prefix_passes(model, groups, per_pass)?;
    let prefix_rows = prefix_hidden.dim(0)?;
    let mut out = vec![None; requests.len()];
    let lengths: Vec<usize> = requests.iter().map(|(_, r)| r.ids.len()).collect();
    for pass in length_sorted_batches(&lengths, per_pass) {
        let (ids, width) = padded(model, pass.iter().map(|&i| requests[i].1.ids))?;
        let of: Vec<usize> = pass.iter().map(|&i| requests[i].0).collect();
        // One table of hidden states: the prefixes' rows, then this pass's.
        let hidden = Tensor::cat(&[&prefix_hidden, &flat(&model.hidden_states_after(&prefixes, &of, &ids)?)?], 0)?;
        let rows = pass.iter().enumerate().map(|(row, &i)| {
            let (g, request) = requests[i];
            let cut = groups[g].prefix.len();
            let at = |p: usize| if p < cut { prefix_row[g] + p } else { prefix_rows + row * width + p - cut };
            request.positions.iter().map(|&p| at(p) as u32).collect()
        });
        for (&i, logits) in pass.iter().zip(logits_of(model, &hidden, rows.collect())?) {
            out[i] = Some(logits);
        }
    }
    Ok(out.into_iter().map(|l| l.expect("every continuation is in one pass")).collect())
}

/// The prefixes of `groups`, `per_pass` at a time: their hidden states as one row per
/// position, the row of each group's first token, and their keys and values as one batch.
fn prefix_passes(model: &Model, groups: &[&SharedPrefix], per_pass: usize) -> Result<(Tensor, Vec<usize>, Prefixes)> {
    let (mut hidden, mut first_row, mut parts) = (Vec::new(), Vec::new(), Vec::new());
    let mut rows = 0;
    for chunk in groups.chunks(per_pass.max(1)) {
        let (ids, width) = padded(model, chunk.iter().map(|g| g.prefix))?;
        let (states, part) = model.prefixes(&ids, chunk.iter().map(|g| g.prefix.len()).collect())?;
        first_row.extend((0..chunk.len()).map(|k| rows + k * width));
        rows += chunk.len() * width;
        hidden.push(flat(&states)?);
        parts.push(part);
    }
    Ok((Tensor::cat(&hidden, 0)?, first_row, Prefixes::concat(parts)?))
}

/// Empty `[0, vocab]` logits for `n` requests with nothing to score.
fn no_logits(model: &Model, n: usize) -> Result<Vec<Tensor>> {
    let empty = Tensor::zeros((0, model.config.vocab_size), candle_core::DType::F32, &Device::Cpu)?;
    Ok(vec![empty; n])
}

/// Token ids right-padded to the longest (at least 1 wide) `[batch, width]`, and the width.
fn padded<'a>(model: &Model, rows: impl ExactSizeIterator<Item = &'a [u32]> + Clone) -> Result<(Tensor, usize)> {
    let (batch, width) = (rows.len(), rows.clone().map(<[u32]>::len).max().unwrap_or(0).max(1));
    let mut ids = Vec::with_capacity(batch * width);
    for (b, row) in rows.enumerate() {
        ids.extend_from_slice(row);
        ids.resize((b + 1) * width, BATCH_FILL_ID);
    }
    Ok((Tensor::from_vec(ids, (batch, width), &model.device)?, width))
}

/// Hidden states `[batch, seq, hidden]` as one row per position `[batch·seq, hidden]`.
fn flat(hidden: &Tensor) -> Result<Tensor> {
    let (batch, seq, size) = hidden.dims3()?;
    Ok(hidden.reshape((batch * seq, size))?)
}

/// The logits of rows of `hidden` `[rows, hidden]`, one list of rows per request (each
/// request's logits a view into one tensor of the whole pass).
fn logits_of(model: &Model, hidden: &Tensor, rows: Vec<Vec<u32>>) -> Result<Vec<Tensor>> {
    let counts: Vec<usize> = rows.iter().map(Vec::len).collect();
    let rows: Vec<u32> = rows.into_iter().flatten().collect();
    let n = rows.len();
    let picked = hidden.index_select(&Tensor::from_vec(rows, n, &model.device)?, 0)?;
    let logits = model.logits(&picked)?;
    // NaN and ±inf propagate through a sum: one reduction checks every logit of the batch.
    if !logits.sum_all()?.to_scalar::<f32>()?.is_finite() {
        anyhow::bail!("the model produces non-finite logits (NaN or inf)");
    }
    let mut out = Vec::with_capacity(counts.len());
    let mut start = 0;
    for n in counts {
        out.push(logits.narrow(0, start, n)?);
        start += n;
    }
    Ok(out)
}

/// Batches of indices into `lengths`, shortest first, so each batch pads to little more than
/// its own sequences (in file order, ARC-Easy batches of 8 pad 77% extra tokens; sorted, 3%).
/// Ties keep index order, so batches are deterministic.
pub fn length_sorted_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| (lengths[i], i));
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// What the tools keep of one row of logits: its top k `(id, logit)`, log Σ exp, and the
/// logit of the id a caller picked (the next token).
#[derive(Debug, Clone, PartialEq)]
pub struct RowSummary {
    pub top: Vec<(u32, f32)>,
    pub logsumexp: f64,
    pub picked: f32,
}

/// [`RowSummary`] of each row of `logits` `[rows, vocab]`, `picks[row]` its picked id. On the
/// CPU row by row ([`top_k`], [`logsumexp`]); on a GPU the reductions run there and only the
/// summaries cross to the host, not the `rows × vocab` logits (1.2 GB for a batch of Gemma-3's).
pub fn summarise_rows(logits: &Tensor, k: usize, picks: &[u32]) -> Result<Vec<RowSummary>> {
    if !logits.device().is_cpu() {
        return summarise_on_device(logits, k, picks);
    }
    let vocab = logits.dim(1)?;
    Ok(crate::model::with_values(&logits.contiguous()?, |flat| {
        Ok(flat
            .par_chunks(vocab.max(1))
            .zip(picks)
            .map(|(row, &pick)| RowSummary {
                top: top_k(row, k),
                logsumexp: logsumexp(row),
                picked: row[pick as usize],
            })
            .collect())
    })?)
}

/// [`summarise_rows`] by tensor ops on the logits' device: log Σ exp after the row maximum (in
/// f32), the top k by k rounds of argmax, each masking its pick out (ties as the device's argmax
/// breaks them; the CPU takes the lower id).
fn summarise_on_device(logits: &Tensor, k: usize, picks: &[u32]) -> Result<Vec<RowSummary>> {
    let (rows, vocab) = logits.dims2()?;
    let device = logits.device();
    let max = logits.max_keepdim(1)?;
    let lse = (logits.broadcast_sub(&max)?.exp()?.sum_keepdim(1)?.log()? + &max)?.flatten_all()?.to_vec1::<f32>()?;
    let picked =
        logits.gather(&Tensor::from_vec(picks.to_vec(), (rows, 1), device)?, 1)?.flatten_all()?.to_vec1::<f32>()?;
    let columns = Tensor::arange(0u32, vocab as u32, device)?.unsqueeze(0)?;
    // −∞ for every picked entry: one value seen through a broadcast, not a rows × vocab copy.
    let removed = Tensor::new(f32::NEG_INFINITY, device)?.broadcast_as((rows, vocab))?;
    let (mut remaining, mut ids, mut values) = (logits.clone(), Vec::new(), Vec::new());
    for _ in 0..k.min(vocab) {
        let id = remaining.argmax_keepdim(1)?;
        values.push(remaining.gather(&id, 1)?);
        remaining = columns.broadcast_eq(&id)?.where_cond(&removed, &remaining)?;
        ids.push(id);
    }
    let top: Vec<Vec<(u32, f32)>> = if ids.is_empty() {
        vec![Vec::new(); rows]
    } else {
        let (ids, values) = (Tensor::cat(&ids, 1)?.to_vec2::<u32>()?, Tensor::cat(&values, 1)?.to_vec2::<f32>()?);
        ids.into_iter().zip(values).map(|(i, v)| i.into_iter().zip(v).collect()).collect()
    };
    Ok(top
        .into_iter()
        .zip(lse.into_iter().zip(picked))
        .map(|(top, (lse, picked))| RowSummary { top, logsumexp: lse as f64, picked })
        .collect())
}

/// `draws` ids drawn with replacement from each row's softmax, as `(id, count)` by count
/// descending then id, the row's draws seeded by `seeds[row]` (so a row's sample does not depend
/// on its batch). Inverse CDF: the sorted uniforms meet the row's running sum in one pass.
pub fn sample_rows(logits: &Tensor, draws: usize, seeds: &[u64]) -> Result<Vec<Vec<(u32, u32)>>> {
    let logits = logits.to_device(&Device::Cpu)?.contiguous()?;
    let vocab = logits.dim(1)?;
    Ok(crate::model::with_values(&logits, |flat| {
        Ok(flat.par_chunks(vocab.max(1)).zip(seeds).map(|(row, &seed)| sample_row(row, draws, seed)).collect())
    })?)
}

fn sample_row(row: &[f32], draws: usize, seed: u64) -> Vec<(u32, u32)> {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let lse = logsumexp(row);
    let mut uniforms: Vec<f64> = (0..draws).map(|_| rng.random::<f64>()).collect();
    uniforms.sort_by(f64::total_cmp);
    let mut counts: std::collections::BTreeMap<u32, u32> = std::collections::BTreeMap::new();
    let (mut cumulative, mut next) = (0.0, 0);
    for (id, &logit) in row.iter().enumerate() {
        cumulative += (logit as f64 - lse).exp();
        while next < draws && (uniforms[next] < cumulative || id + 1 == row.len()) {
            *counts.entry(id as u32).or_default() += 1;
            next += 1;
        }
    }
    let mut sampled: Vec<(u32, u32)> = counts.into_iter().collect();
    sampled.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    sampled
}

/// `log Σ exp(row)`: terms in f32 after subtracting the maximum (each in (0, 1]), summed in f64.
pub fn logsumexp(row: &[f32]) -> f64 {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    max as f64 + row.iter().map(|&x| (x - max).exp() as f64).sum::<f64>().ln()
}

/// The `k` largest entries of `row` as `(id, value)`, by value descending, ties by lower id
/// (so the result never depends on thread count or sort stability). One pass keeping a
/// sorted buffer of k: most entries are rejected by a single comparison with its last.
pub fn top_k(row: &[f32], k: usize) -> Vec<(u32, f32)> {
    let k = k.min(row.len());
    if k == 0 {
        return Vec::new();
    }
    let before = |a: (u32, f32), b: (u32, f32)| a.1 > b.1 || (a.1 == b.1 && a.0 < b.0);
    let mut best: Vec<(u32, f32)> = Vec::with_capacity(k + 1);
    for (i, &v) in row.iter().enumerate() {
        let entry = (i as u32, v);
        if best.len() == k && !before(entry, best[k - 1]) {
            continue;
        }
        let at = best.partition_point(|&b| before(b, entry));
        best.insert(at, entry);
        best.truncate(k);
    }
    best
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

    /// The one-pass buffer against a full sort, on rows with many ties.
    #[test]
    fn top_k_equals_a_full_sort() {
        let row: Vec<f32> = (0..997u32).map(|i| ((i * 7919) % 101) as f32 / 7.0).collect();
        let mut sorted: Vec<(u32, f32)> = row.iter().enumerate().map(|(i, &v)| (i as u32, v)).collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        for k in [1, 5, 16, 200] {
            assert_eq!(top_k(&row, k), sorted[..k].to_vec(), "k = {k}");
        }
    }

    /// The device path, run on the CPU's tensors, against the row-by-row one (no ties here).
    #[test]
    fn rows_summarise_alike_on_the_device_path() {
        let (rows, vocab) = (5, 300);
        let values: Vec<f32> =
            (0..rows * vocab).map(|i| ((i as u32 * 2_654_435_761) % 100_003) as f32 / 997.0 - 40.0).collect();
        let logits = Tensor::from_vec(values, (rows, vocab), &Device::Cpu).unwrap();
        let picks = [3, 0, 299, 17, 150];
        let host = summarise_rows(&logits, 6, &picks).unwrap();
        let device = summarise_on_device(&logits, 6, &picks).unwrap();
        for (h, d) in host.iter().zip(&device) {
            assert_eq!((&h.top, h.picked), (&d.top, d.picked));
            assert!((h.logsumexp - d.logsumexp).abs() < 1e-4, "{} vs {}", h.logsumexp, d.logsumexp);
        }
        assert!(summarise_on_device(&logits, 0, &picks).unwrap().iter().all(|r| r.top.is_empty()));
    }

    /// Many draws from a known distribution come in proportion to it, and a seed repeats them.
    #[test]
    fn sampled_rows_follow_the_softmax() {
        let probabilities = [0.5f32, 0.25, 0.125, 0.125];
        let logits = Tensor::new(&[probabilities.map(f32::ln)], &Device::Cpu).unwrap();
        let sample = sample_rows(&logits, 40_000, &[7]).unwrap().remove(0);
        let mut counts = [0u32; 4];
        sample.iter().for_each(|&(id, n)| counts[id as usize] = n);
        for (count, p) in counts.iter().zip(probabilities) {
            assert!((*count as f64 / 40_000.0 - p as f64).abs() < 0.01, "{counts:?}");
        }
        assert_eq!(sample_rows(&logits, 16, &[3]).unwrap(), sample_rows(&logits, 16, &[3]).unwrap());
        assert_ne!(sample_rows(&logits, 16, &[3]).unwrap(), sample_rows(&logits, 16, &[4]).unwrap());
    }

    #[test]
    fn batches_group_similar_lengths() {
        assert_eq!(length_sorted_batches(&[5, 1, 3, 1, 9], 2), vec![vec![1, 3], vec![2, 0], vec![4]]);
    }

    #[test]
    fn logsumexp_is_stable() {
        assert!((logsumexp(&[1000.0, 1000.0]) - (1000.0 + 2f64.ln())).abs() < 1e-9);
        assert!((logsumexp(&[0.0, 0.0, 0.0]) - 3f64.ln()).abs() < 1e-12);
    }
}
