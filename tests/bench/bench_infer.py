"""make bench-infer: tokens per second of `infer-logits` beside PyTorch + transformers.

Both sides run the same model folder over the same first N samples of a token file, with the
same thread count, batch size and top-K, each timed as its whole own process (start-up and
model loading included; peak memory is that process's maximum resident set). The baseline
is the usual transformers code: right-padded batches in file order, full logits, then
log-softmax, top-K and the answer loss at the answer positions. A second baseline run
batches by length as infer-logits does, to compare the engines alone.

Beside them, the roofline (tests/bench/roofline.py): the f32 matmul rate at the model's
shapes, ours (GEMM_RATE_BIN) and PyTorch's BLAS, and our tokens/s as a share of it.

Usage: python bench_infer.py MODEL_DIR TOKENS.parquet INFER_LOGITS_BIN [--samples 256] [--threads 2]
       [--gemm-rate GEMM_RATE_BIN]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq

import roofline


def baseline(model_dir, tokens_path, samples, threads, batch_size, top_k, sort):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    rows = pq.read_table(tokens_path).to_pylist()[:samples]
    if sort:
        rows.sort(key=lambda r: len(r["input_ids"]))
    start = time.perf_counter()
    with torch.inference_mode():
        for i in range(0, len(rows), batch_size):
            batch = rows[i:i + batch_size]
            width = max(len(r["input_ids"]) for r in batch)
            ids = torch.tensor([r["input_ids"] + [0] * (width - len(r["input_ids"])) for r in batch])
            mask = torch.tensor([[1] * len(r["input_ids"]) + [0] * (width - len(r["input_ids"])) for r in batch])
            logits = model(input_ids=ids, attention_mask=mask).logits
            for b, r in enumerate(batch):
                positions = torch.arange(max(r["answer_start"], 1) - 1, len(r["input_ids"]) - 1)
                logp = torch.log_softmax(logits[b, positions].float(), dim=-1)
                torch.topk(logits[b, positions], top_k, dim=-1)
                targets = torch.tensor(r["input_ids"])[positions + 1]
                _ = -logp.gather(1, targets[:, None]).sum()
    return time.perf_counter() - start


def timed(cmd, env=None):
    """Run cmd under /usr/bin/time; return (stdout, wall seconds, peak RSS in MiB)."""
    with tempfile.NamedTemporaryFile("r") as peak:
        start = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", peak.name, *cmd], check=True, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return out.stdout, time.perf_counter() - start, int(peak.read().strip().splitlines()[-1]) / 1024


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model"), p.add_argument("tokens"), p.add_argument("infer_logits")
    p.add_argument("--samples", type=int, default=256), p.add_argument("--threads", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=8), p.add_argument("--top-k", type=int, default=16)
    p.add_argument("--baseline-only", action="store_true"), p.add_argument("--sort", action="store_true")
    p.add_argument("--gemm-rate", help="gemm_rate's binary: print the roofline beside the ratio")
    a = p.parse_args()
    if a.baseline_only:
        print(baseline(a.model, a.tokens, a.samples, a.threads, a.batch_size, a.top_k, a.sort))
        return
    table = pq.read_table(a.tokens).slice(0, a.samples)
    n_tokens = sum(len(ids) for ids in table.column("input_ids").to_pylist())
    with tempfile.TemporaryDirectory() as tmp:
        sliced = os.path.join(tmp, "tokens.parquet")
        pq.write_table(table, sliced)
        env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads))
        _, ours, ours_peak = timed([a.infer_logits, "--model", a.model, "--input", sliced, "--out", os.path.join(tmp, "k.parquet"),
                                    "--top-k", str(a.top_k), "--batch-size", str(a.batch_size)], env=env)
        base = [sys.executable, __file__, a.model, sliced, a.infer_logits, "--samples", str(a.samples), "--threads", str(a.threads),
                "--batch-size", str(a.batch_size), "--top-k", str(a.top_k), "--baseline-only"]
        env = dict(os.environ, OMP_NUM_THREADS=str(a.threads))
        out, theirs, theirs_peak = timed(base, env=env)
        out_sorted, theirs_sorted, _ = timed(base + ["--sort"], env=env)
    forward = float(out.strip().splitlines()[-1])
    forward_sorted = float(out_sorted.strip().splitlines()[-1])
    print(f"bench-infer: {a.samples} samples, {n_tokens} tokens, {a.threads} threads, batch {a.batch_size}, top-{a.top_k}; whole-process wall time")
    print(f"  infer-logits (candle)                  {n_tokens / ours:7.1f} tokens/s  {ours:6.2f} s  peak RSS {ours_peak:.0f} MiB")
    print(f"  PyTorch + transformers, file order     {n_tokens / theirs:7.1f} tokens/s  {theirs:6.2f} s  peak RSS {theirs_peak:.0f} MiB  (forward passes {forward:.2f} s)")
    print(f"  PyTorch + transformers, length-sorted  {n_tokens / theirs_sorted:7.1f} tokens/s  {theirs_sorted:6.2f} s  (forward passes {forward_sorted:.2f} s)")
    print(f"  ratio vs the usual baseline (file order)   {theirs / ours:5.2f}")
    print(f"  ratio vs the length-sorted baseline        {theirs_sorted / ours:5.2f}")
    if a.gemm_rate:
        print(infer_roofline(a, table, n_tokens / ours))


def infer_roofline(a, table, tokens_per_s):
    """infer-logits' tokens/s against the matmul rate at its shapes: batches of --batch-size
    rows of the mean length, the vocabulary head at the answer positions only."""
    lengths = [len(ids) for ids in table.column("input_ids").to_pylist()]
    answers = sum(n - max(s, 1) for n, s in zip(lengths, table.column("answer_start").to_pylist()))
    context, head_share = sum(lengths) / len(lengths), answers / sum(lengths)
    rows = round(a.batch_size * context)
    return roofline.measure("inference", a.gemm_rate, a.model, rows, a.threads, False, context, head_share, tokens_per_s)


if __name__ == "__main__":
    main()
