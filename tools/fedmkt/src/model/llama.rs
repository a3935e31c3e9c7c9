//! The llama family (LLaMA-2, SmolLM2, TinyLlama, Sheared-LLaMA, Mistral; Qwen2 with q/k/v bias).
//!
//! Pre-norm decoder: `x += attn(norm(x)); x += mlp(norm(x))`, rotary embeddings in
//! rotate-half layout, grouped-query attention, SwiGLU MLP `down(silu(gate(x))·up(x))`.
use anyhow::Result;
use candle_core::Tensor;

use super::layers::{apply_rotary, attention, attention_mask, rotary_tables, RmsNorm};
use super::{embed, merge_heads, split_heads, Builder, Linear, ModelConfig};

struct Layer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
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
        let (h, d, eps) = (cfg.hidden_size, cfg.head_dim, cfg.rms_norm_eps);
        let embed_tokens = b.tensor("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            layers.push(Layer {
                input_layernorm: b.rms_norm(&format!("{p}.input_layernorm"), h, eps, false)?,
                post_attention_layernorm: b.rms_norm(&format!("{p}.post_attention_layernorm"), h, eps, false)?,
                q_proj: b.linear(&format!("{p}.self_attn.q_proj"), h, cfg.num_attention_heads * d, cfg.qkv_bias)?,
                k_proj: b.linear(&format!("{p}.self_attn.k_proj"), h, cfg.num_key_value_heads * d, cfg.qkv_bias)?,
                v_proj: b.linear(&format!("{p}.self_attn.v_proj"), h, cfg.num_key_value_heads * d, cfg.qkv_bias)?,
                o_proj: b.linear(&format!("{p}.self_attn.o_proj"), cfg.num_attention_heads * d, h, false)?,
                gate_proj: b.linear(&format!("{p}.mlp.gate_proj"), h, cfg.intermediate_size, false)?,
                up_proj: b.linear(&format!("{p}.mlp.up_proj"), h, cfg.intermediate_size, false)?,
                down_proj: b.linear(&format!("{p}.mlp.down_proj"), cfg.intermediate_size, h, false)?,
            });
        }
        let norm = b.rms_norm("model.norm", h, eps, false)?;
        let lm_head = if cfg.tie_word_embeddings || !b.has("lm_head.weight") {
            Linear { weight: embed_tokens.clone(), bias: None, lora: None }
        } else {
            b.linear("lm_head", h, cfg.vocab_size, false)?
        };
        Ok(Llama { cfg: cfg.clone(), embed_tokens, layers, norm, lm_head })
    }

    pub fn hidden_states(&self, ids: &Tensor) -> Result<Tensor> {
        let seq = ids.dim(1)?;
        let device = ids.device();
        let (cos, sin) = rotary_tables(self.cfg.rope_theta, self.cfg.head_dim, seq, device)?;
        let mask = attention_mask(seq, None, device)?;
        let mut x = embed(&self.embed_tokens, ids)?;
        for layer in &self.layers {
            x = (&x + self.attention(layer, &layer.input_layernorm.forward(&x)?, &cos, &sin, &mask)?)?;
            let h = layer.post_attention_layernorm.forward(&x)?;
            let mlp = layer.down_proj.forward(&(layer.gate_proj.forward(&h)?.silu()? * layer.up_proj.forward(&h)?)?)?;
            x = (x + mlp)?;
        }
        self.norm.forward(&x)
    }

    fn attention(&self, layer: &Layer, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (heads, kv_heads, d) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim);
        let q = apply_rotary(&split_heads(&layer.q_proj.forward(x)?, heads, d)?, cos, sin)?;
        let k = apply_rotary(&split_heads(&layer.k_proj.forward(x)?, kv_heads, d)?, cos, sin)?;
        let v = split_heads(&layer.v_proj.forward(x)?, kv_heads, d)?;
        let out = attention(&q, &k, &v, mask, 1.0 / (d as f64).sqrt())?;
        layer.o_proj.forward(&merge_heads(&out)?)
    }
}
