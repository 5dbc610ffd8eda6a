#!/usr/bin/env bash
# What structured outputs cost on the miner: ms per decoded token of SmolLM2-135M (Q4_1 GGUF)
# with a JSON-Schema mask and a json_object mask, against the same generation unconstrained,
# in one run on this machine (ratio = masked / plain). Anchor: the unconstrained decode.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${BRAINMESH_CACHE:-$ROOT/.cache}"
MODEL="${MODEL:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
THREADS="${THREADS:-2}"
[ -f "$MODEL" ] || { echo "error: $MODEL is missing: run make setup" >&2; exit 1; }
cargo build -q --release -p brainmesh-models --example bench_grammar
"${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/bench_grammar" --model "$MODEL" --threads "$THREADS" "$@"
