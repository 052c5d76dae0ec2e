//! Validation: the TOML schema into a [`Scenario`], every value checked, every error naming the
//! file, the field and what was expected.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use chrono::DateTime;

use super::schema::*;
use super::{read_trace, Scenario, ScenarioError};
use crate::core::dist::{Latency, TokenDist};
use crate::core::ledger::{Dimension, LedgerConfig, Limits};
use crate::core::live::{CloseAfter, EarlyClose, LiveRules, Modality, QuotaCheck, SessionSpec};
use crate::core::server::{
    ConcurrencyScope, Model, Overflow, PerDayRetry, Provisioned, Quirks, Route, RouteQuota, ServerConfig,
};
use crate::core::shared_pool::PoolSpec;
use crate::core::spend::{Prices, SpendRule};
use crate::core::time::{format_duration, format_exact, parse_duration, Calendar, Nanos, DAY, MINUTE, SECOND};
use crate::core::topology::{Account, Key, Project, Topology};
use crate::core::workload::{Arrivals, ModelChoice, WorkloadSpec};
use crate::strategy::retry::{Jitter, RetryPolicy};
use crate::strategy::{FleetSpec, Param, Sharing, StrategyKind, StrategySpec};

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
    if !(raw.server.fault_rate.is_finite() && (0.0..=1.0).contains(&raw.server.fault_rate)) {
        return Err(cx.err("server.fault_rate", "must be a probability between 0 and 1"));
    }
    let server_latency = cx.latency("server.latency", &raw.server.latency)?;
    let server = ServerConfig {
        ledger: LedgerConfig {
            window: raw.server.window,
            count_rejected: raw.server.count_rejected,
        },
        tpm_counts: raw.server.tpm_counts,
        fault_rate: raw.server.fault_rate,
        quirks: quirks(&cx, &raw.server.quirks)?,
        spend: SpendRule {
            window: cx.positive_bounded("server.spend_window", &raw.server.spend_window, max::DELAY)?,
            delay: cx.bounded("server.spend_delay", &raw.server.spend_delay, max::DELAY)?,
        },
        live: live_rules(&cx, &raw.server.live)?,
    };

    if raw.models.is_empty() {
        return Err(cx.err(
            "models",
            "at least one model is needed, e.g. [models.\"gemini-2.5-flash\"]",
        ));
    }
    let mut models = Vec::new();
    for (name, m) in &raw.models {
        let field = format!("models.{name:?}");
        if m.concurrent_scope == ConcurrencyScope::Key && m.concurrent.is_none() {
            return Err(cx.err(&format!("{field}.concurrent_scope"), "needs a `concurrent` limit"));
        }
        let latency = match &m.latency {
            Some(l) => cx.latency(&format!("{field}.latency"), l)?,
            None => server_latency,
        };
        let shared_pool = match &m.shared_pool {
            None => None,
            Some(p) => Some(shared_pool(&cx, &format!("{field}.shared_pool"), p, m)?),
        };
        let prices = Prices {
            input: price(&cx, &format!("{field}.price_input"), m.price_input)?,
            output: price(&cx, &format!("{field}.price_output"), m.price_output)?,
        };
        let provisioned = match &m.provisioned {
            None => None,
            Some(p) => Some(provisioned(&cx, &format!("{field}.provisioned"), p)?),
        };
        let price_changes = price_changes(&cx, &format!("{field}.price_changes"), &m.price_changes, &calendar)?;
        models.push(Model {
            provisioned,
            price_changes,
            prices,
            shared_pool,
            name: name.clone(),
            limits: Limits {
                rpm: m.rpm,
                tpm: m.tpm,
                rpd: m.rpd,
                tpd: m.tpd,
                concurrent: m.concurrent,
            },
            concurrency_scope: m.concurrent_scope,
            latency,
            live: m.live,
            route: None,
        });
    }
    routes(&cx, &raw.models, &mut models)?;

    let topology = validate_topology(&cx, &raw.topology, &models)?;
    let workload = validate_workload(&cx, &raw.workload, &models, base)?;

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
        fleet: fleet(&cx, &raw.fleet)?,
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
        let spec = validate_strategy(&cx, i, s, &models)?;
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

