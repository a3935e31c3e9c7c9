"""A client's node: its steps of a round, each run by `make PARTY=<its party>` in its own
working directory, which holds its private shard. Node config (the node's operator sets it,
never the server): `party`, `dir`, and `make-vars` (the pipeline and its settings). From the
server a step takes only the round number and the files that step needs, each checked
against the paths this client expects for it; it sends back only the files it made for the
server, with the hashes of its setup files (the server checks they match its own). Its
shard and adapters never leave the node.
"""
import glob
import os

from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from .exchange import pack, setup_record, unpack
from .make import make, make_value

app = ClientApp()


def steps(run, n, party):
    """Per step: the paths it accepts from the server (patterns), what make builds, what goes back.

    FedMKT: `knowledge` (private phase, knowledge set out), `distill` (the server's knowledge
    set in, distillation, evaluation out). FedCoLLM, Figure 4 of Bonawitz et al.: `keygen`,
    `share` (every client's public keys in, sealed shares out), `mask` (the shares addressed
    to this client in, the private phase, its masked adapter out), `confirm` (the survivor set
    in, its signature out), `reveal` (every signature in, its reveal out), `start` (the
    distilled SLM in: the next round's starting adapter).
    """
    k = party.split("-")[1]
    rnd, sec = f"{run}/round-{n}", f"{run}/round-{n}/secagg"
    return {
        "knowledge": ([], [f"{rnd}/{party}/knowledge.parquet"], [f"{rnd}/{party}/knowledge.parquet"]),
        "distill": ([f"{rnd}/server/knowledge.parquet"], [f"{rnd}/eval/{party}.json"],
                    [f"{rnd}/eval/{party}.json", f"{rnd}/eval/{party}.parquet"]),
        "keygen": ([], [f"{sec}/{party}/public.json"], [f"{sec}/{party}/public.json"]),
        "share": ([f"{sec}/client-*/public.json"], [f"{sec}/shares/from-{k}/to-{{clients}}.json"],
                  [f"{sec}/shares/from-{k}/to-*.json"]),
        "mask": ([f"{sec}/shares/from-*/to-{k}.json"], [f"{sec}/masked/{party}.parquet"], [f"{sec}/masked/{party}.parquet"]),
        "confirm": ([f"{sec}/survivors.json"], [f"{sec}/signatures/{k}.json"], [f"{sec}/signatures/{k}.json"]),
        "reveal": ([f"{sec}/signatures/*.json"], [f"{sec}/reveal/{k}.json"], [f"{sec}/reveal/{k}.json"]),
        "start": ([f"{rnd}/server/slm-distilled/adapter_config.json", f"{rnd}/server/slm-distilled/adapter_model.safetensors"],
                  [], []),
    }


def run_step(step, msg, context):
    config = context.node_config
    party, directory, make_vars = str(config["party"]), str(config["dir"]), str(config["make-vars"])
    n = int(msg.content["round"]["round"])
    run = make_value(directory, make_vars, "RUN")
    accepts, targets, returns = steps(run, n, party)[step]
    unpack(msg.content, directory, accepts)
    if targets:
        clients = make_value(directory, make_vars, "N_CLIENTS")
        make(directory, make_vars, party, [t.format(clients=clients) for t in targets])
    sent = sorted(os.path.relpath(p, directory) for pattern in returns for p in glob.glob(os.path.join(directory, pattern)))
    return Message(pack(directory, sent, RecordDict({"setup": setup_record(directory, run)})), reply_to=msg)


@app.query("party")
def party(msg: Message, context: Context) -> Message:
    """Which party this node is."""
    return Message(RecordDict({"party": ConfigRecord({"party": str(context.node_config["party"])})}), reply_to=msg)


@app.train()
def step(msg: Message, context: Context) -> Message:
    """One step of a round, named by the message's `round` record."""
    return run_step(str(msg.content["round"]["step"]), msg, context)
