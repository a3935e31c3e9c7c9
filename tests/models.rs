//! The model runtime against Hugging Face transformers (+ PEFT) on the tiny models
//! (testdata/reference/golden_models.py), and the gradients LoRA training relies on.
use candle_core::{DType, Device, Tensor};
use fedmkt::model::{AdapterSource, LoraSpec, Model, Prefixes};
use fedmkt_tests::testdata;
use rand::SeedableRng;
use std::collections::HashMap;

/// From GGUF (tiny-llama, tiny-gemma3) or written by transformers (testdata/reference/tiny_families.py).
const MODELS: [&str; 9] = [
    "tiny-llama",
    "tiny-gemma3",
    "tiny-mistral",
    "tiny-qwen2",
    "tiny-qwen3",
    "tiny-gpt2",
    "tiny-opt",
    "tiny-opt-350m",
    "tiny-bloom",
];

/// What the tests need to know of a family's module names.
struct Family {
    /// Every linear layer of a decoder layer (fresh adapters go on all of them).
    linears: &'static [&'static str],
    /// Modules per layer the PEFT adapter of golden_models.py adapts (GPT-2's `c_proj` is two).
    peft_adapted_per_layer: usize,
    /// Two adapter matrices checked by finite differences: attention in the first layer, the
    /// MLP's output in the last.
    checked: [&'static str; 2],
}

