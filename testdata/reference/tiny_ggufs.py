"""GGUF files of the tiny GPT-2, Bloom, Qwen2 and Qwen3 models, written by llama.cpp's own converter.

`import-gguf` must undo what llama.cpp's `convert_hf_to_gguf.py` does to each family (GPT-2's
Conv1D weights transposed, Bloom's per-head Q/K/V regrouped, Qwen's biases and q/k norms), so
the reference is that converter itself, not our reading of it: the one vendored in
llama-cpp-python 0.3.36's source distribution (downloaded from PyPI, checked by its sha256),
run on the transformers-written folders testdata/models/tiny-<family>/ (tiny_families.py)
with --outtype f16. tests/import_gguf.rs then imports each file and compares every tensor with
the folder it came from.

Two things are set by hand, both as a user converting these folders would have to:
- the pre-tokenizer: llama.cpp recognises a tokenizer by hashing its encoding of a test text,
  and ours (tiny-llama's, trained here) is unknown to it; it is SmolLM2's kind (digits split,
  then GPT-2's regex), so the converter is told `smollm`;
- GPT-2's `n_ctx`, which the converter reads and transformers 5 no longer writes
  (`n_positions` has the same value).

Requirements: testdata/reference/requirements-models.txt (torch, transformers, sentencepiece).
"""
import hashlib
import json
import pathlib
import shutil
import sys
import tarfile
import tempfile
import urllib.request

ROOT = pathlib.Path(__file__).resolve().parent.parent
SDIST = ("https://files.pythonhosted.org/packages/ec/e9/e7de2b0463ea3ffbf0ede6cb21b58c1258a8f6521aae45ca773a59fe"
         "7cf3/llama_cpp_python-0.3.36.tar.gz")
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
FAMILIES = ["tiny-gpt2", "tiny-bloom", "tiny-qwen2", "tiny-qwen3"]


def llama_cpp_converter(workdir):
    """Extract convert_hf_to_gguf.py, its conversion/ package and gguf-py from the sdist."""
    archive = workdir / "sdist.tar.gz"
    with urllib.request.urlopen(SDIST) as response:
        archive.write_bytes(response.read())
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    if digest != SDIST_SHA256:
        sys.exit(f"{SDIST}: sha256 {digest}, expected {SDIST_SHA256}")
    prefix = "llama_cpp_python-0.3.36/vendor/llama.cpp/"
    wanted = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/")
    with tarfile.open(archive) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(tuple(prefix + w for w in wanted))]
        tar.extractall(workdir, members=members, filter="data")
    return workdir / prefix


def folder_to_convert(family, workdir):
    """A copy of the model folder, with GPT-2's n_ctx added."""
    folder = workdir / family
    shutil.copytree(ROOT / "models" / family, folder)
    config = json.loads((folder / "config.json").read_text())
    if config["model_type"] == "gpt2":
        config.setdefault("n_ctx", config["n_positions"])
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    return folder


def main():
    workdir = pathlib.Path(tempfile.mkdtemp())
    llama_cpp = llama_cpp_converter(workdir)
    sys.path[:0] = [str(llama_cpp), str(llama_cpp / "gguf-py")]
    import conversion.base
    import convert_hf_to_gguf
    conversion.base.TextModel.get_vocab_base_pre = lambda self, tokenizer: "smollm"
    for family in FAMILIES:
        out = ROOT / "models" / f"{family}.gguf"
        sys.argv = ["convert_hf_to_gguf.py", str(folder_to_convert(family, workdir)), "--outfile", str(out),
                    "--outtype", "f16"]
        convert_hf_to_gguf.main()
        print(f"{out.relative_to(ROOT.parent)}: {out.stat().st_size} bytes")
    shutil.rmtree(workdir)


if __name__ == "__main__":
    main()
