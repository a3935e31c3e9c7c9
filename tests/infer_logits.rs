//! `infer-logits` against knowledge sets computed from transformers' (+ PEFT's) logits
//! (testdata/reference/golden_infer_logits.py), run with batching and padding; bad input.
use std::path::{Path, PathBuf};

use fedmkt::knowledge::read_knowledge;
use fedmkt_tests::*;

fn infer(model: &Path, input: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args =
        vec!["--model", model.to_str().unwrap(), "--input", input.to_str().unwrap(), "--out", out.to_str().unwrap()];
    args.extend_from_slice(extra);
    run("infer-logits", args)
}

fn tokens(model: &str) -> PathBuf {
    testdata(&format!("data/tokens/{model}/arc-easy-eval.parquet"))
}

fn check_case(case: &str, model: &str, extra: &[&str]) {
    let dir = tempdir();
    let out = dir.path().join("k.parquet");
    let mut args = vec!["--batch-size", "4"];
    args.extend_from_slice(extra);
    assert_success(&infer(&testdata(&format!("models/{model}")), &tokens(model), &out, &args));
    let golden = read_json(&testdata(&format!("golden/infer-logits/{case}.json")));
    let (ours, _) = read_knowledge(&out).unwrap();
    let expected = golden["samples"].as_array().unwrap();
    assert_eq!(ours.len(), expected.len());
    let k = golden["top_k"].as_u64().unwrap() as usize;
    for (s, e) in ours.iter().zip(expected) {
        let ctx = format!("{case} {}", s.id);
        assert_eq!(s.id, e["id"].as_str().unwrap());
        assert_eq!(s.answer_tokens as u64, e["answer_tokens"].as_u64().unwrap(), "{ctx}");
        assert_eq!(s.answer_bytes as u64, e["answer_bytes"].as_u64().unwrap(), "{ctx}");
        let want_nll = e["answer_nll"].as_f64().unwrap();
        assert!(
            (s.answer_nll - want_nll).abs() < 1e-4 * want_nll.abs().max(1.0),
            "{ctx}: nll {} vs {want_nll}",
            s.answer_nll
        );
        let positions: Vec<u32> =
            e["positions"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
        assert_eq!(s.positions, positions, "{ctx}");
        for (i, ((want_ids, want_logits), want_lse)) in e["topk_ids"]
            .as_array()
            .unwrap()
            .iter()
            .zip(e["topk_logits"].as_array().unwrap())
            .zip(e["logsumexp"].as_array().unwrap())
            .enumerate()
        {
            let ids: Vec<u32> = want_ids.as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect();
            assert_eq!(&s.topk_ids[i * k..(i + 1) * k], &ids[..], "{ctx} position {i}");
            for (j, want) in want_logits.as_array().unwrap().iter().enumerate() {
                let (got, want) = (s.topk_logits[i * k + j].to_f32(), want.as_f64().unwrap() as f32);
                assert!(
                    (got - want).abs() <= 1e-3 * want.abs().max(1.0) + 1e-4,
                    "{ctx} position {i}: logit {got} vs {want} (f16)"
                );
            }
            assert!((s.logsumexp[i] - want_lse.as_f64().unwrap() as f32).abs() < 1e-4, "{ctx} position {i}: logsumexp");
        }
    }
}

#[test]
fn knowledge_matches_transformers() {
    check_case("tiny-llama", "tiny-llama", &["--top-k", "4"]);
    check_case("tiny-gemma3", "tiny-gemma3", &["--top-k", "3"]);
}

#[test]
fn knowledge_with_adapter_at_all_positions_matches_peft() {
    let adapter = testdata("models/tiny-llama-lora");
    check_case(
        "tiny-llama-lora-all",
        "tiny-llama",
        &["--top-k", "5", "--all-positions", "--adapter", adapter.to_str().unwrap()],
    );
}

#[test]
fn knowledge_names_what_it_was_made_from() {
    let dir = tempdir();
    let out = dir.path().join("k.parquet");
    let model = testdata("models/tiny-llama");
    let adapter = testdata("models/tiny-llama-lora");
    assert_success(&infer(&model, &tokens("tiny-llama"), &out, &["--adapter", adapter.to_str().unwrap()]));
    let (_, table) = read_knowledge(&out).unwrap();
    let tok = fedmkt::io::read_parquet(&tokens("tiny-llama"), "tokens").unwrap();
    assert_eq!(table.input_hash("dataset").unwrap(), tok.input_hash("dataset").unwrap());
    assert_eq!(table.input_hash("tokens").unwrap(), fedmkt::io::file_hash(&tokens("tiny-llama")).unwrap());
    assert_eq!(table.input_hash("model").unwrap(), fedmkt::model::base_config_hash(&model).unwrap());
    assert_eq!(
        table.input_hash("adapter").unwrap(),
        fedmkt::io::file_hash(&adapter.join("adapter_model.safetensors")).unwrap()
    );
    assert_eq!(table.provenance.extra["top_k"], "16");
    assert_eq!(table.provenance.extra["positions"], "answer");
    let again = dir.path().join("again.parquet");
    assert_success(&infer(&model, &tokens("tiny-llama"), &again, &["--adapter", adapter.to_str().unwrap()]));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&again).unwrap(),
        "same inputs and flags give identical bytes"
    );
}