fn validate_topology(cx: &Ctx, raw: &RawTopology, models: &[Model]) -> Result<Topology, ScenarioError> {
    if raw.keys_per_project == 0 {
        return Err(cx.err("topology.keys_per_project", "must be at least 1"));
    }
    cx.at_most("topology.keys_per_project", raw.keys_per_project, max::KEYS)?;
    let mut accounts = Vec::new();
    let mut account_names = std::collections::HashSet::new();
    let mut projects: Vec<Project> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    // (account, field of its projects, projects, its own spend cap and that field)
    let mut groups: Vec<(String, String, &CountOrNames, Option<f64>, String)> = Vec::new();
    if let Some(p) = &raw.projects {
        let field = "topology.spend_cap".to_string();
        groups.push(("default".into(), "topology.projects".into(), p, None, field));
    }
    for (i, a) in raw.accounts.iter().enumerate() {
        if a.name.trim().is_empty() {
            return Err(cx.err(&format!("topology.accounts[{i}].name"), "must not be empty"));
        }
        let (field, cap_field) = (
            format!("topology.accounts[{i}].projects"),
            format!("topology.accounts[{i}].spend_cap"),
        );
        groups.push((a.name.clone(), field, &a.projects, a.spend_cap, cap_field));
    }
    if groups.is_empty() {
        return Err(cx.err(
            "topology",
            "no projects: give `projects = N` or [[topology.accounts]] with projects",
        ));
    }
    for (account, field, spec, cap, cap_field) in groups {
        let cap_field = if cap.is_some() {
            cap_field
        } else {
            "topology.spend_cap".into()
        };
        if !account_names.insert(account.clone()) {
            return Err(cx.err(&field, format!("account {account:?} is defined twice")));
        }
        let a = accounts.len();
        accounts.push(Account {
            name: account.clone(),
            spend_cap: spend_cap(cx, &cap_field, cap.or(raw.spend_cap))?,
        });
        let names: Vec<String> = match spec {
            CountOrNames::Count(0) => return Err(cx.err(&field, "must be at least 1")),
            CountOrNames::Count(n) if projects.len() as u64 + n > max::PROJECTS => {
                return Err(cx.err(
                    &field,
                    format!("{n} projects make more than the most allowed, {}", max::PROJECTS),
                ))
            }
            CountOrNames::Count(n) => (1..=*n).map(|i| format!("{account}-{i}")).collect(),
            CountOrNames::Names(v) if v.is_empty() => return Err(cx.err(&field, "must name at least one project")),
            CountOrNames::Names(v) => v.clone(),
        };
        for name in names {
            if name.trim().is_empty() {
                return Err(cx.err(&field, "project names must not be empty"));
            }
            if by_name.insert(name.clone(), projects.len()).is_some() {
                return Err(cx.err(&field, format!("project {name:?} is defined twice")));
            }
            projects.push(Project {
                name,
                account: a,
                tier: "free".into(),
                limits: models.iter().map(|m| m.limits).collect(),
                rpd_used: 0,
            });
        }
    }

    let mut key_counts = vec![raw.keys_per_project; projects.len()];
    let mut invalid_counts = vec![0u64; projects.len()];
    for (name, s) in &raw.project {
        let field = format!("topology.project.{name:?}");
        let &p = by_name.get(name).ok_or_else(|| {
            cx.err(
                &field,
                format!("no such project; defined projects are {:?}", sorted_names(&by_name)),
            )
        })?;
        if let Some(k) = s.keys {
            key_counts[p] = k;
        }
        invalid_counts[p] = s.invalid_keys;
        projects[p].rpd_used = s.rpd_used;
        if let Some(t) = &s.tier {
            if !TIERS.contains(&t.as_str()) {
                return Err(cx.err(
                    &format!("{field}.tier"),
                    format!(
                        "unknown tier {t:?}; expected one of {TIERS:?} (it names the quota ids in serve's 429 bodies)"
                    ),
                ));
            }
            projects[p].tier = t.clone();
        }
        for (model, l) in &s.limits {
            let lf = format!("{field}.limits.{model:?}");
            let m = cx.model(&lf, models, model)?;
            if models[m].shared_pool.is_some() {
                return Err(cx.err(
                    &lf,
                    format!(
                        "model {model:?} has a shared pool, which has no per-project limits: remove this table \
                         (a project cannot override rpm, tpm, rpd, tpd or concurrent on a pool model)"
                    ),
                ));
            }
            // Every dimension the table gives overrides the model's default, the others stay.
            let over = limits(l);
            let cur = &mut projects[p].limits[m];
            for d in Dimension::ALL {
                if let Some(v) = over.get(d) {
                    cur.set(d, Some(v));
                }
            }
        }
    }

    if projects.len() as u64 > max::PROJECTS {
        return Err(cx.err("topology", format!("more than {} projects", max::PROJECTS)));
    }
    let generated = key_counts
        .iter()
        .zip(&invalid_counts)
        .fold(0u64, |n, (k, i)| n.saturating_add(*k).saturating_add(*i))
        .saturating_add(raw.keys.len() as u64);
    if generated > max::KEYS {
        return Err(cx.err(
            "topology",
            format!("{generated} keys in all, more than the most allowed, {}", max::KEYS),
        ));
    }
    let mut keys = Vec::new();
    // Keys per project so far (linear, not a scan per key: 200,000 projects took 9 s).
    let mut per_project = vec![0u64; projects.len()];
    for (p, project) in projects.iter().enumerate() {
        for i in 0..key_counts[p] + invalid_counts[p] {
            keys.push(Key {
                value: Key::derive(&project.name, i),
                project: p,
                valid: i < key_counts[p],
            });
        }
        per_project[p] = key_counts[p] + invalid_counts[p];
    }
    for (i, k) in raw.keys.iter().enumerate() {
        let field = format!("topology.keys[{i}]");
        let &p = by_name.get(&k.project).ok_or_else(|| {
            cx.err(
                &format!("{field}.project"),
                format!(
                    "no project named {:?}; defined projects are {:?}",
                    k.project,
                    sorted_names(&by_name)
                ),
            )
        })?;
        let n = per_project[p];
        per_project[p] += 1;
        let value =
            match &k.key {
                Some(v) if crate::core::topology::check_key(v).is_err() => return Err(cx.err(
                    &format!("{field}.key"),
                    "must be at least 8 characters with no spaces (8 to 512 printable ASCII characters, any format)",
                )),
                Some(v) => v.clone(),
                None => Key::derive(&projects[p].name, n),
            };
        keys.push(Key {
            value,
            project: p,
            valid: !k.invalid,
        });
    }
    let mut seen = HashMap::new();
    for (i, k) in keys.iter().enumerate() {
        if let Some(j) = seen.insert(k.value.clone(), i) {
            let _ = j;
            return Err(cx.err(
                "topology.keys",
                format!("key {} is given twice", crate::core::topology::mask(&k.value)),
            ));
        }
    }
    if !keys.iter().any(|k| k.valid) {
        return Err(cx.err("topology", "every key is invalid; at least one valid key is needed"));
    }
    for (p, project) in projects.iter().enumerate() {
        if per_project[p] == 0 {
            return Err(cx.err(
                &format!("topology.project.{:?}.keys", project.name),
                "a project needs at least one key",
            ));
        }
    }
    Ok(Topology {
        accounts,
        projects,
        keys,
    })
}

