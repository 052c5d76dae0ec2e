//! `flux-sim sweep`: a scenario run at every point of a grid of settings, in parallel, for
//! capacity planning ("how many projects do I need?"), and which value first meets the demand.

use rayon::prelude::*;
use serde::Serialize;

use crate::core::time::{parse_duration, MINUTE, SECOND};
use crate::core::workload::Arrivals;
use crate::scenario::setting::Grid;
use crate::sim::bound::upper_bound;
use crate::sim::metrics::StrategyResult;
use crate::sim::run::{run, select_strategies};

/// One point of the grid with each strategy's result.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The value of each setting, in `--set` order, as written in TOML (strings unquoted).
    pub values: Vec<String>,
    /// The value of the first setting as a number, if it is one (a duration in seconds).
    pub x: Option<f64>,
    /// Requests per minute the workload demands (arrivals over the duration; for a closed
    /// batch, the batch over the shortest possible makespan).
    pub demanded_per_min: f64,
    /// Requests in the workload.
    pub requests: u64,
    /// Projects in the whole topology at this point (every account's).
    pub projects: usize,
    /// Accounts in the topology at this point.
    pub accounts: usize,
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
    /// The strategies to run (`--strategy`), by name; empty: the scenario's.
    pub only: Vec<String>,
}

/// Whether a setting's path is the workload's demand (its rate, batch, sessions or clients):
/// sweeping it asks how much can be served, so its answer is the largest value met.
pub fn is_demand(path: &str) -> bool {
    matches!(
        path,
        "workload.rate" | "workload.requests" | "workload.sessions" | "workload.clients" | "workload.max_requests"
    )
}

/// A setting's value as a user reads it: strings without their TOML quotes.
fn shown(v: &toml::Value) -> String {
    match v {
        toml::Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// A setting's value as a number to plot: integers and floats as they are, durations in
/// seconds.
fn number(v: &toml::Value) -> Option<f64> {
    match v {
        toml::Value::Integer(i) => Some(*i as f64),
        toml::Value::Float(f) => Some(*f),
        toml::Value::String(s) => parse_duration(s).ok().map(|d| d as f64 / SECOND as f64),
        _ => None,
    }
}

impl Sweep {
    /// A sweep over `grid` of the strategies named in `only` (all the scenario's when empty;
    /// unknown names are an error).
    pub fn new(grid: Grid, only: Vec<String>) -> Result<Sweep, String> {
        let closed = matches!(grid.base.workload.arrivals, Arrivals::Closed { .. });
        if !only.is_empty() {
            // A setting may rename or replace strategies: every point must offer the names.
            for i in 0..grid.len() {
                let combo = grid.point(i);
                let s = grid.scenario(&combo)?;
                select_strategies(&s, &only).map_err(|e| {
                    let at: Vec<String> = grid
                        .settings
                        .iter()
                        .zip(&combo)
                        .map(|(s, v)| format!("{}={v}", s.path))
                        .collect();
                    format!("{e} (with {})", at.join(" "))
                })?;
            }
        }
        Ok(Sweep { grid, closed, only })
    }

    /// Runs every grid point in parallel on `threads` threads (the results do not depend on
    /// it), calling `tick` after each.
    pub fn run(&self, threads: usize, tick: &(dyn Fn() + Sync)) -> Vec<Point> {
        match rayon::ThreadPoolBuilder::new().num_threads(threads.max(1)).build() {
            Ok(pool) => pool.install(|| self.run_here(tick)),
            // No threads to be had: the calling thread's pool does it.
            Err(_) => self.run_here(tick),
        }
    }

    fn run_here(&self, tick: &(dyn Fn() + Sync)) -> Vec<Point> {
        (0..self.grid.len())
            .into_par_iter()
            .map(|i| {
                let combo = self.grid.point(i);
                let s = self.grid.scenario(&combo).expect("checked when the grid was loaded");
                let bound = upper_bound(&s, s.seed);
                let specs = select_strategies(&s, &self.only).expect("checked on the base scenario");
                let out = run(&s, &specs, s.seed, None, 1);
                let requests = out.results.first().map_or(0, |r| r.requests);
                let demanded_per_min = match s.workload.arrivals {
                    Arrivals::Closed { .. } => bound.per_min,
                    _ => requests as f64 * MINUTE as f64 / s.workload.duration.max(1) as f64,
                };
                tick();
                Point {
                    values: combo.iter().map(shown).collect(),
                    x: combo.first().and_then(number),
                    demanded_per_min,
                    requests,
                    projects: s.topology.projects.len(),
                    accounts: s.topology.accounts.len(),
                    results: out.results,
                }
            })
            .collect()
    }

    /// For each combination of the other settings and each strategy, the first value of the
    /// first setting (in the order given) at which it meets the demand (99% of the demanded
    /// throughput, or of a closed batch, with zero 429s), if any.
    /// For a demand setting ([`is_demand`]) the last such value instead: the most it serves.
    pub fn smallest_meeting(&self, points: &[Point]) -> Vec<Answer> {
        let last = is_demand(&self.grid.settings[0].path);
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
                let at = met.is_some().then_some((p.projects, p.accounts));
                match out.iter_mut().find(|a| a.others == others && a.strategy == r.strategy) {
                    Some(a) => {
                        if met.is_some() && (a.value.is_none() || last) {
                            a.value = met;
                            a.topology = at;
                        }
                    }
                    None => out.push(Answer {
                        others: others.clone(),
                        strategy: r.strategy.clone(),
                        value: met,
                        topology: at,
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
    /// The first value of the first setting that meets the demand, if any (the last, for a
    /// demand setting).
    pub value: Option<String>,
    /// The whole topology at that value: (projects, accounts).
    pub topology: Option<(usize, usize)>,
}
