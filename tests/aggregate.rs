//! `aggregate average`: FedAvg weighted by private sample counts, checked against a direct
//! computation on the safetensors bytes; adapters that cannot be averaged are refused.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fedmkt_tests::*;

fn train(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec!["--model".to_string(), testdata("models/tiny-llama").display().to_string(), "--data".into(), testdata("data/tokens/tiny-llama/arc-easy-eval.parquet").display().to_string(), "--lr".into(), "1e-2".into(), "--out".into(), out.display().to_string()];
    args.extend(extra.iter().map(|s| s.to_string()));
    assert_success(&run("distill", &args));
    out
}

/// Every tensor of an adapter as f64 values, read straight from the safetensors bytes.
fn tensors(dir: &Path) -> BTreeMap<String, Vec<f64>> {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors().into_iter().map(|(k, v)| (k, v.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect())).collect()
}

fn average(adapters: &[&Path], weights: Option<&[&str]>, out: &Path) -> std::process::Output {
    let mut args = vec!["average".to_string(), "--adapters".into()];
    args.extend(adapters.iter().map(|a| a.display().to_string()));
    if let Some(w) = weights {
        args.push("--weights".into());
        args.extend(w.iter().map(|s| s.to_string()));
    }
    args.extend(["--out".into(), out.display().to_string()]);
    run("aggregate", &args)
}

#[test]
fn weighted_average_of_adapters() {
    let dir = tempdir();
    let (a, b) = (train(dir.path(), "a", &["--seed", "1"]), train(dir.path(), "b", &["--seed", "2"]));
    let (ta, tb) = (tensors(&a), tensors(&b));
    for (weights, (wa, wb)) in [(Some(&["1", "3"][..]), (1.0, 3.0)), (None, (6.0, 6.0))] {
        let out = dir.path().join(format!("avg-{}", weights.is_some()));
        assert_success(&average(&[&a, &b], weights, &out));
        let got = tensors(&out);
        assert_eq!(got.keys().collect::<Vec<_>>(), ta.keys().collect::<Vec<_>>());
        for (key, values) in &got {
            for (i, v) in values.iter().enumerate() {
                let want = (wa * ta[key][i] + wb * tb[key][i]) / (wa + wb);
                assert!((v - want).abs() <= 1e-6 * want.abs().max(1e-3), "{key}[{i}]: {v} vs {want}");
            }
        }
    }
}

#[test]
fn adapters_that_cannot_be_averaged_are_refused() {
    let dir = tempdir();
    let a = train(dir.path(), "a", &[]);
    let low_rank = train(dir.path(), "r4", &["--lora-r", "4"]);
    let out = dir.path().join("avg");
    assert_bad_input(&average(&[&a, &low_rank], None, &out), &["adapter_config.json", "rank/alpha/targets"]);
    let gemma = testdata("models/tiny-gemma3-lora");
    assert_bad_input(&average(&[&a, &gemma], Some(&["1", "1"]), &out), &["tiny-gemma3-lora"]);
    assert_bad_input(&average(&[&a, &a], Some(&["1"]), &out), &["--weights"]);
    assert!(!out.exists());
}