fn sorted_names(m: &HashMap<String, usize>) -> Vec<&str> {
    let mut v: Vec<(&usize, &str)> = m.iter().map(|(k, v)| (v, k.as_str())).collect();
    v.sort();
    v.into_iter().map(|(_, k)| k).collect()
}

/// A token-size distribution whose values never exceed `limit` (a lognormal is clamped there
/// unless its `max` is lower).
fn validate_tokens(cx: &Ctx, field: &str, raw: &Option<RawTokens>, limit: u64) -> Result<TokenDist, ScenarioError> {
    let Some(t) = raw else {
        return Err(cx.err(field, "missing; e.g. { dist = \"fixed\", value = 1000 }"));
    };
    let only = |allowed: &[&str]| -> Result<(), ScenarioError> {
        let given = [
            ("value", t.value.is_some()),
            ("min", t.min.is_some()),
            ("max", t.max.is_some()),
            ("median", t.median.is_some()),
            ("p99", t.p99.is_some()),
        ];
        for (name, present) in given {
            if present && !allowed.contains(&name) {
                return Err(cx.err(
                    &format!("{field}.{name}"),
                    format!("not used by dist = {:?} (it takes {allowed:?})", t.dist),
                ));
            }
        }
        Ok(())
    };
    let need_u = |v: Option<u64>, name: &str| {
        let v = v.ok_or_else(|| cx.err(&format!("{field}.{name}"), format!("required for dist = {:?}", t.dist)))?;
        cx.at_most(&format!("{field}.{name}"), v, limit)
    };
    match t.dist.as_str() {
        "fixed" => {
            only(&["value"])?;
            Ok(TokenDist::Fixed(need_u(t.value, "value")?))
        }
        "uniform" => {
            only(&["min", "max"])?;
            let (min, max) = (need_u(t.min, "min")?, need_u(t.max, "max")?);
            if min > max {
                return Err(cx.err(&format!("{field}.min"), format!("{min} is greater than max {max}")));
            }
            Ok(TokenDist::Uniform { min, max })
        }
        "lognormal" => {
            only(&["median", "p99", "min", "max"])?;
            let median = t
                .median
                .ok_or_else(|| cx.err(&format!("{field}.median"), "required for dist = \"lognormal\""))?;
            let p99 = t
                .p99
                .ok_or_else(|| cx.err(&format!("{field}.p99"), "required for dist = \"lognormal\""))?;
            if !(median.is_finite() && median >= 1.0 && median <= limit as f64) {
                return Err(cx.err(&format!("{field}.median"), format!("must be between 1 and {limit}")));
            }
            if !(p99.is_finite() && p99 >= median && p99 <= limit as f64) {
                return Err(cx.err(
                    &format!("{field}.p99"),
                    format!("must be at least the median ({median}) and at most {limit}"),
                ));
            }
            let min = cx.at_most(&format!("{field}.min"), t.min.unwrap_or(1), limit)?;
            let max = cx.at_most(&format!("{field}.max"), t.max.unwrap_or(limit), limit)?;
            if min > max {
                return Err(cx.err(&format!("{field}.min"), format!("{min} is greater than max {max}")));
            }
            Ok(TokenDist::lognormal(median, p99, min, max))
        }
        other => Err(cx.err(
            &format!("{field}.dist"),
            format!("unknown distribution {other:?}; expected \"fixed\", \"uniform\" or \"lognormal\""),
        )),
    }
}

