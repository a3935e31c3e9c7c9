//! `aggregate`: FedAvg of LoRA adapters (the homogeneous baselines and FedCoLLM).
//!
//! Where we differ from the authors' code: adapters are weighted by their parties' private
//! sample counts (FedAvg as McMahan et al. define it); the reference weights them equally.
//! As in the reference and in FedCoLLM, A and B are averaged separately (the average of
//! the products B·A is not the product of the averages; that is FedAvg-on-LoRA's rule).
use std::path::Path;

use anyhow::Result;
use candle_core::DType;

use crate::cli::{bad_input, bad_usage};
use crate::io;
use crate::model::lora::{read_adapter, save_adapter, Adapter, ADAPTER_CONFIG, ADAPTER_WEIGHTS};
use crate::output::{self, Kind};
use crate::train::log::{TRAINING_LOG, TRAINING_LOG_FORMAT};

/// A party's weight: `fedmkt.samples` of the training log `distill` wrote beside its adapter.
pub fn recorded_samples(dir: &Path) -> Result<f64> {
    let log = dir.join(TRAINING_LOG);
    let table = io::read_parquet(&log, TRAINING_LOG_FORMAT)?;
    table
        .provenance
        .extra
        .get("samples")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|&n| n.is_finite() && n >= 1.0)
        .ok_or_else(|| bad_input(&log, "no count of at least 1 in fedmkt.samples (pass --weights)"))
}

/// Refuse an adapter that cannot be averaged with the first.
fn check_compatible(first: &Adapter, dir: &Path, other: &Adapter) -> Result<()> {
    let config = dir.join(ADAPTER_CONFIG);
    if other.base_config != first.base_config {
        return Err(bad_input(&config, "adapter for another base model (fedmkt_base_config differs)"));
    }
    if (other.spec.r, other.spec.alpha, &other.spec.targets) != (first.spec.r, first.spec.alpha, &first.spec.targets) {
        return Err(bad_input(
            &config,
            format!(
                "rank/alpha/targets {}/{}/{:?} differ from the first adapter's {}/{}/{:?}",
                other.spec.r, other.spec.alpha, other.spec.targets, first.spec.r, first.spec.alpha, first.spec.targets
            ),
        ));
    }
    for (key, tensor) in &first.tensors {
        let theirs = other
            .tensors
            .get(key)
            .ok_or_else(|| bad_input(&dir.join(ADAPTER_WEIGHTS), format!("has no tensor '{key}'")))?;
        if theirs.dims() != tensor.dims() {
            return Err(bad_input(
                &dir.join(ADAPTER_WEIGHTS),
                format!("'{key}' has shape {:?}, the first adapter {:?}", theirs.dims(), tensor.dims()),
            ));
        }
    }
    if other.tensors.len() != first.tensors.len() {
        return Err(bad_input(&dir.join(ADAPTER_WEIGHTS), "holds tensors the first adapter lacks"));
    }
    Ok(())
}

/// Weighted average of adapters: Σ wᵢ·θᵢ / Σ wᵢ per tensor, accumulated in f64. The weights
/// are first divided by the largest, so that neither their sum overflows (1e308 twice) nor
/// their products underflow (5e-324 twice): only their ratios matter.
pub fn weighted_average(adapters: &[Adapter], weights: &[f64]) -> Result<Adapter> {
    let largest = weights.iter().copied().fold(0.0, f64::max);
    let weights: Vec<f64> = weights.iter().map(|w| w / largest).collect();
    let total: f64 = weights.iter().sum();
    let mut average = adapters[0].clone();
    for (key, tensor) in average.tensors.iter_mut() {
        let mut sum = (adapters[0].tensors[key].to_dtype(DType::F64)? * weights[0])?;
        for (adapter, &w) in adapters.iter().zip(&weights).skip(1) {
            sum = (sum + (adapter.tensors[key].to_dtype(DType::F64)? * w)?)?;
        }
        *tensor = (sum / total)?.to_dtype(DType::F32)?;
    }
    Ok(average)
}

/// `aggregate average`: FedAvg of `dirs` into `out`, weights given or read from each
/// adapter's training log.
pub fn average(dirs: &[&Path], weights: Option<&[f64]>, out: &Path) -> Result<()> {
    if dirs.is_empty()
        || weights.is_some_and(|w| w.len() != dirs.len() || w.iter().any(|&x| !(x.is_finite() && x > 0.0)))
    {
        return Err(bad_usage(format!(
            "--weights {:?}: give one finite positive weight per adapter ({} adapters)",
            weights.unwrap_or_default(),
            dirs.len()
        )));
    }
    crate::cli::refuse_repeated("--adapters", dirs, crate::cli::path_key)?;
    output::claim(&[(out, Kind::Adapter)], dirs)?;
    let adapters: Vec<Adapter> = dirs.iter().map(|d| read_adapter(d)).collect::<Result<_>>()?;
    for (dir, adapter) in dirs.iter().zip(&adapters).skip(1) {
        check_compatible(&adapters[0], dir, adapter)?;
    }
    let weights: Vec<f64> = match weights {
        Some(w) => w.to_vec(),
        None => dirs.iter().map(|d| recorded_samples(d)).collect::<Result<_>>()?,
    };
    let name = dirs[0].file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    save_adapter(out, &weighted_average(&adapters, &weights)?, &name)?;
    eprintln!("aggregate: {} adapters, weights {weights:?} -> {}", adapters.len(), out.display());
    Ok(())
}
