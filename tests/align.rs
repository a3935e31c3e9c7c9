//! `align`: hand-worked alignments (the paper's 'util' + 'ize' ↔ 'utilize', one-to-many,
//! byte-fallback characters, a token at the very start), logit mapping with log-sum-exp
//! merging, the next-token direction, and the tool on files (invariants and bad input).
use std::path::{Path, PathBuf};

use fedmkt::align::{
    self, align_sample, by_offsets, dtw, map_top_k, matches, AlignOptions, Aligned, Fallback, Pair, Strategy, PAD_ID,
};
use fedmkt::knowledge::SampleKnowledge;
use fedmkt::tokens::TokenizedSample;
use fedmkt::vocab::{symbols_of, TokenText};
use fedmkt_tests::*;
use half::f16;

/// One side of a hand-worked case: token i has id i in its own vocabulary; "<s>" is a
/// special token with the empty span, every other token covers its bytes in order. A token
/// written "<0xNN>" is one byte of the character the following `<0x..>` pieces complete,
/// sharing that character's span (as byte-fallback pieces do in token files).
struct Side {
    sample: TokenizedSample,
    vocab: Vec<TokenText>,
}

fn side(tokens: &[&str], answer_start: u32) -> Side {
    let (mut start, mut starts, mut ends, mut vocab) = (0u32, vec![], vec![], vec![]);
    let mut i = 0;
    while i < tokens.len() {
        let piece = tokens[i];
        if piece == "<s>" {
            starts.push(0);
            ends.push(0);
            vocab.push(TokenText {
                bytes: piece.into(),
                symbols: symbols_of(piece.as_bytes()),
                special: true,
                roles: vec![],
                raw: piece.into(),
            });
            i += 1;
            continue;
        }
        let run = tokens[i..].iter().take_while(|t| t.starts_with("<0x")).count().max(1);
        let bytes: Vec<Vec<u8>> =
            tokens[i..i + run].iter().map(|t| byte_of(t).map_or_else(|| t.as_bytes().to_vec(), |b| vec![b])).collect();
        let width: u32 = bytes.iter().map(|b| b.len() as u32).sum();
        for b in bytes {
            starts.push(start);
            ends.push(start + width);
            vocab.push(TokenText {
                symbols: symbols_of(&b),
                bytes: b,
                special: false,
                roles: vec![],
                raw: tokens[i].into(),
            });
        }
        start += width;
        i += run;
    }
    let n = tokens.len() as u32;
    let sample = TokenizedSample {
        id: "s".into(),
        input_ids: (0..n).collect(),
        answer_start,
        token_start: starts,
        token_end: ends,
        context_bytes: 0,
        text_bytes: start,
    };
    Side { sample, vocab }
}

fn byte_of(token: &str) -> Option<u8> {
    token.strip_prefix("<0x")?.strip_suffix('>').and_then(|h| u8::from_str_radix(h, 16).ok())
}

/// A sender map by token text: `pairs` name (sender token, receiver token); others map to
/// the receiver token of the same text, else to receiver id 0.
fn map_by_text(sender: &[&str], receiver: &[&str], pairs: &[(&str, &str)]) -> Vec<u32> {
    let find = |t: &str| receiver.iter().position(|r| *r == t).map(|i| i as u32);
    sender
        .iter()
        .map(|s| pairs.iter().find(|p| p.0 == *s).and_then(|p| find(p.1)).or_else(|| find(s)).unwrap_or(0))
        .collect()
}

const SENDER: [&str; 10] =
    ["we", " util", "ize", " the", " dynamic", " programming", " approach", " to", " align", " tokens"];
const RECEIVER: [&str; 9] =
    ["we", " utilize", " the", " dynamic", " programming", " approach", " to", " align", " tokens"];

fn matched_senders(strategy: Strategy, sender: &[&str], receiver: &[&str], map: &[u32]) -> Vec<Option<usize>> {
    let (s, r) = (side(sender, 0), side(receiver, 0));
    let alignment = match strategy {
        Strategy::Offsets => by_offsets(&spans(&s.sample), &spans(&r.sample)),
        Strategy::Dtw => dtw(&texts(&s.vocab), &texts(&r.vocab)),
    };
    matches(&alignment, &s.sample.input_ids, &r.sample.input_ids, map)
}

