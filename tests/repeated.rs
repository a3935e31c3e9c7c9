//! A value given twice to a flag that takes several is refused, one line naming the flag and
//! the value, exit 2, before any work: one sender counted twice in DualMinCE, one adapter
//! weighed twice in FedAvg, one report pooled as two seeds.
use std::path::Path;

use fedmkt_tests::*;

fn s(p: &Path) -> String {
    p.display().to_string()
}

#[test]
fn a_value_given_twice_is_refused() {
    let dir = tempdir();
    let d = dir.path();
    let out = s(&d.join("out.parquet"));
    let markdown = s(&d.join("out.md"));
    let llama = s(&testdata("models/tiny-llama"));
    let tokens = s(&testdata("data/tokens/tiny-llama/arc-easy-eval.parquet"));
    let knowledge = d.join("k.parquet");
    assert_success(&run(
        "infer-logits",
        ["--model", &llama, "--input", &tokens, "--top-k", "2", "--out", &s(&knowledge)],
    ));
    let k = s(&knowledge);
    // The same file through another spelling is the same file.
    let dotted = s(&d.join(".").join("k.parquet"));
    assert_bad_input(
        &run("select", ["--local", &k, "--candidates", &k, &dotted, "--out", &out]),
        &["--candidates", "twice"],
    );
    let lora = s(&testdata("models/tiny-llama-lora"));
    let adapter = s(&d.join("avg"));
    assert_bad_input(
        &run("aggregate", ["average", "--adapters", &lora, &lora, "--out", &adapter]),
        &["--adapters", "twice"],
    );
    let targets = ["--model", &llama, "--data", &tokens, "--lora-targets", "q_proj,q_proj", "--out", &adapter];
    assert_bad_input(&run("distill", targets), &["--lora-targets 'q_proj'", "twice"]);
    let summary = s(&testdata("golden/evaluate/tiny-llama-single-token.json"));
    let result = format!("Zero-Shot,-,server={summary}");
    let results =
        ["results", "--result", &result, "--result", &result, "--out", &out, "--paired", &out, "--markdown", &markdown];
    assert_bad_input(&run("report", results), &["--result", "Zero-Shot,-,server", "twice"]);
    let reports = ["results", "--reports", &k, &k, "--out", &out, "--paired", &out, "--markdown", &markdown];
    assert_bad_input(&run("report", reports), &["--reports", "twice"]);
    let task = format!("arc-easy={k}");
    let tasks = ["tasks", "--report", &task, "--report", &task, "--out", &out, "--markdown", &markdown];
    assert_bad_input(&run("report", tasks), &["--report 'arc-easy'", "twice"]);
    let entry = format!("1,client-1,-,-,-,{tokens}");
    let comms = ["comms", "--entry", &entry, "--entry", &entry, "--out", &out, "--markdown", &markdown];
    assert_bad_input(&run("report", comms), &["--entry '1,client-1'", "twice"]);
    assert!(files_below(d).iter().all(|f| f == &knowledge), "a refused run wrote something");
}

#[test]
fn align_needs_a_sender_name() {
    let dir = tempdir();
    let x = s(&dir.path().join("x"));
    let args = ["--knowledge", &x, "--sender-tokens", &x, "--receiver-tokens", &x, "--map", &x];
    let rest =
        ["--sender-tokenizer", &x, "--receiver-tokenizer", &x, "--sender", " ", "--out", &s(&dir.path().join("o"))];
    assert_bad_input(&run("align", [&args[..], &rest[..]].concat()), &["--sender ' '", "name the sending party"]);
}
