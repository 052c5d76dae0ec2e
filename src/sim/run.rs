//! A run: the chosen strategies, one after another, each on a fresh server with the same
//! request stream, and the scenario's upper bound.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::core::time::SECOND;
use crate::scenario::Scenario;
use crate::sim::bound::{Bound, BoundPass};
use crate::sim::clairvoyant::{reference, Reference, MAX_REQUESTS};
use crate::sim::engine::{simulate_unbounded, AttemptRecord, Control, SimOptions, Simulation, Unbounded};
use crate::sim::metrics::{retry_short, round3, ReferenceShare, RunResult};
use crate::sim::timeline::Details;
use crate::strategy::StrategySpec;

/// Picks the strategies named on the command line (all of the scenario's when none): a name
/// the scenario configures, else a built-in kind name with its defaults.
pub fn select_strategies(s: &Scenario, names: &[String]) -> Result<Vec<StrategySpec>, String> {
    if names.is_empty() {
        return Ok(s.strategies.clone());
    }
    let mut out: Vec<StrategySpec> = Vec::new();
    for n in names {
        let spec = match s.strategies.iter().find(|x| &x.name == n) {
            Some(x) => x.clone(),
            None => s.builtin_strategy(n).ok_or_else(|| {
                let mut known: Vec<&str> = s.strategies.iter().map(|x| x.name.as_str()).collect();
                for d in crate::strategy::KINDS {
                    if !known.contains(&d.name) {
                        known.push(d.name);
                    }
                }
                format!("unknown strategy {n:?}; this scenario offers {known:?}")
            })?,
        };
        let live = s.workload.session.is_some();
        if !spec.kind.def().serves(live) {
            return Err(spec.kind.def().cannot(live));
        }
        if out.iter().any(|o| o.name == spec.name) {
            return Err(format!("{n:?} is given twice"));
        }
        out.push(spec);
    }
    Ok(out)
}

/// Receives each attempt of a run with its strategy's name.
pub type TraceSink<'a> = &'a mut dyn FnMut(&str, &AttemptRecord);

/// Runs `strategies` on `scenario` with `seed` on up to `threads` threads (each strategy is
/// independent, so the results are identical to a sequential run). `trace`, if given,
/// receives each attempt with its strategy's name; tracing runs the strategies one after
/// another so the trace is written in order without buffering.
pub fn run(
    scenario: &Scenario,
    strategies: &[StrategySpec],
    seed: u64,
    trace: Option<TraceSink>,
    threads: usize,
) -> RunResult {
    let opts = RunOptions {
        trace,
        threads,
        ..RunOptions::default()
    };
    run_detailed(scenario, strategies, seed, opts).0
}

/// How a run is carried out and what it records, beside what it runs.
#[derive(Default)]
pub struct RunOptions<'a> {
    /// Receives each attempt with its strategy's name (the strategies then run one after
    /// another, so the trace is in order).
    pub trace: Option<TraceSink<'a>>,
    /// Threads to run strategies on (0 or 1: one after another; the result is the same).
    pub threads: usize,
    /// Collect each strategy's [`Details`] (what a report shows).
    pub details: bool,
    /// Watches and may stop the run from another thread.
    pub control: Option<&'a Control>,
}

