//! GPT-2 (the paper's GPT-2-xlarge client).
//!
//! Differs from llama in: learned absolute positions added to the token embeddings, no rotary;
//! LayerNorm with a bias; multi-head attention through one projection `c_attn` to
//! `[q | k | v]`; biases on every projection; a plain MLP `c_proj(gelu_new(c_fc(x)))`; every
//! projection a `Conv1D` (weight stored `[in, out]`); the output projection tied to `wte`.
use anyhow::Result;
use candle_core::Tensor;

use super::layer_norm_block::{run_blocks, LayerNormBlock};
use super::layers::LayerNorm;
use super::{embed, lm_head, Attention, Builder, Decoder, Hidden, Linear, Mlp, ModelConfig, Pass, Qkv};

pub struct Gpt2 {
    cfg: ModelConfig,
    wte: Tensor,
    wpe: Tensor,
    layers: Vec<LayerNormBlock>,
    ln_f: LayerNorm,
    lm_head: Linear,
}

impl Gpt2 {
    pub fn load(b: &mut Builder, cfg: &ModelConfig) -> Result<Gpt2> {
        let (h, f, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.norm_eps);
        let wte = b.tensor("transformer.wte.weight", &[cfg.vocab_size, h])?;
        let wpe = b.tensor("transformer.wpe.weight", &[cfg.learned_positions(), h])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("transformer.h.{i}");
            let c_attn = b.conv1d(&format!("{p}.attn.c_attn"), h, 3 * h)?;
            let c_proj = b.conv1d(&format!("{p}.attn.c_proj"), h, h)?;
            layers.push(LayerNormBlock {
                attn_norm: b.layer_norm(&format!("{p}.ln_1"), h, eps)?,
                attn: Attention::new(Qkv::Stacked(c_attn), c_proj, cfg),
                mlp_norm: b.layer_norm(&format!("{p}.ln_2"), h, eps)?,
                mlp: Mlp {
                    up: b.conv1d(&format!("{p}.mlp.c_fc"), h, f)?,
                    down: b.conv1d(&format!("{p}.mlp.c_proj"), f, h)?,
                },
            });
        }
        let ln_f = b.layer_norm("transformer.ln_f", h, eps)?;
        let lm_head = lm_head(b, cfg, &wte)?;
        Ok(Gpt2 { cfg: cfg.clone(), wte, wpe, layers, ln_f, lm_head })
    }
}

impl Decoder for Gpt2 {
    fn run(&self, pass: &Pass) -> Result<Hidden> {
        let Pass { ids, geometry, .. } = *pass;
        let x = embed(&self.wte, ids)?.broadcast_add(&geometry.learned_positions(&self.wpe, 0)?)?;
        let (x, kv) = run_blocks(&self.layers, x, pass, &self.cfg)?;
        Ok((self.ln_f.forward(&x)?, kv))
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
