//! `measure-kd`: what knowledge distillation sees, without training. A model (+ adapter) is
//! run over a token file and compared, per sample, with a teacher made for those tokens (a
//! `select` output, or a whole knowledge set: `infer-logits` on the same tokens or `align`ed
//! to them):
//!
//! - KD: the sparse KD cross-entropy `distill` would train on, −Σ_k q_k·log p(id_k);
//! - H(q): the teacher's entropy over its renormalised top-K (with `--teacher-tail`, plus
//!   the tail bucket), the floor of KD;
//! - KL = KD − H(q): how far the student is from its teacher, the only part KD can remove;
//! - q(gold): how much of the teacher's mass sits on the true next token (teacher targets
//!   that mostly repeat the labels teach little beyond them);
//! - the task cross-entropy on the sample's answer tokens.
//!
//! Measured before and after a KD phase, on the public set and on held-out samples, these say
//! whether KD moved the student, and whether it moved it further than the labels alone did.
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use candle_core::{DType, Device, Tensor};

use crate::cli::{bad_input, bad_usage};
use crate::io::{self, Provenance};
use crate::knowledge::{self, SampleKnowledge};
use crate::model::{self, Model};
use crate::output::{self, Kind};
use crate::scoring::{self, Request};
use crate::tokens::{self, TokenizedSample};
use crate::train::kd::{self, TeacherOptions, TeacherTargets};

pub const KD_MEASURE_FORMAT: &str = "kd-measure";

/// How `measure-kd` reads the teacher and runs the model.
#[derive(Debug, Clone)]
pub struct MeasureOptions {
    pub teacher: TeacherOptions,
    pub batch_size: usize,
    pub dtype: DType,
    pub device: Device,
}

/// One sample's sums over its positions (means are taken when written, and pooled exactly).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SampleMeasure {
    pub id: String,
    pub answer_tokens: u32,
    pub ce_sum: f64,
    pub kd_positions: u32,
    pub kd_sum: f64,
    pub entropy_sum: f64,
    pub gold_probability_sum: f64,
    pub gold_in_top_k: u32,
}

impl SampleMeasure {
    fn add(&mut self, other: &SampleMeasure) {
        self.answer_tokens += other.answer_tokens;
        self.ce_sum += other.ce_sum;
        self.kd_positions += other.kd_positions;
        self.kd_sum += other.kd_sum;
        self.entropy_sum += other.entropy_sum;
        self.gold_probability_sum += other.gold_probability_sum;
        self.gold_in_top_k += other.gold_in_top_k;
    }

    fn per_position(&self, sum: f64) -> Option<f64> {
        (self.kd_positions > 0).then(|| sum / self.kd_positions as f64)
    }

    pub fn ce(&self) -> Option<f64> {
        (self.answer_tokens > 0).then(|| self.ce_sum / self.answer_tokens as f64)
    }
    pub fn kd(&self) -> Option<f64> {
        self.per_position(self.kd_sum)
    }
    pub fn entropy(&self) -> Option<f64> {
        self.per_position(self.entropy_sum)
    }
    pub fn kl(&self) -> Option<f64> {
        self.per_position(self.kd_sum - self.entropy_sum)
    }
    pub fn gold_probability(&self) -> Option<f64> {
        self.per_position(self.gold_probability_sum)
    }
    pub fn gold_in_top_k_share(&self) -> Option<f64> {
        self.per_position(self.gold_in_top_k as f64)
    }
}

/// The rows of a `kd-measure` file as sums (mean × count), to pool over any subset of samples.
pub fn read_measures(path: &Path) -> Result<(Vec<SampleMeasure>, io::ParquetTable)> {
    use arrow_array::types::{Float64Type, UInt32Type};
    let table = io::read_parquet(path, KD_MEASURE_FORMAT)?;
    let (ids, answer_tokens, positions) = (
        table.strings("id")?,
        table.values::<UInt32Type>("answer_tokens")?,
        table.values::<UInt32Type>("kd_positions")?,
    );
    let mean = |name: &str| table.optional_values::<Float64Type>(name);
    let (ce, kd, entropy, gold, in_top_k) =
        (mean("ce")?, mean("kd")?, mean("entropy")?, mean("teacher_gold")?, mean("gold_in_top_k")?);
    let measures = (0..ids.len())
        .map(|i| {
            let per_position = |m: Option<f64>| m.unwrap_or(0.0) * positions[i] as f64;
            SampleMeasure {
                id: ids[i].clone(),
                answer_tokens: answer_tokens[i],
                ce_sum: ce[i].unwrap_or(0.0) * answer_tokens[i] as f64,
                kd_positions: positions[i],
                kd_sum: per_position(kd[i]),
                entropy_sum: per_position(entropy[i]),
                gold_probability_sum: per_position(gold[i]),
                gold_in_top_k: per_position(in_top_k[i]).round() as u32,
            }
        })
        .collect();
    Ok((measures, table))
}

