#!/usr/bin/env bash
# A closed batch at large.toml's scale (1,000 projects, 2,000 workers, 300,000 requests), the
# case where flux chooses which waiting request a free worker takes (`Strategy::pick` over the
# next 1,024): user CPU and peak memory of the whole `run`, one thread, for two flux-sim
# binaries alternating in each round (e.g. a build from before a change and one after), without
# a tokens-per-day limit and with one that binds (150,000 a project: the batch spans two days).
# Also checks that both binaries write the same JSON.
# Usage: benches/closed-batch.sh OLD_FLUX_SIM NEW_FLUX_SIM [ROUNDS (3)] [STRATEGIES (flux exact_cooldown round_robin)]
set -euo pipefail
cd "$(dirname "$0")/.."
old=$1; new=$2; rounds=${3:-3}; strategies=${4:-flux exact_cooldown round_robin}
dir=$(mktemp -d)
sed -e 's/^kind = "open"/kind = "closed"/' -e 's/^rate = 900_000/requests = 300_000/' \
  -e 's/^duration = "70s"/workers = 2_000/' scenarios/large.toml > "$dir/closed.toml"
sed -e 's/^rpd = 10_000/rpd = 10_000\ntpd = 150_000/' "$dir/closed.toml" > "$dir/closed-tpd.toml"
grep -q '^workers = 2_000' "$dir/closed.toml" && grep -q '^tpd = 150_000' "$dir/closed-tpd.toml"
echo "round,scenario,strategy,old_user_s,old_max_kb,new_user_s,new_max_kb,same_json"
for r in $(seq 1 "$rounds"); do
  for sc in closed closed-tpd; do
    for s in $strategies; do
      line="$r,$sc,$s"
      for which in old new; do
        if [ "$which" = old ]; then b=$old; else b=$new; fi
        m=$( { /usr/bin/time -f "%U,%M" "$b" run "$dir/$sc.toml" --strategy "$s" --threads 1 --format json \
          > "$dir/out.$which"; } 2>&1 | tail -1)
        line="$line,$m"
      done
      if cmp -s "$dir/out.old" "$dir/out.new"; then same=yes; else same=NO; fi
      echo "$line,$same"
    done
  done
done
rm -rf "$dir"
