//! `config.json` of a Hugging Face model folder, reduced to what our architectures read.
//! Options we do not implement are refused by name, never ignored.
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use crate::cli::bad_input;

/// The architectures we can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// LLaMA-2, SmolLM2, TinyLlama, Sheared-LLaMA; Mistral (a sliding window), Qwen2 (q/k/v
    /// bias), Qwen3 (q/k RMS norms).
    Llama,
    Gemma3,
}

/// Hyper-parameters of a decoder, in Hugging Face's names.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    pub arch: Arch,
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    /// Epsilon of the norms (`rms_norm_eps`).
    pub norm_eps: f64,
    pub rope_theta: f64,
    pub tie_word_embeddings: bool,
    /// Bias on q/k/v projections (Qwen2).
    pub qkv_bias: bool,
    /// RMS norms on queries and keys per head before the rotary embedding (Qwen3, Gemma-3).
    pub qk_norm: bool,
    /// Per layer, the sliding window (None = global attention): Gemma-3, Mistral, Qwen's
    /// `use_sliding_window`.
    pub sliding_window: Vec<Option<usize>>,
    /// Rotary base of sliding-window layers (Gemma-3's own; the others use `rope_theta`).
    pub rope_local_base_freq: f64,
    /// Gemma-3: queries are scaled by `query_pre_attn_scalar^-1/2`.
    pub query_pre_attn_scalar: f64,
    pub final_logit_softcapping: Option<f64>,
}

impl ModelConfig {
    pub fn from_file(path: &Path) -> Result<ModelConfig> {
        let text = std::fs::read_to_string(path).map_err(|e| bad_input(path, format!("cannot read: {e}")))?;
        let json: Value = serde_json::from_str(&text).map_err(|e| bad_input(path, format!("not JSON ({e})")))?;
        Self::from_json(&json).map_err(|problem| bad_input(path, problem))
    }

    pub fn from_json(json: &Value) -> std::result::Result<ModelConfig, String> {
        let model_type = json.get("model_type").and_then(Value::as_str).ok_or("no 'model_type'")?.to_string();
        let arch = match model_type.as_str() {
            "llama" | "mistral" | "qwen2" | "qwen3" => Arch::Llama,
            "gemma3_text" | "gemma3" => Arch::Gemma3,
            other => {
                return Err(format!(
                    "architecture '{other}' is not supported (supported: llama, mistral, qwen2, qwen3, gemma3_text)"
                ))
            }
        };
        // Gemma-3 multimodal configs nest the decoder's fields under `text_config`.
        let json = json.get("text_config").unwrap_or(json);
        let uint =
            |key: &str| json.get(key).and_then(Value::as_u64).map(|v| v as usize).ok_or(format!("no integer '{key}'"));
        let float = |key: &str, default: f64| json.get(key).and_then(Value::as_f64).unwrap_or(default);
        let hidden_size = uint("hidden_size")?;
        let num_attention_heads = uint("num_attention_heads")?;
        let num_hidden_layers = uint("num_hidden_layers")?;
        let head_dim =
            json.get("head_dim").and_then(Value::as_u64).map_or(hidden_size / num_attention_heads, |v| v as usize);
        let rope_theta = rope_theta(json)?;
        if arch == Arch::Llama {
            refuse_unless(json, "hidden_act", &["silu"])?;
            refuse_unless(json, "mlp_bias", &[false])?;
        }
        let sliding_window = match model_type.as_str() {
            "mistral" => mistral_windows(json, num_hidden_layers),
            "qwen2" | "qwen3" => qwen_windows(json, num_hidden_layers)?,
            "llama" => vec![None; num_hidden_layers],
            _ => windows_by_layer_type(json, num_hidden_layers)?,
        };
        Ok(ModelConfig {
            arch,
            vocab_size: uint("vocab_size")?,
            hidden_size,
            intermediate_size: uint("intermediate_size")?,
            num_hidden_layers,
            num_attention_heads,
            num_key_value_heads: json
                .get("num_key_value_heads")
                .and_then(Value::as_u64)
                .map_or(num_attention_heads, |v| v as usize),
            head_dim,
            norm_eps: float("rms_norm_eps", 1e-6),
            rope_theta,
            tie_word_embeddings: json
                .get("tie_word_embeddings")
                .and_then(Value::as_bool)
                .unwrap_or(arch == Arch::Gemma3),
            qkv_bias: model_type == "qwen2" || json.get("attention_bias").and_then(Value::as_bool).unwrap_or(false),
            qk_norm: model_type == "qwen3" || arch == Arch::Gemma3,
            sliding_window,
            rope_local_base_freq: float(
                "rope_local_base_freq",
                if arch == Arch::Gemma3 { 10_000.0 } else { rope_theta },
            ),
            query_pre_attn_scalar: float("query_pre_attn_scalar", head_dim as f64),
            final_logit_softcapping: json.get("final_logit_softcapping").and_then(Value::as_f64),
            model_type,
        })
    }
}

