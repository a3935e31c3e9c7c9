"""make bench-eval: `evaluate` against the previous `evaluate` and against transformers.

Three scorers of the same multiple-choice samples (the first N of a task file), each timed
as its whole own process (start-up and model loading included) with the same thread count:
  - `evaluate` as built now (each sample's context once, its choices after the cached keys
    and values);
  - `evaluate` built from the commit before that change (one pass per choice, batches of 8);
  - PyTorch + transformers the way lm-evaluation-harness scores by default: one forward
    pass per choice (context + choice), batch 1.
On a CPU with avx512_bf16, `evaluate --dtype bf16` (bf16 products, everything else f32) runs
beside them too, its log-likelihoods and predictions compared with f32's.
The `evaluate` runs repeat --repeats times each, alternating, and the median counts;
transformers runs once (its forward passes take minutes). Tokens/s counts the tokens of every context + choice sequence, the same work for all three,
so the ratios are ratios of wall time. The log-likelihoods of all three are compared too:
the speed-up must not change the scores beyond float rounding.

Beside them, the roofline (--gemm-rate, tests/bench/roofline.py): the f32 matmul rate at the
model's shapes, ours and PyTorch's BLAS, and the work `evaluate` does (each context once, each
choice after it, the vocabulary head at the choices' tokens) as a share of it.

Usage: python bench_eval.py MODEL_DIR TASK.parquet EVALUATE_BIN BASELINE_EVALUATE_BIN [--samples N] [--threads 2]
       [--baseline-label TEXT] [--gemm-rate GEMM_RATE_BIN]
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import pyarrow.parquet as pq

import roofline


def sequences(model_dir, rows):
    """Per choice: token ids of context + choice and the index of the first answer token
    (the first token ending past the context, as `tokenize` splits)."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(os.path.join(model_dir, "tokenizer.json"))
    out = []
    for r in rows:
        for choice in r["choices"]:
            enc = tokenizer.encode(r["context"] + choice)
            start = next((i for i, (_, end) in enumerate(enc.offsets) if end > len(r["context"].encode())), len(enc.ids))
            out.append((enc.ids, start))
    return out


def transformers_logliks(model_dir, task, samples, threads):
    import torch
    from transformers import AutoModelForCausalLM

    torch.set_num_threads(threads)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    logliks = []
    with torch.inference_mode():
        for ids, start in sequences(model_dir, pq.read_table(task).to_pylist()[:samples]):
            logp = torch.log_softmax(model(input_ids=torch.tensor([ids])).logits[0].float(), dim=-1)
            positions = torch.arange(max(start, 1) - 1, len(ids) - 1)
            logliks.append(logp[positions, torch.tensor(ids)[positions + 1]].sum().item())
    return logliks


