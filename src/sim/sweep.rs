//! `flux-sim sweep`: a scenario run at every point of a grid of settings, in parallel, for
//! capacity planning ("how many projects do I need?"), and which value first meets the demand.

use rayon::prelude::*;
use serde::Serialize;

use crate::core::time::MINUTE;
use crate::core::workload::Arrivals;
use crate::scenario::setting::Grid;
use crate::sim::bound::upper_bound;
use crate::sim::metrics::StrategyResult;
use crate::sim::run::run;

/// One point of the grid with each strategy's result.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The value of each setting, in `--set` order, as written in TOML.
    pub values: Vec<String>,
    /// The value of the first setting as a number, if it is one.
    pub x: Option<f64>,
    /// Requests per minute the workload demands (arrivals over the duration; for a closed
    /// batch, the batch over the shortest possible makespan).
    pub demanded_per_min: f64,
    /// Requests in the workload.
    pub requests: u64,
    /// Each strategy's result.
    pub results: Vec<StrategyResult>,
}

impl Point {
    /// Whether `r` met the demand: 99% of the requests done (closed) or 99% of the demanded
    /// throughput (open), with zero 429s.
    pub fn meets(&self, r: &StrategyResult, closed: bool) -> bool {
        let enough = if closed {
            r.completed as f64 >= 0.99 * self.requests as f64
        } else {
            r.throughput_per_min >= 0.99 * self.demanded_per_min
        };
        enough && r.rate_limited == 0
    }
}

/// A sweep: the grid and what its workload demands.
pub struct Sweep {
    /// The scenario and the settings varied.
    pub grid: Grid,
    /// Whether the workload is a closed batch.
    pub closed: bool,
}

impl Sweep {
    /// A sweep over `grid`.
    pub fn new(grid: Grid) -> Sweep {
        let closed = matches!(grid.base.workload.arrivals, Arrivals::Closed { .. });
        Sweep { grid, closed }
    }

    /// Runs every grid point (in parallel), calling `tick` after each.
    pub fn run(&self, tick: &(dyn Fn() + Sync)) -> Vec<Point> {
        (0..self.grid.len())
            .into_par_iter()
            .map(|i| {
                let combo = self.grid.point(i);
                let s = self.grid.scenario(&combo).expect("checked when the grid was loaded");
                let bound = upper_bound(&s, s.seed);
                let out = run(&s, &s.strategies, s.seed, None, 1);
                let requests = out.results.first().map_or(0, |r| r.requests);
                let demanded_per_min = match s.workload.arrivals {
                    Arrivals::Closed { .. } => bound.per_min,
                    _ => requests as f64 * MINUTE as f64 / s.workload.duration.max(1) as f64,
                };
                tick();
                Point {
                    values: combo.iter().map(|v| v.to_string()).collect(),
                    x: combo
                        .first()
                        .and_then(|v| v.as_integer().map(|i| i as f64).or(v.as_float())),
                    demanded_per_min,
                    requests,
                    results: out.results,
                }
            })
            .collect()
    }

    /// For each combination of the other settings and each strategy, the first value of the
    /// first setting (in the order given) at which it meets the demand (99% of the demanded
    /// throughput, or of a closed batch, with zero 429s), if any.
    pub fn smallest_meeting(&self, points: &[Point]) -> Vec<Answer> {
        let mut out: Vec<Answer> = Vec::new();
        for p in points {
            let others: Vec<String> = self.grid.settings[1..]
                .iter()
                .zip(&p.values[1..])
                .map(|(s, v)| format!("{}={v}", s.path))
                .collect();
            let others = others.join(" ");
            for r in &p.results {
                let met = p.meets(r, self.closed).then(|| p.values[0].clone());
                match out.iter_mut().find(|a| a.others == others && a.strategy == r.strategy) {
                    Some(a) => {
                        if a.value.is_none() {
                            a.value = met;
                        }
                    }
                    None => out.push(Answer {
                        others: others.clone(),
                        strategy: r.strategy.clone(),
                        value: met,
                    }),
                }
            }
        }
        out
    }
}

/// The answer of a sweep for one strategy under one combination of the other settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The other settings' values, as `PATH=VALUE` separated by spaces (empty with one setting).
    pub others: String,
    /// The strategy.
    pub strategy: String,
    /// The first value of the first setting that meets the demand, if any.
    pub value: Option<String>,
}
