//! `distill`: train a LoRA adapter on a token file, with the task loss only (the private
//! phase, Eq. 4) or mixed with sparse distillation towards selected teacher targets
//! (`L = λ·L_FT + (1 − λ)·L_KD`, Eq. 9–10).
//!
//! Optimiser and schedule as the paper's Appendix D.1: AdamW (β 0.9/0.95, weight decay 0.1,
//! decoupled as in PyTorch), global gradient-norm clipping at 1.0, linear warmup over 0.008
//! of the steps then cosine decay to 0 (transformers' `cosine` schedule). Seeded: adapter
//! initialisation and sample order come from ChaCha streams of `--seed`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{Array, Float64Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use candle_core::backprop::GradStore;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::ParamsAdamW;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::knowledge::{self, SampleKnowledge};
use crate::model::lora::{fill_adapter_folder, LoraSpec};
use crate::model::{self, AdapterSource, Model};
use crate::output::{self, Kind};
use crate::tokens::{self, TokenizedSample};
use crate::train::{self, TeacherOptions, TeacherTargets};

pub const TRAINING_LOG_FORMAT: &str = "training-log";
pub const TRAINING_LOG: &str = "training_log.parquet";

/// Hyper-parameters of one `distill` run.
#[derive(Debug, Clone)]
pub struct DistillOptions {
    pub lambda: f64,
    pub epochs: usize,
    pub lr: f64,
    pub batch_size: usize,
    pub grad_accum: usize,
    pub warmup_ratio: f64,
    pub weight_decay: f64,
    pub max_grad_norm: f64,
    pub seed: u64,
    pub lora: LoraSpec,
    pub teacher: TeacherOptions,
    pub device: Device,
    /// Dtype of the frozen weights and activations (the LoRA variables are always f32).
    pub dtype: DType,
    /// Write a checkpoint (adapter, optimiser moments, position) every this many steps (0: never).
    pub checkpoint_every: usize,
    /// Continue from the checkpoint beside `out` if there is one.
    pub resume: bool,
    /// Stop after this many steps in all (the checkpoint then holds the run).
    pub max_steps: Option<usize>,
}

impl DistillOptions {
    /// Every hyper-parameter within the range where it means something, checked before any
    /// work: one line naming the flag and its value.
    pub fn check(&self) -> Result<()> {
        let real = |flag: &str, value: f64, ok: bool, range: &str| -> Result<()> {
            if value.is_finite() && ok {
                Ok(())
            } else {
                Err(bad_usage(format!("--{flag} {value}: must be {range}")))
            }
        };
        real("lambda", self.lambda, (0.0..=1.0).contains(&self.lambda), "within 0..=1")?;
        real("lr", self.lr, self.lr > 0.0, "positive")?;
        real("warmup-ratio", self.warmup_ratio, (0.0..1.0).contains(&self.warmup_ratio), "within 0 (inclusive) and 1")?;
        real("weight-decay", self.weight_decay, self.weight_decay >= 0.0, "zero or positive")?;
        real("max-grad-norm", self.max_grad_norm, self.max_grad_norm > 0.0, "positive")?;
        real("lora-alpha", self.lora.alpha, self.lora.alpha > 0.0, "positive")?;
        real("lora-dropout", self.lora.dropout, (0.0..1.0).contains(&self.lora.dropout), "within 0 (inclusive) and 1")?;
        real("temperature", self.teacher.temperature, self.teacher.temperature > 0.0, "positive")?;
        for (flag, value) in [
            ("batch-size", self.batch_size),
            ("grad-accum", self.grad_accum),
            ("epochs", self.epochs),
            ("lora-r", self.lora.r),
        ] {
            if value == 0 {
                return Err(bad_usage(format!("--{flag} 0: must be at least 1")));
            }
        }
        crate::cli::refuse_repeated("--lora-targets", &self.lora.targets, String::clone)?;
        if self.lora.targets.is_empty() || self.lora.targets.iter().any(|t| t.is_empty()) {
            return Err(bad_usage(format!(
                "--lora-targets '{}': name at least one module",
                self.lora.targets.join(",")
            )));
        }
        Ok(())
    }

