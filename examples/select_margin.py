#!/usr/bin/env python3
"""A replacement `select` stage: keep a sender only where it beats the receiver by a clear margin.

`make round SELECT=examples/select_margin.py NAME=margin` runs the round with it.

DualMinCE (the built-in `select`) lets the best sender win a public sample as soon as its
answer loss per byte is below the receiver's, however slightly. This stage keeps the best
sender only where its relative margin, (receiver loss - sender loss) / receiver loss, is above
MIN_MARGIN (the environment's SELECT_MIN_MARGIN, 0.1 by default): a sender that knows the
answer only a little better than the receiver does not get to move it.

It reads the flags and files `select` reads (--local, --candidates, --fallback drop|self,
--tolerance is accepted and unused) and writes the `selected` format of tools/FORMATS.md,
provenance metadata included, so `distill` takes its output as it takes select's.
"""
import argparse
import hashlib
import os
import sys

import pyarrow as pa
import pyarrow.parquet as pq

MIN_MARGIN = float(os.environ.get("SELECT_MIN_MARGIN", "0.1"))
# What a selected file carries over from the receiver's own set (tools/FORMATS.md, selected).
CARRIED = ["dataset", "tokenizer", "tokens"]
KNOWLEDGE_COLUMNS = ["id", "answer_nll", "answer_tokens", "answer_bytes", "positions", "topk_ids",
                     "topk_logits", "logsumexp", "tail_mass"]


def fail(message):
    """One line on stderr, exit 2: the stages' rule for bad input."""
    print(f"select_margin.py: {message}", file=sys.stderr)
    sys.exit(2)


def sha256(path):
    with open(path, "rb") as f:
        return "sha256:" + hashlib.sha256(f.read()).hexdigest()


def read_knowledge(path):
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as e:
        fail(f"{path}: not a Parquet file ({e})")
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    if meta.get("fedmkt.format") != "knowledge":
        fail(f"{path}: format {meta.get('fedmkt.format')!r}, expected 'knowledge'")
    return table, meta


def loss_per_byte(table):
    """Each sample's answer NLL per answer byte: comparable across tokenizers."""
    nll, size = table.column("answer_nll").to_pylist(), table.column("answer_bytes").to_pylist()
    return [n / b for n, b in zip(nll, size)]


def choose(local, candidates):
    """Per receiver sample: (row index in its table, which table, party, sender loss) or None."""
    own_loss = loss_per_byte(local[0])
    senders = []
    for table, meta in candidates:
        index = {sample: i for i, sample in enumerate(table.column("id").to_pylist())}
        senders.append((table, meta["fedmkt.sender"], index, loss_per_byte(table)))
    choices = []
    for i, sample in enumerate(local[0].column("id").to_pylist()):
        offers = [(losses[index[sample]], k) for k, (_, _, index, losses) in enumerate(senders) if sample in index]
        if len(offers) < len(senders):
            fail(f"a candidate lacks sample {sample!r} of the receiver's set")
        best_loss, k = min(offers)
        margin = (own_loss[i] - best_loss) / own_loss[i] if own_loss[i] > 0 else 0.0
        table, party, index, _ = senders[k]
        choices.append((index[sample], table, party, best_loss, own_loss[i]) if margin > MIN_MARGIN else None)
    return choices, own_loss


def write(local, choices, own_loss, args):
    rows, wins = [], {}
    for i, choice in enumerate(choices):
        if choice is None and args.fallback == "self":
            choice = (i, local[0], "self", own_loss[i], own_loss[i])
        if choice is None:
            continue
        row, table, party, sender_loss, receiver_loss = choice
        record = {c: table.column(c)[row].as_py() for c in KNOWLEDGE_COLUMNS}
        rows.append({**record, "party": party, "receiver_loss": receiver_loss, "sender_loss": sender_loss})
        wins[party] = wins.get(party, 0) + 1
    schema = local[0].schema.remove_metadata()
    schema = pa.schema([schema.field(c) for c in KNOWLEDGE_COLUMNS] + [
        pa.field("party", pa.string(), False), pa.field("receiver_loss", pa.float64(), False),
        pa.field("sender_loss", pa.float64(), False)])
    table = pa.Table.from_pylist(rows, schema=schema)
    senders = {k: v for k, v in wins.items() if k != "self"}
    receiver = len(choices) - sum(senders.values())
    meta = {"fedmkt.format": "selected", "fedmkt.format_version": "1",
            "fedmkt.tool": f"select_margin.py (min margin {MIN_MARGIN})",
            "fedmkt.wins": ",".join([f"{p}={n}" for p, n in sorted(senders.items())] + [f"receiver={receiver}"]),
            "fedmkt.min_margin": str(MIN_MARGIN), "fedmkt.input.local": sha256(args.local)}
    for key in ["top_k", "positions", "vocab_size", "sampled"] + [f"input.{c}" for c in CARRIED]:
        if f"fedmkt.{key}" in local[1]:
            meta[f"fedmkt.{key}"] = local[1][f"fedmkt.{key}"]
    if args.fallback == "self":
        meta["fedmkt.fallback"] = "self"
    for k, path in enumerate(args.candidates, 1):
        meta[f"fedmkt.input.candidate{k}"] = sha256(path)
    pq.write_table(table.replace_schema_metadata(meta), args.out + ".tmp", compression="snappy")
    os.replace(args.out + ".tmp", args.out)
    print(f"select_margin.py: {len(choices)} samples; won: {meta['fedmkt.wins']} -> {args.out}", file=sys.stderr)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--local", required=True)
    parser.add_argument("--candidates", nargs="+", required=True)
    parser.add_argument("--fallback", choices=["drop", "self"], default="drop")
    parser.add_argument("--tolerance", type=float, default=1e-6)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    local = read_knowledge(args.local)
    candidates = [read_knowledge(path) for path in args.candidates]
    for path, (_, meta) in zip(args.candidates, candidates):
        if meta.get("fedmkt.input.tokens") != local[1].get("fedmkt.input.tokens"):
            fail(f"{path}: aligned to other tokens than --local {args.local}")
    choices, own_loss = choose(local, candidates)
    write(local, choices, own_loss, args)


if __name__ == "__main__":
    main()
