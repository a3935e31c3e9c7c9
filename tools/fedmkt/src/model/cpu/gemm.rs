//! Matrix products on f32 CPU values through gemm directly, for the training kernels
//! (`frozen.rs`, `heads.rs`): into buffers gemm need not zero first, accumulating in place,
//! and threaded the way these shapes want.
use candle_core::{Result, Tensor};
use rayon::prelude::*;

/// A matrix view of f32 values: `rows × cols`, element (i, j) at `i·row_stride + j·col_stride`.
#[derive(Clone, Copy)]
pub struct MatRef<'a> {
    pub data: &'a [f32],
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl<'a> MatRef<'a> {
    /// Row-major `rows × cols` values (exactly that many).
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Result<MatRef<'a>> {
        if data.len() != rows * cols {
            candle_core::bail!("cpu gemm: {} values for a {rows}×{cols} matrix", data.len());
        }
        Ok(MatRef { data, rows, cols, row_stride: cols, col_stride: 1 })
    }

    pub fn t(self) -> MatRef<'a> {
        MatRef { rows: self.cols, cols: self.rows, row_stride: self.col_stride, col_stride: self.row_stride, ..self }
    }
}

/// `dst = scale·a·b`, or `dst += scale·a·b` when `accumulate`; `dst` row-major `a.rows × b.cols`.
///
/// Threads split `b`'s columns, each one gemm call without threads of its own: gemm's own
/// threads split `a`'s rows instead, and each of them then packs the whole of `b`ᵀ — here the
/// frozen weight, far larger than the activations — so two threads packed it twice.
///
/// # Safety
/// `dst` must be valid for writes of `a.rows · b.cols` values (and initialised when `accumulate`).
pub unsafe fn gemm_into(dst: *mut f32, a: MatRef, b: MatRef, scale: f32, accumulate: bool) {
    let (m, n, k) = (a.rows, b.cols, a.cols);
    let threads = candle_core::utils::get_num_threads().min(n / MIN_COLUMNS_PER_THREAD).max(1);
    let threads = if m * n * k < MIN_WORK_PER_THREAD * threads { 1 } else { threads };
    // SAFETY: passed on from the caller.
    unsafe { gemm_in_column_blocks(dst, a, b, scale, accumulate, threads) }
}

/// [`gemm_into`] with `b`'s columns in `blocks` blocks, one gemm call each, in parallel.
///
/// # Safety
/// As [`gemm_into`].
unsafe fn gemm_in_column_blocks(dst: *mut f32, a: MatRef, b: MatRef, scale: f32, accumulate: bool, blocks: usize) {
    let n = b.cols;
    let per_block = n.div_ceil(blocks);
    let dst = dst as usize; // raw pointers are not Send; each block writes its own columns
    (0..n.div_ceil(per_block)).into_par_iter().for_each(|block| {
        let (first, cols) = (block * per_block, per_block.min(n - block * per_block));
        let b = MatRef { data: &b.data[first * b.col_stride..], cols, ..b };
        // SAFETY: the caller vouches for dst, of which this call touches columns first..first + cols only.
        unsafe { gemm_call((dst as *mut f32).add(first), n, a, b, scale, accumulate) }
    });
}

/// `dst = scale·a·b` (or `+=`) on the calling thread, for callers that run many small
/// products in parallel.
pub fn gemm_serial(dst: &mut [f32], a: MatRef, b: MatRef, scale: f32, accumulate: bool) {
    assert_eq!(dst.len(), a.rows * b.cols, "cpu gemm: destination size");
    // SAFETY: dst holds exactly the a.rows × b.cols values written (and read when accumulating).
    unsafe { gemm_call(dst.as_mut_ptr(), b.cols, a, b, scale, accumulate) }
}

/// One single-threaded gemm call; `dst` rows `dst_row_stride` apart.
///
/// # Safety
/// `dst` must be valid for the `a.rows × b.cols` values it addresses.
unsafe fn gemm_call(dst: *mut f32, dst_row_stride: usize, a: MatRef, b: MatRef, scale: f32, accumulate: bool) {
    assert_eq!(a.cols, b.rows, "cpu gemm: inner dimensions differ");
    // SAFETY: MatRef::new checked that each operand's values cover its extent; the caller vouches for dst.
    unsafe {
        gemm::gemm(
            a.rows,
            b.cols,
            a.cols,
            dst,
            1,
            dst_row_stride as isize,
            accumulate,
            a.data.as_ptr(),
            a.col_stride as isize,
            a.row_stride as isize,
            b.data.as_ptr(),
            b.col_stride as isize,
            b.row_stride as isize,
            1.0,
            scale,
            false,
            false,
            false,
            gemm::Parallelism::None,
        )
    }
}

/// Below these a product runs on one thread (gemm's own threading threshold is 48·48·256).
const MIN_COLUMNS_PER_THREAD: usize = 64;
const MIN_WORK_PER_THREAD: usize = 48 * 48 * 256;

/// `scale·a·b` in a new row-major buffer (never zero-filled: gemm writes every value).
pub fn product(a: MatRef, b: MatRef, scale: f32) -> Vec<f32> {
    let len = a.rows * b.cols;
    let mut out = Vec::with_capacity(len);
    // SAFETY: the buffer holds `len` values; gemm writes all of them before set_len exposes them.
    unsafe {
        gemm_into(out.spare_capacity_mut().as_mut_ptr().cast(), a, b, scale, false);
        out.set_len(len);
    }
    out
}

/// `f` on a CPU f32 tensor's values (the frozen weight, the dropout mask).
pub fn with_values<R>(t: &Tensor, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let (storage, layout) = t.storage_and_layout();
    let candle_core::Storage::Cpu(cpu) = &*storage else { candle_core::bail!("cpu gemm: tensor not on the CPU") };
    f(super::fused::values(cpu, layout, "cpu gemm")?)
}

#[cfg(test)]
mod tests {
    use super::super::fused::tests::{assert_close, random};
    use super::{gemm_in_column_blocks, MatRef};

    /// `scale·a·b` (+ `dst` when accumulating) by the textbook triple loop.
    fn naive(a: MatRef, b: MatRef, scale: f32, dst: &[f32]) -> Vec<f32> {
        let at = |m: MatRef, i: usize, j: usize| m.data[i * m.row_stride + j * m.col_stride];
        (0..a.rows * b.cols)
            .map(|ij| dst[ij] + scale * (0..a.cols).map(|l| at(a, ij / b.cols, l) * at(b, l, ij % b.cols)).sum::<f32>())
            .collect()
    }

    #[test]
    fn column_blocks_give_the_textbook_product() {
        let flat = |shape: &[usize], seed| random(shape, seed).flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let (a, w) = (flat(&[7, 40], 1), flat(&[130, 40], 2));
        let (a, w) = (MatRef::new(&a, 7, 40).unwrap(), MatRef::new(&w, 130, 40).unwrap());
        for (b, what) in [(w.t(), "x·Wᵀ"), (MatRef::new(w.data, 40, 130).unwrap(), "x·W")] {
            let start = flat(&[7, 130], 3);
            for (accumulate, blocks) in [(false, 1), (false, 2), (true, 3), (true, 130)] {
                let mut dst = if accumulate { start.clone() } else { vec![f32::NAN; 7 * 130] };
                unsafe { gemm_in_column_blocks(dst.as_mut_ptr(), a, b, 0.5, accumulate, blocks) };
                let expected = naive(a, b, 0.5, if accumulate { &start } else { &[0.0; 7 * 130] });
                assert_close(&dst, &expected, &format!("{what}, {blocks} blocks, accumulate {accumulate}"));
            }
        }
    }
}
