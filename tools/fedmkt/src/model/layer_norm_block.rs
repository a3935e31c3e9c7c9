//! The transformer block of the families before llama (GPT-2, OPT, Bloom): LayerNorm,
//! multi-head attention, LayerNorm, plain MLP, with residual sums. Their files differ only in
//! names, positions and what surrounds the blocks, so the block lives here once.
use anyhow::Result;
use candle_core::Tensor;

use super::geometry::KeyValues;
use super::layers::LayerNorm;
use super::{Attention, Hidden, Mlp, ModelConfig, Pass};

pub struct LayerNormBlock {
    pub attn_norm: LayerNorm,
    pub attn: Attention,
    pub mlp_norm: LayerNorm,
    pub mlp: Mlp,
}

impl LayerNormBlock {
    /// Attention then the MLP, each `x + f(norm(x))` (pre-LN: GPT-2, Bloom, most OPTs) or
    /// `norm(x + f(x))` (post-LN: OPT-350m), as `cfg.pre_norm` says.
    fn forward(
        &self,
        x: Tensor,
        pass: &Pass,
        past: Option<&KeyValues>,
        cfg: &ModelConfig,
    ) -> Result<(Tensor, KeyValues)> {
        let before = |x: &Tensor, norm: &LayerNorm| if cfg.pre_norm { norm.forward(x) } else { Ok(x.clone()) };
        let after = |x: Tensor, norm: &LayerNorm| if cfg.pre_norm { Ok(x) } else { norm.forward(&x) };
        let scale = 1.0 / (cfg.head_dim as f64).sqrt();
        let h = before(&x, &self.attn_norm)?;
        let (attn, kv) = self.attn.forward(&h, pass.geometry.layer(false), pass.training, scale, None, past)?;
        let x = after((x + attn)?, &self.attn_norm)?;
        let mlp = self.mlp.forward(&before(&x, &self.mlp_norm)?, cfg.activation)?;
        Ok((after((x + mlp)?, &self.mlp_norm)?, kv))
    }
}

/// Every block in turn over the embedded input `x`, with each block's keys and values.
pub fn run_blocks(blocks: &[LayerNormBlock], mut x: Tensor, pass: &Pass, cfg: &ModelConfig) -> Result<Hidden> {
    let mut kv = Vec::with_capacity(blocks.len());
    for (i, block) in blocks.iter().enumerate() {
        let (next, block_kv) = block.forward(x, pass, pass.past.map(|p| &p[i]), cfg)?;
        kv.push(block_kv);
        x = next;
    }
    Ok((x, kv))
}
