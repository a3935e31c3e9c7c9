"""`make check-cuda`: the CUDA build checked on a GPU machine, in one prepared run (< 8 min).

Usage: check_cuda.py BIN OUT [BUNDLE]

BIN holds the CUDA build's tools (make build-cuda's pack, unpacked). The machine needs torch,
transformers, peft, safetensors and pyarrow; the CUDA 13 libraries come from PyTorch's
wheels (their lib folders go on the tools' LD_LIBRARY_PATH). Run from the repository root
(testdata/, the Makefile). BUNDLE (make cuda-bundle: the real tokenizers, each with the
public set it tokenised) enables part 3. Writes OUT/check-cuda.json and prints each figure
as it comes:

1. The tiny llama and gemma3 (and the llama with its PEFT adapter): knowledge sets of our
   tools on CUDA (f32, bf16) against ours on the CPU and against transformers + PEFT on the
   same GPU; the LoRA adapter after an epoch of distill on CUDA against the same on the CPU.
2. The tiny pipeline's round (`make round PIPELINE=pipelines/tiny.mk`) on CUDA against the
   same round on the CPU: accuracies, and the adapters' largest difference.
3. Throughput at SmolLM2-135M, Gemma-3-270M and a 1B llama shape (random weights written by
   transformers, the real tokenizers' vocabularies): infer-logits and a distill step, f32 and
   bf16, beside PyTorch (+ PEFT for the step) on the same GPU, as ratios; and our share of the
   GPU's bf16 matmul rate (measured here with torch, ~790 TFLOP/s on an H200).
"""
import glob
import json
import os
import pathlib
import shutil
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM, Gemma3TextConfig, LlamaConfig

ROOT = pathlib.Path.cwd()
# CHECK_CUDA_DEVICE=cpu rehearses the whole script on the CPU (every "cuda" run then runs on the
# CPU), so that its plumbing is tried before a GPU's scarce minutes are spent on it.
GPU = os.environ.get("CHECK_CUDA_DEVICE", "cuda")
TESTDATA = ROOT / "testdata"
RESULTS = {}


def record(key, value):
    RESULTS[key] = value
    print(f"{key}: {json.dumps(value)}", flush=True)


def on(device):
    """Where a run labelled `device` runs (the CPU in a rehearsal)."""
    return GPU if device == "cuda" else device


def sync():
    if GPU == "cuda":
        torch.cuda.synchronize()


def cuda_libraries():
    """PyTorch's CUDA libraries (nvidia/*/lib of its wheels) for the tools to load."""
    if GPU != "cuda":
        return
    import nvidia
    folders = sorted({os.path.dirname(p) for root in nvidia.__path__ for p in glob.glob(f"{root}/**/lib*.so*", recursive=True)})
    os.environ["LD_LIBRARY_PATH"] = os.pathsep.join(folders + [os.environ.get("LD_LIBRARY_PATH", "")])


def tool(bin_dir, name, *args):
    started = time.perf_counter()
    done = subprocess.run([str(bin_dir / name), *map(str, args)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{name} {' '.join(map(str, args))}: {done.stderr.strip()}")
    return time.perf_counter() - started


def knowledge_rows(path):
    return pq.read_table(path).to_pylist()


def knowledge_difference(ours, reference):
    """Largest |Δ| of top-K logits and log-sum-exp, and the share of equal top-1 ids."""
    logit, lse, same, rows = 0.0, 0.0, 0, 0
    for a, b in zip(knowledge_rows(ours), knowledge_rows(reference)):
        for ia, ib, la, lb, sa, sb in zip(a["topk_ids"], b["topk_ids"], a["topk_logits"], b["topk_logits"],
                                          a["logsumexp"], b["logsumexp"]):
            same += ia[0] == ib[0]
            rows += 1
            logit = max(logit, max(abs(x - y) for x, y in zip(la, lb)))
            lse = max(lse, abs(sa - sb))
    return {"max_topk_logit_diff": logit, "max_logsumexp_diff": lse, "top1_agree": same / max(rows, 1)}


def transformers_knowledge(model_dir, adapter, tokens, k, dtype, out):
    """The knowledge set transformers (+ PEFT) gives on the GPU, in our table's columns."""
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=dtype, attn_implementation="eager").to(GPU).eval()
    if adapter:
        model = PeftModel.from_pretrained(model, adapter).to(GPU).eval()
    rows = []
    for sample in pq.read_table(tokens).to_pylist():
        ids = sample["input_ids"]
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], device=GPU)).logits[0].float()
        positions = list(range(max(sample["answer_start"], 1) - 1, len(ids) - 1))
        top = torch.topk(logits[positions], k, dim=-1)
        rows.append({"topk_ids": top.indices.tolist(), "topk_logits": top.values.tolist(),
                     "logsumexp": torch.logsumexp(logits[positions], dim=-1).tolist()})
    pq.write_table(pa.Table.from_pylist(rows), out)