fn validate_workload(cx: &Ctx, w: &RawWorkload, models: &[Model], base: &Path) -> Result<WorkloadSpec, ScenarioError> {
    let kind = w.kind.as_str();
    let allowed: &[&str] = match kind {
        "open" => &[
            "rate",
            "duration",
            "burst_on",
            "burst_off",
            "requests",
            "input_tokens",
            "output_tokens",
            "model",
            "models",
        ],
        "closed" => &[
            "requests",
            "workers",
            "input_tokens",
            "output_tokens",
            "model",
            "models",
        ],
        "trace" => &["path", "duration", "tail", "model", "models"],
        "sessions" => &[
            "rate",
            "duration",
            "sessions",
            "clients",
            "turns",
            "pause",
            "hold",
            "modality",
            "close_after",
            "input_tokens",
            "output_tokens",
            "model",
            "models",
        ],
        other => {
            return Err(cx.err(
                "workload.kind",
                format!("unknown kind {other:?}; expected \"open\", \"closed\", \"trace\" or \"sessions\""),
            ))
        }
    };
    let present = [
        ("rate", w.rate.is_some()),
        ("duration", w.duration.is_some()),
        ("burst_on", w.burst_on.is_some()),
        ("burst_off", w.burst_off.is_some()),
        ("requests", w.requests.is_some()),
        ("workers", w.workers.is_some()),
        ("path", w.path.is_some()),
        ("tail", w.tail.is_some()),
        ("input_tokens", w.input_tokens.is_some()),
        ("output_tokens", w.output_tokens.is_some()),
        ("model", w.model.is_some()),
        ("models", !w.models.is_empty()),
        ("sessions", w.sessions.is_some()),
        ("clients", w.clients.is_some()),
        ("turns", w.turns.is_some()),
        ("pause", w.pause.is_some()),
        ("hold", w.hold.is_some()),
        ("modality", w.modality.is_some()),
        ("close_after", w.close_after.is_some()),
    ];
    for (name, p) in present {
        if p && !allowed.contains(&name) {
            return Err(cx.err(
                &format!("workload.{name}"),
                format!("not used by kind = {kind:?} (it takes {allowed:?})"),
            ));
        }
    }
    let model = match (&w.model, w.models.is_empty()) {
        (Some(_), false) => return Err(cx.err("workload.models", "give either `model` or `models`, not both")),
        (Some(m), true) => ModelChoice::One(cx.model("workload.model", models, m)?),
        (None, false) => {
            let mut v = Vec::new();
            for (i, m) in w.models.iter().enumerate() {
                if m.weight == 0 {
                    return Err(cx.err(&format!("workload.models[{i}].weight"), "must be at least 1"));
                }
                v.push((
                    cx.model(&format!("workload.models[{i}].name"), models, &m.name)?,
                    m.weight,
                ));
            }
            ModelChoice::Weighted(v)
        }
        (None, true) if models.len() == 1 => ModelChoice::One(0),
        (None, true) => return Err(cx.err("workload.model", "required when the scenario has several models")),
    };
    let used = model.models();
    let session = if kind == "sessions" {
        if let Some(&m) = used.iter().find(|&&m| !models[m].live) {
            return Err(cx.err(
                "workload.model",
                format!(
                    "{:?} is not a Live model; a sessions workload needs `live = true` on its models",
                    models[m].name
                ),
            ));
        }
        Some(session_spec(cx, w)?)
    } else {
        if let Some(&m) = used.iter().find(|&&m| models[m].live) {
            return Err(cx.err(
                "workload.model",
                format!(
                    "{:?} is a Live model (`live = true`): its calls are sessions, use kind = \"sessions\"",
                    models[m].name
                ),
            ));
        }
        None
    };
    // A sessions workload arrives like an open one (`rate`), or from `clients` that each open
    // the next session when their last one ends (a closed batch of `sessions`).
    let shown = kind;
    let (kind, requests_field, workers_field, requests, workers) = match kind {
        "sessions" if w.clients.is_some() || w.rate.is_none() => {
            ("closed", "sessions", "clients", w.sessions, w.clients)
        }
        "sessions" => ("open", "sessions", "clients", w.sessions, w.clients),
        k => (k, "requests", "workers", w.requests, w.workers),
    };
    let need = |v: Option<u64>, name: &str| -> Result<u64, ScenarioError> {
        match v {
            None if shown == "sessions" => Err(cx.err(
                &format!("workload.{name}"),
                "required for kind = \"sessions\" without `rate` (clients that reconnect)",
            )),
            None => Err(cx.err(&format!("workload.{name}"), format!("required for kind = {kind:?}"))),
            Some(0) => Err(cx.err(&format!("workload.{name}"), "must be at least 1")),
            Some(n) => Ok(n),
        }
    };
    match kind {
        "closed" => {
            if session.is_some() && w.duration.is_some() {
                return Err(cx.err(
                    "workload.duration",
                    "sessions from `clients` run until `sessions` are done or the horizon; give `rate` for open arrivals over a duration",
                ));
            }
            let requests = cx.at_most(
                &format!("workload.{requests_field}"),
                need(requests, requests_field)?,
                max::REQUESTS,
            )?;
            let workers = cx.at_most(
                &format!("workload.{workers_field}"),
                need(workers, workers_field)?,
                max::WORKERS,
            )?;
            Ok(WorkloadSpec {
                arrivals: Arrivals::Closed { requests, workers },
                duration: 0,
                input: validate_tokens(cx, "workload.input_tokens", &w.input_tokens, max::INPUT_TOKENS)?,
                output: validate_tokens(cx, "workload.output_tokens", &w.output_tokens, max::OUTPUT_TOKENS)?,
                model,
                session,
            })
        }
        "open" => {
            let rate = w
                .rate
                .ok_or_else(|| cx.err("workload.rate", "required for kind = \"open\" (requests per minute)"))?;
            if !(rate.is_finite() && rate > 0.0) {
                return Err(cx.err(
                    "workload.rate",
                    "must be a number of requests per minute greater than zero",
                ));
            }
            let duration = cx.positive_duration(
                "workload.duration",
                w.duration.as_deref().ok_or_else(|| {
                    cx.err(
                        "workload.duration",
                        format!("required for kind = {shown:?} with `rate`"),
                    )
                })?,
            )?;
            let bursts = match (&w.burst_on, &w.burst_off) {
                (None, None) => None,
                (Some(on), Some(off)) => Some((
                    cx.positive_duration("workload.burst_on", on)?,
                    cx.positive_duration("workload.burst_off", off)?,
                )),
                _ => return Err(cx.err("workload.burst_on", "give both burst_on and burst_off, or neither")),
            };
            if let Some(0) = requests {
                return Err(cx.err(&format!("workload.{requests_field}"), "must be at least 1"));
            }
            // What the run would have to simulate: refuse it before it cannot end.
            let on_minutes = match bursts {
                None => duration as f64 / MINUTE as f64,
                Some((on, off)) => duration as f64 / MINUTE as f64 * on as f64 / (on + off) as f64,
            };
            let expected = (rate * on_minutes).min(requests.map_or(f64::INFINITY, |r| r as f64));
            if expected > max::REQUESTS as f64 {
                return Err(cx.err(
                    "workload.rate",
                    format!(
                        "{rate} a minute for {} means about {expected:.3e} requests, more than the most a run simulates, {}; \
                         lower the rate or the duration, or cap it with workload.requests",
                        format_duration(duration),
                        max::REQUESTS
                    ),
                ));
            }
            Ok(WorkloadSpec {
                arrivals: Arrivals::Open {
                    rate_per_min: rate,
                    bursts,
                    max_requests: requests,
                },
                duration,
                input: validate_tokens(cx, "workload.input_tokens", &w.input_tokens, max::INPUT_TOKENS)?,
                output: validate_tokens(cx, "workload.output_tokens", &w.output_tokens, max::OUTPUT_TOKENS)?,
                model,
                session,
            })
        }
        _ => {
            let rel = w
                .path
                .as_deref()
                .ok_or_else(|| cx.err("workload.path", "required for kind = \"trace\" (a CSV file)"))?;
            let path = base.join(rel);
            let rows = read_trace(&path, models)?;
            let last = rows.last().map_or(0, |r| r.arrival);
            let duration = match (&w.duration, &w.tail) {
                (Some(_), Some(_)) => {
                    return Err(cx.err(
                        "workload.tail",
                        "give `duration` (the whole run) or `tail` (the run past the last arrival), not both",
                    ))
                }
                (Some(d), None) => cx.positive_duration("workload.duration", d)?,
                (None, Some(t)) => last.saturating_add(cx.duration("workload.tail", t)?),
                (None, None) => last.saturating_add(DEFAULT_TAIL),
            };
            if duration > max::SPAN {
                return Err(cx.err(
                    "workload.path",
                    format!(
                        "the trace runs past the longest span allowed, {}",
                        format_duration(max::SPAN)
                    ),
                ));
            }
            Ok(WorkloadSpec {
                arrivals: Arrivals::Trace {
                    rows: rows.into(),
                    path,
                },
                duration,
                input: TokenDist::Fixed(0),
                output: TokenDist::Fixed(0),
                model,
                session,
            })
        }
    }
}

