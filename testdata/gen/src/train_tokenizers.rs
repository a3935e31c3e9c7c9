//! Small tokenizers of the families our real models and the paper's clients use, trained on
//! public-domain text.
use std::path::Path;

use anyhow::{anyhow, Result};
use serde_json::{json, Value};
use tokenizers::models::bpe::{BpeTrainerBuilder, BPE};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::metaspace::{Metaspace, PrependScheme};
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{
    AddedToken, DecoderWrapper, NormalizerWrapper, PostProcessorWrapper, PreTokenizerWrapper, SplitDelimiterBehavior,
    Tokenizer, TokenizerBuilder,
};

type Trainable =
    tokenizers::TokenizerImpl<BPE, NormalizerWrapper, PreTokenizerWrapper, PostProcessorWrapper, DecoderWrapper>;

const BYTE_LEVEL_VOCAB: usize = 1024;
const SPM_VOCAB: usize = 1200;
const BLOOM_VOCAB: usize = 1100;

/// Bloom's split: runs of anything but whitespace and its punctuation marks, each with the
/// space before it; the marks and whitespace stand alone (bigscience/bloom's tokenizer.json).
const BLOOM_SPLIT: &str = " ?[^(\\s|[.,!?…。，、।۔،])]+";

fn train(
    pre_tokenizer: PreTokenizerWrapper,
    vocab: usize,
    specials: &[String],
    alphabet: Vec<char>,
    corpus: &Path,
) -> Result<Trainable> {
    let mut trainer = BpeTrainerBuilder::new()
        .vocab_size(vocab)
        .min_frequency(2)
        .show_progress(false)
        .special_tokens(specials.iter().map(|s| AddedToken::from(s.clone(), true)).collect())
        .initial_alphabet(alphabet.into_iter().collect())
        .build();
    let mut tokenizer: Trainable = TokenizerBuilder::new()
        .with_model(BPE::default())
        .with_normalizer(None)
        .with_pre_tokenizer(Some(pre_tokenizer))
        .with_post_processor(None)
        .with_decoder(None)
        .build()
        .map_err(|e| anyhow!("{e}"))?;
    tokenizer
        .train_from_files(&mut trainer, vec![corpus.to_string_lossy().into_owned()])
        .map_err(|e| anyhow!("{e}"))?;
    Ok(tokenizer)
}

fn save(json: Value, path: &Path) -> Result<Tokenizer> {
    std::fs::create_dir_all(path.parent().unwrap())?;
    std::fs::write(path, serde_json::to_string_pretty(&json)? + "\n")?;
    Tokenizer::from_file(path).map_err(|e| anyhow!("{}: {e}", path.display()))
}

/// GPT-2-style: digits split one by one, byte-level BPE (as SmolLM2 and llama.cpp's `smollm`).
pub fn byte_level(corpus: &Path, out: &Path) -> Result<Tokenizer> {
    let byte_level = ByteLevel::new(false, true, true);
    let pre = Sequence::new(vec![Digits::new(true).into(), byte_level.into()]);
    let trained = train(
        pre.into(),
        BYTE_LEVEL_VOCAB,
        &["<|endoftext|>".into()],
        ByteLevel::alphabet().into_iter().collect(),
        corpus,
    )?;
    let mut json: Value = serde_json::from_str(&trained.to_string(false).map_err(|e| anyhow!("{e}"))?)?;
    json["post_processor"] =
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true});
    json["decoder"] = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true});
    save(json, out)
}

/// Gemma-style: spaces become `▁` in the normaliser, BPE with byte fallback over `<0xNN>`
/// pieces, `<bos>` prepended. Trained with a Metaspace split so merges stay within words.
pub fn sentencepiece_style(corpus: &Path, out: &Path) -> Result<Tokenizer> {
    let mut specials: Vec<String> = ["<pad>", "<eos>", "<bos>", "<unk>"].map(String::from).to_vec();
    specials.extend((0..=255u8).map(|b| format!("<0x{b:02X}>")));
    let pre = Metaspace::new('\u{2581}', PrependScheme::Never, true);
    let trained = train(pre.into(), SPM_VOCAB, &specials, vec![], corpus)?;
    let mut json: Value = serde_json::from_str(&trained.to_string(false).map_err(|e| anyhow!("{e}"))?)?;
    // Byte pieces belong to the model's vocabulary, not to the added (raw-text) tokens.
    json["added_tokens"].as_array_mut().unwrap().retain(|t| !t["content"].as_str().unwrap().starts_with("<0x"));
    for token in json["added_tokens"].as_array_mut().unwrap() {
        token["normalized"] = json!(false);
    }
    json["normalizer"] = json!({"type": "Replace", "pattern": {"String": " "}, "content": "\u{2581}"});
    json["pre_tokenizer"] =
        json!({"type": "Split", "pattern": {"String": " "}, "behavior": "MergedWithPrevious", "invert": false});
    json["post_processor"] = json!({
        "type": "TemplateProcessing",
        "single": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
        "pair": [{"SpecialToken": {"id": "<bos>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
                 {"SpecialToken": {"id": "<bos>", "type_id": 1}}, {"Sequence": {"id": "B", "type_id": 1}}],
        "special_tokens": {"<bos>": {"id": "<bos>", "ids": [2], "tokens": ["<bos>"]}},
    });
    json["decoder"] = json!({"type": "Sequence", "decoders": [
        {"type": "Replace", "pattern": {"String": "\u{2581}"}, "content": " "}, {"type": "ByteFallback"}, {"type": "Fuse"}]});
    json["model"]["unk_token"] = json!("<unk>");
    json["model"]["fuse_unk"] = json!(true);
    json["model"]["byte_fallback"] = json!(true);
    save(json, out)
}

/// Bloom-style: byte-level BPE behind Bloom's own split instead of GPT-2's regex (so no
/// `'s` or digit rules, punctuation alone), `<unk>`, `<s>`, `</s>`, `<pad>` as ids 0–3, and
/// nothing prepended.
pub fn bloom_style(corpus: &Path, out: &Path) -> Result<Tokenizer> {
    let specials: Vec<String> = ["<unk>", "<s>", "</s>", "<pad>"].map(String::from).to_vec();
    let split = Split::new(SplitPattern::Regex(BLOOM_SPLIT.into()), SplitDelimiterBehavior::Isolated, false)
        .map_err(|e| anyhow!("{e}"))?;
    let pre = Sequence::new(vec![split.into(), ByteLevel::new(false, true, false).into()]);
    let alphabet = ByteLevel::alphabet().into_iter().collect();
    let trained = train(pre.into(), BLOOM_VOCAB, &specials, alphabet, corpus)?;
    let mut json: Value = serde_json::from_str(&trained.to_string(false).map_err(|e| anyhow!("{e}"))?)?;
    json["post_processor"] =
        json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": false});
    json["decoder"] = json!({"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": false});
    save(json, out)
}
