//! `tokenizer.json` from GGUF tokenizer metadata.
//!
//! Two llama.cpp tokenizer models are supported:
//! - `gpt2`: byte-level BPE; vocabulary and merges are stored as they are in `tokenizer.json`.
//! - `llama`: SentencePiece BPE with byte fallback, stored as pieces with scores. We rebuild
//!   Hugging Face's BPE form the way `transformers`' SentencePiece converter does: every split
//!   of a piece into two pieces of the vocabulary is a merge, ranked by the merged piece's
//!   score (descending), then by the lengths of the left and right parts (descending), then by
//!   the ids of the parts. llama.cpp writes user-defined pieces with `▁` replaced by a space
//!   and score -1000; SentencePiece gives them score 0: we undo both, which reproduces the
//!   reference Gemma-3 `tokenizer.json` merge for merge (514,906 merges).
use std::collections::HashMap;

use anyhow::Result;
use serde_json::{json, Value};

use super::Gguf;
use crate::cli::bad_input;

/// llama.cpp's token types (`tokenizer.ggml.token_type`).
const TYPE_UNKNOWN: i32 = 2;
const TYPE_CONTROL: i32 = 3;
const TYPE_USER_DEFINED: i32 = 4;

const SPM_SPACE: &str = "\u{2581}";

struct Vocab {
    tokens: Vec<String>,
    types: Vec<i32>,
    bos: Option<u32>,
    eos: Option<u32>,
    unk: Option<u32>,
    add_bos: bool,
    add_eos: bool,
}

fn read_vocab(gguf: &Gguf) -> Result<Vocab> {
    let bad = |what: &str| bad_input(&gguf.path, format!("metadata '{what}' is malformed"));
    let tokens = gguf
        .array("tokenizer.ggml.tokens")?
        .iter()
        .map(|v| v.to_string().cloned().map_err(|_| bad("tokenizer.ggml.tokens")))
        .collect::<Result<Vec<_>>>()?;
    let types = match gguf.opt_array("tokenizer.ggml.token_type")? {
        Some(types) => types
            .iter()
            .map(|v| v.to_i32().map_err(|_| bad("tokenizer.ggml.token_type")))
            .collect::<Result<Vec<_>>>()?,
        None => vec![1; tokens.len()],
    };
    if types.len() != tokens.len() {
        return Err(bad("tokenizer.ggml.token_type"));
    }
    let id = |key: &str| -> Result<Option<u32>> {
        match gguf.opt_uint(key)? {
            Some(id) if id as usize >= tokens.len() => {
                Err(bad_input(&gguf.path, format!("'{key}' = {id} is outside the vocabulary")))
            }
            other => Ok(other.map(|id| id as u32)),
        }
    };
    Ok(Vocab {
        bos: id("tokenizer.ggml.bos_token_id")?,
        eos: id("tokenizer.ggml.eos_token_id")?,
        unk: id("tokenizer.ggml.unknown_token_id")?,
        add_bos: gguf.opt_bool("tokenizer.ggml.add_bos_token")?.unwrap_or(false),
        add_eos: gguf.opt_bool("tokenizer.ggml.add_eos_token")?.unwrap_or(false),
        tokens,
        types,
    })
}

/// Build `tokenizer.json` (as JSON) from the GGUF file's tokenizer metadata, checked by
/// loading it with the `tokenizers` crate.
pub fn tokenizer_json(gguf: &Gguf) -> Result<Value> {
    let model = gguf.string("tokenizer.ggml.model")?;
    let mut vocab = read_vocab(gguf)?;
    let json = match model.as_str() {
        "gpt2" => byte_level_bpe(gguf, &vocab)?,
        "llama" => {
            restore_user_defined_spaces(&mut vocab);
            sentencepiece_bpe(gguf, &vocab)?
        }
        other => {
            return Err(bad_input(
                &gguf.path,
                format!("tokenizer model '{other}' is not supported (supported: gpt2, llama)"),
            ))
        }
    };
    let text = serde_json::to_string(&json)?;
    <tokenizers::Tokenizer as std::str::FromStr>::from_str(&text)
        .map_err(|e| bad_input(&gguf.path, format!("tokenizer metadata gives an invalid tokenizer.json ({e})")))?;
    Ok(json)
}

