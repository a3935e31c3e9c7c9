"""Real models: our top-10 next-token ids vs transformers loading the same imported folder.

Run by `make check-real-models`: for each model, runs our `infer-logits --all-positions
--top-k 10` on the first 20 samples of the ARC-Easy eval token file and compares the top-10
ids at the position that predicts the first answer token (the end of the context) with
transformers' on the same token ids.

Usage: python check_real_top10.py RUN_DIR INFER_LOGITS_BIN
"""
import pathlib
import subprocess
import sys
import tempfile

import pyarrow.parquet as pq
import torch
from transformers import AutoModelForCausalLM

N = 20


def our_knowledge(run, name, infer_logits, tmp):
    sliced, out = pathlib.Path(tmp) / f"{name}-tokens.parquet", pathlib.Path(tmp) / f"{name}.parquet"
    pq.write_table(pq.read_table(run / "tok" / name / "eval.parquet").slice(0, N), sliced)
    subprocess.run([infer_logits, "--model", run / "models" / name, "--input", sliced, "--out", out,
                    "--all-positions", "--top-k", "10"], check=True)
    return pq.read_table(out).to_pylist()


def main(run, infer_logits):
    tmp = tempfile.mkdtemp()
    for name in ["smollm2-135m", "gemma3-270m"]:
        tokens = pq.read_table(run / "tok" / name / "eval.parquet").to_pylist()[:N]
        ours = our_knowledge(run, name, infer_logits, tmp)
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
    main(pathlib.Path(sys.argv[1]), sys.argv[2])
