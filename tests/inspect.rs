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
