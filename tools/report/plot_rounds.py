"""Accuracy by round per party, from `report results`' Parquet table (tools/FORMATS.md).

Usage: plot_rounds.py REPORT.parquet OUT.png

One panel each for acc and acc_norm; a line per (method, party) over rounds starting from
the party's Zero-Shot score at round 0, each point with its 95% bootstrap interval as a bar;
other baselines as dashed horizontal lines over a light band of their interval.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import pyarrow.parquet as pq


def main(report, out):
    rows = pq.read_table(report).to_pylist()
    zero = {r["party"]: r for r in rows if r["method"] == "Zero-Shot"}
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, metric in zip(axes, ["acc", "acc_norm"]):
        point = lambda r: (100 * r[metric], 100 * r[f"{metric}_low"], 100 * r[f"{metric}_high"])
        series = {}
        for r in rows:
            if r["round"] is not None:
                series.setdefault((r["method"], r["party"]), []).append((r["round"], *point(r)))
        # Each line's points shifted a little sideways, so overlapping bars stay apart.
        for i, ((method, party), points) in enumerate(sorted(series.items())):
            if party in zero:
                points = [(0, *point(zero[party]))] + points
            xs, ys, lows, highs = zip(*sorted(points))
            bars = [[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]]
            xs = [x + 0.04 * (i - (len(series) - 1) / 2) for x in xs]
            ax.errorbar(xs, ys, yerr=bars, marker="o", capsize=3, label=f"{method} {party}")
        for r in rows:
            if r["round"] is None and r["method"] != "Zero-Shot":
                y, low, high = point(r)
                line = ax.axhline(y, linestyle="--", linewidth=1, color="grey")
                ax.axhspan(low, high, color=line.get_color(), alpha=0.08)
                ax.annotate(f"{r['method']} {r['party']}", (0, y), fontsize=7, color="grey", va="bottom")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_title(metric)
        ax.set_xlabel("round (0: zero-shot)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[1].legend(fontsize=7, loc="best")
    fig.tight_layout()
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main(*sys.argv[1:3])
