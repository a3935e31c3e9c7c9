"""The server's node: a round across Flower nodes, the server's own steps by `make
PARTY=server` in its working directory, each client's by a message naming its step.

FedMKT (Algorithm 1 of the paper): every client's knowledge set in; align, select, distill,
the server's knowledge set and evaluation; that knowledge set out; each client's evaluation
in; after the last round, the report. FedCoLLM: the secure aggregation of Bonawitz et al.
(keygen, share, mask, then `aggregate sum`, confirm, reveal), the unmasked average, both
distillations, and the distilled SLM out as the clients' next start.

Run config: `server-dir` (its working directory), `make-vars` (the pipeline and its
settings), `rounds`, `clients` (how many nodes to wait for) and `timeout` (seconds for each
exchange). A client that does not answer a step in time is left out of the rest of that
round (`make ABSENT=round:client`). The run folder gets `federation.json` (which party each
node is; per round the clients left out and per party the bytes of the files each way) and
`federation.md`, the same as a table; federation.json is rewritten after every round. The server never holds a client's shard or adapter:
no step returns one. The setup files each party built (public and eval sets, public tokens,
vocabulary maps) must match the server's by hash.
"""
import json
import os
import time

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from .exchange import check_setup, pack, payload_bytes, unpack, write_atomically
from .make import make, make_value

app = ServerApp()


def wait_for_nodes(grid, count, timeout):
    deadline = time.monotonic() + timeout
    while len(nodes := sorted(grid.get_node_ids())) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{len(nodes)} of {count} client nodes connected within {timeout} s")
        time.sleep(1)
    return nodes


def exchange(grid, messages, timeout):
    """Replies by node id; a node that does not answer in time, or answers with an error, is absent."""
    replies = {}
    for reply in grid.send_and_receive(messages, timeout=timeout):
        if reply.has_error():
            print(f"node {reply.metadata.src_node_id}: {reply.error.reason}")
            continue
        replies[reply.metadata.src_node_id] = reply
    return replies