fn spans(s: &TokenizedSample) -> Vec<(u32, u32)> {
    s.token_start.iter().copied().zip(s.token_end.iter().copied()).collect()
}

fn texts(vocab: &[TokenText]) -> Vec<&[u32]> {
    vocab.iter().map(|t| t.symbols.as_slice()).collect()
}

#[test]
fn paper_sentence_many_to_one_by_offsets() {
    // 'util' + 'ize' cover ' utilize': ' utilize' is matched to ' util' because the map takes
    // ' util' to ' utilize' (paper App. B); 'ize' matches nothing; the rest one to one.
    let map = map_by_text(&SENDER, &RECEIVER, &[(" util", " utilize"), ("ize", " the")]);
    let got = matched_senders(Strategy::Offsets, &SENDER, &RECEIVER, &map);
    assert_eq!(got, vec![Some(0), Some(1), Some(3), Some(4), Some(5), Some(6), Some(7), Some(8), Some(9)]);
    // Without that map entry the group has no match.
    let plain = map_by_text(&SENDER, &RECEIVER, &[(" util", " the")]);
    assert_eq!(matched_senders(Strategy::Offsets, &SENDER, &RECEIVER, &plain)[1], None);
}

#[test]
fn paper_sentence_by_dynamic_programming() {
    // Worked by hand: D(' util',' utilize') = 3, then 'ize' is cheaper against ' the'
    // (lev 3, total 6) than against ' utilize' (lev 5, total 8), so the path is
    // (0,0) (1,1) (2,2) (3,2) (4,3) … : ' util' ↔ ' utilize' one to one, and 'ize' + ' the'
    // ↔ ' the', whose first sender token 'ize' does not map to ' the': no match there.
    let (s, r) = (side(&SENDER, 0), side(&RECEIVER, 0));
    let alignment = dtw(&texts(&s.vocab), &texts(&r.vocab));
    let expected: Vec<Vec<usize>> =
        vec![vec![0], vec![1], vec![2, 3], vec![4], vec![5], vec![6], vec![7], vec![8], vec![9]];
    assert_eq!(alignment.receiver_to_sender, expected);
    let map = map_by_text(&SENDER, &RECEIVER, &[(" util", " utilize"), ("ize", " utilize")]);
    let got = matches(&alignment, &s.sample.input_ids, &r.sample.input_ids, &map);
    assert_eq!(got, vec![Some(0), Some(1), None, Some(4), Some(5), Some(6), Some(7), Some(8), Some(9)]);
}

#[test]
fn dynamic_programming_prefers_the_diagonal_on_ties() {
    // D = [[1, 1], [1, 2]] for 'x','y' against 'y','x': from (2,2) all three moves cost 1;
    // the diagonal wins, so the path is (0,0) (1,1).
    let x = symbols_of(b"x");
    let y = symbols_of(b"y");
    let alignment = dtw(&[&x, &y], &[&y, &x]);
    assert_eq!(alignment.receiver_to_sender, vec![vec![0], vec![1]]);
}

#[test]
fn one_to_many_matches_the_first_receiver_token_through_the_map() {
    // The sender's ' utilize' covers the receiver's ' util' + 'ize'.
    let map = map_by_text(&RECEIVER, &SENDER, &[(" utilize", " util")]);
    let got = matched_senders(Strategy::Offsets, &RECEIVER, &SENDER, &map);
    assert_eq!(&got[..4], &[Some(0), Some(1), None, Some(2)]);
    let elsewhere = map_by_text(&RECEIVER, &SENDER, &[(" utilize", "ize")]);
    assert_eq!(
        &matched_senders(Strategy::Offsets, &RECEIVER, &SENDER, &elsewhere)[..4],
        &[Some(0), None, None, Some(2)]
    );
}

