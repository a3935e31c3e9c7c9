//! LoRA adapters on linear layers, saved and loaded in PEFT's format.
//!
//! A targeted layer computes `x·Wᵀ + b + (α/r)·(x·Aᵀ)·Bᵀ` with the base `W` frozen and only
//! `A` ([r, in]) and `B` ([out, r]) trainable. Files are PEFT's: `adapter_config.json` and
//! `adapter_model.safetensors` with keys `base_model.model.<module>.lora_{A,B}.weight`, so
//! PEFT loads ours and we load PEFT's.
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anyhow::{Context, Result};
use candle_core::{DType, Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{json, Value};

use super::cpu::bf16::PackedWeight;
use crate::cli::bad_input;

pub const ADAPTER_CONFIG: &str = "adapter_config.json";
pub const ADAPTER_WEIGHTS: &str = "adapter_model.safetensors";

/// Which layers get adapters and how they are scaled (paper App. D.1 defaults).
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    pub r: usize,
    pub alpha: f64,
    pub dropout: f64,
    /// Module names (last path component), e.g. `q_proj`.
    pub targets: Vec<String>,
}

impl Default for LoraSpec {
    fn default() -> Self {
        LoraSpec {
            r: 8,
            alpha: 16.0,
            dropout: 0.05,
            targets: ["q_proj", "k_proj", "v_proj", "o_proj"].map(String::from).to_vec(),
        }
    }
}

impl LoraSpec {
    pub fn scale(&self) -> f64 {
        self.alpha / self.r as f64
    }

    fn targets_module(&self, module_path: &str) -> bool {
        let name = module_path.rsplit('.').next().unwrap_or(module_path);
        self.targets.iter().any(|t| t == name)
    }
}

/// PEFT's key for one adapter matrix of a module.
pub fn peft_key(module_path: &str, matrix: char) -> String {
    format!("base_model.model.{module_path}.lora_{matrix}.weight")
}

/// The adapter matrices of one layer.
#[derive(Debug, Clone)]
pub struct LoraPair {
    pub a: Var,
    pub b: Var,
    pub scale: f64,
    pub mode: Arc<LoraMode>,
}

impl LoraPair {
    /// A and B as a forward pass uses them: the variables while training, detached copies
    /// (the same storage, no op recording) otherwise.
    fn matrices(&self) -> (Tensor, Tensor) {
        let (a, b) = (self.a.as_tensor(), self.b.as_tensor());
        if self.mode.training.load(Ordering::Relaxed) {
            (a.clone(), b.clone())
        } else {
            (a.detach(), b.detach())
        }
    }
}

/// How a model's adapted layers run, shared by all of them. Training (the model's own
/// `training`, mirrored here on every pass) they use the adapter variables themselves, so
/// activations record ops for backprop; otherwise detached copies, so that no activation
/// records ops and inference keeps no graph alive. PEFT's LoRA dropout on the adapter path's
/// input is off until `distill` seeds it: masks then come from one ChaCha stream in forward
/// order, so a run repeats exactly (candle's own dropout is not seedable).
#[derive(Debug, Default)]
pub struct LoraMode {
    training: AtomicBool,
    dropout: Mutex<Option<(f64, ChaCha8Rng)>>,
    packing: Mutex<Option<Packing>>,
}

/// Where the rows of a packed batch sit in its right-padded layout, while a packed pass
/// runs (`Model::hidden_states_packed`): each dropout mask is drawn for the padded input and
/// its real rows taken, so the stream, and the training, are as without packing.
#[derive(Debug, Clone)]
pub(super) struct Packing {
    pub padded_rows: usize,
    /// Each packed row's index in the padded layout (u32, on the model's device).
    pub rows: Tensor,
}

impl LoraMode {
    pub(super) fn set_training(&self, on: bool) {
        self.training.store(on, Ordering::Relaxed);
    }

    /// Dropout at `rate` (none at 0) from here on, seeded by `seed`.
    pub fn seed_dropout(&self, rate: f64, seed: u64) {
        *self.dropout.lock().expect("dropout state") = (rate > 0.0).then(|| (rate, ChaCha8Rng::seed_from_u64(seed)));
    }

