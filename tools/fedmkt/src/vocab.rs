//! The optimal vocabulary mapping table of the paper (App. B, MinED): for every source token,
//! the target token at minimum edit distance (`vocab-map`).
//!
//! Where we differ from the authors' code, and why:
//! - Tokens are compared as the **text they stand for**, not as raw vocabulary strings:
//!   byte-level BPE characters (`Ġ`, `Ċ`, multi-byte sequences) are mapped back to bytes and
//!   SentencePiece's `▁` to a space and `<0xNN>` to byte NN, so `Ċ` and `<0x0A>` are the same
//!   newline. The reference swaps only the word-start marker and compares the rest raw.
//! - Special tokens map by role (bos, eos, unk, pad; then the same text), never by edit
//!   distance; a special token with no counterpart maps to the target's unk (else eos).
//! - Ties are broken by the lexicographically smallest target bytes (the paper's rule), then
//!   the lowest id; the reference breaks them by hash-map order, so its table changes from run
//!   to run. Ours never depends on hash order or thread count.
//!   Distances count characters (as the paper's and the reference's Levenshtein do); a byte
//!   that is not valid UTF-8 on its own (part of a character) counts as one symbol.
//! - Exact instead of brute force: targets live in a trie searched depth-first in symbol
//!   order with Levenshtein rows and a distance bound raised 1, 2, 3, … until a match exists;
//!   the first match at the bound is the smallest text, so the search is exact.
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Result;
use arrow_array::{RecordBatch, StringArray, UInt32Array};
use arrow_schema::{DataType, Field, Schema};
use rayon::prelude::*;
use serde_json::Value;

use crate::cli::bad_input;
use crate::io::{self, Provenance};

pub const VOCAB_MAP_FORMAT: &str = "vocab-map";

/// The roles special tokens map by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Role {
    Bos,
    Eos,
    Unk,
    Pad,
}

/// What one vocabulary entry stands for.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenText {
    pub bytes: Vec<u8>,
    /// The text as symbols compared by edit distance: Unicode scalar values, and for bytes
    /// that are not valid UTF-8 (a byte-level token holding part of a character) the symbol
    /// `0x110000 + byte`. Code-point order is UTF-8 byte order, so "lexicographically
    /// smallest" means the same on symbols as on text.
    pub symbols: Vec<u32>,
    /// Added special token (matched by role or text, never by edit distance).
    pub special: bool,
    pub roles: Vec<Role>,
    /// The entry as written in the vocabulary, for display.
    pub raw: String,
}

/// How a token's text is written in its vocabulary.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Encoding {
    ByteLevel,
    SentencePiece,
    Plain,
}

/// GPT-2's byte ↔ printable-character table, inverted: character → byte.
fn byte_level_decoder() -> HashMap<char, u8> {
    let mut printable: Vec<u32> = (b'!' as u32..=b'~' as u32).chain(0xA1..=0xAC).chain(0xAE..=0xFF).collect();
    let mut chars: Vec<u32> = printable.clone();
    let mut extra = 0;
    for b in 0..256u32 {
        if !printable.contains(&b) {
            printable.push(b);
            chars.push(256 + extra);
            extra += 1;
        }
    }
    printable.into_iter().zip(chars).map(|(b, c)| (char::from_u32(c).unwrap(), b as u8)).collect()
}

fn encoding_of(json: &Value) -> Encoding {
    let decoder = json.get("decoder").map(|d| d.to_string()).unwrap_or_default();
    if decoder.contains("\"ByteLevel\"") {
        Encoding::ByteLevel
    } else if decoder.contains("ByteFallback") || decoder.contains("Metaspace") || decoder.contains('\u{2581}') {
        Encoding::SentencePiece
    } else {
        Encoding::Plain
    }
}

fn decode_entry(raw: &str, encoding: Encoding, byte_level: &HashMap<char, u8>) -> Vec<u8> {
    match encoding {
        Encoding::ByteLevel => raw.chars().flat_map(|c| byte_level.get(&c).map_or_else(|| c.to_string().into_bytes(), |&b| vec![b])).collect(),
        Encoding::SentencePiece => match raw.strip_prefix("<0x").and_then(|h| h.strip_suffix('>')).filter(|h| h.len() == 2) {
            Some(hex) => u8::from_str_radix(hex, 16).map_or_else(|_| raw.as_bytes().to_vec(), |b| vec![b]),
            None => raw.replace('\u{2581}', " ").into_bytes(),
        },
        Encoding::Plain => raw.as_bytes().to_vec(),
    }
}

