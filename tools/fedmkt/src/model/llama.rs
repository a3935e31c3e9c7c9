//! The llama family (LLaMA-2, SmolLM2, TinyLlama, Sheared-LLaMA, Mistral; Qwen2 with q/k/v bias).
//!
//! Pre-norm decoder: `x += attn(norm(x)); x += mlp(norm(x))`, rotary embeddings in
//! rotate-half layout, grouped-query attention, SwiGLU MLP `down(silu(gate(x))·up(x))`.
use anyhow::Result;
use candle_core::Tensor;

use super::geometry::{Geometry, KeyValues};
use super::layers::RmsNorm;
use super::{embed, lm_head, Activation, Attention, Builder, GatedMlp, Linear, ModelConfig};

struct Layer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    self_attn: Attention,
    mlp: GatedMlp,
}

pub struct Llama {
    cfg: ModelConfig,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    pub lm_head: Linear,
}

impl Llama {
    pub fn load(b: &mut Builder, cfg: &ModelConfig) -> Result<Llama> {
        let (h, eps) = (cfg.hidden_size, cfg.rms_norm_eps);
        let embed_tokens = b.tensor("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(Layer {
                input_layernorm: b.rms_norm(&format!("{p}.input_layernorm"), h, eps, false)?,
                post_attention_layernorm: b.rms_norm(&format!("{p}.post_attention_layernorm"), h, eps, false)?,
                self_attn: Attention::load(b, &format!("{p}.self_attn"), cfg)?,
                mlp: GatedMlp::load(b, &format!("{p}.mlp"), cfg)?,
            });
        }
        let norm = b.rms_norm("model.norm", h, eps, false)?;
        let lm_head = lm_head(b, cfg, &embed_tokens)?;
        Ok(Llama { cfg: cfg.clone(), embed_tokens, layers, norm, lm_head })
    }

    /// Final hidden states, and each layer's keys and values, of `ids` placed by `geometry`
    /// after `past` (a cached prefix's keys and values per layer).
    pub fn run(
        &self,
        ids: &Tensor,
        geometry: &Geometry,
        training: bool,
        past: Option<&[KeyValues]>,
    ) -> Result<(Tensor, Vec<KeyValues>)> {
        let (cos, sin, mask) = geometry.layer(false);
        let scale = 1.0 / (self.cfg.head_dim as f64).sqrt();
        let mut x = embed(&self.embed_tokens, ids)?;
        let mut kv = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let (attn, layer_kv) =
                layer.self_attn.forward(&h, (cos, sin, training), mask, scale, None, past.map(|p| &p[i]))?;
            kv.push(layer_kv);
            x = (x + attn)?;
            let mlp = layer.mlp.forward(&layer.post_attention_layernorm.forward(&x)?, Activation::Silu)?;
            x = (x + mlp)?;
        }
        Ok((self.norm.forward(&x)?, kv))
    }
}
