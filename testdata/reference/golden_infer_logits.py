"""Golden knowledge sets for `infer-logits`, from Hugging Face transformers (+ PEFT).

Each sample of testdata/data/tokens/<model>/arc-easy-eval.parquet runs alone (no padding).
Position p's logits predict token p+1; answer positions are answer_start-1 .. len-2.
Writes testdata/golden/infer-logits/<case>.json with, per sample: answer_nll (nats, summed),
answer_tokens, answer_bytes, positions, top-K ids and logits (value descending, ties by id),
logsumexp over the full vocabulary.
"""
import json
import pathlib

import pyarrow.parquet as pq
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "golden" / "infer-logits"
CASES = {  # case: (model, adapter, top_k, all positions)
    "tiny-llama": ("tiny-llama", None, 4, False),
    "tiny-llama-lora-all": ("tiny-llama", "tiny-llama-lora", 5, True),
    "tiny-gemma3": ("tiny-gemma3", None, 3, False),
}


def knowledge(model, sample, k, all_positions):
    ids = sample["input_ids"]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([ids])).logits[0].double()
    first = max(sample["answer_start"], 1) - 1
    answer = list(range(first, len(ids) - 1))
    positions = list(range(len(ids))) if all_positions else answer
    lse = torch.logsumexp(logits, dim=-1)
    nll = sum(float(lse[p] - logits[p, ids[p + 1]]) for p in answer)
    topk_ids, topk_logits = [], []
    for p in positions:
        row = logits[p].float().tolist()
        order = sorted(range(len(row)), key=lambda i: (-row[i], i))[:k]
        topk_ids.append(order)
        topk_logits.append([row[i] for i in order])
    return {"id": sample["id"], "answer_nll": nll, "answer_tokens": len(answer),
            "answer_bytes": sample["text_bytes"] - sample["context_bytes"], "positions": positions,
            "topk_ids": topk_ids, "topk_logits": topk_logits, "logsumexp": [float(lse[p]) for p in positions]}


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    for case, (name, adapter, k, all_positions) in CASES.items():
        model = AutoModelForCausalLM.from_pretrained(ROOT / "models" / name, dtype=torch.float32, attn_implementation="eager").eval()
        if adapter:
            model = PeftModel.from_pretrained(model, ROOT / "models" / adapter).eval()
        samples = pq.read_table(ROOT / "data" / "tokens" / name / "arc-easy-eval.parquet").to_pylist()
        result = [knowledge(model, s, k, all_positions) for s in samples]
        (OUT / f"{case}.json").write_text(json.dumps({"top_k": k, "all_positions": all_positions, "samples": result}) + "\n")


if __name__ == "__main__":
    main()
