//! Gemma-3 (text decoder).
//!
//! Differs from llama in: embeddings scaled by √hidden; RMS norms multiply by `1 + w`; four
//! norms per layer (before and after both attention and MLP); RMS norms on queries and keys
//! per head; queries scaled by `query_pre_attn_scalar^-½`; GELU(tanh) MLP; most layers attend
//! within a sliding window (query i sees keys j with i − j < window, as transformers) and use
//! their own rotary base (`rope_local_base_freq`); the others (per `layer_types`) are global
//! with `rope_theta`.
use anyhow::Result;
use candle_core::Tensor;

use super::layers::{attention_mask, rotary_tables, RmsNorm};
use super::{embed, lm_head, Activation, Attention, Builder, GatedMlp, Linear, ModelConfig};

struct Layer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    self_attn: Attention,
    mlp: GatedMlp,
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
            let norm = |b: &Builder, name: &str, dim: usize| b.rms_norm(&format!("{p}.{name}"), dim, eps, true);
            layers.push(Layer {
                input_layernorm: norm(b, "input_layernorm", h)?,
                post_attention_layernorm: norm(b, "post_attention_layernorm", h)?,
                pre_feedforward_layernorm: norm(b, "pre_feedforward_layernorm", h)?,
                post_feedforward_layernorm: norm(b, "post_feedforward_layernorm", h)?,
                q_norm: norm(b, "self_attn.q_norm", d)?,
                k_norm: norm(b, "self_attn.k_norm", d)?,
                self_attn: Attention::load(b, &format!("{p}.self_attn"), cfg)?,
                mlp: GatedMlp::load(b, &format!("{p}.mlp"), cfg)?,
                sliding_window: cfg.sliding_window[i],
            });
        }
        let norm = b.rms_norm("model.norm", h, eps, true)?;
        let lm_head = lm_head(b, cfg, &embed_tokens)?;
        Ok(Gemma3 { cfg: cfg.clone(), embed_tokens, layers, norm, lm_head })
    }

    pub fn hidden_states(&self, ids: &Tensor, training: bool) -> Result<Tensor> {
        let seq = ids.dim(1)?;
        let device = ids.device();
        let d = self.cfg.head_dim;
        let global = rotary_tables(self.cfg.rope_theta, d, seq, device)?;
        let local = rotary_tables(self.cfg.rope_local_base_freq, d, seq, device)?;
        let full_mask = attention_mask(seq, None, device)?;
        let window_mask = self
            .layers
            .iter()
            .find_map(|l| l.sliding_window)
            .map(|w| attention_mask(seq, Some(w), device))
            .transpose()?;
        let scale = self.cfg.query_pre_attn_scalar.powf(-0.5);
        let mut x = (embed(&self.embed_tokens, ids)? * (self.cfg.hidden_size as f64).sqrt())?;
        for layer in &self.layers {
            let ((cos, sin), mask) = match layer.sliding_window {
                Some(_) => (&local, window_mask.as_ref().expect("window mask built")),
                None => (&global, &full_mask),
            };
            let h = layer.input_layernorm.forward(&x)?;
            let attn =
                layer.self_attn.forward(&h, (cos, sin, training), mask, scale, Some((&layer.q_norm, &layer.k_norm)))?;
            x = (&x + layer.post_attention_layernorm.forward(&attn)?)?;
            let mlp = layer.mlp.forward(&layer.pre_feedforward_layernorm.forward(&x)?, Activation::GeluTanh)?;
            x = (x + layer.post_feedforward_layernorm.forward(&mlp)?)?;
        }
        self.norm.forward(&x)
    }
}
