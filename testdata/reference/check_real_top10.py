"""Real models: our top-10 next-token ids vs transformers loading the same imported folder.

Run by hand (make check-real-models): for each model, reads the knowledge file our
`infer-logits --all-positions --top-k 10` wrote for ARC-Easy eval token files, and compares
the top-10 ids at the position that predicts the first answer token (the end of the context)
for the first 20 samples with transformers' on the same token ids.

Usage: python check_real_top10.py RUN_DIR KNOWLEDGE_DIR
"""
import pathlib
import sys

import pyarrow.parquet as pq
import torch
from transformers import AutoModelForCausalLM

N = 20


def main(run, knowledge_dir):
    for name in ["smollm2-135m", "gemma3-270m"]:
        tokens = pq.read_table(run / "tok" / name / "eval.parquet").to_pylist()[:N]
        ours = pq.read_table(knowledge_dir / f"{name}.parquet").to_pylist()[:N]
        model = AutoModelForCausalLM.from_pretrained(run / "models" / name, dtype=torch.float32, attn_implementation="eager").eval()
        same_order = same_set = 0
        for t, k in zip(tokens, ours):
            p = t["answer_start"] - 1
            with torch.no_grad():
                logits = model(input_ids=torch.tensor([t["input_ids"][:p + 1]])).logits[0, -1]
            ref = torch.topk(logits, 10).indices.tolist()
            mine = k["topk_ids"][k["positions"].index(p)]
            same_order += ref == mine
            same_set += set(ref) == set(mine)
        print(f"{name}: top-10 identical in order on {same_order}/{N} contexts, as a set on {same_set}/{N}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2]))