def adapter_difference(a, b):
    ta, tb = load_file(a), load_file(b)
    return max(float((ta[key] - tb[key]).abs().max()) for key in ta)


def check_tiny_models(bin_dir, out):
    tokens = lambda model: TESTDATA / f"data/tokens/{model}/arc-easy-eval.parquet"
    cases = {"tiny-llama": ("tiny-llama", None), "tiny-llama-lora": ("tiny-llama", "tiny-llama-lora"),
             "tiny-gemma3": ("tiny-gemma3", None)}
    for case, (model, adapter) in cases.items():
        model_dir, data = TESTDATA / "models" / model, tokens(model)
        adapter_flag = ["--adapter", TESTDATA / "models" / adapter] if adapter else []
        files = {}
        for device, dtype in [("cpu", "f32"), ("cuda", "f32"), ("cuda", "bf16")]:
            files[device, dtype] = out / f"{case}-{device}-{dtype}.parquet"
            tool(bin_dir, "infer-logits", "--model", model_dir, *adapter_flag, "--input", data, "--top-k", 4,
                 "--device", on(device), "--dtype", dtype, "--out", files[device, dtype])
        reference = out / f"{case}-transformers.parquet"
        transformers_knowledge(model_dir, adapter and TESTDATA / "models" / adapter, data, 4, torch.float32, reference)
        record(f"{case}: cuda f32 vs cpu f32", knowledge_difference(files["cuda", "f32"], files["cpu", "f32"]))
        record(f"{case}: cuda f32 vs transformers cuda f32", knowledge_difference(files["cuda", "f32"], reference))
        record(f"{case}: cuda bf16 vs cpu f32", knowledge_difference(files["cuda", "bf16"], files["cpu", "f32"]))
    for model in ["tiny-llama", "tiny-gemma3"]:
        adapters = {}
        for device in ["cpu", "cuda"]:
            adapters[device] = out / f"{model}-distill-{device}"
            tool(bin_dir, "distill", "--model", TESTDATA / "models" / model, "--data", tokens(model),
                 "--epochs", 1, "--lr", "1e-3", "--device", on(device), "--out", adapters[device])
        record(f"{model}: LoRA after one epoch, max |cuda - cpu|",
               adapter_difference(*(adapters[d] / "adapter_model.safetensors" for d in ["cuda", "cpu"])))


def check_tiny_round(bin_dir, out):
    reports = {}
    for device in ["cpu", "cuda"]:
        runs = out / f"runs-{device}"
        subprocess.run(["make", "round", "PIPELINE=pipelines/tiny.mk", "ROUND=1", "CARGO=true", f"BIN={bin_dir}",
                        f"DEVICE={on(device)}", "DTYPE=f32", f"RUNS={runs}"], check=True, capture_output=True)
        reports[device] = {(r["method"], r["party"]): r["acc"] for r in pq.read_table(runs / "tiny/report-1.parquet").to_pylist()}
    record("tiny round: accuracies equal on cuda and cpu", reports["cuda"] == reports["cpu"])
    record("tiny round: accuracies", {f"{m} {p}": a for (m, p), a in sorted(reports["cuda"].items())})
    record("tiny round: server adapter max |cuda - cpu|", adapter_difference(
        *(out / f"runs-{d}/tiny/round-1/server/adapter/adapter_model.safetensors" for d in ["cuda", "cpu"])))


SHAPES = {  # name: (config, tokenizer folder whose vocabulary it uses)
    "smollm2-135m": (LlamaConfig(vocab_size=49152, hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                                 num_attention_heads=9, num_key_value_heads=3, tie_word_embeddings=True), "smollm2"),
    "gemma3-270m": (Gemma3TextConfig(vocab_size=262144, hidden_size=640, intermediate_size=2048, num_hidden_layers=18,
                                     num_attention_heads=4, num_key_value_heads=1, head_dim=256), "gemma3"),
    "llama-1b": (LlamaConfig(vocab_size=49152, hidden_size=2048, intermediate_size=5632, num_hidden_layers=22,
                             num_attention_heads=32, num_key_value_heads=4, tie_word_embeddings=False), "smollm2"),
}


