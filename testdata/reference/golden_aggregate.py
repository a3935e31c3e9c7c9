"""Golden output of `aggregate average` (FedAvg of LoRA adapters), computed with Python's
standard library alone: each adapter's safetensors file read by hand (an 8-byte little-endian
header length, the JSON header, raw little-endian f32), every tensor averaged with weights 1
and 3 in float64, Σ wᵢ·θᵢ / Σ wᵢ, then rounded to f32.

Inputs, in testdata/golden/aggregate/ (made once by `distill` from the tiny Llama with seeds 1
and 2, lora r 4, and committed): adapter-1/, adapter-2/. Output: expected.json.
"""
import json
import pathlib
import struct

HERE = pathlib.Path(__file__).resolve().parent.parent / "golden" / "aggregate"
WEIGHTS = [1.0, 3.0]


def tensors(folder):
    data = (folder / "adapter_model.safetensors").read_bytes()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", info
        start, end = info["data_offsets"]
        out[name] = list(struct.unpack(f"<{(end - start) // 4}f", body[start:end]))
    return out


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def main():
    adapters = [tensors(HERE / f"adapter-{k}") for k in (1, 2)]
    total = sum(WEIGHTS)
    average = {name: [f32(sum(w * a[name][i] for w, a in zip(WEIGHTS, adapters)) / total)
                      for i in range(len(adapters[0][name]))]
               for name in sorted(adapters[0])}
    (HERE / "expected.json").write_text(json.dumps({"weights": WEIGHTS, "tensors": average}) + "\n")


if __name__ == "__main__":
    main()