/// The rotary base: `rope_theta`, or transformers 5's `rope_parameters` (its default rope type
/// only: a scaled rotary embedding is refused, not ignored).
fn rope_theta(json: &Value) -> std::result::Result<f64, String> {
    if let Some(scaling) = json.get("rope_scaling").filter(|v| !v.is_null()) {
        return Err(format!("rope_scaling {scaling} is not supported"));
    }
    let parameters = json.get("rope_parameters").filter(|v| !v.is_null());
    if let Some(kind) = parameters.and_then(|p| p.get("rope_type")).filter(|t| t.as_str() != Some("default")) {
        return Err(format!("rope_parameters.rope_type {kind} is not supported (only \"default\")"));
    }
    let theta = parameters.and_then(|p| p.get("rope_theta")).or_else(|| json.get("rope_theta"));
    Ok(theta.and_then(Value::as_f64).unwrap_or(10_000.0))
}

/// Refuse a config whose `key`, when present, is not one of the values we implement.
fn refuse_unless<T: Into<Value> + Copy>(json: &Value, key: &str, allowed: &[T]) -> std::result::Result<(), String> {
    match json.get(key).filter(|v| !v.is_null()) {
        Some(value) if !allowed.iter().any(|a| &(*a).into() == value) => Err(format!("{key} {value} is not supported")),
        _ => Ok(()),
    }
}

/// Mistral: every layer within `sliding_window` (null: none).
fn mistral_windows(json: &Value, layers: usize) -> Vec<Option<usize>> {
    vec![json.get("sliding_window").and_then(Value::as_u64).map(|w| w as usize); layers]
}

/// Qwen2/Qwen3: no window unless `use_sliding_window`; then `layer_types`, or the layers from
/// `max_window_layers` on (transformers' rule).
fn qwen_windows(json: &Value, layers: usize) -> std::result::Result<Vec<Option<usize>>, String> {
    if !json.get("use_sliding_window").and_then(Value::as_bool).unwrap_or(false) {
        return Ok(vec![None; layers]);
    }
    if json.get("layer_types").is_some() {
        return windows_by_layer_type(json, layers);
    }
    let window = json.get("sliding_window").and_then(Value::as_u64).ok_or("no integer 'sliding_window'")? as usize;
    let first = json.get("max_window_layers").and_then(Value::as_u64).unwrap_or(layers as u64) as usize;
    Ok((0..layers).map(|i| (i >= first).then_some(window)).collect())
}

/// Which layers use a sliding window: `layer_types` when present, else (Gemma-3) every
/// `sliding_window_pattern`-th layer is global.
fn windows_by_layer_type(json: &Value, layers: usize) -> std::result::Result<Vec<Option<usize>>, String> {
    let window = json.get("sliding_window").and_then(Value::as_u64).ok_or("no integer 'sliding_window'")? as usize;
    if let Some(types) = json.get("layer_types").and_then(Value::as_array) {
        if types.len() != layers {
            return Err(format!("'layer_types' has {} entries for {layers} layers", types.len()));
        }
        return types
            .iter()
            .map(|t| match t.as_str() {
                Some("sliding_attention") => Ok(Some(window)),
                Some("full_attention") => Ok(None),
                other => Err(format!("unknown layer type {other:?}")),
            })
            .collect();
    }
    let pattern = json
        .get("sliding_window_pattern")
        .or_else(|| json.get("_sliding_window_pattern"))
        .and_then(Value::as_u64)
        .unwrap_or(6) as usize;
    Ok((1..=layers).map(|i| if i % pattern == 0 { None } else { Some(window) }).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config(extra: Value) -> std::result::Result<ModelConfig, String> {
        let mut json = json!({"model_type": "qwen3", "vocab_size": 8, "hidden_size": 8, "intermediate_size": 16,
                              "num_hidden_layers": 3, "num_attention_heads": 2});
        json.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        ModelConfig::from_json(&json)
    }

    #[test]
    fn options_we_do_not_implement_are_refused_by_name() {
        let yarn = config(json!({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e6}})).unwrap_err();
        assert_eq!(yarn, r#"rope_parameters.rope_type "yarn" is not supported (only "default")"#);
        assert!(config(json!({"rope_scaling": {"type": "linear"}})).unwrap_err().starts_with("rope_scaling"));
        assert_eq!(config(json!({"hidden_act": "gelu"})).unwrap_err(), r#"hidden_act "gelu" is not supported"#);
        assert_eq!(config(json!({"mlp_bias": true})).unwrap_err(), "mlp_bias true is not supported");
        assert!(config(json!({"model_type": "gpt_neox"})).unwrap_err().contains("'gpt_neox' is not supported"));
    }

    #[test]
    fn windows_follow_transformers_rules() {
        let theta = config(json!({"rope_parameters": {"rope_type": "default", "rope_theta": 1e6}})).unwrap();
        assert_eq!((theta.rope_theta, theta.rope_local_base_freq), (1e6, 1e6));
        let qwen = config(json!({"use_sliding_window": true, "sliding_window": 4, "max_window_layers": 1})).unwrap();
        assert_eq!(qwen.sliding_window, vec![None, Some(4), Some(4)]);
        let off = config(json!({"use_sliding_window": false, "sliding_window": 4})).unwrap();
        assert_eq!(off.sliding_window, vec![None; 3]);
        let mistral = config(json!({"model_type": "mistral", "sliding_window": 4})).unwrap();
        assert_eq!(mistral.sliding_window, vec![Some(4); 3]);
        assert!(!mistral.qk_norm && config(json!({})).unwrap().qk_norm);
    }
}
