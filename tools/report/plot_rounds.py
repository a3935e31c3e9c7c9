"""Accuracy by round, one panel per party, from `report results`' Parquet table (tools/FORMATS.md).

Usage: plot_rounds.py REPORT.parquet OUT.png

Rows acc and acc_norm, a column per party: the server, then the clients, or only their
mean where the table has one (the clients' own rows stay in the tables: four near-identical
panels would hide the comparison). In each panel a line per method with rounds, starting
from the party's Zero-Shot score at round 0, each point with its 95% bootstrap interval as
a bar, one colour per method in every panel; the party's other baselines as dashed lines
over a light band of their interval, named at the left edge.
"""
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
from matplotlib.ticker import MaxNLocator
import pyarrow.parquet as pq

CLIENTS_MEAN = "clients-mean"
METRICS = ["acc", "acc_norm"]
# One colour per method in every plot of every cell; methods not named here take the next ones.
METHOD_ORDER = ["FedMKT", "FedMKT-noKD", "FedAvg", "LLM2SLM"]


def panel_parties(rows):
    """The server first, then the clients' mean if there is one, else each client."""
    parties = sorted({r["party"] for r in rows}, key=lambda p: (p != "server", p))
    if CLIENTS_MEAN in parties:
        return [p for p in parties if p in ("server", CLIENTS_MEAN)]
    return parties


def round_methods(rows):
    """The methods with rounds, known ones in METHOD_ORDER, then the others by name."""
    names = {r["method"] for r in rows if r["round"] is not None}
    rank = lambda m: (METHOD_ORDER.index(m) if m in METHOD_ORDER else len(METHOD_ORDER), m)
    return sorted(names, key=rank)


def method_colours(methods):
    """A fixed colour per known method in every plot; the others take the next free ones."""
    others = [m for m in methods if m not in METHOD_ORDER]
    return {m: f"C{i}" for i, m in enumerate(METHOD_ORDER + others) if m in methods}


def point(row, metric):
    return 100 * row[metric], 100 * row[f"{metric}_low"], 100 * row[f"{metric}_high"]


def draw_rounds(ax, rows, metric, colours):
    """A line per method over its rounds, from Zero-Shot at round 0, shifted apart a little."""
    zero = [r for r in rows if r["method"] == "Zero-Shot"]
    methods = round_methods(rows)
    for i, method in enumerate(methods):
        points = [(r["round"], *point(r, metric)) for r in rows if r["method"] == method]
        if zero:
            points.append((0, *point(zero[0], metric)))
        xs, ys, lows, highs = zip(*sorted(points))
        bars = [[y - lo for y, lo in zip(ys, lows)], [hi - y for y, hi in zip(ys, highs)]]
        xs = [x + 0.05 * (i - (len(methods) - 1) / 2) for x in xs]
        ax.errorbar(xs, ys, yerr=bars, marker="o", capsize=3, color=colours[method])


def draw_baselines(ax, rows, metric):
    """The party's baselines without rounds (Standalone, Centralized) as named dashed lines."""
    for r in rows:
        if r["round"] is None and r["method"] != "Zero-Shot":
            y, low, high = point(r, metric)
            ax.axhline(y, linestyle="--", linewidth=1, color="grey")
            ax.axhspan(low, high, color="grey", alpha=0.08)
            ax.annotate(r["method"], (0.02, y), xycoords=("axes fraction", "data"), fontsize=7,
                        color="grey", va="bottom")


def main(report, out):
    rows = pq.read_table(report).to_pylist()
    parties = panel_parties(rows)
    methods = round_methods(rows)
    colours = method_colours(methods)
    fig, axes = plt.subplots(len(METRICS), len(parties), figsize=(3.6 * len(parties), 6.4),
                             sharey="row", squeeze=False)
    for row_axes, metric in zip(axes, METRICS):
        for ax, party in zip(row_axes, parties):
            party_rows = [r for r in rows if r["party"] == party]
            draw_rounds(ax, party_rows, metric, colours)
            draw_baselines(ax, party_rows, metric)
            ax.set_title(f"{party} ({party_rows[0]['model']}): {metric}", fontsize=9)
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
        row_axes[0].set_ylabel(f"{metric} (%)")
    for ax in axes[-1]:
        ax.set_xlabel("round (0: zero-shot)")
    handles = [plt.Line2D([], [], color=colours[m], marker="o") for m in methods]
    fig.legend(handles, methods, loc="lower center", ncol=len(methods), fontsize=8)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(out, dpi=120)


if __name__ == "__main__":
    main(*sys.argv[1:3])
