//! `distill`'s losses: the sparse KD loss equals a dense reference on a tiny vocabulary, and
//! its gradient matches finite differences of that reference (f64, written independently).
use candle_core::{Device, Tensor, Var};
use fedmkt::align::PAD_ID;
use fedmkt::train::kd::{sparse_kd, TeacherOptions, TeacherTargets};
use half::f16;

const V: usize = 7;
const K: usize = 3;

/// Three positions; the last has a padding slot (as after merging in `align`).
fn teacher_rows() -> (Vec<u32>, Vec<f16>, Vec<f32>) {
    let ids = vec![2, 5, 0, 6, 1, 3, 4, 0, PAD_ID];
    let logits = [3.0, 1.5, -0.5, 0.2, 0.1, -2.0, 1.0, 0.5, f32::NEG_INFINITY].map(f16::from_f32).to_vec();
    let lse = vec![3.6, 1.9, 2.2];
    (ids, logits, lse)
}

fn student_logits() -> Vec<f64> {
    (0..3 * V).map(|i| ((i * 7 % 11) as f64 - 5.0) * 0.37).collect()
}

/// Dense reference: the teacher's distribution spread over the whole vocabulary (top-K
/// renormalised, or top-K true probabilities plus the tail spread as one bucket), and the
/// student's full softmax at temperature T.
fn dense_loss(student: &[f64], opts: TeacherOptions) -> f64 {
    let (ids, logits, lse) = teacher_rows();
    let mut total = 0.0;
    for row in 0..3 {
        let z: Vec<f64> = student[row * V..(row + 1) * V].iter().map(|x| x / opts.temperature).collect();
        let norm = z.iter().map(|x| x.exp()).sum::<f64>().ln();
        let p: Vec<f64> = z.iter().map(|x| (x - norm).exp()).collect();
        let mut q = [0.0; V];
        let entries: Vec<(usize, f64)> = (0..K)
            .filter(|&i| ids[row * K + i] != PAD_ID)
            .map(|i| (ids[row * K + i] as usize, logits[row * K + i].to_f64() / opts.temperature))
            .collect();
        let top_mass: f64 = if opts.tail { entries.iter().map(|e| (e.1 - lse[row] as f64).exp()).sum() } else { 1.0 };
        let renorm: f64 = entries.iter().map(|e| e.1.exp()).sum();
        for &(id, l) in &entries {
            q[id] += if opts.tail { (l - lse[row] as f64).exp() } else { l.exp() / renorm };
        }
        total -= (0..V).filter(|v| q[*v] > 0.0).map(|v| q[v] * p[v].ln()).sum::<f64>();
        if opts.tail {
            let outside: f64 = (0..V).filter(|v| !entries.iter().any(|e| e.0 == *v)).map(|v| p[v]).sum();
            total -= (1.0 - top_mass) * outside.ln();
        }
    }
    total / 3.0
}

