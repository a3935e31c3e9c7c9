//! Seeded fuzzing of the kinds of file the tools read: 100 byte-flipped and truncated copies
//! of each, given to the tool that reads it. Every run must end with exit 0 or 2 (never a
//! panic, never a hang past the timeout), and touch nothing but its own output.
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use fedmkt_tests::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const VARIANTS: usize = 100;
const TIMEOUT: Duration = Duration::from_secs(60);

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Variant `i` of `bytes`: every fourth one truncated at a random length, the others with
/// one to four random bytes flipped.
fn corrupt(bytes: &[u8], i: usize, rng: &mut ChaCha8Rng) -> Vec<u8> {
    let mut out = bytes.to_vec();
    if i % 4 == 3 {
        out.truncate(rng.random_range(0..bytes.len()));
    } else {
        for _ in 0..rng.random_range(1..=4) {
            let at = rng.random_range(0..out.len());
            out[at] ^= rng.random_range(1..=255u8);
        }
    }
    out
}

/// Run `tool` with `args`, killing it after the timeout; its exit code (None: killed or signalled).
fn run_with_timeout(tool: &str, args: &[String]) -> Option<i32> {
    let mut child = Command::new(bin(tool))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status.code();
        }
        if started.elapsed() > TIMEOUT {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("{tool} {args:?} ran past {TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Every file below `dir` and its content hash.
fn snapshot(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<_> =
        files_below(dir).into_iter().map(|p| (p.clone(), fedmkt::io::file_hash(&p).unwrap())).collect();
    files.sort();
    files
}

/// A tool's arguments, given the corrupted copy and an output path.
type Arguments = Box<dyn Fn(&Path, &Path) -> Vec<String> + Sync>;

/// One file kind: the valid file to corrupt, and the tool that reads it.
struct Case {
    name: &'static str,
    tool: &'static str,
    valid: PathBuf,
    /// The valid file's folder travels with it (an adapter's or a model's other files).
    in_folder: bool,
    args: Arguments,
}

fn fuzz(case: &Case, seed: u64) {
    let dir = tempdir();
    let bytes = std::fs::read(&case.valid).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let file_name = case.valid.file_name().unwrap();
    for i in 0..VARIANTS {
        let variant = dir.path().join(format!("v{i}"));
        std::fs::create_dir(&variant).unwrap();
        if case.in_folder {
            for entry in std::fs::read_dir(case.valid.parent().unwrap()).unwrap() {
                let entry = entry.unwrap();
                std::fs::copy(entry.path(), variant.join(entry.file_name())).unwrap();
            }
        }
        let input = variant.join(file_name);
        std::fs::write(&input, corrupt(&bytes, i, &mut rng)).unwrap();
        let out = dir.path().join(format!("out-{i}"));
        let before = snapshot(&variant);
        let code = run_with_timeout(case.tool, &(case.args)(&input, &out));
        assert!(matches!(code, Some(0) | Some(2)), "{}: variant {i} ended with {code:?}", case.name);
        assert_eq!(snapshot(&variant), before, "{}: variant {i} touched its input", case.name);
    }
}

/// `infer-logits` of the tiny Llama with the corrupted file's folder as its adapter.
fn infer_with_adapter_folder(model: &str, tokens: &str) -> Arguments {
    let (model, tokens) = (model.to_string(), tokens.to_string());
    Box::new(move |f, o| {
        with(&["--model", &model, "--adapter", &s(f.parent().unwrap()), "--input", &tokens, "--top-k", "2"], o)
    })
}

/// `infer-logits` with the corrupted file's folder as the model.
fn infer_with_model_folder(tokens: &str) -> Arguments {
    let tokens = tokens.to_string();
    Box::new(move |f, o| with(&["--model", &s(f.parent().unwrap()), "--input", &tokens, "--top-k", "2"], o))
}

/// `args` and `--out o`.
fn with(args: &[&str], o: &Path) -> Vec<String> {
    args.iter().map(|a| a.to_string()).chain(["--out".to_string(), s(o)]).collect()
}

/// Valid files of every kind, made once by the tools from the test data.
fn valid_files(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let llama = testdata("models/tiny-llama");
    let tokens = testdata("data/tokens/tiny-llama/arc-easy-eval.parquet");
    let knowledge = dir.join("knowledge.parquet");
    let args = ["--model", &s(&llama), "--input", &s(&tokens), "--top-k", "4", "--out", &s(&knowledge)];
    assert_success(&run("infer-logits", args));
    let measure = dir.join("measure.parquet");
    let args = ["--model", &s(&llama), "--input", &s(&tokens), "--teacher", &s(&knowledge), "--out", &s(&measure)];
    assert_success(&run("measure-kd", args));
    (tokens, knowledge, measure)
}

/// An evaluation (summary and predictions) and a vocabulary map (table and flat file), each
/// in its own folder, made by the tools.
fn valid_pairs(dir: &Path) -> (PathBuf, PathBuf) {
    let llama = testdata("models/tiny-llama");
    let summary = dir.join("eval/summary.json");
    let task = testdata("data/tasks/arc-easy/eval.parquet");
    assert_success(&run("evaluate", ["--model", &s(&llama), "--data", &s(&task), "--out", &s(&summary)]));
    let map = dir.join("map/map.parquet");
    let tokenizer = |m: &str| s(&testdata(m).join("tokenizer.json"));
    let args = ["--from", &tokenizer("models/tiny-llama"), "--to", &tokenizer("models/tiny-gemma3"), "--out", &s(&map)];
    assert_success(&run("vocab-map", args));
    (summary, map.with_extension("map"))
}

#[test]
fn corrupt_inputs_end_in_exit_0_or_2_and_touch_nothing() {
    let dir = tempdir();
    let (tokens, knowledge, measure) = valid_files(dir.path());
    let (summary, flat_map) = valid_pairs(dir.path());
    let llama = s(&testdata("models/tiny-llama"));
    let gemma = testdata("models/tiny-gemma3");
    let task = testdata("data/tasks/arc-easy/eval.parquet");
    let (t, k, m) = (s(&tokens), s(&knowledge), s(&measure));
    let cases = [
        Case {
            name: "task",
            tool: "tokenize",
            valid: task.clone(),
            in_folder: false,
            args: Box::new(move |f, o| {
                with(&["--tokenizer", &format!("{}/tokenizer.json", s(&gemma)), "--input", &s(f)], o)
            }),
        },
        Case {
            name: "tokens",
            tool: "infer-logits",
            valid: tokens.clone(),
            in_folder: false,
            args: Box::new({
                let llama = llama.clone();
                move |f, o| with(&["--model", &llama, "--input", &s(f), "--top-k", "4"], o)
            }),
        },
        Case {
            name: "knowledge (select)",
            tool: "select",
            valid: knowledge.clone(),
            in_folder: false,
            args: Box::new({
                let k = k.clone();
                move |f, o| with(&["--local", &s(f), "--candidates", &k], o)
            }),
        },
        Case {
            name: "teacher (measure-kd)",
            tool: "measure-kd",
            valid: knowledge.clone(),
            in_folder: false,
            args: Box::new({
                let (llama, t) = (llama.clone(), t.clone());
                move |f, o| with(&["--model", &llama, "--input", &t, "--teacher", &s(f)], o)
            }),
        },
        Case {
            name: "teacher (distill)",
            tool: "distill",
            valid: knowledge.clone(),
            in_folder: false,
            args: Box::new({
                let (llama, t) = (llama.clone(), t.clone());
                move |f, o| with(&["--model", &llama, "--data", &t, "--teacher", &s(f), "--lambda", "0.5"], o)
            }),
        },
        Case {
            name: "kd-measure (report kd)",
            tool: "report",
            valid: measure.clone(),
            in_folder: false,
            args: Box::new({
                let k = k.clone();
                move |f, o| {
                    let public = format!("1,client-1,{k},{},{m}", s(f));
                    let markdown = o.with_extension("md");
                    with(&["kd", "--public", &public, "--markdown", &s(&markdown)], o)
                }
            }),
        },
        Case {
            name: "eval task (evaluate)",
            tool: "evaluate",
            valid: task,
            in_folder: false,
            args: Box::new({
                let llama = llama.clone();
                move |f, o| with(&["--model", &llama, "--data", &s(f)], &o.with_extension("json"))
            }),
        },
        Case {
            name: "adapter weights",
            tool: "infer-logits",
            valid: testdata("models/tiny-llama-lora/adapter_model.safetensors"),
            in_folder: true,
            args: infer_with_adapter_folder(&llama, &t),
        },
        Case {
            name: "adapter config",
            tool: "infer-logits",
            valid: testdata("models/tiny-llama-lora/adapter_config.json"),
            in_folder: true,
            args: infer_with_adapter_folder(&llama, &t),
        },
        Case {
            name: "model config",
            tool: "infer-logits",
            valid: testdata("models/tiny-llama/config.json"),
            in_folder: true,
            args: infer_with_model_folder(&t),
        },
        Case {
            name: "model weights",
            tool: "infer-logits",
            valid: testdata("models/tiny-llama/model.safetensors"),
            in_folder: true,
            args: infer_with_model_folder(&t),
        },
        Case {
            name: "tokenizer.json",
            tool: "tokenize",
            valid: testdata("models/tiny-llama/tokenizer.json"),
            in_folder: false,
            args: Box::new(move |f, o| {
                with(&["--tokenizer", &s(f), "--input", &s(&testdata("data/tasks/arc-easy/eval.parquet"))], o)
            }),
        },
        Case {
            name: "eval summary",
            tool: "report",
            valid: summary,
            in_folder: true,
            args: Box::new(move |f, o| {
                let entry = format!("Zero-Shot,-,server={}", s(f));
                let (paired, markdown) = (o.with_extension("paired"), o.with_extension("md"));
                with(&["results", "--result", &entry, "--paired", &s(&paired), "--markdown", &s(&markdown)], o)
            }),
        },
        Case {
            name: "vocab map (flat)",
            tool: "align",
            valid: flat_map,
            in_folder: true,
            args: Box::new({
                let (k, t) = (k.clone(), t.clone());
                move |f, o| {
                    let (llama, gemma) = (testdata("models/tiny-llama"), testdata("models/tiny-gemma3"));
                    let gemma_tokens = s(&testdata("data/tokens/tiny-gemma3/arc-easy-eval.parquet"));
                    let table = s(&f.with_extension("parquet"));
                    let (sender, receiver) = (s(&llama.join("tokenizer.json")), s(&gemma.join("tokenizer.json")));
                    let args =
                        ["--knowledge", &k, "--sender-tokens", &t, "--receiver-tokens", &gemma_tokens, "--map", &table];
                    with(&[&args[..], &["--sender-tokenizer", &sender, "--receiver-tokenizer", &receiver]].concat(), o)
                }
            }),
        },
        Case {
            name: "gguf",
            tool: "import-gguf",
            valid: testdata("models/tiny-llama.gguf"),
            in_folder: false,
            args: Box::new(move |f, o| with(&[&s(f)], o)),
        },
    ];
    std::thread::scope(|scope| {
        for (n, case) in cases.iter().enumerate() {
            scope.spawn(move || fuzz(case, 0xF022 + n as u64));
        }
    });
}
