"""Exports the SmolLM2 GGUF as a Hugging Face Llama directory with transformers itself
(config.json + model.safetensors + tokenizer.json), so brainmesh's HF loader can be checked
against its GGUF loader on the same weights.

Usage: export_hf_llama.py REQUEST.json OUT.safetensors
REQUEST.json: {"gguf": path, "dir": output directory, "ids": [...]}
Writes logits [T, V] float32 of the exported model reloaded from the directory.
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    req = json.load(open(sys.argv[1]))
    torch.set_num_threads(2)
    d, name = os.path.dirname(os.path.abspath(req["gguf"])), os.path.basename(req["gguf"])
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    # A GGUF-loaded model refuses save_pretrained; rebuild a plain one with the same weights.
    cfg = model.config.to_dict()
    cfg.pop("quantization_config", None)
    plain = AutoModelForCausalLM.from_config(type(model.config).from_dict(cfg), dtype=torch.float32)
    plain.load_state_dict(model.state_dict())
    plain.save_pretrained(req["dir"])
    del plain
    tok.save_pretrained(req["dir"])
    del model
    reloaded = AutoModelForCausalLM.from_pretrained(req["dir"], dtype=torch.float32).eval()
    with torch.no_grad():
        logits = reloaded(torch.tensor([req["ids"]])).logits[0].contiguous()
    save_file({"logits": logits}, sys.argv[2])


if __name__ == "__main__":
    main()