/// llama.cpp pre-normalises user-defined SentencePiece pieces (`▁` → space); put `▁` back.
fn restore_user_defined_spaces(vocab: &mut Vocab) {
    for (token, &ty) in vocab.tokens.iter_mut().zip(&vocab.types) {
        if ty == TYPE_USER_DEFINED {
            *token = token.replace(' ', SPM_SPACE);
        }
    }
}

fn vocab_map(vocab: &Vocab) -> serde_json::Map<String, Value> {
    vocab.tokens.iter().enumerate().map(|(id, t)| (t.clone(), json!(id))).collect()
}

/// Control, user-defined and unknown tokens are matched in raw text before the model runs
/// (as SentencePiece does); control and unknown tokens are special (skipped when decoding).
fn added_tokens(vocab: &Vocab) -> Vec<Value> {
    let roles = [vocab.bos, vocab.eos, vocab.unk];
    vocab
        .types
        .iter()
        .enumerate()
        .filter(|&(id, &ty)| {
            matches!(ty, TYPE_UNKNOWN | TYPE_CONTROL | TYPE_USER_DEFINED) || roles.contains(&Some(id as u32))
        })
        .map(|(id, &ty)| {
            json!({
                "id": id, "content": vocab.tokens[id], "single_word": false, "lstrip": false, "rstrip": false,
                "normalized": false, "special": ty != TYPE_USER_DEFINED,
            })
        })
        .collect()
}

/// `<bos> $A <eos>` as the GGUF flags ask, or `None` when neither is added.
fn template_processor(vocab: &Vocab) -> Option<Value> {
    let special = |id: Option<u32>, flag: bool| id.filter(|_| flag).map(|id| (vocab.tokens[id as usize].clone(), id));
    let (bos, eos) = (special(vocab.bos, vocab.add_bos), special(vocab.eos, vocab.add_eos));
    if bos.is_none() && eos.is_none() {
        return None;
    }
    let piece = |(tok, _): &(String, u32), type_id: u32| json!({"SpecialToken": {"id": tok, "type_id": type_id}});
    let seq = |name: &str, type_id: u32| json!({"Sequence": {"id": name, "type_id": type_id}});
    let wrap = |name: &str, type_id: u32| -> Vec<Value> {
        bos.iter()
            .map(|b| piece(b, type_id))
            .chain([seq(name, type_id)])
            .chain(eos.iter().map(|e| piece(e, type_id)))
            .collect()
    };
    let mut pair = wrap("A", 0);
    pair.extend(wrap("B", 1));
    let specials: serde_json::Map<String, Value> = bos
        .iter()
        .chain(eos.iter())
        .map(|(tok, id)| (tok.clone(), json!({"id": tok, "ids": [id], "tokens": [tok]})))
        .collect();
    Some(json!({"type": "TemplateProcessing", "single": wrap("A", 0), "pair": pair, "special_tokens": specials}))
}

/// Qwen2's split (transformers' `Qwen2Tokenizer`, llama.cpp's `qwen2`): GPT-2's with
/// case-insensitive contractions, one digit at a time, and letters after one other symbol.
const QWEN2_SPLIT: &str =
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// Bloom's split (bigscience/bloom's `tokenizer.json`): runs of anything but whitespace and
/// its punctuation marks, each with the space before it.
const BLOOM_SPLIT: &str = " ?[^(\\s|[.,!?…。，、।۔،])]+";

/// The `tokenizer.json` pre-tokenizer of llama.cpp's `tokenizer.ggml.pre`, for the byte-level
/// families we import; `None` for the others.
fn pre_tokenizer(pre: &str) -> Option<Value> {
    let byte_level =
        |regex: bool| json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex});
    let split_then_bytes = |regex: &str| {
        json!({"type": "Sequence", "pretokenizers": [
            {"type": "Split", "pattern": {"Regex": regex}, "behavior": "Isolated", "invert": false}, byte_level(false)]})
    };
    Some(match pre {
        "" | "default" | "gpt2" | "gpt-2" => byte_level(true),
        // llama.cpp's `smollm`: digits split one by one, then GPT-2's regex.
        "smollm" => {
            json!({"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": true}, byte_level(true)]})
        }
        "qwen2" => split_then_bytes(QWEN2_SPLIT),
        "bloom" => split_then_bytes(BLOOM_SPLIT),
        _ => return None,
    })
}

