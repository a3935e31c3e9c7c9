//! `distill`: train a LoRA adapter on a token file, with the task loss only (the private
//! phase, Eq. 4) or mixed with sparse distillation towards selected teacher targets
//! (`L = λ·L_FT + (1 − λ)·L_KD`, Eq. 9–10).
//!
//! The loop in three parts: [`Run::prepare`] (model, adapter, optimiser, what a resumed run
//! must share), [`Run::step`] (one optimiser step, one log row) and [`Run::finish`] (adapter
//! and log written together). Seeded: adapter initialisation and sample order come from
//! ChaCha streams of `--seed`.
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::Result;
use candle_core::{DType, Device, Tensor, Var};
use candle_nn::ParamsAdamW;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::checkpoint::{load_checkpoint, save_checkpoint, weights_hash, Checkpoints};
use super::kd::{self, TeacherOptions, TeacherTargets};
use super::log::{log_batch, LogRow, TRAINING_LOG, TRAINING_LOG_FORMAT};
use super::optimizer::{clipped_gradients, learning_rate, AdamW};
use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::knowledge::{self, SampleKnowledge};
use crate::model::lora::{fill_adapter_folder, LoraSet, LoraSpec};
use crate::model::{self, AdapterSource, Model};
use crate::output::{self, Kind};
use crate::profile::{self, Work};
use crate::tokens::{self, TokenizedSample};

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

/// Positions in the packed row of `batch` (each sample's tokens after the previous one's)
/// of `of` each sample's own positions.
fn flat_positions(batch: &[Example], of: impl Fn(&Example) -> Vec<usize>) -> Vec<u32> {
    let starts = batch.iter().scan(0, |start, e| Some(std::mem::replace(start, *start + e.tokens.input_ids.len())));
    batch.iter().zip(starts).flat_map(|(e, start)| of(e).into_iter().map(move |p| (start + p) as u32)).collect()
}

/// One micro-batch's loss, Eq. 9–10 as [`kd::SampleWeights`] estimates it, and its parts
/// for the log: the mean over its samples of each one's answer-token CE, and the sum and count
/// of its selected positions' KD (a step's `kd` is their mean over all its micro-batches).
/// The batch runs packed into one row (`Model::hidden_states_packed`): the same numbers as
/// right-padded, to the bit, without the padding's share of every product (SmolLM2 on
/// ARC-Easy, batches of 4: 0.74 → 0.52 s a step).
fn batch_loss(
    model: &Model,
    batch: &[Example],
    k: usize,
    weights: &kd::SampleWeights,
    opts: &DistillOptions,
) -> Result<BatchLoss> {
    let ids: Vec<u32> = batch.iter().flat_map(|e| e.tokens.input_ids.iter().copied()).collect();
    let lengths: Vec<usize> = batch.iter().map(|e| e.tokens.input_ids.len()).collect();
    let ids = Tensor::from_vec(ids, (1, lengths.iter().sum::<usize>()), &opts.device)?;
    let hidden = model.hidden_states_packed(&ids, &lengths)?.squeeze(0)?;
    let logits_at = |positions: &[u32]| -> Result<Tensor> {
        model.logits(&hidden.index_select(&Tensor::new(positions, &opts.device)?, 0)?)
    };
    let answer = flat_positions(batch, |e| knowledge::answer_positions(e.tokens).collect());
    let targets: Vec<u32> =
        batch.iter().flat_map(|e| knowledge::answer_positions(e.tokens).map(|p| e.tokens.input_ids[p + 1])).collect();
    let answer_counts: Vec<usize> = batch.iter().map(|e| knowledge::answer_positions(e.tokens).len()).collect();
    let per_token = kd::token_cross_entropies(&logits_at(&answer)?, &Tensor::new(targets.as_slice(), &opts.device)?)?;
    let mut loss = kd::weighted_sum(&per_token, &weights.task(&answer_counts))?;
    let ce = scalar(&kd::weighted_sum(&per_token, &kd::SampleWeights::task_only().task(&answer_counts))?)?;
    let kd_counts: Vec<usize> = batch.iter().map(|e| e.teacher.map_or(0, |t| t.positions.len())).collect();
    let kd_positions =
        flat_positions(batch, |e| e.teacher.map_or(Vec::new(), |t| t.positions.iter().map(|&p| p as usize).collect()));
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
        let per_position = kd::sparse_kd(&logits_at(&kd_positions)?, &targets, opts.teacher.temperature)?;
        loss = (loss + kd::weighted_sum(&per_position, &weights.kd(&kd_counts))?)?;
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

    /// The step's log row: means over its `micro_batches`, its KD over its selected positions.
    fn row(
        self,
        step: usize,
        epoch: usize,
        micro_batches: usize,
        (lr, grad_norm): (f64, f64),
        seconds: f64,
        samples: Vec<String>,
    ) -> LogRow {
        let n = micro_batches as f64;
        LogRow {
            step: step as u32,
            epoch: epoch as u32,
            loss: self.loss / n,
            ce: self.ce / n,
            kd: (self.kd_positions > 0).then(|| self.kd_sum / self.kd_positions as f64),
            selected: self.selected as u32,
            kd_positions: self.kd_positions as u32,
            lr,
            grad_norm,
            tokens_per_s: self.tokens as f64 / seconds,
            seconds,
            samples,
        }
    }
}

