"""Golden numbers of `report results`, recomputed from per-sample predictions with pyarrow and
Python's standard library: for the committed one-to-one ARC-Easy seed 1 (results/), each row's
n, acc, acc_norm, mean gold log-likelihood per byte and mean margin, and for each paired row
the samples right under one method only, McNemar's exact p (two-sided binomial, as scipy's
binomtest), and the mean differences of acc, gold log-likelihood per byte and margin. (The
bootstrap intervals are the stats module's, checked against scipy in golden_stats.py.)
Output: testdata/golden/report/expected.json.
"""
import json
import math
import pathlib

import pyarrow.parquet as pq

ROOT = pathlib.Path(__file__).resolve().parent.parent.parent
SEED = ROOT / "results" / "one-to-one" / "arc-easy" / "seed-1"
OUT = ROOT / "testdata" / "golden" / "report" / "expected.json"


def predictions(summary):
    rows = pq.read_table(ROOT / pathlib.Path(summary).with_suffix(".parquet")).to_pylist()
    return {r["id"]: r for r in rows}


def mean(values):
    return sum(values) / len(values)


def mcnemar(b, c):
    n = b + c
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def main():
    report = pq.read_table(SEED / "report.parquet").to_pylist()
    files = {(r["method"], r["round"], r["party"]): r["file"] for r in report if r["file"]}
    rows = []
    for (method, rnd, party), file in sorted(files.items(), key=str):
        p = list(predictions(file).values())
        rows.append({"method": method, "round": rnd, "party": party, "n": len(p),
                     "acc": mean([float(r["pred"] == r["gold"]) for r in p]),
                     "acc_norm": mean([float(r["pred_norm"] == r["gold"]) for r in p]),
                     "gold_loglik_per_byte": mean([r["gold_loglik_per_byte"] for r in p]),
                     "margin": mean([r["margin"] for r in p])})
    paired = []
    for row in pq.read_table(SEED / "paired.parquet").to_pylist():
        key, against = (row["method"], row["round"], row["party"]), (row["against_method"], row["against_round"], row["party"])
        if key not in files or against not in files:
            continue
        a, b = predictions(files[key]), predictions(files[against])
        ids = sorted(a)
        right = lambda p, i: p[i]["pred"] == p[i]["gold"]
        only_a = sum(right(a, i) and not right(b, i) for i in ids)
        only_b = sum(right(b, i) and not right(a, i) for i in ids)
        paired.append({"method": key[0], "round": key[1], "party": key[2], "against_method": against[0],
                       "against_round": against[1], "n": len(ids),
                       "acc_diff": mean([float(right(a, i)) - float(right(b, i)) for i in ids]),
                       "only_method_right": only_a, "only_against_right": only_b, "mcnemar_p": mcnemar(only_a, only_b),
                       "gold_loglik_per_byte_diff": mean([a[i]["gold_loglik_per_byte"] - b[i]["gold_loglik_per_byte"] for i in ids]),
                       "margin_diff": mean([a[i]["margin"] - b[i]["margin"] for i in ids])})
    OUT.write_text(json.dumps({"rows": rows, "paired": paired}, indent=1) + "\n")


if __name__ == "__main__":
    main()
