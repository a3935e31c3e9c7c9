//! `x·Wᵀ` for inference in bf16 on CPUs with AVX-512 BF16 (`--dtype bf16` on the CPU): the
//! frozen weight rounded to bf16 once at load time and packed for `vdpbf16ps`, which
//! multiplies pairs of bf16 values and adds both products into an f32 lane — twice the
//! multiply-adds of an f32 FMA per instruction, half the bytes of weight read. The
//! activations are rounded to bf16 at each product; sums, norms, softmax and everything
//! between the products stay f32. candle's own bf16 path on the CPU converts to f32 and back
//! around every op and was slower than f32 here (docs/performance.md).
//!
//! Layout: the weight `[out, in]` as panels of [`PANEL`] output columns; within a panel, for
//! each pair of inputs `(2p, 2p+1)` the panel's columns, each one u32 holding the two bf16
//! values (low half the even input), as `vdpbf16ps` reads them. Odd inputs and the last
//! panel's missing columns are zeros.
use std::sync::Arc;

use candle_core::{CpuStorage, CustomOp1, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::fused::values;

/// Output columns per panel: three 16-lane vectors.
const VECTORS: usize = 3;
const PANEL: usize = 16 * VECTORS;
/// Rows of `x` per microkernel call: `ROWS × VECTORS` accumulators stay in registers.
const ROWS: usize = 8;

/// Whether this CPU runs the bf16 kernel.
pub fn supported() -> bool {
    cfg!(target_arch = "x86_64") && std::arch::is_x86_feature_detected!("avx512bf16")
}

/// f32 rounded to the nearest bf16, ties to even (what `vcvtne2ps2bf16` does), NaN kept NaN.
pub fn to_bf16(x: f32) -> u16 {
    let bits = x.to_bits();
    if x.is_nan() {
        return ((bits >> 16) | 0x40) as u16;
    }
    ((bits + 0x7fff + ((bits >> 16) & 1)) >> 16) as u16
}

/// A frozen weight `[out, in]` rounded to bf16 and packed for [`matmul`].
pub struct PackedWeight {
    out: usize,
    pairs: usize,
    data: Vec<u32>,
}

impl std::fmt::Debug for PackedWeight {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(f, "PackedWeight(bf16, {} outputs × {} input pairs)", self.out, self.pairs)
    }
}

impl PackedWeight {
    /// Packs `w`, row-major `[out, in]`.
    pub fn new(w: &[f32], out: usize, inp: usize) -> PackedWeight {
        assert_eq!(w.len(), out * inp, "bf16 weight: {} values for {out}×{inp}", w.len());
        let pairs = inp.div_ceil(2);
        let at = |o: usize, i: usize| if o < out && i < inp { to_bf16(w[o * inp + i]) as u32 } else { 0 };
        let data = (0..out.div_ceil(PANEL))
            .flat_map(|panel| (0..pairs).map(move |p| (panel, p)))
            .flat_map(|(panel, p)| {
                (0..PANEL).map(move |c| (panel * PANEL + c, 2 * p)).map(|(o, i)| at(o, i) | (at(o, i + 1) << 16))
            })
            .collect();
        PackedWeight { out, pairs, data }
    }

    fn panel(&self, index: usize) -> &[u32] {
        let len = self.pairs * PANEL;
        &self.data[index * len..(index + 1) * len]
    }
}

/// `x·Wᵀ` of `x` `[rows, in]` (f32, on the CPU) as a graph node without a backward pass:
/// inference only.
pub fn linear(x: &Tensor, weight: &Arc<PackedWeight>) -> Result<Tensor> {
    x.contiguous()?.apply_op1_no_bwd(&Bf16Linear(weight.clone()))
}

struct Bf16Linear(Arc<PackedWeight>);

