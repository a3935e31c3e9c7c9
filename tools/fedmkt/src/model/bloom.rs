//! Bloom (the paper's Bloom-1.1B client).
//!
//! Differs from llama in: no position embeddings, ALiBi instead (each head's attention scores
//! plus its slope times the key's position, folded into the masks by the geometry); a
//! LayerNorm on the token embeddings; LayerNorm with a bias; multi-head attention through one
//! projection `query_key_value` to `[q k v]` per head; biases on every projection; a plain
//! MLP `dense_4h_to_h(gelu(dense_h_to_4h(x)))` (GELU's tanh approximation); the output
//! projection tied to the embeddings.
use anyhow::Result;
use candle_core::Tensor;

use super::layer_norm_block::{run_blocks, LayerNormBlock};
use super::layers::LayerNorm;
use super::{embed, lm_head, Attention, Builder, Decoder, Hidden, Linear, Mlp, ModelConfig, Pass, Qkv};

pub struct Bloom {
    cfg: ModelConfig,
    word_embeddings: Tensor,
    word_embeddings_layernorm: LayerNorm,
    layers: Vec<LayerNormBlock>,
    ln_f: LayerNorm,
    lm_head: Linear,
}

impl Bloom {
    pub fn load(b: &mut Builder, cfg: &ModelConfig) -> Result<Bloom> {
        let (h, f, eps) = (cfg.hidden_size, cfg.intermediate_size, cfg.norm_eps);
        let word_embeddings = b.tensor("transformer.word_embeddings.weight", &[cfg.vocab_size, h])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("transformer.h.{i}");
            let qkv = b.linear(&format!("{p}.self_attention.query_key_value"), h, 3 * h, true)?;
            let dense = b.linear(&format!("{p}.self_attention.dense"), h, h, true)?;
            layers.push(LayerNormBlock {
                attn_norm: b.layer_norm(&format!("{p}.input_layernorm"), h, eps)?,
                attn: Attention::new(Qkv::PerHead(qkv), dense, cfg),
                mlp_norm: b.layer_norm(&format!("{p}.post_attention_layernorm"), h, eps)?,
                mlp: Mlp {
                    up: b.linear(&format!("{p}.mlp.dense_h_to_4h"), h, f, true)?,
                    down: b.linear(&format!("{p}.mlp.dense_4h_to_h"), f, h, true)?,
                },
            });
        }
        Ok(Bloom {
            cfg: cfg.clone(),
            word_embeddings_layernorm: b.layer_norm("transformer.word_embeddings_layernorm", h, eps)?,
            layers,
            ln_f: b.layer_norm("transformer.ln_f", h, eps)?,
            lm_head: lm_head(b, cfg, &word_embeddings)?,
            word_embeddings,
        })
    }
}

impl Decoder for Bloom {
    fn run(&self, pass: &Pass) -> Result<Hidden> {
        let x = self.word_embeddings_layernorm.forward(&embed(&self.word_embeddings, pass.ids)?)?;
        let (x, kv) = run_blocks(&self.layers, x, pass, &self.cfg)?;
        Ok((self.ln_f.forward(&x)?, kv))
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
