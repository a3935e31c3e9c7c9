//! `vocab-map`: a hand-worked case (byte fallback vs byte-level newline, specials by role,
//! the lexicographic tie rule), equality with brute force on real small tokenizers and on
//! random vocabularies, the flat map file, and bad input.
use std::path::Path;

use arrow_array::{Array, StringArray, UInt32Array};
use fedmkt::vocab::{min_edit_mapping, symbols_of, token_texts, BruteForce, TokenText};
use fedmkt_tests::*;
use rand::{Rng, SeedableRng};

fn vocab_map(from: &Path, to: &Path, out: &Path) -> std::process::Output {
    run("vocab-map", ["--from", from.to_str().unwrap(), "--to", to.to_str().unwrap(), "--out", out.to_str().unwrap()])
}

fn u32_column(table: &fedmkt::io::ParquetTable, name: &str) -> Vec<u32> {
    table
        .batches
        .iter()
        .flat_map(|b| b.column_by_name(name).unwrap().as_any().downcast_ref::<UInt32Array>().unwrap().values().to_vec())
        .collect()
}

#[test]
fn hand_worked_mapping() {
    let dir = tempdir();
    let out = dir.path().join("m.parquet");
    assert_success(&vocab_map(
        &testdata("vocab/spm-hand/tokenizer.json"),
        &testdata("vocab/bytelevel-hand/tokenizer.json"),
        &out,
    ));
    let golden = read_json(&testdata("golden/vocab-map/spm-hand_to_bytelevel-hand.json"));
    let table = fedmkt::io::read_parquet(&out, "vocab-map").unwrap();
    let want = |k: &str| golden[k].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as u32).collect::<Vec<_>>();
    assert_eq!(u32_column(&table, "tgt_id"), want("tgt_id"));
    assert_eq!(u32_column(&table, "distance"), want("distance"));
    let kinds = table.batches[0]
        .column_by_name("match")
        .unwrap()
        .as_any()
        .downcast_ref::<StringArray>()
        .unwrap()
        .iter()
        .map(|s| s.unwrap().to_string())
        .collect::<Vec<_>>();
    let want_kinds: Vec<String> =
        golden["match"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert_eq!(kinds, want_kinds);
    // The flat file: one little-endian u32 per source id, the same targets.
    let flat = std::fs::read(dir.path().join("m.map")).unwrap();
    let ids: Vec<u32> = flat.chunks(4).map(|c| u32::from_le_bytes(c.try_into().unwrap())).collect();
    assert_eq!(ids, want("tgt_id"));
    assert_eq!(table.provenance.extra["map_sha256"], format!("sha256:{}", fedmkt::io::sha256_hex(&flat)));
}

fn assert_equals_brute_force(source: &[TokenText], target: &[TokenText], what: &str) {
    let fast = min_edit_mapping(source, target);
    let brute_force = BruteForce::new(target);
    for (i, (token, got)) in source.iter().zip(&fast).enumerate() {
        assert_eq!(got, &brute_force.map(token), "{what}: source id {i} {:?}", token.raw);
    }
}

#[test]
fn equals_brute_force_on_real_small_tokenizers() {
    let bytelevel = token_texts(&testdata("tokenizers/bytelevel/tokenizer.json")).unwrap();
    let spm = token_texts(&testdata("tokenizers/spm/tokenizer.json")).unwrap();
    assert_equals_brute_force(&bytelevel, &spm, "bytelevel → spm");
    assert_equals_brute_force(&spm, &bytelevel, "spm → bytelevel");
}

fn random_vocabulary(rng: &mut rand_chacha::ChaCha8Rng, size: usize) -> Vec<TokenText> {
    let alphabet: Vec<char> = "abcdeé中 ".chars().collect();
    (0..size)
        .map(|_| {
            let len = rng.random_range(0..7);
            let text: String = (0..len).map(|_| alphabet[rng.random_range(0..alphabet.len())]).collect();
            TokenText {
                symbols: symbols_of(text.as_bytes()),
                bytes: text.clone().into_bytes(),
                special: false,
                roles: vec![],
                raw: text,
            }
        })
        .collect()
}

#[test]
fn equals_brute_force_on_random_vocabularies() {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for round in 0..20 {
        let (source, target) = (random_vocabulary(&mut rng, 200), random_vocabulary(&mut rng, 150));
        assert_equals_brute_force(&source, &target, &format!("round {round}"));
    }
}

#[test]
fn same_inputs_give_identical_bytes() {
    let (a, b) = (tempdir(), tempdir());
    for dir in [&a, &b] {
        assert_success(&vocab_map(
            &testdata("tokenizers/spm/tokenizer.json"),
            &testdata("tokenizers/bytelevel/tokenizer.json"),
            &dir.path().join("m.parquet"),
        ));
    }
    for file in ["m.parquet", "m.map"] {
        assert!(
            std::fs::read(a.path().join(file)).unwrap() == std::fs::read(b.path().join(file)).unwrap(),
            "{file} differs"
        );
    }
}

#[test]
fn bad_inputs_are_refused_with_one_line() {
    let dir = tempdir();
    let out = dir.path().join("m.parquet");
    let good = testdata("tokenizers/spm/tokenizer.json");
    assert_bad_input(&vocab_map(&dir.path().join("none.json"), &good, &out), &["none.json", "cannot read"]);
    assert_bad_input(&vocab_map(&good, &testdata("data/LICENSES.md"), &out), &["LICENSES.md", "not a tokenizer.json"]);
    std::fs::write(dir.path().join("wordlevel.json"), r#"{"model": {"type": "Unigram", "vocab": [["a", 0.0]]}}"#)
        .unwrap();
    assert_bad_input(
        &vocab_map(&good, &dir.path().join("wordlevel.json"), &out),
        &["wordlevel.json", "no model.vocab object"],
    );
    assert!(!out.exists() && !dir.path().join("m.map").exists());
}
