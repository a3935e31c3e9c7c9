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

/// The dense KD cross-entropy −Σ_v q_v·ln p_v of the tiny Llama (`student`) against itself
/// with an adapter (`teacher`), pooled over the answer positions of `tokens`: full softmaxes,
/// no top-K, no sampling.
fn dense_cross_entropy(teacher: &Path, tokens: &Path) -> f64 {
    use fedmkt::model::Model;
    let (samples, _) = fedmkt::tokens::read_tokens(tokens).unwrap();
    let model_dir = testdata("models/tiny-llama");
    let load =
        |adapter| Model::load_for_scoring(&model_dir, adapter, candle_core::DType::F32, &candle_core::Device::Cpu);
    let (teacher, student) = (load(Some(teacher)).unwrap(), load(None).unwrap());
    let requests: Vec<fedmkt::scoring::Request> = samples
        .iter()
        .map(|s| fedmkt::scoring::Request {
            ids: &s.input_ids,
            positions: fedmkt::knowledge::answer_positions(s).collect(),
        })
        .collect();
    let log_softmax = |model: &Model| -> Vec<Vec<Vec<f32>>> {
        let logits = fedmkt::scoring::logits_at(model, &requests).unwrap();
        logits.iter().map(|l| candle_nn::ops::log_softmax(l, 1).unwrap().to_vec2::<f32>().unwrap()).collect()
    };
    let (q, p) = (log_softmax(&teacher), log_softmax(&student));
    let rows: Vec<(&Vec<f32>, &Vec<f32>)> = q.iter().flatten().zip(p.iter().flatten()).collect();
    let total: f64 =
        rows.iter().map(|(q, p)| -q.iter().zip(*p).map(|(lq, lp)| (*lq as f64).exp() * *lp as f64).sum::<f64>()).sum();
    total / rows.len() as f64
}

/// `measure-kd`'s pooled KD of the base tiny Llama against a knowledge set of its tokens.
fn measured_kd(teacher: &Path, dir: &Path) -> f64 {
    let out = dir.join("measure.parquet");
    let (model, input) = (testdata("models/tiny-llama"), tokens("tiny-llama"));
    let args = ["--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()];
    let rest = ["--teacher", teacher.to_str().unwrap(), "--out", out.to_str().unwrap()];
    assert_success(&run("measure-kd", [&args[..], &rest[..]].concat()));
    let kd = fedmkt::io::read_parquet(&out, "kd-measure").unwrap().provenance.extra["kd"].parse().unwrap();
    std::fs::remove_file(&out).unwrap();
    kd
}

/// Sparse Logit Sampling: with K = 4 draws per position, the KD estimate's mean over seeds is
/// the dense cross-entropy within its sampling error; the renormalised top-4's is not. The
/// teacher has learnt to answer " the the the" after every question, so its draws repeat and
/// their counts matter.
#[test]
fn sampled_knowledge_estimates_the_dense_kd_without_bias_and_the_top_k_does_not() {
    let dir = tempdir();
    let (model, input) = (testdata("models/tiny-llama"), tokens("tiny-llama"));
    let splits = ["public", "client-1", "client-2", "client-3", "client-4"];
    let own = answered_tokens("models/tiny-llama", &splits, " the the the", "teacher", &dir.path().join("t.parquet"));
    let teacher = dir.path().join("teacher");
    let path = |p: &Path| p.to_str().unwrap().to_string();
    let (model_arg, own_arg, out_arg) = (path(&model), path(&own), path(&teacher));
    let schedule = ["--epochs", "10", "--lr", "1e-2", "--batch-size", "2"];
    let train = [&["--model", &model_arg, "--data", &own_arg, "--out", &out_arg][..], &schedule[..]].concat();
    assert_success(&run("distill", train));
    let dense = dense_cross_entropy(&teacher, &input);
    let knowledge = |extra: &[&str]| {
        let out = dir.path().join("k.parquet");
        let _ = std::fs::remove_file(&out);
        assert_success(&infer(
            &model,
            &tokens("tiny-llama"),
            &out,
            &[&["--adapter", teacher.to_str().unwrap()], extra].concat(),
        ));
        measured_kd(&out, dir.path())
    };
    let seeds = 40;
    let estimates: Vec<f64> = (0..seeds).map(|s| knowledge(&["--sample", "4", "--seed", &s.to_string()])).collect();
    let mean = estimates.iter().sum::<f64>() / seeds as f64;
    let sd = (estimates.iter().map(|e| (e - mean).powi(2)).sum::<f64>() / (seeds - 1) as f64).sqrt();
    let standard_error = sd / (seeds as f64).sqrt();
    let top_k = knowledge(&["--top-k", "4"]);
    eprintln!("dense {dense:.4}; sampled {mean:.4} ± {standard_error:.4} (sd {sd:.4} per seed); top-4 {top_k:.4}");
    assert!((mean - dense).abs() < 4.0 * standard_error, "sampled {mean} ± {standard_error} vs dense {dense}");
    assert!((top_k - dense).abs() > 10.0 * standard_error, "top-4 {top_k} is as close to dense {dense}");
    // A seed's draws are the same however the samples are batched.
    let [a, b] = ["1", "3"].map(|batch| {
        let out = dir.path().join(format!("b{batch}.parquet"));
        assert_success(&infer(
            &model,
            &tokens("tiny-llama"),
            &out,
            &["--sample", "4", "--seed", "9", "--batch-size", batch],
        ));
        read_knowledge(&out).unwrap().0
    });
    assert_eq!(a.iter().map(|s| &s.topk_ids).collect::<Vec<_>>(), b.iter().map(|s| &s.topk_ids).collect::<Vec<_>>());
}

/// A config.json that lies about its weights is refused, naming a tensor it leaves unread:
/// fewer layers than the weights hold (it ran as a 1-layer model, exit 0), and tied
/// embeddings beside a stored lm_head (which was ignored).
#[test]
fn a_config_that_does_not_match_its_weights_is_refused() {
    let dir = tempdir();
    for (was, lie, unread) in [
        ("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 1", "model.layers.1."),
        ("\"tie_word_embeddings\": false", "\"tie_word_embeddings\": true", "lm_head.weight"),
    ] {
        let model = model_copy("tiny-llama", &dir.path().join(unread.trim_end_matches('.')));
        let config = model.join("config.json");
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains(was));
        std::fs::write(&config, text.replace(was, lie)).unwrap();
        assert_refused(&model, &tokens("tiny-llama"), &[], &["model.safetensors", unread, "does not use"]);
    }
}
