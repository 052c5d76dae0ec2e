//! The workload: when requests arrive (open Poisson with optional on/off bursts, a closed batch
//! drained by workers, or a CSV trace), their token sizes and the model each prefers; or Live
//! sessions arriving the same ways (a closed batch: clients that reconnect). The stream
//! is a pure function of the scenario and seed, so every strategy sees the same requests.

use std::path::PathBuf;
use std::sync::Arc;

use rand::Rng;
use rand_distr::{Distribution, Exp1};
use rand_pcg::Pcg64Mcg;

use crate::core::dist::TokenDist;
use crate::core::live::{self, SessionSpec};
use crate::core::rng::{rng, unit, Stream};
use crate::core::time::{Nanos, MINUTE};

/// Which model a request prefers.
#[derive(Debug, Clone, PartialEq)]
pub enum ModelChoice {
    /// Always this model (index).
    One(usize),
    /// Drawn per request with these weights.
    Weighted(Vec<(usize, u32)>),
}

impl ModelChoice {
    /// The models requests may prefer, in the order given.
    pub fn models(&self) -> Vec<usize> {
        match self {
            ModelChoice::One(m) => vec![*m],
            ModelChoice::Weighted(v) => v.iter().map(|(m, _)| *m).collect(),
        }
    }
}

/// One row of a trace file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TraceRow {
    /// Arrival offset from the start.
    pub arrival: Nanos,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens.
    pub output_tokens: u64,
    /// Model, if the trace names one.
    pub model: Option<usize>,
}

/// How requests arrive.
#[derive(Debug, Clone, PartialEq)]
pub enum Arrivals {
    /// Poisson arrivals at `rate_per_min`, during `on` periods of `(on, off)` bursts if given.
    Open {
        /// Mean requests per minute (while on).
        rate_per_min: f64,
        /// On/off periods.
        bursts: Option<(Nanos, Nanos)>,
        /// Stop after this many requests.
        max_requests: Option<u64>,
    },
    /// `requests` requests drained by `workers` workers, each sending the next when its
    /// current one ends.
    Closed {
        /// Batch size.
        requests: u64,
        /// Concurrent workers.
        workers: u64,
    },
    /// Replayed from a CSV file.
    Trace {
        /// The rows, sorted by arrival.
        rows: Arc<[TraceRow]>,
        /// Where they came from.
        path: PathBuf,
    },
}

/// The workload of a scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkloadSpec {
    /// Arrival process.
    pub arrivals: Arrivals,
    /// Arrival window and measurement span of open and trace workloads (0 for closed).
    pub duration: Nanos,
    /// Input tokens (unused by traces).
    pub input: TokenDist,
    /// Output tokens (unused by traces).
    pub output: TokenDist,
    /// Model preference.
    pub model: ModelChoice,
    /// Live sessions instead of requests: each "request" is one session whose turns have the
    /// input and output sizes above (its tokens are the turns' sums).
    pub session: Option<SessionSpec>,
    /// The share of requests sent with Priority PayGo's header (Vertex AI), drawn per request
    /// from its own stream.
    pub priority: f64,
}

/// One request of the workload.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Request {
    /// Sequence number from 0.
    pub id: u64,
    /// Arrival time (closed workloads: when a worker picks it up, set by the driver).
    pub arrival: Nanos,
    /// Input (prompt) tokens.
    pub input_tokens: u64,
    /// Output tokens the response will have.
    pub output_tokens: u64,
    /// Preferred model (index).
    pub model: usize,
    /// Sent with Priority PayGo's header.
    pub priority: bool,
}

/// The requests of a workload, in arrival (or batch) order.
#[derive(Debug, Clone)]
pub struct RequestStream {
    spec: WorkloadSpec,
    rng: Pcg64Mcg,
    seed: u64,
    next_id: u64,
    /// Open workloads: elapsed "on" time in nanoseconds (fractional, for exact Poisson gaps).
    on_clock: f64,
}

impl RequestStream {
    /// The stream for `spec` and `seed`.
    pub fn new(spec: &WorkloadSpec, seed: u64) -> Self {
        RequestStream {
            spec: spec.clone(),
            rng: rng(seed, Stream::Workload, 0, 0),
            seed,
            next_id: 0,
            on_clock: 0.0,
        }
    }

    /// Whether request `id` is sent with Priority PayGo's header: drawn from the request's own
    /// stream, so the other draws (and every scenario without priority) are unchanged.
    fn priority(&self, id: u64) -> bool {
        self.spec.priority > 0.0 && unit(&mut rng(self.seed, Stream::Workload, id, 0x9a10)) < self.spec.priority
    }

    fn pick_model(&mut self) -> usize {
        match &self.spec.model {
            ModelChoice::One(m) => *m,
            ModelChoice::Weighted(v) => {
                let total: u64 = v.iter().map(|(_, w)| *w as u64).sum();
                let mut x = self.rng.random_range(0..total);
                for (m, w) in v {
                    if x < *w as u64 {
                        return *m;
                    }
                    x -= *w as u64;
                }
                unreachable!("weights sum to total")
            }
        }
    }
}

