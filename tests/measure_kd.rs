//! `measure-kd`, and the positive controls of knowledge distillation: a student distilled
//! with λ = 0 from a teacher that knows something its labels do not say moves towards that
//! teacher on samples it never saw, with the same tokenizer and across tokenizers; with
//! λ = 1 (its labels alone) it does not. The measures themselves are checked by hand.
//!
//! The teacher is tiny Llama fine-tuned to answer " a" after every question; the student's
//! labels say " the". Answers are one token, so the one distilled position per sample is the
//! one that predicts the answer: KD at a shifted position, or a detached KD term, teaches
//! the student nothing there, and the held-out KL stays where it was.
use std::path::{Path, PathBuf};

use fedmkt::io;
use fedmkt::knowledge::knowledge_batch;
use fedmkt_tests::*;

const LLAMA: &str = "models/tiny-llama";
const GEMMA: &str = "models/tiny-gemma3";

fn path(p: &Path) -> String {
    p.display().to_string()
}

/// `measure-kd` of `model` (+ `adapter`) on `tokens` against `teacher` into `out`: its table.
fn measure(
    model: &str,
    adapter: Option<&Path>,
    tokens: &Path,
    teacher: &Path,
    extra: &[&str],
    out: &Path,
) -> io::ParquetTable {
    let mut args = vec!["--model".to_string(), path(&testdata(model)), "--input".into(), path(tokens)];
    args.extend(["--teacher".into(), path(teacher), "--out".into(), path(out)]);
    args.extend(adapter.map(|a| ["--adapter".to_string(), path(a)]).into_iter().flatten());
    args.extend(extra.iter().map(|e| e.to_string()));
    assert_success(&run("measure-kd", &args));
    io::read_parquet(out, "kd-measure").unwrap()
}

/// A pooled figure of a measure table's metadata.
fn pooled(table: &io::ParquetTable, figure: &str) -> f64 {
    table.provenance.extra[figure].parse().unwrap()
}

fn distill(model: &str, data: &Path, teacher: &Path, lambda: &str, out: &Path) {
    let args = [
        "--model",
        &path(&testdata(model)),
        "--data",
        &path(data),
        "--teacher",
        &path(teacher),
        "--lambda",
        lambda,
        "--epochs",
        "10",
        "--lr",
        "1e-2",
        "--batch-size",
        "2",
        "--out",
        &path(out),
    ];
    assert_success(&run("distill", args));
}

/// Tiny Llama's top-8 (with `adapter`) on `tokens`, at `extra` positions (`--all-positions`).
fn infer(adapter: Option<&Path>, tokens: &Path, extra: &[&str], out: &Path) -> PathBuf {
    let mut args = vec!["--model".to_string(), path(&testdata(LLAMA)), "--input".into(), path(tokens)];
    args.extend(adapter.map(|a| ["--adapter".to_string(), path(a)]).into_iter().flatten());
    args.extend(extra.iter().map(|e| e.to_string()).chain(["--top-k".into(), "8".into(), "--out".into(), path(out)]));
    assert_success(&run("infer-logits", &args));
    out.to_path_buf()
}

/// The teacher's knowledge of the student's 5 training questions (every position) and of 6
/// held-out ones (the answer's), the student's answers being " the", in Llama's tokens.
struct Teacher {
    train: PathBuf,
    held_out: PathBuf,
}

