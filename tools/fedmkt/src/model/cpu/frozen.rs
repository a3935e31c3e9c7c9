//! Linear layers over a frozen base weight, for training on the CPU: `x·Wᵀ` and, with a LoRA
//! adapter, `x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ`, each one graph node calling gemm directly.
//!
//! Composed from candle ops, a LoRA layer is five nodes (frozen product, two low-rank
//! products, a scale, an add), and candle's backward gives every operand of every node a
//! zero-filled gradient it then adds into; its matmul also computes the frozen weight's
//! gradient, which nothing uses, and zero-fills outputs gemm overwrites anyway. Here the
//! low-rank product accumulates into the frozen product in place, forward and backward, and
//! the backward pass returns only what trains: ∂x, ∂A, ∂B. The composed version
//! (`lora::Linear::forward` off the CPU or outside f32) is what the tests compare against.
use candle_core::{CpuStorage, CustomOp1, CustomOp2, CustomOp3, Layout, Result, Shape, Tensor};

use super::fused::values;
use super::gemm::{gemm_into, product, with_values, MatRef};

/// `x·Wᵀ` (`transposed`) or `x·W` for the frozen weight W `[out, in]`. The backward pass of
/// the first is the second, and returns only `∂x`.
#[derive(Clone)]
struct FrozenMatmul {
    weight: Tensor,
    transposed: bool,
}

impl FrozenMatmul {
    fn weight_ref<'a>(&self, w: &'a [f32]) -> Result<MatRef<'a>> {
        let (out, inp) = self.weight.dims2()?;
        let w = MatRef::new(w, out, inp)?;
        Ok(if self.transposed { w.t() } else { w })
    }
}

impl CustomOp1 for FrozenMatmul {
    fn name(&self) -> &'static str {
        "frozen-matmul"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Matmul, || {
            let (rows, inner) = layout.shape().dims2()?;
            let x = MatRef::new(values(storage, layout, self.name())?, rows, inner)?;
            with_values(&self.weight, |w| {
                let w = self.weight_ref(w)?;
                Ok((CpuStorage::F32(product(x, w, 1.0)), Shape::from((rows, w.cols))))
            })
        })
    }

    fn bwd(&self, _x: &Tensor, _y: &Tensor, grad_y: &Tensor) -> Result<Option<Tensor>> {
        let backward = FrozenMatmul { weight: self.weight.clone(), transposed: !self.transposed };
        Ok(Some(grad_y.contiguous()?.apply_op1_no_bwd(&backward)?))
    }
}

/// `x·Wᵀ` of `x` `[rows, in]` for a frozen f32 weight `[out, in]` on the CPU.
pub fn matmul(x: &Tensor, weight: &Tensor) -> Result<Tensor> {
    x.contiguous()?.apply_op1(FrozenMatmul { weight: weight.clone(), transposed: true })
}

/// `x·Wᵀ + scale·(x·mask)·Aᵀ·Bᵀ` of `(x, A, B)`: a LoRA layer over the frozen weight W.
struct LoraMatmul {
    weight: Tensor,
    scale: f32,
    /// LoRA dropout's mask for this call (zeros and 1/(1 − rate)), shaped like `x`.
    mask: Option<Tensor>,
}

impl LoraMatmul {
    fn frozen(&self, transposed: bool) -> FrozenMatmul {
        FrozenMatmul { weight: self.weight.clone(), transposed }
    }

    /// `x` as the adapter sees it: after dropout.
    fn dropped(&self, x: &Tensor) -> Result<Tensor> {
        let x = x.detach();
        match &self.mask {
            Some(mask) => x * mask,
            None => Ok(x),
        }
    }
}

impl CustomOp3 for LoraMatmul {
    fn name(&self) -> &'static str {
        "lora-matmul"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        x_layout: &Layout,
        a_s: &CpuStorage,
        a_layout: &Layout,
        b_s: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Matmul, || {
            let (frozen, shape) = self.frozen(true).cpu_fwd(xs, x_layout)?;
            let CpuStorage::F32(mut y) = frozen else { unreachable!("frozen-matmul returns f32") };
            let (rows, inner) = x_layout.shape().dims2()?;
            let (r, out) = (a_layout.shape().dims2()?.0, shape.dims2()?.1);
            let (a, b) = (
                MatRef::new(values(a_s, a_layout, self.name())?, r, inner)?,
                MatRef::new(values(b_s, b_layout, self.name())?, out, r)?,
            );
            let x = values(xs, x_layout, self.name())?;
            let dropped = self
                .mask
                .as_ref()
                .map(|mask| with_values(mask, |m| Ok(x.iter().zip(m).map(|(x, m)| x * m).collect::<Vec<f32>>())))
                .transpose()?;
            let x = MatRef::new(dropped.as_deref().unwrap_or(x), rows, inner)?;
            let low = product(x, a.t(), self.scale);
            // SAFETY: y holds rows × out initialised values.
            unsafe { gemm_into(y.as_mut_ptr(), MatRef::new(&low, rows, r)?, b.t(), 1.0, true) };
            Ok((CpuStorage::F32(y), shape))
        })
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _y: &Tensor,
        grad_y: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (a, b, g) = (a.detach(), b.detach(), grad_y.contiguous()?);
        let x_dropped = self.dropped(x)?;
        let g_b = (g.matmul(&b)? * self.scale as f64)?; // [rows, r]
        let grad_a = g_b.t()?.matmul(&x_dropped)?;
        let grad_b = g.t()?.matmul(&(x_dropped.matmul(&a.t()?)? * self.scale as f64)?)?;
        // The first layer's input comes from the frozen embeddings: nothing needs its gradient.
        let grad_x = x
            .track_op()
            .then(|| {
                g.apply_op2_no_bwd(&g_b, &LoraInputGrad { frozen: self.frozen(false), a, mask: self.mask.clone() })
            })
            .transpose()?;
        Ok((grad_x, Some(grad_a), Some(grad_b)))
    }
}

