#!/usr/bin/env bash
# Byte identity of a change that must not change results: `run --format json` and
# `compare --format json` of every shipped scenario but large-10m (minutes per strategy),
# with two flux-sim binaries (e.g. a build from before a change and one after). Prints each
# output that differs and ends with "N outputs, M differ"; exits 1 if any differs.
# Usage: benches/same-outputs.sh OLD_FLUX_SIM NEW_FLUX_SIM [THREADS (2)]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1; new=$2; threads=${3:-2}
out=$(mktemp -d)
n=0; differ=0
for f in scenarios/*.toml; do
  name=$(basename "$f" .toml)
  [ "$name" = large-10m ] && continue
  for cmd in run compare; do
    "$old" "$cmd" "$f" --format json --threads "$threads" > "$out/$name.$cmd.old" 2>&1 || true
    "$new" "$cmd" "$f" --format json --threads "$threads" > "$out/$name.$cmd.new" 2>&1 || true
    n=$((n + 1))
    if ! cmp -s "$out/$name.$cmd.old" "$out/$name.$cmd.new"; then
      differ=$((differ + 1))
      echo "differs: $cmd $f"
    fi
  done
done
echo "$n outputs, $differ differ"
rm -rf "$out"
[ "$differ" -eq 0 ]
