"""`make federation`: the Flower app's deployment on one machine, every party its own node.

Usage: run_local.py FLOWER_ENV REPO FED_DIR DATA_DIR RUN "MAKE_VARS" ROUNDS CLIENTS [TIMEOUT [KILL]]

FED_DIR gets a CA and a certificate for 127.0.0.1 (openssl), one working directory per party
(server/, client-1/, …) that sees the repository through symlinks and holds only its own
data (DATA_DIR's public and eval sets; a client also its shard) below RUN, and Flower's state
(flwr-home/). It starts one TLS SuperLink and one SuperNode per client on loopback, runs the
app with `flwr run`, reads the run's status (`flwr run --stream` exits 0 when the ServerApp
crashes), and stops every process it started by its process group, also on failure.
Each SuperNode reaches the SuperLink through a relay that counts the bytes each way as they
are on the wire (TLS records, HTTP and Flower's framing included): FED_DIR/wire.json and
wire.md, per client and round (a round's share is what flowed until the server logged the
round in federation.json; round 1 includes the nodes' start and the app's download).
KILL (`client-k@FILE`, for tests of dropouts) kills client k's SuperNode by its PID once the
server's run folder holds FILE (e.g. `round-1/eval/client-2.json`: it misses round 2).
"""
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time

from fedmkt_federation.make import make, make_value

SHARED = ["Makefile", "mk", "pipelines", "tools", "testdata", "target", "assets"]
MARK = ".fedmkt-federation"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_port(port, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.5)
    raise TimeoutError(f"the SuperLink did not listen on 127.0.0.1:{port} within {timeout} s")


# What make federation writes into FED_DIR after this script returns (`report wire`).
REPORTED = {"comms.parquet", "comms.md"}


def entries(path):
    """Every file, link and folder below `path`, relative to it, links not followed."""
    found = []
    for root, dirs, files in os.walk(path):
        found += [os.path.relpath(os.path.join(root, name), path) for name in dirs + files]
    return sorted(found)


def fresh_folder(path):
    """FED_DIR anew. An earlier one is removed only if this script made it (its mark inside)
    and holds nothing but what its run wrote (listed in the mark when the run ended): a file a
    user put there stops the rerun, exit 2, the folder untouched. A folder whose run was cut
    short has an empty list and is replaced whole."""
    if os.path.exists(path):
        mark = os.path.join(path, MARK)
        if not os.path.isfile(mark):
            print(f"run_local.py: {path}: exists and was not made by make federation; not replacing it", file=sys.stderr)
            sys.exit(2)
        with open(mark) as f:
            written = set(f.read().split("\n")) - {""}
        foreign = [e for e in entries(path) if written and e not in written | REPORTED and e != MARK]
        if foreign:
            print(f"run_local.py: {path}: holds '{foreign[0]}', which make federation did not write; "
                  "move it out, or choose another NAME", file=sys.stderr)
            sys.exit(2)
        shutil.rmtree(path)
    os.makedirs(path)
    open(os.path.join(path, MARK), "w").close()


def list_written(path):
    """Record in the mark everything the run wrote below FED_DIR: what a rerun may remove."""
    with open(os.path.join(path, MARK), "w") as f:
        f.write("\n".join(entries(path)) + "\n")


def certificates(folder):
    """A self-signed CA and the SuperLink's certificate for 127.0.0.1, signed by it."""
    def openssl(*args):
        subprocess.run(["openssl", *args], cwd=folder, check=True, capture_output=True)
    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=fedmkt-ca",
            "-keyout", "ca.key", "-out", "ca.crt")
    openssl("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    with open(os.path.join(folder, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
            "-days", "2", "-extfile", "san.cnf", "-out", "server.crt")


def party_folder(fed, repo, party, data_dir, run, splits):
    """A node's working directory: the repository's shared parts linked, its own data copied."""
    folder = os.path.join(fed, party)
    os.makedirs(folder)
    for name in SHARED:
        if os.path.exists(os.path.join(repo, name)):
            os.symlink(os.path.join(repo, name), os.path.join(folder, name))
    task_data = os.path.join(folder, run, "data", os.path.basename(data_dir))
    os.makedirs(task_data)
    for split in splits:
        shutil.copyfile(os.path.join(data_dir, f"{split}.parquet"), os.path.join(task_data, f"{split}.parquet"))
    return os.path.abspath(folder)