#[test]
fn byte_fallback_pieces_share_their_character() {
    // Sender: SentencePiece byte fallback for 'é' (two pieces, one span); receiver: 'é' whole.
    let sender = ["caf", "<0xC3>", "<0xA9>", " au", " lait"];
    let receiver = ["caf", "é", " au", " lait"];
    let map = map_by_text(&sender, &receiver, &[("<0xC3>", "é")]);
    assert_eq!(matched_senders(Strategy::Offsets, &sender, &receiver, &map), vec![Some(0), Some(1), Some(3), Some(4)]);
    // And the other way: the receiver's two pieces; only the first can match, and only
    // when the map takes 'é' to it.
    let back = map_by_text(&receiver, &sender, &[("é", "<0xC3>")]);
    assert_eq!(
        matched_senders(Strategy::Offsets, &receiver, &sender, &back),
        vec![Some(0), Some(1), None, Some(2), Some(3)]
    );
    let back = map_by_text(&receiver, &sender, &[("é", "caf")]);
    assert_eq!(
        matched_senders(Strategy::Offsets, &receiver, &sender, &back),
        vec![Some(0), None, None, Some(2), Some(3)]
    );
}

/// Sender knowledge with one row per sender position 0..n−1: position p's top-2 are
/// (id p+1, logit p), (id 0, logit −1), normaliser 10 + p.
fn knowledge_of(sender: &TokenizedSample) -> SampleKnowledge {
    let n = sender.input_ids.len() as u32 - 1;
    SampleKnowledge {
        id: "s".into(),
        answer_nll: 1.5,
        answer_tokens: 2,
        answer_bytes: 3,
        positions: (0..n).collect(),
        topk_ids: (0..n).flat_map(|p| [p + 1, 0]).collect(),
        topk_logits: (0..n).flat_map(|p| [f16::from_f32(p as f32), f16::from_f32(-1.0)]).collect(),
        logsumexp: (0..n).map(|p| 10.0 + p as f32).collect(),
        tail_mass: (0..n).map(|p| 0.01 * p as f32).collect(),
    }
}

fn run_sample(sender: &Side, receiver: &Side, map: &[u32], fallback: Fallback) -> Aligned {
    run_with(Strategy::Offsets, sender, receiver, map, fallback)
}

fn run_with(strategy: Strategy, sender: &Side, receiver: &Side, map: &[u32], fallback: Fallback) -> Aligned {
    let knowledge = knowledge_of(&sender.sample);
    let pair = Pair { sender: &sender.sample, knowledge: &knowledge, receiver: &receiver.sample, k: 2 };
    let opts = AlignOptions { strategy, fallback, sender: "a".into() };
    align_sample(&pair, map, (&sender.vocab, &receiver.vocab), true, &opts)
}

/// An all-positions set that knows the sender's last position (what follows the whole text,
/// an unlabelled sample's answer) gives it to the receiver's last position, whatever the
/// tokens before: here the receiver's last token 'abcd' matches no sender token.
#[test]
fn the_last_position_takes_the_senders_last_position() {
    let (sender, receiver) = (side(&["x", "a", "bcd"], 0), side(&["x", "abcd"], 0));
    // Every sender token maps to 'x' (receiver 0), so no receiver token is matched.
    let map = vec![0u32; 3];
    let mut knowledge = knowledge_of(&sender.sample);
    // Sender position 2 (its last): top-2 (id 2, logit 2), (id 0, logit −1), normaliser 12.
    knowledge.positions.push(2);
    knowledge.topk_ids.extend([2, 0]);
    knowledge.topk_logits.extend([f16::from_f32(2.0), f16::from_f32(-1.0)]);
    knowledge.logsumexp.push(12.0);
    knowledge.tail_mass.push(0.5);
    let pair = Pair { sender: &sender.sample, knowledge: &knowledge, receiver: &receiver.sample, k: 2 };
    let opts = AlignOptions { strategy: Strategy::Offsets, fallback: Fallback::Skip, sender: "a".into() };
    let got = align_sample(&pair, &map, (&sender.vocab, &receiver.vocab), true, &opts);
    // Receiver position 0 predicts 'abcd', which matches no sender token; position 1 is last.
    assert_eq!(got.knowledge.positions, vec![1]);
    assert_eq!((got.knowledge.logsumexp[0], got.knowledge.tail_mass[0]), (12.0, 0.5));
    // Ids 2 and 0 both land on receiver 0: merged, the freed slot padding.
    assert_eq!(got.knowledge.topk_ids, vec![0, PAD_ID]);
    assert_eq!((got.matched, got.unmatched), (1, 1));
    // Without the sender's last row (the answer positions' sets), nothing is added.
    assert_eq!(run_sample(&sender, &receiver, &map, Fallback::Skip).knowledge.positions, Vec::<u32>::new());
}

