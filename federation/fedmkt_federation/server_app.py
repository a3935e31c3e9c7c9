"""The server's node: Algorithm 1 of the paper across Flower nodes. Per round it asks every
client for its knowledge set, runs its own steps (`make PARTY=server`: align, select,
distill, its knowledge set and evaluation), sends its knowledge set back, and collects each
client's evaluation; after the last round, the report. Run config: `server-dir` (its working
directory), `make-vars` (the pipeline and its settings), `rounds`, `clients` (how many nodes
to wait for) and `timeout` (seconds for each exchange). It writes `federation.json` into the
run folder: which party each node is and, per round, the clients it did not hear from in
time (left out of that round: `make ABSENT=…`) and per party the bytes of the files each
way, and `federation.md`, the same as a table. The server never holds a client's shard or
adapter: nothing in the app asks for one. The setup files each party built (public and
eval sets, public tokens, vocabulary maps) must match the server's by hash.
"""
import json
import os
import time

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.serverapp import Grid, ServerApp

from .exchange import check_setup, make, pack, payload_bytes, run_folder, unpack, write_atomically

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


def parties_of(grid, nodes, timeout):
    asks = [Message(RecordDict(), dst_node_id=n, message_type="query.party") for n in nodes]
    return {node: str(reply.content["party"]["party"]) for node, reply in exchange(grid, asks, timeout).items()}


def server_vars_of(make_vars, absent):
    """The server's make settings, with the clients left out so far (ABSENT, "round:client")."""
    return make_vars + (f" ABSENT='{' '.join(absent)}'" if absent else "")


def federation_table(log):
    lines = ["# Federation: who took part in each round, and the files' bytes each way", "",
             "| round | absent | party | sent (bytes) | received (bytes) |", "|---|---|---|---|---|"]
    for entry in log["rounds"]:
        absent = ", ".join(entry["absent"]) or "none"
        for party, traffic in sorted(entry["bytes"].items()):
            lines.append(f"| {entry['round']} | {absent} | {party} | {traffic['sent']:,} | {traffic['received']:,} |")
    return "\n".join(lines) + "\n"


def round_message(n, node, kind, content=None):
    content = content if content is not None else RecordDict()
    content["round"] = ConfigRecord({"round": n})
    return Message(content, dst_node_id=node, message_type=f"train.{kind}", group_id=str(n))


@app.main()
def main(grid: Grid, context: Context) -> None:
    config = context.run_config
    directory, make_vars = str(config["server-dir"]), str(config["make-vars"])
    rounds, timeout = int(config["rounds"]), float(config["timeout"])
    run = run_folder(directory, make_vars)
    nodes = wait_for_nodes(grid, int(config["clients"]), timeout)
    parties = parties_of(grid, nodes, timeout)
    log = {"nodes": {str(node): party for node, party in parties.items()}, "rounds": []}
    absent = []
    for n in range(1, rounds + 1):
        traffic = {party: {"sent": 0, "received": 0} for party in parties.values()}
        replies = exchange(grid, [round_message(n, node, "knowledge") for node in parties], timeout)
        for node, reply in replies.items():
            unpack(reply.content, directory, [f"{run}/round-{n}/{parties[node]}/knowledge.parquet"])
            traffic[parties[node]]["sent"] += payload_bytes(reply.content)
        missing = sorted(parties[node] for node in parties if node not in replies)
        absent += [f"{n}:{party}" for party in missing]
        server_vars = server_vars_of(make_vars, absent)
        server_knowledge = f"{run}/round-{n}/server/knowledge.parquet"
        make(directory, server_vars, "server", [server_knowledge, f"{run}/round-{n}/eval/server.json"])
        for node, reply in replies.items():
            check_setup(directory, parties[node], reply.content["setup"])
        present = [node for node in parties if node in replies]
        messages = [round_message(n, node, "distill", pack(directory, [server_knowledge])) for node in present]
        for message in messages:
            traffic[parties[message.metadata.dst_node_id]]["received"] += payload_bytes(message.content)
        evaluations = exchange(grid, messages, timeout)
        for node, reply in evaluations.items():
            evaluation = f"{run}/round-{n}/eval/{parties[node]}"
            unpack(reply.content, directory, [evaluation + ".json", evaluation + ".parquet"])
            check_setup(directory, parties[node], reply.content["setup"])
            traffic[parties[node]]["sent"] += payload_bytes(reply.content)
        late = sorted(parties[node] for node in present if node not in evaluations)
        absent += [f"{n}:{party}" for party in late]
        log["rounds"].append({"round": n, "absent": missing + late, "bytes": traffic})
    make(directory, server_vars_of(make_vars, absent), "server", [f"{run}/report-{rounds}.md"])
    write_atomically(os.path.join(directory, run, "federation.json"), (json.dumps(log, indent=2) + "\n").encode())
    write_atomically(os.path.join(directory, run, "federation.md"), federation_table(log).encode())
