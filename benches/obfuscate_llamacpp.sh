#!/usr/bin/env bash
# llama.cpp (llama-cpp-python, set up by benches/models_compare.sh --setup-llama-cpp) runs the
# obfuscated GGUF of SmolLM2-135M: greedy tokens on 20 prompts against llama.cpp running the
# original written as f32 GGUF (same arithmetic: the anchor), and against the original's own Q4_1
# file (llama.cpp then multiplies 8-bit activations with 4-bit weights: other arithmetic), in
# one run; the largest logit difference beside each count.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${BRAINMESH_CACHE:-$ROOT/.cache}"
MODEL="${MODEL:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
PY="$CACHE/bench-venv/bin/python"
[ -x "$PY" ] || benches/models_compare.sh --setup-llama-cpp
cargo build -q --bin brainmesh -p brainmesh
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
B="${CARGO_TARGET_DIR:-$ROOT/target}/debug/brainmesh"
"$B" obfuscate --model "$MODEL" --format gguf --out "$W/obf.gguf" --seed 5 > /dev/null 2>&1
# The anchor: the original itself in f32 GGUF (every transform off), so both run the same arithmetic.
"$B" obfuscate --model "$MODEL" --format gguf --out "$W/orig-f32.gguf" --seed 5 --no-rotate --no-permute-heads \
  --no-scale-qk --no-mix-vo --no-permute-mlp > /dev/null 2>&1
echo "llama.cpp, original f32 vs obfuscated f32:"
"$PY" benches/obfuscate_llamacpp.py "$W/orig-f32.gguf" "$W/obf.gguf" "${THREADS:-2}"
echo "llama.cpp, original Q4_1 vs obfuscated f32:"
"$PY" benches/obfuscate_llamacpp.py "$MODEL" "$W/obf.gguf" "${THREADS:-2}"
