//! `select`: DualMinCE worked by hand (nats per byte, ties to the receiver, first-listed
//! sender among equals), an empty selection, and bad input.
use std::path::{Path, PathBuf};

use arrow_array::{Array, StringArray};
use fedmkt::io::{self, Provenance};
use fedmkt::knowledge::{knowledge_batch, SampleKnowledge};
use fedmkt_tests::*;
use half::f16;

const TOKENS_HASH: &str = "sha256:receiver-tokens";

/// A sample with answer NLL `nll` over `tokens` tokens and `bytes` bytes, one position whose
/// top-2 ids are (marker, marker + 1), so the chosen row shows whose it is.
fn sample(id: &str, nll: f64, tokens: u32, bytes: u32, marker: u32) -> SampleKnowledge {
    SampleKnowledge {
        id: id.into(),
        answer_nll: nll,
        answer_tokens: tokens,
        answer_bytes: bytes,
        positions: vec![0],
        topk_ids: vec![marker, marker + 1],
        topk_logits: vec![f16::from_f32(1.0), f16::from_f32(0.0)],
        logsumexp: vec![2.0],
        tail_mass: vec![0.25],
    }
}

fn write(
    dir: &Path,
    name: &str,
    samples: &[SampleKnowledge],
    sender: Option<&str>,
    k: usize,
    tokens_hash: &str,
) -> PathBuf {
    let path = dir.join(name);
    let mut provenance = Provenance::new("knowledge", 1, "test")
        .input("dataset", "sha256:public".into())
        .input("tokenizer", "sha256:receiver-tokenizer".into())
        .input("tokens", tokens_hash.into())
        .extra("top_k", k)
        .extra("positions", "answer");
    if let Some(sender) = sender {
        provenance = provenance.extra("sender", sender);
    }
    let samples: Vec<SampleKnowledge> = samples.iter().map(|s| widen(s, k)).collect();
    let batch = knowledge_batch(&samples, k).unwrap();
    io::write_parquet(&path, batch.schema(), &[batch], &provenance).unwrap();
    path
}

fn widen(s: &SampleKnowledge, k: usize) -> SampleKnowledge {
    let mut s = s.clone();
    s.topk_ids.resize(s.positions.len() * k, fedmkt::align::PAD_ID);
    s.topk_logits.resize(s.positions.len() * k, f16::NEG_INFINITY);
    s
}

fn select(local: &Path, candidates: &[&Path], out: &Path) -> std::process::Output {
    let mut args = vec!["--local".to_string(), local.display().to_string(), "--candidates".into()];
    args.extend(candidates.iter().map(|c| c.display().to_string()));
    args.extend(["--out".into(), out.display().to_string()]);
    run("select", &args)
}

