"""What both apps share: the round's files carried in Flower messages.

A file travels as an ArrayRecord of raw uint8 chunks of at most 5 MiB (Flower chunks arrays
on the wire; a bytes value in a ConfigRecord is neither chunked nor allowed past 2 GiB),
with its path in the round layout and its SHA-256 in a ConfigRecord beside it. The receiver
names the paths it accepts (patterns): anything else, a path with `..` or a hash that does not
match refuses the message, so a lying peer cannot write elsewhere on a node.
"""
import fnmatch
import glob
import hashlib
import os
import tempfile

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

CHUNK = 5 * 1024 * 1024


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pack(node_dir, rels, content=None):
    """`content` (a RecordDict, new if None) with the files `rels` (paths below node_dir) added."""
    content = content if content is not None else RecordDict()
    if not rels:
        return content
    content["files"] = ConfigRecord({"paths": list(rels), "sha256": [sha256(os.path.join(node_dir, r)) for r in rels]})
    for i, rel in enumerate(rels):
        with open(os.path.join(node_dir, rel), "rb") as f:
            data = f.read()
        chunks = [data[s : s + CHUNK] for s in range(0, len(data), CHUNK)] or [b""]
        content[f"file-{i}"] = ArrayRecord({str(k): Array(np.frombuffer(c, dtype=np.uint8).copy()) for k, c in enumerate(chunks)})
    return content


# Setup files every party builds from the same inputs: compared by hash, never shipped.
SETUP = ["data/*/public.parquet", "data/*/eval.parquet", "tok/*/public.parquet", "maps/*.parquet"]


def setup_record(node_dir, run):
    """The SHA-256 of each setup file the node has made so far."""
    paths = sorted(os.path.relpath(p, node_dir) for pattern in SETUP for p in glob.glob(os.path.join(node_dir, run, pattern)))
    return ConfigRecord({"paths": paths, "sha256": [sha256(os.path.join(node_dir, p)) for p in paths]})


def check_setup(node_dir, party, record):
    """Refuse a party whose setup file differs from this node's own copy of it."""
    for rel, digest in zip(record["paths"], record["sha256"]):
        path = os.path.join(node_dir, rel)
        if os.path.exists(path) and sha256(path) != digest:
            raise ValueError(f"{party}'s {rel} differs from the server's (SHA-256 {digest}): not the same setup")


def payload_bytes(content):
    """Bytes of the files a message carries."""
    files = content["files"] if "files" in content else None
    if files is None:
        return 0
    return sum(sum(a.numpy().nbytes for a in content[f"file-{i}"].values()) for i in range(len(files["paths"])))


def unpack(content, node_dir, accepts):
    """Write the message's files into node_dir: each must match one of the patterns `accepts`
    (a path below the node's run folder, no `..`) and its SHA-256."""
    if "files" not in content:
        return
    files = content["files"]
    paths, hashes = list(files["paths"]), list(files["sha256"])
    for rel in paths:
        if os.path.isabs(rel) or ".." in rel.split("/") or not any(fnmatch.fnmatchcase(rel, a) for a in accepts):
            raise ValueError(f"{rel}: not a file this step accepts ({accepts})")
    for i, (rel, digest) in enumerate(zip(paths, hashes)):
        record = content[f"file-{i}"]
        data = b"".join(record[str(k)].numpy().tobytes() for k in range(len(record)))
        if hashlib.sha256(data).hexdigest() != digest:
            raise ValueError(f"{rel}: content does not match its SHA-256 {digest}")
        write_atomically(os.path.join(node_dir, rel), data)


def write_atomically(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".fedmkt-federation-", suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
