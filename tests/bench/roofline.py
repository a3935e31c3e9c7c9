"""The roofline beside each benchmark (`make bench-infer`, `make bench-distill`): how close a
tokens/s figure is to what this machine's f32 matrix products reach at the model's shapes
(bf16 products' for `evaluate --dtype bf16`: both operands bf16, sums f32).

The rate is measured in the same run, on the same threads, two ways:
- ours: `gemm_rate` (tests/bench/gemm_rate.rs), the layer path our tools take on the CPU;
- BLAS: PyTorch's matmul (MKL or OpenBLAS, whichever the wheel has) on the same shapes.
Each is total FLOPs over total seconds across a decoder layer's seven projections (and the
vocabulary head where the benchmark computes it), weighted as a token meets them.

FLOPs counted per token (2 per multiply-add; the model's config.json):
- forward: 2·P per projection weight P = in·out, for every layer's q, k, v, o, gate, up,
  down; attention's QKᵀ and AV over the causal half of the context,
  2·2·heads·head_dim·(L + 1)/2 per layer; the vocabulary head 2·hidden·vocab at the
  positions a tool needs it (answer positions only: the share of such tokens is passed in);
- a LoRA training step: the forward, plus backward's ∂x through every frozen weight (the
  same products again: frozen weights get no gradient), attention's backward (twice its
  forward), and the head's ∂x at the answer positions; the adapter's rank-r products
  (2·r·(in + out) per adapted projection, three times over forward and backward) included.
Norms, rotary embedding, softmax and the optimiser are not counted: elementwise work.
"""
import json
import subprocess
import time

PROJECTIONS = ("q", "k", "v", "o", "gate", "up", "down")
LORA_TARGETS = ("q", "k", "v", "o")


def extensions():
    """The CPU's model name and the vector extensions matrix kernels choose among."""
    flags, name = set(), "unknown CPU"
    with open("/proc/cpuinfo") as f:
        for line in f:
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                flags = set(value.split())
            elif key.strip() == "model name":
                name = value.strip()
    named = [("AVX2", "avx2"), ("FMA", "fma"), ("AVX-512", "avx512f"), ("avx512_bf16", "avx512_bf16"), ("AMX", "amx_tile")]
    return name, [label for label, flag in named if flag in flags], [label for label, flag in named if flag not in flags]


def config_of(model_dir):
    with open(f"{model_dir}/config.json") as f:
        c = json.load(f)
    head_dim = c.get("head_dim") or c["hidden_size"] // c["num_attention_heads"]
    return {"hidden": c["hidden_size"], "inter": c["intermediate_size"], "layers": c["num_hidden_layers"],
            "heads": c["num_attention_heads"], "kv": c.get("num_key_value_heads", c["num_attention_heads"]),
            "head_dim": head_dim, "vocab": c["vocab_size"]}


def flops_per_token(c, context, head_share, training, lora_rank=8):
    """FLOPs a token costs (module docstring): `context` the mean sequence length, `head_share`
    the share of tokens at which the vocabulary head is computed."""
    h, q, kv, i = c["hidden"], c["heads"] * c["head_dim"], c["kv"] * c["head_dim"], c["inter"]
    sizes = {"q": (h, q), "k": (h, kv), "v": (h, kv), "o": (q, h), "gate": (h, i), "up": (h, i), "down": (i, h)}
    linear = sum(2 * a * b for a, b in sizes.values()) * c["layers"]
    attention = 2 * 2 * c["heads"] * c["head_dim"] * (context + 1) / 2 * c["layers"]
    head = 2 * h * c["vocab"] * head_share
    if not training:
        return linear + attention + head
    lora = 3 * sum(2 * lora_rank * sum(sizes[t]) for t in LORA_TARGETS) * c["layers"]
    return 2 * linear + 3 * attention + 2 * head + lora


def measure(label, gemm_rate_bin, model_dir, rows, threads, training, context, head_share, tokens_per_s, dtype="f32"):
    """The roofline's lines for a benchmark that ran at `tokens_per_s`: both matmul rates at
    the model's shapes with `rows` rows (backward's products too when `training`) in `dtype`,
    the FLOPs per token of sequences of mean length `context` with the head at `head_share`
    of tokens."""
    ours, shapes = our_rate(gemm_rate_bin, model_dir, rows, threads, training, head_share, dtype)
    blas = blas_rate(shapes, threads, training, head_share, dtype)
    flops = flops_per_token(config_of(model_dir), context, head_share, training)
    return report(f"{label}, {rows} rows a batch, head at {100 * head_share:.0f} % of tokens", tokens_per_s, flops,
                  ours, blas, threads, dtype)


def our_rate(gemm_rate_bin, model_dir, rows, threads, backward, head_share, dtype="f32"):
    out = subprocess.run([gemm_rate_bin, model_dir, str(rows), "0.5", dtype], check=True, capture_output=True,
                         text=True, env={"RAYON_NUM_THREADS": str(threads)}).stdout
    shapes = [json.loads(line) for line in out.splitlines()]
    return weighted_rate(shapes, backward, head_share), shapes


def blas_rate(shapes, threads, backward, head_share, dtype="f32", budget=0.5):
    """PyTorch's matmul on the shapes gemm_rate timed: x·Wᵀ and, for training, ∂y·W."""
    import torch

    torch.set_num_threads(threads)
    kind = {"f32": torch.float32, "bf16": torch.bfloat16}[dtype]
    timed = []
    for s in shapes:
        x = torch.randn(s["rows"], s["inner"]).to(kind)
        w = (torch.randn(s["outer"], s["inner"]) * 0.02).to(kind)
        g = torch.ones(s["rows"], s["outer"]).to(kind)
        timed.append(dict(s, forward_s=best_of(lambda: x @ w.T, budget), backward_s=best_of(lambda: g @ w, budget)))
    return weighted_rate(timed, backward, head_share)


def best_of(call, budget):
    call()
    started, best = time.perf_counter(), float("inf")
    while time.perf_counter() - started < budget:
        t = time.perf_counter()
        call()
        best = min(best, time.perf_counter() - t)
    return best


def weighted_rate(shapes, backward, head_share):
    """GFLOP/s over the shapes as a token meets them: every projection once per layer (the
    layer count cancels), the head at `head_share` of the tokens."""
    flops = seconds = 0.0
    for s in shapes:
        weight = head_share if s["name"] == "head" else 1.0
        calls = [s["forward_s"]] + ([s["backward_s"]] if backward else [])
        flops += weight * len(calls) * 2 * s["rows"] * s["inner"] * s["outer"]
        seconds += weight * sum(calls)
    return flops / seconds / 1e9


def report(label, tokens_per_s, flops_token, ours, blas, threads, dtype="f32"):
    """Lines for the benchmark's output: the achieved rate as a share of both matmul rates."""
    name, has, lacks = extensions()
    achieved = tokens_per_s * flops_token / 1e9
    return "\n".join([
        f"roofline ({label}; {name}, {threads} threads; has {', '.join(has) or 'none'}; lacks {', '.join(lacks) or 'none'}):",
        f"  FLOPs per token {flops_token / 1e6:.1f} M (tests/bench/roofline.py), achieved {achieved:.1f} GFLOP/s",
        f"  {dtype} matmul at the model's shapes: ours {ours:.1f} GFLOP/s, PyTorch's BLAS {blas:.1f} GFLOP/s",
        f"  share of that rate: {100 * achieved / ours:.0f} % of ours, {100 * achieved / blas:.0f} % of BLAS's",
    ])
