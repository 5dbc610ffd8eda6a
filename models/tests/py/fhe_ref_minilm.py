"""Reference sentence embeddings for models/tests/fhe_embed.rs: all-MiniLM-L6-v2 with
transformers (BertModel), mean pooling over the attention mask, L2 normalisation — what
sentence-transformers does for this model.

usage: fhe_ref_minilm.py REQUEST.json OUT.safetensors   (request: {"model_dir", "texts"})
"""
import json
import sys

import torch
from safetensors.torch import save_file
from transformers import AutoTokenizer, BertModel

req = json.load(open(sys.argv[1]))
torch.set_num_threads(2)
tok = AutoTokenizer.from_pretrained(req["model_dir"])
model = BertModel.from_pretrained(req["model_dir"]).eval()
with torch.no_grad():
    enc = tok(req["texts"], padding=True, truncation=True, max_length=128, return_tensors="pt")
    out = model(**enc).last_hidden_state
    mask = enc["attention_mask"].unsqueeze(-1).float()
    pooled = (out * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
    emb = torch.nn.functional.normalize(pooled, p=2, dim=1)
save_file({"embeddings": emb.contiguous()}, sys.argv[2])