impl CustomOp1 for Bf16Linear {
    fn name(&self) -> &'static str {
        "bf16-linear"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        crate::profile::timed(crate::profile::Work::Matmul, || {
            let (rows, inner) = layout.shape().dims2()?;
            if inner.div_ceil(2) != self.0.pairs {
                candle_core::bail!("bf16 product: {inner} inputs for a weight of {} pairs", self.0.pairs);
            }
            let y = matmul(values(storage, layout, self.name())?, rows, &self.0);
            Ok((CpuStorage::F32(y), Shape::from((rows, self.0.out))))
        })
    }
}

/// `x·Wᵀ` of `x` row-major `[rows, in]`: a new row-major `[rows, out]`, panels in parallel.
pub fn matmul(x: &[f32], rows: usize, w: &PackedWeight) -> Vec<f32> {
    assert!(supported(), "bf16 kernel on a CPU without AVX-512 BF16");
    if rows == 0 {
        return Vec::new();
    }
    let inp = x.len() / rows.max(1);
    assert_eq!(inp.div_ceil(2), w.pairs, "bf16 product: inner dimensions differ");
    let x = pack_rows(x, rows, inp, w.pairs);
    let mut y = vec![0.0f32; rows * w.out];
    let (y_addr, pairs) = (y.as_mut_ptr() as usize, w.pairs); // each panel writes its own columns
    (0..w.out.div_ceil(PANEL)).into_par_iter().for_each(|panel| {
        let cols = PANEL.min(w.out - panel * PANEL);
        for first_pair in (0..pairs).step_by(DEPTH) {
            let depth = DEPTH.min(pairs - first_pair);
            let weights = &w.panel(panel)[first_pair * PANEL..(first_pair + depth) * PANEL];
            for block in 0..rows.div_ceil(ROWS) {
                let block_x = &x[(block * pairs + first_pair) * ROWS..(block * pairs + first_pair + depth) * ROWS];
                let out = Tile {
                    ptr: (y_addr as *mut f32).wrapping_add(block * ROWS * w.out + panel * PANEL),
                    row_stride: w.out,
                    rows: ROWS.min(rows - block * ROWS),
                    cols,
                };
                // SAFETY: supported() checked the CPU; the tile lies inside y, in this panel's columns.
                unsafe { kernel(block_x, weights, out, first_pair > 0) };
            }
        }
    });
    y
}

/// Pairs of inputs per pass over a panel: the panel's slice of weights (`DEPTH · PANEL`
/// values, 24 KiB) stays in the L1 cache while every row block runs over it.
const DEPTH: usize = 128;

/// `x` as bf16 pairs in blocks of [`ROWS`] rows, pair-major within a block (`[block][pair][row]`,
/// one u32 per pair of inputs); the rows after the last and the input after an odd last are
/// zeros. Blocks in parallel: done serially, packing took a fifth of a product's time.
fn pack_rows(x: &[f32], rows: usize, inp: usize, pairs: usize) -> Vec<u32> {
    let mut packed = vec![0u32; rows.div_ceil(ROWS) * pairs * ROWS];
    packed.par_chunks_mut(pairs * ROWS).enumerate().for_each(|(block, packed)| {
        for r in 0..ROWS.min(rows - block * ROWS) {
            let row = &x[(block * ROWS + r) * inp..][..inp];
            for (p, two) in row.chunks(2).enumerate() {
                let high = two.get(1).map_or(0, |&v| to_bf16(v) as u32);
                packed[p * ROWS + r] = to_bf16(two[0]) as u32 | (high << 16);
            }
        }
    });
    packed
}

/// Where a kernel call writes: `rows × cols` f32 values (at most [`ROWS`] × [`PANEL`]).
struct Tile {
    ptr: *mut f32,
    row_stride: usize,
    rows: usize,
    cols: usize,
}

