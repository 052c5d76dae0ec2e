#!/usr/bin/env bash
# The real peer libraries, unmodified, against `flux-sim serve`, next to `flux-sim run`'s
# models of them on the same scenario (issue 30 item 2).
#
#   benches/peers-vs-real.sh [PEER ...]      # default: every peer below
#
# PEERs: gemini_flux (gemini-flux 1.1.1), backoff (google-genai 3.6.1 with HttpRetryOptions()),
# litellm_shuffle, litellm_least_busy, litellm_usage (LiteLLM 1.110.2 Router). It installs
# them from PyPI into a throwaway virtualenv, starts `serve` at time scale 1 (the tools sleep
# on the wall clock) on a free loopback port, a fresh server per peer, runs the peer as a user
# would (a closed batch on a thread pool), reads serve's own counters (`/flux/metrics`) for
# the 429s, then runs `flux-sim run --strategy PEER` on the same scenario and prints both.
# Needs python3 (with venv) and network access to PyPI; about 5 minutes in all.
# FLUX_SIM=path overrides the binary (default: $CARGO_TARGET_DIR or target, release).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLUX_SIM:-${CARGO_TARGET_DIR:-$ROOT/target}/release/flux-sim}
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release first" >&2; exit 2; }
PEERS=("$@")
[ ${#PEERS[@]} -gt 0 ] || PEERS=(gemini_flux backoff litellm_shuffle litellm_least_busy litellm_usage)
WORK=$(mktemp -d /tmp/peers-vs-real.XXXXXX)
SERVE_PID=
cleanup() { [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null; rm -rf "$WORK"; }
trap cleanup EXIT

# The scenario: two free-tier-like projects of one key each plus an invalid key, two models,
# a closed batch small enough to run in real time in a minute or two per peer.
cat > "$WORK/peers.toml" <<'EOF'
# Sim versus real (benches/peers-vs-real.sh): two projects of one key each and an invalid
# key, flash and pro with RPMs low enough that the libraries' own overhead (gemini-flux builds
# two clients per request: seconds on a loaded machine) cannot keep them under the limit;
# 24 prompts of 100 tokens from 4 workers.
name = "peers-vs-real"
seed = 1
start = "2025-10-15T09:00:00-07:00"

[server]
window = "sliding"
tpm_counts = "input"

[server.latency]
ttft = "300ms"
tokens_per_second = 100
jitter = 0

[models."gemini-2.5-flash"]
rpm = 4
tpm = 1_000_000
rpd = 1_000

[models."gemini-2.5-pro"]
rpm = 2
tpm = 1_000_000
rpd = 1_000

[topology]
projects = ["a", "b"]

[topology.project."b"]
invalid_keys = 1

[workload]
kind = "closed"
requests = 24
workers = 4
model = "gemini-2.5-flash"
input_tokens = { dist = "fixed", value = 100 }
output_tokens = { dist = "fixed", value = 20 }

[[strategies]]
kind = "gemini_flux"
fallback = ["gemini-2.5-pro"]
EOF

# PEERS_VENV=dir reuses (or makes once) a virtualenv instead of a throwaway one.
VENV=${PEERS_VENV:-$WORK/venv}
if ! "$VENV/bin/python" -c 'import gemini_flux, google.genai, litellm, pytz' 2>/dev/null; then
  echo "installing gemini-flux 1.1.1, google-genai 3.6.1, litellm 1.110.2 into $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q gemini-flux==1.1.1 google-genai==3.6.1 litellm==1.110.2 pytz >&2
fi
"$VENV/bin/python" -c 'import importlib.metadata as m; print("real:", ", ".join(p + " " + m.version(p) for p in ("gemini-flux", "google-genai", "litellm")))'

"$BIN" keys "$WORK/peers.toml" | grep -v '^#' > "$WORK/keys.tsv"

cat > "$WORK/peer.py" <<'EOF'
"""Runs one real library on the scenario's closed batch against serve; prints JSON."""
import json, os, sys, time, threading
from concurrent.futures import ThreadPoolExecutor

peer, url, keys_file, workdir = sys.argv[1:5]
REQUESTS, WORKERS, MODEL, FALLBACK = 24, 4, "gemini-2.5-flash", "gemini-2.5-pro"
PROMPT = "x" * 400  # serve counts characters / 4: 100 input tokens
keys = [l.split("\t") for l in open(keys_file).read().splitlines() if l.strip()]
valid_first = [k[0] for k in keys]  # serve's key order, as the simulation's
os.chdir(workdir)
out, sys.stdout = sys.stdout, sys.stderr  # the libraries print to stdout
os.environ["GOOGLE_GEMINI_BASE_URL"] = url
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
results = [None] * REQUESTS
order = []
lock = threading.Lock()

if peer == "gemini_flux":
    # Its policy as `run` tells it the limits (a cached policy: no policy request), its
    # discovered chain as _sort_models orders serve's two models.
    limits = {"requests_per_day": 1000, "tokens_per_minute": 1000000}
    json.dump({"fetched_at": time.time(), "models": [FALLBACK, MODEL],
               "policy": {"pro": dict(limits, requests_per_minute=2),
                          "flash": dict(limits, requests_per_minute=4),
                          "flash_lite": dict(limits, requests_per_minute=15),
                          "token_cooldown_seconds": 60, "daily_reset_time_pt": "00:00"}},
              open(".gemini_flux_policy_cache.json", "w"))
    from gemini_flux import GeminiFlux
    flux = GeminiFlux(valid_first, log=False)
    def one(i):
        r = flux.generate(PROMPT, max_tokens=1000)
        with lock:
            order.append((r.get("key_used"), r.get("model_used")) if "response" in r else None)
        return "response" in r
elif peer == "backoff":
    from google import genai
    from google.genai import types
    client = genai.Client(api_key=valid_first[0], http_options=types.HttpOptions(
        base_url=url, retry_options=types.HttpRetryOptions()))
    def one(i):
        try:
            client.models.generate_content(model=MODEL, contents=PROMPT)
            return True
        except Exception:
            return False
else:
    import litellm
    from litellm import Router
    litellm.suppress_debug_info = True
    routing = {"litellm_shuffle": "simple-shuffle", "litellm_least_busy": "least-busy",
               "litellm_usage": "usage-based-routing-v2"}[peer]
    # Every key one deployment told its project's limits (the invalid key: project b's).
    router = Router(model_list=[{"model_name": "m", "litellm_params": {
        "model": "gemini/" + MODEL, "api_key": k, "api_base": url + "/v1beta",
        "rpm": 4, "tpm": 1000000}} for k in valid_first], routing_strategy=routing)
    def one(i):
        try:
            router.completion(model="m", messages=[{"role": "user", "content": PROMPT}])
            return True
        except Exception:
            return False

start = time.time()
ends = []
def run(i):
    ok = one(i)
    with lock:
        ends.append(time.time() - start)
    results[i] = ok
with ThreadPoolExecutor(WORKERS) as pool:
    list(pool.map(run, range(REQUESTS)))
json.dump({"completed": sum(results), "failed": REQUESTS - sum(results),
           "makespan_s": round(max(ends), 1), "order": order}, out)
EOF

cat > "$WORK/report.py" <<'EOF'
"""One row of the table: the real library's JSON (with serve's 429 counts) or run's."""
import json, sys
side, peer = sys.argv[1:3]
d = json.load(sys.stdin)
row = "%-20s %-5s %9d %6d %6s %-26s %8.1fs"
if side == "real":
    n429, dims = sys.argv[3], " ".join(sys.argv[4:])
    print(row % (peer, side, d["completed"], d["failed"], n429, dims or "-", d["makespan_s"]))
    order = [f"{k}:{m.split('-')[-1]}" for k, m in (o for o in d["order"] if o)]
    if order:
        print("  order of successes (key #:model):", " ".join(order))
else:
    r = d["results"][0]
    dims = " ".join(f"{k}={v}" for k, v in sorted(r["rate_limited_by"].items()) if v)
    print(row % (peer, side, r["completed"], r["failed"] + r["unservable"], r["rate_limited"], dims or "-", r["makespan_s"]))
    if peer == "gemini_flux":  # its key/model order, from the trace, keys numbered as it does
        tail = {l.split("\t")[0][-4:]: i + 1 for i, l in enumerate(open(sys.argv[4]).read().splitlines())}
        ok = [json.loads(l) for l in open(sys.argv[3]) if '"outcome":"ok"' in l]
        print("  order of successes (key #:model):", " ".join(f"{tail[a['key'][-4:]]}:{a['model'].split('-')[-1]}" for a in ok))
EOF

# Serve's Prometheus counters: the 429s, then the 429s by violated dimension.
cat > "$WORK/scrape.py" <<'EOF'
import collections, sys
c = collections.Counter()
n429 = 0
for line in sys.stdin:
    if line.startswith("flux_responses_total") and 'code="429"' in line:
        n429 += int(float(line.split()[-1]))
    if line.startswith("flux_rate_limited_total"):
        c[line.split('dimension="')[1].split('"')[0]] += int(float(line.split()[-1]))
print(n429, " ".join(f"{k}={v}" for k, v in sorted(c.items()) if v))
EOF

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

printf '%-20s %-5s %9s %6s %6s %-26s %9s\n' peer side completed failed 429s "429s by dimension" makespan
for peer in "${PEERS[@]}"; do
  port=$(free_port)
  "$BIN" serve "$WORK/peers.toml" --bind "127.0.0.1:$port" --time-scale 1 > "$WORK/serve.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 100); do curl -s "http://127.0.0.1:$port/v1beta/models" > /dev/null && break; sleep 0.1; done
  mkdir -p "$WORK/$peer"
  real=$("$VENV/bin/python" "$WORK/peer.py" "$peer" "http://127.0.0.1:$port" "$WORK/keys.tsv" "$WORK/$peer" 2> "$WORK/$peer/stderr") \
    || { echo "$peer failed:" >&2; tail -20 "$WORK/$peer/stderr" >&2; exit 1; }
  read -r n429 dims < <(curl -s "http://127.0.0.1:$port/flux/metrics" | python3 "$WORK/scrape.py")
  kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=
  echo "$real" | python3 "$WORK/report.py" real "$peer" "$n429" $dims
  "$BIN" run "$WORK/peers.toml" --strategy "$peer" --format json --trace "$WORK/$peer/trace.jsonl" \
    | python3 "$WORK/report.py" sim "$peer" "$WORK/$peer/trace.jsonl" "$WORK/keys.tsv"
done
