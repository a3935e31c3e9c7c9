//! Building blocks shared by the architectures, differentiable wherever gradients flow.
//!
//! candle's fused kernels (`softmax_last_dim`, `rms_norm`, `rope`, …) have no backward pass:
//! gradients upstream of them silently vanish. Where a gradient flows on the CPU, our own
//! fused kernels with backward passes serve ([`super::cpu::fused`]); elsewhere these compose plain
//! tensor ops. For inference on the CPU the fused softmax and RMS norm were measured no faster
//! than the composed ops; the fused rotary embedding is (see [`apply_rotary`]).
use anyhow::Result;
use candle_core::{DType, Device, Tensor, D};

use super::cpu::{fused, heads};

/// RMS norm in f32: `x / sqrt(mean(x²) + eps) · scale`, with `scale` = `w` (llama) or
/// `1 + w` (Gemma, folded into the weight at load time).
pub fn rms_norm(x: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    if fused::cpu_training(x) {
        return Ok(fused::rms_norm(x, scale, eps)?);
    }
    rms_norm_composed(x, scale, eps)
}

/// [`rms_norm`] from plain tensor ops.
pub(crate) fn rms_norm_composed(x: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let mean_sq = x.sqr()?.mean_keepdim(D::Minus1)?;
    let normed = x.broadcast_div(&(mean_sq + eps)?.sqrt()?)?;
    Ok(normed.broadcast_mul(&scale.to_dtype(DType::F32)?)?.to_dtype(dtype)?)
}

/// An RMS norm's weight, with Gemma's `1 + w` applied once at load time.
#[derive(Debug, Clone)]
pub struct RmsNorm {
    pub scale: Tensor,
    pub eps: f64,
}

impl RmsNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        rms_norm(x, &self.scale, self.eps)
    }
}

/// LayerNorm with a bias (GPT-2, OPT, Bloom) in f32: `(x − mean)/sqrt(var + eps)·w + b`, from
/// plain tensor ops (candle's fused layer norm has no backward pass).
#[derive(Debug, Clone)]
pub struct LayerNorm {
    pub weight: Tensor,
    pub bias: Tensor,
    pub eps: f64,
}

impl LayerNorm {
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dtype = x.dtype();
        let x = x.to_dtype(DType::F32)?;
        let centered = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        let variance = centered.sqr()?.mean_keepdim(D::Minus1)?;
        let normed = centered.broadcast_div(&(variance + self.eps)?.sqrt()?)?;
        Ok(normed.broadcast_mul(&self.weight)?.broadcast_add(&self.bias)?.to_dtype(dtype)?)
    }
}

/// Rotary tables `(cos, sin)` of shape `[seq_len, head_dim/2]` for a base frequency.
pub fn rotary_tables(base: f64, head_dim: usize, seq_len: usize, device: &Device) -> Result<(Tensor, Tensor)> {
    let inv_freq: Vec<f32> =
        (0..head_dim / 2).map(|i| (1.0 / base.powf(2.0 * i as f64 / head_dim as f64)) as f32).collect();
    let inv_freq = Tensor::from_vec(inv_freq, (1, head_dim / 2), device)?;
    let positions = Tensor::arange(0u32, seq_len as u32, device)?.to_dtype(DType::F32)?.reshape((seq_len, 1))?;
    let angles = positions.broadcast_mul(&inv_freq)?;
    Ok((angles.cos()?, angles.sin()?))
}

/// Rotary embedding in Hugging Face's rotate-half layout on `[batch, heads, seq, head_dim]`.
/// `training` selects the differentiable composition; inference uses candle's fused kernel
/// (no backward pass, 5.6× faster on CPU for SmolLM2's shapes).
pub fn apply_rotary(x: &Tensor, cos: &Tensor, sin: &Tensor, training: bool) -> Result<Tensor> {
    let dtype = x.dtype();
    let x = x.to_dtype(DType::F32)?;
    let y = if training && fused::cpu_training(&x) {
        fused::rope(&x, cos, sin)?
    } else if training {
        candle_nn::rotary_emb::rope_slow(&x, cos, sin)?
    } else {
        candle_nn::rotary_emb::rope(&x.contiguous()?, cos, sin)?
    };
    Ok(y.to_dtype(dtype)?)
}

/// Additive attention mask `[seq, seq]`: 0 where query `i` may see key `j` (causal, and
/// within `window` positions when given), −∞ elsewhere. Right padding needs nothing more:
/// real tokens never see the pads that follow them.
pub fn attention_mask(seq_len: usize, window: Option<usize>, device: &Device) -> Result<Tensor> {
    let mask: Vec<f32> = (0..seq_len)
        .flat_map(|i| (0..seq_len).map(move |j| (i, j)))
        .map(|(i, j)| {
            let visible = j <= i && window.is_none_or(|w| i - j < w);
            if visible {
                0.0
            } else {
                f32::NEG_INFINITY
            }
        })
        .collect();
    Ok(Tensor::from_vec(mask, (seq_len, seq_len), device)?)
}

/// Scaled dot-product attention over `[batch, heads, seq, head_dim]` queries and
/// `[batch, kv_heads, seq, head_dim]` keys/values (grouped-query attention repeats each KV
/// head for `heads / kv_heads` query heads). Softmax in f32.
pub fn attention(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let on_cpu_in_f32 = [q, k, v].iter().all(|x| x.device().is_cpu() && x.dtype() == DType::F32);
    if on_cpu_in_f32 {
        // The per-head products with heads in parallel and key/value heads shared (the same
        // gemm calls candle's batched matmul makes, one head after another, on copies). In
        // training with a `[seq, seq]` mask the fused softmax and its backward pass between
        // them; otherwise (inferring, a pass after a cached prefix, ALiBi) the composition's.
        let scores = heads::matmul(q, k, true)?;
        let training = mask.rank() == 2 && [q, k, v].iter().any(|x| x.track_op());
        let probs =
            if training { fused::masked_softmax(&scores, mask, scale)? } else { masked_probs(&scores, mask, scale)? };
        return Ok(heads::matmul(&probs, v, false)?);
    }
    attention_composed(q, k, v, mask, scale)
}

/// [`attention`] from plain tensor ops.
pub(crate) fn attention_composed(q: &Tensor, k: &Tensor, v: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let (b, heads, t, d) = q.dims4()?;
    let kv_heads = k.dim(1)?;
    let (k, v) = (repeat_kv(k, heads / kv_heads)?, repeat_kv(v, heads / kv_heads)?);
    let scores = q.to_dtype(DType::F32)?.matmul(&k.to_dtype(DType::F32)?.t()?)?;
    let probs = masked_probs(&scores, mask, scale)?;
    let out = probs.to_dtype(v.dtype())?.matmul(&v.contiguous()?)?;
    debug_assert_eq!(out.dims(), &[b, heads, t, d]);
    Ok(out)
}

/// `softmax(scores·scale + mask)` over the keys, from candle's ops.
fn masked_probs(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    Ok(candle_nn::ops::softmax(&(scores * scale)?.broadcast_add(mask)?, D::Minus1)?)
}

fn repeat_kv(x: &Tensor, times: usize) -> Result<Tensor> {
    if times == 1 {
        return Ok(x.clone());
    }
    let (b, kv_heads, t, d) = x.dims4()?;
    Ok(x.unsqueeze(2)?.expand((b, kv_heads, times, t, d))?.reshape((b, kv_heads * times, t, d))?)
}
