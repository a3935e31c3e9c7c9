//! What a model folder's weights are: its files, what their headers hold, and the identity
//! adapters and provenance record for the base model.
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use anyhow::Result;
use sha2::{Digest, Sha256};

use crate::cli::bad_input;

/// The safetensors files of a model folder: `model.safetensors`, or the shards listed in
/// `model.safetensors.index.json`.
pub fn weight_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let single = dir.join("model.safetensors");
    if single.is_file() {
        return Ok(vec![single]);
    }
    let index = dir.join("model.safetensors.index.json");
    let text = std::fs::read_to_string(&index)
        .map_err(|_| bad_input(dir, "no model.safetensors or model.safetensors.index.json"))?;
    let json: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| bad_input(&index, format!("not JSON ({e})")))?;
    let map = json.get("weight_map").and_then(|m| m.as_object()).ok_or_else(|| bad_input(&index, "no 'weight_map'"))?;
    let mut files: Vec<PathBuf> = map.values().filter_map(|v| v.as_str()).map(|f| dir.join(f)).collect();
    files.sort();
    files.dedup();
    Ok(files)
}

/// Buffers some writers store beside the weights, which no forward pass reads: GPT-2's
/// causal masks and precomputed rotary frequencies.
const UNREAD_BUFFERS: [&str; 3] = [".attn.bias", ".attn.masked_bias", "rotary_emb.inv_freq"];

/// Every tensor of the weight files was read by the architecture its config describes: one
/// left over means the config lies about the weights (`num_hidden_layers` 1 of 2 layers,
/// `tie_word_embeddings` beside a stored `lm_head`), and the model would run, silently, as
/// another one.
pub(super) fn check_every_tensor_read(files: &[PathBuf], read: &std::collections::BTreeSet<String>) -> Result<()> {
    for file in files {
        for name in safetensors_names(file)? {
            if !read.contains(&name) && !UNREAD_BUFFERS.iter().any(|b| name.ends_with(b)) {
                return Err(bad_input(
                    file,
                    format!("holds tensor '{name}', which the model its config.json describes does not use (a config that does not match its weights?)"),
                ));
            }
        }
    }
    Ok(())
}

/// The header of a safetensors file (8-byte little-endian length, then JSON): its bytes, where
/// the data starts, and its tensors by name.
fn safetensors_header(file: &Path) -> Result<(Vec<u8>, u64, serde_json::Map<String, serde_json::Value>)> {
    let unreadable = |why: String| bad_input(file, format!("not a readable safetensors file ({why})"));
    let mut f = std::fs::File::open(file).map_err(|e| unreadable(e.to_string()))?;
    let mut length = [0u8; 8];
    f.read_exact(&mut length).map_err(|e| unreadable(e.to_string()))?;
    let length = u64::from_le_bytes(length);
    if length > 100 << 20 {
        return Err(unreadable(format!("a header of {length} bytes")));
    }
    let mut bytes = vec![0u8; length as usize];
    f.read_exact(&mut bytes).map_err(|e| unreadable(e.to_string()))?;
    let header = serde_json::from_slice(&bytes).map_err(|e| unreadable(e.to_string()))?;
    Ok((bytes, 8 + length, header))
}

/// The tensor names in a safetensors file's header.
fn safetensors_names(file: &Path) -> Result<Vec<String>> {
    let (_, _, header) = safetensors_header(file)?;
    Ok(header.into_iter().map(|(name, _)| name).filter(|name| name != "__metadata__").collect())
}

/// Bytes of each tensor's data that the fingerprint reads.
const FINGERPRINT_BYTES: u64 = 256;

/// A fingerprint of a model's weights without reading them all: each file's header and the
/// first [`FINGERPRINT_BYTES`] of every tensor's data. Two checkpoints with one config differ
/// in their tensors' values (a fine-tune, a merged adapter), which this sees in every tensor
/// they change.
fn weights_fingerprint(dir: &Path) -> Result<String> {
    let mut hasher = Sha256::new();
    for file in weight_files(dir)? {
        let (bytes, data_start, header) = safetensors_header(&file)?;
        hasher.update(&bytes);
        let mut f = std::fs::File::open(&file).map_err(|e| bad_input(&file, format!("cannot open: {e}")))?;
        let starts = header.values().filter_map(|t| t.get("data_offsets")?.get(0)?.as_u64());
        for start in starts {
            let mut sample = Vec::new();
            f.seek(SeekFrom::Start(data_start + start))?;
            (&mut f).take(FINGERPRINT_BYTES).read_to_end(&mut sample)?;
            hasher.update(&sample);
        }
    }
    Ok(format!("sha256:{:x}", hasher.finalize()))
}

/// The identity of a base model that adapters (`fedmkt_base_config`) and provenance
/// (`fedmkt.input.model`) record and check: `sha256:` of its `config.json`, which for a
/// folder `import-gguf` wrote names its GGUF file (`fedmkt_source`) and so its weights; any
/// other folder (a Hugging Face checkpoint) may hold other weights under the same config, so
/// its identity adds a fingerprint of them (`<config hash>+weights:sha256:…`).
pub fn base_config_hash(dir: &Path) -> Result<String> {
    let config_path = dir.join("config.json");
    let bytes = std::fs::read(&config_path).map_err(|e| bad_input(&config_path, format!("cannot open: {e}")))?;
    let config = format!("sha256:{}", crate::io::sha256_hex(&bytes));
    let imported = serde_json::from_slice::<serde_json::Value>(&bytes).is_ok_and(|c| c.get("fedmkt_source").is_some());
    if imported {
        return Ok(config);
    }
    Ok(format!("{config}+weights:{}", weights_fingerprint(dir)?))
}

/// An adapter recorded for `recorded` fits the base `current`: the same identity, or (an
/// adapter written before weights were fingerprinted) the same `config.json`.
pub fn same_base(recorded: &str, current: &str) -> bool {
    recorded == current || current.strip_prefix(recorded).is_some_and(|rest| rest.starts_with("+weights:"))
}
