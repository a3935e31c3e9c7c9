//! Fused CPU kernels with backward passes, for training on the CPU.
//!
//! candle's own fused kernels (`rms_norm`, `softmax_last_dim`, `rope`) have no backward pass,
//! and composing plain ops instead costs, per op, a pass over memory, an allocation and a
//! backward node — plus a gradient for the constant operand (norm weight, rotary tables,
//! attention mask) that nothing uses. Each op here does its forward in one pass (rows in
//! parallel) and returns only the gradients of its activations, never of a constant. The
//! matrix products of training live beside these: `frozen.rs` (linear layers, LoRA) and
//! `heads.rs` (attention). The maths is that of the composed
//! versions in `layers.rs`, which serve other devices and inference, and which the tests below
//! check these against.
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

/// Whether `x` is a training activation (it tracks gradients) in f32 on the CPU: what the
/// kernels here take.
pub fn cpu_training(x: &Tensor) -> bool {
    x.track_op() && cpu_f32(x)
}

/// Whether `x` is f32 on the CPU: what the kernels' forward passes take, training or not.
pub fn cpu_f32(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == DType::F32
}

/// The f32 values of a contiguous CPU input.
pub(super) fn values<'a>(storage: &'a CpuStorage, layout: &Layout, op: &str) -> Result<&'a [f32]> {
    let (start, end) =
        layout.contiguous_offsets().ok_or_else(|| candle_core::Error::Msg(format!("{op}: non-contiguous input")))?;
    Ok(&storage.as_slice::<f32>()?[start..end])
}

/// `f(row index, input row, output row)` over the rows of `width` values of `x`, in parallel.
fn map_rows(x: &[f32], width: usize, f: impl Fn(usize, &[f32], &mut [f32]) + Sync) -> CpuStorage {
    let mut y = vec![0f32; x.len()];
    y.par_chunks_mut(width).zip(x.par_chunks(width)).enumerate().for_each(|(row, (y, x))| f(row, x, y));
    CpuStorage::F32(y)
}

/// `f(row of a, row of b, output row)` over the paired rows of `width` values, in parallel.
fn map_row_pairs(a: &[f32], b: &[f32], width: usize, f: impl Fn(&[f32], &[f32], &mut [f32]) + Sync) -> CpuStorage {
    let mut y = vec![0f32; a.len()];
    y.par_chunks_mut(width).zip(a.par_chunks(width)).zip(b.par_chunks(width)).for_each(|((y, a), b)| f(a, b, y));
    CpuStorage::F32(y)
}

/// A small constant operand (weight, table, mask) as owned f32 values.
fn constant(t: &Tensor) -> Result<Arc<[f32]>> {
    Ok(t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?.into())
}

/// `1 / sqrt(mean(x²) + eps)` of one row.
fn inv_rms(row: &[f32], eps: f32) -> f32 {
    (row.iter().map(|v| v * v).sum::<f32>() / row.len() as f32 + eps).sqrt().recip()
}

/// RMS norm over the last dimension: `y = x · r · w` with `r = 1/sqrt(mean(x²) + eps)`.
struct RmsNormOp {
    scale: Arc<[f32]>,
    eps: f32,
}

impl CustomOp1 for RmsNormOp {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Elementwise, || {
            let x = values(storage, layout, self.name())?;
            let y = map_rows(x, self.scale.len(), |_, x, y| {
                let r = inv_rms(x, self.eps);
                for ((y, x), w) in y.iter_mut().zip(x).zip(self.scale.iter()) {
                    *y = x * r * w;
                }
            });
            Ok((y, layout.shape().clone()))
        })
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        let backward = RmsNormBackward { scale: self.scale.clone(), eps: self.eps };
        Ok(Some(x.apply_op2_no_bwd(&grad_y.contiguous()?, &backward)?))
    }
}

/// `∂x = r·u − x·r³·mean(u·x)` with `u = ∂y·w`, from `x` and `∂y`.
struct RmsNormBackward {
    scale: Arc<[f32]>,
    eps: f32,
}

