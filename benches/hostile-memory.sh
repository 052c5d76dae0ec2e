#!/usr/bin/env bash
# Peak memory of `flux-sim serve` and `flux-sim proxy` under issue 29's worst case of each
# kind, on real processes over loopback (run locally, not in CI; about 3 minutes a binary):
#   live      200 Live clients, each holding a partial 4 MiB setup frame (serve only: the
#             proxy has no Live route)
#   bodies    200 clients each sending a 4 MiB generateContent body at once (the proxy's
#             project allows 2 a minute and --deadline is 10m, so the rest wait for their
#             send, their bodies held)
#   slowloris 1,200 connections sending their headers a byte a second
#   template  2 prompts at once, each showing a 1.5 MB JSON template of 40,000 fields
# Each case starts fresh processes (the proxy in front of a serve of the same binary) and
# holds the clients HOLD seconds (default 8). It prints, per server and case, the process's
# peak resident memory (VmHWM in /proc/PID/status), its resident memory 2 s after the clients
# left (VmRSS), and what the clients saw (statuses; connections still open).
#
# Usage: benches/hostile-memory.sh [FLUX_SIM_BINARY] [CASE...]
#   (default binary target/release/flux-sim; default cases: all)
# Compare two builds: benches/hostile-memory.sh old/flux-sim; benches/hostile-memory.sh new/flux-sim
set -euo pipefail
BIN=${1:-target/release/flux-sim}
shift || true
exec python3 - "$BIN" "$@" <<'PY'
import json, os, socket, subprocess, sys, tempfile, threading, time

BIN = os.path.abspath(sys.argv[1])
CASES = sys.argv[2:] or ["live", "bodies", "slowloris", "template"]
HOLD = float(os.environ.get("HOLD", "8"))
KEY = "AIzaSyHOSTILE-memory-key-0001"
TOKEN = "hostile-memory-token-0001"
LIVE_MODEL = "gemini-2.0-flash-live-001"
GENERATE = "/v1beta/models/gemini-2.5-flash:generateContent"

def scenario(rpm):
    return f'''
name = "hostile-memory"
[server.latency]
ttft = "1ms"
tokens_per_second = 1000000
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = {rpm}
[models."{LIVE_MODEL}"]
live = true
concurrent = 1000
[topology]
projects = 1
[[topology.keys]]
project = "default-1"
key = "{KEY}"
[workload]
kind = "closed"
requests = 1
workers = 1
model = "gemini-2.5-flash"
input_tokens = {{ dist = "fixed", value = 10 }}
output_tokens = {{ dist = "fixed", value = 5 }}
'''

def start(args):
    """Starts flux-sim with args; returns (process, address from its banner)."""
    p = subprocess.Popen([BIN] + args + ["--bind", "127.0.0.1:0"], stderr=subprocess.PIPE,
                         stdout=subprocess.DEVNULL, env=dict(os.environ, FLUX_PROXY_TOKEN=TOKEN))
    line = p.stderr.readline().decode()
    addr = [w for w in line.split() if w.startswith("http://")][-1]
    addr = addr[len("http://"):].rstrip(";)")
    # Keep draining stderr so the process never blocks on it.
    threading.Thread(target=lambda: p.stderr.read(), daemon=True).start()
    host, port = addr.rsplit(":", 1)
    return p, (host, int(port))

def status(pid, field):
    with open(f"/proc/{pid}/status") as f:
        for l in f:
            if l.startswith(field + ":"):
                return int(l.split()[1]) // 1024  # MB (kB / 1024)
    return -1

def connect(addr):
    s = socket.create_connection(addr, timeout=60)
    return s

def read_status(s):
    try:
        data = s.recv(64)
        return int(data.split(b" ")[1]) if data.startswith(b"HTTP/") else ("closed" if not data else "?")
    except socket.timeout:
        return "no answer"
    except OSError as e:
        return type(e).__name__

# A setup frame announced at 4 MiB (its text unfinished JSON: it never completes anyway),
# masked with a zero key (valid, and the masked bytes are the payload), built once.
SETUP_SIZE = 4 * 1024 * 1024 - 1024
SETUP = (json.dumps({"setup": {"model": f"models/{LIVE_MODEL}", "systemInstruction": "a" * SETUP_SIZE}}).encode()[:SETUP_SIZE])
SETUP_FRAME = bytes([0x81, 0x80 | 127]) + SETUP_SIZE.to_bytes(8, "big") + b"\0\0\0\0" + SETUP

def live_client(addr, results, i):
    s = connect(addr)
    s.sendall((f"GET /ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent HTTP/1.1\r\n"
               f"host: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
               f"sec-websocket-version: 13\r\nx-goog-api-key: {KEY}\r\n\r\n").encode())
    head = s.recv(4096)
    if not head.startswith(b"HTTP/1.1 101"):
        results[i] = "no upgrade"
        return
    # The setup frame, all of it but its last byte.
    s.settimeout(HOLD + 5)
    try:
        s.sendall(SETUP_FRAME[:-1])
        results[i] = "sent"
    except OSError as e:
        results[i] = "send: " + type(e).__name__
    results[i] = (results[i], s)