/// [`SampleMeasure`]s pooled: the sums of all of them.
pub fn pooled<'a>(measures: impl IntoIterator<Item = &'a SampleMeasure>) -> SampleMeasure {
    let mut total = SampleMeasure::default();
    measures.into_iter().for_each(|m| total.add(m));
    total
}

/// The positions to score once each: the answer's, then the teacher's that are not among them
/// (on a public set they all are: the vocabulary projection, most of the cost, is not done
/// twice); and each teacher position's row among them.
fn scored_positions(sample: &TokenizedSample, kd_positions: &[u32]) -> (Vec<usize>, Vec<u32>) {
    let answer = knowledge::answer_positions(sample);
    let mut positions: Vec<usize> = answer.clone().collect();
    let rows = kd_positions
        .iter()
        .map(|&p| match answer.contains(&(p as usize)) {
            true => (p as usize - answer.start) as u32,
            false => {
                positions.push(p as usize);
                (positions.len() - 1) as u32
            }
        })
        .collect();
    (positions, rows)
}

/// One sample's measures from its logits at its [`scored_positions`], `rows` being the
/// teacher positions' rows among them.
fn measure_sample(
    sample: &TokenizedSample,
    teacher: Option<&SampleKnowledge>,
    logits: &Tensor,
    rows: &[u32],
    k: usize,
    opts: &MeasureOptions,
) -> Result<SampleMeasure> {
    let answer: Vec<u32> = knowledge::answer_positions(sample).map(|p| sample.input_ids[p + 1]).collect();
    let mut measure = SampleMeasure { id: sample.id.clone(), answer_tokens: answer.len() as u32, ..Default::default() };
    if !answer.is_empty() {
        let targets = Tensor::new(answer.as_slice(), logits.device())?;
        let ce = kd::token_cross_entropies(&logits.narrow(0, 0, answer.len())?, &targets)?;
        measure.ce_sum = ce.to_dtype(DType::F64)?.sum_all()?.to_scalar::<f64>()?;
    }
    let Some(teacher) = teacher.filter(|t| !t.positions.is_empty()) else { return Ok(measure) };
    let targets = TeacherTargets::from_rows(
        &teacher.topk_ids,
        &teacher.topk_logits,
        &teacher.tail_mass,
        k,
        opts.teacher,
        logits.device(),
    )?;
    let student = logits.index_select(&Tensor::new(rows, logits.device())?, 0)?;
    let kd = kd::sparse_kd(&student, &targets, opts.teacher.temperature)?.to_dtype(DType::F64)?.to_vec1::<f64>()?;
    let gold: Vec<Option<u32>> =
        teacher.positions.iter().map(|&p| sample.input_ids.get(p as usize + 1).copied()).collect();
    let stats = targets.stats(&gold)?;
    measure.kd_positions = kd.len() as u32;
    measure.kd_sum = kd.iter().sum();
    measure.entropy_sum = stats.entropy.iter().sum();
    measure.gold_probability_sum = stats.gold_probability.iter().sum();
    measure.gold_in_top_k = stats.gold_in_top_k.iter().filter(|&&g| g).count() as u32;
    Ok(measure)
}

/// Every sample's measures, in the token file's order, in length-sorted batches.
fn measure_all(
    model: &Model,
    samples: &[TokenizedSample],
    teacher: &std::collections::HashMap<String, SampleKnowledge>,
    k: usize,
    opts: &MeasureOptions,
) -> Result<Vec<SampleMeasure>> {
    let lengths: Vec<usize> = samples.iter().map(|s| s.input_ids.len()).collect();
    let mut results = vec![SampleMeasure::default(); samples.len()];
    let progress = indicatif::ProgressBar::new(samples.len() as u64).with_message("measure-kd");
    for batch in scoring::length_sorted_batches(&lengths, opts.batch_size) {
        let (requests, rows): (Vec<Request>, Vec<Vec<u32>>) = batch
            .iter()
            .map(|&i| {
                let kd_positions = teacher.get(&samples[i].id).map_or(&[][..], |t| t.positions.as_slice());
                let (positions, rows) = scored_positions(&samples[i], kd_positions);
                (Request { ids: &samples[i].input_ids, positions }, rows)
            })
            .unzip();
        for ((&i, logits), rows) in batch.iter().zip(scoring::logits_at(model, &requests)?).zip(&rows) {
            results[i] = measure_sample(&samples[i], teacher.get(&samples[i].id), &logits, rows, k, opts)?;
        }
        progress.inc(batch.len() as u64);
    }
    progress.finish_and_clear();
    Ok(results)
}

