//! Validation: the TOML schema into a [`Scenario`], every value checked, every error naming the
//! file, the field and what was expected.

use std::fmt;
use std::path::Path;

use chrono::DateTime;

use super::schema::*;
use super::{Scenario, ScenarioError};
use crate::core::dist::Latency;
use crate::core::ledger::Limits;
use crate::core::server::Model;
use crate::core::time::{format_exact, parse_duration, Calendar, Nanos, DAY, MINUTE};
use crate::core::workload::Arrivals;
use crate::strategy::StrategySpec;

mod models;
mod server;
mod strategy;
mod topology;
mod workload;

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: &str, msg: impl fmt::Display) -> ScenarioError {
        ScenarioError(format!("{}: {field}: {msg}", self.file))
    }

    /// A duration of at most [`max::SPAN`].
    fn duration(&self, field: &str, text: &str) -> Result<Nanos, ScenarioError> {
        self.bounded(field, text, max::SPAN)
    }

    /// A duration of at most `limit`.
    fn bounded(&self, field: &str, text: &str, limit: Nanos) -> Result<Nanos, ScenarioError> {
        let d = parse_duration(text).map_err(|m| self.err(field, m))?;
        if d > limit {
            return Err(self.err(
                field,
                format!("{text:?} is longer than the most allowed, {}", format_exact(limit)),
            ));
        }
        Ok(d)
    }

    /// An integer of at most `limit`.
    fn at_most(&self, field: &str, v: u64, limit: u64) -> Result<u64, ScenarioError> {
        if v > limit {
            return Err(self.err(field, format!("{v} is more than the most allowed, {limit}")));
        }
        Ok(v)
    }

    fn positive_duration(&self, field: &str, text: &str) -> Result<Nanos, ScenarioError> {
        self.positive_bounded(field, text, max::SPAN)
    }

    /// A duration greater than zero and at most `limit`.
    fn positive_bounded(&self, field: &str, text: &str, limit: Nanos) -> Result<Nanos, ScenarioError> {
        match self.bounded(field, text, limit)? {
            0 => Err(self.err(field, "must be greater than zero")),
            d => Ok(d),
        }
    }

    fn latency(&self, field: &str, raw: &RawLatency) -> Result<Latency, ScenarioError> {
        let ttft = self.bounded(&format!("{field}.ttft"), &raw.ttft, max::DELAY)?;
        if !(raw.tokens_per_second.is_finite() && raw.tokens_per_second >= max::MIN_TOKENS_PER_SECOND) {
            return Err(self.err(
                &format!("{field}.tokens_per_second"),
                format!("must be a number of at least {}", max::MIN_TOKENS_PER_SECOND),
            ));
        }
        if !(raw.jitter.is_finite() && (0.0..=3.0).contains(&raw.jitter)) {
            return Err(self.err(&format!("{field}.jitter"), "must be a lognormal sigma between 0 and 3"));
        }
        Ok(Latency {
            ttft,
            tokens_per_second: raw.tokens_per_second,
            jitter: raw.jitter,
        })
    }

    fn model(&self, field: &str, models: &[Model], name: &str) -> Result<usize, ScenarioError> {
        models.iter().position(|m| m.name == name).ok_or_else(|| {
            let known: Vec<&str> = models.iter().map(|m| m.name.as_str()).collect();
            self.err(
                field,
                format!("unknown model {name:?}; the scenario's [models] are {known:?}"),
            )
        })
    }
}

fn limits(raw: &RawLimits) -> Limits {
    Limits {
        rpm: raw.rpm,
        tpm: raw.tpm,
        rpd: raw.rpd,
        tpd: raw.tpd,
        concurrent: raw.concurrent,
    }
}

/// The largest values a scenario may ask for. Past them a run cannot fit in memory or finish in
/// reasonable time on the machines it is meant for (or a number stops meaning anything); each
/// error names the field and the limit. scenarios/REFERENCE.md lists them.
pub mod max {
    use crate::core::time::{Nanos, DAY, HOUR, MAX_SPAN};
    /// Any span: horizon, workload duration, bursts, trace tail (reports count up to 400 days).
    pub const SPAN: Nanos = MAX_SPAN;
    /// Time to first token, a retry delay, fixed_interval's interval.
    pub const DELAY: Nanos = DAY;
    /// exact_cooldown's margin.
    pub const MARGIN: Nanos = HOUR;
    /// Output tokens per second, at least (a response of 1,000,000 tokens then takes 11.6 days).
    pub const MIN_TOKENS_PER_SECOND: f64 = 1.0;
    /// Input tokens of one request (Gemini's contexts hold about 1 M).
    pub const INPUT_TOKENS: u64 = 100_000_000;
    /// Output tokens of one response (Gemini 2.5 answers at most 65,536; serve writes them out).
    pub const OUTPUT_TOKENS: u64 = 1_000_000;
    /// Requests of a workload (arrivals of an open one: rate × duration), a few minutes of
    /// simulation at the engine's 3 M requests/s.
    pub const REQUESTS: u64 = 1_000_000_000;
    /// Workers of a closed batch.
    pub const WORKERS: u64 = 10_000_000;
    /// Projects, and keys, of a topology.
    pub const PROJECTS: u64 = 1_000_000;
    /// Keys of a topology.
    pub const KEYS: u64 = 1_000_000;
    /// A model's price, USD per million tokens.
    pub const PRICE: f64 = 1_000_000.0;
    /// An account's spend cap, USD per window.
    pub const SPEND_CAP: f64 = 1e12;
    /// Instances of a fleet (each a full copy of the strategy).
    pub const INSTANCES: u64 = 1_000;
    /// Attempts of a retry policy.
    pub const ATTEMPTS: u32 = 1_000;
    /// Bytes of a scenario file.
    pub const SCENARIO_BYTES: u64 = 16 << 20;
    /// Bytes of a trace CSV.
    pub const TRACE_BYTES: u64 = 256 << 20;
}