/// The teacher: tiny Llama fine-tuned on 19 other questions answered " a", anchored to its
/// base model everywhere else (λ = 0.5 against the base's own top-8 at every position), so
/// that it differs from the student where the answer is predicted and little elsewhere.
fn teacher(dir: &Path) -> (Teacher, PathBuf, PathBuf) {
    let own = answered_tokens(
        LLAMA,
        &["public", "client-2", "client-3", "client-4"],
        " a",
        "teacher",
        &dir.join("t.parquet"),
    );
    let base = infer(None, &own, &["--all-positions"], &dir.join("base.parquet"));
    let adapter = dir.join("teacher");
    let args =
        ["--model", &path(&testdata(LLAMA)), "--data", &path(&own), "--teacher", &path(&base), "--lambda", "0.5"];
    let schedule = ["--epochs", "10", "--lr", "1e-2", "--batch-size", "2", "--out", &path(&adapter)];
    assert_success(&run("distill", [&args[..], &schedule[..]].concat()));
    let train = answered_tokens(LLAMA, &["client-1"], " the", "train", &dir.join("train-llama.parquet"));
    let held_out = answered_tokens(LLAMA, &["eval"], " the", "held-out", &dir.join("held-out-llama.parquet"));
    let knowledge = Teacher {
        train: infer(Some(&adapter), &train, &["--all-positions"], &dir.join("teacher-train.parquet")),
        held_out: infer(Some(&adapter), &held_out, &[], &dir.join("teacher-held-out.parquet")),
    };
    (knowledge, train, held_out)
}

/// The held-out KL of the student as it comes, after λ = 0 and after λ = 1.
fn controls(model: &str, train: &Path, held_out: &Path, teacher: &Teacher, dir: &Path) -> [f64; 3] {
    let name = Path::new(model).file_name().unwrap().to_str().unwrap();
    let [kd_only, labels_only] = ["0", "1"].map(|lambda| dir.join(format!("{name}-lambda-{lambda}")));
    distill(model, train, &teacher.train, "0", &kd_only);
    distill(model, train, &teacher.train, "1", &labels_only);
    let kl = |adapter: Option<&Path>, label: &str| {
        let out = dir.join(format!("{name}-{label}.parquet"));
        pooled(&measure(model, adapter, held_out, &teacher.held_out, &[], &out), "kl")
    };
    [kl(None, "base"), kl(Some(&kd_only), "kd-only"), kl(Some(&labels_only), "labels-only")]
}

fn assert_kd_transfers([before, kd_only, labels_only]: [f64; 3], what: &str) {
    eprintln!("{what}: held-out KL {before:.3} -> {kd_only:.3} (λ = 0), {labels_only:.3} (λ = 1)");
    assert!(kd_only <= 0.5 * before, "{what}: λ = 0 did not halve the held-out KL: {before} -> {kd_only}");
    assert!(
        before - labels_only < 0.5 * (before - kd_only),
        "{what}: labels alone moved the student as far as KD: {before} -> {labels_only} (λ = 0: {kd_only})"
    );
}

#[test]
fn kd_alone_moves_a_student_towards_its_teacher_on_held_out_samples_with_the_same_tokenizer() {
    let dir = tempdir();
    let (teacher, train, held_out) = teacher(dir.path());
    assert_kd_transfers(controls(LLAMA, &train, &held_out, &teacher, dir.path()), "same tokenizer");
}

#[test]
fn kd_alone_moves_a_student_towards_its_teacher_on_held_out_samples_across_tokenizers() {
    let dir = tempdir();
    let (teacher, llama_train, llama_held_out) = teacher(dir.path());
    let d = dir.path();
    let map = d.join("map.parquet");
    let tokenizer = |m: &str| path(&testdata(m).join("tokenizer.json"));
    assert_success(&run("vocab-map", ["--from", &tokenizer(LLAMA), "--to", &tokenizer(GEMMA), "--out", &path(&map)]));
    let align = |knowledge: &Path, sender: &Path, receiver: &Path, out: &Path| {
        let args =
            ["--knowledge", &path(knowledge), "--sender-tokens", &path(sender), "--receiver-tokens", &path(receiver)];
        let rest =
            ["--map", &path(&map), "--sender-tokenizer", &tokenizer(LLAMA), "--receiver-tokenizer", &tokenizer(GEMMA)];
        assert_success(&run("align", [&args[..], &rest[..], &["--strategy", "offsets", "--out", &path(out)]].concat()));
        out.to_path_buf()
    };
    let train = answered_tokens(GEMMA, &["client-1"], " the", "train", &d.join("train-gemma.parquet"));
    let held_out = answered_tokens(GEMMA, &["eval"], " the", "held-out", &d.join("held-out-gemma.parquet"));
    let aligned = Teacher {
        train: align(&teacher.train, &llama_train, &train, &d.join("aligned-train.parquet")),
        held_out: align(&teacher.held_out, &llama_held_out, &held_out, &d.join("aligned-held-out.parquet")),
    };
    assert_kd_transfers(controls(GEMMA, &train, &held_out, &aligned, d), "across tokenizers");
}