    /// Where the mask stream stands (None when off), for checkpoints.
    pub fn position(&self) -> Option<u128> {
        self.dropout.lock().expect("dropout state").as_ref().map(|(_, rng)| rng.get_word_pos())
    }

    /// The layout of the passes that follow (None: not packed).
    pub(super) fn set_packing(&self, packing: Option<Packing>) {
        *self.packing.lock().expect("packing state") = packing;
    }

    /// Continue the mask stream from a checkpoint's position.
    pub fn seek(&self, position: u128) {
        if let Some((_, rng)) = self.dropout.lock().expect("dropout state").as_mut() {
            rng.set_word_pos(position);
        }
    }

    /// The next mask for an input of `shape`: each element 0 with probability `rate`, else
    /// 1/(1 − rate). None when off. Off the CPU the device computes the same mask from the
    /// stream's key and position (`dropout`), and the stream moves on as if drawn here. In a
    /// packed pass, drawn for the padded layout and the packed rows taken.
    fn mask(&self, shape: &candle_core::Shape, device: &Device) -> Result<Option<Tensor>> {
        let packing = self.packing.lock().expect("packing state");
        match packing.as_ref() {
            Some(p) if shape.dims().len() == 2 && shape.dims()[0] == p.rows.elem_count() => {
                let padded = self.draw_mask(&(p.padded_rows, shape.dims()[1]).into(), device)?;
                Ok(padded.map(|m| m.index_select(&p.rows, 0)).transpose()?)
            }
            _ => self.draw_mask(shape, device),
        }
    }

    fn draw_mask(&self, shape: &candle_core::Shape, device: &Device) -> Result<Option<Tensor>> {
        let mut state = self.dropout.lock().expect("dropout state");
        let Some((rate, rng)) = state.as_mut() else { return Ok(None) };
        let keep = (1.0 / (1.0 - *rate)) as f32;
        if !device.is_cpu() {
            return Ok(Some(super::dropout::StreamMask::take(rng, *rate, keep, shape).on(device)?));
        }
        let mask: Vec<f32> =
            (0..shape.elem_count()).map(|_| if rng.random::<f64>() < *rate { 0.0 } else { keep }).collect();
        Ok(Some(Tensor::from_vec(mask, shape, device)?))
    }
}

/// A linear layer `y = x·Wᵀ (+ b)`, optionally with a LoRA adapter.
#[derive(Debug, Clone)]
pub struct Linear {
    pub weight: Tensor,
    pub bias: Option<Tensor>,
    pub lora: Option<LoraPair>,
    /// The weight in bf16, packed for the CPU's bf16 products (`--dtype bf16` when scoring on
    /// a CPU with AVX-512 BF16): `x·Wᵀ` is taken from it, the adapter's product stays f32.
    pub(super) bf16: Option<Arc<PackedWeight>>,
}

