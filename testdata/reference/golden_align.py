"""Golden output of `align --strategy offsets`, computed from its input files with pyarrow and
the standard library, following the rule as tools/FORMATS.md ("Aligned knowledge sets") and
docs/differences.md state it, not the Rust code:

- tokens whose byte spans overlap are aligned (empty spans align with nothing);
- receiver token j is matched with sender token i when each is the first of the other's
  aligned tokens and they align one to one, or the vocabulary map takes i's id to j's;
- receiver position p (its logits predict token p+1) takes the sender's row at position i-1
  when token p+1 is matched with sender token i >= 1; at the text's end (all-positions sets)
  the last position takes the sender's last;
- the row's ids go through the map; ids landing on one receiver id add their probabilities
  (log-sum-exp), sorted by logit (ties: lower id), padded with id 4294967295 and logit -inf;
- unmatched positions are left out (skip) or a one-hot on the receiver's next token (onehot).

Inputs (testdata/golden/align/, made once by the tools and committed): sender.parquet and
sender-all.parquet (tiny Gemma-3's knowledge of its eval tokens, top-4, answer positions and
all positions), map.parquet (vocab-map tiny Gemma-3 -> tiny Llama); the two token files of
testdata/data/tokens/. Output: expected.json, per case and sample the positions, ids and
logits.
"""
import json
import math
import pathlib
import struct

import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent
HERE = ROOT / "golden" / "align"
PAD = 4294967295


def f16(x):
    """x rounded to IEEE half precision, as the knowledge format stores logits."""
    return struct.unpack("<e", struct.pack("<e", x))[0]


def rows(path):
    return {r["id"]: r for r in pq.read_table(path).to_pylist()}


def spans(tokens):
    return list(zip(tokens["token_start"], tokens["token_end"]))


def aligned_pairs(sender, receiver):
    """Every (i, j) whose byte spans overlap, empty spans left out."""
    return [(i, j) for i, (s0, s1) in enumerate(sender) if s0 < s1
            for j, (r0, r1) in enumerate(receiver) if r0 < r1 and r0 < s1 and s0 < r1]


def matches(pairs, sender_ids, receiver_ids, mapping):
    to_sender, to_receiver = {}, {}
    for i, j in pairs:
        to_sender.setdefault(j, []).append(i)
        to_receiver.setdefault(i, []).append(j)
    matched = {}
    for j in range(len(receiver_ids)):
        if j not in to_sender:
            continue
        i = min(to_sender[j])
        if min(to_receiver[i]) != j:
            continue
        one_to_one = len(to_receiver[i]) == 1 and len(to_sender[j]) == 1
        if one_to_one or mapping[sender_ids[i]] == receiver_ids[j]:
            matched[j] = i
    return matched


def map_row(ids, logits, mapping):
    merged = {}
    for token, logit in zip(ids, logits):
        if math.isfinite(logit):
            merged.setdefault(mapping[token], []).append(logit)
    entries = []
    for token, values in merged.items():
        top = max(values)
        entries.append((token, f16(top + math.log(sum(math.exp(v - top) for v in values)))))
    entries.sort(key=lambda e: (-e[1], e[0]))
    pad = len(ids) - len(entries)
    return [e[0] for e in entries] + [PAD] * pad, [e[1] for e in entries] + [-math.inf] * pad


def answer_positions(tokens):
    return list(range(max(tokens["answer_start"], 1) - 1, len(tokens["input_ids"]) - 1))


def align_sample(sender_tokens, knowledge, receiver_tokens, mapping, all_positions, fallback):
    pairs = aligned_pairs(spans(sender_tokens), spans(receiver_tokens))
    matched = matches(pairs, sender_tokens["input_ids"], receiver_tokens["input_ids"], mapping)
    row_at = {p: r for r, p in enumerate(knowledge["positions"])}
    n = len(receiver_tokens["input_ids"])
    last = row_at.get(len(sender_tokens["input_ids"]) - 1)
    positions = list(range(n - 1)) + ([n - 1] if last is not None else []) if all_positions \
        else answer_positions(receiver_tokens)
    out = {"positions": [], "ids": [], "logits": []}
    for p in positions:
        if p + 1 == n:
            row = last
        else:
            i = matched.get(p + 1)
            row = row_at.get(i - 1) if i is not None and i >= 1 else None
        if row is not None:
            ids, logits = map_row(knowledge["topk_ids"][row], knowledge["topk_logits"][row], mapping)
        elif fallback == "skip":
            continue
        else:
            k = len(knowledge["topk_ids"][0])
            ids, logits = [receiver_tokens["input_ids"][p + 1]] + [PAD] * (k - 1), [0.0] + [-math.inf] * (k - 1)
        out["positions"].append(p)
        out["ids"].append(ids)
        out["logits"].append([l if math.isfinite(l) else "-inf" for l in logits])
    return out


def main():
    mapping = pq.read_table(HERE / "map.parquet").column("tgt_id").to_pylist()
    sender_tokens = rows(ROOT / "data/tokens/tiny-gemma3/arc-easy-eval.parquet")
    receiver_tokens = rows(ROOT / "data/tokens/tiny-llama/arc-easy-eval.parquet")
    cases = {}
    for name, knowledge_file, all_positions, fallback in [
        ("answer-skip", "sender.parquet", False, "skip"),
        ("answer-onehot", "sender.parquet", False, "onehot"),
        ("all-skip", "sender-all.parquet", True, "skip"),
    ]:
        knowledge = rows(HERE / knowledge_file)
        cases[name] = {sample: align_sample(sender_tokens[sample], knowledge[sample], receiver_tokens[sample],
                                            mapping, all_positions, fallback) for sample in knowledge}
    (HERE / "expected.json").write_text(json.dumps(cases, indent=1) + "\n")


if __name__ == "__main__":
    main()
