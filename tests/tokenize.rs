//! `tokenize`: golden token files (testdata/reference/golden_tokenize.py: Python `tokenizers`
//! with lm-evaluation-harness's context split), provenance and bad input.
use std::path::Path;

use arrow_array::{Array, ListArray, StringArray, UInt32Array};
use fedmkt::io::read_parquet;
use fedmkt_tests::*;
use serde_json::{json, Value};

fn tokenize(tokenizer: &Path, input: &Path, out: &Path) -> std::process::Output {
    run(
        "tokenize",
        [
            "--tokenizer",
            tokenizer.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ],
    )
}

fn u32_list(list: &ListArray, row: usize) -> Vec<u32> {
    list.value(row).as_any().downcast_ref::<UInt32Array>().unwrap().values().to_vec()
}

/// A token Parquet file as the JSON records the reference script writes.
fn samples(path: &Path) -> Value {
    let table = read_parquet(path, "tokens").unwrap();
    let mut rows = Vec::new();
    for batch in &table.batches {
        let col = |name: &str| batch.column_by_name(name).unwrap_or_else(|| panic!("column {name}")).clone();
        let (ids, input_ids, answer_start) = (col("id"), col("input_ids"), col("answer_start"));
        let (starts, ends, context_bytes, text_bytes) =
            (col("token_start"), col("token_end"), col("context_bytes"), col("text_bytes"));
        let list = |a: &std::sync::Arc<dyn Array>| a.as_any().downcast_ref::<ListArray>().unwrap().clone();
        let num = |a: &std::sync::Arc<dyn Array>, i: usize| a.as_any().downcast_ref::<UInt32Array>().unwrap().value(i);
        for i in 0..batch.num_rows() {
            rows.push(json!({
                "id": ids.as_any().downcast_ref::<StringArray>().unwrap().value(i),
                "input_ids": u32_list(&list(&input_ids), i),
                "answer_start": num(&answer_start, i),
                "token_start": u32_list(&list(&starts), i),
                "token_end": u32_list(&list(&ends), i),
                "context_bytes": num(&context_bytes, i),
                "text_bytes": num(&text_bytes, i),
            }));
        }
    }
    Value::Array(rows)
}

#[test]
fn token_files_match_the_reference() {
    for tok in ["bytelevel", "spm"] {
        for task in ["arc-easy", "boolq"] {
            let dir = tempdir();
            let out = dir.path().join("tok.parquet");
            let tokenizer = testdata(&format!("tokenizers/{tok}/tokenizer.json"));
            assert_success(&tokenize(&tokenizer, &testdata(&format!("data/tasks/{task}/eval.parquet")), &out));
            assert_eq!(
                samples(&out),
                read_json(&testdata(&format!("golden/tokenize/{tok}/{task}.json"))),
                "{tok} {task}"
            );
        }
    }
}

#[test]
fn token_files_name_their_dataset_and_tokenizer() {
    let dir = tempdir();
    let (input, tokenizer, out) = (
        testdata("data/tasks/boolq/eval.parquet"),
        testdata("tokenizers/spm/tokenizer.json"),
        dir.path().join("t.parquet"),
    );
    assert_success(&tokenize(&tokenizer, &input, &out));
    let table = read_parquet(&out, "tokens").unwrap();
    assert_eq!(table.input_hash("dataset").unwrap(), fedmkt::io::file_hash(&input).unwrap());
    assert_eq!(table.input_hash("tokenizer").unwrap(), fedmkt::io::file_hash(&tokenizer).unwrap());
    let again = dir.path().join("again.parquet");
    assert_success(&tokenize(&tokenizer, &input, &again));
    assert!(std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap(), "byte-identical rerun");
}

fn assert_refused(tokenizer: &Path, input: &Path, mentions: &[&str]) {
    let dir = tempdir();
    let out = dir.path().join("out.parquet");
    assert_bad_input(&tokenize(tokenizer, input, &out), mentions);
    assert!(files_below(dir.path()).is_empty(), "no output may be left behind");
}

