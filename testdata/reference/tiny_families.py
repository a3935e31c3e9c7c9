"""Tiny random models of the families without a tiny GGUF, written by transformers, run by hand.

Each from a seeded config (2 layers, hidden 64, the vocabulary of testdata/models/tiny-llama,
whose tokenizer it gets), every parameter perturbed from transformers' initialisation (norm
weights of 1 and zero biases would hide a wrong formula), saved in float32 to
testdata/models/tiny-<family>/. Then golden_models.py computes their reference logits.
GPT-2, OPT (both layer-norm placements; the post-LN one with OPT-350m's project_in/out) and
Bloom are the paper's client families (gpt2.rs, opt.rs, bloom.rs in tools/fedmkt/src/model/).

Requirements: testdata/reference/requirements-models.txt (torch, transformers).
"""
import pathlib
import shutil
import sys

import torch
import transformers

ROOT = pathlib.Path(__file__).resolve().parent.parent
TOKENIZER_FROM = ROOT / "models" / "tiny-llama"
SHAPE = dict(vocab_size=1024, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
             max_position_embeddings=256, initializer_range=0.1)
# The same size in the names of the families that predate llama's config.
GPT2_SHAPE = dict(vocab_size=1024, n_embd=64, n_inner=128, n_layer=2, n_head=4, n_positions=256, initializer_range=0.1)
OPT_SHAPE = dict(vocab_size=1024, hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
                 max_position_embeddings=256, init_std=0.1, pad_token_id=1)
BLOOM_SHAPE = dict(vocab_size=1024, hidden_size=64, n_layer=2, n_head=4, initializer_range=0.1)

# name: (config class, its settings). Each one exercises what its family adds.
FAMILIES = {
    # A window of 8, shorter than the fixture texts, so that the window matters.
    "tiny-mistral": (transformers.MistralConfig, dict(SHAPE, num_key_value_heads=2, head_dim=16, sliding_window=8,
                                                      rope_theta=10_000.0, tie_word_embeddings=False)),
    # Tied embeddings, biases on q/k/v.
    "tiny-qwen2": (transformers.Qwen2Config, dict(SHAPE, num_key_value_heads=2, rope_theta=10_000.0,
                                                  tie_word_embeddings=True, use_sliding_window=False)),
    # head_dim 32 ≠ hidden / heads (as Qwen3's real models), q/k norms.
    "tiny-qwen3": (transformers.Qwen3Config, dict(SHAPE, num_key_value_heads=2, head_dim=32, rope_theta=10_000.0,
                                                  tie_word_embeddings=False, use_sliding_window=False)),
    # Learned positions, LayerNorm with bias, gelu_new, fused c_attn in Conv1D layout, tied head.
    "tiny-gpt2": (transformers.GPT2Config, dict(GPT2_SHAPE, activation_function="gelu_new", bos_token_id=0, eos_token_id=0)),
    # Pre-LayerNorm (OPT-125m, 1.3B…), positions offset by 2, ReLU.
    "tiny-opt": (transformers.OPTConfig, dict(OPT_SHAPE, do_layer_norm_before=True, word_embed_proj_dim=64)),
    # Post-LayerNorm with project_in/project_out (OPT-350m's variant).
    "tiny-opt-350m": (transformers.OPTConfig, dict(OPT_SHAPE, do_layer_norm_before=False, word_embed_proj_dim=32)),
    # ALiBi, the embedding LayerNorm, fused query_key_value interleaved per head.
    "tiny-bloom": (transformers.BloomConfig, dict(BLOOM_SHAPE)),
}


def write(name, config_class, settings, seed):
    torch.manual_seed(seed)
    config = config_class(**settings)
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    folder = ROOT / "models" / name
    shutil.rmtree(folder, ignore_errors=True)
    model.save_pretrained(folder, safe_serialization=True)
    (folder / "generation_config.json").unlink(missing_ok=True)
    for file in ["tokenizer.json", "tokenizer_config.json"]:
        shutil.copyfile(TOKENIZER_FROM / file, folder / file)
    print(name, sum(p.numel() for p in model.parameters()), "parameters ->", folder)


def main(names):
    for seed, (name, (config_class, settings)) in enumerate(FAMILIES.items()):
        if not names or name in names:
            write(name, config_class, settings, seed)


if __name__ == "__main__":
    main(sys.argv[1:])
