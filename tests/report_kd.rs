//! `report kd` worked by hand: a receiver taught by two senders on the public set, each
//! sender's share and losses, the KL pooled over positions before and after, the noKD
//! ablation's and the paired difference; a measure of another teacher is refused.
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use fedmkt::io::{self, Provenance};
use fedmkt::knowledge::{knowledge_batch_with, SampleKnowledge};
use fedmkt_tests::*;
use half::f16;

/// The receiver's selected targets: a and c from client-1, b from client-2 (losses in nats/byte).
fn selected(dir: &Path) -> PathBuf {
    let rows = [("a", "client-1", 0.2, 0.5), ("b", "client-2", 0.1, 0.4), ("c", "client-1", 0.3, 0.6)];
    let knowledge: Vec<SampleKnowledge> = rows
        .iter()
        .map(|(id, ..)| SampleKnowledge {
            id: id.to_string(),
            answer_nll: 1.0,
            answer_tokens: 1,
            answer_bytes: 1,
            positions: vec![0],
            topk_ids: vec![1],
            topk_logits: vec![f16::ZERO],
            logsumexp: vec![0.0],
            tail_mass: vec![0.0],
        })
        .collect();
    let column =
        |f: fn(&(&str, &str, f64, f64)) -> f64| Arc::new(rows.iter().map(f).collect::<Float64Array>()) as ArrayRef;
    let extra = vec![
        (
            Field::new("party", DataType::Utf8, false),
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.1))) as ArrayRef,
        ),
        (Field::new("receiver_loss", DataType::Float64, false), column(|r| r.3)),
        (Field::new("sender_loss", DataType::Float64, false), column(|r| r.2)),
    ];
    let batch = knowledge_batch_with(&knowledge, 1, extra).unwrap();
    let path = dir.join("selected.parquet");
    io::write_parquet(&path, batch.schema(), &[batch], &Provenance::new("selected", 1, "test").extra("top_k", 1))
        .unwrap();
    path
}

/// A kd-measure file of samples a, b, c (1, 3 and 2 positions, H(q) = 1) with these KLs,
/// and d, which has no teacher row.
fn measure(dir: &Path, name: &str, kl: [f64; 3], teacher: &Path) -> PathBuf {
    let ids = ["a", "b", "c", "d"];
    let positions = [1u32, 3, 2, 0];
    let per_sample = |value: &dyn Fn(usize) -> f64| -> ArrayRef {
        Arc::new((0..4).map(|i| (i < 3).then(|| value(i))).collect::<Float64Array>())
    };
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("id", Arc::new(StringArray::from_iter_values(ids))),
        ("answer_tokens", Arc::new(UInt32Array::from(vec![1u32; 4]))),
        ("ce", Arc::new(Float64Array::from(vec![1.0; 4]))),
        ("kd_positions", Arc::new(UInt32Array::from(positions.to_vec()))),
        ("kd", per_sample(&|i| kl[i] + 1.0)),
        ("entropy", per_sample(&|_| 1.0)),
        ("kl", per_sample(&|i| kl[i])),
        ("teacher_gold", per_sample(&|_| 0.5)),
        ("gold_in_top_k", per_sample(&|_| 1.0)),
    ];
    let fields: Vec<Field> =
        columns.iter().map(|(n, a)| Field::new(*n, a.data_type().clone(), *n != "id" && a.null_count() > 0)).collect();
    let batch =
        RecordBatch::try_new(Arc::new(Schema::new(fields)), columns.into_iter().map(|c| c.1).collect()).unwrap();
    let provenance = Provenance::new("kd-measure", 1, "test")
        .input("tokens", "sha256:public-tokens".into())
        .input("teacher", io::file_hash(teacher).unwrap());
    let path = dir.join(name);
    io::write_parquet(&path, batch.schema(), &[batch], &provenance).unwrap();
    path
}

fn column(table: &io::ParquetTable, name: &str) -> Vec<Option<f64>> {
    table.optional_values::<arrow_array::types::Float64Type>(name).unwrap()
}

#[test]
fn each_sender_gets_its_share_its_losses_and_its_samples_kl() {
    let dir = tempdir();
    let d = dir.path();
    let selected = selected(d);
    let files = [("before", [2.0, 4.0, 6.0]), ("after", [1.0, 2.0, 3.0]), ("nokd", [1.5, 2.5, 3.5])]
        .map(|(name, kl)| measure(d, &format!("{name}.parquet"), kl, &selected).display().to_string());
    let public = format!("1,client-9,{},{}", selected.display(), files.join(","));
    let out = d.join("kd.parquet");
    let markdown = d.join("kd.md");
    let args =
        ["kd", "--public", &public, "--out", &out.display().to_string(), "--markdown", &markdown.display().to_string()];
    assert_success(&run("report", args));
    let table = io::read_parquet(&out, "kd-report").unwrap();
    assert_eq!(table.strings("teacher").unwrap(), ["client-1", "client-2", "all"]);
    let close = |got: Vec<Option<f64>>, want: [f64; 3]| {
        for (g, w) in got.iter().zip(want) {
            assert!((g.unwrap() - w).abs() < 1e-9, "{got:?} vs {want:?}");
        }
    };
    // Shares of the 4 public samples; mean losses over each sender's samples.
    close(column(&table, "won"), [0.5, 0.25, 0.75]);
    close(column(&table, "sender_loss"), [0.25, 0.1, 0.2]);
    close(column(&table, "receiver_loss"), [0.55, 0.4, 0.5]);
    // KL pooled over positions: client-1 (a: 1 position, c: 2), client-2 (b: 3), all six.
    close(column(&table, "kl_before"), [(2.0 + 12.0) / 3.0, 4.0, 26.0 / 6.0]);
    close(column(&table, "kl_after"), [7.0 / 3.0, 2.0, 13.0 / 6.0]);
    close(column(&table, "kl_nokd"), [8.5 / 3.0, 2.5, 16.0 / 6.0]);
    close(column(&table, "entropy"), [1.0, 1.0, 1.0]);
    // Every sample's KL is 0.5 below noKD's: the paired mean and both bounds.
    for name in ["after_minus_nokd", "after_minus_nokd_low", "after_minus_nokd_high"] {
        close(column(&table, name), [-0.5, -0.5, -0.5]);
    }
    let text = std::fs::read_to_string(&markdown).unwrap();
    assert!(text.contains("| 1 | client-9 | public | client-1 | 2 | 50.0% | 0.250 / 0.550 |"), "{text}");

    // A measure of another teacher than the selected file is refused, naming it.
    let other = measure(d, "other.parquet", [1.0; 3], &d.join("kd.md"));
    let mixed = format!("1,client-9,{},{},{}", selected.display(), files[0], other.display());
    std::fs::remove_file(&out).unwrap();
    let args =
        ["kd", "--public", &mixed, "--out", &out.display().to_string(), "--markdown", &markdown.display().to_string()];
    assert_bad_input(&run("report", args), &["other.parquet", "another teacher"]);
}
