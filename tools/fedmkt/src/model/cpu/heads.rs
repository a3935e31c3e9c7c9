//! Attention's per-head products on the CPU, for training: `q·kᵀ` and `probs·v` over
//! `[batch, heads, …]`, grouped-query attention's key/value heads shared without copies,
//! heads in parallel, each one single-threaded gemm call.
//!
//! candle's batched matmul runs one head after another (each product is below gemm's
//! threading threshold, so one core works while the other waits), needs every key/value head
//! copied out for each of its query heads first, and its backward pass adds each operand's
//! gradient into a zero-filled one. Measured on SmolLM2 with two threads, attention's
//! products and softmax were a fifth of a training step.
use candle_core::{CpuStorage, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fused::values;
use super::gemm::{gemm_serial, MatRef};

/// Matrix `index` of `count` stacked `rows × cols` matrices.
fn matrix(values: &[f32], index: usize, rows: usize, cols: usize) -> Result<MatRef<'_>> {
    MatRef::new(&values[index * rows * cols..][..rows * cols], rows, cols)
}

/// `out_i = x_i·y_g(i)`, or `x_i·y_g(i)ᵀ` when `transpose_y`, for every batch × query head
/// `i` of `x` `[batch, heads, r, c]`, `g(i)` its head of `y` `[batch, kv_heads, p, q]`.
struct HeadProduct {
    transpose_y: bool,
}

impl CustomOp2 for HeadProduct {
    fn name(&self) -> &'static str {
        "head-product"
    }

    fn cpu_fwd(
        &self,
        xs: &CpuStorage,
        x_layout: &Layout,
        ys: &CpuStorage,
        y_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Attention, || {
            let ((batch, heads, r, c), (_, kv_heads, p, q)) = (x_layout.shape().dims4()?, y_layout.shape().dims4()?);
            let (x, y) = (values(xs, x_layout, self.name())?, values(ys, y_layout, self.name())?);
            let cols = if self.transpose_y { p } else { q };
            let mut out = vec![0f32; batch * heads * r * cols];
            out.par_chunks_mut(r * cols).enumerate().try_for_each(|(i, out)| {
                let y = matrix(y, i / heads * kv_heads + i % heads / (heads / kv_heads), p, q)?;
                gemm_serial(out, matrix(x, i, r, c)?, if self.transpose_y { y.t() } else { y }, 1.0, false);
                Ok::<_, candle_core::Error>(())
            })?;
            Ok((CpuStorage::F32(out), Shape::from((batch, heads, r, cols))))
        })
    }

    fn bwd(&self, x: &Tensor, y: &Tensor, _out: &Tensor, grad: &Tensor) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let grad = grad.contiguous()?;
        let grad_x = grad.apply_op2_no_bwd(y, &HeadProduct { transpose_y: !self.transpose_y })?;
        let group_sum = GroupSum { kv_heads: y.dim(1)? };
        let grad_y = if self.transpose_y {
            grad.apply_op2_no_bwd(x, &group_sum)?
        } else {
            x.apply_op2_no_bwd(&grad, &group_sum)?
        };
        Ok((Some(grad_x), Some(grad_y)))
    }
}

/// `out_g = Σ_{i of group g} a_iᵀ·b_i` over `a` `[batch, heads, r, m]`, `b` `[batch, heads, r, n]`:
/// the gradient of a key/value head, summed over the query heads that share it.
struct GroupSum {
    kv_heads: usize,
}

impl CustomOp2 for GroupSum {
    fn name(&self) -> &'static str {
        "head-group-sum"
    }

    fn cpu_fwd(
        &self,
        a_s: &CpuStorage,
        a_layout: &Layout,
        b_s: &CpuStorage,
        b_layout: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Attention, || {
            let ((batch, heads, r, m), (_, _, _, n)) = (a_layout.shape().dims4()?, b_layout.shape().dims4()?);
            let (a, b, group) =
                (values(a_s, a_layout, self.name())?, values(b_s, b_layout, self.name())?, heads / self.kv_heads);
            let mut out = vec![0f32; batch * self.kv_heads * m * n];
            out.par_chunks_mut(m * n).enumerate().try_for_each(|(g, out)| {
                for (member, i) in (g * group..(g + 1) * group).enumerate() {
                    gemm_serial(out, matrix(a, i, r, m)?.t(), matrix(b, i, r, n)?, 1.0, member > 0);
                }
                Ok::<_, candle_core::Error>(())
            })?;
            Ok((CpuStorage::F32(out), Shape::from((batch, self.kv_heads, m, n))))
        })
    }
}

/// `x·yᵀ` (`transpose_y`) or `x·y` per head of f32 CPU tensors `x` `[batch, heads, r, c]` and
/// `y` `[batch, kv_heads, …]`, `heads` a multiple of `kv_heads`.
pub fn matmul(x: &Tensor, y: &Tensor, transpose_y: bool) -> Result<Tensor> {
    let (heads, kv_heads) = (x.dim(1)?, y.dim(1)?);
    if kv_heads == 0 || heads % kv_heads != 0 || x.dim(0)? != y.dim(0)? {
        candle_core::bail!("head-product: shapes {:?} and {:?} do not pair up", x.dims(), y.dims());
    }
    x.contiguous()?.apply_op2(&y.contiguous()?, HeadProduct { transpose_y })
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::super::fused::tests::{assert_close, random};
    use crate::model::layers;

    /// Attention output and the gradients of q, k, v, through a random read-out.
    fn value_and_grads(
        attention: fn(&Tensor, &Tensor, &Tensor, &Tensor, f64) -> anyhow::Result<Tensor>,
    ) -> Vec<Vec<f32>> {
        let vars = [([2, 6, 5, 4], 1), ([2, 2, 5, 4], 2), ([2, 2, 5, 4], 3)]
            .map(|(shape, seed)| Var::from_tensor(&random(&shape, seed)).unwrap());
        let mask = layers::attention_mask(5, Some(3), &Device::Cpu).unwrap();
        let out = attention(vars[0].as_tensor(), vars[1].as_tensor(), vars[2].as_tensor(), &mask, 0.5).unwrap();
        let grads = (&out * random(out.dims(), 99)).unwrap().sum_all().unwrap().backward().unwrap();
        let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        std::iter::once(flat(&out)).chain(vars.iter().map(|v| flat(grads.get(v.as_tensor()).unwrap()))).collect()
    }

    #[test]
    fn grouped_query_attention_matches_composed_ops() {
        let (ours, reference) = (value_and_grads(layers::attention), value_and_grads(layers::attention_composed));
        for (what, (ours, reference)) in ["output", "∂q", "∂k", "∂v"].iter().zip(ours.iter().zip(&reference)) {
            assert_close(ours, reference, what);
            assert!(ours.iter().any(|v| v.abs() > 1e-3), "{what} must not vanish");
        }
    }
}