impl CustomOp2 for RmsNormBackward {
    fn name(&self) -> &'static str {
        "fused-rms-norm-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        x_layout: &Layout,
        gs: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Elementwise, || {
            let (x, g) = (values(xs, x_layout, self.name())?, values(gs, g_layout, self.name())?);
            let d = self.scale.len();
            let dx = map_row_pairs(x, g, d, |x, g, dx| {
                let r = inv_rms(x, self.eps);
                let mean_ux =
                    x.iter().zip(g).zip(self.scale.iter()).map(|((x, g), w)| g * w * x).sum::<f32>() / d as f32;
                for (((dx, x), g), w) in dx.iter_mut().zip(x).zip(g).zip(self.scale.iter()) {
                    *dx = r * g * w - x * r * r * r * mean_ux;
                }
            });
            Ok((dx, x_layout.shape().clone()))
        })
    }
}

/// Fused RMS norm of f32 `x` (any leading shape) with weight `scale` `[hidden]`.
pub fn rms_norm(x: &Tensor, scale: &Tensor, eps: f64) -> Result<Tensor> {
    x.contiguous()?.apply_op1(RmsNormOp { scale: constant(scale)?, eps: eps as f32 })
}

/// `softmax(x·scale + mask)` over the last dimension of attention scores `[…, seq, seq]`,
/// the `[seq, seq]` additive mask picked by each row's query position.
struct MaskedSoftmax {
    mask: Arc<[f32]>,
    seq: usize,
    scale: f32,
}

impl CustomOp1 for MaskedSoftmax {
    fn name(&self) -> &'static str {
        "fused-masked-softmax"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Attention, || {
            let x = values(storage, layout, self.name())?;
            let seq = self.seq;
            let y = map_rows(x, seq, |row, x, y| {
                let mask = &self.mask[(row % seq) * seq..][..seq];
                for ((y, x), m) in y.iter_mut().zip(x).zip(mask) {
                    *y = x * self.scale + m;
                }
                let max = y.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                y.iter_mut().for_each(|v| *v = (*v - max).exp());
                let sum: f32 = y.iter().sum();
                y.iter_mut().for_each(|v| *v /= sum);
            });
            Ok((y, layout.shape().clone()))
        })
    }

    fn bwd(&self, _x: &Tensor, y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(y.apply_op2_no_bwd(&grad_y.contiguous()?, &SoftmaxBackward { seq: self.seq, scale: self.scale })?))
    }
}

/// `∂x = scale · y · (∂y − Σ ∂y·y)` per row, from `y` and `∂y`.
struct SoftmaxBackward {
    seq: usize,
    scale: f32,
}

impl CustomOp2 for SoftmaxBackward {
    fn name(&self) -> &'static str {
        "fused-masked-softmax-backward"
    }

    fn cpu_fwd(
        &self,
        ys: &CpuStorage,
        y_layout: &Layout,
        gs: &CpuStorage,
        g_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Attention, || {
            let (y, g) = (values(ys, y_layout, self.name())?, values(gs, g_layout, self.name())?);
            let dx = map_row_pairs(y, g, self.seq, |y, g, dx| {
                let dot: f32 = y.iter().zip(g).map(|(y, g)| y * g).sum();
                for ((dx, y), g) in dx.iter_mut().zip(y).zip(g) {
                    *dx = self.scale * y * (g - dot);
                }
            });
            Ok((dx, y_layout.shape().clone()))
        })
    }
}

/// Attention probabilities of f32 scores `[batch, heads, seq, seq]`: `softmax(scores·scale + mask)`.
pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
    let seq = mask.dim(0)?;
    scores.contiguous()?.apply_op1(MaskedSoftmax { mask: constant(mask)?, seq, scale: scale as f32 })
}

/// Rotary embedding (rotate-half layout) of `[batch, heads, seq, head_dim]` with tables
/// `[seq, head_dim/2]`. Rotation by −θ undoes it, so the backward pass is the same kernel
/// with `sin` negated.
struct Rope {
    cos: Arc<[f32]>,
    sin: Arc<[f32]>,
    /// −1 for the backward pass (rotation by −θ).
    sin_sign: f32,
}

