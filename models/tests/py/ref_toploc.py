"""Interoperability of brainmesh's proofs of inference with the reference `toploc` 0.1.6.

Usage: ref_toploc.py REQUEST.json OUT.safetensors

REQUEST.json: {"gguf": path, "threads": n, "acts": path to a safetensors file with act_0 (the
prefill's last hidden states [P, H], bf16) and act_1..act_n ([1, H] per decode step), "proofs":
[hex of each brainmesh proof], "prompt_ids": [...], "output_ids": [...], "decode_batch": 32,
"topk": 128}

Writes:
- rebuilt [n_proofs] int64: 1 where toploc.build_proofs_bytes on brainmesh's activations gives
  the same bytes as brainmesh's proof, else 0;
- self_check [n_proofs, 3] float64: toploc's verifier on brainmesh's own activations against
  brainmesh's proofs (exp_mismatches, mant_err_mean, mant_err_median);
- hf_check [n_proofs, 3] float64: toploc's verifier on activations recomputed independently by
  Hugging Face transformers (one forward pass over prompt + output on the same GGUF file,
  last_hidden_state after the final norm, cast to bf16) against brainmesh's proofs.
"""
import json
import os
import sys

import torch
from safetensors.torch import load_file, save_file
from transformers import AutoModelForCausalLM

import toploc
from toploc.poly import build_proofs_bytes, verify_proofs_bytes


def rows(results):
    return torch.tensor(
        [[r.exp_mismatches, r.mant_err_mean, r.mant_err_median] for r in results], dtype=torch.float64
    )


def main() -> None:
    req = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    assert toploc.__version__ == "0.1.6", toploc.__version__
    torch.set_num_threads(int(req.get("threads", 2)))
    k, batch = int(req.get("topk", 128)), int(req.get("decode_batch", 32))
    loaded = load_file(req["acts"])
    acts = [loaded[f"act_{i}"] for i in range(len(loaded))]
    ours = [bytes.fromhex(h) for h in req["proofs"]]

    theirs = build_proofs_bytes(acts, decode_batching_size=batch, topk=k)
    rebuilt = torch.tensor([int(a == b) for a, b in zip(ours, theirs)] + [0] * abs(len(ours) - len(theirs)))

    self_check = rows(verify_proofs_bytes(acts, ours, decode_batching_size=batch, topk=k))

    gguf = req["gguf"]
    d, name = os.path.dirname(os.path.abspath(gguf)), os.path.basename(gguf)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    prompt, output = req["prompt_ids"], req["output_ids"]
    ids = torch.tensor([prompt + output[:-1]], dtype=torch.long)
    with torch.no_grad():
        hidden = model.model(ids).last_hidden_state[0].to(torch.bfloat16)
    p = len(prompt)
    hf_acts = [hidden[:p]] + [hidden[p + i : p + i + 1] for i in range(len(output) - 1)]
    hf_check = rows(verify_proofs_bytes(hf_acts, ours, decode_batching_size=batch, topk=k))

    save_file({"rebuilt": rebuilt, "self_check": self_check, "hf_check": hf_check}, out)


if __name__ == "__main__":
    main()
