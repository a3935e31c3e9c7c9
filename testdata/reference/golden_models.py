"""Golden logits of the tiny models from Hugging Face transformers (+ PEFT), run by hand.

`golden_models.py [NAME ...]` (default: all). For each tiny model folder (written by
`import-gguf` from testdata/models/*.gguf, or by tiny_families.py):
- a PEFT LoRA adapter with random, non-zero A and B (seeded), saved to testdata/models/<m>-lora/;
- the token ids of a right-padded batch of fixture texts and, for every sequence, the logits
  at every real position without and with the adapter, saved to
  testdata/golden/models/<m>.safetensors (ids, lengths, logits, logits_lora).

`golden_models.py --ours [NAME ...]`: adapters written by our `distill` (testdata/models/
<m>-ours/, see `make testdata`) loaded by PEFT, and its logits of the same batch saved to
testdata/golden/models/<m>-ours.safetensors (logits): PEFT reads our adapters as we do.

Requirements: testdata/reference/requirements-models.txt (torch, transformers, peft).
"""
import json
import pathlib
import sys

import pyarrow.parquet as pq
import torch
from peft import LoraConfig, PeftModel, get_peft_model
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "golden" / "models"
N_TEXTS = 3
# Adapted modules per model: an attention projection of each kind and an MLP one, in the
# family's own names.
LLAMA_TARGETS = ["q_proj", "v_proj", "down_proj"]
TARGETS = {"tiny-llama": LLAMA_TARGETS, "tiny-gemma3": LLAMA_TARGETS}
# Models added later reseed before their adapter, so that regenerating one leaves the others.
RESEEDED = {"tiny-mistral": LLAMA_TARGETS, "tiny-qwen2": LLAMA_TARGETS, "tiny-qwen3": LLAMA_TARGETS,
            "tiny-gpt2": ["c_attn", "c_proj", "c_fc"], "tiny-opt": ["q_proj", "v_proj", "out_proj", "fc2"],
            "tiny-opt-350m": ["q_proj", "v_proj", "out_proj", "fc2"],
            "tiny-bloom": ["query_key_value", "dense", "dense_4h_to_h"]}


def texts():
    rows = pq.read_table(ROOT / "data" / "tasks" / "arc-easy" / "eval.parquet").to_pylist()
    return [r["context"] + r["target"] for r in rows[:N_TEXTS]]


def load(folder):
    return AutoModelForCausalLM.from_pretrained(folder, torch_dtype=torch.float32, attn_implementation="eager").eval()


def ours_in_peft(names):
    for name in names or {**TARGETS, **RESEEDED}:
        golden = load_file(OUT / f"{name}.safetensors")
        ids, lengths = golden["ids"], golden["lengths"]
        mask = torch.tensor([[1] * n + [0] * (ids.shape[1] - n) for n in lengths.tolist()])
        model = PeftModel.from_pretrained(load(ROOT / "models" / name), ROOT / "models" / f"{name}-ours").eval()
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        save_file({"logits": logits.contiguous()}, OUT / f"{name}-ours.safetensors")
        print(name, "-ours: max |logit|", float(logits.abs().max()))


def main(names):
    torch.manual_seed(0)
    OUT.mkdir(parents=True, exist_ok=True)
    for index, (name, targets) in enumerate({**TARGETS, **RESEEDED}.items()):
        if name in RESEEDED:
            torch.manual_seed(1000 + index)
        if names and name not in names:
            continue
        folder = ROOT / "models" / name
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(folder / "tokenizer.json"))
        encoded = [tokenizer(t)["input_ids"] for t in texts()]
        lengths = [len(e) for e in encoded]
        width = max(lengths)
        ids = torch.tensor([e + [0] * (width - len(e)) for e in encoded])
        mask = torch.tensor([[1] * n + [0] * (width - n) for n in lengths])
        model = load(folder)
        with torch.no_grad():
            logits = model(input_ids=ids, attention_mask=mask).logits
        config = LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0, target_modules=targets,
                            init_lora_weights=False, task_type="CAUSAL_LM")
        peft_model = get_peft_model(model, config).eval()
        with torch.no_grad():
            logits_lora = peft_model(input_ids=ids, attention_mask=mask).logits
        adapter = ROOT / "models" / f"{name}-lora"
        peft_model.save_pretrained(adapter)
        (adapter / "README.md").unlink()
        adapter_config = json.loads((adapter / "adapter_config.json").read_text())
        adapter_config["base_model_name_or_path"] = name
        (adapter / "adapter_config.json").write_text(json.dumps(adapter_config, indent=2, sort_keys=True) + "\n")
        save_file({"ids": ids.to(torch.int64), "lengths": torch.tensor(lengths), "logits": logits.contiguous(),
                   "logits_lora": logits_lora.contiguous()}, OUT / f"{name}.safetensors")
        print(name, "lengths", lengths, "max |logit|", float(logits.abs().max()))


if __name__ == "__main__":
    if sys.argv[1:2] == ["--ours"]:
        ours_in_peft(sys.argv[2:])
    else:
        main(sys.argv[1:])