def random_model(name, folder, tokenizers):
    config, tokenizer = SHAPES[name]
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.save_pretrained(folder, safe_serialization=True)
    shutil.copy(tokenizers / tokenizer / "tokenizer.json", folder / "tokenizer.json")
    return sum(p.numel() for p in model.parameters())


def matmul_peak():
    n = 8192 if GPU == "cuda" else 512
    a = torch.randn(n, n, device=GPU, dtype=torch.bfloat16)
    for _ in range(3):
        a @ a
    sync()
    started = time.perf_counter()
    for _ in range(20):
        a @ a
    sync()
    return 20 * 2 * n**3 / (time.perf_counter() - started)


def torch_rates(folder, tokens, dtype):
    """PyTorch's forward tokens/s over the samples, and a PEFT LoRA step's mean seconds (batch
    1, AdamW, every sample once; the first step not timed)."""
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(GPU)
    batches = [torch.tensor([s["input_ids"]], device=GPU) for s in pq.read_table(tokens).to_pylist()]
    count = sum(b.numel() for b in batches)
    with torch.no_grad():
        model(batches[0])
        sync()
        started = time.perf_counter()
        for b in batches:
            model(b)
        sync()
    forward = count / (time.perf_counter() - started)
    peft = get_peft_model(model, LoraConfig(r=8, lora_alpha=16, target_modules=["q_proj", "k_proj", "v_proj", "o_proj"]))
    optimiser = torch.optim.AdamW([p for p in peft.parameters() if p.requires_grad], lr=1e-4)
    seconds = []
    for b in batches:
        sync()
        started = time.perf_counter()
        peft(b, labels=b).loss.backward()
        optimiser.step()
        optimiser.zero_grad()
        sync()
        seconds.append(time.perf_counter() - started)
    return forward, sum(seconds[1:]) / len(seconds[1:])


def check_throughput(bin_dir, out, tokenizers, tokens_of):
    peak = matmul_peak()
    record("torch bf16 matmul rate (TFLOP/s)", peak / 1e12)
    for name, (_, tokenizer) in SHAPES.items():
        folder = out / "models" / name
        params = random_model(name, folder, tokenizers)
        tokens = tokens_of[tokenizer]
        count = sum(len(s["input_ids"]) for s in pq.read_table(tokens).to_pylist())
        for dtype, torch_dtype in [("f32", torch.float32), ("bf16", torch.bfloat16)]:
            seconds = tool(bin_dir, "infer-logits", "--model", folder, "--input", tokens, "--top-k", 16, "--all-positions",
                           "--device", GPU, "--dtype", dtype, "--out", out / f"{name}-{dtype}.parquet")
            adapter = out / f"{name}-{dtype}-adapter"
            tool(bin_dir, "distill", "--model", folder, "--data", tokens, "--epochs", 1, "--batch-size", 1,
                 "--device", GPU, "--dtype", dtype, "--out", adapter)
            steps = pq.read_table(adapter / "training_log.parquet").column("seconds").to_pylist()[1:]
            ours_forward, ours_step = count / seconds, sum(steps) / len(steps)
            theirs_forward, theirs_step = torch_rates(folder, tokens, torch_dtype)
            record(f"{name} {dtype}", {
                "params": params, "tokens": count,
                "infer-logits tokens/s (incl. load)": ours_forward, "torch forward tokens/s": theirs_forward,
                "infer-logits / torch": ours_forward / theirs_forward,
                "distill s/step": ours_step, "torch+peft s/step": theirs_step,
                "torch+peft / distill (speed ratio)": theirs_step / ours_step,
                "infer-logits share of bf16 matmul rate": 2 * params * ours_forward / peak,
            })


def main(bin_dir, out, bundle=None):
    bin_dir, out = pathlib.Path(bin_dir).resolve(), pathlib.Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    cuda_libraries()
    record("gpu", torch.cuda.get_device_name(0) if GPU == "cuda" else "none: a rehearsal on the CPU")
    try:
        check_tiny_models(bin_dir, out)
        check_tiny_round(bin_dir, out)
        if bundle:
            bundle = pathlib.Path(bundle).resolve()
            check_throughput(bin_dir, out, bundle, {t: bundle / t / "public.parquet" for t in ["smollm2", "gemma3"]})
    finally:
        (out / "check-cuda.json").write_text(json.dumps(RESULTS, indent=2) + "\n")


if __name__ == "__main__":
    main(*sys.argv[1:])