impl CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Elementwise, || {
            let x = values(storage, layout, self.name())?;
            let (_, _, seq, head_dim) = layout.shape().dims4()?;
            let half = head_dim / 2;
            let y = map_rows(x, head_dim, |row, x, y| {
                let at = (row % seq) * half;
                let (cos, sin) = (&self.cos[at..at + half], &self.sin[at..at + half]);
                for i in 0..half {
                    let (a, b, s) = (x[i], x[i + half], self.sin_sign * sin[i]);
                    y[i] = a * cos[i] - b * s;
                    y[i + half] = b * cos[i] + a * s;
                }
            });
            Ok((y, layout.shape().clone()))
        })
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        let inverse = Rope { cos: self.cos.clone(), sin: self.sin.clone(), sin_sign: -self.sin_sign };
        Ok(Some(grad_y.contiguous()?.apply_op1_no_bwd(&inverse)?))
    }
}

/// Fused rotary embedding of f32 `x` `[batch, heads, seq, head_dim]`.
pub fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Rope { cos: constant(cos)?, sin: constant(sin)?, sin_sign: 1.0 })
}

/// sqrt(2/π), of GELU's tanh approximation.
const GELU_C: f32 = 0.797_884_6;

/// An MLP's activation: SiLU (llama's gate), GELU's tanh approximation (Gemma's gate, GPT-2's
/// `gelu_new`, Bloom), ReLU (OPT).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Silu,
    GeluTanh,
    Relu,
}

impl Activation {
    /// The activation from plain tensor ops (any device and dtype).
    pub fn apply(self, x: &Tensor) -> Result<Tensor> {
        match self {
            Activation::Silu => x.silu(),
            Activation::GeluTanh => x.gelu(),
            Activation::Relu => x.relu(),
        }
    }

    /// `f(v)`.
    fn value(self, v: f32) -> f32 {
        match self {
            Activation::Silu => v / (1.0 + (-v).exp()),
            // 0.5·v·(1 + tanh z) = v·sigmoid(2z): one exp instead of a tanh (a third of the time).
            Activation::GeluTanh => v / (1.0 + (-2.0 * GELU_C * v * (1.0 + 0.044715 * v * v)).exp()),
            Activation::Relu => v.max(0.0),
        }
    }

    /// `f(v)` and `f'(v)`.
    fn value_and_slope(self, v: f32) -> (f32, f32) {
        match self {
            Activation::Silu => {
                let sigmoid = 1.0 / (1.0 + (-v).exp());
                (v * sigmoid, sigmoid * (1.0 + v * (1.0 - sigmoid)))
            }
            Activation::GeluTanh => {
                let t = (GELU_C * v * (1.0 + 0.044715 * v * v)).tanh();
                (
                    0.5 * v * (1.0 + t),
                    0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * GELU_C * (1.0 + 3.0 * 0.044715 * v * v),
                )
            }
            Activation::Relu => (v.max(0.0), if v > 0.0 { 1.0 } else { 0.0 }),
        }
    }
}

/// `f(gate) · up`, the gated MLP's middle, in one pass (composed: an activation, a product,
/// and in the backward pass about a dozen elementwise ops over the MLP's widest tensors).
struct Gated(Activation);

impl CustomOp2 for Gated {
    fn name(&self) -> &'static str {
        "fused-gated-activation"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        g_layout: &Layout,
        us: &CpuStorage,
        u_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Elementwise, || {
            let (gate, up) = (values(gs, g_layout, self.name())?, values(us, u_layout, self.name())?);
            let width = *g_layout.dims().last().unwrap_or(&1);
            let y = map_row_pairs(gate, up, width, |gate, up, y| {
                for ((y, g), u) in y.iter_mut().zip(gate).zip(up) {
                    *y = self.0.value(*g) * u;
                }
            });
            Ok((y, g_layout.shape().clone()))
        })
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let stacked = gate.apply_op3_no_bwd(up, &grad_y.contiguous()?, &GatedBackward(self.0))?;
        Ok((Some(stacked.get(0)?), Some(stacked.get(1)?)))
    }
}

