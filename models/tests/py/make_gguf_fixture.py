"""Writes a small GGUF with one tensor of each type brainmesh dequantizes, using the `gguf`
package (llama.cpp's own Python writer and quantizers), plus the package's own dequantization
of each tensor as the reference.

Usage: make_gguf_fixture.py REQUEST.json OUT.safetensors
REQUEST.json: {"gguf_out": path, "arch": "mamba", "seed": 0}
Writes ref_<TYPE> float32 tensors (the gguf package's dequantized values, PyTorch shape).
"""
import json
import sys

import numpy as np
import torch
from gguf import GGUFWriter, GGMLQuantizationType as Q
from gguf.quants import dequantize, quantize
from safetensors.torch import save_file


def main() -> None:
    req = json.load(open(sys.argv[1]))
    rng = np.random.default_rng(int(req.get("seed", 0)))
    w = GGUFWriter(req["gguf_out"], req.get("arch", "mamba"))
    w.add_block_count(1)
    refs = {}
    for qt in [Q.F32, Q.F16, Q.BF16, Q.Q8_0, Q.Q4_0, Q.Q4_1]:
        x = (rng.standard_normal((6, 64)) * rng.uniform(0.1, 3.0)).astype(np.float32)
        if qt == Q.F32:
            data = x
        elif qt == Q.F16:
            data = x.astype(np.float16)
        else:
            data = quantize(x, qt)
        w.add_tensor(f"t.{qt.name}", data, raw_dtype=qt)
        refs[f"ref_{qt.name}"] = torch.from_numpy(
            np.ascontiguousarray(dequantize(data if qt != Q.F16 else data.view(np.uint8), qt).reshape(6, 64).astype(np.float32))
        )
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    save_file(refs, sys.argv[2])


if __name__ == "__main__":
    main()
