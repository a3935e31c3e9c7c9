//! Where a forward pass's tokens sit: their positions, the rotary tables and attention masks
//! of its layers (ALiBi's biases folded into the masks), either for a fresh batch (every row
//! starts at position 0) or for continuations of cached prefixes (`evaluate` runs a sample's
//! context once and all its choices after it).
use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor};

use super::config::Positions;
use super::layers::{attention_mask, rotary_tables};
use super::ModelConfig;

/// Keys and values of one attention layer `[batch, kv_heads, seq, head_dim]`, keys rotated.
pub type KeyValues = (Tensor, Tensor);

/// Rotary tables and masks for global layers and, where the model has them, for sliding-window
/// layers (Gemma-3: their own rotary base and a window on the keys), and every token's position.
pub struct Geometry {
    global: Option<(Tensor, Tensor)>,
    local: Option<(Tensor, Tensor)>,
    full_mask: Tensor,
    window_mask: Option<Tensor>,
    /// Each token's absolute position, `rows × seq` (one row for a fresh batch: all alike).
    positions: Vec<u32>,
    rows: usize,
    device: Device,
}

/// What a layer's attention needs of the geometry.
pub struct LayerGeometry<'a> {
    /// `(cos, sin)` for a rotary model.
    pub rotary: Option<(&'a Tensor, &'a Tensor)>,
    /// Additive mask (with ALiBi's biases, for an ALiBi model).
    pub mask: &'a Tensor,
}

/// The model's sliding window, if any layer has one (Gemma-3's layers share one size).
fn window(cfg: &ModelConfig) -> Option<usize> {
    cfg.sliding_window.iter().flatten().next().copied()
}

impl Geometry {
    /// A right-padded batch of `seq` tokens from position 0: tables `[seq, head_dim/2]`,
    /// causal masks `[seq, seq]` (ALiBi: `[1, heads, seq, seq]`).
    pub fn fresh(cfg: &ModelConfig, seq: usize, device: &Device) -> Result<Geometry> {
        let rotary = cfg.positions == Positions::Rotary;
        let tables = |base| rotary_tables(base, cfg.head_dim, seq, device);
        let window = window(cfg);
        let positions: Vec<u32> = (0..seq as u32).collect();
        let alibi = |mask: Tensor| with_alibi(cfg, mask, &positions, 1, device);
        Ok(Geometry {
            global: rotary.then(|| tables(cfg.rope_theta)).transpose()?,
            local: window.filter(|_| rotary).map(|_| tables(cfg.rope_local_base_freq)).transpose()?,
            full_mask: alibi(attention_mask(seq, None, device)?)?,
            window_mask: window.map(|w| alibi(attention_mask(seq, Some(w), device)?)).transpose()?,
            positions,
            rows: 1,
            device: device.clone(),
        })
    }

    /// Samples of `lengths` tokens packed into one row, each from position 0 and seeing only
    /// its own keys (causally, within the window): the same attention as a right-padded
    /// batch of them, without the padding's rows in every other product. Tables
    /// `[Σ lengths, head_dim/2]`, block-diagonal masks `[Σ, Σ]` (ALiBi: `[1, heads, Σ, Σ]`).
    pub fn packed(cfg: &ModelConfig, lengths: &[usize], device: &Device) -> Result<Geometry> {
        let positions: Vec<u32> = lengths.iter().flat_map(|&n| 0..n as u32).collect();
        let longest = lengths.iter().max().copied().unwrap_or(0);
        let at_positions = Tensor::from_vec(positions.clone(), positions.len(), device)?;
        let tables = |base| -> Result<(Tensor, Tensor)> {
            let (cos, sin) = rotary_tables(base, cfg.head_dim, longest, device)?;
            Ok((cos.index_select(&at_positions, 0)?, sin.index_select(&at_positions, 0)?))
        };
        let rotary = cfg.positions == Positions::Rotary;
        let window = window(cfg);
        let alibi = |mask: Tensor| with_alibi(cfg, mask, &positions, 1, device);
        Ok(Geometry {
            global: rotary.then(|| tables(cfg.rope_theta)).transpose()?,
            local: window.filter(|_| rotary).map(|_| tables(cfg.rope_local_base_freq)).transpose()?,
            full_mask: alibi(packed_mask(lengths, None, device)?)?,
            window_mask: window.map(|w| alibi(packed_mask(lengths, Some(w), device)?)).transpose()?,
            positions,
            rows: 1,
            device: device.clone(),
        })
    }

