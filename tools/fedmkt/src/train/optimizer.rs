//! The optimiser and its schedule as the paper's Appendix D.1: AdamW (β 0.9/0.95, weight
//! decay 0.1, decoupled as in PyTorch), global gradient-norm clipping, linear warmup then
//! cosine decay to 0 (transformers' `cosine` schedule).
use anyhow::Result;
use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use candle_nn::ParamsAdamW;

/// AdamW exactly as candle and PyTorch define it (decoupled weight decay, bias-corrected
/// moments), with its moments exposed: a checkpoint must hold them, and candle's `AdamW`
/// keeps them private.
pub(super) struct AdamW {
    pub(super) vars: Vec<(String, Var)>,
    pub(super) m: Vec<Tensor>,
    pub(super) v: Vec<Tensor>,
    pub(super) t: i32,
    params: ParamsAdamW,
}

impl AdamW {
    pub(super) fn new(vars: &std::collections::BTreeMap<String, Var>, params: ParamsAdamW) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars.values().map(zeros).collect::<candle_core::Result<_>>()?;
        let v = vars.values().map(zeros).collect::<candle_core::Result<_>>()?;
        Ok(AdamW { vars: vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), m, v, t: 0, params })
    }

    pub(super) fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let p = &self.params;
        let (scale_m, scale_v) = (1.0 / (1.0 - p.beta1.powi(self.t)), 1.0 / (1.0 - p.beta2.powi(self.t)));
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            self.m[i] = ((&self.m[i] * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            self.v[i] = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&self.m[i] * scale_m)? / (((&self.v[i] * scale_v)?.sqrt()? + p.eps)?))?;
            var.set(&((var.as_tensor() * (1.0 - lr * p.weight_decay))? - (update * lr)?)?)?;
        }
        Ok(())
    }
}

/// transformers' `get_cosine_schedule_with_warmup`: linear warmup over
/// `ceil(warmup_ratio · total)` steps, then half a cosine down to 0. `step` counts from 0.
pub fn learning_rate(step: usize, total: usize, warmup_ratio: f64, base: f64) -> f64 {
    let warmup = (warmup_ratio * total as f64).ceil() as usize;
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// Sum of micro-batch gradients per variable (each loss already divided by the number of
/// micro-batches), then clipped to a global norm; returns the store and the norm before
/// clipping.
pub fn clipped_gradients(vars: &[Var], parts: Vec<GradStore>, max_norm: f64) -> Result<(GradStore, f64)> {
    let mut parts = parts.into_iter();
    let mut store = parts.next().expect("at least one micro-batch");
    for part in parts {
        for var in vars {
            if let Some(g) = part.get(var.as_tensor()) {
                let sum = match store.get(var.as_tensor()) {
                    Some(acc) => (acc + g)?,
                    None => g.clone(),
                };
                store.insert(var.as_tensor(), sum);
            }
        }
    }
    let mut squares = 0.0;
    for var in vars {
        if let Some(g) = store.get(var.as_tensor()) {
            squares += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
    }
    let norm = squares.sqrt();
    if norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for var in vars {
            if let Some(g) = store.get(var.as_tensor()) {
                let scaled = (g * factor)?;
                store.insert(var.as_tensor(), scaled);
            }
        }
    }
    Ok((store, norm))
}
