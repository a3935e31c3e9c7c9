//! `import-gguf` on the tiny GGUF models: tensors against gguf-py's dequantisation
//! (testdata/reference/golden_import_gguf.py), config.json against hand-written files,
//! tokenizers against the tokenizers the GGUF files were made from, GPT-2, Bloom, Qwen2 and
//! Qwen3 files written by llama.cpp's converter against the folders they came from, and bad
//! input.
use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};
use fedmkt_tests::*;
use tokenizers::Tokenizer;

fn import(model: &str, out: &Path, extra: &[&str]) -> std::process::Output {
    let gguf = testdata(&format!("models/{model}.gguf"));
    let mut args = vec![gguf.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run("import-gguf", args)
}

fn load_tensors(path: &Path) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(path, &Device::Cpu).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every fixture text (context + target) of the tokenize fixtures.
fn fixture_texts() -> Vec<String> {
    let mut texts = Vec::new();
    for task in ["arc-easy", "boolq"] {
        let (records, _) = fedmkt::data::read_tasks(&testdata(&format!("data/tasks/{task}/eval.parquet"))).unwrap();
        texts.extend(records.iter().flat_map(|r| [r.context.clone(), format!("{}{}", r.context, r.target())]));
    }
    texts
}

fn assert_same_ids(ours: &Tokenizer, reference: &Tokenizer) {
    for text in fixture_texts() {
        let (a, b) = (ours.encode(text.as_str(), true).unwrap(), reference.encode(text.as_str(), true).unwrap());
        assert_eq!(a.get_ids(), b.get_ids(), "ids differ on {text:?}");
        assert_eq!(a.get_offsets(), b.get_offsets(), "offsets differ on {text:?}");
    }
}

type Tensors = HashMap<String, Tensor>;

/// Import `model` into a scratch folder and load its tensors beside those of the folder
/// `reference`, checking that both hold the same tensor names.
fn imported_beside(model: &str, reference: &Path) -> (tempfile::TempDir, Tensors, Tensors) {
    let dir = tempdir();
    assert_success(&import(model, dir.path(), &[]));
    let ours = load_tensors(&dir.path().join("model.safetensors"));
    let theirs = load_tensors(&reference.join("model.safetensors"));
    let sorted = |t: &Tensors| {
        let mut names: Vec<String> = t.keys().cloned().collect();
        names.sort();
        names
    };
    assert_eq!(sorted(&ours), sorted(&theirs), "{model}: tensor names");
    (dir, ours, theirs)
}

#[test]
fn tensors_match_gguf_py_dequantisation() {
    for model in ["tiny-llama", "tiny-gemma3"] {
        let (_dir, ours, golden) = imported_beside(model, &testdata(&format!("golden/import-gguf/{model}")));
        for (name, want) in &golden {
            let got = &ours[name];
            assert_eq!(got.dims(), want.dims(), "{model} {name}: shape");
            assert_eq!(got.dtype(), DType::F32);
            let diff =
                (got - want).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
            assert!(diff <= 1e-6, "{model} {name}: max abs difference {diff}");
        }
    }
}

#[test]
fn config_matches_hand_written_expectation() {
    for model in ["tiny-llama", "tiny-gemma3"] {
        let dir = tempdir();
        assert_success(&import(model, dir.path(), &[]));
        let mut got = read_json(&dir.path().join("config.json"));
        let source = got.as_object_mut().unwrap().remove("fedmkt_source").expect("fedmkt_source recorded");
        assert_eq!(source, fedmkt::io::file_hash(&testdata(&format!("models/{model}.gguf"))).unwrap());
        assert_eq!(got, read_json(&testdata(&format!("golden/import-gguf/{model}/config.json"))), "{model}");
    }
}

#[test]
fn byte_level_tokenizer_matches_the_original() {
    let dir = tempdir();
    assert_success(&import("tiny-llama", dir.path(), &[]));
    let ours = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let original = Tokenizer::from_file(testdata("tokenizers/bytelevel/tokenizer.json")).unwrap();
    assert_eq!(ours.get_vocab(true), original.get_vocab(true));
    assert_same_ids(&ours, &original);
}

#[test]
fn sentencepiece_tokenizer_has_the_reference_merges_and_encodes_like_the_original() {
    let dir = tempdir();
    assert_success(&import("tiny-gemma3", dir.path(), &[]));
    let json = read_json(&dir.path().join("tokenizer.json"));
    assert_eq!(json["model"]["merges"], read_json(&testdata("golden/import-gguf/tiny-gemma3/merges.json")));
    assert_eq!(json["model"]["vocab"]["\u{2581}\u{2581}"], 1200, "user-defined piece gets its ▁ back");
    let ours = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
    let original = Tokenizer::from_file(testdata("tokenizers/spm/tokenizer.json")).unwrap();
    assert_same_ids(&ours, &original);
    assert_eq!(ours.encode("In the beginning", true).unwrap().get_ids()[0], 2, "<bos> is added");
}

/// `a` equals `b`, or `b` rounded to f16 (llama.cpp's `--outtype f16` keeps 1-D tensors in f32).
fn assert_equal_or_f16_rounded(a: &Tensor, b: &Tensor, what: &str) {
    let values = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let rounded = b.to_dtype(DType::F16).unwrap().to_dtype(DType::F32).unwrap();
    assert_eq!(a.dims(), b.dims(), "{what}: shape");
    assert!(values(a) == values(b) || values(a) == values(&rounded), "{what}: values");
}

/// llama.cpp's own converter wrote these files from the transformers-written folders
/// (testdata/reference/tiny_ggufs.py): importing them must give those folders back.
#[test]
fn llama_cpp_conversions_of_gpt2_bloom_and_qwen_import_to_their_originals() {
    for model in ["tiny-gpt2", "tiny-bloom", "tiny-qwen2", "tiny-qwen3"] {
        let (dir, ours, original) = imported_beside(model, &testdata(&format!("models/{model}")));
        for (name, want) in &original {
            assert_equal_or_f16_rounded(&ours[name], want, &format!("{model} {name}"));
        }
        let config = |dir: &Path| fedmkt::model::ModelConfig::from_file(&dir.join("config.json")).unwrap();
        assert_eq!(config(dir.path()), config(&testdata(&format!("models/{model}"))), "{model}: config");
        let ours = Tokenizer::from_file(dir.path().join("tokenizer.json")).unwrap();
        let original = Tokenizer::from_file(testdata(&format!("models/{model}/tokenizer.json"))).unwrap();
        assert_same_ids(&ours, &original);
    }
}

#[test]
fn dtype_flag_converts_weights() {
    let dir = tempdir();
    assert_success(&import("tiny-gemma3", dir.path(), &["--dtype", "bf16"]));
    let tensors = load_tensors(&dir.path().join("model.safetensors"));
    assert!(tensors.values().all(|t| t.dtype() == DType::BF16));
    assert_eq!(read_json(&dir.path().join("config.json"))["torch_dtype"], "bfloat16");
}

#[test]
fn reimport_gives_identical_bytes() {
    let (a, b) = (tempdir(), tempdir());
    assert_success(&import("tiny-llama", a.path(), &[]));
    assert_success(&import("tiny-llama", b.path(), &[]));
    for file in ["config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json"] {
        assert!(
            std::fs::read(a.path().join(file)).unwrap() == std::fs::read(b.path().join(file)).unwrap(),
            "{file} differs"
        );
    }
}

fn assert_bad_gguf(gguf: &Path, mentions: &[&str], extra: &[&str]) {
    let dir = tempdir();
    let out = dir.path().join("model");
    let mut args = vec![gguf.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    assert_bad_input(&run("import-gguf", args), mentions);
    assert!(!out.exists(), "no output folder may be left behind");
    assert!(files_below(dir.path()).is_empty(), "no temporary files may be left behind");
}

#[test]
fn bad_inputs_are_refused_with_one_line() {
    let scratch = tempdir();
    let missing = scratch.path().join("missing.gguf");
    assert_bad_gguf(&missing, &["missing.gguf", "cannot open"], &[]);
    let text = testdata("data/LICENSES.md");
    assert_bad_gguf(&text, &["LICENSES.md", "not a readable GGUF file"], &[]);
    let truncated = truncated_copy(&testdata("models/tiny-llama.gguf"), scratch.path());
    assert_bad_gguf(&truncated, &["truncated-tiny-llama.gguf", "truncated: tensor"], &[]);
    assert_bad_gguf(
        &testdata("models/bad-arch.gguf"),
        &["bad-arch.gguf", "architecture 'falcon' is not supported"],
        &[],
    );
    assert_bad_gguf(&testdata("models/tiny-llama.gguf"), &["--dtype"], &["--dtype", "q4"]);
}
