//! Adapters as fixed-point words modulo 2^64, and the pseudo-random masks added to them: a
//! pair's masks cancel in the sum, a client's own mask is removed once its seed is rebuilt.
use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use serde::{Deserialize, Serialize};
use x25519_dalek::{PublicKey, StaticSecret};

use crate::cli::{bad_input, bad_usage};
use crate::model::lora::{Adapter, LoraSpec};

use super::crypto::{self, Purpose};

/// Fixed point: a value v is the integer round(v · 2^24) modulo 2^64.
pub(super) const FRAC_BITS: i32 = 24;

/// Largest |weight · value| and weight `mask` encodes: 255 clients' sum stays below 2^(63−24).
pub(super) const LARGEST_MASKED_VALUE: f64 = (1u64 << 30) as f64;

/// What a masked vector encodes: tensor keys and shapes in order, and the adapter's spec.
#[derive(Serialize, Deserialize, Clone, PartialEq, Debug)]
pub(super) struct Manifest {
    pub(super) tensors: Vec<(String, Vec<usize>)>,
    pub(super) r: usize,
    pub(super) alpha: f64,
    pub(super) dropout: f64,
    pub(super) targets: Vec<String>,
    pub(super) base_config: String,
}

pub(super) fn manifest_of(adapter: &Adapter) -> Manifest {
    Manifest {
        tensors: adapter.tensors.iter().map(|(k, t)| (k.clone(), t.dims().to_vec())).collect(),
        r: adapter.spec.r,
        alpha: adapter.spec.alpha,
        dropout: adapter.spec.dropout,
        targets: adapter.spec.targets.clone(),
        base_config: adapter.base_config.clone(),
    }
}

pub(super) fn encode(value: f64) -> u64 {
    (value * 2f64.powi(FRAC_BITS)).round() as i64 as u64
}

pub(super) fn decode(word: u64) -> f64 {
    word as i64 as f64 / 2f64.powi(FRAC_BITS)
}

/// x_u: the weighted adapter w·θ, then w, as fixed-point words; refuses values that are not
/// finite or too large to sum without overflow.
pub(super) fn encode_input(adapter: &Adapter, weight: f64, adapter_dir: &Path) -> Result<Vec<u64>> {
    if !(weight.is_finite() && weight > 0.0 && weight <= LARGEST_MASKED_VALUE) {
        return Err(bad_usage(format!("--weight {weight}: must be a positive number up to 2^30")));
    }
    let mut words = Vec::new();
    for (key, tensor) in &adapter.tensors {
        for v in tensor.flatten_all()?.to_dtype(DType::F64)?.to_vec1::<f64>()? {
            let scaled = weight * v;
            if !(scaled.is_finite() && scaled.abs() <= LARGEST_MASKED_VALUE) {
                return Err(bad_input(
                    adapter_dir,
                    format!("'{key}' holds {v}, which cannot be masked (weight {weight})"),
                ));
            }
            words.push(encode(scaled));
        }
    }
    words.push(encode(weight));
    Ok(words)
}

pub(super) fn decode_average(words: &[u64], manifest: &Manifest, parties: usize, sum_path: &Path) -> Result<Adapter> {
    let total_weight = decode(*words.last().ok_or_else(|| bad_input(sum_path, "holds no words"))?);
    // Each survivor masked a weight in (0, 2^30]: any other total is a wrong reveal or sum.
    let largest = parties as f64 * LARGEST_MASKED_VALUE;
    if total_weight.is_nan() || total_weight <= 0.0 || total_weight > largest {
        return Err(bad_input(
            sum_path,
            format!(
                "the unmasked total weight {total_weight} is not within (0, {parties} · 2^30] (a wrong reveal or sum)"
            ),
        ));
    }
    let mut tensors = BTreeMap::new();
    let mut offset = 0;
    for (key, shape) in &manifest.tensors {
        let n: usize = shape.iter().product();
        let values: Vec<f32> = words[offset..offset + n].iter().map(|&w| (decode(w) / total_weight) as f32).collect();
        tensors.insert(key.clone(), Tensor::from_vec(values, shape.as_slice(), &Device::Cpu)?);
        offset += n;
    }
    let spec =
        LoraSpec { r: manifest.r, alpha: manifest.alpha, dropout: manifest.dropout, targets: manifest.targets.clone() };
    Ok(Adapter { spec, base_config: manifest.base_config.clone(), tensors })
}

/// Add `sign` · PRG(seed) to the words modulo 2^64.
pub(super) fn add_stream(words: &mut [u64], seed: &[u8; 32], sign: i8) {
    let stream = crypto::prg_words(seed, words.len());
    for (w, m) in words.iter_mut().zip(stream) {
        *w = if sign > 0 { w.wrapping_add(m) } else { w.wrapping_sub(m) };
    }
}

/// Δ_{u,v}: +1 when u > v, −1 when u < v (Figure 4), so p_{u,v} + p_{v,u} = 0.
pub(super) fn pair_sign(u: u32, v: u32) -> i8 {
    if u > v {
        1
    } else {
        -1
    }
}

pub(super) fn pair_seed(own_masking: &[u8; 32], other_masking: &[u8; 32], round: u64, u: u32, v: u32) -> [u8; 32] {
    let key = StaticSecret::from(*own_masking);
    crypto::agree(&key, &PublicKey::from(*other_masking), Purpose::PairMask, round, &[u.min(v), u.max(v)])
}

pub(super) fn self_seed(seed: &[u8; 32], round: u64, party: u32) -> [u8; 32] {
    crypto::derive(seed, Purpose::SelfMask, round, &[party])
}
