"""llama.cpp on an obfuscated GGUF: greedy tokens of the obfuscated copy against the original
(f32 and the original's own Q4_1), on 20 prompts, and the largest logit difference of the
prompts' last positions. Usage: obfuscate_llamacpp.py ORIGINAL.gguf OBFUSCATED.gguf [threads]"""
import json
import sys

import numpy as np
from llama_cpp import Llama

PROMPTS = [
    "Once upon a time, there was a little girl who", "The capital of France is", "def fibonacci(n):",
    "The three primary colours are", "In 1969, the first man on the moon", "A recipe for pancakes: first,",
    "The quick brown fox", "Water boils at", "My favourite video game is", "The knight drew his sword and",
    "Photosynthesis is the process", "To be or not to be,", "The stock market today", "Dear diary, today I",
    "The best way to learn programming is", "In the middle of the forest stood", "Rain fell on the city as",
    "The spaceship landed on", "Ten reasons to visit Italy: 1.", "She opened the old box and found",
]


def run(path, threads, n=16):
    # logits_all: without it llama-cpp-python 0.3 leaves `scores` at zero after `eval`.
    llm = Llama(model_path=path, n_ctx=256, n_threads=threads, n_threads_batch=threads, logits_all=True, verbose=False)
    out = []
    for p in PROMPTS:
        llm.reset()
        ids = llm.tokenize(p.encode(), add_bos=False, special=True)
        llm.eval(ids)
        last = np.array(llm.scores[llm.n_tokens - 1], dtype=np.float64)
        toks = []
        for _ in range(n):
            t = int(np.argmax(llm.scores[llm.n_tokens - 1]))
            toks.append(t)
            llm.eval([t])
        out.append((toks, last))
    return out


def main():
    orig, obf = sys.argv[1], sys.argv[2]
    threads = int(sys.argv[3]) if len(sys.argv) > 3 else 2
    a, b = run(orig, threads), run(obf, threads)
    if not any(np.any(x[1]) for x in a):
        sys.exit("llama.cpp returned no logits")
    same = sum(x[0] == y[0] for x, y in zip(a, b))
    diff = max(float(np.max(np.abs(x[1] - y[1]))) for x, y in zip(a, b))
    print(json.dumps({"prompts": len(PROMPTS), "greedy_identical": same, "max_abs_logit_diff_last_prompt_position": diff}))


if __name__ == "__main__":
    main()
