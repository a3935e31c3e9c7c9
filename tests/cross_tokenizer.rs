//! The paper's client tokenizers beside our models': GPT-2's (rebuilt from tiktoken-rs's
//! ranks, checked against tiktoken's own encoder), a Bloom-style one (byte-level BPE behind
//! Bloom's split, `testdata/tokenizers/bloom-style`), and the byte-level (SmolLM2's family)
//! and SentencePiece-style (Gemma's) ones. `vocab-map` and `align` need nothing new for them:
//! the map equals brute force between every pair, and alignment matches only tokens that
//! start at the same byte, every token with itself.
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use fedmkt::align::{by_offsets, dtw, matches, Strategy};
use fedmkt::data::{read_tasks, TaskRecord};
use fedmkt::tokens::{load_tokenizer, tokenize_record, TokenizedSample};
use fedmkt::vocab::{min_edit_mapping, token_texts, BruteForce, TokenText};
use fedmkt_tests::*;

const FAMILIES: [&str; 4] = ["gpt2", "bloom-style", "bytelevel", "spm"];

/// GPT-2's `tokenizer.json`, written once per test process.
fn gpt2_tokenizer() -> &'static PathBuf {
    static PATH: OnceLock<(tempfile::TempDir, PathBuf)> = OnceLock::new();
    &PATH
        .get_or_init(|| {
            let dir = tempdir();
            let path = gpt2::write_tokenizer(dir.path());
            (dir, path)
        })
        .1
}

fn tokenizer_path(family: &str) -> PathBuf {
    match family {
        "gpt2" => gpt2_tokenizer().clone(),
        other => testdata(&format!("tokenizers/{other}/tokenizer.json")),
    }
}

/// The ARC-Easy and BoolQ fixtures' records.
fn task_records() -> Vec<TaskRecord> {
    let files = ["arc-easy", "boolq"].into_iter().flat_map(|task| ["public", "eval"].map(|split| (task, split)));
    files
        .flat_map(|(task, split)| read_tasks(&testdata(&format!("data/tasks/{task}/{split}.parquet"))).unwrap().0)
        .collect()
}

#[test]
fn gpt2s_tokenizer_json_encodes_as_tiktoken() {
    let tokenizer = load_tokenizer(gpt2_tokenizer()).unwrap();
    let tiktoken = gpt2::tiktoken();
    let corpus = std::fs::read_to_string(testdata("corpus/kjv-genesis.txt")).unwrap();
    let arc = task_records().into_iter().map(|r| format!("{}{}", r.context, r.target()));
    let texts: Vec<String> = corpus.lines().map(String::from).chain(arc).collect();
    let tokens = texts.iter().fold(0, |tokens, text| {
        let ours = tokenizer.encode(text.as_str(), true).unwrap();
        assert_eq!(ours.get_ids(), tiktoken.encode_ordinary(text).as_slice(), "{text:?}");
        tokens + ours.get_ids().len()
    });
    assert!(tokens > 50_000, "{tokens} tokens");
    let special = tokenizer.encode(gpt2::END_OF_TEXT, true).unwrap();
    assert_eq!(special.get_ids(), tiktoken.encode_with_special_tokens(gpt2::END_OF_TEXT).as_slice());
}

/// Every `stride`-th source token's mapping equals brute force (GPT-2's 50k tokens against a
/// 1k vocabulary are checked one in ten).
fn assert_map_equals_brute_force(source: &[TokenText], target: &[TokenText], what: &str) {
    let fast = min_edit_mapping(source, target);
    let brute_force = BruteForce::new(target);
    let stride = (source.len() * target.len()).div_ceil(5_000_000).max(1);
    for i in (0..source.len()).step_by(stride) {
        assert_eq!(fast[i], brute_force.map(&source[i]), "{what}: source id {i} {:?}", source[i].raw);
    }
}

#[test]
fn vocab_maps_between_the_families_equal_brute_force() {
    let vocabularies = vocabularies();
    assert_eq!(vocabularies[0].len(), 50_257);
    for (a, source) in FAMILIES.iter().zip(&vocabularies) {
        for (b, target) in FAMILIES.iter().zip(&vocabularies).filter(|(b, _)| *b != a) {
            assert_map_equals_brute_force(source, target, &format!("{a} → {b}"));
        }
    }
}

struct Tokenized {
    samples: Vec<TokenizedSample>,
    map_to: Vec<Vec<u32>>,
}

fn vocabularies() -> Vec<Vec<TokenText>> {
    FAMILIES.iter().map(|f| token_texts(&tokenizer_path(f)).unwrap()).collect()
}

