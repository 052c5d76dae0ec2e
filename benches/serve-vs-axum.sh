#!/usr/bin/env bash
# serve against a bare axum handler (examples/bare_axum.rs: parses the same JSON, answers a
# fixed body), measured in the same run, alternating, so the ratio holds on a noisy machine.
# Needs wrk (Debian: apt-get install wrk). Usage: benches/serve-vs-axum.sh [ROUNDS (3)] [SECONDS (5)]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; secs=${2:-5}
cargo build --release -q --bin flux-sim --example bare_axum --features yardstick
target/release/flux-sim serve scenarios/serve-bench.toml --bind 127.0.0.1:18082 2>/dev/null &
serve=$!
target/release/examples/bare_axum 127.0.0.1:18083 2>/dev/null &
bare=$!
trap 'kill $serve $bare 2>/dev/null' EXIT
sleep 1
key=$(target/release/flux-sim keys scenarios/serve-bench.toml | sed -n 2p | cut -f1)
rate() { wrk -t2 -c64 -d"${secs}s" -s benches/post.lua "$1" | awk '/Requests\/sec/ {print $2}'; }
echo "round,serve_req_s,bare_axum_req_s,ratio"
for r in $(seq 1 "$rounds"); do
  s=$(rate "http://127.0.0.1:18082/v1beta/models/gemini-2.5-flash:generateContent?key=$key")
  b=$(rate "http://127.0.0.1:18083/v1beta/models/gemini-2.5-flash:generateContent")
  echo "$r,$s,$b,$(awk -v s="$s" -v b="$b" 'BEGIN {printf "%.2f", s / b}')"
done