    /// Row r continues a prefix of `prefix_lens[r]` tokens whose keys are padded to `width`:
    /// its token i sits at position `prefix_lens[r] + i`. Tables `[rows, seq, head_dim/2]`;
    /// masks `[rows, 1, seq, width + seq]` over the prefix's keys, then the row's own
    /// (ALiBi: `[rows, heads, seq, width + seq]`).
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
        let at_positions = Tensor::from_vec(positions.clone(), rows * seq, device)?;
        let tables = |base| -> Result<(Tensor, Tensor)> {
            let (cos, sin) = rotary_tables(base, cfg.head_dim, longest, device)?;
            let at = |t: Tensor| t.index_select(&at_positions, 0)?.reshape((rows, seq, cfg.head_dim / 2));
            Ok((at(cos)?, at(sin)?))
        };
        let rotary = cfg.positions == Positions::Rotary;
        let window = window(cfg);
        // The keys' positions: the prefix's j at column j, the row's own after `width`.
        let key_positions: Vec<u32> =
            prefix_lens.iter().flat_map(|&p| (0..width as u32).chain((p..p + seq).map(|k| k as u32))).collect();
        let alibi = |mask: Tensor| with_alibi(cfg, mask, &key_positions, rows, device);
        Ok(Geometry {
            global: rotary.then(|| tables(cfg.rope_theta)).transpose()?,
            local: window.filter(|_| rotary).map(|_| tables(cfg.rope_local_base_freq)).transpose()?,
            full_mask: alibi(prefix_mask(prefix_lens, width, seq, None, device)?)?,
            window_mask: window.map(|w| alibi(prefix_mask(prefix_lens, width, seq, Some(w), device)?)).transpose()?,
            positions,
            rows,
            device: device.clone(),
        })
    }

    /// A layer's rotary tables and mask: a sliding-window layer's when `sliding`, else a
    /// global one's.
    pub fn layer(&self, sliding: bool) -> LayerGeometry<'_> {
        let (tables, mask) = match (sliding, &self.window_mask) {
            (true, Some(mask)) => (self.local.as_ref(), mask),
            _ => (self.global.as_ref(), &self.full_mask),
        };
        LayerGeometry { rotary: tables.map(|(cos, sin)| (cos, sin)), mask }
    }

    /// Rows `position + offset` of a learned position table `[positions, dim]`, as
    /// `[rows, seq, dim]` (rows 1 for a fresh batch: the same for every row); detached, as
    /// the table is frozen.
    pub fn learned_positions(&self, table: &Tensor, offset: usize) -> Result<Tensor> {
        let available = table.dim(0)?;
        let last = self.positions.iter().max().map_or(0, |&p| p as usize + offset);
        if last >= available {
            bail!(
                "a sequence reaches position {}, beyond the model's {} learned positions",
                last - offset,
                available - offset
            );
        }
        let seq = self.positions.len() / self.rows;
        let rows = self.positions.iter().map(|&p| p + offset as u32).collect::<Vec<_>>();
        let rows = Tensor::from_vec(rows, self.positions.len(), &self.device)?;
        Ok(table.index_select(&rows, 0)?.reshape((self.rows, seq, table.dim(1)?))?.detach())
    }
}

/// ALiBi's slope of each head (Press et al.; Bloom's `build_alibi_tensor`): the first power of
/// two `n ≤ heads` gets the geometric sequence `2^(−8i/n)`, i = 1..n; the heads beyond it take
/// every other slope of the sequence for `2n` heads.
pub fn alibi_slopes(heads: usize) -> Vec<f32> {
    let n = 1usize << heads.ilog2();
    let slope = |count: usize, i: usize| 2f64.powf(-8.0 * i as f64 / count as f64) as f32;
    let mut slopes: Vec<f32> = (1..=n).map(|i| slope(n, i)).collect();
    slopes.extend((1..2 * (heads - n)).step_by(2).map(|i| slope(2 * n, i)));
    slopes
}

/// `mask` plus, for an ALiBi model, each head's slope times the key's position: the keys'
/// positions are `rows` rows of the mask's last dimension. Unchanged for other models.
fn with_alibi(cfg: &ModelConfig, mask: Tensor, key_positions: &[u32], rows: usize, device: &Device) -> Result<Tensor> {
    if cfg.positions != Positions::Alibi {
        return Ok(mask);
    }
    let heads = cfg.num_attention_heads;
    let keys = key_positions.len() / rows;
    let slopes = Tensor::from_vec(alibi_slopes(heads), (1, heads, 1, 1), device)?;
    let positions = Tensor::from_vec(key_positions.to_vec(), (rows, 1, 1, keys), device)?.to_dtype(DType::F32)?;
    Ok(slopes.broadcast_mul(&positions)?.broadcast_add(&mask)?)
}

/// Additive mask `[Σ, Σ]` of samples of `lengths` tokens packed one after another: a query
/// sees the keys of its own sample up to itself (within `window` positions when given).
fn packed_mask(lengths: &[usize], window: Option<usize>, device: &Device) -> Result<Tensor> {
    let total: usize = lengths.iter().sum();
    let mut mask = vec![f32::NEG_INFINITY; total * total];
    let mut start = 0;
    for &n in lengths {
        for i in 0..n {
            let visible = (0..=i).filter(|&j| window.is_none_or(|w| i - j < w));
            visible.for_each(|j| mask[(start + i) * total + start + j] = 0.0);
        }
        start += n;
    }
    Ok(Tensor::from_vec(mask, (total, total), device)?)
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

    /// Samples of 3 and 2 tokens, window 2: each sees itself and its own sample's previous token.
    #[test]
    fn a_packed_mask_keeps_each_sample_to_itself() {
        let mask = packed_mask(&[3, 2], Some(2), &Device::Cpu).unwrap();
        let seen: Vec<Vec<bool>> =
            mask.to_vec2::<f32>().unwrap().iter().map(|q| q.iter().map(|&m| m == 0.0).collect()).collect();
        let (o, x) = (true, false);
        assert_eq!(
            seen,
            vec![
                vec![o, x, x, x, x],
                vec![o, o, x, x, x],
                vec![x, o, o, x, x],
                vec![x, x, x, o, x],
                vec![x, x, x, o, o],
            ]
        );
    }

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

    /// Bloom's slopes by hand: 4 heads 2^−2, 2^−4, 2^−6, 2^−8; 6 heads add every other slope
    /// of the 8-head sequence 2^−1, 2^−2, …: 2^−1 and 2^−3.
    #[test]
    fn alibi_slopes_follow_blooms_formula() {
        assert_eq!(alibi_slopes(4), vec![0.25, 0.0625, 0.015625, 0.00390625]);
        assert_eq!(alibi_slopes(6), vec![0.25, 0.0625, 0.015625, 0.00390625, 0.5, 0.125]);
        assert_eq!(alibi_slopes(1), vec![2f32.powi(-8)]);
    }
}
