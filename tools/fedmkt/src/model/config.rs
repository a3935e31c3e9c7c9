//! `config.json` of a Hugging Face model folder, reduced to what our architectures read.
//! Options we do not implement are refused by name, never ignored.
use std::path::Path;

use anyhow::Result;
use serde_json::Value;

use super::Activation;
use crate::cli::bad_input;

/// The architectures we can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    /// LLaMA-2, SmolLM2, TinyLlama, Sheared-LLaMA; Mistral (a sliding window), Qwen2 (q/k/v
    /// bias), Qwen3 (q/k RMS norms).
    Llama,
    Gemma3,
    Gpt2,
    Opt,
    Bloom,
}

impl Arch {
    /// The modules LoRA adapts unless told otherwise: PEFT's defaults for the model type
    /// (GPT-2 `c_attn`, OPT `q_proj`/`v_proj`, Bloom `query_key_value`), which are also what
    /// the authors' code adapts on those SLMs; for the llama family and Gemma-3 all four
    /// attention projections, the authors' LLM setting (PEFT's own default there is q and v).
    pub fn default_lora_targets(self) -> &'static [&'static str] {
        match self {
            Arch::Llama | Arch::Gemma3 => &["q_proj", "k_proj", "v_proj", "o_proj"],
            Arch::Gpt2 => &["c_attn"],
            Arch::Opt => &["q_proj", "v_proj"],
            Arch::Bloom => &["query_key_value"],
        }
    }
}

/// How a model knows where a token sits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Positions {
    /// Rotary embeddings of queries and keys (llama, Gemma-3).
    Rotary,
    /// A learned table of `rows` rows added to the token embeddings (GPT-2, OPT).
    Learned { rows: usize },
    /// ALiBi: a bias on every head's attention scores, its slope times the key's position (Bloom).
    Alibi,
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
    pub positions: Positions,
    /// The MLP's activation (of the gate in a gated MLP).
    pub activation: Activation,
    /// Width of the token embeddings where it differs from `hidden_size` (OPT-350m's
    /// `word_embed_proj_dim`, bridged by `project_in`/`project_out`).
    pub embed_dim: usize,
    /// Norms before attention and MLP (pre-LN); OPT-350m normalises after the residual sum.
    pub pre_norm: bool,
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
            "gpt2" => Arch::Gpt2,
            "opt" => Arch::Opt,
            "bloom" => Arch::Bloom,
            other => {
                return Err(format!(
                    "architecture '{other}' is not supported (supported: llama, mistral, qwen2, qwen3, gemma3_text, gpt2, opt, bloom)"
                ))
            }
        };
        // Gemma-3 multimodal configs nest the decoder's fields under `text_config`.
        let json = json.get("text_config").unwrap_or(json);
        match arch {
            Arch::Llama | Arch::Gemma3 => rotary_family(json, arch, model_type),
            Arch::Gpt2 => gpt2(json),
            Arch::Opt => opt(json),
            Arch::Bloom => bloom(json),
        }
    }

    /// Rows of the learned position table (GPT-2, OPT); 0 for the others.
    pub fn learned_positions(&self) -> usize {
        match self.positions {
            Positions::Learned { rows } => rows,
            Positions::Rotary | Positions::Alibi => 0,
        }
    }

    /// A decoder of these sizes in multi-head attention with the defaults of the families
    /// before llama (no window, no rotary settings); each family then sets what it has.
    fn multi_head(arch: Arch, sizes: Sizes, positions: Positions, activation: Activation) -> ModelConfig {
        let Sizes { vocab, hidden, intermediate, layers, heads, eps } = sizes;
        ModelConfig {
            arch,
            model_type: String::new(),
            vocab_size: vocab,
            hidden_size: hidden,
            intermediate_size: intermediate,
            num_hidden_layers: layers,
            num_attention_heads: heads,
            num_key_value_heads: heads,
            head_dim: hidden / heads,
            norm_eps: eps,
            rope_theta: 10_000.0,
            tie_word_embeddings: true,
            qkv_bias: true,
            qk_norm: false,
            sliding_window: vec![None; layers],
            rope_local_base_freq: 10_000.0,
            query_pre_attn_scalar: (hidden / heads) as f64,
            final_logit_softcapping: None,
            positions,
            activation,
            embed_dim: hidden,
            pre_norm: true,
        }
    }
}

/// The sizes every decoder has, whatever its config calls them.
struct Sizes {
    vocab: usize,
    hidden: usize,
    intermediate: usize,
    layers: usize,
    heads: usize,
    eps: f64,
}

fn uint(json: &Value, key: &str) -> std::result::Result<usize, String> {
    json.get(key).and_then(Value::as_u64).map(|v| v as usize).ok_or(format!("no integer '{key}'"))
}

