//! A strategy as configured: which algorithm, its parameters, its retry policy, its model
//! fallback chain and the limits it believes; and the built-in strategies a scenario gets when
//! it lists none.

use crate::core::ledger::Limits;
use crate::core::time::{Nanos, SECOND};
use crate::strategy::litellm::Routing;
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
        /// Safety margin: the replica holds each minute-window entry this much longer than
        /// 60 s, so sends that reach the server up to this late still fit (0: exact).
        margin: Nanos,
    },
    /// gemini-flux 1.1.1.
    GeminiFlux,
    /// One key and the retry policy (google-genai's by default).
    Backoff,
    /// The OpenAI cookbook's parallel processor.
    TokenBucket,
    /// LiteLLM's Router.
    LiteLlm(Routing),
    /// gemini-balance's key manager.
    GeminiBalance,
    /// This project's strategy.
    Flux {
        /// The planner's safety margin, as exact_cooldown's.
        margin: Nanos,
    },
}

impl StrategyKind {
    /// The kind's name as written in scenarios.
    pub fn name(&self) -> &'static str {
        match self {
            StrategyKind::RoundRobin => "round_robin",
            StrategyKind::FixedInterval { .. } => "fixed_interval",
            StrategyKind::ExactCooldown { .. } => "exact_cooldown",
            StrategyKind::GeminiFlux => "gemini_flux",
            StrategyKind::Backoff => "backoff",
            StrategyKind::TokenBucket => "token_bucket",
            StrategyKind::LiteLlm(r) => r.name(),
            StrategyKind::GeminiBalance => "gemini_balance",
            StrategyKind::Flux { .. } => "flux",
        }
    }

    /// Whether the kind walks a model fallback chain.
    pub fn falls_back(&self) -> bool {
        matches!(
            self,
            StrategyKind::ExactCooldown { .. } | StrategyKind::GeminiFlux | StrategyKind::Flux { .. }
        )
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
pub const BUILTINS: [(&str, &str); 11] = [
    ("round_robin", "the next key in order, sent at once; tracks nothing (key-mixer)"),
    (
        "fixed_interval",
        "a key is reused only `interval` after its last use, whatever the request (the hand-written rotator)",
    ),
    (
        "exact_cooldown",
        "a replica of the quota ledger per project: sends exactly when a budget has room; model fallback; trusts its limits and RetryInfo",
    ),
    (
        "gemini_flux",
        "gemini-flux 1.1.1: key by key through the model chain, input TPM per key, one request in flight, a 429 kills the model on that key until midnight",
    ),
    ("backoff", "one key, and the retry policy: google-genai 3.4.0's HttpRetryOptions() (preset \"sdk\")"),
    (
        "token_bucket",
        "the OpenAI cookbook's parallel processor: RPM and TPM buckets, FIFO, every dispatch paused 15 s after a 429",
    ),
    (
        "litellm_shuffle",
        "LiteLLM 1.106.2 Router, simple-shuffle: weighted random by rpm; 5 s cooldown after a 429; fails when all cool down",
    ),
    ("litellm_least_busy", "LiteLLM 1.106.2 Router, least-busy: fewest in flight; 5 s cooldown after a 429"),
    (
        "litellm_usage",
        "LiteLLM 1.106.2 Router, usage-based-routing-v2: calendar-minute counters, rpm − 1 a minute; 5 s cooldown",
    ),
    (
        "gemini_balance",
        "gemini-balance: sticky key, next key on any failure, a key with 3 failures skipped until the hourly check",
    ),
    (
        "flux",
        "this project's: exact_cooldown that learns limits from 429s, probes told limits, re-plans, distrusts lying RetryInfo",
    ),
];

/// Every built-in strategy: its name, what it does, and its defaults (parameters and retry
/// policy), as `flux-sim strategies` prints it.
pub fn builtins_help() -> String {
    let mut out = String::new();
    let w = BUILTINS.iter().map(|(n, _)| n.len()).max().unwrap_or(0) + 2;
    for (name, what) in BUILTINS {
        let spec = StrategySpec::builtin(name, 1).expect("listed built-in");
        let params = match spec.kind {
            StrategyKind::RoundRobin => String::new(),
            StrategyKind::FixedInterval { interval } => {
                format!("interval {}; ", crate::core::time::format_duration(interval))
            }
            StrategyKind::ExactCooldown { margin } | StrategyKind::Flux { margin } => {
                format!("margin {}; ", crate::core::time::format_duration(margin))
            }
            _ => String::new(),
        };
        out.push_str(&format!(
            "  {name:<w$}{what}\n  {:<w$}defaults: {params}retry {}\n",
            "",
            spec.retry.describe()
        ));
    }
    out
}

impl StrategySpec {
    /// The built-in strategy of a kind name (any of [`BUILTINS`])
    /// with its default parameters and retry policy, for a scenario of `models` models.
    pub fn builtin(name: &str, models: usize) -> Option<StrategySpec> {
        let kind = match name {
            "round_robin" => StrategyKind::RoundRobin,
            "fixed_interval" => StrategyKind::FixedInterval { interval: 30 * SECOND },
            "exact_cooldown" => StrategyKind::ExactCooldown { margin: 0 },
            "gemini_flux" => StrategyKind::GeminiFlux,
            "backoff" => StrategyKind::Backoff,
            "token_bucket" => StrategyKind::TokenBucket,
            "litellm_shuffle" => StrategyKind::LiteLlm(Routing::Shuffle),
            "litellm_least_busy" => StrategyKind::LiteLlm(Routing::LeastBusy),
            "litellm_usage" => StrategyKind::LiteLlm(Routing::Usage),
            "gemini_balance" => StrategyKind::GeminiBalance,
            "flux" => StrategyKind::Flux { margin: 0 },
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