/// `[∂gate, ∂up]` stacked, from `gate`, `up` and `∂y`: `∂gate = ∂y·up·f'(gate)`, `∂up = ∂y·f(gate)`.
struct GatedBackward(Activation);

impl CustomOp3 for GatedBackward {
    fn name(&self) -> &'static str {
        "fused-gated-activation-backward"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        g_layout: &Layout,
        us: &CpuStorage,
        u_layout: &Layout,
        dys: &CpuStorage,
        dy_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Elementwise, || {
            let name = self.name();
            let (gate, up, dy) =
                (values(gs, g_layout, name)?, values(us, u_layout, name)?, values(dys, dy_layout, name)?);
            let width = *g_layout.dims().last().unwrap_or(&1);
            let mut grads = vec![0f32; 2 * gate.len()];
            let (d_gate, d_up) = grads.split_at_mut(gate.len());
            let inputs = gate.par_chunks(width).zip(up.par_chunks(width)).zip(dy.par_chunks(width));
            d_gate.par_chunks_mut(width).zip(d_up.par_chunks_mut(width)).zip(inputs).for_each(
                |((d_gate, d_up), ((gate, up), dy))| {
                    for i in 0..gate.len() {
                        let (f, slope) = self.0.value_and_slope(gate[i]);
                        d_gate[i] = dy[i] * up[i] * slope;
                        d_up[i] = dy[i] * f;
                    }
                },
            );
            let mut dims = vec![2];
            dims.extend_from_slice(g_layout.dims());
            Ok((CpuStorage::F32(grads), Shape::from(dims)))
        })
    }
}

/// `f(gate) · up` of f32 tensors of one shape.
pub fn gated(gate: &Tensor, up: &Tensor, activation: Activation) -> Result<Tensor> {
    gate.contiguous()?.apply_op2(&up.contiguous()?, Gated(activation))
}

/// `f(x)` elementwise in one parallel pass (a plain MLP's middle); backward `∂x = ∂y·f'(x)`.
struct Activate(Activation);

impl CustomOp1 for Activate {
    fn name(&self) -> &'static str {
        "fused-activation"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Elementwise, || {
            let x = values(storage, layout, self.name())?;
            let width = *layout.dims().last().unwrap_or(&1);
            let y = map_rows(x, width, |_, x, y| y.iter_mut().zip(x).for_each(|(y, x)| *y = self.0.value(*x)));
            Ok((y, layout.shape().clone()))
        })
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&grad_y.contiguous()?, &ActivateBackward(self.0))?))
    }
}

/// `∂x = ∂y·f'(x)` from `x` and `∂y`.
struct ActivateBackward(Activation);

impl CustomOp2 for ActivateBackward {
    fn name(&self) -> &'static str {
        "fused-activation-backward"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        x_layout: &Layout,
        dys: &CpuStorage,
        dy_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Elementwise, || {
            let (x, dy) = (values(xs, x_layout, self.name())?, values(dys, dy_layout, self.name())?);
            let width = *x_layout.dims().last().unwrap_or(&1);
            let dx = map_row_pairs(x, dy, width, |x, dy, dx| {
                for i in 0..x.len() {
                    dx[i] = dy[i] * self.0.value_and_slope(x[i]).1;
                }
            });
            Ok((dx, x_layout.shape().clone()))
        })
    }
}

/// `f(x)` of an f32 tensor.
pub fn activate(x: &Tensor, activation: Activation) -> Result<Tensor> {
    x.contiguous()?.apply_op1(Activate(activation))
}

#[cfg(test)]
pub(super) mod tests {
    use candle_core::{Device, Var, D};
    use rand::{Rng, SeedableRng};

    use super::*;
    use crate::model::layers;

    pub(in crate::model) fn random(shape: &[usize], seed: u64) -> Tensor {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = shape.iter().product();
        Tensor::from_vec((0..n).map(|_| rng.random_range(-2.0f32..2.0)).collect::<Vec<_>>(), shape, &Device::Cpu)
            .unwrap()
    }