class CountingRelay:
    """A TCP relay on 127.0.0.1 in front of the SuperLink for one SuperNode, counting bytes."""

    def __init__(self, target_port):
        self.target, self.lock, self.counts = target_port, threading.Lock(), {"sent": 0, "received": 0}
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen()
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()

    def accept(self):
        while True:
            try:
                node, _ = self.listener.accept()
            except OSError:
                return
            try:
                link = socket.create_connection(("127.0.0.1", self.target))
            except OSError:  # the SuperLink is gone (stopping): drop the node's connection
                node.close()
                continue
            threading.Thread(target=self.pump, args=(node, link, "sent"), daemon=True).start()
            threading.Thread(target=self.pump, args=(link, node, "received"), daemon=True).start()

    def pump(self, source, dest, direction):
        try:
            while data := source.recv(1 << 16):
                dest.sendall(data)
                with self.lock:
                    self.counts[direction] += len(data)
        except OSError:
            pass
        finally:
            for end in (source, dest):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def snapshot(self):
        with self.lock:
            return dict(self.counts)


def record_wire(relays, progress, fed, finished):
    """Snapshot every relay each time the server logs another round; write wire.json/.md."""
    def rounds_logged():
        try:
            with open(progress) as f:
                return len(json.load(f)["rounds"])
        except (OSError, ValueError, KeyError):
            return 0
    snapshots = []
    def watch():
        while not finished.is_set():
            if rounds_logged() > len(snapshots):
                snapshots.append({party: relay.snapshot() for party, relay in relays.items()})
            time.sleep(0.2)
    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    def write():
        thread.join()
        rows, before = [], {party: {"sent": 0, "received": 0} for party in relays}
        for n, counts in enumerate(snapshots, start=1):
            for party in sorted(counts):
                rows.append({"round": n, "party": party, **{d: counts[party][d] - before[party][d] for d in ("sent", "received")}})
            before = counts
        with open(os.path.join(fed, "wire.json"), "w") as f:
            f.write(json.dumps(rows, indent=2) + "\n")
        lines = ["| round | party | sent on the wire (bytes) | received on the wire (bytes) |", "|---|---|---|---|"]
        lines += [f"| {r['round']} | {r['party']} | {r['sent']:,} | {r['received']:,} |" for r in rows]
        with open(os.path.join(fed, "wire.md"), "w") as f:
            f.write("\n".join(lines) + "\n")
        print("\n".join(lines))
    return write


def hand_out_identities(client_dirs, make_vars, run):
    """FedCoLLM: each client makes its signing key; its verification key reaches every other
    client directly (out of band, as the protocol needs), never through the server."""
    keys = [f"{run}/identity/client-{k}/verify-key.json" for k in range(1, len(client_dirs) + 1)]
    for k, folder in enumerate(client_dirs, start=1):
        make(folder, make_vars, f"client-{k}", [keys[k - 1]], env=bare_env())
    for k, source in enumerate(client_dirs, start=1):
        for j, folder in enumerate(client_dirs, start=1):
            if j != k:
                os.makedirs(os.path.dirname(os.path.join(folder, keys[k - 1])), exist_ok=True)
                shutil.copyfile(os.path.join(source, keys[k - 1]), os.path.join(folder, keys[k - 1]))


