"""Accuracy by round per party, from `report results`' Parquet table (tools/FORMATS.md).

Usage: plot_rounds.py REPORT.parquet OUT.png

One panel each for acc and acc_norm; a line per (method, party) over rounds starting from
the party's Zero-Shot score at round 0; other baselines as dashed horizontal lines.
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
        series = {}
        for r in rows:
            if r["round"] is not None:
                series.setdefault((r["method"], r["party"]), []).append((r["round"], 100 * r[metric]))
        for (method, party), points in sorted(series.items()):
            if party in zero:
                points = [(0, 100 * zero[party][metric])] + points
            xs, ys = zip(*sorted(points))
            ax.plot(xs, ys, marker="o", label=f"{method} {party}")
        for r in rows:
            if r["round"] is None and r["method"] != "Zero-Shot":
                ax.axhline(100 * r[metric], linestyle="--", linewidth=1, color="grey")
                ax.annotate(f"{r['method']} {r['party']}", (0, 100 * r[metric]), fontsize=7, color="grey", va="bottom")
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