/// DTW aligns 'a' ↔ 'ab' and 'bcd' ↔ 'cd' one to one (cost 1 each); 'bcd' starts at byte 1,
/// 'cd' at byte 2, so that pair is not a match (the authors' rule), while 'a' ↔ 'ab' is.
#[test]
fn dtw_matches_only_tokens_that_start_at_the_same_byte() {
    let (sender, receiver) = (side(&["x", "a", "bcd"], 0), side(&["x", "ab", "cd"], 0));
    let map = map_by_text(&["x", "a", "bcd"], &["x", "ab", "cd"], &[("a", "ab"), ("bcd", "cd")]);
    let got = run_with(Strategy::Dtw, &sender, &receiver, &map, Fallback::Skip);
    // Receiver position 0 predicts 'ab' (matched to sender 'a': sender position 0);
    // position 1 predicts 'cd', whose pair starts elsewhere: unmatched.
    assert_eq!(got.knowledge.positions, vec![0]);
    assert_eq!((got.matched, got.unmatched), (1, 1));
}

#[test]
fn receiver_positions_take_the_distribution_predicting_the_matched_next_token() {
    // Receiver starts with a special token the sender lacks. Receiver position 0 (<s>)
    // predicts 'we', the sender's first token, which nothing of the sender predicts: no
    // match. Position 1 ('we') predicts ' utilize' ↔ ' util': the sender's position 0.
    // Position 2 (' utilize') predicts ' the' ↔ sender token 3: the sender's position 2.
    let mut receiver_tokens = vec!["<s>"];
    receiver_tokens.extend(RECEIVER);
    let (sender, receiver) = (side(&SENDER, 0), side(&receiver_tokens, 0));
    let map: Vec<u32> = map_by_text(&SENDER, &receiver_tokens, &[(" util", " utilize")]);
    let got = run_sample(&sender, &receiver, &map, Fallback::Skip);
    assert_eq!(got.knowledge.positions, (1..9).collect::<Vec<u32>>());
    assert_eq!((got.matched, got.unmatched), (8, 1));
    // Receiver position 2 ← sender position 2: top ids (3 → ' the' → receiver 3, logit 2)
    // and (0 → 'we' → receiver 1, logit −1); the normaliser is carried over.
    assert_eq!(&got.knowledge.topk_ids[2..4], &[3, 1]);
    assert_eq!(&got.knowledge.topk_logits[2..4], &[f16::from_f32(2.0), f16::from_f32(-1.0)]);
    assert_eq!(got.knowledge.logsumexp[1], 12.0);
    assert_eq!(got.knowledge.logsumexp[0], 10.0, "receiver position 1 takes sender position 0");
    // One-hot fallback: position 0 gets the receiver's NEXT token ('we', id 1), not <s>.
    let onehot = run_sample(&sender, &receiver, &map, Fallback::Onehot);
    assert_eq!(onehot.knowledge.positions, (0..9).collect::<Vec<u32>>());
    assert_eq!(&onehot.knowledge.topk_ids[..2], &[1, PAD_ID]);
    assert_eq!(onehot.knowledge.topk_logits[1], f16::NEG_INFINITY);
    assert_eq!((onehot.knowledge.logsumexp[0], onehot.knowledge.topk_logits[0]), (0.0, f16::ZERO));
    // Per-sample metrics are the sender's.
    assert_eq!((got.knowledge.answer_nll, got.knowledge.answer_bytes), (1.5, 3));
}

