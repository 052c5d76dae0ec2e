#!/usr/bin/env python3
"""How much machine code a run executes often: its hot code, against a 32 KB instruction cache.

Reads a callgrind profile made with `--dump-instr=yes` and counts the 64-byte cache lines holding
an instruction executed at least FRACTION x REQUESTS times (default: a tenth of the requests, the
code a decision's path runs at least once in ten decisions), in all and per function, with how
many of those lines' bytes are hot instructions (the rest is code of rarer paths laid out
between them). Issue 34: the planners' hot code against the first-level instruction cache.

Usage: benches/hot-code.py CALLGRIND_OUT REQUESTS [FRACTION] [TOP]
  e.g. valgrind --tool=callgrind --dump-instr=yes --callgrind-out-file=cg.flux \\
         target/profiling/flux-sim run scenarios/large.toml --strategy flux --threads 1 --format json
       benches/hot-code.py cg.flux 1050333
"""

import collections
import re
import sys


def parse(path):
    """Executions per instruction address, and each address's function."""
    counts, owner, names = collections.Counter(), {}, {}
    function, addr, skip = None, 0, False
    with open(path) as f:
        for line in f:
            head = line[0]
            if head.isdigit() or head in "+-*":
                first = line.split(None, 2)
                token = first[0]
                if token == "*":
                    pass
                elif token[0] in "+-":
                    addr += int(token, 0)
                else:
                    addr = int(token, 0)
                if skip:  # the cost of a call: the callee's, not this instruction's
                    skip = False
                    continue
                fields = line.split()
                if len(fields) > 2:
                    counts[addr] += int(fields[2])
                    owner[addr] = function
            elif line.startswith("calls="):
                skip = True
            elif line.startswith(("fn=", "cfn=")):
                m = re.match(r"c?fn=\((\d+)\)(?: (.*))?", line.strip())
                if m and m.group(2):
                    names[m.group(1)] = m.group(2)
                if line.startswith("fn="):
                    function = m.group(1) if m else line[3:].strip()
    return counts, {a: names.get(f, f) for a, f in owner.items()}


def main():
    if len(sys.argv) < 3:
        sys.exit("\n".join(__doc__.strip().splitlines()[-4:]))
    counts, owner = parse(sys.argv[1])
    requests = int(sys.argv[2])
    fraction = float(sys.argv[3]) if len(sys.argv) > 3 else 0.1
    top = int(sys.argv[4]) if len(sys.argv) > 4 else 25
    hot = {a for a, c in counts.items() if c >= fraction * requests}
    lines = collections.defaultdict(set)
    hot_bytes = collections.Counter()
    executed = sorted(counts)
    for i, a in enumerate(executed):
        if a in hot:
            lines[owner[a]].add(a >> 6)
            # An instruction's length: up to the next executed one (x86-64: at most 15 bytes).
            if i + 1 < len(executed) and 0 < executed[i + 1] - a <= 15:
                hot_bytes[owner[a]] += executed[i + 1] - a
    total = len({a >> 6 for a in hot})
    print(f"hot code (executed >= {fraction} x {requests}): {total} lines = {total * 64 / 1024:.1f} KB, "
          f"{sum(hot_bytes.values()) / 1024:.1f} KB of it hot instructions")
    for f, ls in sorted(lines.items(), key=lambda kv: -len(kv[1]))[:top]:
        print(f"{len(ls) * 64:6d} B in lines, {hot_bytes[f]:6d} B hot  {f[:120]}")


if __name__ == "__main__":
    main()
