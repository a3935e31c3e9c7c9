//! Tiny random GGUF models that carry the test tokenizers, written with candle's GGUF writer.
//! Several quantisation types are used so `import-gguf`'s dequantisation is exercised.
use std::path::Path;

use anyhow::{anyhow, Result};
use candle_core::quantized::{gguf_file, GgmlDType, QTensor};
use candle_core::{Device, Tensor};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::Value as Json;
use tokenizers::Tokenizer;

use gguf_file::Value;

const TYPE_NORMAL: i32 = 1;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;
const TYPE_BYTE: i32 = 6;

/// Tokens of a tokenizer in id order.
fn tokens_by_id(tokenizer: &Tokenizer) -> Vec<String> {
    let vocab = tokenizer.get_vocab(true);
    let mut tokens = vec![String::new(); vocab.len()];
    for (token, id) in vocab {
        tokens[id as usize] = token;
    }
    tokens
}

fn strings(values: impl IntoIterator<Item = String>) -> Value {
    Value::Array(values.into_iter().map(Value::String).collect())
}

struct Weights {
    rng: ChaCha8Rng,
    tensors: Vec<(String, QTensor)>,
}

impl Weights {
    fn new(seed: u64) -> Self {
        Weights { rng: ChaCha8Rng::seed_from_u64(seed), tensors: Vec::new() }
    }

    /// A random matrix of `rows × cols` around `centre`, stored as `dtype`.
    fn add(&mut self, name: &str, shape: &[usize], centre: f32, dtype: GgmlDType) -> Result<()> {
        let n: usize = shape.iter().product();
        let data: Vec<f32> = (0..n).map(|_| centre + self.rng.random_range(-0.2f32..0.2)).collect();
        let tensor = Tensor::from_vec(data, shape, &Device::Cpu)?;
        self.tensors.push((name.to_string(), QTensor::quantize(&tensor, dtype)?));
        Ok(())
    }

    fn write(self, metadata: &[(&str, Value)], path: &Path) -> Result<()> {
        std::fs::create_dir_all(path.parent().unwrap())?;
        let mut file = std::fs::File::create(path)?;
        let metadata: Vec<(&str, &Value)> = metadata.iter().map(|(k, v)| (*k, v)).collect();
        let tensors: Vec<(&str, &QTensor)> = self.tensors.iter().map(|(k, v)| (k.as_str(), v)).collect();
        gguf_file::write(&mut file, &metadata, &tensors)?;
        Ok(())
    }
}