#[test]
fn bad_inputs_are_refused_with_one_line() {
    let scratch = tempdir();
    let (tokenizer, input) =
        (testdata("tokenizers/bytelevel/tokenizer.json"), testdata("data/tasks/arc-easy/eval.parquet"));
    assert_refused(&scratch.path().join("nope.json"), &input, &["nope.json", "no such file"]);
    assert_refused(&testdata("data/LICENSES.md"), &input, &["LICENSES.md", "not a valid tokenizer.json"]);
    assert_refused(&tokenizer, &scratch.path().join("nope.parquet"), &["nope.parquet", "cannot open"]);
    assert_refused(&tokenizer, &testdata("data/LICENSES.md"), &["LICENSES.md", "not a readable Parquet file"]);
    assert_refused(
        &tokenizer,
        &truncated_copy(&input, scratch.path()),
        &["truncated-eval.parquet", "not a readable Parquet file"],
    );
    assert_refused(
        &tokenizer,
        &testdata("bad/task-without-choices.parquet"),
        &["task-without-choices.parquet", "missing column 'choices'"],
    );
    // A token file is not a task file.
    let tokens = scratch.path().join("tokens.parquet");
    assert_success(&tokenize(&tokenizer, &input, &tokens));
    assert_refused(&tokenizer, &tokens, &["tokens.parquet", "expected a 'task' file"]);
}

/// pyarrow shows the Arrow schema's metadata as `table.schema.metadata` and writes it back on a
/// round trip, so provenance must be there as well as in the footer.
#[test]
fn provenance_is_in_the_arrow_schema_too() {
    let dir = tempdir();
    let out = dir.path().join("t.parquet");
    assert_success(&tokenize(
        &testdata("tokenizers/spm/tokenizer.json"),
        &testdata("data/tasks/boolq/eval.parquet"),
        &out,
    ));
    let table = read_parquet(&out, "tokens").unwrap();
    let metadata = table.schema.metadata().clone();
    assert_eq!(metadata["fedmkt.format"], "tokens");
    assert_eq!(metadata["fedmkt.input.tokenizer"], table.input_hash("tokenizer").unwrap());
}

/// A token file another program wrote with impossible rows: refused at load by every tool
/// that reads token files (here `infer-logits`), naming the file, the sample and the value.
#[test]
fn impossible_token_rows_are_refused_at_load() {
    let dir = tempdir();
    let source = testdata("data/tokens/tiny-llama/arc-easy-eval.parquet");
    let (samples, table) = fedmkt::tokens::read_tokens(&source).unwrap();
    type Break = fn(&mut Vec<fedmkt::tokens::TokenizedSample>);
    let cases: [(&str, Break, &str); 4] = [
        ("beyond-text", |s| s[0].token_end[1] = s[0].text_bytes + 5, "outside 0.."),
        ("backwards", |s| s[0].token_start.swap(1, 2), "go backwards"),
        ("context-too-long", |s| s[0].context_bytes = s[0].text_bytes + 1, "exceed text_bytes"),
        (
            "twice",
            |s| {
                let copy = s[0].clone();
                s.push(copy);
            },
            "appears twice",
        ),
    ];
    for (name, corrupt, says) in cases {
        let mut bad = samples.clone();
        corrupt(&mut bad);
        let path = dir.path().join(format!("{name}.parquet"));
        fedmkt::tokens::write_tokens(&path, &bad, &table.provenance).unwrap();
        let out = dir.path().join("k.parquet");
        let model = testdata("models/tiny-llama");
        let output = run(
            "infer-logits",
            [
                "--model",
                &model.display().to_string(),
                "--input",
                &path.display().to_string(),
                "--out",
                &out.display().to_string(),
            ],
        );
        assert_bad_input(&output, &[&format!("{name}.parquet"), says]);
        assert!(!out.exists());
    }
}
