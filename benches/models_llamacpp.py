"""llama.cpp (llama-cpp-python) on the same GGUF and prompt ids: prefill tok/s, decode tok/s,
peak RSS. Prints one JSON object. Needs the bench venv made by `models_compare.sh --setup`.

Usage: models_llamacpp.py GGUF PROMPT_IDS_JSON THREADS NEW_TOKENS [REPS]
"""
import json
import resource
import statistics
import sys
import time

import numpy as np
import llama_cpp
from llama_cpp import Llama


def last_logits(llm):
    """The logits of the last evaluated position, straight from the llama.cpp context."""
    return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))


def main() -> None:
    gguf, ids_json, threads, n_new = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    reps = int(sys.argv[5]) if len(sys.argv) > 5 else 3
    t0 = time.perf_counter()
    llm = Llama(model_path=gguf, n_ctx=512, n_threads=threads, n_threads_batch=threads, n_batch=512, verbose=False)
    load_s = time.perf_counter() - t0
    ids = json.loads(open(ids_json).read())
    prefill, decode = [], []
    for _ in range(reps):
        llm.reset()
        t = time.perf_counter()
        llm.eval(ids)
        prefill.append(time.perf_counter() - t)
        t = time.perf_counter()
        for _ in range(n_new):
            # Greedy from the last position's logits (`Llama.sample` crashes in 0.3.36 without a
            # sampler chain; argmax is what greedy decoding is). Read them from the context:
            # without `logits_all`, `llm.scores` stays at zero and argmax would be token 0.
            tok = int(np.argmax(last_logits(llm)))
            llm.eval([tok])
        decode.append(n_new / (time.perf_counter() - t))
    print(json.dumps({
        "engine": "llama.cpp",
        "threads": threads,
        "load_s": load_s,
        "prompt_tokens": len(ids),
        "new_tokens": n_new,
        "prefill_tok_s": len(ids) / statistics.median(prefill),
        "decode_tok_s": statistics.median(decode),
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "note": "llama.cpp computes on the Q4_1/Q8_0 weights directly (no dequantization to f32)",
    }))


if __name__ == "__main__":
    main()
