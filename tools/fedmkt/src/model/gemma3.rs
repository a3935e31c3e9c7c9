//! Gemma-3 (text decoder).
//!
//! Differs from llama in: embeddings scaled by √hidden; RMS norms multiply by `1 + w`; four
//! norms per layer (before and after both attention and MLP); RMS norms on queries and keys
//! per head; queries scaled by `query_pre_attn_scalar^-½`; GELU(tanh) MLP; most layers attend
//! within a sliding window and use their own rotary base (`rope_local_base_freq`), every
//! sixth (per `layer_types`) is global with `rope_theta`.
use anyhow::Result;
use candle_core::Tensor;

use super::layers::{apply_rotary, attention, attention_mask, rotary_tables, RmsNorm};
use super::{embed, merge_heads, split_heads, Builder, Linear, ModelConfig};

struct Layer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
    sliding_window: Option<usize>,
}

pub struct Gemma3 {
    cfg: ModelConfig,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    pub lm_head: Linear,
}

impl Gemma3 {
    pub fn load(b: &mut Builder, cfg: &ModelConfig) -> Result<Gemma3> {
        let (h, d, eps) = (cfg.hidden_size, cfg.head_dim, cfg.rms_norm_eps);
        let embed_tokens = b.tensor("model.embed_tokens.weight", &[cfg.vocab_size, h])?;
        let mut layers = Vec::with_capacity(cfg.num_hidden_layers);
        for i in 0..cfg.num_hidden_layers {
            let p = format!("model.layers.{i}");
            let norm = |name: &str, dim: usize| b.rms_norm(&format!("{p}.{name}"), dim, eps, true);
            let (input, post_attn) = (norm("input_layernorm", h)?, norm("post_attention_layernorm", h)?);
            let (pre_ff, post_ff) = (norm("pre_feedforward_layernorm", h)?, norm("post_feedforward_layernorm", h)?);
            let (q_norm, k_norm) = (norm("self_attn.q_norm", d)?, norm("self_attn.k_norm", d)?);
            layers.push(Layer {
                input_layernorm: input,
                post_attention_layernorm: post_attn,
                pre_feedforward_layernorm: pre_ff,
                post_feedforward_layernorm: post_ff,
                q_norm,
                k_norm,
                q_proj: b.linear(&format!("{p}.self_attn.q_proj"), h, cfg.num_attention_heads * d, cfg.qkv_bias)?,
                k_proj: b.linear(&format!("{p}.self_attn.k_proj"), h, cfg.num_key_value_heads * d, cfg.qkv_bias)?,
                v_proj: b.linear(&format!("{p}.self_attn.v_proj"), h, cfg.num_key_value_heads * d, cfg.qkv_bias)?,
                o_proj: b.linear(&format!("{p}.self_attn.o_proj"), cfg.num_attention_heads * d, h, false)?,
                gate_proj: b.linear(&format!("{p}.mlp.gate_proj"), h, cfg.intermediate_size, false)?,
                up_proj: b.linear(&format!("{p}.mlp.up_proj"), h, cfg.intermediate_size, false)?,
                down_proj: b.linear(&format!("{p}.mlp.down_proj"), cfg.intermediate_size, h, false)?,
                sliding_window: cfg.sliding_window[i],
            });
        }
        let norm = b.rms_norm("model.norm", h, eps, true)?;
        let lm_head = Linear { weight: embed_tokens.clone(), bias: None, lora: None };
        Ok(Gemma3 { cfg: cfg.clone(), embed_tokens, layers, norm, lm_head })
    }

    pub fn hidden_states(&self, ids: &Tensor) -> Result<Tensor> {
        let seq = ids.dim(1)?;
        let device = ids.device();
        let d = self.cfg.head_dim;
        let global = rotary_tables(self.cfg.rope_theta, d, seq, device)?;
        let local = rotary_tables(self.cfg.rope_local_base_freq, d, seq, device)?;
        let full_mask = attention_mask(seq, None, device)?;
        let window_mask = self.layers.iter().find_map(|l| l.sliding_window).map(|w| attention_mask(seq, Some(w), device)).transpose()?;
        let scale = (self.cfg.hidden_size as f64).sqrt();
        let mut x = (embed(&self.embed_tokens, ids)? * scale)?;
        for layer in &self.layers {
            let ((cos, sin), mask) = match layer.sliding_window {
                Some(_) => (&local, window_mask.as_ref().expect("window mask built")),
                None => (&global, &full_mask),
            };
            let attn = self.attention(layer, &layer.input_layernorm.forward(&x)?, cos, sin, mask)?;
            x = (&x + layer.post_attention_layernorm.forward(&attn)?)?;
            let h = layer.pre_feedforward_layernorm.forward(&x)?;
            let mlp = layer.down_proj.forward(&(layer.gate_proj.forward(&h)?.gelu()? * layer.up_proj.forward(&h)?)?)?;
            x = (x + layer.post_feedforward_layernorm.forward(&mlp)?)?;
        }
        self.norm.forward(&x)
    }

    fn attention(&self, layer: &Layer, x: &Tensor, cos: &Tensor, sin: &Tensor, mask: &Tensor) -> Result<Tensor> {
        let (heads, kv_heads, d) = (self.cfg.num_attention_heads, self.cfg.num_key_value_heads, self.cfg.head_dim);
        let q = layer.q_norm.forward(&split_heads(&layer.q_proj.forward(x)?, heads, d)?)?;
        let k = layer.k_norm.forward(&split_heads(&layer.k_proj.forward(x)?, kv_heads, d)?)?;
        let v = split_heads(&layer.v_proj.forward(x)?, kv_heads, d)?;
        let (q, k) = (apply_rotary(&q, cos, sin)?, apply_rotary(&k, cos, sin)?);
        let out = attention(&q, &k, &v, mask, self.cfg.query_pre_attn_scalar.powf(-0.5))?;
        layer.o_proj.forward(&merge_heads(&out)?)
    }
}