fn byte_level_bpe(gguf: &Gguf, vocab: &Vocab) -> Result<Value> {
    let merges = gguf
        .array("tokenizer.ggml.merges")?
        .iter()
        .map(|v| {
            let text =
                v.to_string().map_err(|_| bad_input(&gguf.path, "metadata 'tokenizer.ggml.merges' is malformed"))?;
            let (left, right) =
                text.split_once(' ').ok_or_else(|| bad_input(&gguf.path, format!("merge '{text}' has no space")))?;
            Ok(json!([left, right]))
        })
        .collect::<Result<Vec<_>>>()?;
    let pre =
        gguf.content.metadata.get("tokenizer.ggml.pre").and_then(|v| v.to_string().ok()).cloned().unwrap_or_default();
    let pre_tokenizer = pre_tokenizer(&pre).ok_or_else(|| {
        bad_input(
            &gguf.path,
            format!("pre-tokenizer '{pre}' is not supported (supported: gpt2, gpt-2, smollm, qwen2, bloom)"),
        )
    })?;
    // trim_offsets: false keeps each token's span exactly the bytes it encodes (the leading
    // space included), which `align --strategy offsets` relies on.
    let byte_level_post =
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    let post_processor = match template_processor(vocab) {
        Some(template) => json!({"type": "Sequence", "processors": [byte_level_post, template]}),
        None => byte_level_post,
    };
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added_tokens(vocab),
        "normalizer": null,
        "pre_tokenizer": pre_tokenizer,
        "post_processor": post_processor,
        "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false, "ignore_merges": false,
            "vocab": vocab_map(vocab), "merges": merges,
        },
    }))
}

fn sentencepiece_bpe(gguf: &Gguf, vocab: &Vocab) -> Result<Value> {
    let scores = gguf
        .array("tokenizer.ggml.scores")?
        .iter()
        .map(|v| v.to_f32().map_err(|_| bad_input(&gguf.path, "metadata 'tokenizer.ggml.scores' is malformed")))
        .collect::<Result<Vec<_>>>()?;
    if scores.len() != vocab.tokens.len() {
        return Err(bad_input(&gguf.path, "tokenizer.ggml.scores and tokenizer.ggml.tokens differ in length"));
    }
    let scores: Vec<f32> =
        scores.iter().zip(&vocab.types).map(|(&s, &ty)| if ty == TYPE_USER_DEFINED { 0.0 } else { s }).collect();
    let merges: Vec<Value> =
        sentencepiece_merges(&vocab.tokens, &scores).into_iter().map(|(l, r)| json!([l, r])).collect();
    let add_space_prefix = gguf.opt_bool("tokenizer.ggml.add_space_prefix")?.unwrap_or(true);
    let replace_space = json!({"type": "Replace", "pattern": {"String": " "}, "content": SPM_SPACE});
    let normalizer = if add_space_prefix {
        json!({"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": SPM_SPACE}, replace_space]})
    } else {
        replace_space
    };
    let mut decoders = vec![
        json!({"type": "Replace", "pattern": {"String": SPM_SPACE}, "content": " "}),
        json!({"type": "ByteFallback"}),
        json!({"type": "Fuse"}),
    ];
    if add_space_prefix {
        decoders.push(json!({"type": "Strip", "content": " ", "start": 1, "stop": 0}));
    }
    let unk = vocab.unk.map(|id| vocab.tokens[id as usize].clone());
    Ok(json!({
        "version": "1.0", "truncation": null, "padding": null,
        "added_tokens": added_tokens(vocab),
        "normalizer": normalizer,
        "pre_tokenizer": {"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false},
        "post_processor": template_processor(vocab),
        "decoder": {"type": "Sequence", "decoders": decoders},
        "model": {
            "type": "BPE", "dropout": null, "unk_token": unk, "continuing_subword_prefix": null,
            "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
            "vocab": vocab_map(vocab), "merges": merges,
        },
    }))
}

