"""Golden output of `select` (DualMinCE, paper Algorithm 2), computed from the knowledge files
with pyarrow alone: per sample the sender with the smallest answer NLL per answer byte (the
first listed among equals) wins if it is below the receiver's own by more than the tolerance
(1e-6 nats/byte); `--fallback self` keeps the receiver's own row where no sender wins.

Inputs, in testdata/golden/select/ (made once by the tools from the tiny models and committed):
local.parquet (tiny Llama's own set on its eval tokens), from-client-1.parquet (tiny Gemma-3
with its adapter, aligned into Llama's tokens), from-client-2.parquet (tiny Llama with a PEFT
adapter, aligned). Output: expected.json.
"""
import json
import pathlib

import pyarrow.parquet as pq

HERE = pathlib.Path(__file__).resolve().parent.parent / "golden" / "select"
TOLERANCE = 1e-6


def losses(name):
    table = pq.read_table(HERE / name)
    party = (table.schema.metadata or {}).get(b"fedmkt.sender", b"").decode()
    rows = zip(table.column("id").to_pylist(), table.column("answer_nll").to_pylist(),
               table.column("answer_bytes").to_pylist())
    return party, {i: nll / b for i, nll, b in rows if b > 0}


def main():
    _, local = losses("local.parquet")
    candidates = [losses(f"from-client-{k}.parquet") for k in (1, 2)]
    choices, wins = [], {party: 0 for party, _ in candidates}
    for sample, own in local.items():
        party, best = min(((p, l[sample]) for p, l in candidates if sample in l), key=lambda c: c[1])
        if best < own - TOLERANCE:
            choices.append({"id": sample, "party": party, "sender_loss": best, "receiver_loss": own})
            wins[party] += 1
        else:
            choices.append({"id": sample, "party": "self", "sender_loss": own, "receiver_loss": own})
    wins["receiver"] = len(local) - sum(wins.values())
    summary = ",".join(f"{p}={n}" for p, n in sorted(wins.items()) if p != "receiver") + f",receiver={wins['receiver']}"
    out = {"wins": summary, "rows": choices}
    (HERE / "expected.json").write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
