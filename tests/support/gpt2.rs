//! GPT-2's tokenizer as a Hugging Face `tokenizer.json`, rebuilt from the BPE ranks the
//! `tiktoken-rs` crate carries (OpenAI's `r50k_base`, GPT-2's encoding), so tests need no
//! download and no 2 MB file in `testdata/`. Its encodings are checked against tiktoken's
//! own encoder (`tests/cross_tokenizer.rs`), which shares no code with `tokenizers`.
use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tiktoken_rs::CoreBPE;

/// GPT-2's one special token, the id after the last rank.
pub const END_OF_TEXT: &str = "<|endoftext|>";

/// tiktoken's encoder for GPT-2 (the oracle).
pub fn tiktoken() -> CoreBPE {
    tiktoken_rs::r50k_base().expect("tiktoken-rs carries r50k_base")
}

/// GPT-2's byte ↔ character table: printable Latin-1 bytes stand for themselves, the rest
/// take the characters from U+0100 up, in byte order (`bytes_to_unicode` in GPT-2's
/// `encoder.py`, which `tokenizers`' ByteLevel also uses).
fn byte_to_char() -> [char; 256] {
    let printable = |b: u8| matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
    let mut table = ['\0'; 256];
    let mut next = 256u32;
    for b in 0..=255u8 {
        table[b as usize] = if printable(b) {
            char::from(b)
        } else {
            next += 1;
            char::from_u32(next - 1).expect("below U+0200")
        };
    }
    table
}

/// Every ordinary token's bytes, by rank.
fn ranked_tokens(bpe: &CoreBPE) -> Vec<Vec<u8>> {
    let ordinary = bpe.encode_with_special_tokens(END_OF_TEXT)[0];
    (0..ordinary).map(|rank| bpe.decode_bytes(&[rank]).expect("a rank decodes")).collect()
}

/// The merges a rank table implies (transformers' `TikTokenConverter`): token `t` of rank
/// `r` comes from every split `t = a + b` whose halves are tokens, in the order of `r`,
/// then of the halves' ranks. BPE over these merges picks the same pairs as tiktoken.
fn merges(tokens: &[Vec<u8>]) -> Vec<(usize, usize)> {
    let rank: HashMap<&[u8], usize> = tokens.iter().enumerate().map(|(r, t)| (t.as_slice(), r)).collect();
    let mut merges = Vec::new();
    for token in tokens.iter().filter(|t| t.len() > 1) {
        let mut splits: Vec<(usize, usize)> =
            (1..token.len()).filter_map(|i| Some((*rank.get(&token[..i])?, *rank.get(&token[i..])?))).collect();
        splits.sort_unstable();
        merges.extend(splits);
    }
    merges
}

/// The `tokenizer.json` of Hugging Face's `gpt2`: byte-level BPE behind GPT-2's regex, no
/// prefix space, offsets untrimmed, `<|endoftext|>` special.
pub fn tokenizer_json() -> Value {
    let bpe = tiktoken();
    let tokens = ranked_tokens(&bpe);
    let chars = byte_to_char();
    let text = |bytes: &[u8]| bytes.iter().map(|&b| chars[b as usize]).collect::<String>();
    let vocab: serde_json::Map<String, Value> = tokens.iter().enumerate().map(|(r, t)| (text(t), json!(r))).collect();
    let merges: Vec<Value> =
        merges(&tokens).into_iter().map(|(a, b)| json!([text(&tokens[a]), text(&tokens[b])])).collect();
    let byte_level =
        |trim: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": trim, "use_regex": true});
    json!({
        "version": "1.0",
        "truncation": null,
        "padding": null,
        "added_tokens": [{"id": tokens.len(), "content": END_OF_TEXT, "single_word": false, "lstrip": false,
                          "rstrip": false, "normalized": true, "special": true}],
        "normalizer": null,
        "pre_tokenizer": byte_level(true),
        "post_processor": byte_level(false),
        "decoder": byte_level(true),
        "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": "",
                  "end_of_word_suffix": "", "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
                  "vocab": vocab, "merges": merges},
    })
}

/// Write GPT-2's `tokenizer.json` into `dir` and return its path.
pub fn write_tokenizer(dir: &Path) -> PathBuf {
    let path = dir.join("tokenizer.json");
    std::fs::write(&path, tokenizer_json().to_string()).expect("write tokenizer.json");
    path
}