fn scalar(t: &Tensor) -> Result<f64> {
    Ok(t.to_dtype(DType::F64)?.to_scalar::<f64>()?)
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

/// What a run reads: the training samples, the file they came from, and the teacher's rows
/// for the samples `select` chose (none without `--teacher`), with their top-K.
struct Inputs<'a> {
    samples: Vec<TokenizedSample>,
    data: &'a Path,
    data_table: io::ParquetTable,
    teacher_rows: HashMap<String, SampleKnowledge>,
    k: usize,
}

impl<'a> Inputs<'a> {
    fn read(data_files: &'a [PathBuf], teacher: Option<&Path>, opts: &DistillOptions) -> Result<Inputs<'a>> {
        let (samples, data, data_table) = read_training_tokens(data_files)?;
        let (teacher_rows, k) = match teacher {
            Some(path) if data_files.len() == 1 => {
                let file = kd::read_teacher(path, data, &samples)?;
                file.check_options(path, opts.teacher)?;
                (file.rows, file.k)
            }
            Some(_) => {
                return Err(bad_usage("--teacher goes with exactly one --data file (the one it was selected for)"))
            }
            None => (HashMap::new(), 0),
        };
        Ok(Inputs { samples, data, data_table, teacher_rows, k })
    }
}

/// A prepared run: the model with its adapter, the optimiser, Eq. 9–10's weights, and what
/// its checkpoints and log record.
struct Run<'a> {
    inputs: &'a Inputs<'a>,
    model: Model,
    lora: LoraSet,
    vars: Vec<Var>,
    optimiser: AdamW,
    weights: kd::SampleWeights,
    /// Each input's hash by role (`model`, `data`, `data2`, …, `teacher`, `adapter`).
    hashes: Vec<(String, String)>,
    /// What a resumed run must share with this one.
    settings: BTreeMap<String, String>,
    checkpoints: Checkpoints,
}

