//! `aggregate average`: FedAvg weighted by private sample counts, checked against a direct
//! computation on the safetensors bytes; adapters that cannot be averaged are refused.
//! Secure aggregation (Bonawitz et al. 2017, Figure 4): honest rounds with dropouts equal the
//! plain average, and the attacks of a curious or lying server fail.
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
    // Weights that would overflow their sum, or underflow their products, weigh as their ratio.
    let cases = [
        (Some(&["1", "3"][..]), (1.0, 3.0)),
        (None, (6.0, 6.0)),
        (Some(&["1e308", "1e308"][..]), (1.0, 1.0)),
        (Some(&["5e-324", "1e-323"][..]), (1.0, 2.0)),
    ];
    for (n, (weights, (wa, wb))) in cases.into_iter().enumerate() {
        let out = dir.path().join(format!("avg-{n}"));
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

/// One federation of `n` clients in one round: every command a party runs, by file.
struct Federation {
    dir: PathBuf,
    n: usize,
}

fn s(p: &Path) -> String {
    p.display().to_string()
}

impl Federation {
    /// Identities and round-0 keys for clients 1..=n.
    fn new(dir: &Path, name: &str, n: usize) -> Federation {
        let fed = Federation { dir: dir.join(name), n };
        for k in 1..=n {
            assert_success(&fed.run(&["identity", "--party", &k.to_string(), "--out", &s(&fed.id(k))]));
            assert_success(&fed.run(&[
                "keygen",
                "--identity",
                &s(&fed.id(k)),
                "--round",
                "1",
                "--out",
                &s(&fed.keys(k)),
            ]));
        }
        fed
    }

    fn run(&self, args: &[&str]) -> std::process::Output {
        run("aggregate", args)
    }

    fn id(&self, k: usize) -> PathBuf {
        self.dir.join(format!("id/client-{k}"))
    }

    fn keys(&self, k: usize) -> PathBuf {
        self.dir.join(format!("client-{k}"))
    }

    fn path(&self, rel: &str) -> String {
        s(&self.dir.join(rel))
    }

    fn all(&self, pattern: impl Fn(usize) -> String, ks: &[usize]) -> Vec<String> {
        ks.iter().map(|&k| self.path(&pattern(k))).collect()
    }

    fn everyone(&self) -> Vec<usize> {
        (1..=self.n).collect()
    }

    fn with_list(mut args: Vec<String>, flag: &str, list: Vec<String>) -> Vec<String> {
        args.push(flag.into());
        args.extend(list);
        args
    }

    fn exec(&self, args: Vec<String>) -> std::process::Output {
        run("aggregate", &args)
    }

    fn share(&self, k: usize, extra: &[&str]) -> std::process::Output {
        let mut args = vec![
            "share".into(),
            "--keys".into(),
            s(&self.keys(k)),
            "--out".into(),
            self.path(&format!("shares/from-{k}")),
        ];
        args.extend(extra.iter().map(|e| e.to_string()));
        args = Self::with_list(args, "--publics", self.all(|v| format!("client-{v}/public.json"), &self.everyone()));
        self.exec(Self::with_list(
            args,
            "--verify",
            self.all(|v| format!("id/client-{v}/verify-key.json"), &self.everyone()),
        ))
    }

    /// Client k masks `adapter` with the shares it received from `senders`.
    fn mask(&self, k: usize, senders: &[usize], adapter: &Path, weight: &str) -> std::process::Output {
        let args = vec![
            "mask".into(),
            "--keys".into(),
            s(&self.keys(k)),
            "--adapter".into(),
            s(adapter),
            format!("--weight={weight}"),
            "--out".into(),
            self.path(&format!("masked/client-{k}.parquet")),
        ];
        self.exec(Self::with_list(args, "--shares", self.all(|v| format!("shares/from-{v}/to-{k}.json"), senders)))
    }

    fn sum(&self, ks: &[usize]) -> std::process::Output {
        let args = vec![
            "sum".into(),
            "--out".into(),
            self.path("sum.parquet"),
            "--survivors".into(),
            self.path("survivors.json"),
        ];
        self.exec(Self::with_list(args, "--masked", self.all(|v| format!("masked/client-{v}.parquet"), ks)))
    }

    fn confirm(&self, k: usize, survivors: &str) -> std::process::Output {
        self.confirm_as(k, survivors, &k.to_string())
    }

    /// Client k signs `survivors` into signatures/<name>.json.
    fn confirm_as(&self, k: usize, survivors: &str, name: &str) -> std::process::Output {
        let (keys, id, out) = (s(&self.keys(k)), s(&self.id(k)), self.path(&format!("signatures/{name}.json")));
        self.run(&["confirm", "--keys", &keys, "--identity", &id, "--survivors", survivors, "--out", &out])
    }

    fn reveal(&self, k: usize, survivors: &str, signers: &[usize]) -> std::process::Output {
        let names: Vec<String> = signers.iter().map(usize::to_string).collect();
        self.reveal_with(k, survivors, &names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// Client k reveals for `survivors`, shown the signatures/<name>.json files.
    fn reveal_with(&self, k: usize, survivors: &str, signatures: &[&str]) -> std::process::Output {
        let args = vec![
            "reveal".into(),
            "--keys".into(),
            s(&self.keys(k)),
            "--survivors".into(),
            survivors.into(),
            "--out".into(),
            self.path(&format!("reveal/{k}.json")),
        ];
        let signatures = signatures.iter().map(|name| self.path(&format!("signatures/{name}.json"))).collect();
        let args = Self::with_list(args, "--signatures", signatures);
        self.exec(Self::with_list(
            args,
            "--verify",
            self.all(|v| format!("id/client-{v}/verify-key.json"), &self.everyone()),
        ))
    }

    fn unmask(&self, revealers: &[usize], out: &Path) -> std::process::Output {
        let args = vec!["unmask".into(), "--sum".into(), self.path("sum.parquet"), "--out".into(), s(out)];
        let args = Self::with_list(args, "--reveals", self.all(|v| format!("reveal/{v}.json"), revealers));
        self.exec(Self::with_list(args, "--publics", self.all(|v| format!("client-{v}/public.json"), &self.everyone())))
    }

    /// An honest round: `sharing` complete round 1, `masking` (⊆ sharing) mask with weight = id;
    /// the server sums; the maskers confirm and reveal; the server unmasks.
    fn honest_round(&self, sharing: &[usize], masking: &[usize], adapters: &[PathBuf]) -> PathBuf {
        for &k in sharing {
            assert_success(&self.share(k, &["--threshold", &(self.n / 2 + 1).to_string()]));
        }
        for &k in masking {
            assert_success(&self.mask(k, sharing, &adapters[k - 1], &k.to_string()));
        }
        assert_success(&self.sum(masking));
        let survivors = self.path("survivors.json");
        masking.iter().for_each(|&k| assert_success(&self.confirm(k, &survivors)));
        masking.iter().for_each(|&k| assert_success(&self.reveal(k, &survivors, masking)));
        let out = self.dir.join("average");
        assert_success(&self.unmask(masking, &out));
        out
    }
}

/// A survivor list the server never derived from a sum: what a lying server sends.
fn forged_survivors(dir: &Path, survivors: &[u32]) -> String {
    let name: Vec<String> = survivors.iter().map(u32::to_string).collect();
    let path = dir.join(format!("survivors-{}.json", name.join("-")));
    let lie = serde_json::json!({"fedmkt_format": "secagg-survivors", "round": 1, "threshold": 2,
                                 "masked_with": [1, 2, 3], "survivors": survivors});
    std::fs::write(&path, lie.to_string()).unwrap();
    s(&path)
}

/// Adapters for clients 1..=n (three trained ones, reused round-robin).
fn adapters(dir: &Path, n: usize) -> Vec<PathBuf> {
    let trained = [1, 2, 3].map(|k| train(dir, &format!("c{k}"), &["--seed", &k.to_string()]));
    (0..n).map(|i| trained[i % 3].clone()).collect()
}

fn plain_average(dir: &Path, adapters: &[PathBuf], ks: &[usize], name: &str) -> PathBuf {
    let out = dir.join(name);
    let dirs: Vec<&Path> = ks.iter().map(|&k| adapters[k - 1].as_path()).collect();
    let weights: Vec<String> = ks.iter().map(|k| k.to_string()).collect();
    let weights: Vec<&str> = weights.iter().map(String::as_str).collect();
    assert_success(&average(&dirs, Some(&weights), &out));
    out
}

fn max_difference(a: &Path, b: &Path) -> f64 {
    let (a, b) = (tensors(a), tensors(b));
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    a.iter().flat_map(|(k, va)| va.iter().zip(&b[k]).map(|(x, y)| (x - y).abs())).fold(0.0, f64::max)
}

#[test]
fn secure_sum_equals_the_plain_weighted_average_with_0_1_and_n_minus_t_dropouts() {
    let dir = tempdir();
    let adapters = adapters(dir.path(), 5);
    // (clients, who completes round 1, who masks): 3 of 3; 2 of 3 (one drops after sharing);
    // 3 of 5 with t = 3: client 5 never shares, client 4 drops after sharing.
    for (name, n, sharing, masking) in [
        ("none", 3, &[1, 2, 3][..], &[1, 2, 3][..]),
        ("one", 3, &[1, 2, 3], &[1, 3]),
        ("two", 5, &[1, 2, 3, 4], &[1, 2, 3]),
    ] {
        let fed = Federation::new(dir.path(), name, n);
        let secure = fed.honest_round(sharing, masking, &adapters);
        let plain = plain_average(dir.path(), &adapters, masking, &format!("plain-{name}"));
        let diff = max_difference(&secure, &plain);
        assert!(diff <= 1e-6, "{name}: secure and plain averages differ by {diff}");
    }
}

/// Pearson's χ² of the byte values of the words against uniform (255 degrees of freedom).
fn byte_chi_square(words: &[u64]) -> f64 {
    let mut counts = [0usize; 256];
    words.iter().flat_map(|w| w.to_le_bytes()).for_each(|b| counts[b as usize] += 1);
    let expected = words.len() as f64 * 8.0 / 256.0;
    counts.iter().map(|&c| (c as f64 - expected).powi(2) / expected).sum()
}

fn masked_words(path: &Path) -> Vec<u64> {
    let table = fedmkt::io::read_parquet(path, "masked-adapter").unwrap();
    table.values::<arrow_array::types::UInt64Type>("word").unwrap()
}

#[test]
fn a_masked_file_looks_uniform() {
    let dir = tempdir();
    let adapters = adapters(dir.path(), 3);
    let fed = Federation::new(dir.path(), "fed", 3);
    fed.honest_round(&[1, 2, 3], &[1, 2, 3], &adapters);
    let words = masked_words(&dir.path().join("fed/masked/client-1.parquet"));
    // χ² with 255 degrees of freedom: mean 255, sd √510 ≈ 22.6; 6 sd leaves no false alarms.
    let limit = 255.0 + 6.0 * 510f64.sqrt();
    assert!(byte_chi_square(&words) < limit, "masked words: χ² {} (limit {limit})", byte_chi_square(&words));
    // The same statistic flags the unmasked fixed-point encoding (small values: the high
    // bytes are all 0x00 or 0xFF), so the check can fail.
    let plain: Vec<u64> =
        tensors(&adapters[0]).values().flatten().map(|v| (v * 2f64.powi(24)).round() as i64 as u64).collect();
    assert!(byte_chi_square(&plain) > 10.0 * limit, "plain words look uniform: χ² {}", byte_chi_square(&plain));
}

/// Rounds 0-2 by everyone, three clients, threshold 2; returns the federation.
fn masked_federation(dir: &Path, adapters: &[PathBuf]) -> Federation {
    let fed = Federation::new(dir, "fed", 3);
    (1..=3).for_each(|k| assert_success(&fed.share(k, &[])));
    (1..=3).for_each(|k| assert_success(&fed.mask(k, &[1, 2, 3], &adapters[k - 1], "1")));
    fed
}

/// The issue's attack: the server "sums" client 3's input alone and asks clients 1 and 2 to
/// reveal as if they had dropped (which, before the consistency round, gave it shares of
/// their own keys and client 3's seed: client 3's adapter in the clear).
#[test]
fn a_server_cannot_get_reveals_for_a_sum_of_one_client() {
    let dir = tempdir();
    let adapters = adapters(dir.path(), 3);
    let fed = masked_federation(dir.path(), &adapters);
    assert_bad_input(&fed.sum(&[3]), &["--masked", "threshold"]);
    let forged = forged_survivors(dir.path(), &[3]);
    for k in [1, 2] {
        assert_bad_input(&fed.confirm(k, &forged), &["survivors-3.json", "leaves this client"]);
        assert_bad_input(&fed.reveal(k, &forged, &[3]), &["signed.json", "confirm"]);
    }
    assert!(!dir.path().join("fed/reveal").exists());
}

/// A lying server tells clients different survivor sets, hoping for the seed shares of a
/// client from some and the key shares of the same client from others.
#[test]
fn a_server_that_tells_clients_different_survivors_is_caught() {
    let dir = tempdir();
    let adapters = adapters(dir.path(), 3);
    let fed = masked_federation(dir.path(), &adapters);
    assert_success(&fed.sum(&[1, 2, 3]));
    let (all, without_3) = (fed.path("survivors.json"), forged_survivors(dir.path(), &[1, 2]));
    // Clients 1 and 3 are told everyone survived; client 2 that client 3 dropped.
    assert_success(&fed.confirm(1, &all));
    assert_success(&fed.confirm(3, &all));
    assert_success(&fed.confirm_as(2, &without_3, "2-lie"));
    assert_bad_input(&fed.reveal_with(2, &without_3, &["1", "2-lie"]), &["1.json", "another survivor set"]);
    // Only its own signature on the lie: fewer than the threshold.
    assert_bad_input(&fed.reveal_with(2, &without_3, &["2-lie"]), &["--signatures", "1 survivors signed, 2 needed"]);
    // A signature in client 1's name that client 1 did not make does not verify.
    let mut forged = read_json(&dir.path().join("fed/signatures/2-lie.json"));
    forged["party"] = 1.into();
    std::fs::write(dir.path().join("fed/signatures/1-forged.json"), forged.to_string()).unwrap();
    assert_bad_input(&fed.reveal_with(2, &without_3, &["1-forged", "2-lie"]), &["1-forged.json", "does not verify"]);
    assert!(!dir.path().join("fed/reveal/2.json").exists());
}

/// One client, one survivor set per round: after signing and revealing for {1, 2, 3} it
/// refuses to sign or reveal for {1, 2} (which would give the key shares of client 3).
#[test]
fn a_client_never_reveals_for_two_survivor_sets() {
    let dir = tempdir();
    let adapters = adapters(dir.path(), 3);
    let fed = masked_federation(dir.path(), &adapters);
    assert_success(&fed.sum(&[1, 2, 3]));
    let all = fed.path("survivors.json");
    (1..=3).for_each(|k| assert_success(&fed.confirm(k, &all)));
    assert_success(&fed.reveal(1, &all, &[1, 2, 3]));
    let first = std::fs::read(dir.path().join("fed/reveal/1.json")).unwrap();
    let without_3 = forged_survivors(dir.path(), &[1, 2]);
    assert_bad_input(&fed.confirm(1, &without_3), &["survivors-1-2.json", "already signed"]);
    assert_bad_input(&fed.reveal(1, &without_3, &[1, 2]), &["survivors-1-2.json", "this client signed"]);
    // The same request again is answered with the same bytes.
    assert_success(&fed.reveal(1, &all, &[1, 2, 3]));
    assert_eq!(std::fs::read(dir.path().join("fed/reveal/1.json")).unwrap(), first);
}

/// A dropped client's masking key, legitimately rebuilt by the server, must not open the
/// shares other clients sealed for it (it held them for everybody else's keys and seeds):
/// shares are sealed under a separate key pair (c), through HKDF, with authentication.
#[test]
fn a_rebuilt_masking_key_opens_no_share() {
    use chacha20poly1305::aead::{Aead, Payload};
    use chacha20poly1305::{ChaCha20Poly1305, KeyInit};
    let dir = tempdir();
    let adapters = adapters(dir.path(), 3);
    let fed = Federation::new(dir.path(), "fed", 3);
    fed.honest_round(&[1, 2, 3], &[1, 2], &adapters);
    // Client 3's masking key from the reveals, as the server rebuilt it.
    let reveals: Vec<serde_json::Value> =
        [1, 2].iter().map(|k| read_json(&dir.path().join(format!("fed/reveal/{k}.json")))).collect();
    let share_of = |r: &serde_json::Value| hex::decode(r["key_shares"][0]["share"].as_str().unwrap()).unwrap();
    let points: Vec<(u8, Vec<u8>)> = reveals.iter().map(|r| (r["from"].as_u64().unwrap() as u8, share_of(r))).collect();
    let refs: Vec<(u8, &[u8])> = points.iter().map(|(x, v)| (*x, v.as_slice())).collect();
    let masking: [u8; 32] = fedmkt::aggregate::secagg::shamir::recover(&refs, 2).unwrap().try_into().unwrap();
    let public = read_json(&dir.path().join("fed/client-3/public.json"));
    let masking_public = x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(masking));
    assert_eq!(hex::encode(masking_public.as_bytes()), public["masking"].as_str().unwrap(), "the server's rebuild");
    for from in [1, 2] {
        let share = read_json(&dir.path().join(format!("fed/shares/from-{from}/to-3.json")));
        let sender = read_json(&dir.path().join(format!("fed/client-{from}/public.json")));
        let ciphertext = hex::decode(share["ciphertext"].as_str().unwrap()).unwrap();
        let nonce = hex::decode(share["nonce"].as_str().unwrap()).unwrap();
        // The attacker knows the formats (FORMATS.md): the exact HKDF info and associated data.
        let (round, to) = (1u64, 3u32);
        let mut info = b"fedmkt secagg v1 share encryption".to_vec();
        info.extend(round.to_le_bytes());
        info.extend((from as u32).to_le_bytes());
        info.extend(to.to_le_bytes());
        let parties: Vec<u8> = [1u32, 2, 3].iter().flat_map(|p| p.to_le_bytes()).collect();
        let mut aad = b"fedmkt secagg v1 share".to_vec();
        aad.extend(round.to_le_bytes());
        for field in [&(from as u32).to_le_bytes()[..], &to.to_le_bytes(), &2usize.to_le_bytes(), &parties] {
            aad.extend((field.len() as u64).to_le_bytes());
            aad.extend(field);
        }
        for their_key in ["encryption", "masking"] {
            let other: [u8; 32] = hex::decode(sender[their_key].as_str().unwrap()).unwrap().try_into().unwrap();
            let dh = *x25519_dalek::StaticSecret::from(masking).diffie_hellman(&other.into()).as_bytes();
            // The raw agreement as a key (the old design), and HKDF of it as our tool derives keys.
            let mut derived = [0u8; 32];
            hkdf::Hkdf::<sha2::Sha256>::new(None, &dh).expand(&info, &mut derived).unwrap();
            for key in [dh, derived] {
                let cipher = ChaCha20Poly1305::new(&key.into());
                let opened = cipher.decrypt(nonce.as_slice().into(), Payload { msg: &ciphertext, aad: &aad });
                assert!(opened.is_err(), "client 3's masking key opened the share from {from}");
            }
        }
        // The same attack with client 3's encryption key (which never leaves it) opens the
        // share: the attacker's derivation is the tool's, so the failures above are real.
        let own = read_json(&dir.path().join("fed/client-3/secret.json"));
        let own: [u8; 32] = hex::decode(own["encryption"].as_str().unwrap()).unwrap().try_into().unwrap();
        let other: [u8; 32] = hex::decode(sender["encryption"].as_str().unwrap()).unwrap().try_into().unwrap();
        let dh = *x25519_dalek::StaticSecret::from(own).diffie_hellman(&other.into()).as_bytes();
        let mut key = [0u8; 32];
        hkdf::Hkdf::<sha2::Sha256>::new(None, &dh).expand(&info, &mut key).unwrap();
        let opened = ChaCha20Poly1305::new(&key.into())
            .decrypt(nonce.as_slice().into(), Payload { msg: &ciphertext, aad: &aad });
        assert_eq!(opened.expect("the receiver's own key opens its share").len(), 72);
    }
}

#[test]
fn impossible_secure_aggregation_inputs_are_refused() {
    let dir = tempdir();
    let adapters = adapters(dir.path(), 4);
    let fed = Federation::new(dir.path(), "fed", 4);
    assert_bad_input(&fed.share(1, &["--threshold", "2"]), &["--threshold 2 of 4", "--allow-low-threshold"]);
    assert_bad_input(&fed.share(1, &["--threshold", "5"]), &["--threshold 5"]);
    let low = fed.share(1, &["--threshold", "2", "--allow-low-threshold"]);
    assert!(low.status.success() && String::from_utf8_lossy(&low.stderr).contains("warning"));
    assert_bad_input(&fed.share(1, &["--threshold", "3"]), &["dealt.json", "already dealt"]);
    for k in 2..=4 {
        assert_success(&fed.share(k, &["--threshold", "2", "--allow-low-threshold"]));
    }
    for weight in ["nan", "inf", "-1", "0", "1e12"] {
        assert_bad_input(&fed.mask(1, &[1, 2, 3, 4], &adapters[0], weight), &["--weight"]);
    }
    assert_bad_input(&fed.mask(1, &[2, 3, 4], &adapters[0], "1"), &["--shares", "own share"]);
    assert_bad_input(&fed.mask(1, &[1], &adapters[0], "1"), &["--shares", "2 needed"]);
    // A tampered public key fails its signature check at `share`.
    let mut public = read_json(&dir.path().join("fed/client-2/public.json"));
    public["masking"] = public["encryption"].clone();
    std::fs::write(dir.path().join("fed/client-2/public.json"), public.to_string()).unwrap();
    let fresh = Federation { dir: dir.path().join("fed"), n: 4 };
    std::fs::remove_file(dir.path().join("fed/client-3/dealt.json")).unwrap();
    assert_bad_input(
        &fresh.share(3, &["--allow-low-threshold", "--threshold", "2"]),
        &["client-2/public.json", "not signed"],
    );
}

#[test]
fn masked_files_of_different_rounds_are_refused() {
    let dir = tempdir();
    let adapters = adapters(dir.path(), 3);
    let fed = Federation::new(dir.path(), "fed", 3);
    fed.honest_round(&[1, 2, 3], &[1, 2, 3], &adapters);
    let other = Federation { dir: dir.path().join("fed-2"), n: 3 };
    for k in 1..=3 {
        let id = s(&fed.id(k));
        assert_success(&other.run(&["keygen", "--identity", &id, "--round", "2", "--out", &s(&other.keys(k))]));
    }
    let verify: Vec<String> = (1..=3).map(|v| fed.path(&format!("id/client-{v}/verify-key.json"))).collect();
    for k in 1..=3 {
        let mut args = vec![
            "share".to_string(),
            "--keys".into(),
            s(&other.keys(k)),
            "--out".into(),
            other.path(&format!("shares/from-{k}")),
            "--publics".into(),
        ];
        args.extend((1..=3).map(|v| other.path(&format!("client-{v}/public.json"))));
        args.push("--verify".into());
        args.extend(verify.clone());
        assert_success(&other.exec(args));
    }
    (1..=3).for_each(|k| assert_success(&other.mask(k, &[1, 2, 3], &adapters[k - 1], "1")));
    let out = dir.path().join("sum.parquet");
    let args = [
        "sum",
        "--masked",
        &fed.path("masked/client-1.parquet"),
        &other.path("masked/client-2.parquet"),
        "--out",
        &s(&out),
        "--survivors",
        &s(&dir.path().join("survivors.json")),
    ];
    assert_bad_input(&fed.run(&args), &["client-2.parquet", "another round"]);
    assert!(!out.exists());
}

/// A lying server's sum, its words rewritten: fewer words than its manifest (a slice out of
/// range, a panic, before), or its weight word changed (an adapter of garbage, exit 0, before).
/// `unmask` refuses both, naming the sum; what it cannot see is said in FORMATS.md.
#[test]
fn unmask_refuses_a_sum_that_does_not_add_up() {
    let dir = tempdir();
    let adapters = adapters(dir.path(), 3);
    let fed = Federation::new(dir.path(), "fed", 3);
    fed.honest_round(&[1, 2, 3], &[1, 2, 3], &adapters);
    let sum = PathBuf::from(fed.path("sum.parquet"));
    let table = fedmkt::io::read_parquet(&sum, fedmkt::aggregate::secagg::MASKED_FORMAT).unwrap();
    let words = table.values::<arrow_array::types::UInt64Type>("word").unwrap();
    let rewrite = |words: Vec<u64>| {
        let column: arrow_array::ArrayRef = std::sync::Arc::new(arrow_array::UInt64Array::from(words));
        let batch = arrow_array::RecordBatch::try_new(table.schema.clone(), vec![column]).unwrap();
        std::fs::remove_file(&sum).unwrap();
        fedmkt::io::write_parquet(&sum, batch.schema(), &[batch], &table.provenance).unwrap();
    };
    let out = dir.path().join("lied");
    rewrite(words[..words.len() / 2].to_vec());
    assert_bad_input(&fed.unmask(&[1, 2, 3], &out), &["sum.parquet", "words", "manifest"]);
    let mut heavier = words.clone();
    *heavier.last_mut().unwrap() ^= 1 << 62;
    rewrite(heavier);
    assert_bad_input(&fed.unmask(&[1, 2, 3], &out), &["sum.parquet", "total weight"]);
    assert!(!out.exists());
}

/// A lying server forwards a share whose sender advertised no keys this round (not in U1):
/// `mask` refuses it (it was accepted, and `reveal` then panicked on it).
#[test]
fn a_share_from_outside_u1_is_refused_at_mask() {
    let dir = tempdir();
    let adapters = adapters(dir.path(), 3);
    let fed = Federation::new(dir.path(), "fed", 3);
    (1..=3).for_each(|k| assert_success(&fed.share(k, &[])));
    let real = PathBuf::from(fed.path("shares/from-3/to-1.json"));
    let mut forged: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&real).unwrap()).unwrap();
    forged["from"] = serde_json::json!(9);
    std::fs::write(&real, forged.to_string()).unwrap();
    assert_bad_input(&fed.mask(1, &[1, 2, 3], &adapters[0], "1"), &["to-1.json", "party 9", "not in U1"]);
}