fn strings(table: &io::ParquetTable, column: &str) -> Vec<String> {
    table
        .batches
        .iter()
        .flat_map(|b| {
            b.column_by_name(column)
                .unwrap()
                .as_any()
                .downcast_ref::<StringArray>()
                .unwrap()
                .iter()
                .map(|s| s.unwrap().to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The hand-worked case's files: the receiver's own set and two senders' (see the comments).
fn hand_worked_sets(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let local = [
        sample("a", 5.0, 2, 10, 100), // 0.5 nats/byte
        sample("b", 5.0, 2, 10, 100), // 0.5
        sample("c", 5.0, 2, 10, 100), // 0.5
        sample("d", 5.0, 2, 10, 100), // 0.5
        sample("e", 3.0, 2, 10, 100), // 0.3 per byte, 1.5 per token
        sample("f", 5.0, 2, 10, 100), // 0.5
    ];
    let one = [
        sample("a", 4.0, 2, 10, 200),        // 0.4
        sample("b", 5.0 - 5e-9, 2, 10, 200), // 0.5 − 5e-10: within the tolerance, a tie
        sample("c", 2.0, 2, 10, 200),        // 0.2
        sample("d", 6.0, 2, 10, 200),        // 0.6: worse than the receiver
        sample("e", 2.0, 4, 5, 200),         // 0.4 per byte (worse), 0.5 per token (better)
        sample("f", 1.0, 1, 10, 200),        // 0.1
    ];
    let two = [
        sample("a", 3.0, 2, 10, 300), // 0.3
        sample("b", 5.0, 2, 10, 300), // 0.5: a tie
        sample("c", 2.0, 2, 10, 300), // 0.2: equal to client-1
        sample("d", 9.0, 2, 10, 300),
        sample("e", 9.0, 2, 10, 300),
        sample("f", 9.0, 2, 10, 300),
    ];
    let local = write(dir, "local.parquet", &local, None, 2, TOKENS_HASH);
    let c1 = write(dir, "c1.parquet", &one, Some("client-1"), 2, TOKENS_HASH);
    let c2 = write(dir, "c2.parquet", &two, Some("client-2"), 2, TOKENS_HASH);
    (local, c1, c2)
}

#[test]
fn dual_min_ce_by_hand() {
    let dir = tempdir();
    let (local, c1, c2) = hand_worked_sets(dir.path());
    let out = dir.path().join("selected.parquet");
    assert_success(&select(&local, &[&c1, &c2], &out));
    let table = io::read_parquet(&out, "selected").unwrap();
    // a → client-2 (0.3 < 0.4 < 0.5); b tie → receiver; c equal senders → client-1 (listed
    // first); d → receiver; e → receiver (per byte; per token client-1 would win);
    // f → client-1 (0.1 against client-2's 0.9).
    assert_eq!(strings(&table, "id"), ["a", "c", "f"]);
    assert_eq!(strings(&table, "party"), ["client-2", "client-1", "client-1"]);
    assert_eq!(table.provenance.extra["wins"], "client-1=2,client-2=1,receiver=3");
    let rows = read_selected(&out);
    assert_eq!(rows.iter().map(|r| r.topk_ids[0]).collect::<Vec<_>>(), [300, 200, 200], "the winner's aligned top-K");
}

/// `--fallback self`: the samples the receiver wins (b, d, e) are kept with its own rows
/// (marker 100) and party `self`; the senders' wins are as under the paper's rule.
#[test]
fn fallback_self_distils_the_receiver_towards_its_own_top_k_where_it_wins() {
    let dir = tempdir();
    let (local, c1, c2) = hand_worked_sets(dir.path());
    let out = dir.path().join("selected.parquet");
    let args: Vec<String> = [&local, &c1, &c2, &out].iter().map(|p| p.display().to_string()).collect();
    let flags = ["--local", &args[0], "--candidates", &args[1], &args[2], "--fallback", "self", "--out", &args[3]];
    assert_success(&run("select", flags));
    let table = io::read_parquet(&out, "selected").unwrap();
    assert_eq!(strings(&table, "id"), ["a", "b", "c", "d", "e", "f"]);
    assert_eq!(strings(&table, "party"), ["client-2", "self", "client-1", "self", "self", "client-1"]);
    assert_eq!(table.provenance.extra["wins"], "client-1=2,client-2=1,receiver=3");
    assert_eq!(table.provenance.extra["fallback"], "self");
    let rows = read_selected(&out);
    assert_eq!(rows.iter().map(|r| r.topk_ids[0]).collect::<Vec<_>>(), [300, 100, 200, 100, 100, 200]);
    let losses = |name| table.column::<arrow_array::Float64Array>(name).unwrap()[0].values().to_vec();
    // A receiver's own row: its loss on both sides (0.5 nats/byte for b and d, 0.3 for e).
    assert_eq!(losses("sender_loss")[1], 0.5);
    assert_eq!(losses("receiver_loss")[4], 0.3);
}

/// The knowledge columns of a `selected` file.
fn read_selected(path: &Path) -> Vec<SampleKnowledge> {
    fedmkt::knowledge::knowledge_rows(&io::read_parquet(path, "selected").unwrap(), 2).unwrap()
}

#[test]
fn nothing_selected_is_a_valid_empty_file() {
    let dir = tempdir();
    let local = write(dir.path(), "local.parquet", &[sample("a", 1.0, 1, 10, 1)], None, 2, TOKENS_HASH);
    let c1 = write(dir.path(), "c1.parquet", &[sample("a", 9.0, 1, 10, 2)], Some("client-1"), 2, TOKENS_HASH);
    let out = dir.path().join("selected.parquet");
    assert_success(&select(&local, &[&c1], &out));
    let table = io::read_parquet(&out, "selected").unwrap();
    assert_eq!(table.num_rows(), 0);
    assert_eq!(table.provenance.extra["wins"], "client-1=0,receiver=1");
    assert!(table.schema.field_with_name("topk_ids").is_ok(), "the schema is complete");
}

#[test]
fn candidates_that_do_not_belong_are_refused() {
    let dir = tempdir();
    let local = write(dir.path(), "local.parquet", &[sample("a", 1.0, 1, 10, 1)], None, 2, TOKENS_HASH);
    let out = dir.path().join("selected.parquet");
    let extra_sample = write(
        dir.path(),
        "extra.parquet",
        &[sample("a", 1.0, 1, 10, 2), sample("zz", 1.0, 1, 10, 2)],
        Some("c"),
        2,
        TOKENS_HASH,
    );
    assert_bad_input(&select(&local, &[&extra_sample], &out), &["extra.parquet", "has sample 'zz'"]);
    // A candidate must cover every sample of the receiver's set: a missing one would silently
    // lose that sender's vote.
    let two = write(
        dir.path(),
        "two.parquet",
        &[sample("a", 1.0, 1, 10, 1), sample("b", 1.0, 1, 10, 1)],
        None,
        2,
        TOKENS_HASH,
    );
    let one = write(dir.path(), "one.parquet", &[sample("b", 1.0, 1, 10, 2)], Some("c"), 2, TOKENS_HASH);
    assert_bad_input(&select(&two, &[&one], &out), &["one.parquet", "lacks sample 'a'"]);
    let mut three = sample("a", 1.0, 1, 10, 2);
    three.topk_ids.push(4);
    three.topk_logits.push(f16::from_f32(-1.0));
    let other_k = write(dir.path(), "k3.parquet", &[three], Some("c"), 3, TOKENS_HASH);
    assert_bad_input(&select(&local, &[&other_k], &out), &["k3.parquet", "another top-K"]);
    let other_tokens =
        write(dir.path(), "elsewhere.parquet", &[sample("a", 1.0, 1, 10, 2)], Some("c"), 2, "sha256:other");
    assert_bad_input(&select(&local, &[&other_tokens], &out), &["elsewhere.parquet", "other receiver tokens"]);
    let unaligned = write(dir.path(), "raw.parquet", &[sample("a", 1.0, 1, 10, 2)], None, 2, TOKENS_HASH);
    assert_bad_input(&select(&local, &[&unaligned], &out), &["raw.parquet", "run align first"]);
    assert_bad_input(&select(&other_tokens, &[&local], &out), &["elsewhere.parquet", "--local takes"]);
    // A sender's name must say whose wins they are: not one of select's own words, not twice.
    for reserved in ["self", "receiver"] {
        let named = write(dir.path(), "named.parquet", &[sample("a", 1.0, 1, 10, 2)], Some(reserved), 2, TOKENS_HASH);
        assert_bad_input(&select(&local, &[&named], &out), &["named.parquet", &format!("sender '{reserved}'")]);
    }
    let first = write(dir.path(), "first.parquet", &[sample("a", 1.0, 1, 10, 2)], Some("client-1"), 2, TOKENS_HASH);
    let again = write(dir.path(), "again.parquet", &[sample("a", 1.0, 1, 10, 3)], Some("client-1"), 2, TOKENS_HASH);
    assert_bad_input(
        &select(&local, &[&first, &again], &out),
        &["again.parquet", "sender 'client-1'", "first.parquet"],
    );
    assert!(!out.exists());
}

/// One check per knowledge row, at load, whoever wrote the file: each impossible value is
/// refused with the file, the sample and the value named.
#[test]
fn impossible_values_in_a_knowledge_file_are_refused() {
    let dir = tempdir();
    let good = write(dir.path(), "local.parquet", &[sample("a", 1.0, 1, 10, 1)], None, 2, TOKENS_HASH);
    let out = dir.path().join("selected.parquet");
    type Break = fn(&mut SampleKnowledge);
    let cases: [(&str, Break, &str); 7] = [
        ("nan-nll", |s| s.answer_nll = f64::NAN, "answer_nll NaN"),
        ("negative-nll", |s| s.answer_nll = -3.0, "answer_nll -3"),
        ("inf-lse", |s| s.logsumexp[0] = f32::INFINITY, "logsumexp inf"),
        ("nan-logit", |s| s.topk_logits[0] = f16::NAN, "logit NaN"),
        ("logit-above-lse", |s| s.topk_logits[0] = f16::from_f32(9.0), "logit 9"),
        ("pad-id-with-a-logit", |s| s.topk_ids[1] = fedmkt::align::PAD_ID, "neither a token"),
        (
            "positions-repeat",
            |s| {
                s.positions = vec![3, 3];
                s.logsumexp = vec![2.0, 2.0];
                s.tail_mass = vec![0.25, 0.25];
                s.topk_ids = vec![1, 2, 1, 2];
                s.topk_logits = vec![f16::from_f32(1.0), f16::from_f32(0.0), f16::from_f32(1.0), f16::from_f32(0.0)];
            },
            "not increasing",
        ),
    ];
    for (name, corrupt, says) in cases {
        let mut bad = sample("a", 0.5, 1, 10, 2);
        corrupt(&mut bad);
        let file = write(dir.path(), &format!("{name}.parquet"), &[bad], Some("c"), 2, TOKENS_HASH);
        assert_bad_input(&select(&good, &[&file], &out), &[&format!("{name}.parquet"), "sample 'a'", says]);
    }
    for tolerance in ["nan", "-1", "inf"] {
        let tolerance = format!("--tolerance={tolerance}");
        let args = [
            "--local",
            &good.display().to_string(),
            "--candidates",
            &good.display().to_string(),
            &tolerance,
            "--out",
            &out.display().to_string(),
        ];
        assert_bad_input(&run("select", args), &["--tolerance"]);
    }
    assert!(!out.exists());
}

/// A null answer NLL (read by Arrow as whatever bytes sit under it) and an answer of tokens
/// without bytes (which DualMinCE would silently drop) are refused, naming the file.
#[test]
fn nulls_and_answers_without_bytes_are_refused() {
    use std::sync::Arc;
    let dir = tempdir();
    let local = write(dir.path(), "local.parquet", &[sample("a", 1.0, 1, 10, 1)], None, 2, TOKENS_HASH);
    let out = dir.path().join("selected.parquet");
    let good = write(dir.path(), "c.parquet", &[sample("a", 0.5, 1, 10, 2)], Some("c"), 2, TOKENS_HASH);
    let table = io::read_parquet(&good, "knowledge").unwrap();
    let batch = &table.batches[0];
    let index = batch.schema().index_of("answer_nll").unwrap();
    let mut columns = batch.columns().to_vec();
    columns[index] = Arc::new(arrow_array::Float64Array::from(vec![None::<f64>]));
    let mut fields: Vec<arrow_schema::Field> = batch.schema().fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[index] = fields[index].clone().with_nullable(true);
    let nulled = arrow_array::RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns).unwrap();
    let null_file = dir.path().join("null.parquet");
    io::write_parquet(&null_file, nulled.schema(), &[nulled], &table.provenance).unwrap();
    assert_bad_input(&select(&local, &[&null_file], &out), &["null.parquet", "'answer_nll' holds a null"]);
    let no_bytes = write(dir.path(), "nobytes.parquet", &[sample("a", 0.5, 1, 0, 2)], Some("c"), 2, TOKENS_HASH);
    assert_bad_input(&select(&local, &[&no_bytes], &out), &["nobytes.parquet", "0 answer bytes"]);
    assert!(!out.exists());
}

/// `select` on real knowledge sets of the tiny models (testdata/golden/select/) against
/// testdata/reference/golden_select.py, DualMinCE computed with pyarrow alone: the same
/// winners and losses, the winners' aligned rows, and under `--fallback self` the receiver's own
/// rows where it wins.
#[test]
fn selection_matches_the_python_reference() {
    let golden = testdata("golden/select");
    let expected = read_json(&golden.join("expected.json"));
    let rows = expected["rows"].as_array().unwrap();
    let dir = tempdir();
    let (local, c1, c2) =
        (golden.join("local.parquet"), golden.join("from-client-1.parquet"), golden.join("from-client-2.parquet"));
    let knowledge = |path: &Path| fedmkt::knowledge::read_knowledge(path).unwrap().0;
    let by_party = |party: &str| match party {
        "client-1" => knowledge(&c1),
        "client-2" => knowledge(&c2),
        _ => knowledge(&local),
    };
    for fallback in ["drop", "self"] {
        let out = dir.path().join(format!("{fallback}.parquet"));
        let args = [&local, &c1, &c2, &out].map(|p| p.display().to_string());
        let flags =
            ["--local", &args[0], "--candidates", &args[1], &args[2], "--fallback", fallback, "--out", &args[3]];
        assert_success(&run("select", flags));
        let table = io::read_parquet(&out, "selected").unwrap();
        assert_eq!(table.provenance.extra["wins"], expected["wins"].as_str().unwrap());
        let kept: Vec<&serde_json::Value> =
            rows.iter().filter(|r| fallback == "self" || r["party"] != "self").collect();
        assert_eq!(strings(&table, "id"), kept.iter().map(|r| r["id"].as_str().unwrap()).collect::<Vec<_>>());
        assert_eq!(strings(&table, "party"), kept.iter().map(|r| r["party"].as_str().unwrap()).collect::<Vec<_>>());
        let losses = |name: &str| table.column::<arrow_array::Float64Array>(name).unwrap()[0].values().to_vec();
        for (i, row) in kept.iter().enumerate() {
            for name in ["sender_loss", "receiver_loss"] {
                assert!((losses(name)[i] - row[name].as_f64().unwrap()).abs() < 1e-12, "{fallback} {name} {row}");
            }
        }
        let selected = fedmkt::knowledge::knowledge_rows(&table, 4).unwrap();
        for (got, row) in selected.iter().zip(&kept) {
            let source = by_party(row["party"].as_str().unwrap());
            assert_eq!(Some(got), source.iter().find(|s| s.id == got.id), "{fallback}: the winner's row");
        }
    }
}
