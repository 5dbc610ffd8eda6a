"""Reference for brainmesh's GPT-2 path: transformers' GPT2LMHeadModel on an HF directory.

Usage: ref_gpt2.py REQUEST.json OUT.safetensors

REQUEST.json: {"dir": path, "threads": n, "prompts": [{"ids": [...], "greedy_new_tokens": n}],
               "texts": ["..."]}
Writes logits_i [T, V] float32, greedy_i [n] int64, tok_j int64 (tokenizer.json ids of texts[j]).
"""
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import GPT2LMHeadModel, PreTrainedTokenizerFast


def main() -> None:
    req = json.load(open(sys.argv[1]))
    torch.set_num_threads(int(req.get("threads", 2)))
    d = req["dir"]
    model = GPT2LMHeadModel.from_pretrained(d, dtype=torch.float32)
    model.eval()
    tok = PreTrainedTokenizerFast(tokenizer_file=f"{d}/tokenizer.json")
    out = {}
    with torch.no_grad():
        for i, p in enumerate(req.get("prompts", [])):
            ids = torch.tensor([p["ids"]], dtype=torch.long)
            out[f"logits_{i}"] = model(ids).logits[0].float().contiguous()
            n = int(p.get("greedy_new_tokens", 0))
            if n > 0:
                g = model.generate(ids, attention_mask=torch.ones_like(ids), max_new_tokens=n,
                                   do_sample=False, eos_token_id=None, pad_token_id=0)
                out[f"greedy_{i}"] = g[0, ids.shape[1]:].contiguous()
        for j, t in enumerate(req.get("texts", [])):
            out[f"tok_{j}"] = torch.tensor(tok.encode(t, add_special_tokens=False), dtype=torch.long)
    save_file(out, sys.argv[2])


if __name__ == "__main__":
    main()
