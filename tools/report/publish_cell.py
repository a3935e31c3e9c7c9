"""Copy a finished cell of the grid (`make seeds` of one setting and task) into results/.

Usage: publish_cell.py RUNS NAME "SEEDS" OUT_DIR COMMAND [TOOLS_COMMIT]

OUT_DIR gets the pooled report (report.md, report.parquet, paired.parquet), and per seed
seed-<s>/report.{md,parquet} and every evaluation the report was computed from, as
seed-<s>/<method>[-round-<n>]-<party>.{json,parquet} (evaluate's summary and per-sample
predictions). cell.json records the command, the tools' commit and each seed's wall time:
from the oldest file of its run folders (the run and its sibling pipelines) to its report.
"""
import json
import os
import shutil
import subprocess
import sys

import pyarrow.parquet as pq


def wall_seconds(runs, run):
    folders = [os.path.join(runs, d) for d in os.listdir(runs) if d == run or d.startswith(run + "-")]
    oldest = min(os.path.getmtime(os.path.join(root, f)) for folder in folders for root, _, files in os.walk(folder) for f in files)
    return round(os.path.getmtime(os.path.join(runs, run, "report.md")) - oldest)


def publish_seed(runs, run, out):
    os.makedirs(out, exist_ok=True)
    for name in ["report.md", "report.parquet"]:
        shutil.copyfile(os.path.join(runs, run, name), os.path.join(out, name))
    for row in pq.read_table(os.path.join(runs, run, "report.parquet")).to_pylist():
        label = row["method"] + (f"-round-{row['round']}" if row["round"] is not None else "") + f"-{row['party']}"
        summary = row["file"]
        shutil.copyfile(summary, os.path.join(out, label + ".json"))
        shutil.copyfile(os.path.splitext(summary)[0] + ".parquet", os.path.join(out, label + ".parquet"))


def main(runs, name, seeds, out, command, commit=None):
    os.makedirs(out, exist_ok=True)
    pooled = os.path.join(runs, f"{name}-seeds")
    for file in ["report.md", "report.parquet", "paired.parquet"]:
        shutil.copyfile(os.path.join(pooled, file), os.path.join(out, file))
    walls = {}
    for s in seeds.split():
        run = f"{name}-seed-{s}"
        publish_seed(runs, run, os.path.join(out, f"seed-{s}"))
        walls[s] = wall_seconds(runs, run)
    commit = commit or subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    cell = {"command": command, "tools_commit": commit, "seeds": seeds.split(), "wall_seconds_per_seed": walls,
            "wall_seconds": sum(walls.values())}
    with open(os.path.join(out, "cell.json"), "w") as f:
        f.write(json.dumps(cell, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
