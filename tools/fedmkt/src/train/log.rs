//! The training log (`training_log.parquet`, format `training-log`): one row per optimiser
//! step, so a run's losses, KD share and speed can be read without our code.
use std::sync::Arc;

use anyhow::Result;
use arrow_array::builder::{ListBuilder, StringBuilder};
use arrow_array::{Array, Float64Array, RecordBatch, UInt32Array};
use arrow_schema::{DataType, Field, Schema};

pub const TRAINING_LOG_FORMAT: &str = "training-log";
pub const TRAINING_LOG: &str = "training_log.parquet";

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

pub(super) fn log_batch(rows: &[LogRow]) -> Result<RecordBatch> {
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
