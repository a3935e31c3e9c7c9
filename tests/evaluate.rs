//! `evaluate` against lm-evaluation-harness-style scoring with transformers (+ PEFT)
//! (testdata/reference/golden_evaluate.py), and bad input.
use std::path::Path;

use arrow_array::{Array, ListArray, StringArray, UInt32Array};
use fedmkt::io::read_parquet;
use fedmkt_tests::*;

fn evaluate(model: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    evaluate_task("arc-easy", model, out, extra)
}

fn evaluate_task(task: &str, model: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let data = testdata(&format!("data/tasks/{task}/eval.parquet"));
    let mut args =
        vec!["--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run("evaluate", args)
}

fn check_case(case: &str, task: &str, model: &str, extra: &[&str]) {
    let dir = tempdir();
    let out = dir.path().join("eval.json");
    let mut args = vec!["--batch-size", "3", "--generate", "3"];
    args.extend_from_slice(extra);
    assert_success(&evaluate_task(task, &testdata(&format!("models/{model}")), &out, &args));
    let golden = read_json(&testdata(&format!("golden/evaluate/{case}.json")));
    let summary = read_json(&out);
    assert_eq!(summary["acc"], golden["acc"], "{case}: acc");
    assert_eq!(summary["acc_norm"], golden["acc_norm"], "{case}: acc_norm");
    assert_eq!(summary["n"], golden["samples"].as_array().unwrap().len());
    assert_eq!(summary["task"], task);
    let table = read_parquet(&dir.path().join("eval.parquet"), "predictions").unwrap();
    let batch = &table.batches[0];
    let col = |name: &str| batch.column_by_name(name).unwrap().clone();
    let (pred, pred_norm) = (col("pred"), col("pred_norm"));
    let (pred, pred_norm) = (
        pred.as_any().downcast_ref::<UInt32Array>().unwrap(),
        pred_norm.as_any().downcast_ref::<UInt32Array>().unwrap(),
    );
    let loglik = col("loglik");
    let loglik = loglik.as_any().downcast_ref::<ListArray>().unwrap();
    let generation = col("generation");
    let generation = generation.as_any().downcast_ref::<StringArray>().unwrap();
    for (i, want) in golden["samples"].as_array().unwrap().iter().enumerate() {
        assert_eq!(pred.value(i) as u64, want["pred"].as_u64().unwrap(), "{case} sample {i}: pred");
        assert_eq!(pred_norm.value(i) as u64, want["pred_norm"].as_u64().unwrap(), "{case} sample {i}: pred_norm");
        let ours = loglik.value(i);
        let ours = ours.as_any().downcast_ref::<arrow_array::Float64Array>().unwrap();
        for (j, w) in want["loglik"].as_array().unwrap().iter().enumerate() {
            let w = w.as_f64().unwrap();
            assert!(
                (ours.value(j) - w).abs() < 1e-4 * w.abs().max(1.0),
                "{case} sample {i} choice {j}: {} vs {w}",
                ours.value(j)
            );
        }
        assert_eq!(generation.value(i), want["generation"].as_str().unwrap(), "{case} sample {i}: greedy generation");
    }
}

#[test]
fn accuracy_matches_the_harness_convention() {
    check_case("tiny-llama", "arc-easy", "tiny-llama", &[]);
}

#[test]
fn boolq_matches_the_harness_convention() {
    check_case("tiny-gemma3-boolq", "boolq", "tiny-gemma3", &[]);
}

/// Choices of one token each after the same context (BoolQ's " yes"/" no" with real
/// tokenizers) are scored from one pass over the context; the file comes from pyarrow.
#[test]
fn single_token_choices_share_one_pass() {
    check_case("tiny-llama-single-token", "single-token", "tiny-llama", &[]);
}

#[test]
fn accuracy_with_an_adapter_matches_peft() {
    let adapter = testdata("models/tiny-gemma3-lora");
    check_case("tiny-gemma3-lora", "arc-easy", "tiny-gemma3", &["--adapter", adapter.to_str().unwrap()]);
}

#[test]
fn bad_inputs_are_refused_with_one_line() {
    let dir = tempdir();
    let out = dir.path().join("eval.json");
    let data = testdata("bad/task-without-choices.parquet");
    let model = testdata("models/tiny-llama");
    let output = run(
        "evaluate",
        ["--model", model.to_str().unwrap(), "--data", data.to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert_bad_input(&output, &["task-without-choices.parquet", "missing column 'choices'"]);
    let output = evaluate(&model, &out, &["--device", "tpu"]);
    assert_bad_input(&output, &["--device must be cpu or cuda"]);
    let no_model = dir.path().join("nothing");
    assert_bad_input(&evaluate(&no_model, &out, &[]), &["nothing/tokenizer.json", "no such file"]);
    // A generation length with no end in sight is refused at once.
    assert_bad_input(
        &evaluate(&model, &out, &["--generate", "1000000000000"]),
        &["--generate 1000000000000", "at most"],
    );
    assert!(files_below(dir.path()).is_empty(), "no output may be left behind");
}

#[test]
fn a_tokenizer_larger_than_the_embedding_is_refused() {
    let dir = tempdir();
    let model = dir.path().join("model");
    std::fs::create_dir_all(&model).unwrap();
    for file in ["config.json", "model.safetensors"] {
        std::fs::copy(testdata(&format!("models/tiny-llama/{file}")), model.join(file)).unwrap();
    }
    std::fs::copy(testdata("models/tiny-gemma3/tokenizer.json"), model.join("tokenizer.json")).unwrap();
    let out = dir.path().join("out/eval.json");
    assert_bad_input(
        &evaluate(&model, &out, &[]),
        &["model/tokenizer.json", "1201 tokens, more than the model's 1024 embeddings"],
    );
    assert!(!out.parent().unwrap().exists() || files_below(out.parent().unwrap()).is_empty());
}

#[test]
fn report_refuses_a_summary_that_evaluate_did_not_write() {
    let dir = tempdir();
    let (out, md) = (dir.path().join("r.parquet"), dir.path().join("r.md"));
    for (name, json, says) in [
        ("unmarked", r#"{"n": 10, "acc": 0.5, "acc_norm": 0.5, "model": "m"}"#, "found 'none'"),
        (
            "impossible",
            r#"{"fedmkt_format": "eval-summary", "n": 10, "acc": 1.5, "acc_norm": 0.5, "model": "m"}"#,
            "acc 1.5",
        ),
        ("empty", r#"{"fedmkt_format": "eval-summary", "n": 0, "acc": 0, "acc_norm": 0, "model": "m"}"#, "n 0"),
    ] {
        let file = dir.path().join(format!("{name}.json"));
        std::fs::write(&file, json).unwrap();
        let entry = format!("Zero-Shot,-,server={}", file.display());
        let output = run(
            "report",
            [
                "results",
                "--result",
                &entry,
                "--out",
                &out.display().to_string(),
                "--paired",
                &dir.path().join("p.parquet").display().to_string(),
                "--markdown",
                &md.display().to_string(),
            ],
        );
        assert_bad_input(&output, &[&format!("{name}.json"), says]);
    }
    assert!(!out.exists() && !md.exists());
}

/// The continuous per-sample scores, recomputed from the predictions' own log-likelihoods
/// (golden against transformers above) and the task's choices.
#[test]
fn gold_log_likelihood_per_byte_and_margin_follow_from_the_log_likelihoods() {
    use arrow_array::{Array, Float64Array, ListArray, UInt32Array};
    let dir = tempdir();
    let out = dir.path().join("eval.json");
    assert_success(&evaluate(&testdata("models/tiny-llama"), &out, &[]));
    let table = fedmkt::io::read_parquet(&fedmkt::eval::predictions_path(&out), "predictions").unwrap();
    let (tasks, _) = fedmkt::data::read_tasks(&testdata("data/tasks/arc-easy/eval.parquet")).unwrap();
    let batch = &table.batches[0];
    let column = |name: &str| batch.column_by_name(name).unwrap().clone();
    let (loglik, gold, pred) = (column("loglik"), column("gold"), column("pred"));
    let loglik = loglik.as_any().downcast_ref::<ListArray>().unwrap();
    let (gold, pred) =
        (gold.as_any().downcast_ref::<UInt32Array>().unwrap(), pred.as_any().downcast_ref::<UInt32Array>().unwrap());
    let (per_byte, margin) = (column("gold_loglik_per_byte"), column("margin"));
    let per_byte = per_byte.as_any().downcast_ref::<Float64Array>().unwrap();
    let margin = margin.as_any().downcast_ref::<Float64Array>().unwrap();
    for (row, task) in tasks.iter().enumerate() {
        let ll = loglik.value(row);
        let ll = ll.as_any().downcast_ref::<Float64Array>().unwrap().values().to_vec();
        let g = gold.value(row) as usize;
        let bytes = task.choices[g].trim_start_matches(' ').len() as f64;
        assert!((per_byte.value(row) - ll[g] / bytes).abs() < 1e-12, "row {row}: per byte");
        let best_wrong = ll.iter().enumerate().filter(|(i, _)| *i != g).map(|(_, v)| *v).fold(f64::MIN, f64::max);
        assert!((margin.value(row) - (ll[g] - best_wrong)).abs() < 1e-12, "row {row}: margin");
        assert_eq!(margin.value(row) > 0.0, pred.value(row) as usize == g, "row {row}: margin sign vs pred");
    }
}

/// `report tasks` takes TASK=FILE entries naming `report results` tables, and nothing else.
#[test]
fn report_tasks_refuses_an_entry_without_a_task_or_a_table_of_another_kind() {
    let dir = tempdir();
    let (out, md) = (dir.path().join("t.parquet"), dir.path().join("t.md"));
    let tasks = |entry: &str| {
        run("report", ["tasks", "--report", entry, "--out", out.to_str().unwrap(), "--markdown", md.to_str().unwrap()])
    };
    assert_bad_input(&tasks("no-task-given.parquet"), &["--report 'no-task-given.parquet'", "TASK=FILE"]);
    let foreign = testdata("data/tasks/arc-easy/eval.parquet");
    let output = tasks(&format!("arc-easy={}", foreign.display()));
    assert_bad_input(&output, &["eval.parquet", "expected a 'results' file", "found 'task'"]);
    assert!(files_below(dir.path()).is_empty(), "no output may be left behind");
}

/// A report recomputes what it prints from the per-sample predictions: a summary whose acc
/// contradicts them (0.99 beside 0.33 was printed both ways) and predictions whose gold is
/// not one of the choices, or whose pred is not the argmax of the log-likelihoods, are refused.
#[test]
fn report_refuses_a_summary_or_predictions_that_contradict_the_log_likelihoods() {
    let dir = tempdir();
    let summary = dir.path().join("eval.json");
    assert_success(&evaluate(&testdata("models/tiny-llama"), &summary, &[]));
    let report = |summary: &Path| {
        let entry = format!("Zero-Shot,-,server={}", summary.display());
        let out = |name: &str| dir.path().join(name).display().to_string();
        let args = ["results", "--result", &entry, "--out", &out("r.parquet"), "--paired", &out("p.parquet")];
        run("report", [&args[..], &["--markdown", &out("r.md")]].concat())
    };
    let mut json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&summary).unwrap()).unwrap();
    json["acc"] = serde_json::json!(0.99);
    std::fs::write(&summary, json.to_string()).unwrap();
    assert_bad_input(&report(&summary), &["eval.json", "says acc 0.99", "give"]);

    // Predictions rewritten: the first sample's gold beyond its choices, then its pred moved.
    let fresh = dir.path().join("fresh.json");
    assert_success(&evaluate(&testdata("models/tiny-llama"), &fresh, &[]));
    let predictions = dir.path().join("fresh.parquet");
    let table = fedmkt::io::read_parquet(&predictions, "predictions").unwrap();
    for (column, value, says) in [("gold", 9u32, "not one of its"), ("pred", 1, "do not follow")] {
        let batch = &table.batches[0];
        let index = batch.schema().index_of(column).unwrap();
        let mut values = table.values::<arrow_array::types::UInt32Type>(column).unwrap();
        values[0] = if column == "pred" { (values[0] + 1) % 2 } else { value };
        let mut columns = batch.columns().to_vec();
        columns[index] = std::sync::Arc::new(arrow_array::UInt32Array::from(values));
        let changed = arrow_array::RecordBatch::try_new(batch.schema(), columns).unwrap();
        std::fs::remove_file(&predictions).unwrap();
        fedmkt::io::write_parquet(&predictions, changed.schema(), &[changed], &table.provenance).unwrap();
        assert_bad_input(&report(&fresh), &["fresh.parquet", says]);
    }
}

/// `report tasks` copies no row that no evaluation could give (acc 7, NaN, n 0) nor a table of
/// another format version.
#[test]
fn report_tasks_refuses_impossible_rows_and_old_tables() {
    use std::sync::Arc;
    let dir = tempdir();
    let committed = root().join("results/one-to-one/arc-easy/report.parquet");
    let table = fedmkt::io::read_parquet(&committed, "results").unwrap();
    let (out, md) = (dir.path().join("t.parquet"), dir.path().join("t.md"));
    let tasks = |file: &Path| {
        let entry = format!("arc-easy={}", file.display());
        run("report", ["tasks", "--report", &entry, "--out", out.to_str().unwrap(), "--markdown", md.to_str().unwrap()])
    };
    assert_success(&tasks(&committed));
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&md).unwrap();
    let batch = table.batches[0].clone();
    let rewritten = |column: &str, value: f64, version: u32| {
        let index = batch.schema().index_of(column).unwrap();
        let mut columns = batch.columns().to_vec();
        if column == "n" {
            let mut n = table.values::<arrow_array::types::UInt64Type>("n").unwrap();
            n[0] = value as u64;
            columns[index] = Arc::new(arrow_array::UInt64Array::from(n[..batch.num_rows()].to_vec()));
        } else {
            let mut values = table.values::<arrow_array::types::Float64Type>(column).unwrap();
            values[0] = value;
            columns[index] = Arc::new(arrow_array::Float64Array::from(values[..batch.num_rows()].to_vec()));
        }
        let changed = arrow_array::RecordBatch::try_new(batch.schema(), columns).unwrap();
        let path = dir.path().join(format!("{column}-{value}-{version}.parquet"));
        let mut provenance = table.provenance.clone();
        provenance.format_version = version;
        fedmkt::io::write_parquet(&path, changed.schema(), &[changed], &provenance).unwrap();
        path
    };
    for (column, value, version, says) in [
        ("acc", 7.0, 2, "cannot come from an evaluation"),
        ("acc", f64::NAN, 2, "cannot come from an evaluation"),
        ("n", 0.0, 2, "cannot come from an evaluation"),
        ("acc", 0.5, 1, "version 1"),
    ] {
        let file = rewritten(column, value, version);
        assert_bad_input(&tasks(&file), &[file.file_name().unwrap().to_str().unwrap(), says]);
    }
    assert!(!out.exists() && !md.exists());
}
