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
    let key = |s: &str| gguf.arch_key(s);
    let hidden = gguf.uint(&key("embedding_length"))?;
    let heads = gguf.uint(&key("attention.head_count"))?;
    let kv_heads = gguf.opt_uint(&key("attention.head_count_kv"))?.unwrap_or(heads);
    let layers = gguf.uint(&key("block_count"))?;
    let vocab_size = gguf.array("tokenizer.ggml.tokens")?.len();
    let tied = !gguf.content.tensor_infos.contains_key("output.weight");
    let mut config = json!({
        "hidden_size": hidden,
        "intermediate_size": gguf.uint(&key("feed_forward_length"))?,
        "num_hidden_layers": layers,
        "num_attention_heads": heads,
        "num_key_value_heads": kv_heads,
        "rms_norm_eps": gguf.float(&key("attention.layer_norm_rms_epsilon"))?,
        "rope_theta": gguf.float(&key("rope.freq_base"))?,
        "max_position_embeddings": gguf.uint(&key("context_length"))?,
        "vocab_size": vocab_size,
        "tie_word_embeddings": tied,
        "bos_token_id": gguf.opt_uint("tokenizer.ggml.bos_token_id")?,
        "eos_token_id": gguf.opt_uint("tokenizer.ggml.eos_token_id")?,
        "pad_token_id": gguf.opt_uint("tokenizer.ggml.padding_token_id")?,
        "torch_dtype": torch_dtype(dtype),
        "attention_bias": false,
        "attention_dropout": 0.0,
        "fedmkt_source": source_hash,
    });
    let extra = match gguf.arch {
        Arch::Llama => json!({
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "head_dim": hidden / heads,
            "hidden_act": "silu",
            "mlp_bias": false,
        }),
        Arch::Gemma3 => {
            let head_dim = gguf.uint(&key("attention.key_length"))?;
            let layer_types: Vec<&str> = (1..=layers)
                .map(|i| if i % GEMMA3_SLIDING_WINDOW_PATTERN == 0 { "full_attention" } else { "sliding_attention" })
                .collect();
            json!({
                "architectures": ["Gemma3ForCausalLM"],
                "model_type": "gemma3_text",
                "head_dim": head_dim,
                "hidden_activation": "gelu_pytorch_tanh",
                // llama.cpp scales queries by 1/sqrt(head_dim) for every size but 27B.
                "query_pre_attn_scalar": head_dim,
                "sliding_window": gguf.uint(&key("attention.sliding_window"))?,
                "sliding_window_pattern": GEMMA3_SLIDING_WINDOW_PATTERN,
                "layer_types": layer_types,
                "rope_local_base_freq": GEMMA3_ROPE_LOCAL_BASE,
                "rope_scaling": null,
                "final_logit_softcapping": null,
                "attn_logit_softcapping": null,
            })
        }
    };
    let (Value::Object(base), Value::Object(extra)) = (&mut config, extra) else { unreachable!() };
    base.extend(extra);
    // Sort keys so the file reads like Hugging Face's and is stable across versions.
    let sorted: std::collections::BTreeMap<_, _> = std::mem::take(base).into_iter().collect();
    Ok(json!(sorted))
}