/// Turns per session at most (each is planned when the session opens).
const MAX_TURNS: u64 = 10_000;

/// The client of a sessions workload: `turns`, `pause`, `hold`, `modality`, `close_after`.
fn session_spec(cx: &Ctx, w: &RawWorkload) -> Result<SessionSpec, ScenarioError> {
    let turns = match w.turns {
        None => 1,
        Some(0) => return Err(cx.err("workload.turns", "must be at least 1")),
        Some(n) => cx.at_most("workload.turns", n, MAX_TURNS)?,
    };
    let modality = match w.modality.as_deref().unwrap_or("audio") {
        "audio" => Modality::Audio,
        "audio_video" => Modality::AudioVideo,
        "text" => Modality::Text,
        other => {
            return Err(cx.err(
                "workload.modality",
                format!("unknown modality {other:?}; expected \"audio\", \"audio_video\" or \"text\""),
            ))
        }
    };
    let close_after = match w.close_after.as_deref().unwrap_or("turn_complete") {
        "turn_complete" => CloseAfter::TurnComplete,
        "generation_complete" => CloseAfter::GenerationComplete,
        other => {
            return Err(cx.err(
                "workload.close_after",
                format!("unknown close policy {other:?}; expected \"turn_complete\" or \"generation_complete\""),
            ))
        }
    };
    Ok(SessionSpec {
        turns: turns as u32,
        pause: cx.bounded("workload.pause", w.pause.as_deref().unwrap_or("0s"), max::DELAY)?,
        hold: cx.bounded("workload.hold", w.hold.as_deref().unwrap_or("0s"), max::DELAY)?,
        modality,
        close_after,
    })
}

/// `[server.live]`.
fn live_rules(cx: &Ctx, l: &RawLive) -> Result<LiveRules, ScenarioError> {
    let quota_check = match l.quota_check.as_str() {
        "setup" => QuotaCheck::Setup,
        "connect" => QuotaCheck::Connect,
        other => {
            return Err(cx.err(
                "server.live.quota_check",
                format!("unknown {other:?}; expected \"setup\" or \"connect\""),
            ))
        }
    };
    let early_close = match l.early_close.as_str() {
        "holds_turn" => EarlyClose::HoldsTurn,
        "releases" => EarlyClose::Releases,
        other => {
            return Err(cx.err(
                "server.live.early_close",
                format!("unknown {other:?}; expected \"holds_turn\" or \"releases\""),
            ))
        }
    };
    if l.audio_tokens_per_second == 0 {
        return Err(cx.err("server.live.audio_tokens_per_second", "must be at least 1"));
    }
    let lifetime = cx.positive_bounded("server.live.lifetime", &l.lifetime, max::DELAY)?;
    let go_away = cx.bounded("server.live.go_away", &l.go_away, max::DELAY)?;
    if go_away > lifetime {
        return Err(cx.err(
            "server.live.go_away",
            format!("{} is longer than the lifetime {}", l.go_away, l.lifetime),
        ));
    }
    Ok(LiveRules {
        setup: cx.bounded("server.live.setup", &l.setup, max::DELAY)?,
        reject_delay: cx.bounded("server.live.reject_delay", &l.reject_delay, max::DELAY)?,
        quota_check,
        release: cx.bounded("server.live.release", &l.release, max::DELAY)?,
        early_close,
        lifetime,
        go_away,
        audio_cap: cx.positive_bounded("server.live.audio_cap", &l.audio_cap, max::DELAY)?,
        video_cap: cx.positive_bounded("server.live.video_cap", &l.video_cap, max::DELAY)?,
        audio_tokens_per_second: l.audio_tokens_per_second,
    })
}