/// Hand-derived: a model measured against its own top-K. Renormalised, its probability of
/// each top-K id is q_k·(1 − tail), so KD = H(q) − ln(1 − tail) and KL = −ln(1 − tail) per
/// position; with the tail as a bucket the teacher is the student exactly, and KL = 0.
#[test]
fn a_model_against_its_own_knowledge_is_as_far_as_its_tail_says() {
    let dir = tempdir();
    let d = dir.path();
    let tokens = testdata("data/tokens/tiny-llama/arc-easy-eval.parquet");
    let own = d.join("own.parquet");
    assert_success(&run(
        "infer-logits",
        ["--model", &path(&testdata(LLAMA)), "--input", &path(&tokens), "--top-k", "8", "--out", &path(&own)],
    ));
    let rows = fedmkt::knowledge::read_knowledge(&own).unwrap().0;
    let tails: Vec<f64> = rows.iter().flat_map(|r| r.tail_mass.iter().map(|&t| t as f64)).collect();
    let expected_kl = tails.iter().map(|t| -(1.0 - t).ln()).sum::<f64>() / tails.len() as f64;
    let renormalised = measure(LLAMA, None, &tokens, &own, &[], &d.join("renormalised.parquet"));
    assert!(
        (pooled(&renormalised, "kl") - expected_kl).abs() < 2e-3,
        "{} vs {expected_kl}",
        pooled(&renormalised, "kl")
    );
    assert_eq!(pooled(&renormalised, "kd_positions") as usize, tails.len());
    let with_tail = measure(LLAMA, None, &tokens, &own, &["--teacher-tail"], &d.join("tail.parquet"));
    assert!(pooled(&with_tail, "kl").abs() < 2e-3, "{}", pooled(&with_tail, "kl"));
    // The task CE is the knowledge set's answer NLL per answer token.
    let nll: f64 = rows.iter().map(|r| r.answer_nll).sum();
    let answer_tokens: u32 = rows.iter().map(|r| r.answer_tokens).sum();
    assert!((pooled(&with_tail, "ce") - nll / answer_tokens as f64).abs() < 1e-4);
}

#[test]
fn a_teacher_for_other_tokens_or_beyond_the_vocabulary_is_refused_before_any_work() {
    let dir = tempdir();
    let d = dir.path();
    let llama_tokens = testdata("data/tokens/tiny-llama/arc-easy-eval.parquet");
    let gemma_tokens = testdata("data/tokens/tiny-gemma3/arc-easy-eval.parquet");
    let own = d.join("own.parquet");
    assert_success(&run(
        "infer-logits",
        ["--model", &path(&testdata(LLAMA)), "--input", &path(&llama_tokens), "--top-k", "2", "--out", &path(&own)],
    ));
    let out = d.join("out.parquet");
    let args = |tokens: &Path, teacher: &Path| {
        [
            "--model",
            &path(&testdata(LLAMA)),
            "--input",
            &path(tokens),
            "--teacher",
            &path(teacher),
            "--out",
            &path(&out),
        ]
        .map(String::from)
    };
    assert_bad_input(&run("measure-kd", args(&gemma_tokens, &own)), &["own.parquet", "other tokens"]);
    // A knowledge row whose id lies beyond the student's 1,024 tokens.
    let mut rows = fedmkt::knowledge::read_knowledge(&own).unwrap();
    rows.0[0].topk_ids[0] = 5000;
    let beyond = d.join("beyond.parquet");
    let batch = knowledge_batch(&rows.0, 2).unwrap();
    io::write_parquet(&beyond, batch.schema(), &[batch], &rows.1.provenance).unwrap();
    assert_bad_input(&run("measure-kd", args(&llama_tokens, &beyond)), &["beyond.parquet", "5000"]);
    assert!(!out.exists(), "nothing written");
}