/// `out (+)= x·w` for one block of [`ROWS`] rows of `x` (`[pair][row]`) and one panel's slice
/// of `w` (`[pair][column]`), adding to `out` when `accumulate`.
///
/// # Safety
/// The CPU has AVX-512 BF16; `out` is valid for its rows and columns and written by no one else.
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn kernel(x: &[u32], w: &[u32], out: Tile, accumulate: bool) {
    use std::arch::x86_64::*;
    let depth = w.len() / PANEL;
    assert!(x.len() == depth * ROWS && out.rows <= ROWS && out.cols <= PANEL);
    let masks: [__mmask16; VECTORS] =
        std::array::from_fn(|v| ((1u32 << out.cols.saturating_sub(16 * v).min(16)) - 1) as __mmask16);
    let tile = |r: usize, v: usize| out.ptr.wrapping_add(r * out.row_stride + 16 * v);
    let mut acc = [[_mm512_setzero_ps(); VECTORS]; ROWS];
    if accumulate {
        for (r, acc) in acc.iter_mut().enumerate().take(out.rows) {
            for (v, acc) in acc.iter_mut().enumerate() {
                // SAFETY: masked to the tile's columns, row r < out.rows.
                *acc = unsafe { _mm512_maskz_loadu_ps(masks[v], tile(r, v)) };
            }
        }
    }
    let (x, w) = (x.as_ptr(), w.as_ptr());
    for p in 0..depth {
        // SAFETY: p < depth and the assert bounds every offset read.
        unsafe {
            let weights: [__m512bh; VECTORS] =
                std::array::from_fn(|v| std::mem::transmute(_mm512_loadu_si512(w.add(p * PANEL + 16 * v).cast())));
            for (r, acc) in acc.iter_mut().enumerate() {
                let xr: __m512bh = std::mem::transmute(_mm512_set1_epi32(*x.add(p * ROWS + r) as i32));
                for v in 0..VECTORS {
                    acc[v] = _mm512_dpbf16_ps(acc[v], xr, weights[v]);
                }
            }
        }
    }
    for (r, acc) in acc.iter().enumerate().take(out.rows) {
        for (v, acc) in acc.iter().enumerate() {
            // SAFETY: masked to the tile's columns, row r < out.rows.
            unsafe { _mm512_mask_storeu_ps(tile(r, v), masks[v], *acc) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_bf16(h: u16) -> f32 {
        f32::from_bits((h as u32) << 16)
    }

    #[test]
    fn rounding_to_bf16_is_to_nearest_with_ties_to_even() {
        assert_eq!(to_bf16(1.0), 0x3f80);
        // 1 + 2⁻⁸ lies halfway between bf16's 1 and 1 + 2⁻⁷: to the even, 1.
        assert_eq!(to_bf16(1.0 + 2f32.powi(-8)), 0x3f80);
        assert_eq!(to_bf16(1.0 + 3.0 * 2f32.powi(-8)), 0x3f82);
        assert_eq!(to_bf16(-2.5), 0xc020);
        assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
        assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    }

    /// The kernel against the product of the bf16-rounded operands in f64, at shapes with a
    /// partial row block, a partial panel and an odd inner dimension.
    #[test]
    fn the_bf16_product_is_the_product_of_the_rounded_operands() {
        if !supported() {
            eprintln!("skipped: no AVX-512 BF16 on this CPU");
            return;
        }
        let value = |i: usize| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * 1.7;
        let round = |v: f32| from_bf16(to_bf16(v)) as f64;
        for (rows, inp, out) in [(1, 1, 1), (11, 577, 100), (8, 64, 48), (17, 9, 97)] {
            let x: Vec<f32> = (0..rows * inp).map(value).collect();
            let w: Vec<f32> = (0..out * inp).map(|i| value(i + 13)).collect();
            let y = matmul(&x, rows, &PackedWeight::new(&w, out, inp));
            assert_eq!(y.len(), rows * out);
            for (ij, got) in y.iter().enumerate() {
                let (i, j) = (ij / out, ij % out);
                let exact: f64 = (0..inp).map(|l| round(x[i * inp + l]) * round(w[j * inp + l])).sum();
                let tolerance = 1e-5 * (0..inp).map(|l| (x[i * inp + l] * w[j * inp + l]).abs() as f64).sum::<f64>();
                assert!(
                    (*got as f64 - exact).abs() <= tolerance + 1e-6,
                    "{rows}×{inp}×{out} at {ij}: {got} vs {exact}"
                );
            }
        }
    }
}