impl<'a> Run<'a> {
    fn prepare(
        inputs: &'a Inputs<'a>,
        model_dir: &Path,
        adapter_dir: Option<&Path>,
        data_files: &[PathBuf],
        teacher: Option<&Path>,
        checkpoints: Checkpoints,
        opts: &DistillOptions,
    ) -> Result<Run<'a>> {
        let base_config = model::base_config_hash(model_dir)?;
        let adapter = match adapter_dir {
            Some(dir) => AdapterSource::load(dir, &base_config, &opts.device)?,
            None => AdapterSource::New { spec: opts.lora.clone(), rng: Box::new(ChaCha8Rng::seed_from_u64(opts.seed)) },
        };
        let mut model = Model::load(model_dir, adapter, opts.dtype, &opts.device)?;
        model.training = true;
        let lora = model
            .lora
            .clone()
            .ok_or_else(|| bad_input(model_dir, "no layer of this model matches the LoRA targets"))?;
        check_targets_adapted(&lora, model_dir)?;
        let vocab = model.config.vocab_size;
        knowledge::check_tokens_fit_model(inputs.data, &inputs.data_table, &inputs.samples, model_dir, vocab)?;
        if let Some(path) = teacher {
            kd::check_teacher_fits(path, &inputs.teacher_rows, vocab)?;
        }
        let hashes = input_hashes(base_config, data_files, teacher, adapter_dir)?;
        let mut settings = opts.settings(&hashes);
        if opts.checkpoint_every > 0 || opts.resume || opts.max_steps.is_some() {
            // Other weights under the same config.json must not resume this run.
            settings.insert("weights".into(), weights_hash(model_dir)?);
        }
        let weights = match teacher {
            Some(_) => kd::SampleWeights::new(opts.lambda, inputs.samples.len(), inputs.teacher_rows.len()),
            None => kd::SampleWeights::task_only(),
        };
        lora.mode.seed_dropout(lora.spec.dropout, opts.seed ^ 0xD50F_0000_0000_0002);
        let params = ParamsAdamW { lr: opts.lr, beta1: 0.9, beta2: 0.95, eps: 1e-8, weight_decay: opts.weight_decay };
        let optimiser = AdamW::new(&lora.vars, params)?;
        let vars = lora.all_vars();
        Ok(Run { inputs, model, lora, vars, optimiser, weights, hashes, settings, checkpoints })
    }

    /// The log of the checkpoint this run resumes, or an empty one.
    fn resume(&mut self, opts: &DistillOptions) -> Result<Vec<LogRow>> {
        self.checkpoints.discard_staged()?;
        let dir = &self.checkpoints.dir;
        if opts.resume && dir.join("state.json").is_file() {
            load_checkpoint(dir, &mut self.optimiser, &self.lora.mode, &opts.device, &self.settings)
        } else {
            Ok(Vec::new())
        }
    }

    /// One optimiser step over a group of micro-batches (`--grad-accum`): its log row.
    fn step(
        &mut self,
        group: &[Vec<Example>],
        (step, epoch, total): (usize, usize, usize),
        opts: &DistillOptions,
    ) -> Result<LogRow> {
        let started = Instant::now();
        let (mut grads, mut sums) = (Vec::new(), StepSums::default());
        for batch in group {
            let part = batch_loss(&self.model, batch, self.inputs.k, &self.weights, opts)?;
            let value = scalar(&part.loss)?;
            if !value.is_finite() {
                return Err(self.diverged(value, step, epoch));
            }
            self.checkpoints.promote()?;
            sums.add(value, &part);
            grads.push((part.loss / group.len() as f64)?.backward()?);
        }
        let lr = learning_rate(step, total, opts.warmup_ratio, opts.lr);
        let grad_norm = profile::timed(Work::Optimiser, || -> Result<f64> {
            let (store, grad_norm) = clipped_gradients(&self.vars, grads, opts.max_grad_norm)?;
            self.optimiser.step(&store, lr)?;
            Ok(grad_norm)
        })?;
        let samples = group.iter().flatten().map(|e| e.tokens.id.clone()).collect();
        Ok(sums.row(step, epoch, group.len(), (lr, grad_norm), started.elapsed().as_secs_f64(), samples))
    }

    /// The error of a loss that is no longer finite: nothing written, the last good checkpoint kept.
    fn diverged(&self, value: f64, step: usize, epoch: usize) -> anyhow::Error {
        if let Err(e) = self.checkpoints.discard_staged() {
            return e;
        }
        let dir = &self.checkpoints.dir;
        let kept =
            if dir.is_dir() { format!("; the last good checkpoint is {}", dir.display()) } else { String::new() };
        bad_input(
            self.inputs.data,
            format!("loss became {value} at step {step} (epoch {epoch}); no adapter written{kept}, lower --lr"),
        )
    }

    /// Stop at `--max-steps`: the run so far goes into its checkpoint.
    fn stop(&self, log: &[LogRow]) -> Result<()> {
        self.checkpoints.discard_staged()?;
        let dir = &self.checkpoints.dir;
        save_checkpoint(dir, &self.optimiser, &self.lora.mode, log, &self.settings)?;
        eprintln!("distill: stopped after {} steps; checkpoint {} (continue with --resume)", log.len(), dir.display());
        Ok(())
    }

    /// The adapter and its training log into `out`, together; the checkpoint removed.
    fn finish(&self, model_dir: &Path, out: &Path, log: &[LogRow], opts: &DistillOptions) -> Result<()> {
        let name = model_dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let adapter = self.lora.adapter();
        let mut provenance = Provenance::new(TRAINING_LOG_FORMAT, 1, "distill")
            .extra("seed", opts.seed)
            .extra("samples", self.inputs.samples.len())
            .extra("lambda", opts.lambda)
            .extra("lr", opts.lr);
        for (role, hash) in self.hashes.iter().filter(|(role, _)| role != "adapter") {
            provenance = provenance.input(role, hash.clone());
        }
        let batch = log_batch(log)?;
        io::write_folder(out, Kind::Adapter, |tmp| {
            fill_adapter_folder(tmp, &adapter, &name)?;
            io::write_parquet(&tmp.join(TRAINING_LOG), batch.schema(), &[batch], &provenance)
        })?;
        self.checkpoints.remove()?;
        let last = log.last().map_or(f64::NAN, |r| r.loss);
        eprintln!(
            "distill: {} steps, {} samples ({} with teacher targets), last loss {last:.4} -> {}",
            log.len(),
            self.inputs.samples.len(),
            self.inputs.teacher_rows.len(),
            out.display()
        );
        Ok(())
    }
}

