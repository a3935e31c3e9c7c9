"""Tiny random models of the families without a tiny GGUF, written by transformers, run by hand.

Each from a seeded config (2 layers, hidden 64, the vocabulary of testdata/models/tiny-llama,
whose tokenizer it gets), every parameter perturbed from transformers' initialisation (norm
weights of 1 and zero biases would hide a wrong formula), saved in float32 to
testdata/models/tiny-<family>/. Then golden_models.py computes their reference logits.

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

# name: (config class, settings beyond SHAPE). Each one exercises what its family adds.
FAMILIES = {
    # A window of 8, shorter than the fixture texts, so that the window matters.
    "tiny-mistral": (transformers.MistralConfig, dict(num_key_value_heads=2, head_dim=16, sliding_window=8,
                                                      rope_theta=10_000.0, tie_word_embeddings=False)),
    # Tied embeddings, biases on q/k/v.
    "tiny-qwen2": (transformers.Qwen2Config, dict(num_key_value_heads=2, rope_theta=10_000.0,
                                                  tie_word_embeddings=True, use_sliding_window=False)),
    # head_dim 32 ≠ hidden / heads (as Qwen3's real models), q/k norms.
    "tiny-qwen3": (transformers.Qwen3Config, dict(num_key_value_heads=2, head_dim=32, rope_theta=10_000.0,
                                                  tie_word_embeddings=False, use_sliding_window=False)),
}


def write(name, config_class, settings, seed):
    torch.manual_seed(seed)
    config = config_class(**SHAPE, **settings)
    model = transformers.AutoModelForCausalLM.from_config(config, torch_dtype=torch.float32)
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