class Processes:
    """Every process started, each in its own process group, stopped together."""

    def __init__(self, logs):
        self.logs, self.started = logs, []

    def start(self, name, command, env):
        log = open(os.path.join(self.logs, f"{name}.log"), "w")
        self.started.append(subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True))
        return self.started[-1]

    def stop(self):
        for process in self.started:
            try:
                os.killpg(process.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for process in self.started:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def kill_when(process, ready, give_up):
    """Kill `process` (its whole group) once the file `ready` exists."""
    def watch():
        while not os.path.exists(ready):
            if give_up.is_set():
                return
            time.sleep(0.2)
        os.killpg(process.pid, signal.SIGKILL)
        print(f"run_local.py: killed {process.args[0]} (pid {process.pid}) once {ready} existed")
    threading.Thread(target=watch, daemon=True).start()


def bare_env():
    """A node starts from a bare environment, as on its own machine: nothing of this make's
    command line (make exports RUNS=… and the like to its recipes) reaches the nodes' make."""
    return {k: os.environ[k] for k in ("PATH", "HOME", "USER", "LANG", "LC_ALL", "TMPDIR") if k in os.environ}


def flower_env(fed, env_dir):
    env = dict(bare_env(), FLWR_HOME=os.path.join(fed, "flwr-home"), FLWR_TELEMETRY_ENABLED="0",
               FLWR_DISABLE_UPDATE_CHECK="1", PATH=os.path.join(env_dir, "bin") + os.pathsep + os.environ["PATH"])
    os.makedirs(env["FLWR_HOME"])
    return env


def run_status(env, run_id):
    listing = subprocess.run(["flwr", "ls", "fedmkt-local", "--format", "json"], env=env, cwd=env["FLWR_HOME"], capture_output=True, text=True)
    for run in json.loads(listing.stdout or "{}").get("runs", []):
        if str(run.get("run-id")) == str(run_id):
            return run.get("status", "")
    return f"unknown ({listing.stdout.strip()} {listing.stderr.strip()})"


def main(env_dir, repo, fed, data_dir, run, make_vars, rounds, clients, timeout="3600", kill=""):
    env_dir, repo, fed, clients = os.path.abspath(env_dir), os.path.abspath(repo), os.path.abspath(fed), int(clients)
    fresh_folder(fed)
    certificates(fed)
    env = flower_env(fed, env_dir)
    port = free_port()
    with open(os.path.join(env["FLWR_HOME"], "config.toml"), "w") as f:
        f.write(f'[superlink]\ndefault = "fedmkt-local"\n\n[superlink.fedmkt-local]\naddress = "127.0.0.1:{port}"\n'
                f'root-certificates = "{fed}/ca.crt"\n')
    server_dir = party_folder(fed, repo, "server", data_dir, run, ["public", "eval"])
    client_dirs = [party_folder(fed, repo, f"client-{k}", data_dir, run, ["public", f"client-{k}", "eval"])
                   for k in range(1, clients + 1)]
    if make_value(server_dir, make_vars, "METHOD", env=bare_env()) == "FedCoLLM":
        hand_out_identities(client_dirs, make_vars, run)
    processes, finished = Processes(fed), threading.Event()
    try:
        processes.start("superlink", ["flower-superlink", "--host", "127.0.0.1", "--port", str(port),
                                      "--ssl-ca-certfile", f"{fed}/ca.crt", "--ssl-certfile", f"{fed}/server.crt",
                                      "--ssl-keyfile", f"{fed}/server.key", "--database", f"{fed}/flwr-home/state.db",
                                      "--disable-runtime-dependency-installation"], env)
        wait_for_port(port)
        relays = {f"client-{k}": CountingRelay(port) for k in range(1, clients + 1)}
        write_wire = record_wire(relays, os.path.join(server_dir, run, "federation.json"), fed, finished)
        for k, folder in enumerate(client_dirs, start=1):
            node_config = f"party='client-{k}' dir='{folder}' make-vars='{make_vars}'"
            supernode = processes.start(f"client-{k}", ["flower-supernode", "--superlink", f"127.0.0.1:{relays[f'client-{k}'].port}",
                                            "--root-certificates", f"{fed}/ca.crt", "--port", str(free_port()),
                                            "--node-config", node_config], env)
            if kill.startswith(f"client-{k}@"):
                kill_when(supernode, os.path.join(server_dir, run, kill.split("@", 1)[1]), finished)
        run_config = f"server-dir='{server_dir}' make-vars='{make_vars}' rounds={rounds} clients={clients} timeout={timeout}"
        started = subprocess.run(["flwr", "run", os.path.join(repo, "federation"), "fedmkt-local", "--stream",
                                  "--run-config", run_config], env=env, capture_output=True, text=True)
        print(started.stdout, started.stderr, sep="\n")
        run_id = next((w for line in started.stdout.splitlines() if "Successfully started run" in line
                       for w in line.split() if w.isdigit()), None)
        status = run_status(env, run_id) if run_id else "not started"
    finally:
        finished.set()
        processes.stop()
    write_wire()
    list_written(fed)
    if "finished:completed" not in status.replace(" ", "").lower():
        sys.exit(f"run_local.py: run {run_id}: {status}; logs in {fed}/*.log")
    print(f"federation: run {run_id} {status}; the server's files: {server_dir}/{run}")


if __name__ == "__main__":
    main(*sys.argv[1:])
