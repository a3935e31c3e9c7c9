//! Decoder language models on candle, trainable through LoRA adapters.
//!
//! One readable file per architecture (`llama.rs`, `gemma3.rs`, `gpt2.rs`, `opt.rs`,
//! `bloom.rs`) over shared differentiable building blocks (`layers.rs`: norms, attention;
//! here: attention's projections, the two kinds of MLP), positions and masks (`geometry.rs`),
//! and LoRA-capable linear layers (`lora.rs`). Everything else in
//! fedmkt sees [`Model::hidden_states`] + [`Model::logits`] and a set of LoRA variables.
//! candle-transformers' models serve as an independent reference in the tests: they cannot be
//! trained (fused ops without gradients, no way to inject LoRA).
mod bloom;
pub mod config;
mod cpu;
mod dropout;
mod gemma3;
mod geometry;
mod gpt2;
mod layer_norm_block;
pub mod layers;
mod llama;
pub mod lora;
mod opt;
mod weights;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::VarBuilder;

pub use config::{Arch, ModelConfig};
pub use cpu::fused::Activation;
pub(crate) use cpu::gemm::with_values;
use geometry::{Geometry, KeyValues, LayerGeometry};
use layers::{LayerNorm, RmsNorm};
pub use lora::{AdapterSource, Linear, LoraSet, LoraSpec};
use weights::check_every_tensor_read;
pub use weights::{base_config_hash, same_base, weight_files};

use crate::cli::{bad_input, bad_usage};
use crate::io::Provenance;

/// Parse a `--dtype` flag: f32, bf16 or f16.
pub fn parse_dtype(name: &str) -> Result<DType> {
    match name {
        "f32" => Ok(DType::F32),
        "bf16" => Ok(DType::BF16),
        "f16" => Ok(DType::F16),
        other => Err(bad_usage(format!("--dtype must be f32, bf16 or f16, not '{other}'"))),
    }
}

/// Parse a `--device` flag: cpu, or cuda (GPU 0; needs a build with `--features cuda`,
/// `make build-cuda`).
pub fn parse_device(name: &str) -> Result<Device> {
    match name {
        "cpu" => Ok(Device::Cpu),
        "cuda" => Device::new_cuda(0).map_err(|e| {
            let hint = if cfg!(feature = "cuda") { "" } else { " (this build has no CUDA: make build-cuda)" };
            bad_usage(format!("--device cuda: {}{hint}", e.to_string().lines().next().unwrap_or_default()))
        }),
        other => Err(bad_usage(format!("--device must be cpu or cuda, not '{other}'"))),
    }
}

/// Where a model tool runs and in what precision, from its shared flags (`--device`,
/// `--dtype`; the dtype checked first).
pub fn placement(args: &crate::cli::ModelArgs) -> Result<(Device, DType)> {
    let dtype = parse_dtype(&args.dtype)?;
    Ok((parse_device(&args.device)?, dtype))
}

/// Reads base weights and creates (or loads) adapters while an architecture is assembled.
pub struct Builder<'a> {
    vb: VarBuilder<'a>,
    dir: PathBuf,
    adapter: AdapterSource,
    lora_vars: BTreeMap<String, Var>,
    lora_mode: Arc<lora::LoraMode>,
    pub device: Device,
    /// The names of the base tensors read so far: every tensor of the weight files must be.
    read: std::cell::RefCell<std::collections::BTreeSet<String>>,
    /// Whether each frozen weight is also packed for the CPU's bf16 products.
    bf16_products: bool,
}

