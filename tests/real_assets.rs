//! Acceptance checks on the real models and data (`make check-real`; ignored by `make test`,
//! which needs no download). Paths come from the Makefile through FEDMKT_REAL_RUN and
//! FEDMKT_REAL_ASSETS.
use std::path::PathBuf;

use fedmkt::data::{read_tasks, TaskRecord};
use tokenizers::Tokenizer;

fn env_path(name: &str) -> PathBuf {
    PathBuf::from(std::env::var(name).unwrap_or_else(|_| panic!("{name} is not set: run `make check-real`")))
}

fn tokenizer(path: PathBuf) -> Tokenizer {
    Tokenizer::from_file(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn split(name: &str) -> Vec<TaskRecord> {
    read_tasks(&env_path("FEDMKT_REAL_RUN").join(format!("data/arc-easy/{name}.parquet"))).unwrap().0
}

#[test]
#[ignore = "needs the real assets: make check-real"]
fn gemma3_tokenizer_gives_the_reference_ids_on_arc_easy_validation() {
    let ours = tokenizer(env_path("FEDMKT_REAL_RUN").join("models/gemma3-270m/tokenizer.json"));
    let reference = tokenizer(env_path("FEDMKT_REAL_ASSETS").join("tokenizer-gemma3/tokenizer.json"));
    let eval = split("eval");
    let mut mismatches = 0;
    for r in &eval {
        for text in [r.context.clone(), format!("{}{}", r.context, r.target())] {
            let (a, b) = (ours.encode(text.as_str(), true).unwrap(), reference.encode(text.as_str(), true).unwrap());
            mismatches += usize::from(a.get_ids() != b.get_ids());
        }
    }
    eprintln!("gemma3: {mismatches} mismatches on {} ARC-Easy validation strings", 2 * eval.len());
    assert_eq!(mismatches, 0);
}

#[test]
#[ignore = "needs the real assets: make check-real"]
fn smollm2_tokenizer_round_trips_every_arc_easy_context() {
    let ours = tokenizer(env_path("FEDMKT_REAL_RUN").join("models/smollm2-135m/tokenizer.json"));
    let mut texts = Vec::new();
    for name in ["public", "client-1", "client-2", "eval"] {
        texts.extend(split(name).iter().flat_map(|r| [r.context.clone(), format!("{}{}", r.context, r.target())]));
    }
    let failures = texts
        .iter()
        .filter(|t| ours.decode(ours.encode(t.as_str(), true).unwrap().get_ids(), false).unwrap() != **t)
        .count();
    eprintln!("smollm2: {failures} round-trip failures on {} ARC-Easy strings", texts.len());
    assert_eq!(failures, 0);
}

#[test]
#[ignore = "needs the real assets: make check-real"]
fn prepare_data_is_byte_identical_across_runs_for_every_task() {
    let olmo = env_path("FEDMKT_REAL_ASSETS").join("olmo");
    for task in ["arc-easy", "arc-challenge", "boolq", "csqa", "rte"] {
        let (a, b) = (fedmkt_tests::tempdir(), fedmkt_tests::tempdir());
        for dir in [&a, &b] {
            let out = fedmkt_tests::run(
                "prepare-data",
                ["--task", task, "--source", olmo.to_str().unwrap(), "--out", dir.path().to_str().unwrap()],
            );
            fedmkt_tests::assert_success(&out);
        }
        let mut counts = Vec::new();
        for split in ["public", "client-1", "client-2", "client-3", "client-4", "eval"] {
            let file = format!("{split}.parquet");
            assert!(
                std::fs::read(a.path().join(&file)).unwrap() == std::fs::read(b.path().join(&file)).unwrap(),
                "{task} {file} differs"
            );
            counts.push(format!("{split} {}", read_tasks(&a.path().join(&file)).unwrap().0.len()));
        }
        eprintln!("{task}: {} (two runs byte-identical)", counts.join(", "));
    }
}
