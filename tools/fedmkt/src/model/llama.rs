//! The llama family (LLaMA-2, SmolLM2, TinyLlama, Sheared-LLaMA) and the models that differ
//! from it by one option of the config: Mistral (a sliding window on every layer, query i
//! seeing keys j with i − j < window, as transformers), Qwen2 (q/k/v biases), Qwen3 (RMS norms
//! on queries and keys per head, before the rotary embedding).
//!
//! Pre-norm decoder: `x += attn(norm(x)); x += mlp(norm(x))`, rotary embeddings in
//! rotate-half layout, grouped-query attention, SwiGLU MLP `down(silu(gate(x))·up(x))`.
use anyhow::Result;
use candle_core::Tensor;

use super::layers::RmsNorm;
use super::{embed, lm_head, Attention, Builder, Decoder, GatedMlp, Hidden, Linear, ModelConfig, Pass};

struct Layer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    self_attn: Attention,
    /// Qwen3's per-head query and key norms.
    qk_norm: Option<(RmsNorm, RmsNorm)>,
    mlp: GatedMlp,
    /// Attends within the sliding window (Mistral; Qwen's `use_sliding_window`).
    sliding: bool,
}

pub struct Llama {
    cfg: ModelConfig,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Linear,
}

impl Llama {
    pub fn load(b: &mut Builder, cfg: &ModelConfig) -> Result<Llama> {
        let (h, d, eps) = (cfg.hidden_size, cfg.head_dim, cfg.norm_eps);
        let embed_tokens = b.tensor("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let norm = |b: &Builder, name: &str, dim: usize| b.rms_norm(&format!("{p}.{name}"), dim, eps, false);
            let qk_norm = match cfg.qk_norm {
                true => Some((norm(b, "self_attn.q_norm", d)?, norm(b, "self_attn.k_norm", d)?)),
                false => None,
            };
            layers.push(Layer {
                input_layernorm: norm(b, "input_layernorm", h)?,
                post_attention_layernorm: norm(b, "post_attention_layernorm", h)?,
                self_attn: Attention::separate(b, &format!("{p}.self_attn"), cfg, "o_proj", false)?,
                qk_norm,
                mlp: GatedMlp::load(b, &format!("{p}.mlp"), cfg)?,
                sliding: cfg.sliding_window[i].is_some(),
            });
        }
        let norm = b.rms_norm("model.norm", h, eps, false)?;
        let lm_head = lm_head(b, cfg, &embed_tokens)?;
        Ok(Llama { cfg: cfg.clone(), embed_tokens, layers, norm, lm_head })
    }
}

impl Decoder for Llama {
    fn run(&self, pass: &Pass) -> Result<Hidden> {
        let Pass { ids, geometry, training, past } = *pass;
        let scale = 1.0 / (self.cfg.head_dim as f64).sqrt();
        let mut x = embed(&self.embed_tokens, ids)?;
        let mut kv = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let qk_norm = layer.qk_norm.as_ref().map(|(q, k)| (q, k));
            let (attn, layer_kv) = layer.self_attn.forward(
                &h,
                geometry.layer(layer.sliding),
                training,
                scale,
                qk_norm,
                past.map(|p| &p[i]),
            )?;
            kv.push(layer_kv);
            x = (x + attn)?;
            let mlp = layer.mlp.forward(&layer.post_attention_layernorm.forward(&x)?, self.cfg.activation)?;
            x = (x + mlp)?;
        }
        Ok((self.norm.forward(&x)?, kv))
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
