#!/usr/bin/env bash
# Sim versus real on scenarios/dubbing.toml: each strategy driven for real against `serve` RUNS
# times (--fresh), next to its simulation over seeds 1..12, both over the same 20 minutes of
# quota time. Prints one CSV line per run: scale,strategy,source,seed_or_run,completed,429s.
# Usage: [MARGIN=30ms] benches/sim-vs-real.sh [SCALE (60)] [RUNS (3)] [STRATEGY ...]
# MARGIN is passed to drive as --margin (exact_cooldown and flux; its simulated row uses it too).
set -euo pipefail
cd "$(dirname "$0")/.."
scale=${1:-60}; runs=${2:-3}; shift $(( $# > 2 ? 2 : $# )) || true
strategies=${*:-round_robin fixed_interval exact_cooldown flux}
bin=target/release/flux-sim
cargo build --release -q
port=18181
$bin serve scenarios/dubbing.toml --time-scale "$scale" --bind 127.0.0.1:$port >/dev/null 2>&1 &
serve=$!
trap 'kill $serve 2>/dev/null' EXIT
sleep 1
secs=$(( 1200 / scale ))
sweep=$(mktemp -d)
$bin sweep scenarios/dubbing.toml --set seed=1..12 --set horizon=20m --out "$sweep" --force \
  $(printf -- '--strategy %s ' $strategies) >/dev/null
echo "scale,strategy,source,seed_or_run,completed,rate_limited"
for s in $strategies; do
  awk -F, -v s="$s" -v sc="$scale" '$3==s {print sc "," s ",simulated,seed " $1 "," $5 "," $10}' "$sweep/sweep.csv"
  for r in $(seq 1 "$runs"); do
    $bin drive scenarios/dubbing.toml --endpoint http://127.0.0.1:$port --strategy "$s" \
      --time-scale "$scale" --duration "${secs}s" --fresh --format json ${MARGIN:+--margin "$MARGIN"} 2>/dev/null |
      python3 -c 'import json,sys
d=json.load(sys.stdin)
for row in d["results"]:
    src = "simulated (seed %d)" % d["seed"] if row["strategy"].endswith("(simulated)") else "real"
    print("%s,%s,%s,run %s,%d,%d" % (sys.argv[1], sys.argv[2], src, sys.argv[3], row["completed"], row["rate_limited"]))' "$scale" "$s" "$r"
  done
done
rm -rf "$sweep"
