//! Swapping a stage with one variable: `make round SELECT=examples/select_margin.py` and
//! `ALIGN=examples/align_confident.py` run the tiny round with the Python stage in place of
//! the tool, and what the stage wrote is what the next stage read.
use std::path::{Path, PathBuf};
use std::process::Command;

use arrow_array::types::Float64Type;
use fedmkt::io::{self, file_hash};
use fedmkt_tests::*;

/// align_confident.py's threshold here: the tiny models' top-K hold 3–5 % of their mass, so
/// this keeps about half of their positions.
const MIN_MASS: f64 = 0.035;

/// One round of the tiny pipeline with `swap` (VAR=program) on the command line.
fn tiny_round_with(runs: &Path, swap: &str) -> PathBuf {
    let output = Command::new("make")
        .current_dir(root())
        .env("ALIGN_MIN_MASS", MIN_MASS.to_string())
        .args(["round", "PIPELINE=pipelines/tiny.mk", "CARGO=true", "ROUND=1", "BASELINES=zero-shot", swap])
        .arg(format!("RUNS={}", runs.display()))
        .output()
        .expect("make runs");
    assert_success(&output);
    let run = runs.join("tiny");
    let settings = std::fs::read_to_string(run.join("settings.mk")).unwrap();
    assert!(settings.contains(&format!("SWAPPED_STAGES := {swap}")), "the run records its swapped stage:\n{settings}");
    run.join("round-1")
}

/// The losses per answer byte of a knowledge set, by sample id.
fn losses(path: &Path) -> Vec<(String, f64)> {
    let table = io::read_parquet(path, "knowledge").unwrap();
    let nll = table.values::<Float64Type>("answer_nll").unwrap();
    let bytes = table.values::<arrow_array::types::UInt32Type>("answer_bytes").unwrap();
    let ids = table.strings("id").unwrap();
    ids.into_iter().zip(nll.iter().zip(&bytes).map(|(n, b)| n / *b as f64)).collect()
}

/// select_margin.py's rule worked out again: the sender with the lowest loss per byte wins
/// where it is more than 10 % below the receiver's own.
fn margin_winners(local: &Path, candidates: &[&Path]) -> Vec<(String, f64)> {
    let senders: Vec<Vec<(String, f64)>> = candidates.iter().map(|c| losses(c)).collect();
    losses(local)
        .into_iter()
        .enumerate()
        .filter_map(|(i, (id, own))| {
            let best = senders.iter().map(|s| s[i].1).fold(f64::INFINITY, f64::min);
            ((own - best) / own > 0.1).then_some((id, best))
        })
        .collect()
}

#[test]
fn a_python_select_replaces_dualmince_in_the_round() {
    let dir = tempdir();
    let round = tiny_round_with(dir.path(), "SELECT=examples/select_margin.py");
    let server = round.join("server");
    let cases = [
        (
            server.join("selected.parquet"),
            server.join("local.parquet"),
            vec![server.join("from-client-1.parquet"), server.join("from-client-2.parquet")],
            server.join("adapter"),
        ),
        (
            round.join("client-1/selected.parquet"),
            round.join("client-1/knowledge.parquet"),
            vec![round.join("client-1/from-server.parquet")],
            round.join("client-1/adapter"),
        ),
    ];
    for (selected, local, candidates, adapter) in cases {
        let table = io::read_parquet(&selected, "selected").unwrap();
        assert!(
            table.provenance.tool.starts_with("select_margin.py"),
            "{}: {}",
            selected.display(),
            table.provenance.tool
        );
        let candidates: Vec<&Path> = candidates.iter().map(PathBuf::as_path).collect();
        let expected = margin_winners(&local, &candidates);
        let written: Vec<(String, f64)> =
            table.strings("id").unwrap().into_iter().zip(table.values::<Float64Type>("sender_loss").unwrap()).collect();
        assert_eq!(written, expected, "{}", selected.display());
        // distill trained on this very file.
        let log = io::read_parquet(&adapter.join("training_log.parquet"), "training-log").unwrap();
        assert_eq!(log.input_hash("teacher").unwrap(), file_hash(&selected).unwrap(), "{}", adapter.display());
    }
}

/// The built-in align of client-1's knowledge set into the server's tokens, as the round ran it.
fn builtin_alignment(run_folder: &Path, out: &Path) -> Vec<fedmkt::knowledge::SampleKnowledge> {
    let (sender, receiver) = ("tiny-gemma3", "tiny-llama");
    let path = |rel: String| run_folder.join(rel).display().to_string();
    let output = run(
        "align",
        [
            "--knowledge".into(),
            path("round-1/client-1/knowledge.parquet".into()),
            "--sender-tokens".into(),
            path(format!("tok/{sender}/public.parquet")),
            "--receiver-tokens".into(),
            path(format!("tok/{receiver}/public.parquet")),
            "--map".into(),
            path(format!("maps/{sender}_to_{receiver}.parquet")),
            "--sender-tokenizer".into(),
            path(format!("models/{sender}/tokenizer.json")),
            "--receiver-tokenizer".into(),
            path(format!("models/{receiver}/tokenizer.json")),
            "--sender".into(),
            "client-1".into(),
            "--out".into(),
            out.display().to_string(),
        ],
    );
    assert_success(&output);
    fedmkt::knowledge::read_knowledge(out).unwrap().0
}

#[test]
fn a_python_align_post_filter_feeds_select() {
    let dir = tempdir();
    let round = tiny_round_with(dir.path(), "ALIGN=examples/align_confident.py");
    for (aligned, selected, role) in [
        ("server/from-client-1.parquet", "server/selected.parquet", "candidate1"),
        ("server/from-client-2.parquet", "server/selected.parquet", "candidate2"),
        ("client-2/from-server.parquet", "client-2/selected.parquet", "candidate1"),
    ] {
        let table = io::read_parquet(&round.join(aligned), "knowledge").unwrap();
        assert!(table.provenance.tool.starts_with("align_confident.py"), "{aligned}: {}", table.provenance.tool);
        let select = io::read_parquet(&round.join(selected), "selected").unwrap();
        assert_eq!(
            select.input_hash(role).unwrap(),
            file_hash(&round.join(aligned)).unwrap(),
            "{selected} read {aligned}"
        );
    }
    // What it kept: exactly align's positions whose top-K holds MIN_MASS of the sender's mass.
    let filtered = fedmkt::knowledge::read_knowledge(&round.join("server/from-client-1.parquet")).unwrap().0;
    let aligned = builtin_alignment(round.parent().unwrap(), &dir.path().join("aligned.parquet"));
    let (mut kept, mut left_out) = (0, 0);
    for (ours, tool) in filtered.iter().zip(&aligned) {
        let confident: Vec<u32> = tool
            .positions
            .iter()
            .zip(&tool.tail_mass)
            .filter(|(_, t)| 1.0 - f64::from(**t) >= MIN_MASS)
            .map(|(p, _)| *p)
            .collect();
        assert_eq!(ours.positions, confident, "{}", ours.id);
        kept += confident.len();
        left_out += tool.positions.len() - confident.len();
    }
    assert!(kept > 0 && left_out > 0, "the threshold splits the positions: {kept} kept, {left_out} left out");
}
