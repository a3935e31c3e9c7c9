#!/usr/bin/env python3
"""A replacement `align` stage: the built-in `align`, then leave out positions the sender is unsure of.

`make round ALIGN=examples/align_confident.py NAME=confident` runs the round with it.

Where a sender is unsure, its top-K holds little of its probability and the rest sits in
`tail_mass` (`inspect` shows both); distilled as `distill` does by default, renormalised over
the top-K, such a row teaches a sharper distribution than the sender believes. This stage
runs `align` with the flags it was given (the tool at $FEDMKT_ALIGN, else the checkout's
target/release/align), then leaves out every position whose top-K holds less than MIN_MASS of
the sender's probability, 1 - tail_mass (the environment's ALIGN_MIN_MASS, 0.5 by default),
as align's `--fallback skip` leaves out positions without a match. One-hot rows stay.

It writes the `knowledge` format of tools/FORMATS.md (aligned sets): the same columns and
metadata as align's output, the positions left out counted as unmatched, `fedmkt.tool`
naming both programs and `fedmkt.min_mass` the threshold.
"""
import argparse
import os
import pathlib
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq

MIN_MASS = float(os.environ.get("ALIGN_MIN_MASS", "0.5"))
ALIGN = os.environ.get("FEDMKT_ALIGN", str(pathlib.Path(__file__).resolve().parent.parent / "target/release/align"))
PER_POSITION = ["positions", "topk_ids", "topk_logits", "logsumexp", "tail_mass"]


def filter_row(row):
    """The row without its blurred positions; how many it left out."""
    keep = [1.0 - tail >= MIN_MASS for tail in row["tail_mass"]]
    for column in PER_POSITION:
        row[column] = [v for v, k in zip(row[column], keep) if k]
    dropped = keep.count(False)
    row["matched_positions"] -= min(dropped, row["matched_positions"])
    row["unmatched_positions"] += dropped
    return dropped


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    args, align_args = parser.parse_known_args()
    aligned = args.out + ".align.tmp"
    if subprocess.run([ALIGN, *align_args, "--out", aligned]).returncode != 0:
        sys.exit(2)
    table = pq.read_table(aligned)
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    rows = table.to_pylist()
    dropped = sum(filter_row(row) for row in rows)
    meta["fedmkt.tool"] = f"align_confident.py (min mass {MIN_MASS}) after {meta['fedmkt.tool']}"
    meta["fedmkt.min_mass"] = str(MIN_MASS)
    meta["fedmkt.matched_positions"] = str(sum(r["matched_positions"] for r in rows))
    meta["fedmkt.unmatched_positions"] = str(sum(r["unmatched_positions"] for r in rows))
    out = pa.Table.from_pylist(rows, schema=table.schema).replace_schema_metadata(meta)
    pq.write_table(out, args.out + ".tmp", compression="snappy")
    os.replace(args.out + ".tmp", args.out)
    os.remove(aligned)
    kept = sum(len(r["positions"]) for r in rows)
    print(f"align_confident.py: left out {dropped} positions with less than {MIN_MASS} of the sender's mass in its top-K, "
          f"kept {kept} -> {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