#[test]
fn ids_landing_on_one_receiver_id_merge_by_log_sum_exp() {
    let ids = [5, 7, 9, 11];
    let logits = [2.0f32, 1.0, 0.5, -3.0].map(f16::from_f32);
    // 5 and 9 land on 1; 7 on 2; 11 is beyond the map (dropped).
    let map = [0, 0, 0, 0, 0, 1, 0, 2, 0, 1];
    let (got_ids, got_logits) = map_top_k(&ids, &logits, &map);
    assert_eq!(got_ids, vec![1, 2, PAD_ID, PAD_ID]);
    let merged = (2.0f64.exp() + 0.5f64.exp()).ln();
    assert!((got_logits[0].to_f64() - merged).abs() < 2e-3, "{} vs {merged}", got_logits[0]);
    assert_eq!(got_logits[1], f16::from_f32(1.0));
    assert!(got_logits[2..].iter().all(|l| *l == f16::NEG_INFINITY));
}

// ---------------------------------------------------------------- the tool on files

struct Setup {
    dir: tempfile::TempDir,
    sender_tokens: PathBuf,
    receiver_tokens: PathBuf,
    knowledge: PathBuf,
    map: PathBuf,
}

fn tok(model: &str) -> PathBuf {
    testdata(&format!("data/tokens/{model}/arc-easy-eval.parquet"))
}

fn tokenizer(model: &str) -> PathBuf {
    testdata(&format!("models/{model}/tokenizer.json"))
}

/// tiny-llama's knowledge on its ARC-Easy tokens, and the tiny-llama → tiny-gemma3 map.
fn setup(extra: &[&str]) -> Setup {
    let dir = tempdir();
    let knowledge = dir.path().join("llama.parquet");
    let mut args = vec![
        "--model".to_string(),
        testdata("models/tiny-llama").display().to_string(),
        "--input".into(),
        tok("tiny-llama").display().to_string(),
        "--top-k".into(),
        "4".into(),
        "--out".into(),
        knowledge.display().to_string(),
    ];
    args.extend(extra.iter().map(|s| s.to_string()));
    assert_success(&run("infer-logits", &args));
    let map = dir.path().join("llama_to_gemma.parquet");
    assert_success(&run(
        "vocab-map",
        [
            "--from",
            tokenizer("tiny-llama").to_str().unwrap(),
            "--to",
            tokenizer("tiny-gemma3").to_str().unwrap(),
            "--out",
            map.to_str().unwrap(),
        ],
    ));
    Setup { sender_tokens: tok("tiny-llama"), receiver_tokens: tok("tiny-gemma3"), knowledge, map, dir }
}

fn align_files(s: &Setup, overrides: &[(&str, &Path)], extra: &[&str], out: &Path) -> std::process::Output {
    let mut args: Vec<(String, PathBuf)> = vec![
        ("--sender-tokens".into(), s.sender_tokens.clone()),
        ("--knowledge".into(), s.knowledge.clone()),
        ("--receiver-tokens".into(), s.receiver_tokens.clone()),
        ("--map".into(), s.map.clone()),
        ("--sender-tokenizer".into(), tokenizer("tiny-llama")),
        ("--receiver-tokenizer".into(), tokenizer("tiny-gemma3")),
    ];
    for (flag, path) in overrides {
        args.iter_mut().find(|(f, _)| f == flag).expect("a known flag").1 = path.to_path_buf();
    }
    let mut flat: Vec<String> = args.into_iter().flat_map(|(f, p)| [f, p.display().to_string()]).collect();
    flat.extend(extra.iter().map(|s| s.to_string()));
    flat.extend(["--out".into(), out.display().to_string()]);
    run("align", &flat)
}

