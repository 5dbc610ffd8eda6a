#!/usr/bin/env bash
# How the simulator's cost grows with the mesh: `brainmesh sim` at 25/50/100 peers by default
# (the proportions of the 200-peer mesh: 8% validators, 2% gateways, the rest miners, 10% of
# them cheating), a short run each at a speed-up the machine can follow; with --day, the
# 200-peer mesh (16 validators, 180 miners, 4 gateways) for one simulated day (8,640 blocks of
# 10 s, with its daily settlement).
# Prints a markdown table: wall time (and how much of it was forming the mesh), peak RSS,
# messages between peers per wall second and per CPU second, request latency, and what the
# mesh achieved (requests served, receipts final / lost, cheaters banned, finality stalls),
# with wall time and RSS as ratios to the first size.
#
#   benches/sim_scale.sh [--sizes "25 50 100"] [--blocks 30] [--speedup 5]
#                        [--heartbeat-blocks 6] [--day [--day-speedup 100]] [--release]
#
# Targets (issue 19): the day at 200 peers in <= 15 min of wall time and <= 8 GiB on 2 cores;
# docs/simulator.md says why this machine is far from them and what limits it.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
SIZES="25 50 100"; BLOCKS=30; HEARTBEAT=6; SPEEDUP=5; DAY_SPEEDUP=100; DAY=0; PROFILE=debug
while [ $# -gt 0 ]; do
  case "$1" in
    --sizes) SIZES="$2"; shift 2;;
    --blocks) BLOCKS="$2"; shift 2;;
    --speedup) SPEEDUP="$2"; shift 2;;
    --day-speedup) DAY_SPEEDUP="$2"; shift 2;;
    --day) DAY=1; shift;;
    --heartbeat-blocks) HEARTBEAT="$2"; shift 2;;
    --release) PROFILE=release; shift;;
    *) echo "unknown argument $1" >&2; exit 2;;
  esac
done
cd "$ROOT"
if [ "$PROFILE" = release ]; then cargo build -q --release --bin brainmesh; else cargo build -q --bin brainmesh; fi
BIN="${CARGO_TARGET_DIR:-$ROOT/target}/$PROFILE/brainmesh"
WORK="${BRAINMESH_CACHE:-$ROOT/.cache}/sim-scale"; rm -rf "$WORK"; mkdir -p "$WORK"
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(free -g | awk '/Mem:/{print $2}') GiB; $PROFILE build; load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2

# scenario NAME PEERS BLOCKS SPEEDUP SETTLEMENT [VALIDATORS MINERS GATEWAYS]
scenario() {
  local name=$1 n=$2 blocks=$3 speedup=$4 settle=$5 drain=${9:-20}
  local v=${6:-$(( (n * 8 + 50) / 100 ))} g=${8:-$(( (n * 2 + 50) / 100 ))}
  [ "$v" -ge 3 ] || v=3; [ "$g" -ge 1 ] || g=1
  local m=${7:-$(( n - v - g ))}
  local bad=$(( m / 10 )); local each=$(( bad / 5 )); [ "$each" -ge 1 ] || each=1
  local honest=$(( m - 5 * each ))
  cat > "$WORK/$name.toml" <<EOF
name = "$name"
seed = 1
[chain]
block_time_ms = 10000
speedup = $speedup
blocks = $blocks
drain_blocks = $drain
settlement_interval_blocks = $settle
epoch_blocks = 30
reveal_delay_blocks = 3
[model]
threads = 1
[peers]
validators = $v
gateways = $g
# A heartbeat a minute (every peer's heartbeat reaches every other peer).
heartbeat_blocks = $HEARTBEAT
gossip_heartbeat_ms = 500
[[peers.miners]]
count = $honest
behaviour = "honest"
[[peers.miners]]
count = $each
behaviour = "edited"
[[peers.miners]]
count = $each
behaviour = "replayed"
[[peers.miners]]
count = $each
behaviour = "random"
[[peers.miners]]
count = $each
behaviour = "squeezed"
[[peers.miners]]
count = $each
behaviour = "intermittent:0.5"
[load]
# One request per block per 50 peers.
per_block = $(awk "BEGIN{print $n/50}")
max_in_flight = 64
[audit]
# Each validator re-checks a fifth of the receipts.
rate = 0.2
[output]
sample_every_blocks = 10
plots = false
EOF
}

# figure SUMMARY KEY
fig() { python3 -c "import json,sys; v=json.load(open('$1')).get('$2'); print('-' if v is None else v)"; }

run() {
  local name=$1
  local out="$WORK/$name"
  if ! /usr/bin/time -f "%U %S %M" -o "$WORK/$name.time" "$BIN" sim --scenario "$WORK/$name.toml" --out "$out" > "$WORK/$name.log" 2>&1; then
    echo "| $name | failed: $(grep -m1 -i 'error' "$WORK/$name.log" | cut -c1-120) |"
    return
  fi
  local s="$out/summary.json"
  python3 - "$s" "$name" "${BASE_WALL:-}" "${BASE_RSS:-}" "$WORK/$name.time" <<'EOF'
import json, sys
s = json.load(open(sys.argv[1])); name = sys.argv[2]
user, sys_, _ = open(sys.argv[5]).read().split()[-3:]
cpu = float(user) + float(sys_)
chain_s = s["blocks"] * s["block_time_ms"] / 1000
bw = float(sys.argv[3]) if sys.argv[3] else s["wall_s"]; br = float(sys.argv[4]) if sys.argv[4] else s["peak_rss_mib"]
print(f"| {name} | {s['peers']} ({s['validators']}/{s['miners']}/{s['gateways']}) | {s['blocks']} @ {s['speedup']}x "
      f"| {s['wall_s']:.0f} s ({s['wall_s']/bw:.2f}x) | {s['formation_s']:.0f} s | {s['peak_rss_mib']:.0f} MiB ({s['peak_rss_mib']/br:.2f}x) "
      f"| {s['messages_per_s']:.0f} | {s['latency_p50_ms']:.0f} | {s['requests_ok']}/{s['requests']} | {s['receipts_finalised']}/{s['receipts_lost']} "
      f"| {s['cheaters_banned']}/{s['cheaters']} | {s['honest_banned']} | {s['max_finality_stall_blocks']} | {s['settlements']} "
      f"| {cpu:.0f} s | {s['messages']/max(cpu,1e-9):.0f} |")
EOF
}

echo "| run | peers (v/m/g) | blocks | wall (vs first) | of which forming | peak RSS (vs first) | msgs/s | latency p50 ms | requests ok | receipts final/lost | cheaters banned | honest banned | worst finality stall | settlements | CPU (user+sys) | msgs per CPU s |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
BASE_WALL=""; BASE_RSS=""
for n in $SIZES; do
  scenario "size-$n" "$n" "$BLOCKS" "$SPEEDUP" "$(( BLOCKS / 2 ))"
  run "size-$n"
  if [ -z "$BASE_WALL" ] && [ -f "$WORK/size-$n/summary.json" ]; then
    BASE_WALL=$(fig "$WORK/size-$n/summary.json" wall_s); BASE_RSS=$(fig "$WORK/size-$n/summary.json" peak_rss_mib)
  fi
done
if [ "$DAY" = 1 ]; then
  BASE_WALL=""; BASE_RSS=""
  scenario "day-200" 200 8640 "$DAY_SPEEDUP" 8640 16 180 4 40
  run "day-200"
  echo "(day-200 targets: wall <= 900 s, peak RSS <= 8192 MiB; outputs in $WORK/day-200)"
fi