def body_client(addr, results, i, key):
    s = connect(addr)
    body = json.dumps({"contents": [{"parts": [{"text": "word " * 800_000}]}]}).encode()
    assert len(body) <= 4 * 1024 * 1024
    s.sendall((f"POST {GENERATE} HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {key}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\n\r\n").encode())
    try:
        s.sendall(body)
    except OSError as e:
        results[i] = ("send: " + type(e).__name__, s)
        return
    s.settimeout(HOLD)
    results[i] = (read_status(s), s)

def slow_client(addr, results, i):
    try:
        s = connect(addr)
        s.sendall(f"POST {GENERATE} HTTP/1.1\r\nhost: x\r\n".encode())
        results[i] = ("open", s)
    except OSError as e:
        results[i] = ("connect: " + type(e).__name__, None)

def template_client(addr, results, i, key):
    fields = ", ".join(f'"field_number_{n:05}": "<string>"' for n in range(40_000))
    body = json.dumps({"contents": [{"parts": [{"text": "Answer in JSON exactly like this template: {" + fields + "}"}]}]}).encode()
    s = connect(addr)
    s.settimeout(300)
    t = time.time()
    s.sendall((f"POST {GENERATE} HTTP/1.1\r\nhost: x\r\nx-goog-api-key: {key}\r\ncontent-type: application/json\r\n"
               f"content-length: {len(body)}\r\nconnection: close\r\n\r\n").encode() + body)
    results[i] = (f"{read_status(s)} in {time.time() - t:.1f}s", s)

def run(threads):
    for t in threads:
        t.start()
    for t in threads:
        t.join()

def case(server, name, cfg_dir):
    serve_cfg = os.path.join(cfg_dir, "serve.toml")
    proxy_cfg = os.path.join(cfg_dir, "proxy.toml")
    procs = []
    try:
        up, up_addr = start(["serve", serve_cfg])
        procs.append(up)
        if server == "proxy":
            p, addr = start(["proxy", proxy_cfg, "--upstream", f"http://{up_addr[0]}:{up_addr[1]}", "--deadline", "10m"])
            procs.append(p)
            key = TOKEN
        else:
            p, addr = up, up_addr
            key = KEY
        time.sleep(0.5)
        idle = status(p.pid, "VmRSS")
        results = {}
        n = {"live": 200, "bodies": 200, "slowloris": 1200, "template": 2}[name]
        target = {"live": live_client, "slowloris": slow_client}.get(name)
        if target:
            threads = [threading.Thread(target=target, args=(addr, results, i)) for i in range(n)]
        else:
            f = body_client if name == "bodies" else template_client
            threads = [threading.Thread(target=f, args=(addr, results, i, key)) for i in range(n)]
        t0 = time.time()
        run(threads)
        if name == "slowloris":
            # A header byte a second, for 15 s; then count what the server has not closed.
            for _ in range(15):
                for r in results.values():
                    if r[1] is not None and r[0] == "open":
                        try:
                            r[1].sendall(b"x")
                        except OSError:
                            pass
                time.sleep(1)
            still = 0
            for r in results.values():
                if r[1] is None:
                    continue
                r[1].setblocking(False)
                try:
                    while r[1].recv(65536):
                        pass  # an answer (408) before the close: read on
                except BlockingIOError:
                    still += 1  # nothing more to read and not closed: still open
                except OSError:
                    pass
            seen = f"{still} of {n} still open after 15 s"
        else:
            time.sleep(max(0.0, HOLD - (time.time() - t0)))
            counts = {}
            for r in results.values():
                k = r[0] if isinstance(r, tuple) else r
                counts[str(k).split(" in ")[0]] = counts.get(str(k).split(" in ")[0], 0) + 1
            seen = ", ".join(f"{v}× {k}" for k, v in sorted(counts.items()))
            if name == "template":
                seen = "; ".join(str(r[0]) for r in results.values())
        peak = status(p.pid, "VmHWM")
        for r in results.values():
            if isinstance(r, tuple) and r[1] is not None:
                r[1].close()
        time.sleep(2)
        after = status(p.pid, "VmRSS")
        print(f"{server:5} {name:9} idle {idle:4} MB  peak {peak:4} MB  after {after:4} MB  ({seen})", flush=True)
    finally:
        for q in procs:
            q.kill()
            q.wait()

with tempfile.TemporaryDirectory() as d:
    open(os.path.join(d, "serve.toml"), "w").write(scenario(100000))
    open(os.path.join(d, "proxy.toml"), "w").write(scenario(2))
    print(f"# {BIN}, hold {HOLD:g} s", flush=True)
    for name in CASES:
        for server in ["serve", "proxy"]:
            if server == "proxy" and name == "live":
                continue
            case(server, name, d)
PY
