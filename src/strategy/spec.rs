//! A strategy as configured: which kind with which parameters, its retry policy, its model
//! fallback chain and the limits it believes; and the built-in strategies a scenario gets when
//! it lists none (every kind of the registry, with its defaults).

use super::kind::{Param, StrategyKind};
use super::KINDS;
use crate::core::ledger::Limits;
use crate::strategy::retry::RetryPolicy;

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
    /// `compare`'s variants told wrong limits: the strategy believes every project's true
    /// limits scaled by `n / d` (each project its own, as a quota dump 50% off would say);
    /// a model's `known_limits` still overrides. `None`: no scaling.
    pub told_scale: Option<(u64, u64)>,
}

/// Every built-in strategy: its name, what it does, and its defaults (parameters and retry
/// policy), as `flux-sim strategies` prints it.
pub fn builtins_help() -> String {
    let mut out = String::new();
    let w = KINDS.iter().map(|d| d.name.len()).max().unwrap_or(0) + 2;
    for def in KINDS {
        let d = crate::core::time::format_duration;
        let mut params = String::new();
        for p in def.takes {
            match p {
                Param::Interval => params.push_str(&format!("interval {}; ", d(def.defaults.interval))),
                Param::Margin => params.push_str(&format!("margin {}; ", d(def.defaults.margin))),
                Param::CooldownTime => params.push_str(&format!("cooldown_time {}; ", d(def.defaults.cooldown))),
                Param::AllowedFails => match def.defaults.allowed_fails {
                    Some(n) => params.push_str(&format!("allowed_fails {n}; ")),
                    None => params.push_str("allowed_fails unset; "),
                },
                Param::MaxFailures => params.push_str(&format!("max_failures {}; ", def.defaults.max_failures)),
                // Both are the retry policy shown next.
                Param::Fallback | Param::Preset | Param::NumRetries | Param::RetryAfter => {}
            }
        }
        out.push_str(&format!(
            "  {:<w$}{}\n  {:<w$}defaults: {params}retry {}\n",
            def.name,
            def.help,
            "",
            def.retry.describe()
        ));
    }
    out
}

impl StrategySpec {
    /// The built-in strategy of a kind name (any of [`KINDS`](super::KINDS))
    /// with its default parameters and retry policy, for a scenario of `models` models.
    pub fn builtin(name: &str, models: usize) -> Option<StrategySpec> {
        let kind = StrategyKind::named(name)?;
        Some(StrategySpec {
            name: name.to_string(),
            retry: kind.def().retry,
            kind,
            fallback: Vec::new(),
            known_limits: vec![None; models],
            told_scale: None,
        })
    }
}