/// Merges of a SentencePiece BPE vocabulary, in `transformers`' order (see the module doc).
pub fn sentencepiece_merges(tokens: &[String], scores: &[f32]) -> Vec<(String, String)> {
    let ids: HashMap<&str, usize> = tokens.iter().enumerate().map(|(i, t)| (t.as_str(), i)).collect();
    struct Merge {
        left: usize,
        right: usize,
        score: f32,
        left_chars: usize,
        right_chars: usize,
    }
    let mut merges = Vec::new();
    for (id, piece) in tokens.iter().enumerate() {
        let start = merges.len();
        let total_chars = piece.chars().count();
        for (left_chars, (split, _)) in piece.char_indices().skip(1).enumerate() {
            let (l, r) = piece.split_at(split);
            if let (Some(&left), Some(&right)) = (ids.get(l), ids.get(r)) {
                let left_chars = left_chars + 1;
                merges.push(Merge {
                    left,
                    right,
                    score: scores[id],
                    left_chars,
                    right_chars: total_chars - left_chars,
                });
            }
        }
        merges[start..].sort_by_key(|m| (m.left, m.right));
    }
    // Stable sort, descending: equal keys keep the order built above, as Python's sort does.
    merges.sort_by(|a, b| {
        (b.score.total_cmp(&a.score)).then(b.left_chars.cmp(&a.left_chars)).then(b.right_chars.cmp(&a.right_chars))
    });
    merges.into_iter().map(|m| (tokens[m.left].clone(), tokens[m.right].clone())).collect()
}

/// `tokenizer_config.json`, so `transformers.AutoTokenizer` loads the folder too.
pub fn tokenizer_config_json(gguf: &Gguf) -> Result<Value> {
    let vocab = read_vocab(gguf)?;
    let name = |id: Option<u64>| id.and_then(|id| vocab.tokens.get(id as usize)).cloned();
    Ok(json!({
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": name(vocab.bos.map(u64::from)),
        "eos_token": name(vocab.eos.map(u64::from)),
        "unk_token": name(vocab.unk.map(u64::from)),
        "pad_token": name(gguf.opt_uint("tokenizer.ggml.padding_token_id")?),
        "add_bos_token": vocab.add_bos,
        "add_eos_token": vocab.add_eos,
        "clean_up_tokenization_spaces": false,
    }))
}

#[cfg(test)]
mod tests {
    use super::{pre_tokenizer, sentencepiece_merges};
    use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer, PreTokenizerWrapper};

    fn pieces(pre: &str, text: &str) -> Vec<String> {
        let pre: PreTokenizerWrapper = serde_json::from_value(pre_tokenizer(pre).unwrap()).unwrap();
        let mut string = PreTokenizedString::from(text);
        pre.pre_tokenize(&mut string).unwrap();
        let splits = string.get_splits(OffsetReferential::Original, OffsetType::Byte);
        splits.into_iter().map(|(_, (start, end), _)| text[start..end].to_string()).collect()
    }

    /// Hand-worked splits of one text under each family's rule. Bloom's split isolates its
    /// matches and leaves what lies between them (",", "!\n\n") whole.
    #[test]
    fn pre_tokenizers_split_as_their_families() {
        let text = "He'S 42, \"ok\"!\n\nso";
        let expect = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(pieces("gpt-2", text), expect(&["He", "'", "S", " 42", ",", " \"", "ok", "\"!", "\n", "\n", "so"]));
        assert_eq!(
            pieces("smollm", text),
            expect(&["He", "'", "S", " ", "4", "2", ",", " \"", "ok", "\"!", "\n", "\n", "so"])
        );
        assert_eq!(pieces("qwen2", text), expect(&["He", "'S", " ", "4", "2", ",", " \"", "ok", "\"!\n\n", "so"]));
        assert_eq!(pieces("bloom", text), expect(&["He'S", " 42", ",", " \"ok\"", "!\n\n", "so"]));
        assert!(pre_tokenizer("falcon").is_none());
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    /// Hand-worked: "abc" (score -3) splits as a+bc and ab+c; "ab" (-4) and "bc" (-5) as one
    /// pair each. Higher score first; within "abc" the longer left part first.
    #[test]
    fn merges_follow_score_then_part_lengths() {
        let tokens = strings(&["a", "b", "c", "abc", "ab", "bc"]);
        let scores = [0.0, 0.0, 0.0, -3.0, -4.0, -5.0];
        let merges = sentencepiece_merges(&tokens, &scores);
        let expected = [("ab", "c"), ("a", "bc"), ("a", "b"), ("b", "c")];
        assert_eq!(merges, expected.map(|(l, r)| (l.to_string(), r.to_string())));
    }

    /// Equal keys keep the order of the pieces' ids, as Python's stable sort does.
    #[test]
    fn ties_keep_vocabulary_order() {
        let tokens = strings(&["x", "y", "yx", "xy"]);
        let merges = sentencepiece_merges(&tokens, &[0.0, 0.0, -1.0, -1.0]);
        assert_eq!(merges, vec![("y".into(), "x".into()), ("x".into(), "y".into())]);
    }
}