    /// What a resumed run must share with the run that wrote the checkpoint: every setting
    /// that changes the result, and the content of every input.
    fn settings(&self, inputs: &[(String, String)]) -> std::collections::BTreeMap<String, String> {
        let mut settings: std::collections::BTreeMap<String, String> = [
            ("lambda", self.lambda.to_string()),
            ("epochs", self.epochs.to_string()),
            ("lr", self.lr.to_string()),
            ("batch-size", self.batch_size.to_string()),
            ("grad-accum", self.grad_accum.to_string()),
            ("warmup-ratio", self.warmup_ratio.to_string()),
            ("weight-decay", self.weight_decay.to_string()),
            ("max-grad-norm", self.max_grad_norm.to_string()),
            ("seed", self.seed.to_string()),
            (
                "lora",
                format!(
                    "r {} alpha {} dropout {} targets {}",
                    self.lora.r,
                    self.lora.alpha,
                    self.lora.dropout,
                    self.lora.targets.join(",")
                ),
            ),
            ("temperature", self.teacher.temperature.to_string()),
            ("teacher-tail", self.teacher.tail.to_string()),
            ("dtype", format!("{:?}", self.dtype).to_lowercase()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        settings.extend(inputs.iter().cloned());
        settings
    }
}

/// AdamW exactly as candle and PyTorch define it (decoupled weight decay, bias-corrected
/// moments), with its moments exposed: a checkpoint must hold them, and candle's `AdamW`
/// keeps them private.
struct AdamW {
    vars: Vec<(String, Var)>,
    m: Vec<Tensor>,
    v: Vec<Tensor>,
    t: i32,
    params: ParamsAdamW,
}

impl AdamW {
    fn new(vars: &std::collections::BTreeMap<String, Var>, params: ParamsAdamW) -> Result<Self> {
        let zeros = |v: &Var| v.as_tensor().zeros_like();
        let m = vars.values().map(zeros).collect::<candle_core::Result<_>>()?;
        let v = vars.values().map(zeros).collect::<candle_core::Result<_>>()?;
        Ok(AdamW { vars: vars.iter().map(|(k, v)| (k.clone(), v.clone())).collect(), m, v, t: 0, params })
    }

    fn step(&mut self, grads: &GradStore, lr: f64) -> Result<()> {
        self.t += 1;
        let p = &self.params;
        let (scale_m, scale_v) = (1.0 / (1.0 - p.beta1.powi(self.t)), 1.0 / (1.0 - p.beta2.powi(self.t)));
        for (i, (_, var)) in self.vars.iter().enumerate() {
            let Some(g) = grads.get(var.as_tensor()) else { continue };
            self.m[i] = ((&self.m[i] * p.beta1)? + (g * (1.0 - p.beta1))?)?;
            self.v[i] = ((&self.v[i] * p.beta2)? + (g.sqr()? * (1.0 - p.beta2))?)?;
            let update = ((&self.m[i] * scale_m)? / (((&self.v[i] * scale_v)?.sqrt()? + p.eps)?))?;
            var.set(&((var.as_tensor() * (1.0 - lr * p.weight_decay))? - (update * lr)?)?)?;
        }
        Ok(())
    }
}

/// Where a run stands, beside the tensors of its checkpoint.
#[derive(serde::Serialize, serde::Deserialize)]
struct CheckpointState {
    /// The run's settings and input hashes ([`DistillOptions::settings`]): a resumed run must match.
    #[serde(default)]
    settings: std::collections::BTreeMap<String, String>,
    steps_done: usize,
    adam_t: i32,
    /// The dropout stream's word position (decimal; u128).
    dropout_position: Option<String>,
    log: Vec<LogRow>,
}

/// The checkpoint folder of a run: beside `out`, named `<out>.checkpoint`.
pub fn checkpoint_dir(out: &Path) -> PathBuf {
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "adapter".into());
    out.with_file_name(format!("{name}.checkpoint"))
}

/// A periodic checkpoint is first staged beside the real one and promoted only once its
/// parameters have given a finite loss: a run that diverges keeps the last *good* checkpoint,
/// not the parameters that blew up.
struct Checkpoints {
    dir: PathBuf,
    staged: PathBuf,
}

impl Checkpoints {
    fn new(out: &Path) -> Checkpoints {
        let dir = checkpoint_dir(out);
        let staged = dir.with_extension("checkpoint.staged");
        Checkpoints { dir, staged }
    }