/// Each input's hash, by role (`model`, `data`, `data2`, …, `teacher`, `adapter`), hashed
/// once: the checkpoint's settings and the training log's provenance both record them.
fn input_hashes(
    base_config: String,
    data_files: &[PathBuf],
    teacher: Option<&Path>,
    adapter_dir: Option<&Path>,
) -> Result<Vec<(String, String)>> {
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
    Ok(hashes)
}

/// An epoch's micro-batches, in the order of its own seeded stream: a resumed run skips
/// straight to its place.
fn epoch_batches<'a>(examples: &[Example<'a>], epoch: usize, opts: &DistillOptions) -> Vec<Vec<Example<'a>>> {
    let mut order: Vec<usize> = (0..examples.len()).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(opts.seed ^ 0x5EED_0000_0000_0001 ^ ((epoch as u64) << 32)));
    order.chunks(opts.batch_size).map(|c| c.iter().map(|&i| examples[i]).collect()).collect()
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
    let inputs = Inputs::read(data_files, teacher, opts)?;
    let mut run = Run::prepare(&inputs, model_dir, adapter_dir, data_files, teacher, checkpoints, opts)?;
    let examples: Vec<Example> =
        inputs.samples.iter().map(|s| Example { tokens: s, teacher: inputs.teacher_rows.get(&s.id) }).collect();
    let steps_per_epoch = examples.len().div_ceil(opts.batch_size).div_ceil(opts.grad_accum);
    let total = steps_per_epoch * opts.epochs;
    let mut log = run.resume(opts)?;
    let progress = indicatif::ProgressBar::new(total as u64).with_message("distill");
    progress.inc(log.len() as u64);
    let training = Instant::now();
    for epoch in log.len() / steps_per_epoch..opts.epochs {
        let batches = epoch_batches(&examples, epoch, opts);
        for group in batches.chunks(opts.grad_accum).skip(log.len() - epoch * steps_per_epoch) {
            if opts.max_steps.is_some_and(|m| log.len() >= m) {
                return run.stop(&log);
            }
            let row = run.step(group, (log.len(), epoch, total), opts)?;
            log.push(row);
            progress.inc(1);
            if opts.checkpoint_every > 0 && log.len() % opts.checkpoint_every == 0 {
                run.checkpoints.stage(&run.optimiser, &run.lora.mode, &log, &run.settings)?;
            }
        }
    }
    progress.finish_and_clear();
    profile::report("distill", "the training steps", training.elapsed().as_secs_f64());
    run.finish(model_dir, out, &log, opts)
}
