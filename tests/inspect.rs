//! `inspect`: a knowledge set decoded, with its tokenizer and token file found from its
//! provenance; the text is the task's own (an independent source), each position's top-K
//! probabilities and tail add up to one; bad input.
use std::path::Path;

use fedmkt_tests::*;

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_knowledge_set_reads_as_text_and_probabilities() {
    let dir = tempdir();
    let run_dir = dir.path().join("run");
    for (from, to) in [
        ("models/tiny-llama/tokenizer.json", "models/tiny-llama/tokenizer.json"),
        ("data/tokens/tiny-llama/arc-easy-eval.parquet", "tok/tiny-llama/eval.parquet"),
    ] {
        std::fs::create_dir_all(run_dir.join(to).parent().unwrap()).unwrap();
        std::fs::copy(testdata(from), run_dir.join(to)).unwrap();
    }
    let knowledge = run_dir.join("round-1/client-1/knowledge.parquet");
    let args =
        ["--model", &s(&testdata("models/tiny-llama")), "--input", &s(&run_dir.join("tok/tiny-llama/eval.parquet"))];
    assert_success(&run("infer-logits", [&args[..], &["--top-k", "4", "--out", &s(&knowledge)]].concat()));
    let output = run("inspect", [&s(&knowledge), "--json"]);
    assert_success(&output);
    let samples: Vec<serde_json::Value> =
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let (tasks, _) = fedmkt::data::read_tasks(&testdata("data/tasks/arc-easy/eval.parquet")).unwrap();
    assert_eq!(samples.len(), tasks.len());
    for (sample, task) in samples.iter().zip(&tasks) {
        let text = sample["text"].as_str().unwrap();
        assert!(text.ends_with(&format!("{}{}", task.context, task.target())), "{text:?}");
        for position in sample["positions"].as_array().unwrap() {
            let top: f64 = position["top"].as_array().unwrap().iter().map(|e| e["p"].as_f64().unwrap()).sum();
            assert!((top + position["tail"].as_f64().unwrap() - 1.0).abs() < 2e-3, "{position}");
            assert!(position["next"]["token"].is_string());
        }
    }
    let one = run("inspect", [&s(&knowledge), "--sample", &tasks[1].id]);
    assert_success(&one);
    let text = String::from_utf8_lossy(&one.stdout);
    assert!(text.starts_with(&format!("sample {}:", tasks[1].id)) && text.contains("tail"), "{text}");
    assert_bad_input(&run("inspect", [&s(&knowledge), "--sample", "nope"]), &["knowledge.parquet", "no sample 'nope'"]);
    let not_ours = testdata("models/tiny-llama/config.json");
    assert_bad_input(&run("inspect", [&s(&not_ours)]), &["config.json", "not a readable Parquet file"]);
}

/// `inspect` of the other files a user looks into: its JSON lines against the files' own
/// values, read here with arrow (a vocabulary map searched by text, predictions sample by
/// sample) and serde (an adapter folder's settings).
#[test]
fn maps_predictions_and_adapters_read_as_their_files_say() {
    use arrow_array::types::{Float64Type, UInt32Type};
    let lines = |args: &[&str]| -> Vec<serde_json::Value> {
        let output = run("inspect", args.iter().chain(&["--json"]));
        assert_success(&output);
        String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    };
    let map = testdata("golden/align/map.parquet");
    let table = fedmkt::io::read_parquet(&map, "vocab-map").unwrap();
    let (src, tgt) = (table.strings("src_text").unwrap(), table.strings("tgt_text").unwrap());
    let tgt_ids = table.values::<UInt32Type>("tgt_id").unwrap();
    let expected: Vec<(u32, u32)> = (0..src.len())
        .filter(|&i| src[i].contains("th") || tgt[i].contains("th"))
        .map(|i| (i as u32, tgt_ids[i]))
        .collect();
    let found: Vec<(u32, u32)> = lines(&[&s(&map), "--find", "th"])
        .iter()
        .map(|v| (v["src_id"].as_u64().unwrap() as u32, v["tgt_id"].as_u64().unwrap() as u32))
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(found, expected);

    let predictions = root().join("results/one-to-one/arc-easy/seed-1/FedMKT-round-1-client-1.parquet");
    let table = fedmkt::io::read_parquet(&predictions, "predictions").unwrap();
    let (ids, gold, margin) = (
        table.strings("id").unwrap(),
        table.values::<UInt32Type>("gold").unwrap(),
        table.values::<Float64Type>("margin").unwrap(),
    );
    let shown = lines(&[&s(&predictions), "--limit", "3"]);
    assert_eq!(shown.len(), 3);
    for (i, v) in shown.iter().enumerate() {
        assert_eq!((v["id"].as_str().unwrap(), v["gold"].as_u64().unwrap() as u32), (ids[i].as_str(), gold[i]));
        assert_eq!(v["margin"].as_f64().unwrap(), margin[i]);
    }
    let one = lines(&[&s(&predictions), "--sample", &ids[7]]);
    assert_eq!(one[0]["id"], ids[7]);

    let adapter = testdata("models/tiny-llama-ours");
    let config = read_json(&adapter.join("adapter_config.json"));
    let shown = &lines(&[&s(&adapter)])[0];
    for (ours, peft) in [("r", "r"), ("lora_alpha", "lora_alpha"), ("target_modules", "target_modules")] {
        assert_eq!(
            shown[ours].as_f64().map(serde_json::Value::from).unwrap_or(shown[ours].clone()),
            config[peft].as_f64().map(serde_json::Value::from).unwrap_or(config[peft].clone()),
            "{ours}"
        );
    }
}