/// `aggregate average` of two committed adapters with weights 1 and 3 against
/// testdata/reference/golden_aggregate.py, which reads the safetensors files with Python's
/// standard library and averages in float64: every value the same to its last f32 bit or so.
#[test]
fn the_weighted_average_matches_the_python_reference() {
    let dir = tempdir();
    let golden = testdata("golden/aggregate");
    let expected = read_json(&golden.join("expected.json"));
    let out = dir.path().join("average");
    assert_success(&average(&[&golden.join("adapter-1"), &golden.join("adapter-2")], Some(&["1", "3"]), &out));
    let got = tensors(&out);
    let want = expected["tensors"].as_object().unwrap();
    assert_eq!(got.len(), want.len());
    for (name, values) in want {
        let key = name.as_str();
        let ours = got.get(key).unwrap_or_else(|| panic!("no tensor {key}"));
        for (i, v) in values.as_array().unwrap().iter().enumerate() {
            let v = v.as_f64().unwrap();
            // Both average in f64; the weights' order of operations may move the f32 result by
            // one unit in its last place.
            assert!(
                (ours[i] - v).abs() <= 2.0 * f32::EPSILON as f64 * v.abs() + 1e-12,
                "{key}[{i}]: {} vs {v}",
                ours[i]
            );
        }
    }
}
