"""Hugging Face transformers (PyTorch eager, fp32, CPU) on the same GGUF and prompt ids as
brainmesh's bench_generate: prefill tok/s, decode tok/s, peak RSS. Prints one JSON object.

Usage: models_hf.py GGUF PROMPT_IDS_JSON THREADS NEW_TOKENS [REPS]
"""
import json
import os
import resource
import statistics
import sys
import time

import torch
from transformers import AutoModelForCausalLM
from transformers.generation.streamers import BaseStreamer


class Clock(BaseStreamer):
    def __init__(self):
        self.times = []
        self.calls = 0

    def put(self, value):
        self.calls += 1
        if self.calls > 1:  # the first call carries the prompt
            self.times.append(time.perf_counter())

    def end(self):
        pass


def main() -> None:
    gguf, ids_json, threads, n_new = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    d, name = os.path.dirname(os.path.abspath(gguf)), os.path.basename(gguf)
    model = AutoModelForCausalLM.from_pretrained(d, gguf_file=name, dtype=torch.float32).eval()
    load_s = time.perf_counter() - t0
    ids = torch.tensor([json.loads(open(ids_json).read())], dtype=torch.long)
    mask = torch.ones_like(ids)
    kw = dict(attention_mask=mask, do_sample=False, eos_token_id=None, pad_token_id=0)
    with torch.inference_mode():
        model.generate(ids, max_new_tokens=2, **kw)  # warm-up
        prefill = []
        for _ in range(reps):
            t = time.perf_counter()
            model.generate(ids, max_new_tokens=1, **kw)
            prefill.append(time.perf_counter() - t)
        decode = []
        for _ in range(reps):
            c = Clock()
            model.generate(ids, max_new_tokens=n_new + 1, min_new_tokens=n_new + 1, streamer=c, **kw)
            decode.append(n_new / (c.times[-1] - c.times[0]))
    print(json.dumps({
        "engine": "transformers",
        "threads": threads,
        "load_s": load_s,
        "prompt_tokens": ids.shape[1],
        "new_tokens": n_new,
        "prefill_tok_s": ids.shape[1] / statistics.median(prefill),
        "decode_tok_s": statistics.median(decode),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }))


if __name__ == "__main__":
    main()