fn tokenized_by_every_family(records: &[TaskRecord], vocabularies: &[Vec<TokenText>]) -> Vec<Tokenized> {
    FAMILIES
        .iter()
        .zip(vocabularies)
        .map(|(family, source)| {
            let tokenizer = load_tokenizer(&tokenizer_path(family)).unwrap();
            Tokenized {
                samples: records.iter().map(|r| tokenize_record(&tokenizer, r).unwrap()).collect(),
                map_to: vocabularies
                    .iter()
                    .map(|t| min_edit_mapping(source, t).iter().map(|m| m.target).collect())
                    .collect(),
            }
        })
        .collect()
}

/// Receiver tokens: all of them, those that start a span (not a special token's empty span,
/// not a byte-fallback piece after the first of its character), and those matched, with
/// every matched pair checked to start at the same byte (dtw's pairs that do not are
/// dropped, as `align` drops them).
#[derive(Default, Debug, PartialEq)]
struct Counts {
    tokens: usize,
    starting: usize,
    matched: usize,
}

fn count_matches(
    strategy: Strategy,
    sender: &Tokenized,
    receiver: &Tokenized,
    to: usize,
    texts: (&[TokenText], &[TokenText]),
) -> Counts {
    let mut counts = Counts::default();
    for (s, r) in sender.samples.iter().zip(&receiver.samples) {
        let alignment = match strategy {
            Strategy::Offsets => by_offsets(&spans(s), &spans(r)),
            Strategy::Dtw => dtw(&symbols(&s.input_ids, texts.0), &symbols(&r.input_ids, texts.1)),
        };
        let matched = matches(&alignment, &s.input_ids, &r.input_ids, &sender.map_to[to]);
        let (sender_spans, receiver_spans) = (span_counts(s), span_counts(r));
        for (j, i) in matched.into_iter().enumerate() {
            counts.tokens += 1;
            let span = (r.token_start[j], r.token_end[j]);
            let alone_on_both_sides = sender_spans.get(&span) == Some(&1) && receiver_spans[&span] == 1;
            if strategy == Strategy::Offsets && span.0 < span.1 && alone_on_both_sides {
                assert!(i.is_some(), "{}: receiver {j} covers the bytes of one sender token and is unmatched", r.id);
            }
            counts.starting +=
                usize::from(r.token_start[j] < r.token_end[j] && (j == 0 || r.token_end[j - 1] <= r.token_start[j]));
            let Some(i) = i else { continue };
            if strategy == Strategy::Offsets {
                assert_eq!(s.token_start[i], r.token_start[j], "{}: sender {i}, receiver {j}", s.id);
            }
            counts.matched += usize::from(s.token_start[i] == r.token_start[j]);
        }
    }
    counts
}

/// How many tokens of a sample cover each span.
fn span_counts(s: &TokenizedSample) -> HashMap<(u32, u32), usize> {
    let mut counts = HashMap::new();
    for span in spans(s) {
        *counts.entry(span).or_insert(0) += 1;
    }
    counts
}

fn spans(s: &TokenizedSample) -> Vec<(u32, u32)> {
    s.token_start.iter().copied().zip(s.token_end.iter().copied()).collect()
}

fn symbols<'a>(ids: &[u32], vocab: &'a [TokenText]) -> Vec<&'a [u32]> {
    ids.iter().map(|&id| vocab[id as usize].symbols.as_slice()).collect()
}

#[test]
fn alignment_between_the_families_matches_tokens_that_start_together() {
    let records = task_records();
    let vocabularies = vocabularies();
    let tokenized = tokenized_by_every_family(&records, &vocabularies);
    let mut report = String::new();
    for (a, sender) in tokenized.iter().enumerate() {
        for (b, receiver) in tokenized.iter().enumerate() {
            let texts = (vocabularies[a].as_slice(), vocabularies[b].as_slice());
            let offsets = count_matches(Strategy::Offsets, sender, receiver, b, texts);
            let dtw = count_matches(Strategy::Dtw, sender, receiver, b, texts);
            let share = |c: &Counts| c.matched as f64 / c.tokens as f64;
            report += &format!(
                "{} → {}: {} tokens, offsets {:.3}, dtw {:.3}\n",
                FAMILIES[a],
                FAMILIES[b],
                offsets.tokens,
                share(&offsets),
                share(&dtw)
            );
            if a == b {
                assert_eq!(
                    offsets.matched, offsets.starting,
                    "{}: every token with a span matches itself",
                    FAMILIES[a]
                );
                assert_eq!(dtw.matched, dtw.tokens, "{}: by text, every token matches itself", FAMILIES[a]);
            }
        }
    }
    eprintln!("{} ARC-Easy and BoolQ samples, receiver tokens matched:\n{report}", records.len());
}
