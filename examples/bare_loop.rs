//! The yardstick of `benches/run.rs` and `benches/run-vs-bare.sh`: the job of
//! `scenarios/large.toml` written as a bare discrete-event loop, with nothing of flux-sim — a
//! binary heap of events, one pair of token buckets (requests and tokens per minute) per
//! project, round robin over the projects with the scenario's retry policy (5 attempts, full
//! jitter from 1 s doubling to 60 s), open Poisson arrivals with lognormal sizes, lognormal
//! latency jitter. No windows, no daily quota, no histograms, no report: what a
//! hand-written model of the same job costs, so the whole `run` can be stated as a share of it.
//!
//! `cargo run --release --example bare_loop` prints `requests,completed,seconds,requests_per_s`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp1, StandardNormal};
use rand_pcg::Pcg64Mcg;

/// The job: `large.toml`'s figures.
#[derive(Debug, Clone, Copy)]
pub struct Job {
    /// Projects (one key each).
    pub projects: usize,
    /// Arrivals per minute.
    pub rate_per_min: f64,
    /// Arrival window, nanoseconds.
    pub duration: u64,
    /// Requests per minute per project.
    pub rpm: f64,
    /// Input tokens per minute per project.
    pub tpm: f64,
    /// Input tokens, lognormal: (mu, sigma).
    pub input: (f64, f64),
    /// Output tokens, lognormal: (mu, sigma).
    pub output: (f64, f64),
    /// Time to first token, ns.
    pub ttft: f64,
    /// Output tokens per second.
    pub tokens_per_second: f64,
    /// Sigma of the latency factor.
    pub jitter: f64,
    /// Seed.
    pub seed: u64,
}

const SECOND: u64 = 1_000_000_000;
const MINUTE: f64 = 60.0 * SECOND as f64;
const Z99: f64 = 2.326_347_874_040_840_8;

impl Job {
    /// `scenarios/large.toml`.
    pub fn large() -> Job {
        let ln = |median: f64, p99: f64| (median.ln(), (p99.ln() - median.ln()) / Z99);
        Job {
            projects: 1_000,
            rate_per_min: 900_000.0,
            duration: 70 * SECOND,
            rpm: 1_000.0,
            tpm: 1_000_000.0,
            input: ln(600.0, 6_000.0),
            output: ln(200.0, 1_200.0),
            ttft: 0.4 * SECOND as f64,
            tokens_per_second: 250.0,
            jitter: 0.3,
            seed: 1,
        }
    }
}

/// What a run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Requests that arrived.
    pub requests: u64,
    /// Completed.
    pub completed: u64,
    /// Refused attempts (429).
    pub refused: u64,
    /// Requests that gave up.
    pub failed: u64,
}

/// A project's budgets: two token buckets refilled continuously.
#[derive(Clone, Copy)]
struct Bucket {
    requests: f64,
    tokens: f64,
    at: u64,
}

/// Runs `job` and counts what happened.
pub fn run(job: Job) -> Stats {
    let mut rng = Pcg64Mcg::seed_from_u64(job.seed);
    let mut buckets = vec![
        Bucket {
            requests: job.rpm,
            tokens: job.tpm,
            at: 0
        };
        job.projects
    ];
    // (time, sequence, request index); requests live in a slab of (input, output, attempts).
    let mut heap: BinaryHeap<Reverse<(u64, u64, u32)>> = BinaryHeap::new();
    let mut reqs: Vec<(u64, u64, u32)> = Vec::new();
    let mut free: Vec<u32> = Vec::new();
    let mut stats = Stats::default();
    let mut seq = 0u64;
    let mut next_project = 0usize;
    let mut clock = 0.0f64;
    let gap = MINUTE / job.rate_per_min;
    let mut next_arrival = {
        clock += gap * Distribution::<f64>::sample(&Exp1, &mut rng);
        clock as u64
    };
    let lognormal = |rng: &mut Pcg64Mcg, (mu, sigma): (f64, f64)| -> u64 {
        let z: f64 = StandardNormal.sample(rng);
        ((mu + sigma * z).exp() + 0.5) as u64
    };
    const DONE: u32 = u32::MAX;
    loop {
        // The next event: an arrival or the heap's first (an attempt or a completion).
        let arrival_first = match heap.peek() {
            None => next_arrival < job.duration,
            Some(Reverse((t, _, _))) => next_arrival < job.duration && next_arrival <= *t,
        };
        let (now, slot) = if arrival_first {
            let now = next_arrival;
            clock += gap * Distribution::<f64>::sample(&Exp1, &mut rng);
            next_arrival = clock as u64;
            stats.requests += 1;
            let r = (lognormal(&mut rng, job.input), lognormal(&mut rng, job.output), 0);
            let slot = match free.pop() {
                Some(s) => {
                    reqs[s as usize] = r;
                    s
                }
                None => {
                    reqs.push(r);
                    reqs.len() as u32 - 1
                }
            };
            (now, slot)
        } else {
            match heap.pop() {
                None => break,
                Some(Reverse((now, _, tag))) => {
                    if tag & 1 == 1 {
                        // A completion.
                        stats.completed += 1;
                        free.push(tag >> 1);
                        continue;
                    }
                    (now, tag >> 1)
                }
            }
        };
        // An attempt: round robin, both buckets refilled to `now`, then taken or refused.
        let (input, output, attempts) = reqs[slot as usize];
        let p = next_project;
        next_project = (next_project + 1) % job.projects;
        let b = &mut buckets[p];
        let elapsed = (now - b.at) as f64 / MINUTE;
        b.requests = (b.requests + elapsed * job.rpm).min(job.rpm);
        b.tokens = (b.tokens + elapsed * job.tpm).min(job.tpm);
        b.at = now;
        seq += 1;
        if b.requests >= 1.0 && b.tokens >= input as f64 {
            b.requests -= 1.0;
            b.tokens -= input as f64;
            let z: f64 = StandardNormal.sample(&mut rng);
            let base = job.ttft + output as f64 * SECOND as f64 / job.tokens_per_second;
            let latency = (base * (job.jitter * z).exp() + 0.5) as u64;
            heap.push(Reverse((now + latency.max(1), seq, slot << 1 | 1)));
        } else {
            stats.refused += 1;
            if attempts + 1 >= 5 {
                stats.failed += 1;
                reqs[slot as usize].2 = DONE;
                free.push(slot);
            } else {
                reqs[slot as usize].2 = attempts + 1;
                let cap = (SECOND << attempts).min(60 * SECOND);
                let delay = rng.random_range(0..=cap);
                heap.push(Reverse((now + delay, seq, slot << 1)));
            }
        }
    }
    stats
}

#[allow(dead_code)]
fn main() {
    let t = std::time::Instant::now();
    let s = run(Job::large());
    let secs = t.elapsed().as_secs_f64();
    println!(
        "{},{},{secs:.3},{:.0}",
        s.requests,
        s.completed,
        s.requests as f64 / secs
    );
}
