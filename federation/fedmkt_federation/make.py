"""make on a node (Python's standard library only: run_local.py uses it outside Flower too)."""
import shlex
import subprocess


def make(node_dir, make_vars, party, targets, env=None):
    """`make` of the party's own targets in its working directory (the node's checkout)."""
    command = ["make", "--no-print-directory", *shlex.split(make_vars), f"PARTY={party}", *targets]
    subprocess.run(command, cwd=node_dir, env=env, check=True)


def make_value(node_dir, make_vars, name, env=None):
    """A variable of the pipeline as make sees it on this node (RUN: the run folder, METHOD, …)."""
    command = ["make", "--no-print-directory", "-s", *shlex.split(make_vars),
               "--eval", f"fedmkt-print: ; @echo $({name})", "fedmkt-print"]
    return subprocess.run(command, cwd=node_dir, env=env, check=True, capture_output=True, text=True).stdout.strip()