/// How long a trace workload runs past its last arrival when neither `duration` nor `tail`
/// says: a minute, so the last requests can finish and per-minute windows can turn over.
pub const DEFAULT_TAIL: Nanos = MINUTE;

/// The tiers a project may name (`free` by default): they choose the quota ids and metrics of
/// `serve`'s 429 bodies (`…-FreeTier`, paid tier 1, `-PaidTier2`, `-PaidTier3`), not the limits.
pub const TIERS: [&str; 4] = ["free", "tier1", "tier2", "tier3"];

pub(super) fn validate(raw: RawScenario, file: &str, base: &Path) -> Result<Scenario, ScenarioError> {
    let cx = Ctx { file };
    if raw.name.trim().is_empty() {
        return Err(cx.err("name", "must not be empty"));
    }
    let start = DateTime::parse_from_rfc3339(&raw.start).map_err(|e| {
        cx.err(
            "start",
            format!("expected an RFC 3339 time with offset such as \"2025-10-15T09:00:00-07:00\" ({e})"),
        )
    })?;
    let tz: chrono_tz::Tz = raw.server.daily_reset_tz.parse().map_err(|_| {
        cx.err(
            "server.daily_reset_tz",
            format!("unknown IANA time zone {:?}", raw.server.daily_reset_tz),
        )
    })?;
    let calendar = Calendar::new(start, tz);
    let server_latency = cx.latency("server.latency", &raw.server.latency)?;
    let server = server::server(&cx, &raw.server)?;
    let models = models::models(&cx, &raw.models, server_latency, &calendar)?;
    if raw.server.paygo.is_some() && models.iter().all(|m| m.paygo.is_none()) {
        return Err(cx.err(
            "server.paygo",
            "applies only to models on PayGo: give one a [models.<name>.paygo] table",
        ));
    }

    let topology = topology::topology(&cx, &raw.topology, &models)?;
    let workload = workload::workload(&cx, &raw.workload, &models, base)?;

    let horizon = match (&raw.horizon, &workload.arrivals) {
        (Some(h), Arrivals::Closed { .. }) => cx.positive_duration("horizon", h)?,
        (Some(_), _) => {
            return Err(cx.err(
                "horizon",
                "only for closed workloads; an open or trace workload runs for workload.duration",
            ))
        }
        (None, Arrivals::Closed { .. }) => 7 * DAY,
        (None, _) => workload.duration,
    };

    let mut strategies = Vec::new();
    let probe = Scenario {
        name: raw.name.clone(),
        seed: raw.seed,
        calendar: calendar.clone(),
        horizon,
        server: server.clone(),
        models: models.clone(),
        topology: topology.clone(),
        workload: workload.clone(),
        strategies: Vec::new(),
        fleet: strategy::fleet(&cx, &raw.fleet)?,
        wire: super::WireSettings {
            openai_errors: raw.server.openai_errors,
            embed_batch: raw.server.embed_batch,
            standard_keys: raw.server.standard_keys,
        },
    };
    if raw.strategies.is_empty() {
        for k in ["round_robin", "fixed_interval", "exact_cooldown"] {
            strategies.push(probe.builtin_strategy(k).expect("built-in"));
        }
    }
    for (i, s) in raw.strategies.iter().enumerate() {
        let spec = strategy::strategy(&cx, i, s, &models)?;
        let live = workload.session.is_some();
        if !spec.kind.def().serves(live) {
            return Err(cx.err(&format!("strategies[{i}].kind"), spec.kind.def().cannot(live)));
        }
        if strategies.iter().any(|o: &StrategySpec| o.name == spec.name) {
            return Err(cx.err(
                &format!("strategies[{i}].name"),
                format!("{:?} is used twice; names must be unique", spec.name),
            ));
        }
        strategies.push(spec);
    }
    Ok(Scenario { strategies, ..probe })
}

/// A small valid scenario for the tests of each table, and a parser that returns the error text.
#[cfg(test)]
pub(super) mod fixture {
    use std::path::Path;

    use crate::scenario::Scenario;

    /// Two projects of one model, a closed batch of 10.
    pub const BASE: &str = r#"
name = "t"
[models.m]
rpm = 10
[topology]
projects = 2
[workload]
kind = "closed"
requests = 10
workers = 2
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 10 }
"#;

    /// The scenario `text` (as file `s.toml`), or its error message.
    pub fn parse(text: &str) -> Result<Scenario, String> {
        Scenario::parse(text, Path::new("s.toml")).map_err(|e| e.0)
    }

    /// The error of `BASE` with `from` replaced by `to` (which must occur).
    pub fn error_with(from: &str, to: &str) -> String {
        assert!(BASE.contains(from), "{from:?} is not in BASE");
        match parse(&BASE.replacen(from, to, 1)) {
            Ok(_) => panic!("{to:?} was accepted"),
            Err(e) => e,
        }
    }
}
