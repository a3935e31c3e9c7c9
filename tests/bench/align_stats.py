"""Alignment statistics for the closing note and README (not a test).

usage: align_stats.py SENDER_KNOWLEDGE MAP ALIGNED [ALIGNED ...]
Prints, per aligned file, the share of receiver positions matched; and for the sender's
top-K: the probability mass it holds, the share our log-sum-exp merge keeps after mapping
through the vocabulary map, and the share the paper's/reference's first-wins rule keeps.
"""
import sys
import numpy as np
import pyarrow.parquet as pq

knowledge, map_path, aligned = sys.argv[1], sys.argv[2], sys.argv[3:]
vmap = np.fromfile(map_path.replace(".parquet", ".map"), dtype="<u4")
k = pq.read_table(knowledge)
total = merged = first_wins = 0.0
for ids, logits, lse in zip(k["topk_ids"].to_pylist(), k["topk_logits"].to_pylist(), k["logsumexp"].to_pylist()):
    for row_ids, row_logits, z in zip(ids, logits, lse):
        p = np.exp(np.array(row_logits, dtype=np.float64) - z)
        mapped = vmap[np.array(row_ids)]
        total += p.sum()
        merged += p.sum()  # every id maps (MinED maps every token); merging adds probabilities
        _, first = np.unique(mapped, return_index=True)
        first_wins += p[first].sum()
print(f"{knowledge}: top-K mass {total:.1f} over the positions; kept after mapping: merge {merged / total:.2%}, first-wins {first_wins / total:.2%}")
for path in aligned:
    meta = pq.read_metadata(path).metadata
    m, u = int(meta[b"fedmkt.matched_positions"]), int(meta[b"fedmkt.unmatched_positions"])
    print(f"  {path} ({meta[b'fedmkt.strategy'].decode()}): {m}/{m + u} positions matched = {m / (m + u):.1%}")