fn provisioned(cx: &Ctx, field: &str, p: &RawProvisioned) -> Result<Provisioned, ScenarioError> {
    if p.rpm.is_none() && p.tpm.is_none() {
        return Err(cx.err(field, "reserves nothing: give `rpm`, `tpm` or both"));
    }
    for (name, v) in [("rpm", p.rpm), ("tpm", p.tpm)] {
        if v == Some(0) {
            return Err(cx.err(
                &format!("{field}.{name}"),
                "must be at least 1 (leave it out to reserve none)",
            ));
        }
    }
    let overflow = match p.overflow.as_str() {
        "spill" => Overflow::Spill,
        "dedicated_only" => Overflow::DedicatedOnly,
        other => {
            return Err(cx.err(
                &format!("{field}.overflow"),
                format!("expected \"spill\" or \"dedicated_only\", not {other:?}"),
            ))
        }
    };
    Ok(Provisioned {
        limits: Limits {
            rpm: p.rpm,
            tpm: p.tpm,
            ..Limits::default()
        },
        overflow,
    })
}

fn shared_pool(cx: &Ctx, field: &str, p: &RawSharedPool, m: &RawModel) -> Result<PoolSpec, ScenarioError> {
    if m.rpm.is_some() || m.tpm.is_some() || m.rpd.is_some() || m.tpd.is_some() || m.concurrent.is_some() {
        return Err(cx.err(
            field,
            "a shared pool has no per-project limits: remove rpm, tpm, rpd, tpd and concurrent from this model",
        ));
    }
    if p.capacity == 0 {
        return Err(cx.err(&format!("{field}.capacity"), "must be at least 1 request per minute"));
    }
    cx.at_most(&format!("{field}.capacity"), p.capacity, max::REQUESTS)?;
    for (name, v, hi) in [
        ("others", p.others, 2.0),
        ("swing", p.swing, 1.0),
        ("burst_load", p.burst_load, 2.0),
        ("bursts_per_hour", p.bursts_per_hour, 3600.0),
    ] {
        if !(v.is_finite() && (0.0..=hi).contains(&v)) {
            return Err(cx.err(
                &format!("{field}.{name}"),
                format!("must be between 0 and {hi}, got {v}"),
            ));
        }
    }
    Ok(PoolSpec {
        capacity: p.capacity,
        others: p.others,
        swing: p.swing,
        bursts_per_hour: p.bursts_per_hour,
        burst: cx.positive_bounded(&format!("{field}.burst"), &p.burst, max::DELAY)?,
        burst_load: p.burst_load,
    })
}

/// A price in USD per million tokens as picodollars per token (to 10⁻⁶ USD per million).
fn price(cx: &Ctx, field: &str, usd_per_million: f64) -> Result<u64, ScenarioError> {
    if !(usd_per_million.is_finite() && (0.0..=max::PRICE).contains(&usd_per_million)) {
        return Err(cx.err(
            field,
            format!("must be a price in USD per million tokens from 0 to {}", max::PRICE),
        ));
    }
    Ok((usd_per_million * 1e6).round() as u64)
}

/// `models.<name>.price_changes`: each `from` an RFC 3339 instant, in increasing order, as the
/// instant after the scenario's start (one before it applies from the start).
fn price_changes(
    cx: &Ctx,
    field: &str,
    raw: &[RawPriceChange],
    calendar: &Calendar,
) -> Result<Vec<(Nanos, Prices)>, ScenarioError> {
    let mut out: Vec<(Nanos, Prices)> = Vec::new();
    let mut last = None;
    for (i, c) in raw.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let at = DateTime::parse_from_rfc3339(&c.from).map_err(|e| {
            cx.err(
                &format!("{f}.from"),
                format!("expected an RFC 3339 time with offset such as \"2026-12-01T00:00:00-08:00\" ({e})"),
            )
        })?;
        if last.is_some_and(|l| at <= l) {
            return Err(cx.err(&format!("{f}.from"), "must be later than the change before it"));
        }
        last = Some(at);
        let prices = Prices {
            input: price(cx, &format!("{f}.price_input"), c.price_input)?,
            output: price(cx, &format!("{f}.price_output"), c.price_output)?,
        };
        out.push((calendar.from_unix_micros(at.timestamp_micros()), prices));
    }
    Ok(out)
}

/// A spend cap in USD as picodollars (to 10⁻⁶ USD).
fn spend_cap(cx: &Ctx, field: &str, usd: Option<f64>) -> Result<Option<u128>, ScenarioError> {
    let Some(usd) = usd else { return Ok(None) };
    if !(usd.is_finite() && usd > 0.0 && usd <= max::SPEND_CAP) {
        return Err(cx.err(
            field,
            format!("must be an amount in USD above 0 and at most {}", max::SPEND_CAP),
        ));
    }
    Ok(Some((usd * 1e6).round() as u128 * 1_000_000))
}

fn fleet(cx: &Ctx, f: &RawFleet) -> Result<FleetSpec, ScenarioError> {
    let mut spec = FleetSpec::default();
    if let Some(n) = f.instances {
        if n == 0 {
            return Err(cx.err("fleet.instances", "must be at least 1"));
        }
        spec.instances = cx.at_most("fleet.instances", n, max::INSTANCES)? as usize;
    }
    if let Some(name) = &f.ledger {
        spec.sharing = Sharing::parse(name).ok_or_else(|| {
            cx.err(
                "fleet.ledger",
                format!("expected \"local\", \"shared\" or \"rpm_shared\", not {name:?}"),
            )
        })?;
    }
    if let Some(d) = &f.sync_delay {
        if spec.sharing == Sharing::Local {
            return Err(cx.err(
                "fleet.sync_delay",
                "applies only to a shared ledger: set `ledger = \"shared\"` or `\"rpm_shared\"`",
            ));
        }
        spec.sync_delay = cx.bounded("fleet.sync_delay", d, max::DELAY)?;
    }
    Ok(spec)
}

