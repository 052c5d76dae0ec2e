#!/usr/bin/env bash
# What `flux-sim proxy` adds to a request's time, bare and with a shared Redis ledger
# (`--ledger`), against the same request sent straight to `serve`: one run, the three targets
# alternating request by request (so the machine's noise falls on all three alike), each over
# a kept-alive connection from one Python client (http.client; its own cost is the same on
# every target and cancels in the differences). serve answers at once (no latency, limits far
# above the load), so the times are the HTTP hops and the proxy's work. Prints p50 and p99 of
# each target and the proxies' added p50/p99 over direct, in milliseconds.
# FLUX_SIM_OLD=BIN adds that binary's proxies (bare and with Redis, on another Redis database)
# to the same alternation: before and after a change, measured on the same machine at once.
# Needs redis-server (or REDIS_SERVER=valkey-server) and python3. Local only: not for CI.
# BLOCK=K sends K requests in a row to each target (default 1: one each, each round in a
# seeded random order).
# Usage: [FLUX_SIM=BIN] [FLUX_SIM_OLD=BIN] [BLOCK=K] benches/proxy-overhead.sh [REQUESTS (3000)] [WARMUP (300)]
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
rp=$(port); sp=$(port)
"${REDIS_SERVER:-redis-server}" --port "$rp" --bind 127.0.0.1 --save "" --appendonly no >/dev/null &
pids+=($!)
"$bin" serve "$dir/bench.toml" --bind "127.0.0.1:$sp" >/dev/null 2>&1 &
pids+=($!)
for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$sp/flux/metrics" && break; sleep 0.1; done
# name=port of each proxy, for the client below.
targets=()
# start_proxy NAME BIN [--ledger URL]
start_proxy() {
  local name=$1 b=$2 p
  shift 2
  p=$(port)
  FLUX_PROXY_TOKEN=bench-token "$b" proxy "$dir/bench.toml" --bind "127.0.0.1:$p" \
    --upstream "http://127.0.0.1:$sp" "$@" >/dev/null 2>&1 &
  pids+=($!)
  for _ in $(seq 100); do curl -s -o /dev/null "http://127.0.0.1:$p/flux/metrics" && break; sleep 0.1; done
  targets+=("$name=$p")
}
start_proxy proxy "$bin"
start_proxy proxy+redis "$bin" --ledger "redis://127.0.0.1:$rp/0"
if [ -n "${FLUX_SIM_OLD:-}" ]; then
  start_proxy old-proxy "$FLUX_SIM_OLD"
  start_proxy old-proxy+redis "$FLUX_SIM_OLD" --ledger "redis://127.0.0.1:$rp/1"
fi
echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg)"
key=$("$bin" keys "$dir/bench.toml" | awk '!/^#/ && NF {print $1; exit}')
python3 - "$n" "$warm" "$sp" "$key" "${BLOCK:-1}" "${targets[@]}" <<'EOF'
import http.client, json, random, sys, time
n, warm, sp, key = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "hello"}]}], "generationConfig": {"maxOutputTokens": 8}})
targets = [("direct", sp, key)] + [tuple(t.split("=")) + ("bench-token",) for t in sys.argv[6:]]
conns = {name: http.client.HTTPConnection("127.0.0.1", int(p)) for name, p, _ in targets}
times = {name: [] for name, _, _ in targets}
path = "/v1beta/models/gemini-2.5-flash:generateContent"
block = max(1, int(sys.argv[5]))
rng = random.Random(1)
order = []
for i in range((warm + n) // block):
    # Each round in another order (seeded), so that none always follows the same target:
    # work a proxy leaves for after its answer (the ledger's confirmation of a pre-admitted
    # send) lands on each target alike. BLOCK > 1: that many requests in a row to each
    # target, so that such work lands on the same target's next request (a client sending
    # back to back, nothing between).
    round_ = targets[:]
    rng.shuffle(round_)
    order.append(round_)
def send(name, tk):
    c = conns[name]
    t = time.perf_counter()
    c.request("POST", path, body, {"content-type": "application/json", "x-goog-api-key": tk})
    r = c.getresponse()
    r.read()
    took = time.perf_counter() - t
    if r.status != 200:
        sys.exit(f"{name}: HTTP {r.status}")
    return took
for i, round_ in enumerate(order):
    for name, _, tk in round_:
        for _ in range(block):
            took = send(name, tk)
            if i * block >= warm:
                times[name].append(took * 1000)
def q(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p * len(xs)))]
print(f"{len(times['direct'])} requests per target, alternating in blocks of {block}; milliseconds")
print("target,p50,p99")
for name, _, _ in targets:
    print(f"{name},{q(times[name], 0.5):.3f},{q(times[name], 0.99):.3f}")
d = times["direct"]
for name, _, _ in targets[1:]:
    print(f"added by {name}: p50 {q(times[name], 0.5) - q(d, 0.5):+.3f} ms, p99 {q(times[name], 0.99) - q(d, 0.99):+.3f} ms")
EOF
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
# How each proxy with a ledger admitted its sends: pre-admitted (no Redis call on the
# request's path) or asked (older builds count none of either).
for t in "${targets[@]}"; do
  case $t in *redis*)
    echo "${t%%=*}: $(curl -s "http://127.0.0.1:${t#*=}/flux/metrics" | awk '/shared_ledger_(asked|preadmitted)/ {sub(/.*event="/, ""); sub(/"}/, ""); printf "%s ", $0}')"
  esac
done