/// A copy of a model folder, for breaking one part of it.
fn model_copy(model: &str, dir: &Path) -> PathBuf {
    let copy = dir.join(model);
    std::fs::create_dir_all(&copy).unwrap();
    for entry in std::fs::read_dir(testdata(&format!("models/{model}"))).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, copy.join(path.file_name().unwrap())).unwrap();
    }
    copy
}

fn assert_refused(model: &Path, input: &Path, extra: &[&str], mentions: &[&str]) {
    let dir = tempdir();
    let out = dir.path().join("k.parquet");
    assert_bad_input(&infer(model, input, &out, extra), mentions);
    assert!(files_below(dir.path()).is_empty(), "no output may be left behind");
}

#[test]
fn tokens_of_another_tokenizer_are_refused() {
    assert_refused(
        &testdata("models/tiny-llama"),
        &tokens("tiny-gemma3"),
        &[],
        &["arc-easy-eval.parquet", "made with another tokenizer"],
    );
    // Without a tokenizer.json to compare, the ids themselves give it away.
    let scratch = tempdir();
    let model = model_copy("tiny-llama", scratch.path());
    std::fs::remove_file(model.join("tokenizer.json")).unwrap();
    assert_refused(
        &model,
        &tokens("tiny-gemma3"),
        &[],
        &["arc-easy-eval.parquet", "beyond the model's vocabulary of 1024"],
    );
}

#[test]
fn adapters_of_another_model_are_refused() {
    let scratch = tempdir();
    // Ours records its base model's config: trained on Gemma, refused on llama.
    let gemma = fedmkt::model::Model::load(
        &testdata("models/tiny-gemma3"),
        fedmkt::model::AdapterSource::load(
            &testdata("models/tiny-gemma3-lora"),
            &fedmkt::model::base_config_hash(&testdata("models/tiny-gemma3")).unwrap(),
            &candle_core::Device::Cpu,
        )
        .unwrap(),
        candle_core::DType::F32,
        &candle_core::Device::Cpu,
    )
    .unwrap();
    let ours = scratch.path().join("gemma-adapter");
    fedmkt::model::lora::save_adapter(&ours, &gemma.lora.unwrap().adapter(), "tiny-gemma3").unwrap();
    let llama = testdata("models/tiny-llama");
    assert_refused(
        &llama,
        &tokens("tiny-llama"),
        &["--adapter", ours.to_str().unwrap()],
        &["adapter_config.json", "another base model"],
    );
    // A GPT-2 adapter: its modules exist nowhere in a llama.
    let gpt2 = scratch.path().join("gpt2-adapter");
    std::fs::create_dir_all(&gpt2).unwrap();
    std::fs::write(
        gpt2.join("adapter_config.json"),
        r#"{"peft_type": "LORA", "r": 2, "lora_alpha": 4, "target_modules": ["c_attn"]}"#,
    )
    .unwrap();
    let a = candle_core::Tensor::zeros((2, 64), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap();
    candle_core::safetensors::save(
        &std::collections::HashMap::from([(
            "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight".to_string(),
            a,
        )]),
        gpt2.join("adapter_model.safetensors"),
    )
    .unwrap();
    assert_refused(
        &llama,
        &tokens("tiny-llama"),
        &["--adapter", gpt2.to_str().unwrap()],
        &["adapter_model.safetensors", "matches no layer"],
    );
}

#[test]
fn unsupported_architectures_and_broken_weights_are_refused() {
    let scratch = tempdir();
    let model = model_copy("tiny-llama", scratch.path());
    let config = std::fs::read_to_string(model.join("config.json")).unwrap().replace("\"llama\"", "\"gpt_neox\"");
    std::fs::write(model.join("config.json"), config).unwrap();
    assert_refused(&model, &tokens("tiny-llama"), &[], &["config.json", "architecture 'gpt_neox' is not supported"]);

    let model = model_copy("tiny-gemma3", &scratch.path().join("nan"));
    let mut weights =
        candle_core::safetensors::load(model.join("model.safetensors"), &candle_core::Device::Cpu).unwrap();
    let norm = weights["model.norm.weight"].clone();
    weights.insert("model.norm.weight".into(), (norm * f64::NAN).unwrap());
    candle_core::safetensors::save(&weights, model.join("model.safetensors")).unwrap();
    assert_refused(&model, &tokens("tiny-gemma3"), &[], &["tiny-gemma3", "non-finite logits"]);
}
