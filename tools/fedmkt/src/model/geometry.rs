//! Where a forward pass's tokens sit: the rotary tables and attention masks of its layers,
//! either for a fresh batch (every row starts at position 0) or for continuations of cached
//! prefixes (`evaluate` runs a sample's context once and all its choices after it).
use anyhow::Result;
use candle_core::{Device, Tensor};

use super::layers::{attention_mask, rotary_tables};
use super::ModelConfig;

/// Keys and values of one attention layer `[batch, kv_heads, seq, head_dim]`, keys rotated.
pub type KeyValues = (Tensor, Tensor);

/// Rotary tables and masks for global layers and, where the model has them, for sliding-window
/// layers (Gemma-3: their own rotary base and a window on the keys).
pub struct Geometry {
    global: (Tensor, Tensor),
    local: Option<(Tensor, Tensor)>,
    full_mask: Tensor,
    window_mask: Option<Tensor>,
}

/// The model's sliding window, if any layer has one (Gemma-3's layers share one size).
fn window(cfg: &ModelConfig) -> Option<usize> {
    cfg.sliding_window.iter().flatten().next().copied()
}

impl Geometry {
    /// A right-padded batch of `seq` tokens from position 0: tables `[seq, head_dim/2]`,
    /// causal masks `[seq, seq]`.
    pub fn fresh(cfg: &ModelConfig, seq: usize, device: &Device) -> Result<Geometry> {
        let tables = |base| rotary_tables(base, cfg.head_dim, seq, device);
        let window = window(cfg);
        Ok(Geometry {
            global: tables(cfg.rope_theta)?,
            local: window.map(|_| tables(cfg.rope_local_base_freq)).transpose()?,
            full_mask: attention_mask(seq, None, device)?,
            window_mask: window.map(|w| attention_mask(seq, Some(w), device)).transpose()?,
        })
    }

    /// Row r continues a prefix of `prefix_lens[r]` tokens whose keys are padded to `width`:
    /// its token i sits at position `prefix_lens[r] + i`. Tables `[rows, seq, head_dim/2]`;
    /// masks `[rows, 1, seq, width + seq]` over the prefix's keys, then the row's own.
    pub fn after_prefix(
        cfg: &ModelConfig,
        prefix_lens: &[usize],
        width: usize,
        seq: usize,
        device: &Device,
    ) -> Result<Geometry> {
        let rows = prefix_lens.len();
        let longest = prefix_lens.iter().max().copied().unwrap_or(0) + seq;
        let positions: Vec<u32> = prefix_lens.iter().flat_map(|&p| (p..p + seq).map(|i| i as u32)).collect();
        let positions = Tensor::from_vec(positions, rows * seq, device)?;
        let tables = |base| -> Result<(Tensor, Tensor)> {
            let (cos, sin) = rotary_tables(base, cfg.head_dim, longest, device)?;
            let at = |t: Tensor| t.index_select(&positions, 0)?.reshape((rows, seq, cfg.head_dim / 2));
            Ok((at(cos)?, at(sin)?))
        };
        let window = window(cfg);
        Ok(Geometry {
            global: tables(cfg.rope_theta)?,
            local: window.map(|_| tables(cfg.rope_local_base_freq)).transpose()?,
            full_mask: prefix_mask(prefix_lens, width, seq, None, device)?,
            window_mask: window.map(|w| prefix_mask(prefix_lens, width, seq, Some(w), device)).transpose()?,
        })
    }

    /// `(cos, sin, mask)` of a layer: a sliding-window layer's when `sliding`, else a global one's.
    pub fn layer(&self, sliding: bool) -> (&Tensor, &Tensor, &Tensor) {
        let ((cos, sin), mask) = match (sliding, &self.local, &self.window_mask) {
            (true, Some(local), Some(mask)) => (local, mask),
            _ => (&self.global, &self.full_mask),
        };
        (cos, sin, mask)
    }
}

/// Additive mask `[rows, 1, seq, width + seq]`: row r's query i (position `p_r + i`) sees the
/// prefix's keys `j < p_r` and its own keys `k ≤ i`, within `window` positions when given;
/// −∞ elsewhere (the padding of shorter prefixes included).
fn prefix_mask(
    prefix_lens: &[usize],
    width: usize,
    seq: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Tensor> {
    let keys = width + seq;
    let mut mask = vec![f32::NEG_INFINITY; prefix_lens.len() * seq * keys];
    for (r, &p) in prefix_lens.iter().enumerate() {
        for i in 0..seq {
            let query = p + i;
            let key_positions = (0..p).map(|j| (j, j)).chain((0..=i).map(|k| (width + k, p + k)));
            for (column, key) in key_positions {
                if window.is_none_or(|w| query - key < w) {
                    mask[(r * seq + i) * keys + column] = 0.0;
                }
            }
        }
    }
    Ok(Tensor::from_vec(mask, (prefix_lens.len(), 1, seq, keys), device)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Row 0 continues 2 prefix tokens (of a width of 3), row 1 none; window 2.
    #[test]
    fn a_prefix_mask_sees_its_own_prefix_and_causal_keys() {
        let mask = prefix_mask(&[2, 0], 3, 2, Some(2), &Device::Cpu).unwrap();
        let seen: Vec<Vec<Vec<bool>>> = mask
            .squeeze(1)
            .unwrap()
            .to_vec3::<f32>()
            .unwrap()
            .iter()
            .map(|row| row.iter().map(|q| q.iter().map(|&m| m == 0.0).collect()).collect())
            .collect();
        let (o, x) = (true, false);
        // Row 0, query at position 2: keys at 1 (prefix) and 2 (itself); position 3: 2 and 3.
        assert_eq!(seen[0], vec![vec![x, o, x, o, x], vec![x, x, x, o, o]]);
        // Row 1: no prefix keys, its own keys causally.
        assert_eq!(seen[1], vec![vec![x, x, x, o, x], vec![x, x, x, o, o]]);
    }
}