#[test]
fn aligned_files_keep_mass_and_cover_the_receivers_answer_positions() {
    let s = setup(&[]);
    let (sender, _) = fedmkt::knowledge::read_knowledge(&s.knowledge).unwrap();
    let (receiver_tokens, _) = fedmkt::tokens::read_tokens(&s.receiver_tokens).unwrap();
    for strategy in ["offsets", "dtw"] {
        let out = s.dir.path().join(format!("{strategy}.parquet"));
        assert_success(&align_files(
            &s,
            &[],
            &["--strategy", strategy, "--fallback", "onehot", "--sender", "client-1"],
            &out,
        ));
        let (aligned, table) = fedmkt::knowledge::read_knowledge(&out).unwrap();
        assert_eq!(table.provenance.extra["sender"], "client-1");
        assert_eq!(table.input_hash("tokens").unwrap(), fedmkt::io::file_hash(&s.receiver_tokens).unwrap());
        let mut matched = 0;
        for ((a, snd), r) in aligned.iter().zip(&sender).zip(&receiver_tokens) {
            let want: Vec<u32> = fedmkt::knowledge::answer_positions(r).map(|p| p as u32).collect();
            assert_eq!(a.positions, want, "{strategy}: every receiver answer position, in order");
            assert_eq!(a.answer_nll, snd.answer_nll);
            // A mapped row keeps the sender's top-K mass exactly (merging adds probabilities).
            for row in 0..a.positions.len() {
                let mass = |ids: &[u32], logits: &[f16], lse: f32| {
                    ids.iter()
                        .zip(logits)
                        .filter(|(i, _)| **i != PAD_ID)
                        .map(|(_, l)| (l.to_f64() - lse as f64).exp())
                        .sum::<f64>()
                };
                let lse = a.logsumexp[row];
                let got = mass(&a.topk_ids[row * 4..row * 4 + 4], &a.topk_logits[row * 4..row * 4 + 4], lse);
                if lse == 0.0 && a.topk_ids[row * 4 + 1] == PAD_ID {
                    continue; // one-hot fallback
                }
                matched += 1;
                let source = snd.logsumexp.iter().position(|&l| l == lse).expect("a sender row with this normaliser");
                let want =
                    mass(&snd.topk_ids[source * 4..source * 4 + 4], &snd.topk_logits[source * 4..source * 4 + 4], lse);
                assert!((got - want).abs() < 2e-3 * want.max(1e-3), "{strategy}: mass {got} vs {want}");
            }
        }
        assert!(matched > 0, "{strategy}: some positions match");
    }
}

#[test]
fn same_inputs_give_identical_bytes() {
    let s = setup(&[]);
    let (a, b) = (s.dir.path().join("a.parquet"), s.dir.path().join("b.parquet"));
    for out in [&a, &b] {
        assert_success(&align_files(&s, &[], &[], out));
    }
    assert_eq!(std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap());
}

#[test]
fn inputs_that_do_not_belong_together_are_refused() {
    let s = setup(&[]);
    let out = s.dir.path().join("out.parquet");
    // The map built the other way round.
    let back = s.dir.path().join("gemma_to_llama.parquet");
    assert_success(&run(
        "vocab-map",
        [
            "--from",
            tokenizer("tiny-gemma3").to_str().unwrap(),
            "--to",
            tokenizer("tiny-llama").to_str().unwrap(),
            "--out",
            back.to_str().unwrap(),
        ],
    ));
    assert_bad_input(
        &align_files(&s, &[("--map", &back)], &[], &out),
        &["gemma_to_llama.parquet", "another source tokenizer"],
    );
    // A .map file that is not the table's.
    let forged = s.dir.path().join("forged.parquet");
    std::fs::copy(&s.map, &forged).unwrap();
    std::fs::copy(back.with_extension("map"), forged.with_extension("map")).unwrap();
    assert_bad_input(&align_files(&s, &[("--map", &forged)], &[], &out), &["forged.map", "does not belong"]);
    // Receiver tokens of another public set.
    let other_set = s.dir.path().join("other.parquet");
    assert_success(&run(
        "tokenize",
        [
            "--tokenizer",
            tokenizer("tiny-gemma3").to_str().unwrap(),
            "--input",
            testdata("data/tasks/boolq/eval.parquet").to_str().unwrap(),
            "--out",
            other_set.to_str().unwrap(),
        ],
    ));
    assert_bad_input(
        &align_files(&s, &[("--receiver-tokens", &other_set)], &[], &out),
        &["other.parquet", "another public data set"],
    );
    // Knowledge made with another tokenizer than the sender tokens.
    assert_bad_input(
        &align_files(&s, &[("--sender-tokens", &s.receiver_tokens.clone())], &[], &out),
        &["llama.parquet", "another tokenizer"],
    );
    // The wrong tokenizer for dtw's texts.
    assert_bad_input(
        &align_files(&s, &[("--sender-tokenizer", &tokenizer("tiny-gemma3"))], &[], &out),
        &["tokenizer.json", "is not the tokenizer"],
    );
    // A sender named by a word select reserves for the receiver.
    for reserved in ["self", "receiver"] {
        assert_bad_input(&align_files(&s, &[], &["--sender", reserved], &out), &[&format!("--sender '{reserved}'")]);
    }
    assert!(!out.exists());
}

