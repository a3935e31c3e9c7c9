"""Publish a cell of the grid into results/ (Python's standard library only).

Usage:
  publish_cell.py seed RUNS RUN OUT_DIR TOOLS_COMMIT WALL_SECONDS RESUMED
  publish_cell.py cell OUT_DIR COMMAND SEED [SEED ...]

`seed`, once a training seed's run ($RUNS/$RUN and its sibling pipelines) has finished:
every training log of its folders into OUT_DIR/training/ (named by the path below RUNS), its
KD diagnostics (kd.parquet, kd.md), each round's communication (comms-round-N.{parquet,md})
and seed.json (run, tools' commit, wall time, whether the run was resumed, the machine, the run's
settings.mk); `report results --copy-into OUT_DIR` then copies the evaluations and remakes the
seed's report from the copies. `cell` writes OUT_DIR/cell.json: the command, the seeds, each
seed's commit, wall time and machine from seed.json, the resumed seeds, and the settings the
seeds share. It refuses (one line, exit 2) seeds whose
settings differ in anything but the run's name and training seed: a pipeline's setting
changed since a seed was committed, so that seed is stale and must be run again.
"""
import json
import os
import platform
import shutil
import sys


def run_folders(runs, run):
    """The run and its sibling pipelines ($RUN-nokd, $RUN-llm2slm)."""
    return sorted(os.path.join(runs, d) for d in os.listdir(runs) if d == run or d.startswith(run + "-"))


def copy_training_logs(runs, run, out):
    target = os.path.join(out, "training")
    os.makedirs(target, exist_ok=True)
    for folder in run_folders(runs, run):
        for root, _, files in os.walk(folder):
            if "training_log.parquet" in files:
                name = os.path.relpath(root, runs).replace(os.sep, "--") + ".parquet"
                shutil.copyfile(os.path.join(root, "training_log.parquet"), os.path.join(target, name))


# What may differ between the seeds of one cell.
PER_SEED_SETTINGS = ("NAME", "TRAIN_SEED")


def read_settings(path):
    """A run's settings.mk (`NAME := value` lines) as a dict."""
    with open(path) as f:
        return dict(line.rstrip("\n").split(" := ", 1) for line in f if " := " in line)


# /proc/cpuinfo flags naming the vector instructions that numeric kernels choose among at run time.
SIMD_PREFIXES = ("sse", "ssse", "avx", "fma", "f16c", "amx", "asimd", "sve")


def machine():
    """The CPU a seed ran on. Same tools and inputs give the same bytes on one CPU, but on
    another the log-likelihoods may differ in their last digits (kernels chosen by the CPU's
    vector instructions), so a seed records which CPU made its numbers."""
    fields = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    flags = (fields.get("flags") or fields.get("Features") or "").split()
    return {"cpu": fields.get("model name") or platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "simd": sorted(f for f in flags if f.startswith(SIMD_PREFIXES))}


def copy_kd_report(runs, run, out):
    """The run's KD diagnostics (`make report`'s kd.parquet and kd.md), where it has them."""
    for name in ("kd.parquet", "kd.md"):
        source = os.path.join(runs, run, name)
        if os.path.isfile(source):
            shutil.copyfile(source, os.path.join(out, name))


def copy_comms(runs, run, out):
    """Each round's `report comms` tables (bytes each party sent and received), where it has them."""
    folder = os.path.join(runs, run)
    for entry in sorted(os.listdir(folder)):
        for ext in ("parquet", "md"):
            source = os.path.join(folder, entry, f"comms.{ext}")
            if entry.startswith("round-") and os.path.isfile(source):
                shutil.copyfile(source, os.path.join(out, f"comms-{entry}.{ext}"))


def publish_seed(runs, run, out, commit, wall, resumed):
    copy_training_logs(runs, run, out)
    copy_kd_report(runs, run, out)
    copy_comms(runs, run, out)
    settings = read_settings(os.path.join(runs, run, "settings.mk"))
    seed = {"run": run, "tools_commit": commit, "wall_seconds": int(wall), "resumed": resumed == "yes",
            "machine": machine(), "settings": settings}
    with open(os.path.join(out, "seed.json"), "w") as f:
        f.write(json.dumps(seed, indent=2) + "\n")


def shared_settings(out, per_seed):
    """The settings every seed ran with; exits 2 naming the first seed and setting that differ."""
    first, *rest = per_seed
    shared = {k: v for k, v in per_seed[first].get("settings", {}).items() if k not in PER_SEED_SETTINGS}
    for s in [first, *rest]:
        mine = per_seed[s].get("settings")
        if mine is None:
            fail(f"{out}/seed-{s}/seed.json: no settings recorded (published before they were); remove the folder to rerun it")
        for key in sorted(set(shared) | set(mine) - set(PER_SEED_SETTINGS)):
            if mine.get(key) != shared.get(key):
                fail(f"{out}/seed-{s}/seed.json: {key} = {mine.get(key)!r}, seed {first} ran {shared.get(key)!r}; "
                     "remove the stale seed's folder to rerun it")
    return shared


def fail(message):
    print(message, file=sys.stderr)
    sys.exit(2)


def publish_cell(out, command, seeds):
    per_seed = {}
    for s in seeds:
        with open(os.path.join(out, f"seed-{s}", "seed.json")) as f:
            per_seed[s] = json.load(f)
    settings = shared_settings(out, per_seed)
    cell = {"command": command, "seeds": seeds, "settings": settings,
            "tools_commit_per_seed": {s: v["tools_commit"] for s, v in per_seed.items()},
            "wall_seconds_per_seed": {s: v["wall_seconds"] for s, v in per_seed.items()},
            "wall_seconds": sum(v["wall_seconds"] for v in per_seed.values()),
            "resumed_seeds": [s for s, v in per_seed.items() if v.get("resumed")],
            "machine_per_seed": {s: v.get("machine") for s, v in per_seed.items()}}
    with open(os.path.join(out, "cell.json"), "w") as f:
        f.write(json.dumps(cell, indent=2) + "\n")


if __name__ == "__main__":
    what, args = sys.argv[1], sys.argv[2:]
    if what == "seed":
        publish_seed(*args)
    else:
        publish_cell(args[0], args[1], args[2:])
