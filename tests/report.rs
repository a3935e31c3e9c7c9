//! `report results` against testdata/reference/golden_report.py, which recomputes every
//! non-bootstrap number of the committed one-to-one ARC-Easy seed 1 from its per-sample
//! predictions with pyarrow and the standard library (McNemar's p by exact binomial sums).
use std::path::Path;

use arrow_array::types::{Float64Type, UInt32Type, UInt64Type};
use fedmkt::io::{self, ParquetTable};
use fedmkt_tests::*;
use serde_json::Value;

/// The table's rows as (key, column → value) for the columns the golden file has.
fn row_of(table: &ParquetTable, key_columns: &[&str], i: usize) -> String {
    key_columns
        .iter()
        .map(|c| match c.contains("round") {
            true => format!("{:?}", table.optional_values::<UInt32Type>(c).unwrap()[i]),
            false => table.strings(c).unwrap()[i].clone(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn golden_key(value: &Value, key_columns: &[&str]) -> String {
    key_columns
        .iter()
        .map(|c| match c.contains("round") {
            true => format!("{:?}", value[c].as_u64().map(|r| r as u32)),
            false => value[c].as_str().unwrap().to_string(),
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn check(table: &ParquetTable, golden: &[Value], keys: &[&str], numbers: &[&str], counts: &[&str]) {
    let index: Vec<String> = (0..table.num_rows()).map(|i| row_of(table, keys, i)).collect();
    for want in golden {
        let key = golden_key(want, keys);
        let i = index.iter().position(|k| *k == key).unwrap_or_else(|| panic!("no row {key}"));
        for name in numbers {
            let (got, expected) = (table.values::<Float64Type>(name).unwrap()[i], want[name].as_f64().unwrap());
            assert!((got - expected).abs() <= 1e-9 * expected.abs().max(1e-3), "{key} {name}: {got} vs {expected}");
        }
        for name in counts {
            let got = table.values::<UInt64Type>(name).unwrap()[i];
            assert_eq!(got, want[name].as_u64().unwrap(), "{key} {name}");
        }
    }
}

#[test]
fn report_numbers_match_the_python_reference() {
    let dir = tempdir();
    let expected = read_json(&testdata("golden/report/expected.json"));
    let seed = root().join("results/one-to-one/arc-easy/seed-1/report.parquet");
    let out = |name: &str| dir.path().join(name).display().to_string();
    let args = [
        "results",
        "--reports",
        &seed.display().to_string(),
        "--out",
        &out("r.parquet"),
        "--paired",
        &out("p.parquet"),
    ];
    assert_success(&run("report", [&args[..], &["--markdown", &out("r.md")]].concat()));
    let rows = io::read_parquet(Path::new(&out("r.parquet")), "results").unwrap();
    let numbers = ["acc", "acc_norm", "gold_loglik_per_byte", "margin"];
    check(&rows, expected["rows"].as_array().unwrap(), &["method", "round", "party"], &numbers, &["n"]);
    let paired = io::read_parquet(Path::new(&out("p.parquet")), "paired").unwrap();
    let keys = ["method", "round", "party", "against_method", "against_round"];
    let numbers = ["acc_diff", "mcnemar_p", "gold_loglik_per_byte_diff", "margin_diff"];
    check(
        &paired,
        expected["paired"].as_array().unwrap(),
        &keys,
        &numbers,
        &["n", "only_method_right", "only_against_right"],
    );
}

/// A result entry may name `evaluate`'s predictions alone (a sweep's `lr-<rate>.parquet`):
/// every number of the paired table is the one its JSON summary's entry gives.
#[test]
fn predictions_alone_give_the_same_comparisons_as_their_summaries() {
    let dir = tempdir();
    let seed = root().join("results/one-to-one/arc-easy/seed-1");
    let paired = |extension: &str| {
        let out = dir.path().join(extension);
        let entry = |method: &str, file: &str| {
            format!("--result={method},-,client-1={}", seed.join(format!("{file}.{extension}")).display())
        };
        let output = run(
            "report",
            [
                "results".to_string(),
                entry("FedMKT", "FedMKT-round-1-client-1"),
                entry("Standalone", "Standalone-client-1"),
                entry("Zero-Shot", "Zero-Shot-client-1"),
                format!("--out={}", out.join("report.parquet").display()),
                format!("--paired={}", out.join("paired.parquet").display()),
                format!("--markdown={}", out.join("report.md").display()),
            ],
        );
        assert_success(&output);
        let table = io::read_parquet(&out.join("paired.parquet"), "paired").unwrap();
        let rows: Vec<String> =
            (0..table.num_rows()).map(|i| row_of(&table, &["method", "party", "against_method"], i)).collect();
        let numbers: Vec<Vec<f64>> =
            table.schema.fields().iter().filter_map(|f| table.values::<Float64Type>(f.name()).ok()).collect();
        (rows, numbers)
    };
    let (from_json, from_parquet) = (paired("json"), paired("parquet"));
    assert!(!from_json.0.is_empty());
    assert_eq!(from_json, from_parquet);
    // Methods no paper claims anything of: one line says so, no empty table.
    let markdown = std::fs::read_to_string(dir.path().join("json/report.md")).unwrap();
    assert!(markdown.contains("FedMKT > Standalone"), "{markdown}");
    let none = dir.path().join("none");
    let seed_file = |f: &str| seed.join(f).display().to_string();
    assert_success(&run(
        "report",
        [
            "results".to_string(),
            format!("--result=A,-,client-1={}", seed_file("Standalone-client-1.json")),
            format!("--result=B,-,client-1={}", seed_file("Zero-Shot-client-1.json")),
            format!("--out={}", none.join("r.parquet").display()),
            format!("--paired={}", none.join("p.parquet").display()),
            format!("--markdown={}", none.join("r.md").display()),
        ],
    ));
    let markdown = std::fs::read_to_string(none.join("r.md")).unwrap();
    assert!(
        markdown.contains("The paper's claims:\n\nNone applies to these methods") && !markdown.contains("| claim |"),
        "{markdown}"
    );
}