def timed(cmd, env):
    """Run cmd under /usr/bin/time; return (stdout, wall seconds, peak RSS in MiB)."""
    with tempfile.NamedTemporaryFile("r") as peak:
        start = time.perf_counter()
        out = subprocess.run(["/usr/bin/time", "-f", "%M", "-o", peak.name, *cmd], check=True, env=env,
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        return out.stdout, time.perf_counter() - start, int(peak.read().strip().splitlines()[-1]) / 1024


def evaluate_logliks(binary, model, task, samples, tmp, name, env, flags=()):
    out = os.path.join(tmp, f"{name}.json")
    _, wall, peak = timed([binary, "--model", model, "--data", task, "--limit", str(samples), "--out", out, *flags], env)
    table = pq.read_table(out.replace(".json", ".parquet"))
    logliks = [x for row in table.column("loglik").to_pylist() for x in row]
    return logliks, wall, peak, json.load(open(out))["acc"], table.column("pred").to_pylist()


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model"), p.add_argument("task"), p.add_argument("evaluate"), p.add_argument("baseline")
    p.add_argument("--samples", type=int, default=570), p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=3), p.add_argument("--transformers-only", action="store_true")
    p.add_argument("--baseline-label", default="evaluate before (a pass per choice)")
    p.add_argument("--gemm-rate", help="gemm_rate's binary: print the roofline beside the ratios")
    a = p.parse_args()
    if a.transformers_only:
        print(json.dumps(transformers_logliks(a.model, a.task, a.samples, a.threads)))
        return
    rows = pq.read_table(a.task).to_pylist()[:a.samples]
    n_tokens = sum(len(ids) for ids, _ in sequences(a.model, rows))
    env = dict(os.environ, RAYON_NUM_THREADS=str(a.threads), OMP_NUM_THREADS=str(a.threads))
    # The model's files read once before any timing, so no scorer pays for the disk alone.
    for name in os.listdir(a.model):
        with open(os.path.join(a.model, name), "rb") as f:
            while f.read(1 << 24):
                pass
    with tempfile.TemporaryDirectory() as tmp:
        # Each binary a.repeats times, alternating (this shared machine's speed drifts); the median counts.
        scorers = [("now", a.evaluate, ()), ("before", a.baseline, ())]
        if "avx512_bf16" in roofline.extensions()[1]:
            scorers.append(("bf16", a.evaluate, ("--dtype", "bf16")))
        runs = {name: [] for name, _, _ in scorers}
        for _ in range(a.repeats):
            for name, binary, flags in scorers:
                runs[name].append(evaluate_logliks(binary, a.model, a.task, a.samples, tmp, name, env, flags))
        median = lambda rs: sorted(rs, key=lambda r: r[1])[len(rs) // 2]
        (ours, ours_s, ours_peak, acc, preds), (before, before_s, before_peak, acc_before, _) = median(runs["now"]), median(runs["before"])
        spread = {name: " ".join(f"{r[1]:.1f}" for r in rs) for name, rs in runs.items()}
        cmd = [sys.executable, __file__, a.model, a.task, a.evaluate, a.baseline, "--samples", str(a.samples),
               "--threads", str(a.threads), "--transformers-only"]
        out, hf_s, hf_peak = timed(cmd, env)
    hf = json.loads(out.strip().splitlines()[-1])
    worst = lambda xs: max(abs(x - y) / max(1.0, abs(y)) for x, y in zip(xs, hf))
    name = os.path.basename(os.path.normpath(a.model))
    print(f"bench-eval {name}: {len(rows)} samples, {len(ours)} choices, {n_tokens} tokens of context + choice, "
          f"{a.threads} threads; whole-process wall time, median of {a.repeats} alternating runs of each evaluate")
    print(f"  evaluate now (shared contexts)          {n_tokens / ours_s:7.1f} tokens/s  {ours_s:7.1f} s  peak RSS {ours_peak:.0f} MiB  acc {acc:.4f}")
    print(f"  {a.baseline_label:<39} {n_tokens / before_s:7.1f} tokens/s  {before_s:7.1f} s  peak RSS {before_peak:.0f} MiB  acc {acc_before:.4f}")
    print(f"  transformers, a forward per choice      {n_tokens / hf_s:7.1f} tokens/s  {hf_s:7.1f} s  peak RSS {hf_peak:.0f} MiB")
    print(f"  ratio vs {a.baseline_label:<30} {before_s / ours_s:5.2f}   (runs: now {spread['now']} s; before {spread['before']} s)")
    print(f"  ratio vs transformers                   {hf_s / ours_s:5.2f}")
    print(f"  largest log-likelihood difference vs transformers (relative): now {worst(ours):.1e}, before {worst(before):.1e}")
    if a.gemm_rate:
        print(eval_roofline(a, rows, ours_s))
    if "bf16" in runs:
        print(bf16_lines(a, rows, runs["bf16"], median(runs["bf16"]), (ours, ours_s, preds), hf_s, n_tokens))


def bf16_lines(a, rows, bf16_runs, bf16, f32, hf_s, n_tokens):
    """`evaluate --dtype bf16` beside f32: speed, and what rounding the products did to the scores."""
    (logliks, seconds, peak, acc, preds), (f32_logliks, f32_s, f32_preds) = bf16, f32
    diffs = [abs(x - y) for x, y in zip(logliks, f32_logliks)]
    flipped = sum(p != q for p, q in zip(preds, f32_preds))
    lines = [
        f"  evaluate --dtype bf16 (bf16 products)   {n_tokens / seconds:7.1f} tokens/s  {seconds:7.1f} s  peak RSS {peak:.0f} MiB  acc {acc:.4f}"
        f"  (runs: {' '.join(f'{r[1]:.1f}' for r in bf16_runs)} s)",
        f"  ratio bf16 vs transformers (f32)        {hf_s / seconds:5.2f}   vs evaluate f32 {f32_s / seconds:5.2f}",
        f"  bf16 vs f32 log-likelihoods: largest difference {max(diffs):.3f} nats, mean {sum(diffs) / len(diffs):.4f}; "
        f"{flipped} of {len(preds)} predictions differ",
    ]
    if a.gemm_rate:
        lines.append(eval_roofline(a, rows, seconds, "bf16"))
    return "\n".join(lines)


def eval_roofline(a, rows, seconds, dtype="f32"):
    """evaluate's own work (each sample's context once, then each choice; the vocabulary head
    at the choices' tokens) over its whole-process time, against the matmul rate at a pass's
    mean rows (passes of --batch-size 64 contexts, then of 64 choices)."""
    per_sample = [sequences(a.model, [r]) for r in rows]
    shared = [min(start for _, start in seqs) for seqs in per_sample]  # each sample's context, run once
    choices = sum(len(ids) - context for seqs, context in zip(per_sample, shared) for ids, _ in seqs)
    n_choices = sum(len(seqs) for seqs in per_sample)
    tokens, head_share = sum(shared) + choices, choices / (sum(shared) + choices)
    passes = -(-len(rows) // 64) + -(-n_choices // 64)
    context = sum(len(ids) for seqs in per_sample for ids, _ in seqs) / n_choices
    label = f"evaluate's own work, {tokens} tokens in {passes} passes"
    return roofline.measure(label, a.gemm_rate, a.model, round(tokens / passes), a.threads, False, context, head_share,
                            tokens / seconds, dtype)

if __name__ == "__main__":
    main()
