#!/usr/bin/env bash
# The whole `run` as a user waits for it (process start, scenario, upper bound, round_robin,
# JSON) against a bare heap loop of the same job (examples/bare_loop.rs), alternating in one
# run so the ratio holds on a noisy machine. Wall-clock seconds and user CPU seconds of each;
# the ratio is the run's speed as a share of the loop's (both simulate large.toml's
# ~1,050,000 arrivals). Optional: a second flux-sim binary (e.g. a build from before a change)
# measured in the same rounds. Usage: benches/run-vs-bare.sh [ROUNDS (5)] [OTHER_FLUX_SIM]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-5}; other=${2:-}
cargo build --release -q --bin flux-sim --example bare_loop
dir=${CARGO_TARGET_DIR:-target}/release
t() { /usr/bin/time -f "%e %U" "$@" 2>&1 >/dev/null | tail -1; }
run() { t "$1" run scenarios/large.toml --strategy round_robin --threads 1 --format json; }
echo "round,run_s,run_user_s,bare_s,bare_user_s,ratio_wall,ratio_user${other:+,other_s,other_user_s}"
for r in $(seq 1 "$rounds"); do
  read -r rs ru <<<"$(run "$dir/flux-sim")"
  read -r bs bu <<<"$(t "$dir/examples/bare_loop")"
  line="$r,$rs,$ru,$bs,$bu,$(awk -v a="$rs" -v b="$bs" 'BEGIN {printf "%.3f", b / a}'),$(awk -v a="$ru" -v b="$bu" 'BEGIN {printf "%.3f", b / a}')"
  if [ -n "$other" ]; then
    read -r os ou <<<"$(run "$other")"
    line="$line,$os,$ou"
  fi
  echo "$line"
done
