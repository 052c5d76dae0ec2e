//! A strategy as configured: which algorithm, its parameters, its retry policy, its model
//! fallback chain and the limits it believes; and the built-in strategies a scenario gets when
//! it lists none.

use crate::core::ledger::Limits;
use crate::core::time::{Nanos, SECOND};
use crate::strategy::retry::RetryPolicy;

/// Which algorithm a strategy runs.
#[derive(Debug, Clone, PartialEq)]
pub enum StrategyKind {
    /// Next key in order, sent at once.
    RoundRobin,
    /// A key is reused only `interval` after its last use.
    FixedInterval {
        /// Reuse interval.
        interval: Nanos,
    },
    /// Exact per-budget cooldowns.
    ExactCooldown {
        /// Reproduce gemini-flux's blind spots.
        gemini_flux: bool,
        /// Safety margin: the replica holds each minute-window entry this much longer than
        /// 60 s, so sends that reach the server up to this late still fit (0: exact).
        margin: Nanos,
    },
}

impl StrategyKind {
    /// The kind's name as written in scenarios.
    pub fn name(&self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round_robin",
            StrategyKind::FixedInterval { .. } => "fixed_interval",
            StrategyKind::ExactCooldown { gemini_flux: false, .. } => "exact_cooldown",
            StrategyKind::ExactCooldown { gemini_flux: true, .. } => "exact_cooldown/gemini-flux",
        }
    }
}

/// A strategy to run, as configured.
#[derive(Debug, Clone, PartialEq)]
pub struct StrategySpec {
    /// Unique display name.
    pub name: String,
    /// The algorithm.
    pub kind: StrategyKind,
    /// Retry policy.
    pub retry: RetryPolicy,
    /// Models to fall back to, in order, after the request's own (by index).
    pub fallback: Vec<usize>,
    /// Limits the strategy believes, per model (`None`: the true per-project ones).
    pub known_limits: Vec<Option<Limits>>,
}

/// The built-in kinds with one line each, for `flux-sim strategies` and `run --help`.
pub const BUILTINS: [(&str, &str); 3] = [
    ("round_robin", "the next key in order, sent at once; tracks nothing (key-mixer)"),
    (
        "fixed_interval",
        "a key is reused only `interval` after its last use, whatever the request (the hand-written rotator)",
    ),
    (
        "exact_cooldown",
        "a replica of the quota ledger per project: sends exactly when a budget has room; model fallback; learns from RetryInfo",
    ),
];

/// Every built-in strategy: its name, what it does, and its defaults (parameters and retry
/// policy), as `flux-sim strategies` prints it.
pub fn builtins_help() -> String {
    let mut out = String::new();
    for (name, what) in BUILTINS {
        let spec = StrategySpec::builtin(name, 1).expect("listed built-in");
        let params = match spec.kind {
            StrategyKind::RoundRobin => String::new(),
            StrategyKind::FixedInterval { interval } => {
                format!("interval {}; ", crate::core::time::format_duration(interval))
            }
            StrategyKind::ExactCooldown { margin, .. } => format!(
                "margin {}; compat = \"gemini-flux\" for that library's blind spots; ",
                crate::core::time::format_duration(margin)
            ),
        };
        out.push_str(&format!(
            "  {name:<16}{what}\n  {:<16}defaults: {params}retry {}\n",
            "",
            spec.retry.describe()
        ));
    }
    out
}

impl StrategySpec {
    /// The built-in strategy of a kind name (`round_robin`, `fixed_interval`, `exact_cooldown`)
    /// with its default parameters and retry policy, for a scenario of `models` models.
    pub fn builtin(name: &str, models: usize) -> Option<StrategySpec> {
        let kind = match name {
            "round_robin" => StrategyKind::RoundRobin,
            "fixed_interval" => StrategyKind::FixedInterval { interval: 30 * SECOND },
            "exact_cooldown" => StrategyKind::ExactCooldown {
                gemini_flux: false,
                margin: 0,
            },
            _ => return None,
        };
        Some(StrategySpec {
            name: name.to_string(),
            retry: RetryPolicy::default_for(&kind),
            kind,
            fallback: Vec::new(),
            known_limits: vec![None; models],
        })
    }
}
