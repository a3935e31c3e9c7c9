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

use super::layers::RmsNorm;
use super::{embed, lm_head, Attention, Builder, Decoder, GatedMlp, Hidden, Linear, ModelConfig, Pass};

struct Layer {
    input_layernorm: RmsNorm,
    post_attention_layernorm: RmsNorm,
    pre_feedforward_layernorm: RmsNorm,
    post_feedforward_layernorm: RmsNorm,
    q_norm: RmsNorm,
    k_norm: RmsNorm,
    self_attn: Attention,
    mlp: GatedMlp,
    /// Attends within the sliding window (its rotary base and mask come from the geometry).
    sliding: bool,
}

pub struct Gemma3 {
    cfg: ModelConfig,
    embed_tokens: Tensor,
    layers: Vec<Layer>,
    norm: RmsNorm,
    lm_head: Linear,
}

impl Gemma3 {
    pub fn load(b: &mut Builder, cfg: &ModelConfig) -> Result<Gemma3> {
        let (h, d, eps) = (cfg.hidden_size, cfg.head_dim, cfg.norm_eps);
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
                self_attn: Attention::separate(b, &format!("{p}.self_attn"), cfg, "o_proj", false)?,
                mlp: GatedMlp::load(b, &format!("{p}.mlp"), cfg)?,
                sliding: cfg.sliding_window[i].is_some(),
            });
        }
        let norm = b.rms_norm("model.norm", h, eps, true)?;
        let lm_head = lm_head(b, cfg, &embed_tokens)?;
        Ok(Gemma3 { cfg: cfg.clone(), embed_tokens, layers, norm, lm_head })
    }
}

impl Decoder for Gemma3 {
    fn run(&self, pass: &Pass) -> Result<Hidden> {
        let Pass { ids, geometry, training, past } = *pass;
        let scale = self.cfg.query_pre_attn_scalar.powf(-0.5);
        let mut x = (embed(&self.embed_tokens, ids)? * (self.cfg.hidden_size as f64).sqrt())?;
        let mut kv = Vec::with_capacity(self.layers.len());
        for (i, layer) in self.layers.iter().enumerate() {
            let h = layer.input_layernorm.forward(&x)?;
            let qk_norm = Some((&layer.q_norm, &layer.k_norm));
            let (attn, layer_kv) = layer.self_attn.forward(
                &h,
                geometry.layer(layer.sliding),
                training,
                scale,
                qk_norm,
                past.map(|p| &p[i]),
            )?;
            kv.push(layer_kv);
            x = (&x + layer.post_attention_layernorm.forward(&attn)?)?;
            let mlp = layer.mlp.forward(&layer.pre_feedforward_layernorm.forward(&x)?, self.cfg.activation)?;
            x = (x + layer.post_feedforward_layernorm.forward(&mlp)?)?;
        }
        Ok((self.norm.forward(&x)?, kv))
    }

    fn lm_head(&self) -> &Linear {
        &self.lm_head
    }
}
