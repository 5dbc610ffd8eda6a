"""Reference for brainmesh's GGUF Llama path: Hugging Face transformers on the same GGUF file.

Usage: ref_llama_gguf.py REQUEST.json OUT.safetensors

REQUEST.json: {"gguf": path, "threads": n, "prompts": [{"ids": [...], "greedy_new_tokens": n}],
               "texts": ["..."], "chats": ["user message"]}
Writes, for prompt i: logits_i [T, V] float32 (every position), greedy_i [n] int64 (new tokens
from model.generate, greedy), tok_j int64 = the HF tokenizer's ids for texts[j], chat_j int64 = ids of
chats[j] rendered by the GGUF's chat template (apply_chat_template, generation prompt added).
"""
import json
import os
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoModelForCausalLM, AutoTokenizer


def main() -> None:
    req = json.load(open(sys.argv[1]))
    out = sys.argv[2]
    torch.set_num_threads(int(req.get("threads", 2)))
    gguf = req["gguf"]
    d, name = os.path.dirname(os.path.abspath(gguf)), os.path.basename(gguf)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32)
    model.eval()
    tok = AutoTokenizer.from_pretrained(d, gguf_file=name)
    tensors = {}
    with torch.no_grad():
        for i, p in enumerate(req.get("prompts", [])):
            ids = torch.tensor([p["ids"]], dtype=torch.long)
            logits = model(ids).logits[0].float().contiguous()
            tensors[f"logits_{i}"] = logits
            n = int(p.get("greedy_new_tokens", 0))
            if n > 0:
                g = model.generate(
                    ids,
                    attention_mask=torch.ones_like(ids),
                    max_new_tokens=n,
                    do_sample=False,
                    eos_token_id=None,
                    pad_token_id=tok.eos_token_id,
                )
                tensors[f"greedy_{i}"] = g[0, ids.shape[1]:].contiguous()
        for j, t in enumerate(req.get("texts", [])):
            tensors[f"tok_{j}"] = torch.tensor(tok.encode(t, add_special_tokens=False), dtype=torch.long)
        for j, q in enumerate(req.get("chats", [])):
            text = tok.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True, tokenize=False)
            tensors[f"chat_{j}"] = torch.tensor(tok.encode(text, add_special_tokens=False), dtype=torch.long)
    save_file(tensors, out)


if __name__ == "__main__":
    main()
