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
    let fixed = match gguf_name {
        "token_embd.weight" => Some("model.embed_tokens.weight"),
        "output_norm.weight" => Some("model.norm.weight"),
        "output.weight" => Some("lm_head.weight"),
        _ => None,
    };
    if let Some(name) = fixed {
        return Some(name.to_string());
    }
    let rest = gguf_name.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let layer: usize = layer.parse().ok()?;
    let part = part.strip_suffix(".weight")?;
    let module = match (arch, part) {
        (_, "attn_norm") => "input_layernorm",
        (_, "attn_q") => "self_attn.q_proj",
        (_, "attn_k") => "self_attn.k_proj",
        (_, "attn_v") => "self_attn.v_proj",
        (_, "attn_output") => "self_attn.o_proj",
        (_, "ffn_gate") => "mlp.gate_proj",
        (_, "ffn_up") => "mlp.up_proj",
        (_, "ffn_down") => "mlp.down_proj",
        (Arch::Llama, "ffn_norm") => "post_attention_layernorm",
        (Arch::Gemma3, "ffn_norm") => "pre_feedforward_layernorm",
        (Arch::Gemma3, "post_attention_norm") => "post_attention_layernorm",
        (Arch::Gemma3, "post_ffw_norm") => "post_feedforward_layernorm",
        (Arch::Gemma3, "attn_q_norm") => "self_attn.q_norm",
        (Arch::Gemma3, "attn_k_norm") => "self_attn.k_norm",
        _ => return None,
    };
    Some(format!("model.layers.{layer}.{module}.weight"))
}

/// Undo llama.cpp's permutation of Q/K rows (`LlamaModel.permute` in convert_hf_to_gguf.py),
/// which regroups each head's rows for interleaved rotary embedding: GGUF row `h·d + 2j + s`
/// holds Hugging Face row `h·d + s·d/2 + j`.
pub fn unpermute_qk(w: &Tensor, n_heads: usize) -> Result<Tensor> {
    let (rows, cols) = w.dims2()?;
    let head_dim = rows / n_heads;
    Ok(w.reshape((n_heads, head_dim / 2, 2, cols))?.transpose(1, 2)?.contiguous()?.reshape((rows, cols))?)
}

/// Dequantise one tensor and bring it to Hugging Face's convention.
fn convert_tensor(gguf: &Gguf, reader: &mut BufReader<File>, name: &str) -> Result<Tensor> {
    let qtensor = gguf
        .content
        .tensor(reader, name, &Device::Cpu)
        .map_err(|e| bad_input(&gguf.path, format!("tensor '{name}': {e}")))?;
    let mut t = qtensor.dequantize(&Device::Cpu)?;
    match gguf.arch {
        Arch::Llama => {
            let heads = gguf.uint(&gguf.arch_key("attention.head_count"))? as usize;
            let kv_heads = gguf.opt_uint(&gguf.arch_key("attention.head_count_kv"))?.map_or(heads, |v| v as usize);
            if name.ends_with(".attn_q.weight") {
                t = unpermute_qk(&t, heads)?;
            } else if name.ends_with(".attn_k.weight") {
                t = unpermute_qk(&t, kv_heads)?;
            }
        }
        Arch::Gemma3 => {
            if name.ends_with("norm.weight") {
                t = (t - 1.0)?;
            }
        }
    }
    Ok(t)
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
        assert_eq!(hf_name(Arch::Llama, "rope_freqs.weight"), None);
        assert_eq!(hf_name(Arch::Llama, "blk.0.post_ffw_norm.weight"), None);
    }
}
