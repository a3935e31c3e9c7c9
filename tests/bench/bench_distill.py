"""make bench-distill: a LoRA training step of our `distill` beside PyTorch + PEFT, and
peak memory of KD against a 262k-vocabulary teacher vs a 49k one.

usage: bench_distill.py MODEL_DIR TOKENS DISTILL_BIN ALIGNED_262K ALIGNED_49K [--samples N] [--threads T]

ALIGNED_*: knowledge sets aligned (`align`) into the model's vocabulary on TOKENS, from a
262k-vocabulary teacher (Gemma-3) and a 49k one (SmolLM2); every sample is used as a target.

Speed: the same batches (first N samples of TOKENS, batched as `distill`'s training log
says it did), batch 4, LoRA r=8/alpha 16 on q/k/v/o, AdamW,
answer-token cross-entropy, dropout 0 on both sides; each side's step times summed
(model loading excluded), first step excluded as warm-up, fastest of --repeats passes.
Ratio = our tokens/s over theirs.
Memory: peak RSS of whole `distill` runs with the two teacher files (same samples).
Roofline (--gemm-rate, tests/bench/roofline.py): the f32 matmul rate at the step's shapes,
ours and PyTorch's BLAS, forward and backward, and our step's tokens/s as a share of it.
"""
import argparse, hashlib, os, subprocess, sys, tempfile, time

import pyarrow as pa
import pyarrow.parquet as pq

import roofline


def first_rows(path, n, out):
    table = pq.read_table(path).slice(0, n)
    meta = pq.read_schema(path).metadata
    pq.write_table(table.replace_schema_metadata(meta), out)


def as_selected(aligned, tokens, out):
    """The aligned rows of the samples in `tokens`, labelled as `select` output for them."""
    ids = set(pq.read_table(tokens)["id"].to_pylist())
    table = pq.read_table(aligned)
    table = table.filter(pa.array([i in ids for i in table["id"].to_pylist()]))
    meta = dict(pq.read_schema(aligned).metadata)
    meta[b"fedmkt.format"] = b"selected"
    meta[b"fedmkt.input.tokens"] = b"sha256:" + hashlib.sha256(open(tokens, "rb").read()).hexdigest().encode()
    pq.write_table(table.replace_schema_metadata(meta), out)


def ours(model, tokens, binary, threads, extra=()):
    with tempfile.TemporaryDirectory() as d:
        env = dict(os.environ, RAYON_NUM_THREADS=str(threads))
        cmd = ["/usr/bin/time", "-f", "%M", binary, "--model", model, "--data", tokens, "--lr", "1e-4", "--lora-dropout", "0", "--out", f"{d}/a", *extra]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(r.stderr)
        peak_kib = int(r.stderr.strip().splitlines()[-1])
        log = pq.read_table(f"{d}/a/training_log.parquet")
        return log["seconds"].to_pylist(), log["samples"].to_pylist(), peak_kib / 1024


def theirs(model, tokens, batches, threads, passes):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    torch.set_num_threads(threads)
    m = AutoModelForCausalLM.from_pretrained(model, torch_dtype=torch.float32)
    m = get_peft_model(m, LoraConfig(r=8, lora_alpha=16, lora_dropout=0.0, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    opt = torch.optim.AdamW([p for p in m.parameters() if p.requires_grad], lr=1e-4, betas=(0.9, 0.95), weight_decay=0.1)
    rows = {r["id"]: r for r in pq.read_table(tokens).to_pylist()}
    return [[step(m, opt, [rows[i] for i in ids]) for ids in batches] for _ in range(passes)]


def step(m, opt, batch):
    """Seconds of one training step on `batch` (padding, labels on the answer tokens)."""
    import torch

    width = max(len(r["input_ids"]) for r in batch)
    ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in batch])
    mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in batch])
    labels = torch.full_like(ids, -100)
    for b, r in enumerate(batch):
        start = max(r["answer_start"], 1)
        labels[b, start:len(r["input_ids"])] = ids[b, start:len(r["input_ids"])]
    started = time.perf_counter()
    loss = m(input_ids=ids, attention_mask=mask, labels=labels).loss
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in m.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad()
    return time.perf_counter() - started


def per_step(passes):
    """Mean seconds per step of the fastest pass, its first step left out as warm-up."""
    return min(sum(p[1:]) / (len(p) - 1) for p in passes)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("model"); ap.add_argument("tokens"); ap.add_argument("binary")
    ap.add_argument("teacher_big"); ap.add_argument("teacher_small")
    ap.add_argument("--samples", type=int, default=48); ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=3, help="passes per side; the fastest counts (other load only slows a pass)")
    ap.add_argument("--gemm-rate", help="gemm_rate's binary: print the roofline beside the ratio")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        data = f"{d}/tokens.parquet"
        first_rows(a.tokens, a.samples, data)
        tokens = sum(len(r) for r in pq.read_table(data)["input_ids"].to_pylist())
        runs = [ours(a.model, data, a.binary, a.threads, ["--batch-size", "4"]) for _ in range(a.repeats)]
        batches = runs[0][1]
        our_step, their_step = per_step([r[0] for r in runs]), per_step(theirs(a.model, data, batches, a.threads, a.repeats))
        steps = len(batches)
        print(f"LoRA step, {a.samples} samples, {tokens} tokens, {steps} steps of batch 4, {a.threads} threads, best of {a.repeats} passes:")
        print(f"  ours {tokens / steps / our_step:.1f} tok/s ({our_step:.3f} s/step) | PyTorch+PEFT {tokens / steps / their_step:.1f} tok/s ({their_step:.3f} s/step) | ratio {their_step / our_step:.2f} (goal >= 1.5)")
        if a.gemm_rate:
            print(step_roofline(a, data, batches, tokens / steps / our_step))
        peaks = {}
        for name, aligned in [("262k", a.teacher_big), ("49k", a.teacher_small)]:
            teacher = f"{d}/selected-{name}.parquet"
            as_selected(aligned, data, teacher)
            _, _, peaks[name] = ours(a.model, data, a.binary, a.threads, ["--teacher", teacher])
        print(f"KD peak RSS: teacher vocabulary 262k {peaks['262k']:.0f} MiB, 49k {peaks['49k']:.0f} MiB, ratio {peaks['262k'] / peaks['49k']:.3f} (goal: 1.0)")


def step_roofline(a, data, batches, tokens_per_s):
    """The LoRA step's tokens/s against the matmul rate at its shapes: each batch's samples
    packed into one row, as distill runs them; the head at the answer positions."""
    rows = {r["id"]: r for r in pq.read_table(data).to_pylist()}
    lengths = {i: len(r["input_ids"]) for i, r in rows.items()}
    answers = sum(lengths[i] - max(r["answer_start"], 1) for i, r in rows.items())
    context, head_share = sum(lengths.values()) / len(lengths), answers / sum(lengths.values())
    packed = round(sum(lengths[i] for b in batches for i in b) / len(batches))
    return roofline.measure("LoRA step", a.gemm_rate, a.model, packed, a.threads, True, context, head_share, tokens_per_s)


if __name__ == "__main__":
    main()
