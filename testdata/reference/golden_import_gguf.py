"""Golden outputs of `import-gguf` on the tiny GGUF models, computed with the `gguf` package.

For each tiny model: every tensor dequantised by gguf-py's numpy kernels, renamed to Hugging
Face's names, llama Q/K rows un-permuted (inverse of convert_hf_to_gguf.py's LlamaModel.permute)
and Gemma norm weights shifted back by -1, saved as model.safetensors (f32). For the
SentencePiece tokenizer, the merges `transformers`' converter would build from pieces and
scores (user-defined pieces: '▁' restored, score 0), saved as merges.json.
"""
import json
import pathlib

import numpy as np
from gguf import GGUFReader
from gguf.quants import dequantize
from safetensors.numpy import save_file

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "golden" / "import-gguf"

LAYER_NAMES = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj", "attn_q_norm": "self_attn.q_norm",
    "attn_k_norm": "self_attn.k_norm", "post_attention_norm": "post_attention_layernorm",
    "post_ffw_norm": "post_feedforward_layernorm",
}


def field(reader, key):
    f = reader.fields[key]
    return f.contents()


def hf_name(arch, name):
    fixed = {"token_embd.weight": "model.embed_tokens.weight", "output_norm.weight": "model.norm.weight", "output.weight": "lm_head.weight"}
    if name in fixed:
        return fixed[name]
    _, layer, part, _ = name.split(".")
    if part == "ffn_norm":
        module = "post_attention_layernorm" if arch == "llama" else "pre_feedforward_layernorm"
    else:
        module = LAYER_NAMES[part]
    return f"model.layers.{layer}.{module}.weight"


def unpermute(w, n_head):
    rows = w.shape[0]
    return w.reshape(n_head, rows // n_head // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def spm_merges(tokens, scores, types):
    tokens = [t.replace(" ", "\u2581") if ty == 4 else t for t, ty in zip(tokens, types)]
    scores = [0.0 if ty == 4 else s for s, ty in zip(scores, types)]
    vocab = {t: i for i, t in enumerate(tokens)}
    merges = []
    for i, piece in enumerate(tokens):
        local = [(piece[:k], piece[k:], scores[i]) for k in range(1, len(piece)) if piece[:k] in vocab and piece[k:] in vocab]
        merges.extend(sorted(local, key=lambda x: (vocab[x[0]], vocab[x[1]])))
    merges.sort(key=lambda v: (v[2], len(v[0]), len(v[1])), reverse=True)
    return [[l, r] for l, r, _ in merges]


def main():
    for model in ["tiny-llama", "tiny-gemma3"]:
        reader = GGUFReader(ROOT / "models" / f"{model}.gguf")
        arch = field(reader, "general.architecture")
        tensors = {}
        for t in reader.tensors:
            w = dequantize(t.data, t.tensor_type).astype(np.float32).reshape([int(d) for d in reversed(t.shape)])
            if arch == "llama" and t.name.endswith("attn_q.weight"):
                w = unpermute(w, field(reader, "llama.attention.head_count"))
            if arch == "llama" and t.name.endswith("attn_k.weight"):
                w = unpermute(w, field(reader, "llama.attention.head_count_kv"))
            if arch == "gemma3" and t.name.endswith("norm.weight"):
                w = w - np.float32(1.0)
            tensors[hf_name(arch, t.name)] = np.ascontiguousarray(w)
        out = OUT / model
        out.mkdir(parents=True, exist_ok=True)
        save_file(tensors, out / "model.safetensors", metadata={"format": "pt"})
        if field(reader, "tokenizer.ggml.model") == "llama":
            merges = spm_merges(field(reader, "tokenizer.ggml.tokens"), field(reader, "tokenizer.ggml.scores"), field(reader, "tokenizer.ggml.token_type"))
            (out / "merges.json").write_text(json.dumps(merges, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
