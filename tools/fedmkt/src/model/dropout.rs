//! LoRA dropout masks made where the activations are, identical on every device.
//!
//! The CPU draws a mask from the model's ChaCha8 stream (`LoraMode`). ChaCha is a counter
//! mode cipher: word `w` of the stream is word `w mod 16` of the block with counter `w / 16`,
//! so element `i` of a mask that starts at word `p` needs only the key and `p + 2i` (each
//! element takes one u64, two words, low first, as `rand` reads them). On a GPU a kernel
//! computes each element from that formula, so no mask crosses the bus and the masks, the
//! training and its checkpoints are the CPU's, bit for bit; the stream then moves on by `2n`
//! words as if the CPU had drawn them. [`mask_value`] is that formula in Rust: the op's CPU
//! forward, tested against the stream itself; the CUDA source below is its transliteration.
use candle_core::{CpuStorage, CustomOp1, Device, Layout, Result, Shape, Tensor};
use rand_chacha::ChaCha8Rng;

/// ChaCha's "expand 32-byte k".
const CONSTANTS: [u32; 4] = [0x6170_7865, 0x3320_646e, 0x7962_2d32, 0x6b20_6574];

fn quarter_round(s: &mut [u32; 16], a: usize, b: usize, c: usize, d: usize) {
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(16);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(12);
    s[a] = s[a].wrapping_add(s[b]);
    s[d] = (s[d] ^ s[a]).rotate_left(8);
    s[c] = s[c].wrapping_add(s[d]);
    s[b] = (s[b] ^ s[c]).rotate_left(7);
}

/// Word `w` of the ChaCha8 stream of `key` (stream id 0, as `ChaCha8Rng::seed_from_u64` has).
fn stream_word(key: &[u32; 8], w: u64) -> u32 {
    let counter = w / 16;
    let mut input = [0u32; 16];
    input[..4].copy_from_slice(&CONSTANTS);
    input[4..12].copy_from_slice(key);
    input[12] = counter as u32;
    input[13] = (counter >> 32) as u32;
    let mut s = input;
    for _ in 0..4 {
        quarter_round(&mut s, 0, 4, 8, 12);
        quarter_round(&mut s, 1, 5, 9, 13);
        quarter_round(&mut s, 2, 6, 10, 14);
        quarter_round(&mut s, 3, 7, 11, 15);
        quarter_round(&mut s, 0, 5, 10, 15);
        quarter_round(&mut s, 1, 6, 11, 12);
        quarter_round(&mut s, 2, 7, 8, 13);
        quarter_round(&mut s, 3, 4, 9, 14);
    }
    let i = (w % 16) as usize;
    s[i].wrapping_add(input[i])
}

/// The stream's key: its 32-byte seed as eight little-endian words.
fn key_of(rng: &ChaCha8Rng) -> [u32; 8] {
    let seed = rng.get_seed();
    std::array::from_fn(|i| u32::from_le_bytes([0, 1, 2, 3].map(|b| seed[4 * i + b])))
}

/// The mask element drawn at word `w`: 0 with probability `rate`, else `keep`; `rand`'s f64
/// from a u64 is its top 53 bits times 2⁻⁵³.
pub(super) fn mask_value(key: &[u32; 8], w: u64, rate: f64, keep: f32) -> f32 {
    let bits = u64::from(stream_word(key, w)) | u64::from(stream_word(key, w + 1)) << 32;
    let uniform = (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64);
    if uniform < rate {
        0.0
    } else {
        keep
    }
}

/// The mask of `shape` from word `start` of the stream of `key`.
pub(super) struct StreamMask {
    pub key: [u32; 8],
    pub start: u64,
    pub rate: f64,
    pub keep: f32,
    pub shape: Shape,
}

impl StreamMask {
    /// The next mask of `shape` from `rng`'s stream, which moves on past it.
    pub fn take(rng: &mut ChaCha8Rng, rate: f64, keep: f32, shape: &Shape) -> StreamMask {
        let start = rng.get_word_pos();
        rng.set_word_pos(start + 2 * shape.elem_count() as u128);
        StreamMask { key: key_of(rng), start: start as u64, rate, keep, shape: shape.clone() }
    }

    /// The mask as a tensor on `device`, computed there.
    pub fn on(&self, device: &Device) -> anyhow::Result<Tensor> {
        Ok(Tensor::zeros(1, candle_core::DType::F32, device)?.apply_op1_no_bwd(self)?)
    }
}

