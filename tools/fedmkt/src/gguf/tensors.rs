//! Dequantise GGUF tensors into `model.safetensors` with Hugging Face names.
use std::collections::HashMap;
use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor};

use super::{Arch, Gguf};
use crate::cli::bad_input;

/// The Hugging Face name of a GGUF tensor, or `None` for names we do not know.
pub fn hf_name(arch: Arch, gguf_name: &str) -> Option<String> {
    let (stem, suffix) = gguf_name.rsplit_once('.').filter(|(_, s)| matches!(*s, "weight" | "bias"))?;
    let module = match stem.strip_prefix("blk.") {
        Some(rest) => {
            let (layer, part) = rest.split_once('.')?;
            let layer: usize = layer.parse().ok()?;
            match arch {
                Arch::Gpt2 => format!("transformer.h.{layer}.{}", gpt2_layer_module(part)?),
                Arch::Bloom => format!("transformer.h.{layer}.{}", bloom_layer_module(part)?),
                // Of the rotary families only Qwen2 has biases (on q, k and v).
                _ if suffix == "bias" && !(arch == Arch::Qwen2 && matches!(part, "attn_q" | "attn_k" | "attn_v")) => {
                    return None
                }
                _ => format!("model.layers.{layer}.{}", rotary_layer_module(arch, part)?),
            }
        }
        None => global_module(arch, stem)?.to_string(),
    };
    Some(format!("{module}.{suffix}"))
}

/// Modules outside the layers.
fn global_module(arch: Arch, stem: &str) -> Option<&'static str> {
    Some(match (arch, stem) {
        (_, "output") => "lm_head",
        (Arch::Gpt2, "token_embd") => "transformer.wte",
        (Arch::Gpt2, "position_embd") => "transformer.wpe",
        (Arch::Gpt2 | Arch::Bloom, "output_norm") => "transformer.ln_f",
        (Arch::Bloom, "token_embd") => "transformer.word_embeddings",
        (Arch::Bloom, "token_embd_norm") => "transformer.word_embeddings_layernorm",
        (Arch::Gpt2 | Arch::Bloom, _) => return None,
        (_, "token_embd") => "model.embed_tokens",
        (_, "output_norm") => "model.norm",
        _ => return None,
    })
}

/// A layer's modules in the llama family, Qwen2/Qwen3 and Gemma-3.
fn rotary_layer_module(arch: Arch, part: &str) -> Option<&'static str> {
    let qk_norm = matches!(arch, Arch::Gemma3 | Arch::Qwen3);
    Some(match part {
        "attn_norm" => "input_layernorm",
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        "attn_q_norm" if qk_norm => "self_attn.q_norm",
        "attn_k_norm" if qk_norm => "self_attn.k_norm",
        "ffn_norm" if arch == Arch::Gemma3 => "pre_feedforward_layernorm",
        "ffn_norm" => "post_attention_layernorm",
        "post_attention_norm" if arch == Arch::Gemma3 => "post_attention_layernorm",
        "post_ffw_norm" if arch == Arch::Gemma3 => "post_feedforward_layernorm",
        _ => return None,
    })
}

fn gpt2_layer_module(part: &str) -> Option<&'static str> {
    Some(match part {
        "attn_norm" => "ln_1",
        "attn_qkv" => "attn.c_attn",
        "attn_output" => "attn.c_proj",
        "ffn_norm" => "ln_2",
        "ffn_up" => "mlp.c_fc",
        "ffn_down" => "mlp.c_proj",
        _ => return None,
    })
}

fn bloom_layer_module(part: &str) -> Option<&'static str> {
    Some(match part {
        "attn_norm" => "input_layernorm",
        "attn_qkv" => "self_attention.query_key_value",
        "attn_output" => "self_attention.dense",
        "ffn_norm" => "post_attention_layernorm",
        "ffn_up" => "mlp.dense_h_to_4h",
        "ffn_down" => "mlp.dense_4h_to_h",
        _ => return None,
    })
}

