//! A run: the chosen strategies, one after another, each on a fresh server with the same
//! request stream, and the scenario's upper bound.

use crate::bound::upper_bound;
use crate::engine::{simulate, AttemptRecord};
use crate::metrics::{round3, RunResult};
use crate::scenario::{Scenario, StrategySpec};
use crate::time::SECOND;

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
                for b in ["round_robin", "fixed_interval", "exact_cooldown"] {
                    if !known.contains(&b) {
                        known.push(b);
                    }
                }
                format!("--strategy: unknown strategy {n:?}; this scenario offers {known:?}")
            })?,
        };
        if out.iter().any(|o| o.name == spec.name) {
            return Err(format!("--strategy: {n:?} is given twice"));
        }
        out.push(spec);
    }
    Ok(out)
}

/// Receives each attempt of a run with its strategy's name.
pub type TraceSink<'a> = &'a mut dyn FnMut(&str, &AttemptRecord);

/// Runs `strategies` on `scenario` with `seed`. `trace` receives each attempt with its
/// strategy's name.
pub fn run(scenario: &Scenario, strategies: &[StrategySpec], seed: u64, mut trace: Option<TraceSink>) -> RunResult {
    let bound = upper_bound(scenario, seed);
    let mut results = Vec::new();
    let mut longest = 0.0f64;
    for spec in strategies {
        let name = spec.name.clone();
        let result = match trace.as_mut() {
            Some(t) => {
                let mut f = |a: &AttemptRecord| t(&name, a);
                simulate(scenario, spec, seed, &bound, Some(&mut f))
            }
            None => simulate(scenario, spec, seed, &bound, None),
        };
        let span = result.makespan_s.unwrap_or(scenario.horizon as f64 / SECOND as f64);
        longest = longest.max(span);
        results.push(result);
    }
    RunResult {
        scenario: scenario.name.clone(),
        seed,
        simulated_seconds: round3(longest),
        results,
    }
}