    /// Output and input gradient of `f` at `x`, through a random linear read-out of the output
    /// (so every output element gets a different upstream gradient).
    fn value_and_grad(x: &Tensor, f: impl Fn(&Tensor) -> anyhow::Result<Tensor>) -> (Vec<f32>, Vec<f32>) {
        let var = Var::from_tensor(x).unwrap();
        let y = f(var.as_tensor()).unwrap();
        let readout = random(y.dims(), 99);
        let grads = (&y * readout).unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        (flat(&y), flat(grads.get(var.as_tensor()).unwrap()))
    }

    pub(in crate::model) fn assert_close(ours: &[f32], reference: &[f32], what: &str) {
        assert_eq!(ours.len(), reference.len(), "{what}: lengths");
        for (i, (a, b)) in ours.iter().zip(reference).enumerate() {
            assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{what}[{i}]: fused {a} vs composed {b}");
        }
    }

    fn assert_same_as_composed(
        x: &Tensor,
        fused: impl Fn(&Tensor) -> anyhow::Result<Tensor>,
        composed: impl Fn(&Tensor) -> anyhow::Result<Tensor>,
    ) {
        let (y, dx) = value_and_grad(x, fused);
        let (y_ref, dx_ref) = value_and_grad(x, composed);
        assert_close(&y, &y_ref, "output");
        assert_close(&dx, &dx_ref, "input gradient");
        assert!(dx.iter().any(|v| v.abs() > 1e-3), "the gradient must not vanish");
    }

    #[test]
    fn rms_norm_matches_composed_ops() {
        let (x, scale) = (random(&[2, 5, 16], 1), random(&[16], 2));
        assert_same_as_composed(&x, |x| Ok(rms_norm(x, &scale, 1e-6)?), |x| layers::rms_norm_composed(x, &scale, 1e-6));
    }

    #[test]
    fn masked_softmax_matches_composed_ops() {
        let scores = random(&[2, 3, 6, 6], 3);
        let mask = layers::attention_mask(6, Some(4), &Device::Cpu).unwrap();
        let composed = |s: &Tensor| Ok(candle_nn::ops::softmax(&(s * 0.125)?.broadcast_add(&mask)?, D::Minus1)?);
        assert_same_as_composed(&scores, |s| Ok(masked_softmax(s, &mask, 0.125)?), composed);
    }

    #[test]
    fn rope_matches_composed_ops() {
        let x = random(&[2, 3, 5, 8], 4);
        let (cos, sin) = layers::rotary_tables(10_000.0, 8, 5, &Device::Cpu).unwrap();
        assert_same_as_composed(
            &x,
            |x| Ok(rope(x, &cos, &sin)?),
            |x| Ok(candle_nn::rotary_emb::rope_slow(x, &cos, &sin)?),
        );
    }

    #[test]
    fn activations_match_composed_ops() {
        for activation in [Activation::Silu, Activation::GeluTanh, Activation::Relu] {
            assert_same_as_composed(
                &random(&[2, 5, 16], 7),
                |x| Ok(activate(x, activation)?),
                |x| Ok(activation.apply(x)?),
            );
        }
    }

    #[test]
    fn gated_activations_match_composed_ops() {
        let up = Var::from_tensor(&random(&[2, 5, 16], 5)).unwrap();
        for activation in [Activation::Silu, Activation::GeluTanh, Activation::Relu] {
            let composed = |g: &Tensor| Ok((activation.apply(g)? * up.as_tensor())?);
            assert_same_as_composed(&random(&[2, 5, 16], 6), |g| Ok(gated(g, up.as_tensor(), activation)?), composed);
            let gate = random(&[2, 5, 16], 6);
            let composed = |u: &Tensor| Ok((activation.apply(&gate)? * u)?);
            assert_same_as_composed(up.as_tensor(), |u| Ok(gated(&gate, u, activation)?), composed);
        }
    }
}