impl Builder<'_> {
    /// A base tensor by Hugging Face name, with the shape the config implies.
    pub fn tensor(&self, name: &str, shape: &[usize]) -> Result<Tensor> {
        self.read.borrow_mut().insert(name.to_string());
        self.vb
            .get(shape, name)
            .map_err(|e| bad_input(&self.dir, format!("weights: {}", e.to_string().lines().next().unwrap_or_default())))
    }

    pub fn has(&self, name: &str) -> bool {
        self.vb.contains_tensor(name)
    }

    /// A linear layer at `path` (e.g. `model.layers.0.self_attn.q_proj`), with its adapter if targeted.
    pub fn linear(&mut self, path: &str, in_dim: usize, out_dim: usize, bias: bool) -> Result<Linear> {
        let weight = self.tensor(&format!("{path}.weight"), &[out_dim, in_dim])?;
        self.adapted(path, weight, bias)
    }

    /// GPT-2's `Conv1D` at `path`: a linear layer whose weight is stored `[in, out]` (read once
    /// into the `[out, in]` of [`Linear`]), always with a bias. Its adapter is PEFT's, whose
    /// A and B have a linear layer's shapes (`fan_in_fan_out` concerns the base weight only).
    pub fn conv1d(&mut self, path: &str, in_dim: usize, out_dim: usize) -> Result<Linear> {
        let weight = self.tensor(&format!("{path}.weight"), &[in_dim, out_dim])?.t()?.contiguous()?;
        self.adapted(path, weight, true)
    }

    /// A linear layer of `weight` `[out, in]` at `path`, its bias if `bias`, its adapter if targeted.
    fn adapted(&mut self, path: &str, weight: Tensor, bias: bool) -> Result<Linear> {
        let (out_dim, in_dim) = weight.dims2()?;
        let bias = if bias { Some(self.tensor(&format!("{path}.bias"), &[out_dim])?) } else { None };
        let lora = self.adapter.pair_for(path, in_dim, out_dim, &self.lora_mode, &self.device)?;
        if let Some(pair) = &lora {
            self.lora_vars.insert(lora::peft_key(path, 'A'), pair.a.clone());
            self.lora_vars.insert(lora::peft_key(path, 'B'), pair.b.clone());
        }
        Linear::new(weight, bias, lora, self.bf16_products)
    }

    /// A LayerNorm with its bias (GPT-2, OPT, Bloom).
    pub fn layer_norm(&self, path: &str, dim: usize, eps: f64) -> Result<LayerNorm> {
        let f32 = |name: &str| -> Result<Tensor> {
            Ok(self.tensor(&format!("{path}.{name}"), &[dim])?.to_dtype(DType::F32)?)
        };
        Ok(LayerNorm { weight: f32("weight")?, bias: f32("bias")?, eps })
    }

    /// An RMS norm; `plus_one` for Gemma's `x·(1 + w)`.
    pub fn rms_norm(&self, path: &str, dim: usize, eps: f64, plus_one: bool) -> Result<RmsNorm> {
        let w = self.tensor(&format!("{path}.weight"), &[dim])?.to_dtype(DType::F32)?;
        let scale = if plus_one { (w + 1.0)? } else { w };
        Ok(RmsNorm { scale, eps })
    }
}

/// How a layer projects its input to queries, keys and values.
pub enum Qkv {
    /// Three projections (llama, OPT).
    Separate { q: Linear, k: Linear, v: Linear },
    /// One projection to `[q | k | v]` (GPT-2's `c_attn`).
    Stacked(Linear),
    /// One projection to `[q k v]` per head, head after head (Bloom's `query_key_value`).
    PerHead(Linear),
}

/// A decoder layer's attention: its projections, and attention over them.
pub struct Attention {
    qkv: Qkv,
    out: Linear,
    heads: usize,
    kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(qkv: Qkv, out: Linear, cfg: &ModelConfig) -> Attention {
        Attention {
            qkv,
            out,
            heads: cfg.num_attention_heads,
            kv_heads: cfg.num_key_value_heads,
            head_dim: cfg.head_dim,
        }
    }

    /// The projections `q_proj`, `k_proj`, `v_proj` (biased as the config says) and the
    /// output projection `out` under `prefix`: llama's `o_proj` without a bias, OPT's
    /// `out_proj` with one.
    pub fn separate(b: &mut Builder, prefix: &str, cfg: &ModelConfig, out: &str, out_bias: bool) -> Result<Attention> {
        let (h, d) = (cfg.hidden_size, cfg.head_dim);
        let (heads, kv_heads) = (cfg.num_attention_heads, cfg.num_key_value_heads);
        let qkv = Qkv::Separate {
            q: b.linear(&format!("{prefix}.q_proj"), h, heads * d, cfg.qkv_bias)?,
            k: b.linear(&format!("{prefix}.k_proj"), h, kv_heads * d, cfg.qkv_bias)?,
            v: b.linear(&format!("{prefix}.v_proj"), h, kv_heads * d, cfg.qkv_bias)?,
        };
        let out = b.linear(&format!("{prefix}.{out}"), heads * d, h, out_bias)?;
        Ok(Attention::new(qkv, out, cfg))
    }

