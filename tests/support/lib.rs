//! Helpers for the integration tests in `tests/`: run a tool's binary, check the bad-input
//! contract, locate test data.
//!
//! The tools are separate binary crates, so the tests run the binaries that `make test`
//! builds beforehand (`cargo build --release --workspace`) from the same target folder.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod gpt2;

/// The repository root.
pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A path under `testdata/`.
pub fn testdata(rel: &str) -> PathBuf {
    root().join("testdata").join(rel)
}

/// The built binary of a tool, next to the test executable's `deps/` folder.
pub fn bin(tool: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("target/<profile>/deps/<test>");
    let path = profile_dir.join(tool);
    assert!(path.is_file(), "{} not built: run `make test` (it builds the tools first)", path.display());
    path
}

/// Run a tool with arguments; never panics on a failing exit status.
pub fn run<I, S>(tool: &str, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<std::ffi::OsStr>,
{
    Command::new(bin(tool)).args(args).output().expect("spawn tool")
}

/// Assert the tool succeeded, showing its stderr otherwise.
pub fn assert_success(output: &Output) {
    assert!(output.status.success(), "tool failed ({}): {}", output.status, String::from_utf8_lossy(&output.stderr));
}

/// Assert the bad-input contract: exit status 2 and exactly one line on stderr that mentions
/// each of `mentions` (the file and what is wrong).
pub fn assert_bad_input(output: &Output, mentions: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "expected exit 2, got {}; stderr: {stderr}", output.status);
    assert_eq!(stderr.trim_end().lines().count(), 1, "expected one line on stderr, got: {stderr}");
    for m in mentions {
        assert!(stderr.contains(m), "stderr should mention '{m}': {stderr}");
    }
}

/// Every file below `dir` (recursively), for checking that nothing was left behind.
pub fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(files_below(&path));
            } else {
                files.push(path);
            }
        }
    }
    files
}

/// A copy of `src` cut to its first half, as a file interrupted mid-write would be.
pub fn truncated_copy(src: &Path, dir: &Path) -> PathBuf {
    let bytes = std::fs::read(src).expect("read source");
    let dst = dir.join(format!("truncated-{}", src.file_name().unwrap().to_string_lossy()));
    std::fs::write(&dst, &bytes[..bytes.len() / 2]).expect("write truncated copy");
    dst
}

/// Read a JSON file.
pub fn read_json(path: &Path) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
        .expect("valid JSON")
}

/// A fresh temporary folder.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::tempdir().expect("temporary folder")
}

/// Two adapters hold the same tensors within `tolerance` (max absolute difference): a secure
/// average against the plain one.
pub fn assert_adapters_close(ours: &Path, reference: &Path, tolerance: f32) {
    let load = |d: &Path| {
        candle_core::safetensors::load(d.join("adapter_model.safetensors"), &candle_core::Device::Cpu).unwrap()
    };
    let (ours, reference) = (load(ours), load(reference));
    assert_eq!(ours.len(), reference.len());
    for (name, tensor) in &reference {
        let difference = (tensor - &ours[name]).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(difference < tolerance, "{name}: the adapters differ by {difference}");
    }
}

/// The fixture's ARC-Easy contexts of these splits, each answered with `answer`, tokenised for
/// `model` (a folder under testdata/) into `out`: a data set named `name`, so that files of
/// both tokenizers made from the same splits belong together.
pub fn answered_tokens(model: &str, splits: &[&str], answer: &str, name: &str, out: &Path) -> PathBuf {
    let tokenizer_path = testdata(model).join("tokenizer.json");
    let tokenizer = fedmkt::tokens::load_tokenizer(&tokenizer_path).unwrap();
    let samples: Vec<_> = splits
        .iter()
        .flat_map(|s| fedmkt::data::read_tasks(&testdata(&format!("data/tasks/arc-easy/{s}.parquet"))).unwrap().0)
        .map(|r| fedmkt::tokens::tokenize_continuation(&tokenizer, &r.id, &r.context, answer).unwrap())
        .collect();
    let provenance = fedmkt::io::Provenance::new("tokens", 1, "test")
        .input("dataset", format!("sha256:{name}"))
        .input("tokenizer", fedmkt::io::file_hash(&tokenizer_path).unwrap());
    fedmkt::tokens::write_tokens(out, &samples, &provenance).unwrap();
    out.to_path_buf()
}

/// A copy of testdata's model folder `model` under `dir`, to alter without touching testdata.
pub fn model_copy(model: &str, dir: &Path) -> PathBuf {
    let copy = dir.join(model);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(testdata(&format!("models/{model}"))).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    copy
}

/// The samples each step of a training log trained on (its `samples` column), step by step.
pub fn trained_samples(adapter: &Path) -> Vec<Vec<String>> {
    use arrow_array::cast::AsArray;
    let log = fedmkt::io::read_parquet(&adapter.join("training_log.parquet"), "training-log").unwrap();
    let lists = log.column::<arrow_array::ListArray>("samples").unwrap();
    lists
        .iter()
        .flat_map(|list| list.iter().flatten().collect::<Vec<_>>())
        .map(|ids| ids.as_string::<i32>().iter().flatten().map(String::from).collect())
        .collect()
}
