//! `config.json` in Hugging Face's key names, from GGUF hyper-parameters.
use anyhow::Result;
use candle_core::DType;
use serde_json::{json, Value};

use super::{Arch, Gguf};

/// llama.cpp does not store these two Gemma-3 constants in GGUF; it hard-codes them, and so do we.
const GEMMA3_SLIDING_WINDOW_PATTERN: u64 = 6;
const GEMMA3_ROPE_LOCAL_BASE: f64 = 10_000.0;

pub fn torch_dtype(dtype: DType) -> &'static str {
    match dtype {
        DType::BF16 => "bfloat16",
        DType::F16 => "float16",
        _ => "float32",
    }
}

/// `source_hash` (of the GGUF file) is recorded as `fedmkt_source`, which `transformers` ignores.
pub fn config_json(gguf: &Gguf, dtype: DType, source_hash: &str) -> Result<Value> {
    let config = json!({
        "vocab_size": gguf.array("tokenizer.ggml.tokens")?.len(),
        "tie_word_embeddings": !gguf.content.tensor_infos.contains_key("output.weight"),
        "bos_token_id": gguf.opt_uint("tokenizer.ggml.bos_token_id")?,
        "eos_token_id": gguf.opt_uint("tokenizer.ggml.eos_token_id")?,
        "pad_token_id": gguf.opt_uint("tokenizer.ggml.padding_token_id")?,
        "torch_dtype": torch_dtype(dtype),
        "fedmkt_source": source_hash,
    });
    let family = match gguf.arch {
        Arch::Llama | Arch::Gemma3 | Arch::Qwen2 | Arch::Qwen3 => rotary(gguf)?,
        Arch::Gpt2 => gpt2(gguf)?,
        Arch::Bloom => bloom(gguf)?,
    };
    let Value::Object(merged) = with(config, family) else { unreachable!("an object") };
    // Sort keys so the file reads like Hugging Face's and is stable across versions.
    let sorted: std::collections::BTreeMap<_, _> = merged.into_iter().collect();
    Ok(json!(sorted))
}

/// Merge `extra` into the JSON object `base`.
fn with(mut base: Value, extra: Value) -> Value {
    if let (Value::Object(base), Value::Object(extra)) = (&mut base, extra) {
        base.extend(extra);
    }
    base
}

/// The llama family, Qwen2/Qwen3 and Gemma-3: rotary positions, RMS norms, gated MLPs.
fn rotary(gguf: &Gguf) -> Result<Value> {
    let key = |s: &str| gguf.arch_key(s);
    let hidden = gguf.uint(&key("embedding_length"))?;
    let heads = gguf.uint(&key("attention.head_count"))?;
    let layers = gguf.uint(&key("block_count"))?;
    let head_dim = gguf.opt_uint(&key("attention.key_length"))?.unwrap_or(hidden / heads);
    let base = json!({
        "hidden_size": hidden,
        "intermediate_size": gguf.uint(&key("feed_forward_length"))?,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": gguf.opt_uint(&key("attention.head_count_kv"))?.unwrap_or(heads),
        "head_dim": head_dim,
        "rms_norm_eps": gguf.float(&key("attention.layer_norm_rms_epsilon"))?,
        "rope_theta": gguf.float(&key("rope.freq_base"))?,
        "max_position_embeddings": gguf.uint(&key("context_length"))?,
        "attention_dropout": 0.0,
    });
    let family = match gguf.arch {
        Arch::Llama => json!({"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_act": "silu",
                              "attention_bias": false, "mlp_bias": false}),
        // Qwen2 always has q/k/v biases; llama.cpp writes neither Qwen's window nor its use.
        Arch::Qwen2 => json!({"architectures": ["Qwen2ForCausalLM"], "model_type": "qwen2", "hidden_act": "silu",
                              "use_sliding_window": false}),
        Arch::Qwen3 => json!({"architectures": ["Qwen3ForCausalLM"], "model_type": "qwen3", "hidden_act": "silu",
                              "attention_bias": false, "use_sliding_window": false}),
        Arch::Gemma3 => gemma3(gguf, layers, head_dim)?,
        Arch::Gpt2 | Arch::Bloom => unreachable!("not a rotary family"),
    };
    Ok(with(base, family))
}

fn gemma3(gguf: &Gguf, layers: u64, head_dim: u64) -> Result<Value> {
    let layer_types: Vec<&str> = (1..=layers)
        .map(|i| if i % GEMMA3_SLIDING_WINDOW_PATTERN == 0 { "full_attention" } else { "sliding_attention" })
        .collect();
    Ok(json!({
        "architectures": ["Gemma3ForCausalLM"],
        "model_type": "gemma3_text",
        "attention_bias": false,
        "hidden_activation": "gelu_pytorch_tanh",
        // llama.cpp scales queries by 1/sqrt(head_dim) for every size but 27B.
        "query_pre_attn_scalar": head_dim,
        "sliding_window": gguf.uint(&gguf.arch_key("attention.sliding_window"))?,
        "sliding_window_pattern": GEMMA3_SLIDING_WINDOW_PATTERN,
        "layer_types": layer_types,
        "rope_local_base_freq": GEMMA3_ROPE_LOCAL_BASE,
        "rope_scaling": null,
        "final_logit_softcapping": null,
        "attn_logit_softcapping": null,
    }))
}

/// GPT-2. llama.cpp writes `feed_forward_length` as 4 × `n_embd` whatever `n_inner` was, so
/// the MLP's width comes from its weight's shape.
fn gpt2(gguf: &Gguf) -> Result<Value> {
    let key = |s: &str| gguf.arch_key(s);
    Ok(json!({
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "n_embd": gguf.uint(&key("embedding_length"))?,
        "n_inner": gguf.rows("blk.0.ffn_up.weight")?,
        "n_layer": gguf.uint(&key("block_count"))?,
        "n_head": gguf.uint(&key("attention.head_count"))?,
        "n_positions": gguf.uint(&key("context_length"))?,
        "layer_norm_epsilon": gguf.float(&key("attention.layer_norm_epsilon"))?,
        "activation_function": "gelu_new",
    }))
}

/// Bloom: ALiBi, so no context length to carry; a 4 × hidden MLP by construction.
fn bloom(gguf: &Gguf) -> Result<Value> {
    let key = |s: &str| gguf.arch_key(s);
    Ok(json!({
        "architectures": ["BloomForCausalLM"],
        "model_type": "bloom",
        "hidden_size": gguf.uint(&key("embedding_length"))?,
        "n_layer": gguf.uint(&key("block_count"))?,
        "n_head": gguf.uint(&key("attention.head_count"))?,
        "layer_norm_epsilon": gguf.float(&key("attention.layer_norm_epsilon"))?,
        "apply_residual_connection_post_layernorm": false,
    }))
}