    /// Queries, keys and values `[batch, heads, seq, head_dim]` of `x`.
    fn project(&self, x: &Tensor) -> Result<(Tensor, Tensor, Tensor)> {
        let (heads, kv_heads, d) = (self.heads, self.kv_heads, self.head_dim);
        match &self.qkv {
            Qkv::Separate { q, k, v } => Ok((
                split_heads(&q.forward(x)?, heads, d)?,
                split_heads(&k.forward(x)?, kv_heads, d)?,
                split_heads(&v.forward(x)?, kv_heads, d)?,
            )),
            Qkv::Stacked(qkv) => {
                let y = qkv.forward(x)?;
                let part = |i: usize| split_heads(&y.narrow(2, i * heads * d, heads * d)?, heads, d);
                Ok((part(0)?, part(1)?, part(2)?))
            }
            Qkv::PerHead(qkv) => {
                let (b, t, _) = x.dims3()?;
                let y = qkv.forward(x)?.reshape((b, t, heads, 3, d))?;
                let part =
                    |i: usize| -> Result<Tensor> { Ok(y.narrow(3, i, 1)?.squeeze(3)?.transpose(1, 2)?.contiguous()?) };
                Ok((part(0)?, part(1)?, part(2)?))
            }
        }
    }

    /// Self-attention of `x` `[batch, seq, hidden]` after the keys and values of `past` (a
    /// cached prefix; the mask covers its keys, then x's), and x's own keys and values;
    /// `qk_norm` normalises queries and keys per head before the rotary embedding (Gemma-3,
    /// Qwen3), and the rotary embedding applies where the geometry has one.
    pub fn forward(
        &self,
        x: &Tensor,
        at: LayerGeometry,
        training: bool,
        scale: f64,
        qk_norm: Option<(&RmsNorm, &RmsNorm)>,
        past: Option<&KeyValues>,
    ) -> Result<(Tensor, KeyValues)> {
        let (mut q, mut k, v) = self.project(x)?;
        if let Some((q_norm, k_norm)) = qk_norm {
            (q, k) = (q_norm.forward(&q)?, k_norm.forward(&k)?);
        }
        if let Some((cos, sin)) = at.rotary {
            (q, k) = (layers::apply_rotary(&q, cos, sin, training)?, layers::apply_rotary(&k, cos, sin, training)?);
        }
        let attended = match past {
            Some((past_k, past_v)) => {
                layers::attention(&q, &Tensor::cat(&[past_k, &k], 2)?, &Tensor::cat(&[past_v, &v], 2)?, at.mask, scale)?
            }
            None => layers::attention(&q, &k, &v, at.mask, scale)?,
        };
        Ok((self.out.forward(&merge_heads(&attended)?)?, (k, v)))
    }
}

/// A plain MLP `down(act(up(x)))` (GPT-2, OPT, Bloom).
pub struct Mlp {
    pub up: Linear,
    pub down: Linear,
}

impl Mlp {
    pub fn forward(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        let middle = self.up.forward(x)?;
        // One parallel pass on the CPU (candle's GELU is a serial tanh per element).
        let middle = if cpu::fused::cpu_f32(&middle) {
            cpu::fused::activate(&middle, activation)?
        } else {
            activation.apply(&middle)?
        };
        self.down.forward(&middle)
    }
}

/// A gated MLP `down(act(gate(x)) · up(x))`: SiLU for llama, GELU (tanh) for Gemma.
pub struct GatedMlp {
    gate_proj: Linear,
    up_proj: Linear,
    down_proj: Linear,
}

impl GatedMlp {
    pub fn load(b: &mut Builder, prefix: &str, cfg: &ModelConfig) -> Result<GatedMlp> {
        let (h, f) = (cfg.hidden_size, cfg.intermediate_size);
        Ok(GatedMlp {
            gate_proj: b.linear(&format!("{prefix}.gate_proj"), h, f, false)?,
            up_proj: b.linear(&format!("{prefix}.up_proj"), h, f, false)?,
            down_proj: b.linear(&format!("{prefix}.down_proj"), f, h, false)?,
        })
    }

    pub fn forward(&self, x: &Tensor, activation: Activation) -> Result<Tensor> {
        let (gate, up) = (self.gate_proj.forward(x)?, self.up_proj.forward(x)?);
        // One parallel pass on the CPU, with or without gradients (candle's GELU is a serial
        // tanh per element, an eighth of Gemma-3's inference time).
        let middle = if cpu::fused::cpu_f32(&gate) && cpu::fused::cpu_f32(&up) {
            cpu::fused::gated(&gate, &up, activation)?
        } else {
            (activation.apply(&gate)? * up)?
        };
        self.down_proj.forward(&middle)
    }
}