/// Llama, 2 layers, d=64, 4 heads / 2 KV heads (so the Q/K un-permutation is exercised with
/// different head counts), untied output, byte-level BPE tokenizer (`gpt2`, `smollm` pre).
pub fn write_tiny_llama(tokenizer: &Tokenizer, seed: u64, path: &Path) -> Result<()> {
    let (hidden, heads, kv_heads, ffn, layers) = (64usize, 4usize, 2usize, 256usize, 2usize);
    let tokens = tokens_by_id(tokenizer);
    let vocab = tokens.len();
    let json: Json = serde_json::from_str(&tokenizer.to_string(false).map_err(|e| anyhow!("{e}"))?)?;
    let merges = json["model"]["merges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| format!("{} {}", m[0].as_str().unwrap(), m[1].as_str().unwrap()));
    let types =
        tokens.iter().map(|t| Value::I32(if t == "<|endoftext|>" { TYPE_CONTROL } else { TYPE_NORMAL })).collect();
    let head_dim = hidden / heads;
    let mut w = Weights::new(seed);
    w.add("token_embd.weight", &[vocab, hidden], 0.0, GgmlDType::Q8_0)?;
    w.add("output_norm.weight", &[hidden], 1.0, GgmlDType::F32)?;
    w.add("output.weight", &[vocab, hidden], 0.0, GgmlDType::Q8_0)?;
    for l in 0..layers {
        let b = |s: &str| format!("blk.{l}.{s}.weight");
        w.add(&b("attn_norm"), &[hidden], 1.0, GgmlDType::F32)?;
        w.add(&b("attn_q"), &[heads * head_dim, hidden], 0.0, GgmlDType::Q4_0)?;
        w.add(&b("attn_k"), &[kv_heads * head_dim, hidden], 0.0, GgmlDType::Q4_1)?;
        w.add(&b("attn_v"), &[kv_heads * head_dim, hidden], 0.0, GgmlDType::Q5_0)?;
        w.add(&b("attn_output"), &[hidden, heads * head_dim], 0.0, GgmlDType::Q5_1)?;
        w.add(&b("ffn_norm"), &[hidden], 1.0, GgmlDType::F32)?;
        w.add(&b("ffn_gate"), &[ffn, hidden], 0.0, GgmlDType::Q8_0)?;
        w.add(&b("ffn_up"), &[ffn, hidden], 0.0, GgmlDType::F16)?;
        w.add(&b("ffn_down"), &[hidden, ffn], 0.0, GgmlDType::Q6K)?;
    }
    let metadata = vec![
        ("general.architecture", Value::String("llama".into())),
        ("general.name", Value::String("tiny-llama".into())),
        ("llama.block_count", Value::U32(layers as u32)),
        ("llama.context_length", Value::U32(256)),
        ("llama.embedding_length", Value::U32(hidden as u32)),
        ("llama.feed_forward_length", Value::U32(ffn as u32)),
        ("llama.attention.head_count", Value::U32(heads as u32)),
        ("llama.attention.head_count_kv", Value::U32(kv_heads as u32)),
        ("llama.rope.freq_base", Value::F32(100000.0)),
        ("llama.rope.dimension_count", Value::U32(head_dim as u32)),
        ("llama.attention.layer_norm_rms_epsilon", Value::F32(1e-5)),
        ("tokenizer.ggml.model", Value::String("gpt2".into())),
        ("tokenizer.ggml.pre", Value::String("smollm".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.token_type", Value::Array(types)),
        ("tokenizer.ggml.merges", strings(merges)),
        ("tokenizer.ggml.bos_token_id", Value::U32(0)),
        ("tokenizer.ggml.eos_token_id", Value::U32(0)),
        ("tokenizer.ggml.padding_token_id", Value::U32(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
    ];
    w.write(&metadata, path)
}

/// Gemma-3, 2 layers, d=64, 2 heads / 1 KV head of dim 32, q/k norms, tied embeddings,
/// SentencePiece-style tokenizer (`llama` model with scores and types, `<bos>` added) plus
/// one user-defined piece `▁▁`, which llama.cpp stores with a plain space.
pub fn write_tiny_gemma3(tokenizer: &Tokenizer, seed: u64, path: &Path) -> Result<()> {
    let (hidden, heads, kv_heads, head_dim, ffn, layers) = (64usize, 2usize, 1usize, 32usize, 256usize, 2usize);
    let mut tokens = tokens_by_id(tokenizer);
    let mut types: Vec<i32> = tokens
        .iter()
        .enumerate()
        .map(|(id, t)| {
            if id < 4 {
                TYPE_CONTROL
            } else if t.starts_with("<0x") {
                TYPE_BYTE
            } else {
                TYPE_NORMAL
            }
        })
        .collect();
    tokens.push("  ".into());
    types.push(TYPE_USER_DEFINED);
    // llama.cpp's convention: control and user-defined pieces score -1000, bytes 0, the rest
    // by rank (earlier merges score higher).
    let scores = types.iter().enumerate().map(|(id, &ty)| {
        Value::F32(match ty {
            TYPE_CONTROL | TYPE_USER_DEFINED => -1000.0,
            TYPE_BYTE => 0.0,
            _ => -(id as f32),
        })
    });
    let vocab = tokens.len();
    let mut w = Weights::new(seed + 1);
    w.add("token_embd.weight", &[vocab, hidden], 0.0, GgmlDType::Q8_0)?;
    w.add("output_norm.weight", &[hidden], 1.0, GgmlDType::F32)?;
    for l in 0..layers {
        let b = |s: &str| format!("blk.{l}.{s}.weight");
        for norm in ["attn_norm", "post_attention_norm", "ffn_norm", "post_ffw_norm"] {
            w.add(&b(norm), &[hidden], 1.0, GgmlDType::F32)?;
        }
        w.add(&b("attn_q_norm"), &[head_dim], 1.0, GgmlDType::F32)?;
        w.add(&b("attn_k_norm"), &[head_dim], 1.0, GgmlDType::F32)?;
        w.add(&b("attn_q"), &[heads * head_dim, hidden], 0.0, GgmlDType::Q5_0)?;
        w.add(&b("attn_k"), &[kv_heads * head_dim, hidden], 0.0, GgmlDType::Q5_0)?;
        w.add(&b("attn_v"), &[kv_heads * head_dim, hidden], 0.0, GgmlDType::Q8_0)?;
        w.add(&b("attn_output"), &[hidden, heads * head_dim], 0.0, GgmlDType::Q4_1)?;
        w.add(&b("ffn_gate"), &[ffn, hidden], 0.0, GgmlDType::Q5_0)?;
        w.add(&b("ffn_up"), &[ffn, hidden], 0.0, GgmlDType::Q5_0)?;
        w.add(&b("ffn_down"), &[hidden, ffn], 0.0, GgmlDType::Q4K)?;
    }
    let metadata = vec![
        ("general.architecture", Value::String("gemma3".into())),
        ("general.name", Value::String("tiny-gemma3".into())),
        ("gemma3.context_length", Value::U32(256)),
        ("gemma3.embedding_length", Value::U32(hidden as u32)),
        ("gemma3.block_count", Value::U32(layers as u32)),
        ("gemma3.feed_forward_length", Value::U32(ffn as u32)),
        ("gemma3.attention.head_count", Value::U32(heads as u32)),
        ("gemma3.attention.head_count_kv", Value::U32(kv_heads as u32)),
        ("gemma3.attention.key_length", Value::U32(head_dim as u32)),
        ("gemma3.attention.value_length", Value::U32(head_dim as u32)),
        ("gemma3.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("gemma3.rope.freq_base", Value::F32(1_000_000.0)),
        ("gemma3.attention.sliding_window", Value::U32(16)),
        ("tokenizer.ggml.model", Value::String("llama".into())),
        ("tokenizer.ggml.pre", Value::String("default".into())),
        ("tokenizer.ggml.tokens", strings(tokens)),
        ("tokenizer.ggml.scores", Value::Array(scores.collect())),
        ("tokenizer.ggml.token_type", Value::Array(types.into_iter().map(Value::I32).collect())),
        ("tokenizer.ggml.bos_token_id", Value::U32(2)),
        ("tokenizer.ggml.eos_token_id", Value::U32(1)),
        ("tokenizer.ggml.unknown_token_id", Value::U32(3)),
        ("tokenizer.ggml.padding_token_id", Value::U32(0)),
        ("tokenizer.ggml.add_bos_token", Value::Bool(true)),
        ("tokenizer.ggml.add_eos_token", Value::Bool(false)),
        ("tokenizer.ggml.add_space_prefix", Value::Bool(false)),
    ];
    w.write(&metadata, path)
}

/// A valid GGUF file of an architecture we do not support.
pub fn write_bad_arch(path: &Path) -> Result<()> {
    let mut w = Weights::new(0);
    w.add("token_embd.weight", &[4, 32], 0.0, GgmlDType::F32)?;
    w.write(&[("general.architecture", Value::String("falcon".into()))], path)
}