fn quirks(cx: &Ctx, q: &RawQuirks) -> Result<Quirks, ScenarioError> {
    let delay = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| cx.bounded(&format!("server.quirks.{name}"), t, max::DELAY))
            .transpose()
    };
    if !(q.capacity_rate.is_finite() && (0.0..=1.0).contains(&q.capacity_rate)) {
        return Err(cx.err("server.quirks.capacity_rate", "must be a probability between 0 and 1"));
    }
    Ok(Quirks {
        per_day_retry: per_day_retry(cx, q.per_day_retry.as_deref())?,
        per_minute_retry: delay("per_minute_retry", &q.per_minute_retry)?,
        zero_quota_retry: delay("zero_quota_retry", &q.zero_quota_retry)?,
        capacity_rate: q.capacity_rate,
    })
}

/// `models.<name>.routed_to` and `routed_quota`: a retired id served by another model of the
/// scenario, neither of them Live nor re-routed in turn.
fn routes(
    cx: &Ctx,
    raw: &std::collections::BTreeMap<String, RawModel>,
    models: &mut [Model],
) -> Result<(), ScenarioError> {
    for (i, (name, m)) in raw.iter().enumerate() {
        let field = format!("models.{name:?}.routed_to");
        let Some(to) = &m.routed_to else {
            if m.routed_quota != RouteQuota::default() {
                return Err(cx.err(
                    &format!("models.{name:?}.routed_quota"),
                    "applies only with `routed_to`",
                ));
            }
            continue;
        };
        let Some(t) = raw.keys().position(|k| k == to) else {
            return Err(cx.err(&field, format!("{to:?} is not a model of the scenario")));
        };
        if t == i || raw[to].routed_to.is_some() {
            return Err(cx.err(
                &field,
                format!("{to:?} is re-routed itself: name the model that serves the calls"),
            ));
        }
        if m.live || raw[to].live {
            return Err(cx.err(&field, "Live models are not re-routed"));
        }
        models[i].route = Some(Route {
            to: t,
            quota: m.routed_quota,
        });
    }
    Ok(())
}

/// `server.quirks.per_day_retry`: `"next_minute"` (the default), `"reset"` or a duration.
fn per_day_retry(cx: &Ctx, v: Option<&str>) -> Result<PerDayRetry, ScenarioError> {
    const FIELD: &str = "server.quirks.per_day_retry";
    match v {
        None | Some("next_minute") => Ok(PerDayRetry::NextMinute),
        Some("reset") => Ok(PerDayRetry::Reset),
        Some(t) if t.starts_with(|c: char| c.is_ascii_digit()) => {
            Ok(PerDayRetry::Fixed(cx.bounded(FIELD, t, max::DELAY)?))
        }
        Some(t) => Err(cx.err(
            FIELD,
            format!("expected \"next_minute\", \"reset\" or a duration such as \"0s\", not {t:?}"),
        )),
    }
}

fn validate_strategy(cx: &Ctx, i: usize, s: &RawStrategy, models: &[Model]) -> Result<StrategySpec, ScenarioError> {
    let field = format!("strategies[{i}]");
    // A margin's value is checked before its kind (a bad duration is named as such).
    let margin_value = |m: &str| cx.bounded(&format!("{field}.margin"), m, max::MARGIN);
    if let Some(m) = &s.margin {
        margin_value(m)?;
    }
    // `compat = "gemini-flux"` is shorthand for kind = "gemini_flux".
    let name = match (s.kind.as_str(), s.compat.as_deref()) {
        (_, None) => s.kind.as_str(),
        ("exact_cooldown", Some("gemini-flux")) => "gemini_flux",
        ("exact_cooldown", Some(other)) => {
            return Err(cx.err(
                &format!("{field}.compat"),
                format!("unknown compatibility mode {other:?}; expected \"gemini-flux\" (or kind = \"gemini_flux\")"),
            ))
        }
        (_, Some(_)) => return Err(cx.err(&format!("{field}.compat"), "only for kind = \"exact_cooldown\"")),
    };
    let Some(mut kind) = StrategyKind::named(name) else {
        let names: Vec<String> = crate::strategy::KINDS.iter().map(|d| format!("{:?}", d.name)).collect();
        return Err(cx.err(
            &format!("{field}.kind"),
            format!("unknown strategy {name:?}; expected one of {}", names.join(", ")),
        ));
    };
    for param in Param::ALL {
        let given = match param {
            Param::Interval => s.interval.is_some(),
            Param::Margin => s.margin.is_some(),
            Param::Fallback => !s.fallback.is_empty(),
            Param::Preset => s.preset.is_some(),
            Param::CooldownTime => s.cooldown_time.is_some(),
            Param::AllowedFails => s.allowed_fails.is_some(),
            Param::NumRetries => s.num_retries.is_some(),
            Param::RetryAfter => s.retry_after.is_some(),
        };
        if given && !kind.takes(param) {
            return Err(cx.err(
                &format!("{field}.{}", param.field()),
                format!("only for kind = {}", crate::strategy::kind_names_taking(param)),
            ));
        }
        if !given {
            if let Some((_, example)) = kind.def().requires.iter().find(|(p, _)| *p == param) {
                return Err(cx.err(
                    &format!("{field}.{}", param.field()),
                    format!("required for kind = {:?}, e.g. {example}", kind.name()),
                ));
            }
        }
    }
    if let Some(m) = &s.margin {
        kind.params.margin = margin_value(m)?;
    }
    if let Some(text) = &s.interval {
        kind.params.interval = cx.positive_bounded(&format!("{field}.interval"), text, max::DELAY)?;
    }
    // LiteLLM's Router settings.
    if let Some(text) = &s.cooldown_time {
        // The Router reads `cooldown_time or 5`: a 0 would be its default, not "no cooldown".
        kind.params.cooldown = cx.positive_bounded(&format!("{field}.cooldown_time"), text, max::DELAY)?;
    }
    if let Some(n) = s.allowed_fails {
        cx.at_most(&format!("{field}.allowed_fails"), n as u64, max::ATTEMPTS as u64)?;
        kind.params.allowed_fails = Some(n);
    }
    if let Some(n) = s.num_retries {
        cx.at_most(&format!("{field}.num_retries"), n as u64, max::ATTEMPTS as u64 - 1)?;
        kind.params.num_retries = n;
    }
    if let Some(text) = &s.retry_after {
        kind.params.retry_after = cx.bounded(&format!("{field}.retry_after"), text, max::DELAY)?;
    }
    let router_retry = s.num_retries.is_some() || s.retry_after.is_some();
    if router_retry && (s.retry.is_some() || s.preset.is_some()) {
        return Err(cx.err(
            &format!("{field}.retry"),
            "num_retries and retry_after are the Router's retry policy: give them or a retry table, not both",
        ));
    }
    match s.preset.as_deref() {
        None => {}
        Some("sdk") if s.retry.is_some() => {
            return Err(cx.err(
                &format!("{field}.preset"),
                "preset = \"sdk\" is a retry policy: give it or a retry table, not both",
            ))
        }
        Some("sdk") => {}
        Some(other) => {
            return Err(cx.err(
                &format!("{field}.preset"),
                format!("unknown preset {other:?}; expected \"sdk\" (google-genai's HttpRetryOptions())"),
            ))
        }
    }
    let name = match &s.name {
        Some(n) if n.trim().is_empty() => return Err(cx.err(&format!("{field}.name"), "must not be empty")),
        Some(n) => n.clone(),
        None => kind.name().to_string(),
    };
    let mut fallback = Vec::new();
    for (j, m) in s.fallback.iter().enumerate() {
        fallback.push(cx.model(&format!("{field}.fallback[{j}]"), models, m)?);
    }
    let mut known_limits = vec![None; models.len()];
    for (m, l) in &s.known_limits {
        let idx = cx.model(&format!("{field}.known_limits.{m:?}"), models, m)?;
        known_limits[idx] = Some(limits(l));
    }
    let retry = if router_retry {
        crate::strategy::litellm::router_retry(&kind.params)
    } else {
        validate_retry(cx, &field, s.retry.as_ref(), &kind)?
    };
    Ok(StrategySpec {
        name,
        kind,
        retry,
        fallback,
        known_limits,
    })
}

