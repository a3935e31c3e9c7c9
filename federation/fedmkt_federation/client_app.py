"""A client's node: its steps of a FedMKT round, run by `make PARTY=<its party>` in its own
working directory, which holds its private shard. Node config (the node's operator sets it,
never the server): `party`, `dir`, and `make-vars` (the pipeline and its settings). From the
server it takes only the round number and the server's knowledge set; it sends only its own
knowledge set and its evaluation, with the hashes of its setup files (the server checks
they match its own). Its shard and adapters never leave the node.
"""
from flwr.app import ConfigRecord, Context, Message, RecordDict
from flwr.clientapp import ClientApp

from .exchange import make, pack, run_folder, setup_record, unpack

app = ClientApp()


def node(context):
    config = context.node_config
    return str(config["party"]), str(config["dir"]), str(config["make-vars"])


def round_of(msg):
    return int(msg.content["round"]["round"])


@app.query("party")
def party(msg: Message, context: Context) -> Message:
    """Which party this node is."""
    return Message(RecordDict({"party": ConfigRecord({"party": node(context)[0]})}), reply_to=msg)


@app.train("knowledge")
def knowledge(msg: Message, context: Context) -> Message:
    """The private phase of round n and the knowledge set it gives, sent to the server."""
    (name, directory, make_vars), n = node(context), round_of(msg)
    run = run_folder(directory, make_vars)
    rel = f"{run}/round-{n}/{name}/knowledge.parquet"
    make(directory, make_vars, name, [rel])
    return Message(pack(directory, [rel], RecordDict({"setup": setup_record(directory, run)})), reply_to=msg)


@app.train("distill")
def distill(msg: Message, context: Context) -> Message:
    """The server's knowledge set in, the client's distillation and evaluation; the evaluation out."""
    (name, directory, make_vars), n = node(context), round_of(msg)
    run = run_folder(directory, make_vars)
    unpack(msg.content, directory, [f"{run}/round-{n}/server/knowledge.parquet"])
    evaluation = f"{run}/round-{n}/eval/{name}"
    make(directory, make_vars, name, [evaluation + ".json"])
    files = [evaluation + ".json", evaluation + ".parquet"]
    return Message(pack(directory, files, RecordDict({"setup": setup_record(directory, run)})), reply_to=msg)
