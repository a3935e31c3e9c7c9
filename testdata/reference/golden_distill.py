"""Golden adapters of `distill`: the same training run in PyTorch + PEFT, run by hand (`make testdata`).

Tiny Llama (testdata/models/tiny-llama) continues the PEFT adapter testdata/models/tiny-llama-lora
(random non-zero A and B, dropout 0) on its six eval samples, 2 epochs of batch 2, lr 1e-2,
in the batches our `distill --seed 7` drew (read from its training log: a ChaCha shuffle this
script does not re-implement; the test checks that distill still draws them). What PyTorch
computes itself, as the paper's Eq. 4 and 9–10 and Appendix D.1 define it:
- per sample, the mean cross-entropy of its answer tokens (positions answer_start-1 .. len-2
  predict answer_start .. len-1); with a teacher, the mean over the teacher's positions of
  -sum_k q_k log p(id_k), q the softmax of its top-K logits;
- a batch of b samples: (1/b) sum_i [lambda ce_i + (1 - lambda)(N/M) kd_i] (N/M = 1: every
  sample has targets);
- AdamW (betas 0.9/0.95, eps 1e-8, weight decay 0.1, decoupled), gradients clipped to norm
  1.0, learning rate warmed up over ceil(0.008 total) steps then cosine to 0.

Cases: `task` (no teacher) and `kd` (lambda 0.5, teacher testdata/golden/select/from-client-2.parquet,
tiny Llama with a PEFT adapter aligned to these tokens). Output in testdata/golden/distill/:
<case>.safetensors (the adapter's tensors under PEFT's saved names) and order.json.

Requirements: testdata/reference/requirements-models.txt (torch, transformers, peft).
"""
import json
import math
import pathlib
import subprocess
import tempfile

import pyarrow.parquet as pq
import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "golden" / "distill"
MODEL, ADAPTER = ROOT / "models" / "tiny-llama", ROOT / "models" / "tiny-llama-lora"
TOKENS = ROOT / "data" / "tokens" / "tiny-llama" / "arc-easy-eval.parquet"
TEACHER = ROOT / "golden" / "select" / "from-client-2.parquet"
LR, EPOCHS, BATCH, SEED = 1e-2, 2, 2, 7
CASES = {"task": (1.0, None), "kd": (0.5, TEACHER)}


def distill_flags(lam, teacher, out):
    flags = ["--model", MODEL, "--adapter", ADAPTER, "--data", TOKENS, "--lr", LR, "--epochs", EPOCHS,
             "--batch-size", BATCH, "--seed", SEED, "--lambda", lam, "--out", out]
    return [str(f) for f in flags] + (["--teacher", str(teacher)] if teacher else [])


def our_batches(lam, teacher):
    """The sample ids of each step, as our distill drew them."""
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([str(ROOT.parent / "target/release/distill"), *distill_flags(lam, teacher, f"{tmp}/a")],
                       check=True, capture_output=True)
        return pq.read_table(f"{tmp}/a/training_log.parquet").column("samples").to_pylist()


def learning_rate(step, total):
    warmup = math.ceil(0.008 * total)
    if step < warmup:
        return LR * step / max(warmup, 1)
    return LR * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(total - warmup, 1)))


def sample_loss(model, row, teacher_row, lam):
    ids = torch.tensor([row["input_ids"]])
    logits = model(input_ids=ids).logits[0].float()
    log_probs = torch.log_softmax(logits, dim=-1)
    positions = list(range(max(row["answer_start"], 1) - 1, len(row["input_ids"]) - 1))
    ce = -torch.stack([log_probs[p, row["input_ids"][p + 1]] for p in positions]).mean()
    if teacher_row is None:
        return ce
    kd_terms = []
    for p, top_ids, top_logits in zip(teacher_row["positions"], teacher_row["topk_ids"], teacher_row["topk_logits"]):
        q = torch.softmax(torch.tensor(top_logits, dtype=torch.float64), dim=0).float()
        valid = [i for i, t in enumerate(top_ids) if t != 4294967295]
        kd_terms.append(-sum(q[i] * log_probs[p, top_ids[i]] for i in valid))
    return lam * ce + (1 - lam) * torch.stack(kd_terms).mean()


def train(lam, teacher, batches):
    model = AutoModelForCausalLM.from_pretrained(MODEL, torch_dtype=torch.float32)
    model = PeftModel.from_pretrained(model, ADAPTER, is_trainable=True)
    params = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.AdamW(params, lr=LR, betas=(0.9, 0.95), eps=1e-8, weight_decay=0.1)
    rows = {r["id"]: r for r in pq.read_table(TOKENS).to_pylist()}
    targets = {r["id"]: r for r in pq.read_table(teacher).to_pylist()} if teacher else {}
    for step, ids in enumerate(batches):
        for group in optimiser.param_groups:
            group["lr"] = learning_rate(step, len(batches))
        loss = sum(sample_loss(model, rows[i], targets.get(i) if teacher else None, lam) for i in ids) / len(ids)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimiser.step()
        optimiser.zero_grad()
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        return load_file(f"{tmp}/adapter_model.safetensors")


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    orders = {}
    for case, (lam, teacher) in CASES.items():
        orders[case] = our_batches(lam, teacher)
        save_file({k: v.contiguous() for k, v in train(lam, teacher, orders[case]).items()}, OUT / f"{case}.safetensors")
    (OUT / "order.json").write_text(json.dumps(orders, indent=1) + "\n")


if __name__ == "__main__":
    main()
