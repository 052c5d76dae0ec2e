#!/usr/bin/env python3
"""An independent event-by-event model of `scenarios/large.toml`'s round_robin job, in Python,
written from the scenario's text (not from flux-sim's code): the yardstick of issue #34's
"the whole run at 100x a SimPy model". Two implementations of the same model:

  simpy  one SimPy process per request (SimPy 4; `pip install simpy` in a throwaway venv);
  heap   a plain-Python loop over a `heapq` of events (no library).

The job: 1,000 projects, one key each, on one model with 1,000 RPM, 1,000,000 input TPM and
10,000 RPD per project, counted in exact sliding 60 s windows (any 60 s interval (t - 60 s, t]
holds at most the limit). Open Poisson arrivals at 900,000 a minute for 70 s; input tokens
lognormal with median 600 and p99 6,000, output tokens median 200 and p99 1,200 (rounded, at
least 1). Each attempt goes to the next key in order (round robin over every key, retries
included); a refused attempt (429) is retried after a full-jitter backoff, uniform in
[0, min(60 s, 1 s * 2^(attempt - 1))), at most 5 attempts in all. An admitted request holds the
client for (400 ms + output / 250 tokens/s) times a lognormal factor of median 1 and sigma 0.3.
Time is integer nanoseconds; the run stops at 70 s (events at exactly 70 s still happen).

Its random numbers are Python's own (Mersenne Twister, seeded), so its counts match flux-sim's
statistically, not draw for draw. Prints one CSV line:
model,requests,completed,refused,failed,seconds,requests_per_s

Usage: python3 benches/simpy_large.py simpy|heap [SEED]
"""

import heapq
import math
import random
import sys
import time
from collections import deque

SECOND = 1_000_000_000
MINUTE = 60 * SECOND
Z99 = 2.3263478740408408

PROJECTS = 1_000
RPM = 1_000
TPM = 1_000_000
RPD = 10_000
RATE_PER_MIN = 900_000
DURATION = 70 * SECOND
TTFT = 400_000_000
TOKENS_PER_SECOND = 250
JITTER = 0.3
MAX_ATTEMPTS = 5
BASE = SECOND
CAP = 60 * SECOND


def lognormal(median, p99):
    mu = math.log(median)
    return mu, (math.log(p99) - mu) / Z99


INPUT = lognormal(600, 6_000)
OUTPUT = lognormal(200, 1_200)


class Quota:
    """One project's budgets: a sliding window of (time, tokens) entries, and the day's count."""

    __slots__ = ("entries", "tokens", "today")

    def __init__(self):
        self.entries = deque()
        self.tokens = 0
        self.today = 0

    def admit(self, now, tokens):
        e = self.entries
        while e and e[0][0] + MINUTE <= now:
            self.tokens -= e.popleft()[1]
        if len(e) + 1 > RPM or self.tokens + tokens > TPM or self.today + 1 > RPD:
            return False
        e.append((now, tokens))
        self.tokens += tokens
        self.today += 1
        return True


class Job:
    """What both implementations share: the quotas, the round robin, the draws, the counts."""

    def __init__(self, seed):
        self.rng = random.Random(seed)
        self.quotas = [Quota() for _ in range(PROJECTS)]
        self.next_key = 0
        self.requests = self.completed = self.refused = self.failed = 0
        self.clock = 0.0
        self.gap = MINUTE / RATE_PER_MIN

    def next_arrival(self):
        """The next arrival's instant (may be past the duration: then there is none)."""
        self.clock += self.rng.expovariate(1.0) * self.gap
        return int(self.clock + 0.5)

    def sizes(self):
        r = self.rng
        i = max(1, int(math.exp(r.gauss(*INPUT)) + 0.5))
        o = max(1, int(math.exp(r.gauss(*OUTPUT)) + 0.5))
        return i, o

    def attempt(self, now, tokens):
        """Sends one attempt on the next key: True if admitted."""
        p = self.next_key
        self.next_key = (p + 1) % PROJECTS
        if self.quotas[p].admit(now, tokens):
            return True
        self.refused += 1
        return False

    def latency(self, output):
        base = TTFT + output * SECOND / TOKENS_PER_SECOND
        return max(1, int(base * math.exp(JITTER * self.rng.gauss(0.0, 1.0)) + 0.5))

    def backoff(self, attempts):
        """The delay after the `attempts`-th refusal, or None to give up."""
        if attempts >= MAX_ATTEMPTS:
            self.failed += 1
            return None
        return int(min(CAP, BASE << (attempts - 1)) * self.rng.random())


def run_simpy(seed):
    import simpy

    job = Job(seed)
    env = simpy.Environment()

    def request(inp, out):
        attempts = 0
        while True:
            attempts += 1
            if job.attempt(env.now, inp):
                yield env.timeout(job.latency(out))
                job.completed += 1
                return
            delay = job.backoff(attempts)
            if delay is None:
                return
            yield env.timeout(delay)

    def arrivals():
        while True:
            t = job.next_arrival()
            if t >= DURATION:
                return
            yield env.timeout(t - env.now)
            job.requests += 1
            inp, out = job.sizes()
            env.process(request(inp, out))

    env.process(arrivals())
    env.run(until=DURATION + 1)
    return job


def run_heap(seed):
    job = Job(seed)
    ARRIVE, RETRY, DONE = 0, 1, 2
    heap = []
    seq = 0
    t = job.next_arrival()
    if t < DURATION:
        heap.append((t, 0, ARRIVE, None))
    while heap:
        now, _, kind, req = heapq.heappop(heap)
        if now > DURATION:
            break
        if kind == DONE:
            job.completed += 1
            continue
        if kind == ARRIVE:
            job.requests += 1
            inp, out = job.sizes()
            req = [inp, out, 0]
            t = job.next_arrival()
            if t < DURATION:
                seq += 1
                heapq.heappush(heap, (t, seq, ARRIVE, None))
        req[2] += 1
        seq += 1
        if job.attempt(now, req[0]):
            heapq.heappush(heap, (now + job.latency(req[1]), seq, DONE, None))
        else:
            delay = job.backoff(req[2])
            if delay is not None:
                heapq.heappush(heap, (now + delay, seq, RETRY, req))
    return job


def main():
    model = sys.argv[1] if len(sys.argv) > 1 else "simpy"
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    run = {"simpy": run_simpy, "heap": run_heap}.get(model)
    if run is None:
        sys.exit(f"simpy_large.py: model must be simpy or heap, got {model!r}")
    t = time.perf_counter()
    job = run(seed)
    secs = time.perf_counter() - t
    print(f"{model},{job.requests},{job.completed},{job.refused},{job.failed},{secs:.3f},{job.requests / secs:.0f}")


if __name__ == "__main__":
    main()