    fn stage(
        &self,
        adam: &AdamW,
        mode: &crate::model::lora::LoraMode,
        log: &[LogRow],
        settings: &std::collections::BTreeMap<String, String>,
    ) -> Result<()> {
        save_checkpoint(&self.staged, adam, mode, log, settings)
    }

    /// Both folders are this run's to write (checked before any work, see [`output::claim`]).
    fn outputs(&self) -> [(&Path, Kind); 2] {
        [(&self.dir, Kind::Checkpoint), (&self.staged, Kind::Checkpoint)]
    }

    /// The staged parameters gave a finite loss: they become the checkpoint.
    fn promote(&self) -> Result<()> {
        if self.staged.is_dir() {
            output::replace_folder(&self.staged, &self.dir, Kind::Checkpoint)?;
        }
        Ok(())
    }

    fn discard_staged(&self) -> Result<()> {
        output::remove_own(&self.staged, Kind::Checkpoint)
    }

    /// The run finished and wrote its adapter: no checkpoint is needed any more.
    fn remove(&self) -> Result<()> {
        self.discard_staged()?;
        output::remove_own(&self.dir, Kind::Checkpoint)
    }
}

fn save_checkpoint(
    dir: &Path,
    adam: &AdamW,
    mode: &crate::model::lora::LoraMode,
    log: &[LogRow],
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<()> {
    let state = CheckpointState {
        settings: settings.clone(),
        steps_done: log.len(),
        adam_t: adam.t,
        dropout_position: mode.position().map(|p| p.to_string()),
        log: log.to_vec(),
    };
    io::write_folder(dir, Kind::Checkpoint, |tmp| {
        let mut tensors: Vec<(String, Tensor)> = Vec::new();
        for (i, (key, var)) in adam.vars.iter().enumerate() {
            tensors.extend([
                (format!("param:{key}"), var.as_tensor().clone()),
                (format!("m:{key}"), adam.m[i].clone()),
                (format!("v:{key}"), adam.v[i].clone()),
            ]);
        }
        candle_core::safetensors::save(&tensors.into_iter().collect(), tmp.join("state.safetensors"))?;
        std::fs::write(tmp.join("state.json"), serde_json::to_string_pretty(&state)?)?;
        Ok(())
    })
}

/// Restore adapter, moments and dropout position; returns the log so far.
fn load_checkpoint(
    dir: &Path,
    adam: &mut AdamW,
    mode: &crate::model::lora::LoraMode,
    device: &Device,
    settings: &std::collections::BTreeMap<String, String>,
) -> Result<Vec<LogRow>> {
    let state_path = dir.join("state.json");
    let text = std::fs::read_to_string(&state_path).map_err(|e| bad_input(&state_path, format!("cannot read: {e}")))?;
    let state: CheckpointState =
        serde_json::from_str(&text).map_err(|e| bad_input(&state_path, format!("not a checkpoint ({e})")))?;
    // Both ways: a setting or input this run lacks (a dropped --teacher or --data) differs too.
    let keys: std::collections::BTreeSet<&String> = settings.keys().chain(state.settings.keys()).collect();
    if let Some(key) = keys.into_iter().find(|k| settings.get(*k) != state.settings.get(*k)) {
        let quoted = |v: Option<&String>| v.map_or("nothing".to_string(), |v| format!("'{v}'"));
        return Err(bad_input(
            &state_path,
            format!(
                "was made with {key} {}, this run has {}; --resume needs the same settings and inputs",
                quoted(state.settings.get(key)),
                quoted(settings.get(key))
            ),
        ));
    }
    let tensors_path = dir.join("state.safetensors");
    let tensors = candle_core::safetensors::load(&tensors_path, device)
        .map_err(|e| bad_input(&tensors_path, format!("cannot read ({e})")))?;
    let get = |name: String| {
        tensors
            .get(&name)
            .cloned()
            .ok_or_else(|| bad_input(&tensors_path, format!("no tensor '{name}' (a checkpoint of another adapter?)")))
    };
    for (i, (key, var)) in adam.vars.iter().enumerate() {
        var.set(&get(format!("param:{key}"))?)?;
        adam.m[i] = get(format!("m:{key}"))?;
        adam.v[i] = get(format!("v:{key}"))?;
    }
    adam.t = state.adam_t;
    if let Some(position) = state.dropout_position {
        mode.seek(position.parse().map_err(|_| bad_input(&state_path, "bad dropout_position"))?);
    }
    Ok(state.log)
}

/// The hash of a model's weight files, in order: what its config's hash does not cover.
fn weights_hash(model_dir: &Path) -> Result<String> {
    let hashes: Vec<String> =
        model::weight_files(model_dir)?.iter().map(|f| io::file_hash(f)).collect::<Result<_>>()?;
    Ok(format!("sha256:{}", io::sha256_hex(hashes.join(",").as_bytes())))
}

/// transformers' `get_cosine_schedule_with_warmup`: linear warmup over
/// `ceil(warmup_ratio · total)` steps, then half a cosine down to 0. `step` counts from 0.
pub fn learning_rate(step: usize, total: usize, warmup_ratio: f64, base: f64) -> f64 {
    let warmup = (warmup_ratio * total as f64).ceil() as usize;
    if step < warmup {
        return base * step as f64 / warmup.max(1) as f64;
    }
    let progress = (step - warmup) as f64 / (total - warmup).max(1) as f64;
    base * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
}

/// One training example: its tokens and, if `select` chose it, the teacher's rows.
#[derive(Clone, Copy)]
struct Example<'a> {
    tokens: &'a TokenizedSample,
    teacher: Option<&'a SampleKnowledge>,
}

/// Losses of one micro-batch.
struct BatchLoss {
    loss: Tensor,
    ce: f64,
    /// Σ of the KD cross-entropy over the batch's selected positions, and their count.
    kd_sum: f64,
    kd_positions: usize,
    /// Samples of the batch with teacher targets.
    selected: usize,
    tokens: usize,
}

/// Row-major positions `b·T + p` of `[batch, T]` and what each predicts.
fn flat_positions(batch: &[Example], width: usize, of: impl Fn(&Example) -> Vec<usize>) -> Vec<u32> {
    batch.iter().enumerate().flat_map(|(b, e)| of(e).into_iter().map(move |p| (b * width + p) as u32)).collect()
}

/// One micro-batch's loss, Eq. 9–10 as [`train::SampleWeights`] estimates it, and its parts
/// for the log: the mean over its samples of each one's answer-token CE, and the sum and count
/// of its selected positions' KD (a step's `kd` is their mean over all its micro-batches).
fn batch_loss(
    model: &Model,
    batch: &[Example],
    k: usize,
    weights: &train::SampleWeights,
    opts: &DistillOptions,
) -> Result<BatchLoss> {
    let width = batch.iter().map(|e| e.tokens.input_ids.len()).max().unwrap_or(0);
    let ids: Vec<u32> = batch
        .iter()
        .flat_map(|e| {
            e.tokens
                .input_ids
                .iter()
                .copied()
                .chain(std::iter::repeat_n(crate::scoring::BATCH_FILL_ID, width - e.tokens.input_ids.len()))
        })
        .collect();
    let ids = Tensor::from_vec(ids, (batch.len(), width), &opts.device)?;
    let hidden = model.hidden_states(&ids)?;
    let hidden = hidden.reshape((batch.len() * width, hidden.dim(2)?))?;
    let logits_at = |positions: &[u32]| -> Result<Tensor> {
        model.logits(&hidden.index_select(&Tensor::new(positions, &opts.device)?, 0)?)
    };
    let answer = flat_positions(batch, width, |e| knowledge::answer_positions(e.tokens).collect());
    let targets: Vec<u32> =
        batch.iter().flat_map(|e| knowledge::answer_positions(e.tokens).map(|p| e.tokens.input_ids[p + 1])).collect();
    let answer_counts: Vec<usize> = batch.iter().map(|e| knowledge::answer_positions(e.tokens).len()).collect();
    let per_token =
        train::token_cross_entropies(&logits_at(&answer)?, &Tensor::new(targets.as_slice(), &opts.device)?)?;
    let mut loss = train::weighted_sum(&per_token, &weights.task(&answer_counts))?;
    let ce = scalar(&train::weighted_sum(&per_token, &train::SampleWeights::task_only().task(&answer_counts))?)?;
    let kd_counts: Vec<usize> = batch.iter().map(|e| e.teacher.map_or(0, |t| t.positions.len())).collect();
    let kd_positions = flat_positions(batch, width, |e| {
        e.teacher.map_or(Vec::new(), |t| t.positions.iter().map(|&p| p as usize).collect())
    });
    let mut kd_sum = 0.0;
    if !kd_positions.is_empty() {
        let teacher_rows: Vec<&SampleKnowledge> = batch.iter().filter_map(|e| e.teacher).collect();
        let (mut ids, mut logits, mut tails) = (Vec::new(), Vec::new(), Vec::new());
        for t in &teacher_rows {
            ids.extend_from_slice(&t.topk_ids);
            logits.extend_from_slice(&t.topk_logits);
            tails.extend_from_slice(&t.tail_mass);
        }
        let targets = TeacherTargets::from_rows(&ids, &logits, &tails, k, opts.teacher, &opts.device)?;
        let per_position = train::sparse_kd(&logits_at(&kd_positions)?, &targets, opts.teacher.temperature)?;
        loss = (loss + train::weighted_sum(&per_position, &weights.kd(&kd_counts))?)?;
        kd_sum = scalar(&per_position.sum_all()?)?;
    }
    let selected = batch.iter().filter(|e| e.teacher.is_some()).count();
    Ok(BatchLoss { ce, kd_sum, kd_positions: kd_positions.len(), selected, loss, tokens: answer.len() })
}

/// A step's running sums over its micro-batches, for its log row.
#[derive(Default)]
struct StepSums {
    loss: f64,
    ce: f64,
    kd_sum: f64,
    kd_positions: usize,
    selected: usize,
    tokens: usize,
}

impl StepSums {
    fn add(&mut self, loss: f64, part: &BatchLoss) {
        self.loss += loss;
        self.ce += part.ce;
        self.kd_sum += part.kd_sum;
        self.kd_positions += part.kd_positions;
        self.selected += part.selected;
        self.tokens += part.tokens;
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
}

/// Sum of micro-batch gradients per variable (each loss already divided by the number of
/// micro-batches), then clipped to a global norm; returns the store and the norm before
/// clipping.
pub fn clipped_gradients(vars: &[Var], parts: Vec<GradStore>, max_norm: f64) -> Result<(GradStore, f64)> {
    let mut parts = parts.into_iter();
    let mut store = parts.next().expect("at least one micro-batch");
    for part in parts {
        for var in vars {
            if let Some(g) = part.get(var.as_tensor()) {
                let sum = match store.get(var.as_tensor()) {
                    Some(acc) => (acc + g)?,
                    None => g.clone(),
                };
                store.insert(var.as_tensor(), sum);
            }
        }
    }
    let mut squares = 0.0;
    for var in vars {
        if let Some(g) = store.get(var.as_tensor()) {
            squares += g.sqr()?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        }
    }
    let norm = squares.sqrt();
    if norm > max_norm {
        let factor = max_norm / (norm + 1e-6);
        for var in vars {
            if let Some(g) = store.get(var.as_tensor()) {
                let scaled = (g * factor)?;
                store.insert(var.as_tensor(), scaled);
            }
        }
    }
    Ok((store, norm))
}

/// One row of the training log.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct LogRow {
    pub step: u32,
    pub epoch: u32,
    pub loss: f64,
    pub ce: f64,
    /// Mean KD cross-entropy over the step's selected positions; None when it had none.
    pub kd: Option<f64>,
    /// Samples of the step with teacher targets, and their distilled positions.
    #[serde(default)]
    pub selected: u32,
    #[serde(default)]
    pub kd_positions: u32,
    pub lr: f64,
    pub grad_norm: f64,
    pub tokens_per_s: f64,
    pub seconds: f64,
    /// Ids of the step's samples, micro-batch after micro-batch: what the step trained on.
    #[serde(default)]
    pub samples: Vec<String>,
}

fn log_batch(rows: &[LogRow]) -> Result<RecordBatch> {
    let u32s =
        |f: fn(&LogRow) -> u32| Arc::new(UInt32Array::from_iter_values(rows.iter().map(f))) as arrow_array::ArrayRef;
    let f64s =
        |f: fn(&LogRow) -> f64| Arc::new(Float64Array::from_iter_values(rows.iter().map(f))) as arrow_array::ArrayRef;
    let (u32_field, f64_field) =
        (|n: &str| Field::new(n, DataType::UInt32, false), |n: &str| Field::new(n, DataType::Float64, false));
    let mut schema: Vec<Field> = vec![
        u32_field("step"),
        u32_field("epoch"),
        f64_field("loss"),
        f64_field("ce"),
        Field::new("kd", DataType::Float64, true),
        u32_field("selected"),
        u32_field("kd_positions"),
    ];
    schema.extend(["lr", "grad_norm", "tokens_per_s", "seconds"].map(f64_field));
    let mut columns = vec![
        u32s(|r| r.step),
        u32s(|r| r.epoch),
        f64s(|r| r.loss),
        f64s(|r| r.ce),
        Arc::new(Float64Array::from_iter(rows.iter().map(|r| r.kd))),
        u32s(|r| r.selected),
        u32s(|r| r.kd_positions),
        f64s(|r| r.lr),
        f64s(|r| r.grad_norm),
        f64s(|r| r.tokens_per_s),
        f64s(|r| r.seconds),
    ];
    let mut samples =
        ListBuilder::new(StringBuilder::new()).with_field(Arc::new(Field::new("item", DataType::Utf8, false)));
    for row in rows {
        samples.values().extend(row.samples.iter().map(Some));
        samples.append(true);
    }
    let samples = samples.finish();
    schema.push(Field::new("samples", samples.data_type().clone(), false));
    columns.push(Arc::new(samples));
    Ok(RecordBatch::try_new(Arc::new(Schema::new(schema)), columns)?)
}

/// The samples of one or more token files made by one tokenizer (the Centralized baseline
/// trains on the public set and every client's shard); returns them and the first file.
fn read_training_tokens(files: &[PathBuf]) -> Result<(Vec<TokenizedSample>, &Path, io::ParquetTable)> {
    let first = files.first().ok_or_else(|| bad_usage("--data: at least one token file"))?;
    let (mut samples, table) = tokens::read_tokens(first)?;
    let tokenizer = table.input_hash("tokenizer")?.to_string();
    for file in &files[1..] {
        let (more, table) = tokens::read_tokens(file)?;
        if table.input_hash("tokenizer")? != tokenizer {
            return Err(bad_input(file, format!("was tokenised with another tokenizer than {}", first.display())));
        }
        samples.extend(more);
    }
    if samples.is_empty() {
        return Err(bad_input(first, "holds no samples: nothing to train on"));
    }
    let mut ids = std::collections::HashSet::new();
    if let Some(twice) = samples.iter().find(|s| !ids.insert(s.id.as_str())) {
        return Err(bad_input(first, format!("sample '{}' appears twice among the --data files", twice.id)));
    }
    Ok((samples, first, table))
}

/// Every module named by --lora-targets got an adapter: a name matching nothing (a typo)
/// would train, and write, less than asked.
fn check_targets_adapted(lora: &crate::model::lora::LoraSet, model_dir: &Path) -> Result<()> {
    let adapted: std::collections::BTreeSet<&str> = lora
        .vars
        .keys()
        .filter_map(|key| key.rsplit_once(".lora_").and_then(|(module, _)| module.rsplit('.').next()))
        .collect();
    match lora.spec.targets.iter().find(|t| !adapted.contains(t.as_str())) {
        Some(missing) => Err(bad_usage(format!(
            "--lora-targets: no module of {} is named '{missing}' (adapted: {})",
            model_dir.display(),
            adapted.into_iter().collect::<Vec<_>>().join(", ")
        ))),
        None => Ok(()),
    }
}

/// `distill`: train (or continue) a LoRA adapter; write it and its training log to `out`.
pub fn distill(
    model_dir: &Path,
    adapter_dir: Option<&Path>,
    data_files: &[PathBuf],
    teacher: Option<&Path>,
    out: &Path,
    opts: &DistillOptions,
) -> Result<()> {
    opts.check()?;
    let checkpoints = Checkpoints::new(out);
    let mut inputs: Vec<&Path> = vec![model_dir];
    inputs.extend(adapter_dir.iter().chain(teacher.iter()).copied());
    inputs.extend(data_files.iter().map(PathBuf::as_path));
    let [checkpoint_out, staged_out] = checkpoints.outputs();
    output::claim(&[(out, Kind::Adapter), checkpoint_out, staged_out], &inputs)?;
    let (samples, data, data_table) = read_training_tokens(data_files)?;
    let (teacher_rows, k) = match teacher {
        Some(path) if data_files.len() == 1 => {
            let file = train::read_teacher(path, data, &samples)?;
            file.check_options(path, opts.teacher)?;
            (file.rows, file.k)
        }
        Some(_) => return Err(bad_usage("--teacher goes with exactly one --data file (the one it was selected for)")),
        None => (HashMap::new(), 0),
    };
    let base_config = model::base_config_hash(model_dir)?;
    let adapter = match adapter_dir {
        Some(dir) => AdapterSource::load(dir, &base_config, &opts.device)?,
        None => AdapterSource::New { spec: opts.lora.clone(), rng: Box::new(ChaCha8Rng::seed_from_u64(opts.seed)) },
    };
    let mut model = Model::load(model_dir, adapter, opts.dtype, &opts.device)?;
    model.training = true;
    let lora =
        model.lora.clone().ok_or_else(|| bad_input(model_dir, "no layer of this model matches the LoRA targets"))?;
    check_targets_adapted(&lora, model_dir)?;
    knowledge::check_tokens_fit_model(data, &data_table, &samples, model_dir, model.config.vocab_size)?;
    if let Some(path) = teacher {
        train::check_teacher_fits(path, &teacher_rows, model.config.vocab_size)?;
    }
    // Each input's hash, by role (`data`, `data2`, …), hashed once: the checkpoint settings
    // and the training log's provenance both record them.
    let mut hashes = vec![("model".to_string(), base_config)];
    for (i, file) in data_files.iter().enumerate() {
        hashes.push((if i == 0 { "data".to_string() } else { format!("data{}", i + 1) }, io::file_hash(file)?));
    }
    let adapter_weights = adapter_dir.map(|d| d.join(crate::model::lora::ADAPTER_WEIGHTS));
    for (role, path) in [("teacher", teacher), ("adapter", adapter_weights.as_deref())] {
        if let Some(path) = path {
            hashes.push((role.to_string(), io::file_hash(path)?));
        }
    }
    let mut settings = opts.settings(&hashes);
    if opts.checkpoint_every > 0 || opts.resume || opts.max_steps.is_some() {
        // Other weights under the same config.json must not resume this run.
        settings.insert("weights".into(), weights_hash(model_dir)?);
    }
    let weights = match teacher {
        Some(_) => train::SampleWeights::new(opts.lambda, samples.len(), teacher_rows.len()),
        None => train::SampleWeights::task_only(),
    };
    lora.mode.seed_dropout(lora.spec.dropout, opts.seed ^ 0xD50F_0000_0000_0002);
    let vars = lora.all_vars();
    let params = ParamsAdamW { lr: opts.lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: opts.weight_decay };
    let mut optimiser = AdamW::new(&lora.vars, params)?;
    let examples: Vec<Example> =
        samples.iter().map(|s| Example { tokens: s, teacher: teacher_rows.get(&s.id) }).collect();
    let micro_batches_per_epoch = examples.len().div_ceil(opts.batch_size);
    let steps_per_epoch = micro_batches_per_epoch.div_ceil(opts.grad_accum);
    let total = steps_per_epoch * opts.epochs;
    checkpoints.discard_staged()?;
    let checkpoint = &checkpoints.dir;
    let mut log = if opts.resume && checkpoint.join("state.json").is_file() {
        load_checkpoint(checkpoint, &mut optimiser, &lora.mode, &opts.device, &settings)?
    } else {
        Vec::new()
    };
    let progress = indicatif::ProgressBar::new(total as u64).with_message("distill");
    progress.inc(log.len() as u64);
    for epoch in log.len() / steps_per_epoch..opts.epochs {
        // Each epoch's order from its own stream, so a resumed run skips straight to its place.
        let mut order: Vec<usize> = (0..examples.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5EED_0000_0000_0001 ^ ((epoch as u64) << 32)));
        let batches: Vec<Vec<Example>> =
            order.chunks(opts.batch_size).map(|c| c.iter().map(|&i| examples[i]).collect()).collect();
        for group in batches.chunks(opts.grad_accum).skip(log.len() - epoch * steps_per_epoch) {
            if opts.max_steps.is_some_and(|m| log.len() >= m) {
                checkpoints.discard_staged()?;
                save_checkpoint(checkpoint, &optimiser, &lora.mode, &log, &settings)?;
                eprintln!(
                    "distill: stopped after {} steps; checkpoint {} (continue with --resume)",
                    log.len(),
                    checkpoint.display()
                );
                return Ok(());
            }
            let started = Instant::now();
            let step = log.len();
            let (mut grads, mut sums) = (Vec::new(), StepSums::default());
            for batch in group {
                let part = batch_loss(&model, batch, k, &weights, opts)?;
                let value = part.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                if !value.is_finite() {
                    checkpoints.discard_staged()?;
                    let kept = if checkpoint.is_dir() {
                        format!("; the last good checkpoint is {}", checkpoint.display())
                    } else {
                        String::new()
                    };
                    return Err(bad_input(
                        data,
                        format!(
                            "loss became {value} at step {step} (epoch {epoch}); no adapter written{kept}, lower --lr"
                        ),
                    ));
                }
                checkpoints.promote()?;
                sums.add(value, &part);
                grads.push((part.loss / group.len() as f64)?.backward()?);
            }
            let (store, grad_norm) = clipped_gradients(&vars, grads, opts.max_grad_norm)?;
            let lr = learning_rate(step, total, opts.warmup_ratio, opts.lr);
            optimiser.step(&store, lr)?;
            let (n, seconds) = (group.len() as f64, started.elapsed().as_secs_f64());
            log.push(LogRow {
                step: step as u32,
                epoch: epoch as u32,
                loss: sums.loss / n,
                ce: sums.ce / n,
                kd: (sums.kd_positions > 0).then(|| sums.kd_sum / sums.kd_positions as f64),
                selected: sums.selected as u32,
                kd_positions: sums.kd_positions as u32,
                lr,
                grad_norm,
                tokens_per_s: sums.tokens as f64 / seconds,
                seconds,
                samples: group.iter().flatten().map(|e| e.tokens.id.clone()).collect(),
            });
            progress.inc(1);
            if opts.checkpoint_every > 0 && log.len() % opts.checkpoint_every == 0 {
                checkpoints.stage(&optimiser, &lora.mode, &log, &settings)?;
            }
        }
    }
    progress.finish_and_clear();
    let name = model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let adapter = model.lora.as_ref().expect("trained adapters").adapter();
    let mut provenance = Provenance::new(TRAINING_LOG_FORMAT, 1, "distill")
        .extra("seed", opts.seed)
        .extra("samples", samples.len())
        .extra("lambda", opts.lambda)
        .extra("lr", opts.lr);
    for (role, hash) in hashes.iter().filter(|(role, _)| role != "adapter") {
        provenance = provenance.input(role, hash.clone());
    }
    let batch = log_batch(&log)?;
    io::write_folder(out, Kind::Adapter, |tmp| {
        fill_adapter_folder(tmp, &adapter, &name)?;
        io::write_parquet(&tmp.join(TRAINING_LOG), batch.schema(), &[batch], &provenance)
    })?;
    checkpoints.remove()?;
    let last = log.last().map_or(f64::NAN, |r| r.loss);
    eprintln!(
        "distill: {} steps, {} samples ({} with teacher targets), last loss {last:.4} -> {}",
        log.len(),
        samples.len(),
        teacher_rows.len(),
        out.display()
    );
    Ok(())
}