/// Undo llama.cpp's permutation of Q/K rows (`LlamaModel.permute` in convert_hf_to_gguf.py),
/// which regroups each head's rows for interleaved rotary embedding: GGUF row `h·d + 2j + s`
/// holds Hugging Face row `h·d + s·d/2 + j`.
pub fn unpermute_qk(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let head_dim = rows / n_heads;
    Ok(w.reshape((n_heads, head_dim / 2, 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}

/// Undo llama.cpp's regrouping of Bloom's fused Q/K/V (`BloomModel.modify_tensors`): Hugging
/// Face interleaves per head (`[head][q|k|v][head_dim]` rows), GGUF stacks all queries, then
/// all keys, then all values (`[q|k|v][head][head_dim]`). Works on weights and biases.
pub fn interleave_qkv(t: &Tensor, n_heads: usize) -> Result<Tensor> {
    let rest: Vec<usize> = t.dims()[1..].to_vec();
    let rows = t.dims()[0];
    let grouped: Vec<usize> = [3, n_heads, rows / 3 / n_heads].into_iter().chain(rest.iter().copied()).collect();
    Ok(t.reshape(grouped)?.transpose(0, 1)?.contiguous()?.reshape(t.dims())?)
}

/// Dequantise one tensor and bring it to Hugging Face's convention.
fn convert_tensor(gguf: &Gguf, reader: &mut BufReader<File>, name: &str) -> Result<Tensor> {
    let qtensor = gguf
        .content
        .tensor(reader, name, &Device::Cpu)
        .map_err(|e| bad_input(&gguf.path, format!("tensor '{name}': {e}")))?;
    let t = qtensor.dequantize(&Device::Cpu)?;
    let heads = || -> Result<usize> { Ok(gguf.uint(&gguf.arch_key("attention.head_count"))? as usize) };
    let in_layer = |part: &str| name.starts_with("blk.") && name.contains(&format!(".{part}."));
    Ok(match gguf.arch {
        Arch::Llama if in_layer("attn_q") => unpermute_qk(&t, heads()?)?,
        Arch::Llama if in_layer("attn_k") => {
            let kv_heads = gguf.opt_uint(&gguf.arch_key("attention.head_count_kv"))?.map_or(heads()?, |v| v as usize);
            unpermute_qk(&t, kv_heads)?
        }
        Arch::Gemma3 if name.ends_with("norm.weight") => (t - 1.0)?,
        // GPT-2's Conv1D stores weights as (in, out); llama.cpp transposes them to (out, in).
        Arch::Gpt2
            if t.rank() == 2 && ["attn_qkv", "attn_output", "ffn_up", "ffn_down"].iter().any(|p| in_layer(p)) =>
        {
            t.t()?.contiguous()?
        }
        Arch::Bloom if in_layer("attn_qkv") => interleave_qkv(&t, heads()?)?,
        _ => t,
    })
}

/// Write every tensor of the GGUF file, dequantised to `dtype`, as one safetensors file.
pub fn write_safetensors(gguf: &Gguf, dtype: DType, out: &Path) -> Result<()> {
    let file = File::open(&gguf.path).map_err(|e| bad_input(&gguf.path, format!("cannot open: {e}")))?;
    let mut reader = BufReader::new(file);
    let mut names: Vec<&String> = gguf.content.tensor_infos.keys().collect();
    names.sort();
    let progress = indicatif::ProgressBar::new(names.len() as u64).with_message("dequantise");
    let mut tensors = Vec::with_capacity(names.len());
    for name in names {
        let hf = hf_name(gguf.arch, name)
            .ok_or_else(|| bad_input(&gguf.path, format!("tensor '{name}' has no Hugging Face counterpart")))?;
        let tensor = convert_tensor(gguf, &mut reader, name)?.to_dtype(dtype)?;
        tensors.push((hf, tensor));
        progress.inc(1);
    }
    progress.finish_and_clear();
    // One key only: the header serialises this map in hash order. `transformers` wants "pt".
    let metadata = HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors, Some(metadata), out)
        .with_context(|| format!("{}: cannot write", out.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp's `permute` (convert_hf_to_gguf.py), written out row by row.
    fn permute_rows(rows: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
        let n_rows = rows.len() / cols;
        let head_dim = n_rows / n_heads;
        let mut out = vec![0.0; rows.len()];
        for h in 0..n_heads {
            for s in 0..2 {
                for j in 0..head_dim / 2 {
                    let hf_row = h * head_dim + s * head_dim / 2 + j;
                    let gguf_row = h * head_dim + 2 * j + s;
                    out[gguf_row * cols..(gguf_row + 1) * cols]
                        .copy_from_slice(&rows[hf_row * cols..(hf_row + 1) * cols]);
                }
            }
        }
        out
    }

    #[test]
    fn unpermute_inverts_llama_cpp_permute() {
        let (n_heads, head_dim, cols) = (3, 8, 5);
        let hf: Vec<f32> = (0..n_heads * head_dim * cols).map(|v| v as f32).collect();
        let gguf =
            Tensor::from_vec(permute_rows(&hf, n_heads, cols), (n_heads * head_dim, cols), &Device::Cpu).unwrap();
        let back = unpermute_qk(&gguf, n_heads).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(back, hf);
    }

    /// llama.cpp's `BloomModel.modify_tensors` on a weight, written out row by row.
    fn stack_bloom_qkv(rows: &[f32], n_heads: usize, cols: usize) -> Vec<f32> {
        let head_dim = rows.len() / cols / 3 / n_heads;
        let mut out = Vec::with_capacity(rows.len());
        for part in 0..3 {
            for h in 0..n_heads {
                let first = (h * 3 + part) * head_dim;
                out.extend_from_slice(&rows[first * cols..(first + head_dim) * cols]);
            }
        }
        out
    }

    #[test]
    fn interleave_qkv_inverts_llama_cpp_bloom_stacking() {
        let (n_heads, head_dim, cols) = (4, 3, 5);
        let hf: Vec<f32> = (0..3 * n_heads * head_dim * cols).map(|v| v as f32).collect();
        let rows = 3 * n_heads * head_dim;
        let gguf = Tensor::from_vec(stack_bloom_qkv(&hf, n_heads, cols), (rows, cols), &Device::Cpu).unwrap();
        let back = interleave_qkv(&gguf, n_heads).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_eq!(back, hf);
        let bias: Vec<f32> = (0..rows).map(|v| v as f32).collect();
        let gguf = Tensor::from_vec(stack_bloom_qkv(&bias, n_heads, 1), rows, &Device::Cpu).unwrap();
        assert_eq!(interleave_qkv(&gguf, n_heads).unwrap().to_vec1::<f32>().unwrap(), bias);
    }

    #[test]
    fn names_follow_hugging_face() {
        assert_eq!(
            hf_name(Arch::Llama, "blk.3.ffn_norm.weight").unwrap(),
            "model.layers.3.post_attention_layernorm.weight"
        );
        assert_eq!(
            hf_name(Arch::Gemma3, "blk.3.ffn_norm.weight").unwrap(),
            "model.layers.3.pre_feedforward_layernorm.weight"
        );
        assert_eq!(
            hf_name(Arch::Gemma3, "blk.0.attn_k_norm.weight").unwrap(),
            "model.layers.0.self_attn.k_norm.weight"
        );
        assert_eq!(hf_name(Arch::Qwen2, "blk.1.attn_q.bias").unwrap(), "model.layers.1.self_attn.q_proj.bias");
        assert_eq!(hf_name(Arch::Qwen3, "blk.1.attn_q_norm.weight").unwrap(), "model.layers.1.self_attn.q_norm.weight");
        assert_eq!(hf_name(Arch::Gpt2, "blk.0.attn_qkv.bias").unwrap(), "transformer.h.0.attn.c_attn.bias");
        assert_eq!(hf_name(Arch::Gpt2, "position_embd.weight").unwrap(), "transformer.wpe.weight");
        assert_eq!(hf_name(Arch::Bloom, "token_embd_norm.bias").unwrap(), "transformer.word_embeddings_layernorm.bias");
        assert_eq!(hf_name(Arch::Bloom, "blk.2.ffn_up.weight").unwrap(), "transformer.h.2.mlp.dense_h_to_4h.weight");
        assert_eq!(hf_name(Arch::Llama, "blk.0.attn_q_norm.weight"), None);
        assert_eq!(hf_name(Arch::Llama, "blk.0.attn_q.bias"), None);
        assert_eq!(hf_name(Arch::Bloom, "position_embd.weight"), None);
        assert_eq!(hf_name(Arch::Llama, "rope_freqs.weight"), None);
        assert_eq!(hf_name(Arch::Llama, "blk.0.post_ffw_norm.weight"), None);
    }
}
