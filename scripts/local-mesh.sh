#!/usr/bin/env bash
# Starts a local brainmesh on loopback: a gateway (the bootstrap peer), two miners and a
# validator, from configs/local-mesh/*.toml. Ctrl-C stops them all.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BRAINMESH_BIN:-target/release/brainmesh}
mkdir -p data/local-mesh
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM
for peer in gateway miner1 miner2 validator; do
  "$BIN" node --config "configs/local-mesh/$peer.toml" > "data/local-mesh/$peer.log" 2>&1 &
  pids+=("$!")
  # The gateway is everyone's bootstrap peer: let it bind first.
  for _ in $(seq 100); do [ -f "data/local-mesh/$peer/node.json" ] && break; sleep 0.1; done
done
# Wait until the gateway's roster holds all four peers.
for _ in $(seq 150); do
  n=$("$BIN" status --http 127.0.0.1:9100 2>/dev/null | grep -c '"status": "online"' || true)
  [ "${n:-0}" -ge 4 ] && break
  sleep 0.2
done
# Wait until the gateway lists the model (both miners loaded it and announced it).
for _ in $(seq 300); do
  curl -s -H 'Authorization: Bearer sk-local-dev' http://127.0.0.1:8080/v1/models 2>/dev/null | grep -q smollm2 && break
  sleep 0.2
done
cat <<TXT
brainmesh local mesh is up (Ctrl-C to stop):
  OpenAI API http://127.0.0.1:8080/v1   (API key: sk-local-dev, model: smollm2-135m-instruct)
             curl -s http://127.0.0.1:8080/v1/chat/completions -H 'Authorization: Bearer sk-local-dev' \\
               -H 'Content-Type: application/json' \\
               -d '{"model":"smollm2-135m-instruct","temperature":0,"messages":[{"role":"user","content":"What is the capital of France?"}]}'
             (or any OpenAI client with base_url=http://127.0.0.1:8080/v1)
  gateway    http://127.0.0.1:9100/status   metrics: http://127.0.0.1:9100/metrics
  miner1     http://127.0.0.1:9101/status
  miner2     http://127.0.0.1:9102/status
  validator  http://127.0.0.1:9103/status
  CLI:       $BIN status --http 127.0.0.1:9100
  encrypted: $BIN private classify --brain 1 --config configs/local-mesh/miner2.toml \\
               --text "Fellow, come from the throng; look upon Caesar."
             (miner1 serves the demo head; the first query makes keys and uploads ~116 MiB)
  logs:      data/local-mesh/*.log     data: data/local-mesh/<peer>/ (identity, sled roster)
TXT
"$BIN" status --http 127.0.0.1:9100 | grep -E '"(peer_id|status|registration)"' | head -12 || true
wait
