#!/usr/bin/env bash
# What `flux-sim proxy` adds to a request's time, bare and with a shared Redis ledger
# (`--ledger`), against the same request sent straight to `serve`: one run, the three targets
# alternating request by request (so the machine's noise falls on all three alike), each over
# a kept-alive connection from one Python client (http.client; its own cost is the same on
# every target and cancels in the differences). serve answers at once (no latency, limits far
# above the load), so the times are the HTTP hops and the proxy's work. Prints p50 and p99 of
# each target and the proxies' added p50/p99 over direct, in milliseconds.
# Needs redis-server (or REDIS_SERVER=valkey-server) and python3. Local only: not for CI.
# Usage: [FLUX_SIM=BIN] benches/proxy-overhead.sh [REQUESTS (3000)] [WARMUP (300)]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-3000}; warm=${2:-300}
# FLUX_SIM=path: a flux-sim binary already built (else this builds one).
bin=${FLUX_SIM:-}
if [ -z "$bin" ]; then
  cargo build --release -q --bin flux-sim
  bin=${CARGO_TARGET_DIR:-target}/release/flux-sim
fi
dir=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$dir"; }
trap cleanup EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
cat >"$dir/bench.toml" <<'EOF'
name = "proxy-overhead"
seed = 1
[server.latency]
ttft = "0ms"
tokens_per_second = 1000000000
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = 1000000000
tpm = 1000000000000
rpd = 1000000000
[topology]
projects = 1
[workload]
kind = "closed"
requests = 1
workers = 1
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 8 }
EOF
rp=$(port); sp=$(port); bp=$(port); lp=$(port)
"${REDIS_SERVER:-redis-server}" --port "$rp" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
pids+=($!)
"$bin" serve "$dir/bench.toml" --bind "127.0.0.1:$sp" >/dev/null 2>&1 &
pids+=($!)
sleep 1
FLUX_PROXY_TOKEN=bench-token "$bin" proxy "$dir/bench.toml" --bind "127.0.0.1:$bp" \
  --upstream "http://127.0.0.1:$sp" >/dev/null 2>&1 &
pids+=($!)
FLUX_PROXY_TOKEN=bench-token "$bin" proxy "$dir/bench.toml" --bind "127.0.0.1:$lp" \
  --upstream "http://127.0.0.1:$sp" --ledger "redis://127.0.0.1:$rp/0" >/dev/null 2>&1 &
pids+=($!)
for p in "$sp" "$bp" "$lp"; do
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/flux/metrics" && break; sleep 0.1; done
done
key=$("$bin" keys "$dir/bench.toml" | awk '!/^#/ && NF {print $1; exit}')
python3 - "$n" "$warm" "$sp" "$bp" "$lp" "$key" <<'EOF'
import http.client, json, sys, time
n, warm, sp, bp, lp, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hello"}]}], "generationConfig": {"maxOutputTokens": 8}})
targets = [("direct", sp, key), ("proxy", bp, "bench-token"), ("proxy+redis", lp, "bench-token")]
conns = {name: http.client.HTTPConnection("127.0.0.1", int(p)) for name, p, _ in targets}
times = {name: [] for name, _, _ in targets}
path = "/v1beta/models/gemini-2.5-flash:generateContent"
for i in range(warm + n):
    for name, _, k in (targets if i % 2 == 0 else targets[::-1]):
        c = conns[name]
        t = time.perf_counter()
        c.request("POST", path, body, {"content-type": "application/json", "x-goog-api-key": k})
        r = c.getresponse()
        r.read()
        took = time.perf_counter() - t
        if r.status != 200:
            sys.exit(f"{name}: HTTP {r.status}")
        if i >= warm:
            times[name].append(took * 1000)
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]
print(f"{n} requests per target, alternating; milliseconds")
print("target,p50,p99")
for name, _, _ in targets:
    print(f"{name},{q(times[name], 0.5):.3f},{q(times[name], 0.99):.3f}")
d = times["direct"]
for name in ("proxy", "proxy+redis"):
    print(f"added by {name}: p50 {q(times[name], 0.5) - q(d, 0.5):+.3f} ms, p99 {q(times[name], 0.99) - q(d, 0.99):+.3f} ms")
EOF