/// Characters of valid UTF-8 runs; each invalid byte its own symbol above Unicode's range.
pub fn symbols_of(bytes: &[u8]) -> Vec<u32> {
    bytes
        .utf8_chunks()
        .flat_map(|chunk| chunk.valid().chars().map(|c| c as u32).chain(chunk.invalid().iter().map(|&b| 0x11_0000 + b as u32)))
        .collect()
}

/// Roles from `tokenizer_config.json` beside the tokenizer when present, else from the
/// conventional names.
fn roles_of(tokenizer_path: &Path, content: &str) -> Vec<Role> {
    let config = tokenizer_path.parent().map(|d| d.join("tokenizer_config.json")).and_then(|p| std::fs::read_to_string(p).ok());
    let config: Option<Value> = config.and_then(|t| serde_json::from_str(&t).ok());
    let named = |key: &str, defaults: &[&str]| match config.as_ref().and_then(|c| c.get(key)).and_then(token_name) {
        Some(name) => name == content,
        None => defaults.contains(&content),
    };
    let mut roles = Vec::new();
    if named("bos_token", &["<s>", "<bos>", "<|begin_of_text|>", "<|startoftext|>"]) {
        roles.push(Role::Bos);
    }
    if named("eos_token", &["</s>", "<eos>", "<|endoftext|>", "<|end_of_text|>", "<|im_end|>"]) {
        roles.push(Role::Eos);
    }
    if named("unk_token", &["<unk>", "<|unk|>"]) {
        roles.push(Role::Unk);
    }
    if named("pad_token", &["<pad>", "<|pad|>"]) {
        roles.push(Role::Pad);
    }
    roles
}

fn token_name(v: &Value) -> Option<String> {
    v.as_str().map(String::from).or_else(|| v.get("content").and_then(Value::as_str).map(String::from))
}

/// Every entry of a `tokenizer.json`'s vocabulary (model vocabulary and added tokens), by id.
pub fn token_texts(path: &Path) -> Result<Vec<TokenText>> {
    let text = std::fs::read_to_string(path).map_err(|e| bad_input(path, format!("cannot read: {e}")))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| bad_input(path, format!("not JSON ({e})")))?;
    let vocab = json.pointer("/model/vocab").and_then(Value::as_object).ok_or_else(|| bad_input(path, "no model.vocab object (only BPE-style vocabularies are supported)"))?;
    let mut entries: HashMap<u32, (String, bool)> = vocab.iter().filter_map(|(t, id)| Some((id.as_u64()? as u32, (t.clone(), false)))).collect();
    for added in json.get("added_tokens").and_then(Value::as_array).into_iter().flatten() {
        if let (Some(id), Some(content)) = (added.get("id").and_then(Value::as_u64), added.get("content").and_then(Value::as_str)) {
            entries.insert(id as u32, (content.to_string(), added.get("special").and_then(Value::as_bool).unwrap_or(false)));
        }
    }
    let size = entries.keys().max().map_or(0, |&m| m as usize + 1);
    let (encoding, byte_level) = (encoding_of(&json), byte_level_decoder());
    (0..size as u32)
        .map(|id| {
            let (raw, special) = entries.get(&id).cloned().ok_or_else(|| bad_input(path, format!("vocabulary has no token with id {id}")))?;
            let bytes = if special { raw.clone().into_bytes() } else { decode_entry(&raw, encoding, &byte_level) };
            let roles = if special { roles_of(path, &raw) } else { Vec::new() };
            Ok(TokenText { symbols: symbols_of(&bytes), bytes, special, roles, raw })
        })
        .collect()
}

/// How a source token found its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchKind {
    Exact,
    Nearest,
    Special,
}

