//! CPU kernels for training, each a graph node with a hand-written backward pass: candle's
//! fused kernels pass no gradient, and its composed ops zero-fill, copy and differentiate
//! operands that need none.
//!
//! - [`gemm`]: f32 matrix products through gemm directly, accumulating in place.
//! - [`frozen`]: a linear layer over a frozen weight, with its LoRA adapter, as one node.
//! - [`heads`]: attention's per-head products, heads in parallel, key/value heads shared.
//! - [`bf16`]: for scoring only, `x·Wᵀ` in bf16 products on CPUs with AVX-512 BF16.
//! - [`fused`]: RMS norm, masked softmax, rotary embedding, `silu(gate)·up`: each op, its
//!   gradient in one line, and a test against the composed candle ops.
pub(super) mod bf16;
pub(super) mod frozen;
pub(super) mod fused;
pub(super) mod gemm;
pub(super) mod heads;
