//! What a strategy kind is, defined once: its name in scenarios, its line of help, the
//! parameters it takes and their defaults, its default retry policy and its constructor.
//! Each strategy's module holds its own [`KindDef`]; `strategy::KINDS` lists them, and
//! everything else — `flux-sim strategies`, the scenario loader's checks and messages, the
//! built-ins `compare` runs — is derived from that list (the idea of ripgrep's
//! `flags/defs.rs`).

use super::retry::RetryPolicy;
use super::{Env, Strategy, StrategySpec};
use crate::core::time::Nanos;

/// A parameter a strategy kind may take from its `[[strategies]]` table, beyond the fields
/// every kind has (`name`, `kind`, `retry`, `known_limits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Param {
    /// `interval`: how long a key rests after each use.
    Interval,
    /// `margin`: how much longer than 60 s a planner holds each minute-window entry.
    Margin,
    /// `fallback`: models to walk after the request's own.
    Fallback,
    /// `preset`: a named retry policy (`"sdk"`).
    Preset,
    /// `cooldown_time`: LiteLLM Router's cooldown of a failing deployment.
    CooldownTime,
    /// `allowed_fails`: LiteLLM Router's failures allowed within a cooldown time before a
    /// deployment cools down (unset: its failure-rate rules).
    AllowedFails,
    /// `num_retries`: LiteLLM Router's retries of a failed request.
    NumRetries,
    /// `retry_after`: LiteLLM Router's least wait before a retry.
    RetryAfter,
    /// `max_failures`: gemini-balance's failures after which a key is skipped.
    MaxFailures,
}

impl Param {
    /// Every parameter, in the order the loader checks them.
    pub const ALL: [Param; 9] = [
        Param::Interval,
        Param::Margin,
        Param::Fallback,
        Param::Preset,
        Param::CooldownTime,
        Param::AllowedFails,
        Param::NumRetries,
        Param::RetryAfter,
        Param::MaxFailures,
    ];

    /// The field's name in a `[[strategies]]` table.
    pub fn field(self) -> &'static str {
        match self {
            Param::Interval => "interval",
            Param::Margin => "margin",
            Param::Fallback => "fallback",
            Param::Preset => "preset",
            Param::CooldownTime => "cooldown_time",
            Param::AllowedFails => "allowed_fails",
            Param::NumRetries => "num_retries",
            Param::RetryAfter => "retry_after",
            Param::MaxFailures => "max_failures",
        }
    }
}

/// The values of a kind's numeric parameters (each used only by the kinds that take it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Params {
    /// `interval` (`fixed_interval`).
    pub interval: Nanos,
    /// `margin` (`exact_cooldown`, `flux`).
    pub margin: Nanos,
    /// `cooldown_time` (the `litellm_*` kinds).
    pub cooldown: Nanos,
    /// `allowed_fails` (the `litellm_*` kinds; `None`: not set).
    pub allowed_fails: Option<u32>,
    /// `num_retries` (the `litellm_*` kinds).
    pub num_retries: u32,
    /// `retry_after` (the `litellm_*` kinds).
    pub retry_after: Nanos,
    /// `max_failures` (`gemini_balance`).
    pub max_failures: u32,
}

impl Params {
    /// No parameter set (what a kind that takes none has).
    pub const NONE: Params = Params {
        interval: 0,
        margin: 0,
        cooldown: 0,
        allowed_fails: None,
        num_retries: 0,
        retry_after: 0,
        max_failures: 0,
    };
}

/// One strategy kind, defined once.
pub struct KindDef {
    /// Its name in scenarios, on the command line and in reports.
    pub name: &'static str,
    /// One line on what it does, for `flux-sim strategies` and `run --help`.
    pub help: &'static str,
    /// The parameters it takes.
    pub takes: &'static [Param],
    /// Parameters a scenario must give it (a built-in uses `defaults`), with an example value.
    pub requires: &'static [(Param, &'static str)],
    /// Its parameters when not given.
    pub defaults: Params,
    /// Its retry policy when the scenario gives none.
    pub retry: RetryPolicy,
    /// Whether the tool it models can open a Live API session (a WebSocket).
    pub live: bool,
    /// Whether the tool it models sends REST requests (false: a Live-only client).
    pub rest: bool,
    /// Builds it.
    pub build: fn(Env, &StrategySpec) -> Box<dyn Strategy>,
}

/// A strategy kind with its parameters: a [`KindDef`] and the values given to it.
#[derive(Clone, Copy)]
pub struct StrategyKind {
    def: &'static KindDef,
    /// Its parameters' values.
    pub params: Params,
}

impl StrategyKind {
    /// The kind called `name`, with its default parameters.
    pub fn named(name: &str) -> Option<StrategyKind> {
        super::KINDS.iter().find(|d| d.name == name).map(|&def| StrategyKind {
            def,
            params: def.defaults,
        })
    }

    /// Its definition.
    pub fn def(&self) -> &'static KindDef {
        self.def
    }

    /// The kind's name as written in scenarios.
    pub fn name(&self) -> &'static str {
        self.def.name
    }

    /// Whether it takes `param`.
    pub fn takes(&self, param: Param) -> bool {
        self.def.takes.contains(&param)
    }

    /// Whether the kind walks a model fallback chain.
    pub fn falls_back(&self) -> bool {
        self.takes(Param::Fallback)
    }
}

impl PartialEq for StrategyKind {
    fn eq(&self, other: &Self) -> bool {
        self.def.name == other.def.name && self.params == other.params
    }
}

impl std::fmt::Debug for StrategyKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StrategyKind")
            .field("name", &self.def.name)
            .field("params", &self.params)
            .finish()
    }
}

impl KindDef {
    /// Whether the tool it models can send a workload of Live sessions (`live`) or of REST
    /// requests (otherwise).
    pub fn serves(&self, live: bool) -> bool {
        if live {
            self.live
        } else {
            self.rest
        }
    }

    /// Why it cannot send a workload of Live sessions (`live`) or of REST requests, as an
    /// error says it.
    pub fn cannot(&self, live: bool) -> String {
        let what = if live {
            "open a Live session (the tool it models calls REST only)"
        } else {
            "send REST requests (it models a Live-only client)"
        };
        let names = super::KINDS.iter().filter(|d| d.serves(live));
        let names: Vec<String> = names.map(|d| format!("{:?}", d.name)).collect();
        let workload = if live { "Live sessions" } else { "REST requests" };
        format!(
            "{:?} cannot {what}, and this scenario's workload is {workload}; these kinds can: {}",
            self.name,
            names.join(", ")
        )
    }
}

/// The kinds that take `param`, as a message lists them: `"a"`, `"a" or "b"`,
/// `"a", "b" or "c"`.
pub fn kind_names_taking(param: Param) -> String {
    let names: Vec<String> = super::KINDS
        .iter()
        .filter(|d| d.takes.contains(&param))
        .map(|d| format!("{:?}", d.name))
        .collect();
    match names.split_last() {
        None => String::new(),
        Some((last, [])) => last.clone(),
        Some((last, rest)) => format!("{} or {last}", rest.join(", ")),
    }
}
