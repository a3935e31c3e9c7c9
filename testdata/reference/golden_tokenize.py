"""Golden outputs of `tokenize`, computed with the Python `tokenizers` binding.

The answer boundary follows lm-evaluation-harness: encode the context alone and the answer
starts at its length (our tool uses byte offsets instead; on these fixtures no token straddles
the boundary, so the two must agree). Offsets are the binding's character offsets converted to
bytes of the UTF-8 text.
"""
import json
import pathlib

import pyarrow.parquet as pq
from tokenizers import Tokenizer

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "golden" / "tokenize"


def byte_offset(text, char_offset):
    return len(text[:char_offset].encode("utf-8"))


def main():
    for tok_name in ["bytelevel", "spm"]:
        tokenizer = Tokenizer.from_file(str(ROOT / "tokenizers" / tok_name / "tokenizer.json"))
        for task in ["arc-easy", "boolq"]:
            rows = pq.read_table(ROOT / "data" / "tasks" / task / "eval.parquet").to_pylist()
            samples = []
            for r in rows:
                text = r["context"] + r["target"]
                enc = tokenizer.encode(text)
                samples.append({
                    "id": r["id"],
                    "input_ids": enc.ids,
                    "answer_start": len(tokenizer.encode(r["context"]).ids),
                    "token_start": [byte_offset(text, s) for s, _ in enc.offsets],
                    "token_end": [byte_offset(text, e) for _, e in enc.offsets],
                    "context_bytes": len(r["context"].encode("utf-8")),
                    "text_bytes": len(text.encode("utf-8")),
                })
            out = OUT / tok_name
            out.mkdir(parents=True, exist_ok=True)
            (out / f"{task}.json").write_text(json.dumps(samples) + "\n")


if __name__ == "__main__":
    main()