impl Linear {
    /// A layer over `weight` `[out, in]` with its bias and adapter; with `bf16_products` the
    /// weight is also packed in bf16 for the CPU's bf16 products (inference only, on a CPU
    /// with AVX-512 BF16: [`super::cpu::bf16`]).
    pub fn new(weight: Tensor, bias: Option<Tensor>, lora: Option<LoraPair>, bf16_products: bool) -> Result<Linear> {
        let bf16 = match bf16_products {
            true => {
                let (out_dim, in_dim) = weight.dims2()?;
                Some(super::with_values(&weight, |w| Ok(Arc::new(PackedWeight::new(w, out_dim, in_dim))))?)
            }
            false => None,
        };
        Ok(Linear { weight, bias, lora, bf16 })
    }

    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let dims = x.dims().to_vec();
        let (rows, inner) = (dims[..dims.len() - 1].iter().product::<usize>(), dims[dims.len() - 1]);
        let flat = x.reshape((rows, inner))?;
        let on_cpu_in_f32 = flat.device().is_cpu() && flat.dtype() == DType::F32 && self.weight.dtype() == DType::F32;
        let bf16 = self.bf16.as_ref().filter(|_| on_cpu_in_f32);
        let mut y = match (&self.lora, bf16) {
            (Some(lora), Some(packed)) => (super::cpu::bf16::linear(&flat, packed)? + low_rank(&flat, lora)?)?,
            (None, Some(packed)) => super::cpu::bf16::linear(&flat, packed)?,
            (Some(lora), None) if on_cpu_in_f32 => {
                let mask = lora.mode.mask(flat.shape(), flat.device())?;
                let (a, b) = lora.matrices();
                super::cpu::frozen::lora_matmul(&flat, &self.weight, &a, &b, lora.scale, mask)?
            }
            (Some(lora), None) => self.composed(&flat, lora)?,
            (None, None) if on_cpu_in_f32 => super::cpu::frozen::matmul(&flat, &self.weight)?,
            (None, None) => flat.matmul(&self.weight.t()?)?,
        };
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        let mut out_dims = dims;
        *out_dims.last_mut().unwrap() = self.weight.dim(0)?;
        Ok(y.reshape(out_dims)?)
    }

    /// `x·Wᵀ + scale·(drop(x)·Aᵀ)·Bᵀ` from plain candle ops (any device and dtype): the
    /// reference the CPU kernel (`frozen::lora_matmul`) is tested against.
    pub(super) fn composed(&self, x: &Tensor, lora: &LoraPair) -> Result<Tensor> {
        let y = x.matmul(&self.weight.t()?)?;
        let low = low_rank(x, lora)?.to_dtype(y.dtype())?;
        Ok((y + low)?)
    }
}

/// The adapter's share of a LoRA layer in f32: `scale·(drop(x)·Aᵀ)·Bᵀ`, from candle ops.
fn low_rank(x: &Tensor, lora: &LoraPair) -> Result<Tensor> {
    let mut x_adapter = x.to_dtype(DType::F32)?;
    if let Some(mask) = lora.mode.mask(x.shape(), x.device())? {
        x_adapter = (x_adapter * mask)?;
    }
    let (a, b) = lora.matrices();
    Ok((x_adapter.matmul(&a.t()?)?.matmul(&b.t()?)? * lora.scale)?)
}

/// Every adapter variable of a model, by PEFT key, with the spec that made them.
#[derive(Debug, Clone)]
pub struct LoraSet {
    pub spec: LoraSpec,
    pub vars: BTreeMap<String, Var>,
    /// `sha256:` of the base model's `config.json`, recorded in `adapter_config.json`.
    pub base_config: String,
    pub mode: Arc<LoraMode>,
}

/// Where a model's adapters come from while it is built.
pub enum AdapterSource {
    None,
    /// Fresh adapters, PEFT's initialisation (A Kaiming-uniform, B zero) from a seeded stream.
    New {
        spec: LoraSpec,
        /// Boxed: the generator's state is far larger than the other variants.
        rng: Box<ChaCha8Rng>,
    },
    /// A saved PEFT adapter folder, already read.
    Load {
        spec: LoraSpec,
        tensors: BTreeMap<String, Tensor>,
        path: std::path::PathBuf,
    },
}

impl AdapterSource {
    /// Read a PEFT adapter folder, refusing one made for another base model.
    pub fn load(dir: &Path, base_config: &str, device: &Device) -> Result<AdapterSource> {
        let adapter = read_adapter(dir)?;
        if !adapter.base_config.is_empty() && !super::same_base(&adapter.base_config, base_config) {
            return Err(bad_input(
                &dir.join(ADAPTER_CONFIG),
                "adapter was trained on another base model (fedmkt_base_config differs: another config.json, or other weights under it)",
            ));
        }
        let tensors = adapter.tensors.into_iter().map(|(k, v)| Ok((k, v.to_device(device)?))).collect::<Result<_>>()?;
        Ok(AdapterSource::Load { spec: adapter.spec, tensors, path: dir.join(ADAPTER_WEIGHTS) })
    }