fn validate_retry(
    cx: &Ctx,
    field: &str,
    r: Option<&RawRetry>,
    kind: &StrategyKind,
) -> Result<RetryPolicy, ScenarioError> {
    let Some(r) = r else {
        return Ok(kind.def().retry);
    };
    let f = |n: &str| format!("{field}.retry.{n}");
    let allowed: &[&str] = match r.policy.as_str() {
        "none" => &[],
        "immediate" => &["max_attempts"],
        "backoff" => &["base", "cap", "jitter", "max_attempts"],
        "retry_info" => &["base", "cap", "max_attempts"],
        other => {
            return Err(cx.err(
                &f("policy"),
                format!(
                    "unknown retry policy {other:?}; expected \"none\", \"immediate\", \"backoff\" or \"retry_info\""
                ),
            ))
        }
    };
    for (name, p) in [
        ("base", r.base.is_some()),
        ("cap", r.cap.is_some()),
        ("jitter", r.jitter.is_some()),
        ("max_attempts", r.max_attempts.is_some()),
    ] {
        if p && !allowed.contains(&name) {
            return Err(cx.err(&f(name), format!("not used by policy = {:?}", r.policy)));
        }
    }
    if r.max_attempts == Some(0) {
        return Err(cx.err(&f("max_attempts"), "must be at least 1 (the first attempt counts)"));
    }
    if let Some(n) = r.max_attempts {
        cx.at_most(&f("max_attempts"), n as u64, max::ATTEMPTS as u64)?;
    }
    let base = match &r.base {
        Some(b) => cx.positive_bounded(&f("base"), b, max::DELAY)?,
        None => SECOND,
    };
    let cap = match &r.cap {
        Some(c) => cx.positive_bounded(&f("cap"), c, max::DELAY)?,
        None => 60 * SECOND,
    };
    if cap < base {
        return Err(cx.err(&f("cap"), "must be at least base"));
    }
    Ok(match r.policy.as_str() {
        "none" => RetryPolicy::None,
        "immediate" => RetryPolicy::Immediate {
            max_attempts: r.max_attempts.unwrap_or(10),
        },
        "backoff" => RetryPolicy::Backoff {
            base,
            cap,
            jitter: match r.jitter.as_deref() {
                None | Some("full") => Jitter::Full,
                Some("equal") => Jitter::Equal,
                Some("none") => Jitter::None,
                Some("decorrelated") => Jitter::Decorrelated,
                Some(text) => Jitter::Plus(cx.positive_bounded(&f("jitter"), text, max::DELAY).map_err(|_| {
                    cx.err(
                        &f("jitter"),
                        format!("expected \"full\", \"equal\", \"none\", \"decorrelated\" or a duration added to each delay (e.g. \"1s\"), got {text:?}"),
                    )
                })?),
            },
            max_attempts: r.max_attempts.unwrap_or(5),
        },
        _ => RetryPolicy::RetryInfo {
            base,
            cap,
            max_attempts: r.max_attempts,
        },
    })
}