#[test]
fn default_sender_is_the_knowledge_files_name() {
    assert_eq!(align::default_sender(Path::new("runs/x/client-2.parquet")), "client-2");
}

/// A knowledge set covers its token file: one lacking a sample would leave the receiver
/// without that sender's vote on it, silently.
#[test]
fn a_knowledge_set_lacking_a_sample_is_refused() {
    let s = setup(&[]);
    let (mut rows, table) = fedmkt::knowledge::read_knowledge(&s.knowledge).unwrap();
    let dropped = rows.remove(1).id;
    let partial = s.dir.path().join("partial.parquet");
    let batch = fedmkt::knowledge::knowledge_batch(&rows, 4).unwrap();
    fedmkt::io::write_parquet(&partial, batch.schema(), &[batch], &table.provenance).unwrap();
    let out = s.dir.path().join("out.parquet");
    let output = align_files(&s, &[("--knowledge", &partial)], &["--sender", "client-1"], &out);
    assert_bad_input(&output, &["partial.parquet", &format!("lacks sample '{dropped}'")]);
    assert!(!out.exists());
}

/// `align --strategy offsets` on tiny Gemma-3's knowledge of its eval tokens into tiny Llama's,
/// against testdata/reference/golden_align.py: the rule of FORMATS.md worked out in Python
/// (overlapping spans, first-of-each-other matches, next-token rows, log-sum-exp merging).
#[test]
fn aligned_knowledge_matches_the_python_reference() {
    let dir = tempdir();
    let golden = testdata("golden/align");
    let expected = read_json(&golden.join("expected.json"));
    for (case, knowledge, fallback) in [
        ("answer-skip", "sender.parquet", "skip"),
        ("answer-onehot", "sender.parquet", "onehot"),
        ("all-skip", "sender-all.parquet", "skip"),
    ] {
        let out = dir.path().join(format!("{case}.parquet"));
        let output = run(
            "align",
            [
                "--knowledge".into(),
                golden.join(knowledge),
                "--sender-tokens".into(),
                testdata("data/tokens/tiny-gemma3/arc-easy-eval.parquet"),
                "--receiver-tokens".into(),
                testdata("data/tokens/tiny-llama/arc-easy-eval.parquet"),
                "--map".into(),
                golden.join("map.parquet"),
                "--sender-tokenizer".into(),
                testdata("models/tiny-gemma3/tokenizer.json"),
                "--receiver-tokenizer".into(),
                testdata("models/tiny-llama/tokenizer.json"),
                "--fallback".into(),
                fallback.into(),
                "--out".into(),
                out.clone(),
            ],
        );
        assert_success(&output);
        let (samples, _) = fedmkt::knowledge::read_knowledge(&out).unwrap();
        let want = expected[case].as_object().unwrap();
        assert_eq!(samples.len(), want.len(), "{case}");
        for sample in &samples {
            let want = &want[&sample.id];
            let positions: Vec<u32> = serde_json::from_value(want["positions"].clone()).unwrap();
            assert_eq!(sample.positions, positions, "{case} {}", sample.id);
            let ids: Vec<Vec<u32>> = serde_json::from_value(want["ids"].clone()).unwrap();
            assert_eq!(sample.topk_ids, ids.concat(), "{case} {}", sample.id);
            let logits: Vec<f32> = want["logits"]
                .as_array()
                .unwrap()
                .iter()
                .flat_map(|row| {
                    row.as_array().unwrap().iter().map(|l| l.as_f64().map_or(f32::NEG_INFINITY, |l| l as f32))
                })
                .collect();
            let got: Vec<f32> = sample.topk_logits.iter().map(|l| l.to_f32()).collect();
            assert_eq!(got, logits, "{case} {}", sample.id);
        }
    }
}
