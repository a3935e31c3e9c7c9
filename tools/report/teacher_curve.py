"""The teacher-advantage curve of the regime experiments (`make teacher-curve`): per run of
pipelines/teacher-curve.mk, the student's gain from KD against the teacher's advantage.

usage: teacher_curve.py OUT_DIR RUN_DIR [RUN_DIR ...]

Each RUN_DIR is one run (or its copy published into results/, with seed.json): a frozen
teacher (its model, the train parts it was fine-tuned on) and one student configuration
(public labels, λ), with its noKD sibling. From the run's settings.mk (seed.json's copy of
it), report.parquet and paired.parquet (made by `report results`, nothing recomputed):
- the teacher's accuracy and gold log-likelihood per byte (the server's row), the student's
  without KD (FedMKT-noKD, client-1), and the teacher's advantage: their difference;
- KD's gain: FedMKT against FedMKT-noKD for client-1 on the same samples (Δ acc with its
  paired bootstrap interval and McNemar's exact p, Δ gold log-likelihood per byte with its
  interval), and the verdict at α = 0.05.
Writes OUT_DIR/curve.parquet (format `teacher-curve`, tools/FORMATS.md), curve.md and, where
matplotlib is installed, curve.png.
"""
import json
import pathlib
import sys

import pyarrow as pa
import pyarrow.parquet as pq

from publish_cell import read_settings

ALPHA = 0.05


def settings(run):
    """A run's settings: its settings.mk, or, for a run published into results/, the copy
    its seed.json keeps."""
    if not (run / "settings.mk").exists():
        return json.loads((run / "seed.json").read_text())["settings"]
    return read_settings(run / "settings.mk")


def row_of(table, **where):
    rows = [r for r in table if all(r[k] == v for k, v in where.items())]
    if len(rows) != 1:
        sys.exit(f"teacher_curve.py: {len(rows)} rows where {where} (one expected)")
    return rows[0]


def verdict(p, diff):
    if p >= ALPHA:
        return "no significant difference"
    return "KD pays" if diff > 0 else "KD hurts"


def point(run):
    s = settings(run)
    results = pq.read_table(run / "report.parquet").to_pylist()
    paired = pq.read_table(run / "paired.parquet").to_pylist()
    teacher = row_of(results, method="FedMKT", party="server")
    student = row_of(results, method="FedMKT-noKD", party="client-1")
    kd = row_of(paired, method="FedMKT", party="client-1", against_method="FedMKT-noKD")
    return {
        "run": run.name, "teacher_model": s["SERVER"], "teacher_shards": int(s["TEACHER_SHARDS"]),
        "public_labels": s.get("PUBLIC_LABELS", "yes"), "lambda": float(s["LAMBDA"]), "n": kd["n"],
        "teacher_acc": teacher["acc"], "student_nokd_acc": student["acc"],
        "advantage_acc": teacher["acc"] - student["acc"],
        "teacher_gold_loglik_per_byte": teacher["gold_loglik_per_byte"],
        "student_nokd_gold_loglik_per_byte": student["gold_loglik_per_byte"],
        "advantage_gold_loglik_per_byte": teacher["gold_loglik_per_byte"] - student["gold_loglik_per_byte"],
        "kd_acc_diff": kd["acc_diff"], "kd_acc_diff_low": kd["acc_diff_low"], "kd_acc_diff_high": kd["acc_diff_high"],
        "mcnemar_p": kd["mcnemar_p"], "kd_gold_loglik_per_byte_diff": kd["gold_loglik_per_byte_diff"],
        "kd_gold_loglik_per_byte_diff_low": kd["gold_loglik_per_byte_diff_low"],
        "kd_gold_loglik_per_byte_diff_high": kd["gold_loglik_per_byte_diff_high"],
        "verdict": verdict(kd["mcnemar_p"], kd["acc_diff"]),
    }


def markdown(points):
    out = ["| teacher | parts | labels | λ | teacher acc | student noKD acc | advantage (pp) | KD Δ acc (pp) | McNemar p | "
           "KD Δ gold log-lik/byte | verdict (α = 0.05) |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for p in points:
        out.append(
            f"| {p['teacher_model']} | {p['teacher_shards']} | {p['public_labels']} | {p['lambda']:g} | "
            f"{100 * p['teacher_acc']:.1f} | {100 * p['student_nokd_acc']:.1f} | {100 * p['advantage_acc']:+.1f} | "
            f"{100 * p['kd_acc_diff']:+.1f} [{100 * p['kd_acc_diff_low']:+.1f}, {100 * p['kd_acc_diff_high']:+.1f}] | "
            f"{p['mcnemar_p']:.3f} | {p['kd_gold_loglik_per_byte_diff']:+.4f} [{p['kd_gold_loglik_per_byte_diff_low']:+.4f}, "
            f"{p['kd_gold_loglik_per_byte_diff_high']:+.4f}] | {p['verdict']} |")
    return "\n".join(out) + "\n"


def plot(points, path):
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    configs = sorted({(p["public_labels"], p["lambda"]) for p in points})
    for (labels, lam) in configs:
        mine = sorted((p for p in points if (p["public_labels"], p["lambda"]) == (labels, lam)), key=lambda p: p["advantage_acc"])
        x = [100 * p["advantage_acc"] for p in mine]
        for ax, key, scale in [(axes[0], "kd_acc_diff", 100), (axes[1], "kd_gold_loglik_per_byte_diff", 1)]:
            y = [scale * p[key] for p in mine]
            err = [[scale * (p[key] - p[key + "_low"]) for p in mine], [scale * (p[key + "_high"] - p[key]) for p in mine]]
            ax.errorbar(x, y, yerr=err, fmt="o-", capsize=3, label=f"labels {labels}, λ {lam:g}")
    for ax, title in [(axes[0], "KD gain, Δ acc (pp)"), (axes[1], "KD gain, Δ gold log-lik/byte")]:
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xlabel("teacher's advantage over the student without KD (acc, pp)")
        ax.set_title(title)
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main():
    out, runs = pathlib.Path(sys.argv[1]), [pathlib.Path(r) for r in sys.argv[2:]]
    points = sorted((point(r) for r in runs), key=lambda p: (p["teacher_model"], p["teacher_shards"], p["public_labels"], p["lambda"]))
    out.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(points).replace_schema_metadata(
        {"fedmkt.format": "teacher-curve", "fedmkt.format_version": "1", "fedmkt.tool": "teacher_curve.py"})
    pq.write_table(table, out / "curve.parquet")
    (out / "curve.md").write_text(markdown(points))
    plot(points, out / "curve.png")
    print(markdown(points))


if __name__ == "__main__":
    main()