/// [`run`], also collecting each strategy's [`Details`] (for reports) when `opts.details`.
pub fn run_detailed(
    scenario: &Scenario,
    strategies: &[StrategySpec],
    seed: u64,
    opts: RunOptions,
) -> (RunResult, Vec<Details>) {
    let RunOptions {
        trace,
        threads,
        details,
        control,
    } = opts;
    let sim_opts = || SimOptions {
        trace: None,
        details,
        control,
    };
    // Each strategy's own bound: the models its fallback chain lets it use (computed once per
    // distinct chain, by the pass the chain's first strategy's simulation feeds with the
    // requests it draws, so the workload is drawn once for both).
    let first_of_chain: Vec<bool> = strategies
        .iter()
        .enumerate()
        .map(|(i, spec)| strategies[..i].iter().all(|o| o.fallback != spec.fallback))
        .collect();
    let pass_of = |i: usize| first_of_chain[i].then(|| BoundPass::new(scenario, seed, &strategies[i].fallback));
    let ran: Vec<(Unbounded, Option<BoundPass>)> = match trace {
        Some(t) => strategies
            .iter()
            .enumerate()
            .map(|(i, spec)| {
                let mut f = |a: &AttemptRecord| t(&spec.name, a);
                simulate_unbounded(
                    scenario,
                    spec,
                    seed,
                    SimOptions {
                        trace: Some(&mut f),
                        ..sim_opts()
                    },
                    pass_of(i),
                )
            })
            .collect(),
        None if threads <= 1 || strategies.len() <= 1 => strategies
            .iter()
            .enumerate()
            .map(|(i, spec)| simulate_unbounded(scenario, spec, seed, sim_opts(), pass_of(i)))
            .collect(),
        None => {
            let next = AtomicUsize::new(0);
            type Ran<'a> = Mutex<Option<(Unbounded<'a>, Option<BoundPass<'a>>)>>;
            let done: Vec<Ran> = strategies.iter().map(|_| Mutex::new(None)).collect();
            std::thread::scope(|scope| {
                for _ in 0..threads.min(strategies.len()) {
                    scope.spawn(|| loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        let Some(spec) = strategies.get(i) else { break };
                        let r = simulate_unbounded(scenario, spec, seed, sim_opts(), pass_of(i));
                        *done[i].lock().expect("no worker panics while holding it") = Some(r);
                    });
                }
            });
            done.into_iter()
                .map(|m| m.into_inner().expect("not poisoned").expect("every strategy ran"))
                .collect()
        }
    };
    // The passes, complete, give the bounds; each simulation is judged against its chain's.
    // Each chain's clairvoyant reference schedule likewise; the pass has counted the requests,
    // so a run with more than the reference takes is not drawn again to find it out.
    let mut bounds: Vec<(&[usize], Bound)> = Vec::new();
    let mut chains: Vec<(&[usize], Option<Reference>)> = Vec::new();
    let mut unbounded = Vec::with_capacity(ran.len());
    for ((u, pass), spec) in ran.into_iter().zip(strategies) {
        if let Some(p) = pass {
            let reference = (p.requests() <= MAX_REQUESTS)
                .then(|| reference(scenario, seed, &spec.fallback))
                .flatten();
            chains.push((&spec.fallback, reference));
            bounds.push((&spec.fallback, p.bound()));
        }
        unbounded.push(u);
    }
    let bound_of = |spec: &StrategySpec| -> &Bound {
        &bounds
            .iter()
            .find(|(c, _)| *c == spec.fallback.as_slice())
            .expect("every chain's first strategy fed its pass")
            .1
    };
    let reference_of = |spec: &StrategySpec| {
        &chains
            .iter()
            .find(|(c, _)| *c == spec.fallback.as_slice())
            .expect("every chain is computed")
            .1
    };
    let sims: Vec<Simulation> = unbounded
        .into_iter()
        .zip(strategies)
        .map(|(u, spec)| u.finish(bound_of(spec)))
        .collect();
    let longest = sims
        .iter()
        .map(|s| s.span as f64 / SECOND as f64)
        .fold(0.0f64, f64::max);
    let mut results = Vec::new();
    let mut all_details = Vec::new();
    for (s, spec) in sims.into_iter().zip(strategies) {
        let mut result = s.result;
        result.retry = retry_short(&spec.retry);
        if let Some(r) = reference_of(spec) {
            result.reference = Some(ReferenceShare::of(&result, r));
        }
        results.push(result);
        all_details.extend(s.details);
    }
    (
        RunResult {
            scenario: scenario.name.clone(),
            seed,
            simulated_seconds: round3(longest),
            assumes: assumptions(scenario),
            fleet: scenario.fleet.describe(),
            results,
        },
        all_details,
    )
}

/// The default number of threads: every core.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// The settings of `scenario` whose value Google does not document and that can change which
/// strategy does best: how per-minute windows are measured, whether refused requests count,
/// and for Live sessions when a refused or walked-away session's slot is freed.
pub fn assumptions(scenario: &Scenario) -> Vec<String> {
    let l = scenario.server.ledger;
    let window = match l.window {
        crate::core::ledger::WindowKind::Sliding => "sliding",
        crate::core::ledger::WindowKind::Fixed => "fixed",
        crate::core::ledger::WindowKind::Bucket => "bucket",
    };
    let mut out = vec![
        format!("server.window = \"{window}\""),
        format!("server.count_rejected = {}", l.count_rejected),
    ];
    if scenario.workload.session.is_some() {
        let snake = |camel: String| {
            let mut o = String::new();
            for (i, c) in camel.chars().enumerate() {
                if c.is_uppercase() && i > 0 {
                    o.push('_');
                }
                o.extend(c.to_lowercase());
            }
            o
        };
        let live = &scenario.server.live;
        out.push(format!(
            "server.live.early_close = \"{}\"",
            snake(format!("{:?}", live.early_close))
        ));
        out.push(format!(
            "server.live.quota_check = \"{}\"",
            snake(format!("{:?}", live.quota_check))
        ));
        out.push(format!(
            "server.live.release = \"{}\"",
            crate::core::time::format_duration(live.release)
        ));
    }
    out
}