/// `key` when present and not null, else `default`.
fn uint_or(json: &Value, key: &str, default: usize) -> usize {
    json.get(key).and_then(Value::as_u64).map_or(default, |v| v as usize)
}

fn bool_or(json: &Value, key: &str, default: bool) -> bool {
    json.get(key).and_then(Value::as_bool).unwrap_or(default)
}

/// `activation_function`, in transformers' names for the activations we implement; absent,
/// the family's default (transformers' config class default).
fn activation(json: &Value, key: &str, default: &str) -> std::result::Result<Activation, String> {
    let value = json.get(key).cloned().unwrap_or_else(|| default.into());
    match value.as_str() {
        Some("gelu_new" | "gelu_pytorch_tanh" | "gelu_fast") => Ok(Activation::GeluTanh),
        Some("relu") => Ok(Activation::Relu),
        Some("silu" | "swish") => Ok(Activation::Silu),
        _ => Err(format!("{key} {value} is not supported (gelu_new, relu, silu)")),
    }
}

/// The llama family and Gemma-3: rotary positions, RMS norms, gated MLP.
fn rotary_family(json: &Value, arch: Arch, model_type: String) -> std::result::Result<ModelConfig, String> {
    let hidden_size = uint(json, "hidden_size")?;
    let num_attention_heads = uint(json, "num_attention_heads")?;
    let num_hidden_layers = uint(json, "num_hidden_layers")?;
    let head_dim = uint_or(json, "head_dim", hidden_size / num_attention_heads);
    let float = |key: &str, default: f64| json.get(key).and_then(Value::as_f64).unwrap_or(default);
    let rope_theta = rope_theta(json)?;
    let activation = if arch == Arch::Llama {
        refuse_unless(json, "hidden_act", &["silu"])?;
        refuse_unless(json, "mlp_bias", &[false])?;
        Activation::Silu
    } else {
        Activation::GeluTanh
    };
    let sliding_window = match model_type.as_str() {
        "mistral" => mistral_windows(json, num_hidden_layers),
        "qwen2" | "qwen3" => qwen_windows(json, num_hidden_layers)?,
        "llama" => vec![None; num_hidden_layers],
        _ => windows_by_layer_type(json, num_hidden_layers)?,
    };
    Ok(ModelConfig {
        arch,
        vocab_size: uint(json, "vocab_size")?,
        hidden_size,
        intermediate_size: uint(json, "intermediate_size")?,
        num_hidden_layers,
        num_attention_heads,
        num_key_value_heads: uint_or(json, "num_key_value_heads", num_attention_heads),
        head_dim,
        norm_eps: float("rms_norm_eps", 1e-6),
        rope_theta,
        tie_word_embeddings: bool_or(json, "tie_word_embeddings", arch == Arch::Gemma3),
        qkv_bias: model_type == "qwen2" || bool_or(json, "attention_bias", false),
        qk_norm: model_type == "qwen3" || arch == Arch::Gemma3,
        sliding_window,
        rope_local_base_freq: float("rope_local_base_freq", if arch == Arch::Gemma3 { 10_000.0 } else { rope_theta }),
        query_pre_attn_scalar: float("query_pre_attn_scalar", head_dim as f64),
        final_logit_softcapping: json.get("final_logit_softcapping").and_then(Value::as_f64),
        positions: Positions::Rotary,
        activation,
        embed_dim: hidden_size,
        pre_norm: true,
        model_type,
    })
}

/// GPT-2: learned positions from 0, `n_inner` (null: 4 × `n_embd`) wide MLP.
fn gpt2(json: &Value) -> std::result::Result<ModelConfig, String> {
    refuse_unless(json, "scale_attn_weights", &[true])?;
    refuse_unless(json, "scale_attn_by_inverse_layer_idx", &[false])?;
    refuse_unless(json, "add_cross_attention", &[false])?;
    let hidden = uint(json, "n_embd")?;
    let sizes = Sizes {
        vocab: uint(json, "vocab_size")?,
        hidden,
        intermediate: uint_or(json, "n_inner", 4 * hidden),
        layers: uint(json, "n_layer")?,
        heads: uint(json, "n_head")?,
        eps: json.get("layer_norm_epsilon").and_then(Value::as_f64).unwrap_or(1e-5),
    };
    let positions = Positions::Learned { rows: uint(json, "n_positions")? };
    let activation = activation(json, "activation_function", "gelu_new")?;
    Ok(ModelConfig { model_type: "gpt2".into(), ..ModelConfig::multi_head(Arch::Gpt2, sizes, positions, activation) })
}