class Federation:
    """The server's side: its folder, its make settings, the client nodes and what they sent."""

    def __init__(self, grid, config):
        self.grid, self.timeout = grid, float(config["timeout"])
        self.directory, self.make_vars = str(config["server-dir"]), str(config["make-vars"])
        self.rounds = int(config["rounds"])
        self.run = make_value(self.directory, self.make_vars, "RUN")
        nodes = wait_for_nodes(grid, int(config["clients"]), self.timeout)
        asks = [Message(RecordDict(), dst_node_id=n, message_type="query.party") for n in nodes]
        self.parties = {node: str(r.content["party"]["party"]) for node, r in exchange(grid, asks, self.timeout).items()}
        self.absent, self.log = [], {"nodes": {str(n): p for n, p in self.parties.items()}, "rounds": []}

    def ask(self, nodes, n, step, traffic, accepts, files=lambda party: []):
        """Step `step` of round n on `nodes`, each sent `files(party)`; their files, checked, kept.
        Returns the nodes that answered."""
        messages = []
        for node in nodes:
            content = pack(self.directory, files(self.parties[node]))
            content["round"] = ConfigRecord({"round": n, "step": step})
            traffic[self.parties[node]]["received"] += payload_bytes(content)
            messages.append(Message(content, dst_node_id=node, message_type="train", group_id=str(n)))
        replies = exchange(self.grid, messages, self.timeout)
        for node, reply in replies.items():
            party = self.parties[node]
            unpack(reply.content, self.directory, accepts(party))
            check_setup(self.directory, party, reply.content["setup"])
            traffic[party]["sent"] += payload_bytes(reply.content)
        for node in nodes:
            if node not in replies:
                self.absent.append(f"{n}:{self.parties[node]}")
        return [node for node in nodes if node in replies]

    def make(self, targets):
        absent = f" ABSENT='{' '.join(self.absent)}'" if self.absent else ""
        make(self.directory, self.make_vars + absent, "server", [f"{self.run}/{t}" for t in targets])

    def fedmkt_round(self, n, traffic):
        rnd = f"{self.run}/round-{n}"
        sent = self.ask(list(self.parties), n, "knowledge", traffic, lambda p: [f"{rnd}/{p}/knowledge.parquet"])
        self.make([f"round-{n}/server/knowledge.parquet", f"round-{n}/eval/server.json"])
        evaluation = lambda p: [f"{rnd}/eval/{p}.json", f"{rnd}/eval/{p}.parquet"]
        self.ask(sent, n, "distill", traffic, evaluation, lambda p: [f"{rnd}/server/knowledge.parquet"])

    def fedcollm_round(self, n, traffic):
        sec = f"{self.run}/round-{n}/secagg"
        k = lambda party: party.split("-")[1]
        keyed = self.ask(list(self.parties), n, "keygen", traffic, lambda p: [f"{sec}/{p}/public.json"])
        publics = [f"{sec}/{self.parties[node]}/public.json" for node in keyed]
        shared = self.ask(keyed, n, "share", traffic, lambda p: [f"{sec}/shares/from-{k(p)}/to-*.json"], lambda p: publics)
        dealers = [k(self.parties[node]) for node in shared]
        shares_to = lambda p: [f"{sec}/shares/from-{j}/to-{k(p)}.json" for j in dealers]
        masked = self.ask(shared, n, "mask", traffic, lambda p: [f"{sec}/masked/{p}.parquet"], shares_to)
        self.make([f"round-{n}/secagg/sum.parquet"])
        signed = self.ask(masked, n, "confirm", traffic, lambda p: [f"{sec}/signatures/{k(p)}.json"],
                          lambda p: [f"{sec}/survivors.json"])
        signatures = [f"{sec}/signatures/{k(self.parties[node])}.json" for node in signed]
        self.ask(signed, n, "reveal", traffic, lambda p: [f"{sec}/reveal/{k(p)}.json"], lambda p: signatures)
        self.make([f"round-{n}/eval/server.json", f"round-{n}/eval/slm.json"])
        if n < self.rounds:
            start = f"{self.run}/round-{n}/server/slm-distilled"
            files = [f"{start}/adapter_config.json", f"{start}/adapter_model.safetensors"]
            self.ask(masked, n, "start", traffic, lambda p: [], lambda p: files)

    def rounds_then_report(self):
        method = make_value(self.directory, self.make_vars, "METHOD")
        one_round = self.fedcollm_round if method == "FedCoLLM" else self.fedmkt_round
        for n in range(1, self.rounds + 1):
            traffic = {party: {"sent": 0, "received": 0} for party in self.parties.values()}
            one_round(n, traffic)
            left_out = sorted(a.split(":")[1] for a in self.absent if a.startswith(f"{n}:"))
            self.log["rounds"].append({"round": n, "absent": left_out, "bytes": traffic})
            self.write_log()
        self.make([f"report-{self.rounds}.md"])
        write_atomically(os.path.join(self.directory, self.run, "federation.md"), federation_table(self.log).encode())

    def write_log(self):
        """federation.json, rewritten after every round (a run's progress, read by make federation)."""
        path = os.path.join(self.directory, self.run, "federation.json")
        write_atomically(path, (json.dumps(self.log, indent=2) + "\n").encode())


def federation_table(log):
    lines = ["# Federation: who took part in each round, and the files' bytes each way", "",
             "| round | absent | party | sent (bytes) | received (bytes) |", "|---|---|---|---|---|"]
    for entry in log["rounds"]:
        absent = ", ".join(entry["absent"]) or "none"
        for party, traffic in sorted(entry["bytes"].items()):
            lines.append(f"| {entry['round']} | {absent} | {party} | {traffic['sent']:,} | {traffic['received']:,} |")
    return "\n".join(lines) + "\n"


@app.main()
def main(grid: Grid, context: Context) -> None:
    Federation(grid, context.run_config).rounds_then_report()
