#!/usr/bin/env python3
"""The planners' speed as a share of round_robin's, on the whole run of large.toml (issue 34).

Runs `flux-sim run scenarios/large.toml --strategy S --threads 1 --format json` for S in
round_robin, flux and exact_cooldown, each binary given in turn within each round (so that two
builds, a before and an after, meet the same moments of a noisy machine), and prints per binary
the user-CPU sums, round_robin's sum over each planner's (the goal is >= 0.5), the median of the
per-round ratios, and the ratios of the fastest run of each.

Usage: benches/planners-vs-rr.py ROUNDS [FLUX_SIM ...]   (default: target/release/flux-sim)
"""

import os
import resource
import statistics
import subprocess
import sys

STRATEGIES = ["round_robin", "flux", "exact_cooldown"]
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def user_cpu(binary, strategy):
    """User CPU seconds of one whole run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime
    subprocess.run(
        [binary, "run", os.path.join(ROOT, "scenarios/large.toml"), "--strategy", strategy,
         "--threads", "1", "--format", "json"],
        stdout=subprocess.DEVNULL, check=True)
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_utime - before


def main():
    if len(sys.argv) < 2 or not sys.argv[1].isdigit():
        sys.exit(__doc__.strip().splitlines()[-1])
    rounds = int(sys.argv[1])
    binaries = sys.argv[2:] or [os.path.join(ROOT, "target/release/flux-sim")]
    times = {(b, s): [] for b in binaries for s in STRATEGIES}
    for _ in range(rounds):
        for s in STRATEGIES:
            for b in binaries:
                times[(b, s)].append(user_cpu(b, s))
    for b in binaries:
        rr = times[(b, "round_robin")]
        parts = [b]
        for s in STRATEGIES[1:]:
            t = times[(b, s)]
            median = statistics.median(r / x for r, x in zip(rr, t))
            parts.append(f"{s} {sum(t):.3f} s: {sum(rr) / sum(t):.3f}x (median {median:.3f}, fastest {min(rr) / min(t):.3f})")
        print(f"round_robin {sum(rr):.3f} s; " + "; ".join(parts[1:]) + f"  [{parts[0]}]")
    print("load average", " ".join(f"{x:.2f}" for x in os.getloadavg()))


if __name__ == "__main__":
    main()