/// The output projection: its own weight, or the embeddings when tied.
fn lm_head(b: &mut Builder, cfg: &ModelConfig, embed_tokens: &Tensor) -> Result<Linear> {
    if cfg.tie_word_embeddings || !b.has("lm_head.weight") {
        Linear::new(embed_tokens.clone(), None, None, b.bf16_products)
    } else {
        b.linear("lm_head", cfg.embed_dim, cfg.vocab_size, false)
    }
}

/// One forward pass's inputs: `ids` placed by `geometry` after `past` (a cached prefix's keys
/// and values per layer), in training mode (dropout on) or not.
#[derive(Clone, Copy)]
struct Pass<'a> {
    ids: &'a Tensor,
    geometry: &'a Geometry,
    training: bool,
    past: Option<&'a [KeyValues]>,
}

/// Final hidden states, and each layer's keys and values.
type Hidden = (Tensor, Vec<KeyValues>);

/// What [`Model`] needs of an architecture.
trait Decoder: Send + Sync {
    /// The final hidden states of a pass, and each layer's keys and values.
    fn run(&self, pass: &Pass) -> Result<Hidden>;

    /// The projection of final hidden states to the vocabulary.
    fn lm_head(&self) -> &Linear;
}

/// A loaded model: base weights, optional LoRA adapters, and its config.
pub struct Model {
    pub config: ModelConfig,
    pub lora: Option<LoraSet>,
    pub device: Device,
    /// Differentiable ops everywhere and adapters recording ops (for training); off, inference
    /// may use fused kernels and nothing records ops.
    pub training: bool,
    net: Box<dyn Decoder>,
}

/// Refuse a tokenizer with more tokens than the model has embeddings: some of its ids would
/// index past the embedding table.
pub fn check_tokenizer_fits(tokenizer: &tokenizers::Tokenizer, tokenizer_path: &Path, vocab_size: usize) -> Result<()> {
    let n = tokenizer.get_vocab_size(true);
    if n > vocab_size {
        return Err(bad_input(
            tokenizer_path,
            format!("the tokenizer has {n} tokens, more than the model's {vocab_size} embeddings"),
        ));
    }
    Ok(())
}

/// The modules LoRA adapts in the model folder `dir` unless told otherwise: its architecture's
/// default ([`Arch::default_lora_targets`]).
pub fn default_lora_targets(dir: &Path) -> Result<Vec<String>> {
    let config = ModelConfig::from_file(&dir.join("config.json"))?;
    Ok(config.arch.default_lora_targets().iter().map(|t| t.to_string()).collect())
}

/// `provenance` with the inputs of a model as scored: `model` (the hash of its config) and,
/// when one is applied, `adapter` (the hash of its weights).
pub fn with_model_inputs(provenance: Provenance, dir: &Path, adapter_dir: Option<&Path>) -> Result<Provenance> {
    let provenance = provenance.input("model", base_config_hash(dir)?);
    Ok(match adapter_dir {
        Some(adapter_dir) => {
            provenance.input("adapter", crate::io::file_hash(&adapter_dir.join(lora::ADAPTER_WEIGHTS))?)
        }
        None => provenance,
    })
}

impl Model {
    /// Load a model folder in `dtype` on `device`, with adapters from `adapter`.
    pub fn load(dir: &Path, adapter: AdapterSource, dtype: DType, device: &Device) -> Result<Model> {
        Model::assemble(dir, adapter, dtype, device, false)
    }