impl RequestStream {
    /// Writes the stream's next request into `out` (false, `out` unchanged, once the stream
    /// has ended). A driver that keeps the next request in place calls this rather than
    /// [`Iterator::next`]: the request is not moved out of a return slot while its sizes are
    /// still being computed.
    pub(crate) fn next_into(&mut self, out: &mut Request) -> bool {
        let id = self.next_id;
        let arrival = match &self.spec.arrivals {
            Arrivals::Closed { requests, .. } => {
                if id >= *requests {
                    return false;
                }
                0
            }
            Arrivals::Open {
                rate_per_min,
                bursts,
                max_requests,
            } => {
                if max_requests.is_some_and(|m| id >= m) {
                    return false;
                }
                let mean_gap = MINUTE as f64 / rate_per_min;
                let e: f64 = Exp1.sample(&mut self.rng);
                self.on_clock += e * mean_gap;
                let on = (self.on_clock + 0.5) as Nanos;
                let t = match bursts {
                    None => on,
                    Some((on_len, off_len)) => (on / on_len) * (on_len + off_len) + on % on_len,
                };
                if t >= self.spec.duration {
                    return false;
                }
                t
            }
            Arrivals::Trace { rows, .. } => {
                let Some(row) = rows.get(id as usize).copied() else {
                    return false;
                };
                self.next_id += 1;
                out.id = id;
                out.arrival = row.arrival;
                out.input_tokens = row.input_tokens;
                out.output_tokens = row.output_tokens;
                out.model = match row.model {
                    Some(m) => m,
                    None => self.pick_model(),
                };
                out.priority = self.priority(id);
                return true;
            }
        };
        self.next_id += 1;
        out.id = id;
        out.arrival = arrival;
        match &self.spec.session {
            // A session's turns come from their own stream (the server plans them again).
            Some(session) => {
                let (i, o) = live::turns(session, &self.spec.input, &self.spec.output, self.seed, id)
                    .fold((0u64, 0u64), |(i, o), (ti, to)| {
                        (i.saturating_add(ti), o.saturating_add(to))
                    });
                out.input_tokens = i;
                out.output_tokens = o;
            }
            None => {
                out.input_tokens = self.spec.input.sample(&mut self.rng);
                out.output_tokens = self.spec.output.sample(&mut self.rng);
            }
        }
        out.model = self.pick_model();
        out.priority = self.priority(id);
        true
    }
}

impl Iterator for RequestStream {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        let mut r = Request::default();
        self.next_into(&mut r).then_some(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open(rate: f64, bursts: Option<(Nanos, Nanos)>) -> WorkloadSpec {
        WorkloadSpec {
            arrivals: Arrivals::Open {
                rate_per_min: rate,
                bursts,
                max_requests: None,
            },
            duration: 600 * MINUTE,
            input: TokenDist::Uniform { min: 10, max: 20 },
            output: TokenDist::Fixed(5),
            model: ModelChoice::One(0),
            session: None,
            priority: 0.0,
        }
    }

    #[test]
    fn open_arrivals_have_the_requested_rate_and_are_sorted() {
        let v: Vec<Request> = RequestStream::new(&open(60.0, None), 7).collect();
        let n = v.len() as f64;
        assert!((n - 36_000.0).abs() < 600.0, "{n}");
        assert!(v.windows(2).all(|w| w[0].arrival <= w[1].arrival));
        assert!(v
            .iter()
            .all(|r| (10..=20).contains(&r.input_tokens) && r.output_tokens == 5));
    }

    #[test]
    fn bursts_only_arrive_while_on() {
        let v: Vec<Request> = RequestStream::new(&open(60.0, Some((MINUTE, 2 * MINUTE))), 7).collect();
        assert!(v.iter().all(|r| r.arrival % (3 * MINUTE) < MINUTE));
        assert!((v.len() as f64 - 12_000.0).abs() < 400.0, "{}", v.len());
    }

    #[test]
    fn same_seed_same_stream_other_seed_other_stream() {
        let a: Vec<Request> = RequestStream::new(&open(10.0, None), 1).take(50).collect();
        let b: Vec<Request> = RequestStream::new(&open(10.0, None), 1).take(50).collect();
        let c: Vec<Request> = RequestStream::new(&open(10.0, None), 2).take(50).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn closed_batch_and_weighted_models() {
        let spec = WorkloadSpec {
            arrivals: Arrivals::Closed {
                requests: 1000,
                workers: 4,
            },
            duration: 0,
            input: TokenDist::Fixed(1),
            output: TokenDist::Fixed(1),
            model: ModelChoice::Weighted(vec![(0, 1), (1, 3)]),
            session: None,
            priority: 0.0,
        };
        let v: Vec<Request> = RequestStream::new(&spec, 1).collect();
        assert_eq!(v.len(), 1000);
        let ones = v.iter().filter(|r| r.model == 1).count();
        assert!((700..800).contains(&ones), "{ones}");
    }
}