impl CustomOp1 for StreamMask {
    fn name(&self) -> &'static str {
        "chacha8-dropout-mask"
    }

    fn cpu_fwd(&self, _: &CpuStorage, _: &Layout) -> Result<(CpuStorage, Shape)> {
        let n = self.shape.elem_count() as u64;
        let values = (0..n).map(|i| mask_value(&self.key, self.start + 2 * i, self.rate, self.keep)).collect();
        Ok((CpuStorage::F32(values), self.shape.clone()))
    }

    #[cfg(feature = "cuda")]
    fn cuda_fwd(&self, storage: &candle_core::CudaStorage, _: &Layout) -> Result<(candle_core::CudaStorage, Shape)> {
        use candle_core::cuda_backend::cudarc::driver::{LaunchConfig, PushKernelArg};
        use candle_core::cuda_backend::WrapErr;
        let device = storage.device.clone();
        let func = device.get_or_load_custom_func("chacha8_dropout_mask", "fedmkt_dropout", cuda::ptx()?)?;
        let n = self.shape.elem_count() as u64;
        // SAFETY: the kernel writes every one of the n elements before anything reads them.
        let out = unsafe { device.alloc::<f32>(n as usize)? };
        let mut launch = func.builder();
        launch.arg(&out).arg(&n);
        for word in &self.key {
            launch.arg(word);
        }
        launch.arg(&self.start).arg(&self.rate).arg(&self.keep);
        // SAFETY: the arguments match the kernel's signature in `cuda::SOURCE`, in order.
        unsafe { launch.launch(LaunchConfig::for_num_elems(n as u32)) }.w()?;
        Ok((candle_core::CudaStorage::wrap_cuda_slice(out, device), self.shape.clone()))
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    use std::sync::OnceLock;

    /// [`super::mask_value`] per element, in CUDA C (compiled once per process by NVRTC).
    const SOURCE: &str = r#"
#define ROTL(x, n) (((x) << (n)) | ((x) >> (32 - (n))))
#define QR(a, b, c, d) \
    s[a] += s[b]; s[d] = ROTL(s[d] ^ s[a], 16); s[c] += s[d]; s[b] = ROTL(s[b] ^ s[c], 12); \
    s[a] += s[b]; s[d] = ROTL(s[d] ^ s[a], 8);  s[c] += s[d]; s[b] = ROTL(s[b] ^ s[c], 7);

__device__ unsigned int stream_word(const unsigned int key[8], unsigned long long w) {
    unsigned long long counter = w / 16;
    unsigned int input[16] = {0x61707865u, 0x3320646eu, 0x79622d32u, 0x6b206574u,
                              key[0], key[1], key[2], key[3], key[4], key[5], key[6], key[7],
                              (unsigned int)counter, (unsigned int)(counter >> 32), 0u, 0u};
    unsigned int s[16];
    for (int i = 0; i < 16; i++) s[i] = input[i];
    for (int r = 0; r < 4; r++) {
        QR(0, 4, 8, 12) QR(1, 5, 9, 13) QR(2, 6, 10, 14) QR(3, 7, 11, 15)
        QR(0, 5, 10, 15) QR(1, 6, 11, 12) QR(2, 7, 8, 13) QR(3, 4, 9, 14)
    }
    int i = (int)(w % 16);
    return s[i] + input[i];
}

extern "C" __global__ void chacha8_dropout_mask(float *out, unsigned long long n,
        unsigned int k0, unsigned int k1, unsigned int k2, unsigned int k3,
        unsigned int k4, unsigned int k5, unsigned int k6, unsigned int k7,
        unsigned long long start, double rate, float keep) {
    unsigned long long i = (unsigned long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const unsigned int key[8] = {k0, k1, k2, k3, k4, k5, k6, k7};
    unsigned long long w = start + 2 * i;
    unsigned long long bits = (unsigned long long)stream_word(key, w) | ((unsigned long long)stream_word(key, w + 1) << 32);
    double uniform = (double)(bits >> 11) * (1.0 / 9007199254740992.0);
    out[i] = uniform < rate ? 0.0f : keep;
}
"#;

    pub fn ptx() -> candle_core::Result<&'static str> {
        static PTX: OnceLock<std::result::Result<String, String>> = OnceLock::new();
        let compiled = PTX.get_or_init(|| {
            candle_core::cuda_backend::cudarc::nvrtc::compile_ptx(SOURCE).map(|p| p.to_src()).map_err(|e| e.to_string())
        });
        compiled.as_deref().map_err(|e| candle_core::Error::Msg(format!("dropout mask kernel: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};

    use super::*;

    /// The formula gives the stream's own masks, from any start (odd ones straddle blocks and
    /// `rand`'s 64-word buffer), far into the stream.
    #[test]
    fn the_formula_draws_what_the_stream_draws() {
        for start in [0u128, 1, 15, 63, 64, 1_000_001, (1 << 36) + 7] {
            let mut rng = ChaCha8Rng::seed_from_u64(42);
            rng.set_word_pos(start);
            let key = key_of(&rng);
            let keep = (1.0 / (1.0 - 0.3)) as f32;
            let drawn: Vec<f32> = (0..200).map(|_| if rng.random::<f64>() < 0.3 { 0.0 } else { keep }).collect();
            let formula: Vec<f32> = (0..200).map(|i| mask_value(&key, start as u64 + 2 * i, 0.3, keep)).collect();
            assert_eq!(drawn, formula, "from word {start}");
            assert_eq!(rng.get_word_pos(), start + 400);
        }
    }

    /// A mask taken as a device would take it is the one the CPU draws, and the stream stands
    /// where the CPU's would.
    #[test]
    fn a_taken_mask_is_the_drawn_one() {
        let (mut taken, mut drawn) = (ChaCha8Rng::seed_from_u64(7), ChaCha8Rng::seed_from_u64(7));
        for _ in 0..3 {
            let mask = StreamMask::take(&mut taken, 0.5, 2.0, &(3, 5).into()).on(&Device::Cpu).unwrap();
            assert_eq!(mask.dims(), &[3, 5]);
            let expected: Vec<f32> = (0..15).map(|_| if drawn.random::<f64>() < 0.5 { 0.0 } else { 2.0 }).collect();
            assert_eq!(mask.flatten_all().unwrap().to_vec1::<f32>().unwrap(), expected);
            assert_eq!(taken.get_word_pos(), drawn.get_word_pos());
        }
    }
}