fn family(model: &str) -> Family {
    match model {
        "tiny-gpt2" => Family {
            linears: &["c_attn", "c_proj", "c_fc"],
            peft_adapted_per_layer: 4,
            checked: ["transformer.h.0.attn.c_attn.lora_A", "transformer.h.1.mlp.c_proj.lora_B"],
        },
        "tiny-opt" | "tiny-opt-350m" => Family {
            linears: &["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"],
            peft_adapted_per_layer: 4,
            checked: ["model.decoder.layers.0.self_attn.q_proj.lora_A", "model.decoder.layers.1.fc2.lora_B"],
        },
        "tiny-bloom" => Family {
            linears: &["query_key_value", "dense", "dense_h_to_4h", "dense_4h_to_h"],
            peft_adapted_per_layer: 3,
            checked: [
                "transformer.h.0.self_attention.query_key_value.lora_A",
                "transformer.h.1.mlp.dense_4h_to_h.lora_B",
            ],
        },
        _ => Family {
            linears: &["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
            peft_adapted_per_layer: 3,
            checked: ["model.layers.0.self_attn.q_proj.lora_A", "model.layers.1.mlp.down_proj.lora_B"],
        },
    }
}

fn golden(model: &str) -> HashMap<String, Tensor> {
    candle_core::safetensors::load(testdata(&format!("golden/models/{model}.safetensors")), &Device::Cpu).unwrap()
}

fn load(model: &str, adapter: AdapterSource) -> Model {
    Model::load(&testdata(&format!("models/{model}")), adapter, DType::F32, &Device::Cpu).unwrap()
}

/// The adapter in testdata/models/<model>-<which>: `lora` saved by PEFT, `ours` by our `distill`.
fn adapter(model: &str, which: &str) -> AdapterSource {
    let base = fedmkt::model::base_config_hash(&testdata(&format!("models/{model}"))).unwrap();
    AdapterSource::load(&testdata(&format!("models/{model}-{which}")), &base, &Device::Cpu).unwrap()
}

fn peft_adapter(model: &str) -> AdapterSource {
    adapter(model, "lora")
}

/// Largest |ours − reference| over the real (unpadded) positions, relative to max |reference|.
fn relative_error(ours: &Tensor, reference: &Tensor, lengths: &[i64]) -> f32 {
    let (mut worst, mut scale) = (0f32, 0f32);
    for (i, &n) in lengths.iter().enumerate() {
        let a = ours.get(i).unwrap().narrow(0, 0, n as usize).unwrap();
        let b = reference.get(i).unwrap().narrow(0, 0, n as usize).unwrap();
        let diff = (a - &b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        let size = b.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
        worst = worst.max(diff);
        scale = scale.max(size);
    }
    worst / scale
}

/// Both the inference path (fused rotary kernel) and the training path must match.
fn check_against(model: &mut Model, reference_key: &str, name: &str) {
    check_against_logits(model, &golden(name)[reference_key], &format!("{name} {reference_key}"), name);
}

/// [`check_against`] on reference logits of the golden batch of `name`.
fn check_against_logits(model: &mut Model, reference: &Tensor, label: &str, name: &str) {
    let g = golden(name);
    let ids = g["ids"].to_dtype(DType::U32).unwrap();
    let lengths = g["lengths"].to_vec1::<i64>().unwrap();
    for training in [false, true] {
        model.training = training;
        let err = relative_error(&model.forward(&ids).unwrap(), reference, &lengths);
        eprintln!("{label} (training: {training}): relative error {err:e}");
        assert!(err < 1e-4, "{label} (training: {training}): relative error {err:e}");
    }
}

#[test]
fn logits_match_transformers() {
    for name in MODELS {
        check_against(&mut load(name, AdapterSource::None), "logits", name);
    }
}

#[test]
fn logits_with_a_peft_adapter_match_peft() {
    for name in MODELS {
        let mut model = load(name, peft_adapter(name));
        let adapted = 2 * 2 * family(name).peft_adapted_per_layer;
        assert_eq!(model.lora.as_ref().unwrap().vars.len(), adapted, "{name}: A and B of each module in 2 layers");
        check_against(&mut model, "logits_lora", name);
    }
}

/// `--dtype bf16` when scoring on a CPU with AVX-512 BF16: bf16 products, everything else f32,
/// within bf16's rounding of transformers' f32 logits with the PEFT adapter (whose product
/// stays f32), and not the f32 path's own logits.
#[test]
fn bf16_products_score_within_bf16_rounding_of_transformers() {
    if !std::arch::is_x86_feature_detected!("avx512bf16") {
        eprintln!("skipped: no AVX-512 BF16 on this CPU");
        return;
    }
    for name in MODELS {
        let dir = testdata(&format!("models/{name}"));
        let adapter = testdata(&format!("models/{name}-lora"));
        let model = Model::load_for_scoring(&dir, Some(&adapter), DType::BF16, &Device::Cpu).unwrap();
        let g = golden(name);
        let lengths = g["lengths"].to_vec1::<i64>().unwrap();
        let logits = model.forward(&g["ids"].to_dtype(DType::U32).unwrap()).unwrap();
        assert_eq!(logits.dtype(), DType::F32, "{name}: activations stay f32");
        let err = relative_error(&logits, &g["logits_lora"], &lengths);
        eprintln!("{name}: bf16 products, relative error {err:e}");
        assert!((1e-4..2e-2).contains(&err), "{name}: relative error {err:e} with bf16 products");
    }
}

/// Adapters our `distill` wrote, loaded by PEFT (golden_models.py --ours): PEFT's logits are ours.
#[test]
fn adapters_we_write_give_peft_our_logits() {
    for name in MODELS {
        let reference =
            candle_core::safetensors::load(testdata(&format!("golden/models/{name}-ours.safetensors")), &Device::Cpu)
                .unwrap();
        let mut model = load(name, adapter(name, "ours"));
        check_against_logits(&mut model, &reference["logits"], &format!("{name} + our adapter in PEFT"), name);
    }
}

/// Mean next-token cross-entropy of the golden batch's first sequence.
fn loss(model: &Model, ids: &Tensor) -> Tensor {
    let logits = model.forward(ids).unwrap().get(0).unwrap();
    let n = logits.dim(0).unwrap();
    let log_probs = candle_nn::ops::log_softmax(&logits.narrow(0, 0, n - 1).unwrap(), 1).unwrap();
    let targets = ids.get(0).unwrap().narrow(0, 1, n - 1).unwrap().unsqueeze(1).unwrap();
    log_probs.gather(&targets, 1).unwrap().mean_all().unwrap().neg().unwrap()
}

/// A model for gradient checks: differentiable ops everywhere.
fn trainable(name: &str) -> Model {
    let mut model = load(name, fresh_adapter(name));
    model.training = true;
    model
}

/// Fresh adapters on every linear layer of `name`'s family.
fn fresh_adapter(name: &str) -> AdapterSource {
    let targets = family(name).linears.iter().map(|t| t.to_string()).collect();
    AdapterSource::New {
        spec: LoraSpec { r: 2, alpha: 4.0, dropout: 0.0, targets },
        rng: Box::new(rand_chacha::ChaCha8Rng::seed_from_u64(1)),
    }
}

/// Fresh adapters start with B = 0, where A's gradient is exactly zero; nudge B so every
/// adapter matrix has a gradient to check.
fn nudge_b(model: &Model) {
    for (key, var) in &model.lora.as_ref().unwrap().vars {
        if key.ends_with("lora_B.weight") {
            let shape = var.as_tensor().shape().clone();
            var.set(&Tensor::full(0.05f32, shape, &Device::Cpu).unwrap()).unwrap();
        }
    }
}

#[test]
fn every_lora_tensor_receives_a_gradient() {
    for name in MODELS {
        let model = trainable(name);
        nudge_b(&model);
        let ids = golden(name)["ids"].to_dtype(DType::U32).unwrap().narrow(1, 0, 24).unwrap();
        let grads = loss(&model, &ids).backward().unwrap();
        for (key, var) in &model.lora.as_ref().unwrap().vars {
            let g = grads.get(var).unwrap_or_else(|| panic!("{name} {key}: no gradient"));
            let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
            assert!(norm > 0.0, "{name} {key}: zero gradient");
        }
    }
}

#[test]
fn lora_gradients_match_finite_differences() {
    for name in MODELS {
        let model = trainable(name);
        nudge_b(&model);
        let ids = golden(name)["ids"].to_dtype(DType::U32).unwrap().narrow(1, 0, 24).unwrap();
        let grads = loss(&model, &ids).backward().unwrap();
        let vars = &model.lora.as_ref().unwrap().vars;
        for matrix in family(name).checked {
            let key = format!("base_model.model.{matrix}.weight");
            let var = &vars[&key];
            let analytic = grads.get(var).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let original = var.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
            let shape = var.as_tensor().shape().clone();
            for index in [0, original.len() / 2, original.len() - 1] {
                let eps = 1e-2f32;
                let at = |delta: f32| {
                    let mut values = original.clone();
                    values[index] += delta;
                    var.set(&Tensor::from_vec(values, shape.clone(), &Device::Cpu).unwrap()).unwrap();
                    loss(&model, &ids).to_scalar::<f32>().unwrap()
                };
                let numeric = (at(eps) - at(-eps)) / (2.0 * eps);
                var.set(&Tensor::from_vec(original.clone(), shape.clone(), &Device::Cpu).unwrap()).unwrap();
                let tolerance = 2e-3 + 2e-2 * numeric.abs();
                assert!(
                    (numeric - analytic[index]).abs() < tolerance,
                    "{name} {key}[{index}]: numeric {numeric} vs analytic {}",
                    analytic[index]
                );
            }
        }
    }
}

#[test]
fn adapters_save_in_peft_format_and_load_back() {
    let name = "tiny-llama";
    let model = load(name, peft_adapter(name));
    let dir = fedmkt_tests::tempdir();
    let out = dir.path().join("adapter");
    fedmkt::model::lora::save_adapter(&out, &model.lora.as_ref().unwrap().adapter(), name).unwrap();
    let config = fedmkt_tests::read_json(&out.join("adapter_config.json"));
    assert_eq!(config["peft_type"], "LORA");
    assert_eq!(config["r"], 4);
    let base = fedmkt::model::base_config_hash(&testdata(&format!("models/{name}"))).unwrap();
    let mut reloaded = load(name, AdapterSource::load(&out, &base, &Device::Cpu).unwrap());
    check_against(&mut reloaded, "logits_lora", name);
    let keys: Vec<_> = candle_core::safetensors::load(out.join("adapter_model.safetensors"), &Device::Cpu)
        .unwrap()
        .into_keys()
        .collect();
    assert!(keys.iter().all(|k| k.starts_with("base_model.model.model.layers.")
        && (k.ends_with(".lora_A.weight") || k.ends_with(".lora_B.weight"))));
}

/// A model split into shards with `model.safetensors.index.json`, as large checkpoints are
/// published, loads and gives the same logits as the single file.
#[test]
fn sharded_checkpoints_load() {
    let dir = fedmkt_tests::tempdir();
    let tensors =
        candle_core::safetensors::load(testdata("models/tiny-llama/model.safetensors"), &Device::Cpu).unwrap();
    let mut names: Vec<&String> = tensors.keys().collect();
    names.sort();
    let mut weight_map = serde_json::Map::new();
    for (shard, chunk) in names.chunks(names.len() / 2 + 1).enumerate() {
        let file = format!("model-0000{}-of-00002.safetensors", shard + 1);
        let part: HashMap<String, Tensor> = chunk.iter().map(|n| ((*n).clone(), tensors[*n].clone())).collect();
        candle_core::safetensors::save(&part, dir.path().join(&file)).unwrap();
        weight_map.extend(chunk.iter().map(|n| ((*n).clone(), serde_json::json!(file))));
    }
    let index = serde_json::json!({"metadata": {}, "weight_map": weight_map});
    std::fs::write(dir.path().join("model.safetensors.index.json"), index.to_string()).unwrap();
    std::fs::copy(testdata("models/tiny-llama/config.json"), dir.path().join("config.json")).unwrap();
    let sharded = Model::load(dir.path(), AdapterSource::None, DType::F32, &Device::Cpu).unwrap();
    let ids = golden("tiny-llama")["ids"].to_dtype(DType::U32).unwrap();
    let (a, b) = (sharded.forward(&ids).unwrap(), load("tiny-llama", AdapterSource::None).forward(&ids).unwrap());
    let diff = (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    assert_eq!(diff, 0.0);
}

/// tiny-gemma3 with its second layer global, so that one model has both kinds of layer.
fn gemma3_with_a_global_layer(dir: &std::path::Path) -> Model {
    let source = testdata("models/tiny-gemma3");
    let mut config = fedmkt_tests::read_json(&source.join("config.json"));
    config["layer_types"] = serde_json::json!(["sliding_attention", "full_attention"]);
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    std::fs::copy(source.join("model.safetensors"), dir.join("model.safetensors")).unwrap();
    Model::load(dir, AdapterSource::None, DType::F32, &Device::Cpu).unwrap()
}

/// Continuations scored after cached prefixes (evaluate's shared contexts) give the hidden
/// states of running prefix and continuation as one sequence: rows of different prefix and
/// continuation lengths in one batch, an empty prefix, and sequences longer than Gemma's
/// sliding window of 16 and Mistral's of 8, on every architecture, with and without an adapter.
#[test]
fn continuations_after_cached_prefixes_match_one_pass() {
    let dir = fedmkt_tests::tempdir();
    let models = [
        ("tiny-llama", load("tiny-llama", AdapterSource::None)),
        ("tiny-llama + lora", load("tiny-llama", peft_adapter("tiny-llama"))),
        ("tiny-gemma3 + lora", load("tiny-gemma3", peft_adapter("tiny-gemma3"))),
        ("tiny-gemma3 sliding + global", gemma3_with_a_global_layer(dir.path())),
        ("tiny-mistral (window 8) + lora", load("tiny-mistral", peft_adapter("tiny-mistral"))),
        ("tiny-qwen3 + lora", load("tiny-qwen3", peft_adapter("tiny-qwen3"))),
        ("tiny-gpt2 + lora", load("tiny-gpt2", peft_adapter("tiny-gpt2"))),
        ("tiny-opt-350m + lora", load("tiny-opt-350m", peft_adapter("tiny-opt-350m"))),
        ("tiny-bloom + lora", load("tiny-bloom", peft_adapter("tiny-bloom"))),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    let mut tokens = |n: usize| -> Vec<u32> { (0..n).map(|_| rand::Rng::random_range(&mut rng, 3..1000)).collect() };
    // (prefix, its continuations): row r continues prefix of[r].
    let prefixes = [tokens(21), tokens(0), tokens(6)];
    let continuations = [(0, tokens(4)), (0, tokens(1)), (1, tokens(7)), (2, tokens(3)), (2, tokens(5))];
    let pad = |rows: Vec<&[u32]>| {
        let width = rows.iter().map(|r| r.len()).max().unwrap().max(1);
        let ids: Vec<u32> =
            rows.iter().flat_map(|r| r.iter().copied().chain(std::iter::repeat(0)).take(width)).collect();
        Tensor::from_vec(ids, (rows.len(), width), &Device::Cpu).unwrap()
    };
    for (name, model) in &models {
        // Two prefix passes of different widths, joined into one batch.
        let (first_hidden, first) = model.prefixes(&pad(vec![&prefixes[0], &prefixes[1]]), vec![21, 0]).unwrap();
        let (_, second) = model.prefixes(&pad(vec![&prefixes[2]]), vec![6]).unwrap();
        let cached = Prefixes::concat(vec![first, second]).unwrap();
        let of: Vec<usize> = continuations.iter().map(|(p, _)| *p).collect();
        let after =
            model.hidden_states_after(&cached, &of, &pad(continuations.iter().map(|(_, c)| c.as_slice()).collect()));
        let after = after.unwrap();
        let close = |ours: Tensor, expected: Tensor, what: String| {
            let n = expected.dim(0).unwrap() as i64;
            let err = relative_error(&ours.unsqueeze(0).unwrap(), &expected.unsqueeze(0).unwrap(), &[n]);
            assert!(err < 1e-5, "{name}, {what}: relative error {err:e}");
        };
        for (row, (p, continuation)) in continuations.iter().enumerate() {
            let whole: Vec<u32> = prefixes[*p].iter().chain(continuation).copied().collect();
            let one_pass = model.hidden_states(&pad(vec![&whole])).unwrap().get(0).unwrap();
            let expected = one_pass.narrow(0, prefixes[*p].len(), continuation.len()).unwrap();
            close(after.get(row).unwrap().narrow(0, 0, continuation.len()).unwrap(), expected, format!("row {row}"));
            if *p == 0 {
                close(first_hidden.get(0).unwrap(), one_pass.narrow(0, 0, 21).unwrap(), "prefix".into());
            }
        }
    }
}

/// Samples packed into one row (`distill`'s batches, `Model::hidden_states_packed`) give the
/// right-padded batch's hidden states and the same adapter gradients, on every architecture
/// (samples longer than Gemma's and Mistral's sliding windows among them), with LoRA dropout
/// drawing the padded batch's masks.
#[test]
fn a_packed_batch_matches_the_padded_batch() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    let lengths = [13usize, 5, 20];
    let samples: Vec<Vec<u32>> =
        lengths.iter().map(|&n| (0..n).map(|_| rand::Rng::random_range(&mut rng, 3..1000)).collect()).collect();
    let width = 20;
    let padded: Vec<u32> =
        samples.iter().flat_map(|s| s.iter().copied().chain(std::iter::repeat(0)).take(width)).collect();
    let padded = Tensor::from_vec(padded, (3, width), &Device::Cpu).unwrap();
    let packed = Tensor::from_vec(samples.concat(), (1, 38), &Device::Cpu).unwrap();
    let real_rows: Vec<u32> =
        lengths.iter().enumerate().flat_map(|(b, &n)| (0..n).map(move |p| (b * width + p) as u32)).collect();
    let real_rows = Tensor::new(real_rows.as_slice(), &Device::Cpu).unwrap();
    for name in MODELS {
        // Hidden states at the samples' own tokens, in packed order, and the adapter's gradients.
        let run = |pack: bool| {
            let model = trainable(name);
            nudge_b(&model);
            model.lora.as_ref().unwrap().mode.seed_dropout(0.3, 9);
            let hidden = if pack {
                model.hidden_states_packed(&packed, &lengths).unwrap().squeeze(0).unwrap()
            } else {
                let hidden = model.hidden_states(&padded).unwrap();
                hidden.reshape((3 * width, hidden.dim(2).unwrap())).unwrap().index_select(&real_rows, 0).unwrap()
            };
            let grads = hidden.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let lora = model.lora.as_ref().unwrap();
            let grads: Vec<Tensor> = lora.vars.values().map(|v| grads.get(v).unwrap().clone()).collect();
            (hidden, grads)
        };
        let ((padded_hidden, padded_grads), (packed_hidden, packed_grads)) = (run(false), run(true));
        let largest = |t: &Tensor| t.abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        // Against the largest gradient of all: some adapter matrices get almost none.
        let gradient_scale = padded_grads.iter().map(largest).fold(0f32, f32::max);
        let close = |ours: &Tensor, expected: &Tensor, scale: f32, what: &str| {
            let diff = largest(&(ours - expected).unwrap());
            assert!(diff <= 1e-5 * scale, "{name}, {what}: differs by {diff:e} of {scale:e}");
        };
        close(&packed_hidden, &padded_hidden, largest(&padded_hidden), "hidden states");
        for (ours, expected) in packed_grads.iter().zip(&padded_grads) {
            close(ours, expected, gradient_scale, "an adapter gradient");
        }
    }
}
