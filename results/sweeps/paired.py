"""Paired comparisons between the rates of a learning-rate sweep (run by hand; pyarrow only).

Usage: paired.py FOLDER BASE LR [LR ...]   (FOLDER holds lr-<rate>.parquet prediction files)
Per rate against BASE on the same samples: the accuracy difference with its seeded paired
bootstrap interval (10,000 resamples), the discordant pairs and McNemar's exact p-value, and
the gold log-likelihood per byte difference with its paired bootstrap interval.
"""
import math
import random
import sys

import pyarrow.parquet as pq


def load(folder, rate):
    rows = pq.read_table(f"{folder}/lr-{rate}.parquet").to_pylist()
    return {r["id"]: (int(r["pred"] == r["gold"]), r["gold_loglik_per_byte"]) for r in rows}


def mcnemar_exact(b, c):
    n, k = b + c, min(b, c)
    return min(1.0, 2 * sum(math.comb(n, i) for i in range(k + 1)) / 2**n) if n else 1.0


def bootstrap_interval(values, resamples=10_000, seed=0):
    rng, n = random.Random(seed), len(values)
    means = sorted(sum(values[rng.randrange(n)] for _ in range(n)) / n for _ in range(resamples))
    return means[int(0.025 * resamples)], means[int(0.975 * resamples) - 1]


def main(folder, base, rates):
    reference = load(folder, base)
    ids = sorted(reference)
    for rate in rates:
        other = load(folder, rate)
        acc = [other[i][0] - reference[i][0] for i in ids]
        loglik = [other[i][1] - reference[i][1] for i in ids]
        b, c = acc.count(1), acc.count(-1)
        (alo, ahi), (llo, lhi) = bootstrap_interval(acc), bootstrap_interval(loglik)
        print(f"{rate} vs {base}: n={len(ids)} acc {100 * sum(acc) / len(ids):+.1f} pp [{100 * alo:+.1f}, {100 * ahi:+.1f}]"
              f" (right only under each: {b}/{c}) McNemar p={mcnemar_exact(b, c):.3f};"
              f" gold log-lik/byte {sum(loglik) / len(ids):+.3f} [{llo:+.3f}, {lhi:+.3f}]")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:])
