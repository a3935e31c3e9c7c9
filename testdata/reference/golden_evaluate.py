"""Golden outputs of `evaluate` from Hugging Face transformers (+ PEFT), lm-evaluation-harness style.

For every sample of testdata/data/tasks/arc-easy/eval.parquet and every choice: encode
context + choice as one string, the continuation is what follows len(encode(context))
tokens, its log-likelihood is the sum of log-softmax scores of those tokens. acc = argmax,
acc_norm = argmax of loglik / len(choice without its leading space). Also the greedy
continuation (3 new tokens) of each context, decoded without special tokens.
"""
import json
import pathlib

import pyarrow.parquet as pq
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "golden" / "evaluate"
CASES = {"tiny-llama": ("tiny-llama", None, "arc-easy"), "tiny-gemma3-lora": ("tiny-gemma3", "tiny-gemma3-lora", "arc-easy"),
         "tiny-gemma3-boolq": ("tiny-gemma3", None, "boolq"), "tiny-llama-single-token": ("tiny-llama", None, "single-token")}


def write_single_token_task():
    """ARC-Easy contexts with choices that are one token each in the test vocabularies, written
    with pyarrow and the documented metadata (as a replacement stage would)."""
    import pyarrow as pa
    rows = pq.read_table(ROOT / "data" / "tasks" / "arc-easy" / "eval.parquet").to_pylist()
    choices = [" the", " and", " of", " unto"]
    table = pa.table({"id": [r["id"] for r in rows], "context": [r["context"] for r in rows],
                      "choices": [choices] * len(rows), "gold": pa.array([i % 4 for i in range(len(rows))], pa.uint32()),
                      "target": [choices[i % 4] for i in range(len(rows))]})
    table = table.replace_schema_metadata({"fedmkt.format": "task", "fedmkt.format_version": "1",
                                           "fedmkt.tool": "golden_evaluate.py", "fedmkt.task": "single-token", "fedmkt.split": "eval"})
    out = ROOT / "data" / "tasks" / "single-token"
    out.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, out / "eval.parquet")


def loglik(model, tokenizer, context, continuation):
    whole = tokenizer(context + continuation)["input_ids"]
    n_ctx = len(tokenizer(context)["input_ids"])
    with torch.no_grad():
        logp = torch.log_softmax(model(input_ids=torch.tensor([whole])).logits[0].double(), dim=-1)
    return sum(float(logp[p - 1, whole[p]]) for p in range(n_ctx, len(whole)))


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    write_single_token_task()
    for case, (name, adapter, task) in CASES.items():
        rows = pq.read_table(ROOT / "data" / "tasks" / task / "eval.parquet").to_pylist()
        folder = ROOT / "models" / name
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, attn_implementation="eager").eval()
        if adapter:
            model = PeftModel.from_pretrained(model, ROOT / "models" / adapter).eval()
        samples = []
        for r in rows:
            ll = [loglik(model, tokenizer, r["context"], c) for c in r["choices"]]
            chars = [len(c[1:] if c.startswith(" ") else c) for c in r["choices"]]
            ids = tokenizer(r["context"], return_tensors="pt")["input_ids"]
            out = model.generate(input_ids=ids, max_new_tokens=3, do_sample=False, eos_token_id=model.config.eos_token_id, pad_token_id=0)
            samples.append({"id": r["id"], "loglik": ll, "pred": max(range(len(ll)), key=lambda i: (ll[i], -i)),
                            "pred_norm": max(range(len(ll)), key=lambda i: (ll[i] / chars[i], -i)),
                            "generation": tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)})
        acc = sum(s["pred"] == r["gold"] for s, r in zip(samples, rows)) / len(rows)
        acc_norm = sum(s["pred_norm"] == r["gold"] for s, r in zip(samples, rows)) / len(rows)
        (OUT / f"{case}.json").write_text(json.dumps({"acc": acc, "acc_norm": acc_norm, "samples": samples}, indent=1) + "\n")


if __name__ == "__main__":
    main()