/// OPT: learned positions offset by 2, biases everywhere, pre- or post-LayerNorm, and
/// embeddings narrower than the decoder where `word_embed_proj_dim` says so.
fn opt(json: &Value) -> std::result::Result<ModelConfig, String> {
    refuse_unless(json, "enable_bias", &[true])?;
    refuse_unless(json, "layer_norm_elementwise_affine", &[true])?;
    refuse_unless(json, "_remove_final_layer_norm", &[false])?;
    let hidden = uint(json, "hidden_size")?;
    let sizes = Sizes {
        vocab: uint(json, "vocab_size")?,
        hidden,
        intermediate: uint(json, "ffn_dim")?,
        layers: uint(json, "num_hidden_layers")?,
        heads: uint(json, "num_attention_heads")?,
        eps: 1e-5,
    };
    // OPT's table has two rows before position 0 (fairseq's padding).
    let positions = Positions::Learned { rows: uint(json, "max_position_embeddings")? + 2 };
    let activation = activation(json, "activation_function", "relu")?;
    Ok(ModelConfig {
        model_type: "opt".into(),
        tie_word_embeddings: bool_or(json, "tie_word_embeddings", true),
        embed_dim: uint_or(json, "word_embed_proj_dim", hidden),
        pre_norm: bool_or(json, "do_layer_norm_before", true),
        ..ModelConfig::multi_head(Arch::Opt, sizes, positions, activation)
    })
}

/// Bloom: ALiBi, a LayerNorm on the embeddings, a 4 × hidden GELU MLP.
fn bloom(json: &Value) -> std::result::Result<ModelConfig, String> {
    refuse_unless(json, "apply_residual_connection_post_layernorm", &[false])?;
    let hidden = uint(json, "hidden_size")?;
    let sizes = Sizes {
        vocab: uint(json, "vocab_size")?,
        hidden,
        intermediate: 4 * hidden,
        layers: uint(json, "n_layer")?,
        heads: uint(json, "n_head")?,
        eps: json.get("layer_norm_epsilon").and_then(Value::as_f64).unwrap_or(1e-5),
    };
    Ok(ModelConfig {
        model_type: "bloom".into(),
        ..ModelConfig::multi_head(Arch::Bloom, sizes, Positions::Alibi, Activation::GeluTanh)
    })
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

    fn family(model_type: &str, sizes: Value, extra: Value) -> std::result::Result<ModelConfig, String> {
        let mut json = sizes;
        json.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        json["model_type"] = model_type.into();
        ModelConfig::from_json(&json)
    }

    fn gpt2(extra: Value) -> std::result::Result<ModelConfig, String> {
        let sizes = json!({"vocab_size": 8, "n_embd": 8, "n_layer": 2, "n_head": 2, "n_positions": 16});
        family("gpt2", sizes, extra)
    }

    fn opt(extra: Value) -> std::result::Result<ModelConfig, String> {
        let sizes = json!({"vocab_size": 8, "hidden_size": 8, "ffn_dim": 16, "num_hidden_layers": 2,
                           "num_attention_heads": 2, "max_position_embeddings": 16});
        family("opt", sizes, extra)
    }

    fn bloom(extra: Value) -> std::result::Result<ModelConfig, String> {
        family("bloom", json!({"vocab_size": 8, "hidden_size": 8, "n_layer": 2, "n_head": 2}), extra)
    }

    #[test]
    fn the_papers_client_families_read_their_own_keys() {
        let gpt2 = gpt2(json!({})).unwrap();
        assert_eq!((gpt2.intermediate_size, gpt2.learned_positions(), gpt2.activation), (32, 16, Activation::GeluTanh));
        let opt = opt(json!({"do_layer_norm_before": false, "word_embed_proj_dim": 4})).unwrap();
        assert_eq!((opt.learned_positions(), opt.embed_dim, opt.pre_norm), (18, 4, false));
        assert_eq!(opt.activation, Activation::Relu);
        let bloom = bloom(json!({})).unwrap();
        assert_eq!((bloom.positions, bloom.intermediate_size, bloom.embed_dim), (Positions::Alibi, 32, 8));
    }

    #[test]
    fn options_of_the_papers_client_families_we_do_not_implement_are_refused_by_name() {
        let refused = [
            gpt2(json!({"scale_attn_by_inverse_layer_idx": true})),
            gpt2(json!({"add_cross_attention": true})),
            gpt2(json!({"activation_function": "gelu"})),
            opt(json!({"enable_bias": false})),
            opt(json!({"_remove_final_layer_norm": true})),
            bloom(json!({"apply_residual_connection_post_layernorm": true})),
        ];
        let messages: Vec<String> = refused.into_iter().map(Result::unwrap_err).collect();
        assert_eq!(messages[0], "scale_attn_by_inverse_layer_idx true is not supported");
        assert_eq!(messages[2], r#"activation_function "gelu" is not supported (gelu_new, relu, silu)"#);
        assert_eq!(messages[5], "apply_residual_connection_post_layernorm true is not supported");
    }
}
