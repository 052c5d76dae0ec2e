#!/usr/bin/env bash
# The whole `flux-sim run scenarios/large.toml --strategy round_robin --threads 1` against an
# independent event-by-event Python model of the same job (benches/simpy_large.py: SimPy, and
# a plain heapq loop beside it), alternating in one run so the ratios hold on a noisy machine.
# Each line: wall-clock and user CPU seconds of the three, and flux-sim's speed as a multiple
# of each model's (same ~1,050,000 arrivals; ratio of user CPU, the Python models time their
# own loop, flux-sim's figure is the whole process). SimPy comes from PyPI in a throwaway venv:
#   python3 -m venv /tmp/simpy-venv && /tmp/simpy-venv/bin/pip install simpy
# Usage: benches/run-vs-simpy.sh [ROUNDS (3)] [PYTHON (/tmp/simpy-venv/bin/python)]
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${1:-3}; py=${2:-/tmp/simpy-venv/bin/python}
"$py" -c 'import simpy' || { echo "no simpy for $py: see the header of $0" >&2; exit 2; }
cargo build --release -q --bin flux-sim
bin=${CARGO_TARGET_DIR:-target}/release/flux-sim
t() { /usr/bin/time -f "%e %U" "$@" 2>&1 >/dev/null | tail -1; }
echo "round,run_s,run_user_s,simpy_s,simpy_user_s,heap_s,heap_user_s,x_simpy,x_heap,load"
for r in $(seq 1 "$rounds"); do
  read -r rs ru <<<"$(t "$bin" run scenarios/large.toml --strategy round_robin --threads 1 --format json)"
  read -r ss su <<<"$(t "$py" benches/simpy_large.py simpy)"
  read -r hs hu <<<"$(t "$py" benches/simpy_large.py heap)"
  load=$(cut -d' ' -f1 /proc/loadavg)
  echo "$r,$rs,$ru,$ss,$su,$hs,$hu,$(awk -v a="$ru" -v b="$su" 'BEGIN {printf "%.1f", b / a}'),$(awk -v a="$ru" -v b="$hu" 'BEGIN {printf "%.1f", b / a}'),$load"
done