fn measure_batch(measures: &[SampleMeasure]) -> Result<RecordBatch> {
    let optional = |name: &str, value: fn(&SampleMeasure) -> Option<f64>| -> (Field, ArrayRef) {
        (Field::new(name, DataType::Float64, true), Arc::new(measures.iter().map(value).collect::<Float64Array>()))
    };
    let count = |name: &str, value: fn(&SampleMeasure) -> u32| -> (Field, ArrayRef) {
        (Field::new(name, DataType::UInt32, false), Arc::new(UInt32Array::from_iter_values(measures.iter().map(value))))
    };
    let id: ArrayRef = Arc::new(StringArray::from_iter_values(measures.iter().map(|m| &m.id)));
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = [
        (Field::new("id", DataType::Utf8, false), id),
        count("answer_tokens", |m| m.answer_tokens),
        optional("ce", SampleMeasure::ce),
        count("kd_positions", |m| m.kd_positions),
        optional("kd", SampleMeasure::kd),
        optional("entropy", SampleMeasure::entropy),
        optional("kl", SampleMeasure::kl),
        optional("teacher_gold", SampleMeasure::gold_probability),
        optional("gold_in_top_k", SampleMeasure::gold_in_top_k_share),
    ]
    .into_iter()
    .unzip();
    Ok(RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)?)
}

/// A figure for the metadata: its value, or `null` where it has no positions.
fn figure(value: Option<f64>) -> String {
    value.map_or("null".to_string(), |v| v.to_string())
}

/// `measure-kd`: the KD measures of `model_dir` (+ `adapter_dir`) on `tokens_path` against
/// `teacher_path`, per sample, to `out`; the pooled figures in its metadata and on stderr.
pub fn measure_kd(
    model_dir: &Path,
    adapter_dir: Option<&Path>,
    tokens_path: &Path,
    teacher_path: &Path,
    out: &Path,
    opts: &MeasureOptions,
) -> Result<()> {
    if opts.batch_size == 0 {
        return Err(bad_usage("--batch-size 0: must be at least 1"));
    }
    let t = opts.teacher.temperature;
    if !(t.is_finite() && t > 0.0) || (opts.teacher.tail && t != 1.0) {
        return Err(bad_usage(format!("--temperature {t}: must be positive, and 1 with --teacher-tail")));
    }
    let mut inputs = vec![model_dir, tokens_path, teacher_path];
    inputs.extend(adapter_dir);
    output::claim(&[(out, Kind::parquet(KD_MEASURE_FORMAT))], &inputs)?;
    let (samples, table) = tokens::read_tokens(tokens_path)?;
    let file = kd::read_teacher(teacher_path, tokens_path, &samples)?;
    file.check_options(teacher_path, opts.teacher)?;
    let (teacher, k) = (file.rows, file.k);
    let model = Model::load_for_scoring(model_dir, adapter_dir, opts.dtype, &opts.device)?;
    knowledge::check_tokens_fit_model(tokens_path, &table, &samples, model_dir, model.config.vocab_size)?;
    kd::check_teacher_fits(teacher_path, &teacher, model.config.vocab_size)?;
    let measures = measure_all(&model, &samples, &teacher, k, opts).map_err(|e| bad_input(model_dir, e))?;
    let total = pooled(&measures);
    let with_teacher = measures.iter().filter(|m| m.kd_positions > 0).count();
    let provenance = Provenance::new(KD_MEASURE_FORMAT, 1, "measure-kd")
        .input("tokens", io::file_hash(tokens_path)?)
        .input("teacher", io::file_hash(teacher_path)?)
        .extra("temperature", t)
        .extra("teacher_tail", opts.teacher.tail)
        .extra("samples", measures.len())
        .extra("samples_with_teacher", with_teacher)
        .extra("kd_positions", total.kd_positions)
        .extra("answer_tokens", total.answer_tokens)
        .extra("kd", figure(total.kd()))
        .extra("entropy", figure(total.entropy()))
        .extra("kl", figure(total.kl()))
        .extra("teacher_gold", figure(total.gold_probability()))
        .extra("gold_in_top_k", figure(total.gold_in_top_k_share()))
        .extra("ce", figure(total.ce()));
    let provenance = model::with_model_inputs(provenance, model_dir, adapter_dir)?;
    let batch = measure_batch(&measures)?;
    io::write_parquet(out, batch.schema(), &[batch], &provenance)?;
    let nats = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    eprintln!(
        "measure-kd: {} samples, {with_teacher} with teacher targets ({} positions): KD {} = H(q) {} + KL {} nats/position, \
         q(gold) {}; task CE {} nats/token -> {}",
        measures.len(),
        total.kd_positions,
        nats(total.kd()),
        nats(total.entropy()),
        nats(total.kl()),
        nats(total.gold_probability()),
        nats(total.ce()),
        out.display()
    );
    Ok(())
}