    pub fn spec(&self) -> Option<&LoraSpec> {
        match self {
            AdapterSource::None => None,
            AdapterSource::New { spec, .. } | AdapterSource::Load { spec, .. } => Some(spec),
        }
    }

    /// The adapter pair for a layer, or None when the layer is not targeted.
    pub fn pair_for(
        &mut self,
        module_path: &str,
        in_dim: usize,
        out_dim: usize,
        mode: &Arc<LoraMode>,
        device: &Device,
    ) -> Result<Option<LoraPair>> {
        let Some(spec) = self.spec().filter(|s| s.targets_module(module_path)).cloned() else { return Ok(None) };
        let (a, b) = match self {
            AdapterSource::New { rng, .. } => {
                // PEFT: kaiming_uniform_(a=√5) → U(±1/√in); B starts at zero so training starts at the base model.
                let bound = 1.0 / (in_dim as f32).sqrt();
                let a: Vec<f32> = (0..spec.r * in_dim).map(|_| rng.random_range(-bound..bound)).collect();
                (Tensor::from_vec(a, (spec.r, in_dim), device)?, Tensor::zeros((out_dim, spec.r), DType::F32, device)?)
            }
            AdapterSource::Load { tensors, path, .. } => {
                let mut take = |matrix: char, shape: (usize, usize)| -> Result<Tensor> {
                    let key = peft_key(module_path, matrix);
                    let t = tensors.remove(&key).ok_or_else(|| {
                        bad_input(path, format!("adapter has no tensor '{key}' (adapter for another architecture?)"))
                    })?;
                    if t.dims() != [shape.0, shape.1] {
                        return Err(bad_input(path, format!("'{key}' has shape {:?}, the base model needs {shape:?} (adapter for another base model?)", t.dims())));
                    }
                    Ok(t)
                };
                (take('A', (spec.r, in_dim))?, take('B', (out_dim, spec.r))?)
            }
            AdapterSource::None => unreachable!(),
        };
        Ok(Some(LoraPair {
            a: Var::from_tensor(&a)?,
            b: Var::from_tensor(&b)?,
            scale: spec.scale(),
            mode: mode.clone(),
        }))
    }

    /// After the model is built: every tensor of a loaded adapter must have found its layer.
    pub fn finish(self) -> Result<()> {
        if let AdapterSource::Load { tensors, path, .. } = self {
            if let Some(key) = tensors.keys().next() {
                return Err(bad_input(&path, format!("adapter tensor '{key}' matches no layer of the base model")));
            }
        }
        Ok(())
    }
}

fn spec_from_json(json: &Value) -> std::result::Result<LoraSpec, String> {
    if json.get("peft_type").and_then(Value::as_str) != Some("LORA") {
        return Err("not a LoRA adapter (peft_type is not \"LORA\")".into());
    }
    for (key, plain) in [
        ("rank_pattern", json!({})),
        ("alpha_pattern", json!({})),
        ("use_rslora", json!(false)),
        ("use_dora", json!(false)),
    ] {
        if json.get(key).is_some_and(|v| !v.is_null() && *v != plain) {
            return Err(format!("'{key}' is not supported"));
        }
    }
    let targets = match json.get("target_modules") {
        Some(Value::Array(list)) => list
            .iter()
            .map(|v| v.as_str().map(String::from).ok_or("target_modules must be strings"))
            .collect::<std::result::Result<Vec<_>, _>>()?,
        Some(Value::String(name)) if name.chars().all(|c| c.is_alphanumeric() || c == '_') => vec![name.clone()],
        _ => return Err("target_modules must be a list of module names".into()),
    };
    let mut targets = targets;
    targets.sort();
    let r = json.get("r").and_then(Value::as_u64).ok_or("no integer 'r'")? as usize;
    let alpha = json.get("lora_alpha").and_then(Value::as_f64).unwrap_or(r as f64);
    let dropout = json.get("lora_dropout").and_then(Value::as_f64).unwrap_or(0.0);
    if r == 0 || !(alpha.is_finite() && alpha > 0.0) || !(0.0..1.0).contains(&dropout) || targets.is_empty() {
        return Err(format!("r {r}, lora_alpha {alpha}, lora_dropout {dropout}, target_modules {targets:?}: need r ≥ 1, alpha > 0, dropout in [0, 1), some targets"));
    }
    Ok(LoraSpec { r, alpha, dropout, targets })
}