    /// [`Model::load`]; with `bf16_products`, the weights read in f32 and each frozen one also
    /// packed in bf16 for the CPU's bf16 products.
    fn assemble(
        dir: &Path,
        adapter: AdapterSource,
        dtype: DType,
        device: &Device,
        bf16_products: bool,
    ) -> Result<Model> {
        let config = ModelConfig::from_file(&dir.join("config.json"))?;
        let files = weight_files(dir)?;
        for f in &files {
            if !f.is_file() {
                return Err(bad_input(f, "weight file missing"));
            }
        }
        // SAFETY: the files are memory-mapped read-only; fedmkt never writes a model folder in place.
        let vb = unsafe { VarBuilder::from_mmaped_safetensors(&files, dtype, device) }.map_err(|e| {
            bad_input(dir, format!("cannot read weights ({})", e.to_string().lines().next().unwrap_or_default()))
        })?;
        let with_lora = adapter.spec().is_some();
        let mut builder = Builder {
            vb,
            dir: dir.to_path_buf(),
            adapter,
            lora_vars: BTreeMap::new(),
            lora_mode: Arc::default(),
            device: device.clone(),
            read: Default::default(),
            bf16_products,
        };
        let net: Box<dyn Decoder> = match config.arch {
            Arch::Llama => Box::new(llama::Llama::load(&mut builder, &config)?),
            Arch::Gemma3 => Box::new(gemma3::Gemma3::load(&mut builder, &config)?),
            Arch::Gpt2 => Box::new(gpt2::Gpt2::load(&mut builder, &config)?),
            Arch::Opt => Box::new(opt::Opt::load(&mut builder, &config)?),
            Arch::Bloom => Box::new(bloom::Bloom::load(&mut builder, &config)?),
        };
        check_every_tensor_read(&files, &builder.read.borrow())?;
        let spec = builder.adapter.spec().cloned();
        builder.adapter.finish()?;
        let lora = match spec {
            Some(spec) if with_lora => Some(LoraSet {
                spec,
                vars: builder.lora_vars,
                base_config: base_config_hash(dir)?,
                mode: builder.lora_mode,
            }),
            _ => None,
        };
        Ok(Model { config, lora, device: device.clone(), training: false, net })
    }

    /// A model to score with, not to train: the base in `dir` with the saved adapter folder
    /// `adapter_dir` applied, if any (refused when it was trained on another base).
    ///
    /// bf16 on a CPU with AVX-512 BF16 means bf16 products only: the weights are rounded to
    /// bf16 once, each product's inputs at the product, and everything else (sums, norms,
    /// softmax, the adapter) stays f32 — faster than f32, where candle's bf16 on the CPU is
    /// slower (docs/performance.md). Elsewhere bf16 is candle's, every op in bf16.
    pub fn load_for_scoring(dir: &Path, adapter_dir: Option<&Path>, dtype: DType, device: &Device) -> Result<Model> {
        let adapter = match adapter_dir {
            Some(adapter_dir) => AdapterSource::load(adapter_dir, &base_config_hash(dir)?, device)?,
            None => AdapterSource::None,
        };
        let bf16_products = dtype == DType::BF16 && device.is_cpu() && cpu::bf16::supported();
        let dtype = if bf16_products { DType::F32 } else { dtype };
        Model::assemble(dir, adapter, dtype, device, bf16_products)
    }

    /// Final hidden states `[batch, seq, hidden]` of right-padded token ids `[batch, seq]`.
    pub fn hidden_states(&self, ids: &Tensor) -> Result<Tensor> {
        let geometry = Geometry::fresh(&self.config, ids.dim(1)?, ids.device())?;
        Ok(self.run(ids, &geometry, None)?.0)
    }

    /// Final hidden states `[1, Σ, hidden]` of samples of `lengths` tokens packed into one row
    /// `ids` `[1, Σ]` ([`Geometry::packed`]): each sample's as in a right-padded batch, with
    /// no padding to compute.
    /// LoRA dropout draws its masks as for the right-padded batch (`lora::Packing`).
    pub fn hidden_states_packed(&self, ids: &Tensor, lengths: &[usize]) -> Result<Tensor> {
        let geometry = Geometry::packed(&self.config, lengths, ids.device())?;
        let Some(lora) = &self.lora else { return Ok(self.run(ids, &geometry, None)?.0) };
        let width = lengths.iter().max().copied().unwrap_or(0);
        let rows: Vec<u32> =
            lengths.iter().enumerate().flat_map(|(b, &n)| (0..n).map(move |p| (b * width + p) as u32)).collect();
        let rows = Tensor::from_vec(rows, lengths.iter().sum::<usize>(), ids.device())?;
        lora.mode.set_packing(Some(lora::Packing { padded_rows: lengths.len() * width, rows }));
        let hidden = self.run(ids, &geometry, None);
        lora.mode.set_packing(None);
        Ok(hidden?.0)
    }

    /// Final hidden states `[batch, width, hidden]` of right-padded prefixes `[batch, width]`
    /// of `lengths` tokens, and every layer's keys and values for [`Model::hidden_states_after`].
    pub fn prefixes(&self, ids: &Tensor, lengths: Vec<usize>) -> Result<(Tensor, Prefixes)> {
        let geometry = Geometry::fresh(&self.config, ids.dim(1)?, ids.device())?;
        let (hidden, layers) = self.run(ids, &geometry, None)?;
        Ok((hidden, Prefixes { layers, lengths, width: ids.dim(1)? }))
    }