/// `∂x = ∂y·W + ((s·∂y·B)·A)·mask` from `∂y` and `s·∂y·B`.
struct LoraInputGrad {
    frozen: FrozenMatmul,
    a: Tensor,
    mask: Option<Tensor>,
}

impl CustomOp2 for LoraInputGrad {
    fn name(&self) -> &'static str {
        "lora-matmul-input-grad"
    }

    fn cpu_fwd(
        &self,
        gs: &CpuStorage,
        g_layout: &Layout,
        g_bs: &CpuStorage,
        g_b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Matmul, || {
            let (frozen, shape) = self.frozen.cpu_fwd(gs, g_layout)?;
            let CpuStorage::F32(mut grad_x) = frozen else { unreachable!("frozen-matmul returns f32") };
            let (rows, r) = g_b_layout.shape().dims2()?;
            let g_b = MatRef::new(values(g_bs, g_b_layout, self.name())?, rows, r)?;
            with_values(&self.a, |a| {
                let a = MatRef::new(a, r, shape.dims2()?.1)?;
                match &self.mask {
                    // SAFETY: grad_x holds rows × in initialised values.
                    None => unsafe { gemm_into(grad_x.as_mut_ptr(), g_b, a, 1.0, true) },
                    Some(mask) => with_values(mask, |m| {
                        let low = product(g_b, a, 1.0);
                        grad_x.iter_mut().zip(low).zip(m).for_each(|((d, l), m)| *d += l * m);
                        Ok(())
                    })?,
                }
                Ok(())
            })?;
            Ok((CpuStorage::F32(grad_x), shape))
        })
    }
}

/// `x·Wᵀ + scale·(x·mask)·Aᵀ·Bᵀ` of `x` `[rows, in]`, adapter `A` `[r, in]`, `B` `[out, r]`
/// and the frozen f32 weight `[out, in]`, all on the CPU.
pub fn lora_matmul(
    x: &Tensor,
    weight: &Tensor,
    a: &Tensor,
    b: &Tensor,
    scale: f64,
    mask: Option<Tensor>,
) -> Result<Tensor> {
    let op =
        LoraMatmul { weight: weight.clone(), scale: scale as f32, mask: mask.map(|m| m.contiguous()).transpose()? };
    x.contiguous()?.apply_op3(a, b, op)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use candle_core::{Tensor, Var};

    use super::super::fused::tests::{assert_close, random};
    use crate::model::lora::{Linear, LoraMode, LoraPair};

    /// A LoRA layer (nonzero B, so every gradient flows) with dropout seeded alike for both routes.
    fn layer(dropout: f64) -> Linear {
        let mode = Arc::new(LoraMode::default());
        mode.seed_dropout(dropout, 7);
        mode.set_training(true);
        layer_in(mode)
    }

    fn layer_in(mode: Arc<LoraMode>) -> Linear {
        let (a, b) = (Var::from_tensor(&random(&[3, 8], 2)).unwrap(), Var::from_tensor(&random(&[6, 3], 3)).unwrap());
        Linear { weight: random(&[6, 8], 1), bias: None, lora: Some(LoraPair { a, b, scale: 2.0, mode }), bf16: None }
    }

    /// Outside training an adapted layer records no ops, on either route (inference would
    /// otherwise keep each pass's graph alive); in training it does, so gradients reach A and B.
    #[test]
    fn adapted_layers_record_ops_only_while_training() {
        let x = random(&[10, 8], 4);
        let (idle, training) = (layer_in(Arc::default()), layer(0.0));
        for linear in [&idle, &training] {
            let composed = linear.composed(&x, linear.lora.as_ref().unwrap()).unwrap();
            let kernel = linear.forward(&x).unwrap();
            let expected = std::ptr::eq(linear, &training);
            assert_eq!((kernel.track_op(), composed.track_op()), (expected, expected));
        }
    }

    /// Output and gradients of (x, A, B), through a random linear read-out of the output.
    fn value_and_grads(linear: &Linear, forward: impl Fn(&Linear, &Tensor) -> anyhow::Result<Tensor>) -> Vec<Vec<f32>> {
        let x = Var::from_tensor(&random(&[2, 5, 8], 4)).unwrap();
        let y = forward(linear, x.as_tensor()).unwrap();
        let grads = (&y * random(y.dims(), 99)).unwrap().sum_all().unwrap().backward().unwrap();
        let lora = linear.lora.as_ref().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        [&y, x.as_tensor(), lora.a.as_tensor(), lora.b.as_tensor()]
            .iter()
            .enumerate()
            .map(|(i, t)| if i == 0 { flat(t) } else { flat(grads.get(t).unwrap()) })
            .collect()
    }

    fn assert_matches_composed(dropout: f64) {
        let ours = value_and_grads(&layer(dropout), |l, x| l.forward(x));
        let reference = value_and_grads(&layer(dropout), |l, x| {
            let flat = x.reshape((10, 8))?;
            Ok(l.composed(&flat, l.lora.as_ref().unwrap())?.reshape((2, 5, 6))?)
        });
        for (what, (ours, reference)) in ["output", "∂x", "∂A", "∂B"].iter().zip(ours.iter().zip(&reference)) {
            assert_close(ours, reference, what);
            assert!(ours.iter().any(|v| v.abs() > 1e-3), "{what} must not vanish");
        }
    }

    #[test]
    fn lora_matmul_matches_composed_ops() {
        assert_matches_composed(0.0);
    }

    #[test]
    fn lora_matmul_with_dropout_matches_composed_ops() {
        assert_matches_composed(0.4);
    }
}
