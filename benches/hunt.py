#!/usr/bin/env python3
"""Random REST scenarios, judged by `flux-sim compare` itself: where does flux's claim fail?

Writes N scenarios drawn from a seeded generator (1-6 projects of 1-3 keys, some revoked,
per-project overrides and days already spent; RPM, TPM, RPD, TPD and concurrency limits drawn
or left out; sliding, calendar or bucket minutes; 503s; open loads at 50-150% of the RPM
capacity, with bursts, or closed batches; fixed, uniform or heavy-tailed prompts), runs
`flux-sim compare` on each and prints every flux row that compare marks with a cross, then the
totals. Session 27 found three planner defects this way (docs/compare.md, "Random scenarios").

    cargo build --release && python3 benches/hunt.py --count 200 [--first 0] [--bin PATH] [--keep DIR]

Scenario i is the same on every machine (Python's `random.Random(i)`), so a row can be
rerun alone: `flux-sim compare DIR/hunt-i.toml` with `--keep DIR`.
"""
import argparse
import concurrent.futures
import os
import random
import re
import subprocess
import sys
import tempfile


def scenario(i):
    r = random.Random(i)
    projects, keys = r.randint(1, 6), r.randint(1, 3)
    rpm = r.choice([2, 5, 10, 15, 30, 60, 150])
    tpm = r.choice([None, None, 30_000, 100_000, 250_000, 1_000_000])
    rpd = r.choice([None, None, None, 50, 200, 500, 1500])
    tpd = r.choice([None] * 6 + [2_000_000, 500_000])
    slots = r.choice([None] * 4 + [1, 2, 3, 5])
    scope = r.choice(["project", "key"])
    window = r.choice(["sliding"] * 3 + ["fixed", "bucket"])
    faults = r.choice([0, 0, 0, 0.05, 0.15])
    counted = r.random() < 0.15
    ttft, tps, jitter = r.choice([200, 500, 800, 1500, 3000]), r.choice([50, 120, 250]), r.choice([0, 0.2, 0.5, 0.8])
    start = f"2026-03-{r.randint(2, 27):02d}T{r.choice([9, 14, 22, 23]):02d}:{r.choice([0, 17, 40, 55]):02d}:00-08:00"
    median = r.choice([200, 1000, 5000, 20000])
    prompts = r.choice([
        f'{{ dist = "fixed", value = {median} }}',
        f'{{ dist = "uniform", min = {max(1, median // 4)}, max = {median * 3} }}',
        f'{{ dist = "lognormal", median = {median}, p99 = {median * r.choice([3, 10, 30])} }}',
    ])
    if tpm and "lognormal" in prompts:
        prompts = prompts[:-2] + f", max = {tpm} }}"
    answers = f'{{ dist = "lognormal", median = {r.choice([50, 200, 800])}, p99 = 2000 }}'
    out = [
        f'name = "hunt-{i}"\nseed = {r.randint(1, 1000)}\nstart = "{start}"\n',
        f'[server]\nwindow = "{window}"\ncount_rejected = {"true" if counted else "false"}\nfault_rate = {faults}\n',
        f'[server.latency]\nttft = "{ttft}ms"\ntokens_per_second = {tps}\njitter = {jitter}\n',
        "[models.m]\n" + f"rpm = {rpm}\n" + (f"tpm = {tpm}\n" if tpm else "") + (f"rpd = {rpd}\n" if rpd else "")
        + (f"tpd = {tpd}\n" if tpd else "") + (f'concurrent = {slots}\nconcurrent_scope = "{scope}"\n' if slots else ""),
        f"[topology]\nkeys_per_project = {keys}\nprojects = {projects}\n",
    ]
    for p in range(1, projects + 1):
        parts = []
        if r.random() < 0.15:
            parts.append(f"invalid_keys = {r.randint(1, 2)}")
        if rpd and r.random() < 0.3:
            parts.append(f"rpd_used = {r.randint(0, rpd)}")
        if r.random() < 0.2:
            parts.append(f"limits = {{ m = {{ rpm = {r.choice([1, 3, rpm * 2, rpm // 2 or 1])} }} }}")
        if parts:
            out.append(f"[topology.project.default-{p}]\n" + "\n".join(parts) + "\n")
    if r.random() < 0.5:
        load, minutes = r.choice([0.5, 0.8, 0.95, 1.1, 1.5]), r.choice([10, 30, 60, 120])
        w = f'[workload]\nkind = "open"\nrate = {max(0.5, round(projects * rpm * load, 2))}\nduration = "{minutes}m"\n'
        w += f"input_tokens = {prompts}\noutput_tokens = {answers}\n"
        if r.random() < 0.2:
            w += f'burst_on = "{r.choice([1, 5])}m"\nburst_off = "{r.choice([2, 10])}m"\n'
        out.append(w)
    else:
        out.append(f'[workload]\nkind = "closed"\nrequests = {r.choice([50, 200, 1000, 3000])}\n'
                   f"workers = {r.choice([1, 4, 16, 64, 500])}\ninput_tokens = {prompts}\noutput_tokens = {answers}\n")
    return "\n".join(out)


def judge(binary, path):
    """compare's verdict line for the scenario: the flux rows it marks failing."""
    run = subprocess.run([binary, "compare", path], capture_output=True, text=True)
    if run.returncode != 0:
        return None, run.stderr.strip().splitlines()[-1:]
    verdict = [l for l in run.stdout.splitlines() if l.startswith("- ")][-1]
    rows = verdict.split(": ", 1)[1].split("; ")
    return [x for x in rows if x.endswith("✗")], []


def main():
    a = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    a.add_argument("--count", type=int, default=200)
    a.add_argument("--first", type=int, default=0)
    a.add_argument("--bin", default=os.path.join(os.environ.get("CARGO_TARGET_DIR", "target"), "release", "flux-sim"))
    a.add_argument("--keep", help="write the scenarios here (default: a temporary directory)")
    args = a.parse_args()
    out = args.keep or tempfile.mkdtemp(prefix="hunt-")
    os.makedirs(out, exist_ok=True)
    paths = []
    for i in range(args.first, args.first + args.count):
        p = os.path.join(out, f"hunt-{i}.toml")
        with open(p, "w") as f:
            f.write(scenario(i))
        paths.append(p)
    with concurrent.futures.ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        verdicts = list(pool.map(lambda p: judge(args.bin, p), paths))
    failing, rows, scenarios = 0, 0, 0
    for p, (fails, err) in zip(paths, verdicts):
        name = os.path.basename(p)[:-5]
        if fails is None:
            print(f"{name}: compare failed: {' '.join(err)}")
            continue
        scenarios += 1
        rows += 4
        if fails:
            failing += len(fails)
            for x in fails:
                print(f"{name}: {x}")
    true_fail = sum(1 for f, _ in verdicts if f and any(re.match(r"flux \d", x) for x in f))
    print(f"{scenarios} scenarios, {failing} of {rows} flux rows fail the claim; "
          f"flux with the true limits fails on {true_fail}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