fn sparse(student: &[f64], opts: TeacherOptions) -> (f64, Vec<f64>) {
    let (ids, logits, lse) = teacher_rows();
    // The tail as infer-logits stores it: 1 − Σ of the top-K's true probabilities.
    let tails: Vec<f32> = (0..3)
        .map(|row| 1.0 - (0..K).map(|i| (logits[row * K + i].to_f64() - lse[row] as f64).exp()).sum::<f64>() as f32)
        .collect();
    let targets = TeacherTargets::from_rows(&ids, &logits, &tails, K, opts, &Device::Cpu).unwrap();
    let var = Var::from_tensor(
        &Tensor::from_vec(student.iter().map(|&x| x as f32).collect::<Vec<_>>(), (3, V), &Device::Cpu).unwrap(),
    )
    .unwrap();
    let loss = sparse_kd(var.as_tensor(), &targets, opts.temperature).unwrap().mean_all().unwrap();
    let grads = loss.backward().unwrap();
    let grad = grads.get(var.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (loss.to_scalar::<f32>().unwrap() as f64, grad.into_iter().map(f64::from).collect())
}

const CASES: [TeacherOptions; 3] = [
    TeacherOptions { temperature: 1.0, tail: false },
    TeacherOptions { temperature: 2.0, tail: false },
    TeacherOptions { temperature: 1.0, tail: true },
];

#[test]
fn sparse_kd_equals_the_dense_reference() {
    for opts in CASES {
        let (got, _) = sparse(&student_logits(), opts);
        let want = dense_loss(&student_logits(), opts);
        assert!((got - want).abs() < 1e-5 * want.abs().max(1.0), "{opts:?}: sparse {got} vs dense {want}");
    }
}

#[test]
fn sparse_kd_gradient_matches_finite_differences() {
    for opts in CASES {
        let student = student_logits();
        let (_, grad) = sparse(&student, opts);
        for i in 0..student.len() {
            let eps = 1e-5;
            let (mut up, mut down) = (student.clone(), student.clone());
            up[i] += eps;
            down[i] -= eps;
            let numeric = (dense_loss(&up, opts) - dense_loss(&down, opts)) / (2.0 * eps);
            assert!((grad[i] - numeric).abs() < 1e-4, "{opts:?}: d/dz[{i}] analytic {} vs numeric {numeric}", grad[i]);
        }
    }
}

// ---------------------------------------------------------------- the tool on tiny models

use fedmkt::model::{AdapterSource, Model};
use fedmkt_tests::*;
use std::path::{Path, PathBuf};

fn llama_tokens() -> PathBuf {
    testdata("data/tokens/tiny-llama/arc-easy-eval.parquet")
}

fn distill(data: &Path, teacher: Option<&Path>, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "--model".to_string(),
        testdata("models/tiny-llama").display().to_string(),
        "--data".into(),
        data.display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(t) = teacher {
        args.extend(["--teacher".into(), t.display().to_string()]);
    }
    args.extend(extra.iter().map(|s| s.to_string()));
    run("distill", &args)
}

/// The answer NLL summed over a token file, measured by `infer-logits` (an independent tool).
fn answer_nll(adapter: Option<&Path>, dir: &Path) -> f64 {
    let out = dir.join(format!("k-{}.parquet", adapter.is_some()));
    let mut args = vec![
        "--model".to_string(),
        testdata("models/tiny-llama").display().to_string(),
        "--input".into(),
        llama_tokens().display().to_string(),
        "--out".into(),
        out.display().to_string(),
    ];
    if let Some(a) = adapter {
        args.extend(["--adapter".into(), a.display().to_string()]);
    }
    assert_success(&run("infer-logits", &args));
    fedmkt::knowledge::read_knowledge(&out).unwrap().0.iter().map(|s| s.answer_nll).sum()
}

#[test]
fn private_phase_lowers_the_task_loss() {
    let dir = tempdir();
    let adapter = dir.path().join("adapter");
    assert_success(&distill(&llama_tokens(), None, &adapter, &["--epochs", "4", "--lr", "1e-2"]));
    let (before, after) = (answer_nll(None, dir.path()), answer_nll(Some(&adapter), dir.path()));
    assert!(after < 0.9 * before, "answer NLL {before} -> {after}");
    let log = fedmkt::io::read_parquet(&adapter.join("training_log.parquet"), "training-log").unwrap();
    assert_eq!(log.num_rows(), 8, "6 samples, batch 4: 2 steps per epoch");
    let steps = trained_samples(&adapter);
    let mut ids: Vec<String> =
        fedmkt::tokens::read_tokens(&llama_tokens()).unwrap().0.into_iter().map(|s| s.id).collect();
    ids.sort();
    for epoch in steps.chunks(2) {
        let mut seen: Vec<String> = epoch.concat();
        seen.sort();
        assert_eq!(seen, ids, "each epoch's steps name every sample once");
    }
    assert_ne!(steps[0..2].concat(), steps[2..4].concat(), "each epoch has its own order");
}

#[test]
fn same_seed_gives_identical_adapter_bytes() {
    let dir = tempdir();
    let (a, b, c) = (dir.path().join("a"), dir.path().join("b"), dir.path().join("c"));
    for out in [&a, &b] {
        assert_success(&distill(&llama_tokens(), None, out, &["--seed", "3"]));
    }
    assert_success(&distill(&llama_tokens(), None, &c, &["--seed", "4"]));
    let weights = |d: &Path| std::fs::read(d.join("adapter_model.safetensors")).unwrap();
    assert_eq!(weights(&a), weights(&b));
    assert_ne!(weights(&a), weights(&c));
}

/// Teacher targets for token samples: a peaked distribution on token 7 at every answer
/// position (as `select` would write them). A rule the student can learn, so it carries over
/// to samples the student never trained on.
fn peaked_teacher(samples: &[fedmkt::tokens::TokenizedSample]) -> Vec<fedmkt::knowledge::SampleKnowledge> {
    samples
        .iter()
        .map(|s| {
            let positions: Vec<u32> = fedmkt::knowledge::answer_positions(s).map(|p| p as u32).collect();
            let n = positions.len();
            fedmkt::knowledge::SampleKnowledge {
                id: s.id.clone(),
                answer_nll: 0.0,
                answer_tokens: 0,
                answer_bytes: 1,
                topk_ids: std::iter::repeat_n([7, 9], n).flatten().collect(),
                topk_logits: std::iter::repeat_n([f16::from_f32(4.0), f16::from_f32(0.0)], n).flatten().collect(),
                logsumexp: vec![4.1; n],
                tail_mass: vec![0.0; n],
                positions,
            }
        })
        .collect()
}

/// A `selected` file of teacher targets for the token file `tokens`.
fn teacher_file(dir: &Path, tokens: &Path) -> PathBuf {
    let (samples, _) = fedmkt::tokens::read_tokens(tokens).unwrap();
    let path = dir.join("selected.parquet");
    let provenance = fedmkt::io::Provenance::new("selected", 1, "test")
        .input("tokens", fedmkt::io::file_hash(tokens).unwrap())
        .extra("top_k", 2);
    let batch = fedmkt::knowledge::knowledge_batch(&peaked_teacher(&samples), 2).unwrap();
    fedmkt::io::write_parquet(&path, batch.schema(), &[batch], &provenance).unwrap();
    path
}

/// The first four tiny-llama samples as a token file to train on; the last two held out.
fn split_tokens(dir: &Path) -> (PathBuf, Vec<fedmkt::tokens::TokenizedSample>) {
    let (mut samples, table) = fedmkt::tokens::read_tokens(&llama_tokens()).unwrap();
    let held_out = samples.split_off(4);
    let path = dir.join("train.parquet");
    let provenance = fedmkt::io::Provenance::new("tokens", 1, "test")
        .input("tokenizer", table.input_hash("tokenizer").unwrap().to_string());
    fedmkt::tokens::write_tokens(&path, &samples, &provenance).unwrap();
    (path, held_out)
}

/// The student's KD loss against the teacher rows of `samples`, measured through the library.
fn kd_against(adapter: Option<&Path>, samples: &[fedmkt::tokens::TokenizedSample]) -> f64 {
    let model_dir = testdata("models/tiny-llama");
    let source = match adapter {
        Some(a) => AdapterSource::load(a, &fedmkt::model::base_config_hash(&model_dir).unwrap(), &Device::Cpu).unwrap(),
        None => AdapterSource::None,
    };
    let model = Model::load(&model_dir, source, candle_core::DType::F32, &Device::Cpu).unwrap();
    let mut total = 0.0;
    for (s, row) in samples.iter().zip(peaked_teacher(samples)) {
        let ids = Tensor::new(s.input_ids.as_slice(), &Device::Cpu).unwrap().unsqueeze(0).unwrap();
        let hidden = model.hidden_states(&ids).unwrap().squeeze(0).unwrap();
        let at = hidden.index_select(&Tensor::new(row.positions.as_slice(), &Device::Cpu).unwrap(), 0).unwrap();
        let targets =
            TeacherTargets::from_rows(&row.topk_ids, &row.topk_logits, &row.tail_mass, 2, CASES[0], &Device::Cpu)
                .unwrap();
        let per_position = sparse_kd(&model.logits(&at).unwrap(), &targets, 1.0).unwrap();
        total += per_position.mean_all().unwrap().to_scalar::<f32>().unwrap() as f64;
    }
    total
}

#[test]
fn distilling_lowers_the_student_teacher_cross_entropy_on_held_out_samples() {
    let dir = tempdir();
    let (train, held_out) = split_tokens(dir.path());
    let teacher = teacher_file(dir.path(), &train);
    let adapter = dir.path().join("adapter");
    assert_success(&distill(
        &train,
        Some(&teacher),
        &adapter,
        &["--epochs", "6", "--lr", "1e-2", "--lambda", "0.1", "--batch-size", "2"],
    ));
    let (before, after) = (kd_against(None, &held_out), kd_against(Some(&adapter), &held_out));
    eprintln!("held-out student-teacher CE {before:.4} -> {after:.4}");
    assert!(after < 0.8 * before, "held-out student-teacher CE {before} -> {after}");
}

#[test]
fn an_adapter_for_another_base_model_is_refused() {
    let dir = tempdir();
    let llama_adapter = dir.path().join("llama-adapter");
    assert_success(&distill(&llama_tokens(), None, &llama_adapter, &["--max-steps", "100"]));
    let out = dir.path().join("gemma-adapter");
    let gemma_tokens = testdata("data/tokens/tiny-gemma3/arc-easy-eval.parquet");
    let args = [
        "--model",
        &testdata("models/tiny-gemma3").display().to_string(),
        "--adapter",
        &llama_adapter.display().to_string(),
        "--data",
        &gemma_tokens.display().to_string(),
        "--out",
        &out.display().to_string(),
    ];
    assert_bad_input(&run("distill", args), &["adapter_config.json", "another base model"]);
    assert!(!out.exists());
}

#[test]
fn a_diverging_loss_stops_with_the_last_good_checkpoint_kept() {
    let dir = tempdir();
    let out = dir.path().join("adapter");
    let output = distill(
        &llama_tokens(),
        None,
        &out,
        &["--epochs", "4", "--batch-size", "2", "--lr", "1e30", "--checkpoint-every", "1"],
    );
    assert_bad_input(&output, &["arc-easy-eval.parquet", "loss became", "last good checkpoint"]);
    assert!(!out.exists(), "no adapter from a diverged run");
    let state = read_json(&fedmkt::train::checkpoint::checkpoint_dir(&out).join("state.json"));
    let failed_at: u64 = String::from_utf8_lossy(&output.stderr)
        .split("at step ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        state["steps_done"].as_u64().unwrap() < failed_at,
        "the checkpoint holds parameters before the divergence: {state}"
    );
    // A checkpoint continues only the run that made it: not with another learning rate.
    let sane = ["--epochs", "4", "--batch-size", "2", "--lr", "1e-2"];
    let resumed = distill(&llama_tokens(), None, &out, &[&sane[..], &["--resume"]].concat());
    assert_bad_input(&resumed, &["state.json", "lr '1000000000000000000000000000000'", "'0.01'"]);
    // Run again with a sane learning rate: it completes and removes the old checkpoint.
    assert_success(&distill(&llama_tokens(), None, &out, &sane));
    assert!(!fedmkt::train::checkpoint::checkpoint_dir(&out).exists(), "a finished run leaves no checkpoint");
}

#[test]
fn teacher_targets_for_other_tokens_are_refused() {
    let dir = tempdir();
    let teacher = teacher_file(dir.path(), &llama_tokens());
    let gemma_tokens = testdata("data/tokens/tiny-gemma3/arc-easy-eval.parquet");
    let out = dir.path().join("adapter");
    let mut args = vec![
        "--model".to_string(),
        testdata("models/tiny-gemma3").display().to_string(),
        "--data".into(),
        gemma_tokens.display().to_string(),
    ];
    args.extend(["--teacher".into(), teacher.display().to_string(), "--out".into(), out.display().to_string()]);
    assert_bad_input(&run("distill", &args), &["selected.parquet", "other tokens"]);
    assert!(!out.exists());
}

#[test]
fn schedule_equals_transformers_cosine_with_warmup() {
    // transformers 5.23 get_cosine_schedule_with_warmup(num_warmup_steps=ceil(0.008·300),
    // num_training_steps=300), lr 1, read at steps 0, 1, 2, 3, 4, 150, 299.
    let want = [
        (0, 0.0),
        (1, 0.3333333333),
        (2, 0.6666666667),
        (3, 1.0),
        (4, 0.999972028),
        (150, 0.5079329819),
        (299, 2.7972e-05),
    ];
    for (step, lr) in want {
        let got = fedmkt::train::optimizer::learning_rate(step, 300, 0.008, 1.0);
        assert!((got - lr).abs() < 1e-9, "step {step}: {got} vs {lr}");
    }
}

#[test]
fn gradients_are_summed_over_micro_batches_then_clipped_to_the_global_norm() {
    let a = Var::new(&[1.0f32, 2.0], &Device::Cpu).unwrap();
    let b = Var::new(&[3.0f32], &Device::Cpu).unwrap();
    // Two micro-batches: d/da = (1, 0) and (0.5, 2), d/db = 2 and 0 → sum (1.5, 2), 2; norm √(2.25+4+4) = 3.2016.
    let part = |wa: [f32; 2], wb: f32| {
        let loss = ((a.as_tensor() * Tensor::new(&wa, &Device::Cpu).unwrap()).unwrap().sum_all().unwrap()
            + (b.as_tensor() * wb as f64).unwrap().sum_all().unwrap())
        .unwrap();
        loss.backward().unwrap()
    };
    let vars = [a.clone(), b.clone()];
    let (store, norm) =
        fedmkt::train::optimizer::clipped_gradients(&vars, vec![part([1.0, 0.0], 2.0), part([0.5, 2.0], 0.0)], 1.0)
            .unwrap();
    let want_norm = (2.25f64 + 4.0 + 4.0).sqrt();
    assert!((norm - want_norm).abs() < 1e-5);
    let ga = store.get(a.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    let gb = store.get(b.as_tensor()).unwrap().to_vec1::<f32>().unwrap();
    assert!(
        (ga[0] as f64 - 1.5 / want_norm).abs() < 1e-5
            && (ga[1] as f64 - 2.0 / want_norm).abs() < 1e-5
            && (gb[0] as f64 - 2.0 / want_norm).abs() < 1e-5,
        "{ga:?} {gb:?}"
    );
}

#[test]
fn lora_dropout_is_seeded_and_applied_only_in_training() {
    let dir = tempdir();
    let run_with = |name: &str, rate: &str| {
        let out = dir.path().join(name);
        assert_success(&distill(
            &llama_tokens(),
            None,
            &out,
            &["--lora-dropout", rate, "--epochs", "2", "--lr", "1e-2"],
        ));
        std::fs::read(out.join("adapter_model.safetensors")).unwrap()
    };
    let (none, half, half_again) = (run_with("none", "0"), run_with("half", "0.5"), run_with("half-again", "0.5"));
    assert_ne!(none, half, "dropout changes training");
    assert_eq!(half, half_again, "and repeats exactly under the same seed");
    // Evaluation never drops: infer-logits with the trained adapter is deterministic.
    let adapter = dir.path().join("half");
    assert_eq!(answer_nll(Some(&adapter), dir.path()), answer_nll(Some(&adapter), dir.path()));
}

#[test]
fn an_interrupted_run_resumes_to_the_same_adapter() {
    let dir = tempdir();
    let train = &["--epochs", "3", "--lr", "1e-2", "--batch-size", "2", "--lora-dropout", "0.1"];
    let straight = dir.path().join("straight");
    assert_success(&distill(&llama_tokens(), None, &straight, train));
    let resumed = dir.path().join("resumed");
    let mut first = train.to_vec();
    first.extend(["--max-steps", "4"]);
    assert_success(&distill(&llama_tokens(), None, &resumed, &first));
    assert!(!resumed.exists(), "no adapter until the run completes");
    assert!(fedmkt::train::checkpoint::checkpoint_dir(&resumed).join("state.json").is_file());
    let mut second = train.to_vec();
    second.push("--resume");
    assert_success(&distill(&llama_tokens(), None, &resumed, &second));
    let weights = |d: &Path| std::fs::read(d.join("adapter_model.safetensors")).unwrap();
    assert!(weights(&straight) == weights(&resumed), "resumed adapter differs");
    // The log matches too, but for its timing columns.
    let column = |d: &Path, name: &str| -> Vec<f64> {
        let table = fedmkt::io::read_parquet(&d.join("training_log.parquet"), "training-log").unwrap();
        table.column::<arrow_array::Float64Array>(name).unwrap().iter().flat_map(|a| a.values().to_vec()).collect()
    };
    for name in ["loss", "ce", "kd", "lr", "grad_norm"] {
        assert_eq!(column(&straight, name), column(&resumed, name), "{name}");
    }
}

#[test]
fn several_token_files_of_one_tokenizer_train_together() {
    let dir = tempdir();
    let (train, held_out) = split_tokens(dir.path());
    let rest = dir.path().join("rest.parquet");
    let provenance = fedmkt::io::Provenance::new("tokens", 1, "test").input(
        "tokenizer",
        fedmkt::tokens::read_tokens(&train).unwrap().1.input_hash("tokenizer").unwrap().to_string(),
    );
    fedmkt::tokens::write_tokens(&rest, &held_out, &provenance).unwrap();
    let out = dir.path().join("adapter");
    let path = |p: &Path| p.display().to_string();
    let args = |second: &Path| {
        [
            "--model".to_string(),
            path(&testdata("models/tiny-llama")),
            "--data".into(),
            path(&train),
            "--data".into(),
            path(second),
            "--out".into(),
            path(&out),
        ]
    };
    assert_bad_input(
        &run("distill", args(&testdata("data/tokens/tiny-gemma3/arc-easy-eval.parquet"))),
        &["arc-easy-eval.parquet", "another tokenizer"],
    );
    assert_bad_input(&run("distill", args(&train)), &["appears twice"]);
    assert_success(&run("distill", args(&rest)));
    let log = fedmkt::io::read_parquet(&out.join("training_log.parquet"), "training-log").unwrap();
    assert_eq!(log.schema.metadata.get("fedmkt.samples").map(String::as_str), Some("6"));
}

#[test]
fn impossible_hyper_parameters_are_refused_before_any_work() {
    let dir = tempdir();
    let out = dir.path().join("adapter");
    for (flag, value, says) in [
        ("--lr", "-1", "positive"),
        ("--lr", "nan", "positive"),
        ("--warmup-ratio", "nan", "within 0"),
        ("--warmup-ratio", "2", "within 0"),
        ("--max-grad-norm", "0", "positive"),
        ("--lora-dropout", "2", "within 0"),
        ("--lora-alpha", "0", "positive"),
        ("--lora-r", "0", "at least 1"),
        ("--temperature", "0", "positive"),
        ("--weight-decay", "-0.1", "zero or positive"),
        ("--lambda", "nan", "within 0..=1"),
        ("--epochs", "0", "at least 1"),
    ] {
        let output = distill(&llama_tokens(), None, &out, &[&format!("{flag}={value}")]);
        assert_bad_input(&output, &[flag, says]);
    }
    // A negative value without '=' is the flag's value, reported with the flag and in full.
    for (flag, value, says) in [("--lr", "-1", "--lr -1: must be positive"), ("--lambda", "-0.1", "--lambda -0.1")] {
        assert_bad_input(&distill(&llama_tokens(), None, &out, &[flag, value]), &[says]);
    }
    let typo = distill(&llama_tokens(), None, &out, &["--lora-targets", "q_proj,vproj"]);
    assert_bad_input(&typo, &["--lora-targets", "'vproj'"]);
    assert!(!out.exists());
}

#[test]
fn a_resumed_run_must_match_the_one_that_wrote_the_checkpoint() {
    let dir = tempdir();
    let out = dir.path().join("adapter");
    let run = ["--batch-size", "2", "--lr", "1e-2", "--checkpoint-every", "1", "--resume"];
    assert_success(&distill(&llama_tokens(), None, &out, &[&run[..], &["--epochs", "2", "--max-steps", "2"]].concat()));
    for (change, says) in [
        (&["--epochs", "2", "--seed", "7"][..], "seed"),
        (&["--epochs", "3"], "epochs"),
        (&["--epochs", "2", "--lora-r", "4"], "lora"),
    ] {
        let args = [&run[..], change].concat();
        assert_bad_input(&distill(&llama_tokens(), None, &out, &args), &["state.json", says]);
    }
    assert_success(&distill(&llama_tokens(), None, &out, &[&run[..], &["--epochs", "2"]].concat()));
}

#[test]
fn token_files_of_another_tokenizer_are_refused() {
    let dir = tempdir();
    let out = dir.path().join("adapter");
    let gemma_tokens = testdata("data/tokens/tiny-gemma3/arc-easy-eval.parquet");
    assert_bad_input(&distill(&gemma_tokens, None, &out, &[]), &["arc-easy-eval.parquet", "another tokenizer"]);
}

/// With several --data files, each one's content is part of the checkpoint's settings (the
/// first file changed while the second stays the same is caught too).
#[test]
fn a_resumed_run_must_train_on_the_same_data_files() {
    let dir = tempdir();
    let (first, rest) = split_tokens(dir.path());
    let (_, table) = fedmkt::tokens::read_tokens(&first).unwrap();
    let (samples, _) = fedmkt::tokens::read_tokens(&first).unwrap();
    let second = dir.path().join("rest.parquet");
    fedmkt::tokens::write_tokens(&second, &rest, &table.provenance).unwrap();
    let changed = dir.path().join("changed.parquet");
    fedmkt::tokens::write_tokens(&changed, &samples, &table.provenance.clone().extra("note", "other bytes")).unwrap();
    let out = dir.path().join("adapter");
    let run = |data: &Path, extra: &[&str]| {
        let mut args =
            vec!["--data", second.to_str().unwrap(), "--batch-size", "2", "--checkpoint-every", "1", "--resume"];
        args.extend(extra);
        distill(data, None, &out, &args)
    };
    assert_success(&run(&first, &["--max-steps", "1"]));
    assert_bad_input(&run(&changed, &[]), &["state.json", "was made with data "]);
    assert_success(&run(&first, &[]));
}

/// A token file without samples (tokenize writes one from an empty task) is bad input, not a
/// division by zero.
#[test]
fn a_token_file_without_samples_is_refused() {
    let dir = tempdir();
    let (_, table) = fedmkt::tokens::read_tokens(&llama_tokens()).unwrap();
    let empty = dir.path().join("empty.parquet");
    fedmkt::tokens::write_tokens(&empty, &[], &table.provenance).unwrap();
    let out = dir.path().join("adapter");
    assert_bad_input(&distill(&empty, None, &out, &[]), &["empty.parquet", "no samples"]);
    assert!(!out.exists());
}

/// `--resume` refuses what the run did not start with: a `--teacher` dropped (it trained the
/// rest without KD), and other weights under the same `config.json` (whose hash alone was
/// the model's).
#[test]
fn a_resumed_run_refuses_a_dropped_teacher_or_other_weights() {
    let dir = tempdir();
    let (train, _) = split_tokens(dir.path());
    let teacher = teacher_file(dir.path(), &train);
    let out = dir.path().join("adapter");
    let schedule = ["--batch-size", "2", "--lr", "1e-2", "--checkpoint-every", "1", "--resume", "--epochs", "2"];
    assert_success(&distill(&train, Some(&teacher), &out, &[&schedule[..], &["--max-steps", "1"]].concat()));
    assert_bad_input(&distill(&train, None, &out, &schedule), &["state.json", "teacher", "this run has nothing"]);
    let model = model_copy("tiny-llama", dir.path());
    let weights = model.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x01;
    std::fs::write(&weights, bytes).unwrap();
    let path = |p: &Path| p.display().to_string();
    let files = ["--model", &path(&model), "--data", &path(&train), "--teacher", &path(&teacher), "--out", &path(&out)];
    assert_bad_input(&run("distill", [&files[..], &schedule[..]].concat()), &["state.json", "weights"]);
}

/// Two Hugging Face folders with one `config.json` and other weights (a fine-tune of the same
/// architecture): an adapter trained on one is refused on the other, one line naming its
/// adapter_config.json, where it would have run silently on the wrong base. An adapter
/// written before weights were fingerprinted still loads on its own base.
#[test]
fn an_adapter_is_refused_on_other_weights_under_the_same_config() {
    let dir = tempdir();
    let base = model_copy("tiny-mistral", dir.path());
    let other = model_copy("tiny-mistral", &dir.path().join("fine-tuned"));
    let weights = other.join("model.safetensors");
    let mut bytes = std::fs::read(&weights).unwrap();
    let data_start = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    bytes[data_start] ^= 1;
    std::fs::write(&weights, bytes).unwrap();
    let tokens = testdata("data/tokens/tiny-llama/arc-easy-eval.parquet");
    let adapter = dir.path().join("adapter");
    let trained = run(
        "distill",
        [
            "--model".as_ref(),
            base.as_os_str(),
            "--data".as_ref(),
            tokens.as_os_str(),
            "--lr".as_ref(),
            "1e-2".as_ref(),
            "--out".as_ref(),
            adapter.as_os_str(),
        ],
    );
    assert_success(&trained);
    let infer = |model: &Path, adapter: &Path, out: &str| {
        let out = dir.path().join(out);
        run(
            "infer-logits",
            [
                "--model".as_ref(),
                model.as_os_str(),
                "--adapter".as_ref(),
                adapter.as_os_str(),
                "--input".as_ref(),
                tokens.as_os_str(),
                "--out".as_ref(),
                out.as_os_str(),
            ],
        )
    };
    assert_success(&infer(&base, &adapter, "own.parquet"));
    assert_bad_input(&infer(&other, &adapter, "other.parquet"), &["adapter_config.json", "other weights"]);
    assert!(!dir.path().join("other.parquet").exists());
    assert_success(&infer(&base, &testdata("models/tiny-mistral-ours"), "legacy.parquet"));
}

/// `distill` continuing tiny Llama's PEFT adapter for 6 steps, with the task loss alone and
/// with KD (λ = 0.5) towards an aligned knowledge set, against the same run in PyTorch + PEFT
/// (testdata/reference/golden_distill.py: Eq. 4 and 9–10, AdamW, clipping and the schedule
/// written out in torch, in the batches distill draws, which order.json records).
#[test]
fn adapters_match_pytorch_and_peft_after_six_steps() {
    let dir = tempdir();
    let golden = testdata("golden/distill");
    let order = read_json(&golden.join("order.json"));
    for (case, lambda, teacher) in
        [("task", "1", None), ("kd", "0.5", Some(testdata("golden/select/from-client-2.parquet")))]
    {
        let out = dir.path().join(case);
        let mut args: Vec<PathBuf> = vec![
            "--model".into(),
            testdata("models/tiny-llama"),
            "--adapter".into(),
            testdata("models/tiny-llama-lora"),
            "--data".into(),
            testdata("data/tokens/tiny-llama/arc-easy-eval.parquet"),
        ];
        let flags = ["--lr", "1e-2", "--epochs", "2", "--batch-size", "2", "--seed", "7", "--lambda", lambda, "--out"];
        args.extend(flags.iter().map(PathBuf::from));
        args.push(out.clone());
        if let Some(teacher) = teacher {
            args.extend([PathBuf::from("--teacher"), teacher]);
        }
        assert_success(&run("distill", &args));
        let drawn = trained_samples(&out);
        let recorded: Vec<Vec<String>> = serde_json::from_value(order[case].clone()).unwrap();
        assert_eq!(drawn, recorded, "{case}: distill draws other batches than the golden run trained on");
        let reference = dir.path().join(format!("{case}-reference"));
        std::fs::create_dir_all(&reference).unwrap();
        std::fs::copy(golden.join(format!("{case}.safetensors")), reference.join("adapter_model.safetensors")).unwrap();
        assert_adapters_close(&out, &reference, 2e-5);
    }
}

/// FEDMKT_PROFILE=1: distill ends with where the training steps' time went, each kind of work
/// with its seconds and share (they add up to the whole), nothing without it.
#[test]
fn a_profiled_run_says_where_its_time_went() {
    let dir = tempdir();
    let args = |out: &str| {
        vec![
            "--model".to_string(),
            testdata("models/tiny-llama").display().to_string(),
            "--data".to_string(),
            llama_tokens().display().to_string(),
            "--out".to_string(),
            dir.path().join(out).display().to_string(),
        ]
    };
    let profiled =
        std::process::Command::new(bin("distill")).args(args("a")).env("FEDMKT_PROFILE", "1").output().unwrap();
    assert_success(&profiled);
    let stderr = String::from_utf8_lossy(&profiled.stderr);
    let shares: Vec<f64> = stderr
        .lines()
        .skip_while(|l| !l.contains("where the time of the training steps went"))
        .skip(1)
        .take_while(|l| l.contains(" s ") && l.contains(" %"))
        .map(|l| l.split(" s ").nth(1).unwrap().trim().split(' ').next().unwrap().parse().unwrap())
        .collect();
    assert!(stderr.contains("matmuls (frozen weights and LoRA)") && stderr.contains("optimiser"), "{stderr}");
    assert!((shares.iter().sum::<f64>() - 100.0).abs() < 0.5 && shares.len() >= 4, "{stderr}");
    let quiet =
        std::process::Command::new(bin("distill")).args(args("b")).env_remove("FEDMKT_PROFILE").output().unwrap();
    assert!(!String::from_utf8_lossy(&quiet.stderr).contains("where the time"));
}