impl LoraSet {
    /// Every trainable variable, in key order.
    pub fn all_vars(&self) -> Vec<Var> {
        self.vars.values().cloned().collect()
    }

    /// The trained adapter as it stands.
    pub fn adapter(&self) -> Adapter {
        let tensors = self.vars.iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect();
        Adapter { spec: self.spec.clone(), base_config: self.base_config.clone(), tensors }
    }
}

/// An adapter folder's content: its spec, the base model it was made for, its tensors.
#[derive(Debug, Clone)]
pub struct Adapter {
    pub spec: LoraSpec,
    /// `fedmkt_base_config` (empty for adapters PEFT wrote).
    pub base_config: String,
    pub tensors: BTreeMap<String, Tensor>,
}

/// Read an adapter folder (PEFT's format) on the CPU, tensors in f32.
pub fn read_adapter(dir: &Path) -> Result<Adapter> {
    let config_path = dir.join(ADAPTER_CONFIG);
    let text =
        std::fs::read_to_string(&config_path).map_err(|e| bad_input(&config_path, format!("cannot read: {e}")))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| bad_input(&config_path, format!("not JSON ({e})")))?;
    let spec = spec_from_json(&json).map_err(|p| bad_input(&config_path, p))?;
    let base_config = json.get("fedmkt_base_config").and_then(Value::as_str).unwrap_or_default().to_string();
    let weights = dir.join(ADAPTER_WEIGHTS);
    let tensors = candle_core::safetensors::load(&weights, &Device::Cpu)
        .map_err(|e| bad_input(&weights, format!("cannot read adapter ({e})")))?;
    let tensors: BTreeMap<String, Tensor> =
        tensors.into_iter().map(|(k, v)| Ok((k, v.to_dtype(DType::F32)?))).collect::<Result<_>>()?;
    for (key, tensor) in &tensors {
        let values = tensor.flatten_all()?.to_vec1::<f32>()?;
        if let Some(v) = values.iter().find(|v| !v.is_finite()) {
            return Err(bad_input(&weights, format!("'{key}' holds {v}: an adapter must be finite")));
        }
    }
    Ok(Adapter { spec, base_config, tensors })
}

/// Write an adapter folder in PEFT's format (atomically, as a whole; see [`crate::output`]).
pub fn save_adapter(dir: &Path, adapter: &Adapter, base_model_name: &str) -> Result<()> {
    crate::io::write_folder(dir, crate::output::Kind::Adapter, |tmp| fill_adapter_folder(tmp, adapter, base_model_name))
}

/// The adapter's two files (PEFT's format) in a folder being staged.
pub fn fill_adapter_folder(tmp: &Path, adapter: &Adapter, base_model_name: &str) -> Result<()> {
    let mut targets = adapter.spec.targets.clone();
    targets.sort();
    let spec = &adapter.spec;
    let config = json!({
        "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": base_model_name,
        "r": spec.r, "lora_alpha": spec.alpha, "lora_dropout": spec.dropout,
        "target_modules": targets, "bias": "none", "fan_in_fan_out": false, "inference_mode": true,
        "init_lora_weights": true, "use_rslora": false, "use_dora": false, "modules_to_save": null,
        "fedmkt_base_config": adapter.base_config,
    });
    std::fs::write(tmp.join(ADAPTER_CONFIG), serde_json::to_string_pretty(&config)? + "\n")?;
    let tensors: Vec<(String, Tensor)> = adapter.tensors.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
    let metadata = std::collections::HashMap::from([("format".to_string(), "pt".to_string())]);
    safetensors::serialize_to_file(tensors, Some(metadata), &tmp.join(ADAPTER_WEIGHTS))
        .context("cannot write adapter weights")?;
    Ok(())
}
