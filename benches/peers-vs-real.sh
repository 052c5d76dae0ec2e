#!/usr/bin/env bash
# The real peer libraries, unmodified, against `flux-sim serve`, next to `flux-sim run`'s
# models of them on the same scenario (issue 30 item 2).
#
#   benches/peers-vs-real.sh [PEER ...]      # default: every peer below
#
# PEERs: gemini_flux (gemini-flux 1.1.1), backoff (google-genai 3.6.1 with HttpRetryOptions()),
# litellm_shuffle, litellm_least_busy, litellm_usage (LiteLLM 1.110.2 Router), token_bucket
# (the OpenAI cookbook's api_request_parallel_processor.py), gemini_balance (gemini-balance
# 2.2.8). It installs the libraries from PyPI into a throwaway virtualenv, starts `serve` at
# time scale 1 (the tools sleep on the wall clock) on a free loopback port, a fresh server per
# peer, runs the peer as a user would (a closed batch on a thread pool; the cookbook script
# and gemini-balance as their own processes), reads serve's own counters (`/flux/metrics`)
# for the 429s, then runs `flux-sim run --strategy PEER` on the same scenario and prints both.
# Needs python3 (with venv) and network access to PyPI; about 12 minutes in all.
# FLUX_SIM=path overrides the binary (default: $CARGO_TARGET_DIR or target, release).
#
# Two peers are not packages, so the script runs them from a copy you give it (it skips them
# otherwise, saying so):
# - COOKBOOK_PY=path: openai/openai-cookbook's examples/api_request_parallel_processor.py
#   (read at commit 04a3090). Unmodified it cannot call Gemini at all: its
#   api_endpoint_from_url accepts only https://HOST/v<digits>/ENDPOINT, so Gemini's
#   .../v1beta/openai/chat/completions raises TypeError before the first request. The script
#   applies the one edit a Gemini user must make (that regex, so the endpoint is
#   chat/completions) and nothing else; serve runs with a self-signed certificate (the script
#   insists on https), which the processor trusts through SSL_CERT_FILE. tiktoken's encodings
#   are downloaded at run time from outside PyPI, so the processor is given a tiktoken
#   encoding of the same shape as serve's token rule (4 characters a token), installed into
#   the virtualenv as a tiktoken_ext plugin and chosen with its own --token_encoding_name.
# - GEMINI_BALANCE_DIR=path: a checkout of snailyp/gemini-balance (read at 5512f7f, 2.2.8).
#   It is run unmodified with uvicorn, its requirements.txt installed into the virtualenv,
#   SQLite as its database and BASE_URL pointing at serve; a client posts the batch to it.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
BIN=${FLUX_SIM:-${CARGO_TARGET_DIR:-$ROOT/target}/release/flux-sim}
[ -x "$BIN" ] || { echo "no binary at $BIN: cargo build --release first" >&2; exit 2; }
PEERS=("$@")
[ ${#PEERS[@]} -gt 0 ] || PEERS=(gemini_flux backoff litellm_shuffle litellm_least_busy litellm_usage token_bucket gemini_balance)
WORK=$(mktemp -d /tmp/peers-vs-real.XXXXXX)
SERVE_PID=
GB_PID=
cleanup() {
  [ -n "$GB_PID" ] && kill "$GB_PID" 2>/dev/null
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null
  rm -rf "$WORK"
}
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
if ! "$VENV/bin/python" -c 'import gemini_flux, google.genai, litellm, pytz, aiohttp, tiktoken' 2>/dev/null; then
  echo "installing gemini-flux 1.1.1, google-genai 3.6.1, litellm 1.110.2, aiohttp, tiktoken into $VENV ..." >&2
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q gemini-flux==1.1.1 google-genai==3.6.1 litellm==1.110.2 pytz aiohttp tiktoken >&2
fi
if [ -n "${GEMINI_BALANCE_DIR:-}" ] && ! "$VENV/bin/python" -c 'import fastapi, uvicorn, databases, aiosqlite, apscheduler' 2>/dev/null; then
  echo "installing gemini-balance's requirements.txt into $VENV ..." >&2
  "$VENV/bin/pip" install -q -r "$GEMINI_BALANCE_DIR/requirements.txt" >&2
fi
"$VENV/bin/python" -c 'import importlib.metadata as m; print("real:", ", ".join(p + " " + m.version(p) for p in ("gemini-flux", "google-genai", "litellm", "aiohttp", "tiktoken")))'
[ -n "${GEMINI_BALANCE_DIR:-}" ] && echo "real: gemini-balance $(cat "$GEMINI_BALANCE_DIR/VERSION") (fastapi $("$VENV/bin/python" -c 'import fastapi; print(fastapi.__version__)'))"

# serve's token rule (4 characters a token) as a tiktoken encoding, for the cookbook script:
# every byte a token, "xx" and "xxxx" merged, so the batch's 400-character prompt is 100.
SITE=$("$VENV/bin/python" -c 'import tiktoken_ext, os; print(list(tiktoken_ext.__path__)[0])')
cat > "$SITE/flux_sim_chars.py" <<'PY'
"""A tiktoken encoding of serve's token rule for benches/peers-vs-real.sh."""
def _chars():
    ranks = {bytes([b]): b for b in range(256)}
    ranks[b"xx"], ranks[b"xxxx"] = 256, 257
    return {"name": "flux_sim_chars", "pat_str": r"x{1,4}|[^x]+", "mergeable_ranks": ranks,
            "special_tokens": {}}
ENCODING_CONSTRUCTORS = {"flux_sim_chars": _chars}
PY

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

# The cookbook processor as a user runs it: a requests file, the script as a process.
cat > "$WORK/cookbook.py" <<'EOF'
"""Runs the OpenAI cookbook's processor on the batch against serve's OpenAI-compatible
endpoint; prints JSON. The one edit: api_endpoint_from_url's regex (see the header)."""
import json, os, subprocess, sys, time
url, key, workdir, script = sys.argv[1:5]
REQUESTS, MODEL = 24, "gemini-2.5-flash"
PROMPT = "x" * 400  # 100 tokens by serve's rule and by the flux_sim_chars encoding
src = open(script).read()
old = '"^https://[^/]+/v\\\\d+/(.+)$"'
if src.count(old) != 1:
    sys.exit("api_request_parallel_processor.py: its api_endpoint_from_url is not the one read at 04a3090")
patched = os.path.join(workdir, "processor.py")
open(patched, "w").write(src.replace(old, '"^https://[^/]+/v\\\\d+\\\\w*/openai/(.+)$"'))
requests = os.path.join(workdir, "requests.jsonl")
with open(requests, "w") as f:
    for i in range(REQUESTS):
        f.write(json.dumps({"model": MODEL, "messages": [{"role": "user", "content": PROMPT}],
                            "max_tokens": 20, "metadata": {"i": i}}) + "\n")
save = os.path.join(workdir, "results.jsonl")
start = time.time()
# Told the key's project's limits, as `run` tells the model: flash's 4 RPM and 1,000,000 TPM.
subprocess.run([sys.executable, patched, "--requests_filepath", requests, "--save_filepath", save,
                "--request_url", url + "/v1beta/openai/chat/completions", "--api_key", key,
                "--max_requests_per_minute", "4", "--max_tokens_per_minute", "1000000",
                "--token_encoding_name", "flux_sim_chars", "--max_attempts", "5",
                "--logging_level", "30"], check=True, stdout=sys.stderr)
makespan = time.time() - start
rows = [json.loads(l) for l in open(save)]
ok = sum(1 for r in rows if isinstance(r[1], dict) and "choices" in r[1])
print(json.dumps({"completed": ok, "failed": REQUESTS - ok, "makespan_s": round(makespan, 1), "order": []}))
EOF

# gemini-balance as its users run it (uvicorn app.main:app), and a client posting the batch.
cat > "$WORK/gb_client.py" <<'EOF'
"""Posts the batch to a running gemini-balance on 4 threads; prints JSON, with the keys it
tried, in order, read from its own log ("Using API key: first6...last6")."""
import json, sys, time, urllib.request, urllib.error
from concurrent.futures import ThreadPoolExecutor
url, token, keys_file, log = sys.argv[1:5]
REQUESTS, WORKERS, MODEL = 24, 4, "gemini-2.5-flash"
body = json.dumps({"contents": [{"role": "user", "parts": [{"text": "x" * 400}]}]}).encode()
def one(i):
    req = urllib.request.Request(f"{url}/v1beta/models/{MODEL}:generateContent", data=body,
                                 headers={"content-type": "application/json", "x-goog-api-key": token})
    try:
        with urllib.request.urlopen(req, timeout=600) as r:
            return r.status == 200
    except urllib.error.HTTPError:
        return False
start = time.time()
ends = []
def run(i):
    ok = one(i)
    ends.append(time.time() - start)
    return ok
with ThreadPoolExecutor(WORKERS) as pool:
    results = list(pool.map(run, range(REQUESTS)))
keys = [l.split("\t")[0] for l in open(keys_file).read().splitlines() if l.strip()]
tail = {k[-6:]: i + 1 for i, k in enumerate(keys)}
used = [tail.get(l.split("Using API key: ")[1].strip()[-6:], "?") for l in open(log) if "Using API key: " in l]
print(json.dumps({"completed": sum(results), "failed": REQUESTS - sum(results),
                  "makespan_s": round(max(ends), 1), "order": [], "keys_tried": used}))
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
    if d.get("keys_tried"):
        print("  keys tried, in order (key #):", " ".join(map(str, d["keys_tried"])))
else:
    r = d["results"][0]
    dims = " ".join(f"{k}={v}" for k, v in sorted(r["rate_limited_by"].items()) if v)
    print(row % (peer, side, r["completed"], r["failed"] + r["unservable"], r["rate_limited"], dims or "-", r["makespan_s"]))
    tail = {l.split("\t")[0][-4:]: i + 1 for i, l in enumerate(open(sys.argv[4]).read().splitlines())}
    if peer == "gemini_balance":  # every attempt's key, from the trace
        # by send time (a trace line is written when its answer comes; requests sent at one
        # instant went in request order)
        tried = sorted((json.loads(l) for l in open(sys.argv[3])), key=lambda a: (a["time_ns"], a["request"]))
        print("  keys tried, in order (key #):", " ".join(str(tail[a["key"][-4:]]) for a in tried))
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
  case $peer in
    token_bucket) [ -n "${COOKBOOK_PY:-}" ] || { echo "$peer: skipped (COOKBOOK_PY unset; see the header)"; continue; } ;;
    gemini_balance) [ -n "${GEMINI_BALANCE_DIR:-}" ] || { echo "$peer: skipped (GEMINI_BALANCE_DIR unset; see the header)"; continue; } ;;
  esac
  port=$(free_port)
  scheme=http tls=()
  if [ "$peer" = token_bucket ]; then  # the processor calls https only
    [ -e "$WORK/tls/cert.pem" ] || "$BIN" cert "$WORK/tls" > /dev/null
    scheme=https tls=(--tls-cert "$WORK/tls/cert.pem" --tls-key "$WORK/tls/key.pem")
  fi
  "$BIN" serve "$WORK/peers.toml" --bind "127.0.0.1:$port" --time-scale 1 "${tls[@]}" > "$WORK/serve.log" 2>&1 &
  SERVE_PID=$!
  for _ in $(seq 100); do curl -sk "$scheme://127.0.0.1:$port/v1beta/models" > /dev/null && break; sleep 0.1; done
  mkdir -p "$WORK/$peer"
  case $peer in
    token_bucket)
      real=$(SSL_CERT_FILE="$WORK/tls/cert.pem" "$VENV/bin/python" "$WORK/cookbook.py" "https://127.0.0.1:$port" \
        "$(head -1 "$WORK/keys.tsv" | cut -f1)" "$WORK/$peer" "$COOKBOOK_PY" 2> "$WORK/$peer/stderr") \
        || { echo "$peer failed:" >&2; tail -20 "$WORK/$peer/stderr" >&2; exit 1; } ;;
    gemini_balance)
      gport=$(free_port)
      cp -r "$GEMINI_BALANCE_DIR" "$WORK/gb" && rm -f "$WORK/gb/.env"
      # Its settings from the environment: every key in serve's order, SQLite, serve as Gemini.
      (cd "$WORK/gb" && DATABASE_TYPE=sqlite SQLITE_DATABASE="$WORK/gb/bench_db" \
         API_KEYS="$(cut -f1 "$WORK/keys.tsv" | python3 -c 'import json,sys; print(json.dumps(sys.stdin.read().split()))')" \
         ALLOWED_TOKENS='["sk-flux-sim"]' AUTH_TOKEN=sk-flux-sim BASE_URL="http://127.0.0.1:$port/v1beta" \
         exec "$VENV/bin/python" -m uvicorn app.main:app --host 127.0.0.1 --port "$gport") > "$WORK/$peer/gb.log" 2>&1 &
      GB_PID=$!
      for _ in $(seq 600); do curl -s "http://127.0.0.1:$gport/health" > /dev/null && break; sleep 0.1; done
      real=$("$VENV/bin/python" "$WORK/gb_client.py" "http://127.0.0.1:$gport" sk-flux-sim "$WORK/keys.tsv" "$WORK/$peer/gb.log" 2> "$WORK/$peer/stderr") \
        || { echo "$peer failed:" >&2; tail -20 "$WORK/$peer/stderr" "$WORK/$peer/gb.log" >&2; exit 1; }
      kill "$GB_PID"; wait "$GB_PID" 2>/dev/null || true; GB_PID= ;;
    *)
      real=$("$VENV/bin/python" "$WORK/peer.py" "$peer" "http://127.0.0.1:$port" "$WORK/keys.tsv" "$WORK/$peer" 2> "$WORK/$peer/stderr") \
        || { echo "$peer failed:" >&2; tail -20 "$WORK/$peer/stderr" >&2; exit 1; } ;;
  esac
  read -r n429 dims < <(curl -sk "$scheme://127.0.0.1:$port/flux/metrics" | python3 "$WORK/scrape.py")
  kill "$SERVE_PID"; wait "$SERVE_PID" 2>/dev/null || true; SERVE_PID=
  echo "$real" | python3 "$WORK/report.py" real "$peer" "$n429" $dims
  "$BIN" run "$WORK/peers.toml" --strategy "$peer" --format json --trace "$WORK/$peer/trace.jsonl" \
    | python3 "$WORK/report.py" sim "$peer" "$WORK/$peer/trace.jsonl" "$WORK/keys.tsv"
done
