//! OPT (the paper's OPT-1.3B client).
//!
//! Differs from llama in: learned absolute positions (row `position + 2` of the table) added
//! to the token embeddings, no rotary; LayerNorm with a bias; multi-head attention with
//! biases on every projection (`out_proj` for llama's `o_proj`); a plain MLP
//! `fc2(relu(fc1(x)))`; norms before attention and MLP (`do_layer_norm_before`, OPT-125m,
//! 1.3B and up) or after each residual sum (OPT-350m); embeddings narrower than the decoder
//! where `word_embed_proj_dim` says so, widened by `project_in` and narrowed again by
//! `project_out` before the tied output projection.
use anyhow::Result;
use candle_core::Tensor;

use super::layer_norm_block::{run_blocks, LayerNormBlock};
use super::layers::LayerNorm;
use super::{embed, lm_head, Attention, Builder, Decoder, Hidden, Linear, Mlp, ModelConfig, Pass};

/// OPT's position table starts two rows in (rows 0 and 1 were for padding in fairseq).
const POSITION_OFFSET: usize = 2;

pub struct Opt {
    cfg: ModelConfig,
    embed_tokens: Tensor,
    embed_positions: Tensor,
    project_in: Option<Linear>,
    layers: Vec<LayerNormBlock>,
    /// Only with norms before attention and MLP.
    final_layer_norm: Option<LayerNorm>,
    project_out: Option<Linear>,
    lm_head: Linear,
}

impl Opt {
    pub fn load(b: &mut Builder, cfg: &ModelConfig) -> Result<Opt> {
        let (h, e, f, eps) = (cfg.hidden_size, cfg.embed_dim, cfg.intermediate_size, cfg.norm_eps);
        let d = "model.decoder";
        let embed_tokens = b.tensor(&format!("{d}.embed_tokens.weight"), &[cfg.vocab_size, e])?;
        let embed_positions = b.tensor(&format!("{d}.embed_positions.weight"), &[cfg.learned_positions(), h])?;
        let narrow = e != h;
        let project_in = narrow.then(|| b.linear(&format!("{d}.project_in"), e, h, false)).transpose()?;
        let project_out = narrow.then(|| b.linear(&format!("{d}.project_out"), h, e, false)).transpose()?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("{d}.layers.{i}");
            layers.push(LayerNormBlock {
                attn_norm: b.layer_norm(&format!("{p}.self_attn_layer_norm"), h, eps)?,
                attn: Attention::separate(b, &format!("{p}.self_attn"), cfg, "out_proj", true)?,
                mlp_norm: b.layer_norm(&format!("{p}.final_layer_norm"), h, eps)?,
                mlp: Mlp {
                    up: b.linear(&format!("{p}.fc1"), h, f, true)?,
                    down: b.linear(&format!("{p}.fc2"), f, h, true)?,
                },
            });
        }
        let final_layer_norm =
            cfg.pre_norm.then(|| b.layer_norm(&format!("{d}.final_layer_norm"), h, eps)).transpose()?;
        let lm_head = lm_head(b, cfg, &embed_tokens)?;
        Ok(Opt {
            cfg: cfg.clone(),
            embed_tokens,
            embed_positions,
            project_in,
            layers,
            final_layer_norm,
            project_out,
            lm_head,
        })
    }
}

impl Decoder for Opt {
    fn run(&self, pass: &Pass) -> Result<Hidden> {
        let Pass { ids, geometry, .. } = *pass;
        let mut x = embed(&self.embed_tokens, ids)?;
        if let Some(project_in) = &self.project_in {
            x = project_in.forward(&x)?;
        }
        x = x.broadcast_add(&geometry.learned_positions(&self.embed_positions, POSITION_OFFSET)?)?;
        let (mut x, kv) = run_blocks(&self.layers, x, pass, &self.cfg)?;
        if let Some(norm) = &self.final_layer_norm {
            x = norm.forward(&x)?;
        }
        if let Some(project_out) = &self.project_out {
            x = project_out.forward(&x)?;
        }
        Ok((x, kv))
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