impl MatchKind {
    fn name(self) -> &'static str {
        match self {
            MatchKind::Exact => "exact",
            MatchKind::Nearest => "nearest",
            MatchKind::Special => "special",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Mapping {
    pub target: u32,
    pub distance: u32,
    pub kind: MatchKind,
}

/// A trie of the target texts' symbols; each text ends at a node holding its (lowest) id.
struct Trie {
    children: Vec<Vec<(u32, u32)>>,
    terminal: Vec<Option<u32>>,
    depth: usize,
}

impl Trie {
    fn build(texts: &[(&[u32], u32)]) -> Trie {
        let mut trie = Trie { children: vec![Vec::new()], terminal: vec![None], depth: 0 };
        for &(text, id) in texts {
            let mut node = 0usize;
            for &symbol in text {
                node = match trie.children[node].binary_search_by_key(&symbol, |&(c, _)| c) {
                    Ok(i) => trie.children[node][i].1 as usize,
                    Err(i) => {
                        let next = trie.children.len() as u32;
                        trie.children[node].insert(i, (symbol, next));
                        trie.children.push(Vec::new());
                        trie.terminal.push(None);
                        next as usize
                    }
                };
            }
            trie.terminal[node].get_or_insert(id);
            trie.depth = trie.depth.max(text.len());
        }
        trie
    }

    /// The first target in symbol order within distance `bound` of `query`, with its
    /// distance. Called with bounds 1, 2, 3, …: at the first bound that matches, every match
    /// is at exactly that distance, so the first one found (symbol order) is the answer.
    fn first_within(&self, query: &[u32], bound: u32) -> Option<(u32, u32)> {
        let width = query.len() + 1;
        // Row `d` of the Levenshtein table for the trie path at depth d, one buffer for all.
        let mut rows = vec![0u32; width * (self.depth + 1)];
        rows.iter_mut().take(width).enumerate().for_each(|(j, v)| *v = j as u32);
        let mut best = None;
        self.search(0, 0, &mut rows, query, bound, &mut best);
        best
    }

    fn search(&self, node: usize, depth: usize, rows: &mut [u32], query: &[u32], bound: u32, best: &mut Option<(u32, u32)>) {
        let width = query.len() + 1;
        let start = depth * width;
        if let Some(id) = self.terminal[node] {
            let d = rows[start + width - 1];
            if d <= bound {
                *best = Some((id, d));
                return;
            }
        }
        for &(symbol, child) in &self.children[node] {
            if best.is_some() {
                return;
            }
            let (done, rest) = rows.split_at_mut(start + width);
            let (prev, next) = (&done[start..], &mut rest[..width]);
            next[0] = prev[0] + 1;
            let mut lowest = next[0];
            for j in 1..width {
                next[j] = (prev[j - 1] + u32::from(query[j - 1] != symbol)).min(prev[j] + 1).min(next[j - 1] + 1);
                lowest = lowest.min(next[j]);
            }
            if lowest <= bound {
                self.search(child as usize, depth + 1, rows, query, bound, best);
            }
        }
    }
}

/// The lowest id of every distinct non-special target text, sorted by text.
fn target_texts(target: &[TokenText]) -> Vec<(&[u32], u32)> {
    let mut lowest: HashMap<&[u32], u32> = HashMap::new();
    for (id, t) in target.iter().enumerate().filter(|(_, t)| !t.special) {
        lowest.entry(&t.symbols).or_insert(id as u32);
    }
    let mut texts: Vec<(&[u32], u32)> = lowest.into_iter().collect();
    texts.sort();
    texts
}

/// Where special tokens go: same role, else same text among the target's specials, else
/// the target's unk, else its eos, else its lowest special id.
fn special_target(token: &TokenText, target: &[TokenText]) -> Option<u32> {
    let with_role = |role: Role| target.iter().position(|t| t.roles.contains(&role)).map(|i| i as u32);
    token.roles.iter().find_map(|&r| with_role(r))
        .or_else(|| target.iter().position(|t| t.special && t.raw == token.raw).map(|i| i as u32))
        .or_else(|| with_role(Role::Unk))
        .or_else(|| with_role(Role::Eos))
        .or_else(|| target.iter().position(|t| t.special).map(|i| i as u32))
}

/// The MinED mapping of every source token into the target vocabulary (see the module doc).
pub fn min_edit_mapping(source: &[TokenText], target: &[TokenText]) -> Vec<Mapping> {
    let texts = target_texts(target);
    let exact: HashMap<&[u32], u32> = texts.iter().copied().collect();
    let trie = Trie::build(&texts);
    let progress = indicatif::ProgressBar::new(source.len() as u64).with_message("vocab-map");
    let mapping = source
        .par_iter()
        .map(|token| {
            progress.inc(1);
            if token.special {
                if let Some(t) = special_target(token, target) {
                    return Mapping { target: t, distance: 0, kind: MatchKind::Special };
                }
            }
            if let Some(&t) = exact.get(token.symbols.as_slice()) {
                return Mapping { target: t, distance: 0, kind: MatchKind::Exact };
            }
            let (t, distance) = (1..).find_map(|bound| trie.first_within(&token.symbols, bound)).expect("a bound of the longer length always matches");
            Mapping { target: t, distance, kind: MatchKind::Nearest }
        })
        .collect();
    progress.finish_and_clear();
    mapping
}

/// The same mapping by brute force over all target texts (strsim), for tests and benchmarks.
pub fn brute_force_mapping(token: &TokenText, target: &[TokenText]) -> Mapping {
    if token.special {
        if let Some(t) = special_target(token, target) {
            return Mapping { target: t, distance: 0, kind: MatchKind::Special };
        }
    }
    let (distance, _, id) = target_texts(target)
        .into_iter()
        .map(|(text, id)| (strsim::generic_levenshtein(&token.symbols, &text.to_vec()) as u32, text, id))
        .min()
        .expect("a non-empty target vocabulary");
    Mapping { target: id, distance, kind: if distance == 0 { MatchKind::Exact } else { MatchKind::Nearest } }
}

fn display(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `vocab-map`: write the mapping table (Parquet) and its flat `u32` array (`.map` beside it).
pub fn vocab_map(from: &Path, to: &Path, out: &Path) -> Result<()> {
    let (source, target) = (token_texts(from)?, token_texts(to)?);
    if target.iter().all(|t| t.special) {
        return Err(bad_input(to, "the target vocabulary has no ordinary tokens"));
    }
    let started = std::time::Instant::now();
    let mapping = min_edit_mapping(&source, &target);
    let flat: Vec<u8> = mapping.iter().flat_map(|m| m.target.to_le_bytes()).collect();
    let map_path = out.with_extension("map");
    io::write_atomically(&map_path, |f| Ok(std::io::Write::write_all(f, &flat)?))?;
    let schema = Arc::new(Schema::new(vec![
        Field::new("src_id", DataType::UInt32, false),
        Field::new("src_text", DataType::Utf8, false),
        Field::new("tgt_id", DataType::UInt32, false),
        Field::new("tgt_text", DataType::Utf8, false),
        Field::new("distance", DataType::UInt32, false),
        Field::new("match", DataType::Utf8, false),
    ]));
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            Arc::new(UInt32Array::from_iter_values(0..source.len() as u32)),
            Arc::new(StringArray::from_iter_values(source.iter().map(|t| display(&t.bytes)))),
            Arc::new(UInt32Array::from_iter_values(mapping.iter().map(|m| m.target))),
            Arc::new(StringArray::from_iter_values(mapping.iter().map(|m| display(&target[m.target as usize].bytes)))),
            Arc::new(UInt32Array::from_iter_values(mapping.iter().map(|m| m.distance))),
            Arc::new(StringArray::from_iter_values(mapping.iter().map(|m| m.kind.name()))),
        ],
    )?;
    let provenance = Provenance::new(VOCAB_MAP_FORMAT, 1, "vocab-map")
        .input("from", io::file_hash(from)?)
        .input("to", io::file_hash(to)?)
        .extra("map_sha256", format!("sha256:{}", io::sha256_hex(&flat)))
        .extra("source_vocab", source.len())
        .extra("target_vocab", target.len());
    io::write_parquet(out, schema, &[batch], &provenance)?;
    let exact = mapping.iter().filter(|m| m.kind == MatchKind::Exact).count();
    eprintln!("vocab-map: {} tokens ({exact} exact) in {:.2?} -> {} and {}", source.len(), started.elapsed(), out.display(), map_path.display());
    Ok(())
}
