//! `aggregate average`: FedAvg weighted by private sample counts, checked against a direct
//! computation on the safetensors bytes; adapters that cannot be averaged are refused.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use fedmkt_tests::*;

fn train(dir: &Path, name: &str, extra: &[&str]) -> PathBuf {
    let out = dir.join(name);
    let mut args = vec![
        "--model".to_string(),
        testdata("models/tiny-llama").display().to_string(),
        "--data".into(),
        testdata("data/tokens/tiny-llama/arc-easy-eval.parquet").display().to_string(),
        "--lr".into(),
        "1e-2".into(),
        "--out".into(),
        out.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    assert_success(&run("distill", &args));
    out
}

/// Every tensor of an adapter as f64 values, read straight from the safetensors bytes.
fn tensors(dir: &Path) -> BTreeMap<String, Vec<f64>> {
    let bytes = std::fs::read(dir.join("adapter_model.safetensors")).unwrap();
    let file = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    file.tensors()
        .into_iter()
        .map(|(k, v)| (k, v.data().chunks(4).map(|c| f32::from_le_bytes(c.try_into().unwrap()) as f64).collect()))
        .collect()
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

// ---------------------------------------------------------------- secure aggregation

fn aggregate(args: &[String]) -> std::process::Output {
    run("aggregate", args)
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

/// Three clients (weights 1, 2, 3), threshold 2, round `round`: keygen and share for all;
/// those in `masking` mask; the server sums; the maskers reveal; the server unmasks.
/// Returns (the unmasked adapter folder, the masked file of client 1).
fn secure_round(dir: &Path, adapters: &[PathBuf; 3], masking: &[usize], round: &str) -> (PathBuf, PathBuf) {
    let sec = dir.join(format!("sec-{round}-{}", masking.len()));
    for k in 1..=3 {
        assert_success(&aggregate(&[
            "keygen".into(),
            "--party".into(),
            k.to_string(),
            "--round".into(),
            round.into(),
            "--out".into(),
            s(&sec.join(format!("client-{k}"))),
        ]));
    }
    let publics: Vec<String> = (1..=3).map(|k| s(&sec.join(format!("client-{k}/public.json")))).collect();
    let with_publics = |mut args: Vec<String>| {
        args.push("--publics".into());
        args.extend(publics.iter().cloned());
        args
    };
    for k in 1..=3 {
        let args = vec![
            "share".into(),
            "--keys".into(),
            s(&sec.join(format!("client-{k}"))),
            "--threshold".into(),
            "2".into(),
            "--out".into(),
            s(&sec.join(format!("shares/from-{k}"))),
        ];
        assert_success(&aggregate(&with_publics(args)));
    }
    let masked = |k: usize| sec.join(format!("masked/client-{k}.parquet"));
    for &k in masking {
        let args = vec![
            "mask".into(),
            "--keys".into(),
            s(&sec.join(format!("client-{k}"))),
            "--adapter".into(),
            s(&adapters[k - 1]),
            "--weight".into(),
            k.to_string(),
            "--out".into(),
            s(&masked(k)),
        ];
        assert_success(&aggregate(&with_publics(args)));
    }
    let sum = sec.join("sum.parquet");
    let mut args = vec!["sum".to_string(), "--masked".into()];
    args.extend(masking.iter().map(|&k| s(&masked(k))));
    args.extend(["--out".into(), s(&sum)]);
    assert_success(&aggregate(&args));
    let mut reveals = Vec::new();
    for &k in masking {
        let out = sec.join(format!("reveal/{k}.json"));
        let mut args = vec![
            "reveal".to_string(),
            "--keys".into(),
            s(&sec.join(format!("client-{k}"))),
            "--sum".into(),
            s(&sum),
            "--out".into(),
            s(&out),
            "--shares".into(),
        ];
        args.extend((1..=3).map(|from| s(&sec.join(format!("shares/from-{from}/to-{k}.json")))));
        assert_success(&aggregate(&with_publics(args)));
        reveals.push(s(&out));
    }
    let adapter = sec.join("average");
    let mut args = vec![
        "unmask".to_string(),
        "--sum".into(),
        s(&sum),
        "--threshold".into(),
        "2".into(),
        "--out".into(),
        s(&adapter),
        "--reveals".into(),
    ];
    args.extend(reveals);
    assert_success(&aggregate(&with_publics(args)));
    (adapter, masked(masking[0]))
}

fn three_adapters(dir: &Path) -> [PathBuf; 3] {
    [1, 2, 3].map(|k| train(dir, &format!("c{k}"), &["--seed", &k.to_string()]))
}

fn assert_close(got: &Path, want: &Path) {
    let (got, want) = (tensors(got), tensors(want));
    assert_eq!(got.keys().collect::<Vec<_>>(), want.keys().collect::<Vec<_>>());
    for (key, values) in &got {
        for (v, w) in values.iter().zip(&want[key]) {
            assert!((v - w).abs() < 1e-6, "{key}: secure {v} vs plain {w}");
        }
    }
}

#[test]
fn secure_sum_equals_the_plain_weighted_average_even_with_a_dropout() {
    let dir = tempdir();
    let adapters = three_adapters(dir.path());
    let plain = |ks: &[usize], name: &str| {
        let out = dir.path().join(name);
        let dirs: Vec<&Path> = ks.iter().map(|&k| adapters[k - 1].as_path()).collect();
        let weights: Vec<String> = ks.iter().map(|k| k.to_string()).collect();
        let weights: Vec<&str> = weights.iter().map(String::as_str).collect();
        assert_success(&average(&dirs, Some(&weights), &out));
        out
    };
    let (all, _) = secure_round(dir.path(), &adapters, &[1, 2, 3], "1");
    assert_close(&all, &plain(&[1, 2, 3], "plain-all"));
    // Client 2 shares its keys, then drops out before masking: the others are still recovered.
    let (without_2, _) = secure_round(dir.path(), &adapters, &[1, 3], "2");
    assert_close(&without_2, &plain(&[1, 3], "plain-1-3"));
}

/// Pearson's χ² of the byte values of the words against uniform (255 degrees of freedom).
fn byte_chi_square(words: &[u64]) -> f64 {
    let mut counts = [0usize; 256];
    words.iter().flat_map(|w| w.to_le_bytes()).for_each(|b| counts[b as usize] += 1);
    let expected = words.len() as f64 * 8.0 / 256.0;
    counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
}

#[test]
fn a_masked_file_looks_uniform() {
    use arrow_array::{Array, UInt64Array};
    let dir = tempdir();
    let adapters = three_adapters(dir.path());
    let (_, masked) = secure_round(dir.path(), &adapters, &[1, 2, 3], "1");
    let table = fedmkt::io::read_parquet(&masked, "masked-adapter").unwrap();
    let words: Vec<u64> = table
        .batches
        .iter()
        .flat_map(|b| b.column(0).as_any().downcast_ref::<UInt64Array>().unwrap().values().to_vec())
        .collect();
    // χ² with 255 degrees of freedom: mean 255, sd √510 ≈ 22.6; 6 sd leaves no false alarms.
    let limit = 255.0 + 6.0 * 510f64.sqrt();
    assert!(byte_chi_square(&words) < limit, "masked words: χ² {} (limit {limit})", byte_chi_square(&words));
    // The same statistic flags the unmasked fixed-point encoding (small values: the high
    // bytes are all 0x00 or 0xFF), so the check can fail.
    let plain: Vec<u64> =
        tensors(&adapters[0]).values().flatten().map(|v| (v * 2f64.powi(24)).round() as i64 as u64).collect();
    assert!(byte_chi_square(&plain) > 10.0 * limit, "plain words look uniform: χ² {}", byte_chi_square(&plain));
}

#[test]
fn masked_files_of_different_rounds_are_refused() {
    let dir = tempdir();
    let adapters = three_adapters(dir.path());
    let (_, round_1) = secure_round(dir.path(), &adapters, &[1, 2, 3], "1");
    let (_, round_2) = secure_round(dir.path(), &adapters, &[2, 3], "2");
    let out = dir.path().join("sum.parquet");
    assert_bad_input(
        &aggregate(&["sum".into(), "--masked".into(), s(&round_1), s(&round_2), "--out".into(), s(&out)]),
        &["client-2.parquet", "round 2"],
    );
    assert!(!out.exists());
}