    /// Final hidden states `[rows, seq, hidden]` of right-padded continuations `ids`, row r
    /// continuing prefix `of[r]` of `prefixes`: the same as running prefix and continuation
    /// together, without computing the prefix again for each of its continuations.
    pub fn hidden_states_after(&self, prefixes: &Prefixes, of: &[usize], ids: &Tensor) -> Result<Tensor> {
        let index = Tensor::from_vec(of.iter().map(|&p| p as u32).collect::<Vec<_>>(), of.len(), ids.device())?;
        let past = prefixes
            .layers
            .iter()
            .map(|(k, v)| Ok((k.index_select(&index, 0)?, v.index_select(&index, 0)?)))
            .collect::<Result<Vec<KeyValues>>>()?;
        let lengths: Vec<usize> = of.iter().map(|&p| prefixes.lengths[p]).collect();
        let geometry = Geometry::after_prefix(&self.config, &lengths, prefixes.width, ids.dim(1)?, ids.device())?;
        Ok(self.run(ids, &geometry, Some(&past))?.0)
    }

    /// Final hidden states and each layer's keys and values of this pass.
    fn run(&self, ids: &Tensor, geometry: &Geometry, past: Option<&[KeyValues]>) -> Result<(Tensor, Vec<KeyValues>)> {
        if let Some(lora) = &self.lora {
            lora.mode.set_training(self.training);
        }
        self.net.run(&Pass { ids, geometry, training: self.training, past })
    }

    /// Next-token logits (f32) of hidden states of any leading shape `[…, hidden]`. Tools call
    /// it only at the positions they need: the vocabulary projection dominates small models.
    pub fn logits(&self, hidden: &Tensor) -> Result<Tensor> {
        let logits = self.net.lm_head().forward(hidden)?.to_dtype(DType::F32)?;
        match self.config.final_logit_softcapping {
            Some(cap) => Ok(((logits / cap)?.tanh()? * cap)?),
            None => Ok(logits),
        }
    }

    /// Logits at every position `[batch, seq, vocab]`.
    pub fn forward(&self, ids: &Tensor) -> Result<Tensor> {
        self.logits(&self.hidden_states(ids)?)
    }
}

/// Every layer's keys and values of a batch of right-padded prefixes (see [`Model::prefixes`]).
pub struct Prefixes {
    layers: Vec<KeyValues>,
    lengths: Vec<usize>,
    width: usize,
}

impl Prefixes {
    /// Prefixes of several passes as one batch, keys and values zero-padded to the widest
    /// (padding is masked: a row sees only its own prefix's length).
    pub fn concat(parts: Vec<Prefixes>) -> Result<Prefixes> {
        let width = parts.iter().map(|p| p.width).max().unwrap_or(0);
        let layers = (0..parts.first().map_or(0, |p| p.layers.len()))
            .map(|layer| {
                let side = |pick: fn(&KeyValues) -> &Tensor| -> Result<Tensor> {
                    let padded = parts
                        .iter()
                        .map(|p| Ok(pick(&p.layers[layer]).pad_with_zeros(2, 0, width - p.width)?))
                        .collect::<Result<Vec<_>>>()?;
                    Ok(Tensor::cat(&padded, 0)?)
                };
                Ok((side(|kv| &kv.0)?, side(|kv| &kv.1)?))
            })
            .collect::<Result<Vec<KeyValues>>>()?;
        Ok(Prefixes { layers, lengths: parts.iter().flat_map(|p| p.lengths.iter().copied()).collect(), width })
    }
}

/// Token embeddings `[batch, seq, hidden]` by row lookup. Detached: the table is frozen and
/// nothing before it trains, while candle's backward would otherwise build a gradient of
/// the whole table (vocabulary × hidden) at every step.
fn embed(table: &Tensor, ids: &Tensor) -> Result<Tensor> {
    let (b, t) = ids.dims2()?;
    Ok(table.index_select(&ids.flatten_all()?, 0)?.reshape((b, t, table.dim(1)?))?.detach())
}

/// Attention projections `[batch, seq, heads·dim]` → `[batch, heads, seq, dim]` and back.
fn split_heads(x: &Tensor, heads: usize, head_dim: usize) -> Result<Tensor> {
    let (b, t, _) = x.dims3()?;
    Ok(x.reshape((b, t, heads, head_dim))?.transpose(1, 2)?.contiguous()?)
}

fn merge_heads(x: &Tensor) -> Result<Tensor> {
    let (b, heads, t, d) = x.dims4()?;
    Ok(x.transpose(1, 2)?.reshape((b, t, heads * d))?)
}
