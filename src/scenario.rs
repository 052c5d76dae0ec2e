//! Scenario files: the TOML schema (every table denies unknown fields) and its validation into
//! a [`Scenario`] that the rest of the crate trusts. Errors name the file, the line or field,
//! and what was expected.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::path::Path;

use chrono::DateTime;
use serde::de::{self, Deserializer, SeqAccess, Visitor};
use serde::Deserialize;

use crate::ledger::{LedgerConfig, Limits, WindowKind};
use crate::time::{parse_duration, Calendar, Nanos, DAY};
use crate::topology::{Account, Key, Project, Topology};
use crate::workload::{Arrivals, ModelChoice, TokenDist, TraceRow, WorkloadSpec};

/// A scenario that failed to load: the message names the file and the field or line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

/// What the server counts against TPM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TpmCounts {
    /// Input (prompt) tokens only, as Gemini does.
    #[default]
    Input,
    /// Input plus output tokens, charged at admission (as providers that reserve `max_tokens`).
    Total,
}

impl TpmCounts {
    /// Tokens a request of `input` prompt and `output` response tokens costs against TPM.
    pub fn cost(self, input: u64, output: u64) -> u64 {
        match self {
            TpmCounts::Input => input,
            TpmCounts::Total => input + output,
        }
    }
}

/// Whether a concurrency limit is shared by a project or held by each key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConcurrencyScope {
    /// All keys of a project share the slots.
    #[default]
    Project,
    /// Each key has its own slots.
    Key,
}

/// Response time of the mock server: `ttft + output_tokens / tokens_per_second`, times a
/// lognormal factor of median 1 and shape `jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Time to first token.
    pub ttft: Nanos,
    /// Output tokens generated per second.
    pub tokens_per_second: f64,
    /// Sigma of the lognormal jitter factor (0 = none).
    pub jitter: f64,
}

/// One model the server knows, with its default limits.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Model id, e.g. `gemini-2.5-flash`.
    pub name: String,
    /// Default per-(project, model) limits.
    pub limits: Limits,
    /// Scope of the concurrency limit.
    pub concurrency_scope: ConcurrencyScope,
    /// Response time.
    pub latency: Latency,
}

/// Server-side settings.
#[derive(Debug, Clone, PartialEq)]
pub struct ServerConfig {
    /// Window kind and rejected-request counting.
    pub ledger: LedgerConfig,
    /// What TPM counts.
    pub tpm_counts: TpmCounts,
    /// Probability that an admitted request instead gets 503 UNAVAILABLE (not charged).
    pub fault_rate: f64,
}

/// Retry policy after a 429, a 503 or an invalid key.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryPolicy {
    /// Give up at the first error.
    None,
    /// Retry at once.
    Immediate {
        /// Attempts in all, first included.
        max_attempts: u32,
    },
    /// Truncated exponential backoff: `min(cap, base * 2^(n-1))` with jitter.
    Backoff {
        /// First delay.
        base: Nanos,
        /// Largest delay.
        cap: Nanos,
        /// How the delay is randomised.
        jitter: Jitter,
        /// Attempts in all, first included.
        max_attempts: u32,
    },
    /// Wait the server's RetryInfo delay; errors without one use backoff with `base`/`cap`.
    RetryInfo {
        /// First delay of the fallback backoff.
        base: Nanos,
        /// Largest delay of the fallback backoff.
        cap: Nanos,
        /// Attempts in all, first included (`None`: unlimited).
        max_attempts: Option<u32>,
    },
}

/// Backoff jitter (AWS's naming).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Jitter {
    /// Uniform in `[0, d]`.
    Full,
    /// `d/2` plus uniform in `[0, d/2]`.
    Equal,
    /// Exactly `d`.
    None,
}

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

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Scenario name.
    pub name: String,
    /// Default seed.
    pub seed: u64,
    /// Wall-clock start and daily reset zone.
    pub calendar: Calendar,
    /// Simulation stops here (virtual time).
    pub horizon: Nanos,
    /// Server settings.
    pub server: ServerConfig,
    /// Models, in file order (sorted by name).
    pub models: Vec<Model>,
    /// Accounts, projects, keys and per-project limits.
    pub topology: Topology,
    /// The requests.
    pub workload: WorkloadSpec,
    /// Strategies to compare.
    pub strategies: Vec<StrategySpec>,
}

impl Scenario {
    /// Loads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| ScenarioError(format!("{}: cannot read scenario: {e}", path.display())))?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let raw: RawScenario = toml::from_str(text).map_err(|e| {
            let msg = e.message().trim().to_string();
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    let src = text.lines().nth(line - 1).unwrap_or("").trim();
                    if src.is_empty() {
                        ScenarioError(format!("{file}:{line}:{col}: {msg}"))
                    } else {
                        ScenarioError(format!("{file}:{line}:{col}: {msg} (in `{src}`)"))
                    }
                }
                None => ScenarioError(format!("{file}: {msg}")),
            }
        })?;
        let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
        validate(raw, &file, &base)
    }

    /// Index of a model by name.
    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }

    /// The built-in strategy of a kind name, as used when a scenario lists none or when
    /// `--strategy` names a kind the file does not configure.
    pub fn builtin_strategy(&self, name: &str) -> Option<StrategySpec> {
        let none = vec![None; self.models.len()];
        let sdk_backoff = RetryPolicy::Backoff {
            base: crate::time::SECOND,
            cap: 60 * crate::time::SECOND,
            jitter: Jitter::Full,
            max_attempts: 5,
        };
        let kind = match name {
            "round_robin" => StrategyKind::RoundRobin,
            "fixed_interval" => StrategyKind::FixedInterval {
                interval: 30 * crate::time::SECOND,
            },
            "exact_cooldown" => StrategyKind::ExactCooldown {
                gemini_flux: false,
                margin: 0,
            },
            _ => return None,
        };
        let retry = match kind {
            StrategyKind::ExactCooldown { .. } => RetryPolicy::RetryInfo {
                base: crate::time::SECOND,
                cap: 60 * crate::time::SECOND,
                max_attempts: None,
            },
            _ => sdk_backoff,
        };
        Some(StrategySpec {
            name: name.to_string(),
            kind,
            retry,
            fallback: Vec::new(),
            known_limits: none,
        })
    }
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

// ---------------------------------------------------------------------------------------------
// The TOML schema.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    description: Option<String>,
    #[serde(default = "default_seed")]
    seed: u64,
    #[serde(default = "default_start")]
    start: String,
    horizon: Option<String>,
    #[serde(default)]
    server: RawServer,
    models: BTreeMap<String, RawModel>,
    topology: RawTopology,
    workload: RawWorkload,
    #[serde(default)]
    strategies: Vec<RawStrategy>,
}

fn default_seed() -> u64 {
    1
}

fn default_start() -> String {
    "2025-10-15T09:00:00-07:00".into()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServer {
    #[serde(default)]
    window: WindowKind,
    #[serde(default)]
    tpm_counts: TpmCounts,
    #[serde(default)]
    count_rejected: bool,
    #[serde(default)]
    fault_rate: f64,
    #[serde(default = "default_tz")]
    daily_reset_tz: String,
    #[serde(default)]
    latency: RawLatency,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            window: WindowKind::default(),
            tpm_counts: TpmCounts::default(),
            count_rejected: false,
            fault_rate: 0.0,
            daily_reset_tz: default_tz(),
            latency: RawLatency::default(),
        }
    }
}

fn default_tz() -> String {
    "America/Los_Angeles".into()
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct RawLatency {
    #[serde(default = "default_ttft")]
    ttft: String,
    #[serde(default = "default_tps")]
    tokens_per_second: f64,
    #[serde(default = "default_jitter")]
    jitter: f64,
}

impl Default for RawLatency {
    fn default() -> Self {
        RawLatency {
            ttft: default_ttft(),
            tokens_per_second: default_tps(),
            jitter: default_jitter(),
        }
    }
}

fn default_ttft() -> String {
    "800ms".into()
}
fn default_tps() -> f64 {
    150.0
}
fn default_jitter() -> f64 {
    0.2
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    rpm: Option<u64>,
    tpm: Option<u64>,
    rpd: Option<u64>,
    concurrent: Option<u64>,
    #[serde(default)]
    concurrent_scope: ConcurrencyScope,
    latency: Option<RawLatency>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    rpm: Option<u64>,
    tpm: Option<u64>,
    rpd: Option<u64>,
    concurrent: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTopology {
    #[serde(default = "one")]
    keys_per_project: u64,
    projects: Option<CountOrNames>,
    #[serde(default)]
    accounts: Vec<RawAccount>,
    #[serde(default)]
    keys: Vec<RawKey>,
    #[serde(default)]
    project: BTreeMap<String, RawProjectSettings>,
}

fn one() -> u64 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccount {
    name: String,
    projects: CountOrNames,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKey {
    project: String,
    key: Option<String>,
    #[serde(default)]
    invalid: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProjectSettings {
    keys: Option<u64>,
    #[serde(default)]
    invalid_keys: u64,
    #[serde(default)]
    rpd_used: u64,
    tier: Option<String>,
    #[serde(default)]
    limits: BTreeMap<String, RawLimits>,
}

/// `projects = 6` or `projects = ["a", "b"]`.
enum CountOrNames {
    Count(u64),
    Names(Vec<String>),
}

impl<'de> Deserialize<'de> for CountOrNames {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = CountOrNames;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a number of projects or a list of project names")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                u64::try_from(v)
                    .map(CountOrNames::Count)
                    .map_err(|_| E::custom(format!("expected a positive number of projects, got {v}")))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(CountOrNames::Count(v))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
                let mut names = Vec::new();
                while let Some(n) = seq.next_element::<String>()? {
                    names.push(n);
                }
                Ok(CountOrNames::Names(names))
            }
        }
        d.deserialize_any(V)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    kind: String,
    rate: Option<f64>,
    duration: Option<String>,
    burst_on: Option<String>,
    burst_off: Option<String>,
    requests: Option<u64>,
    workers: Option<u64>,
    path: Option<String>,
    input_tokens: Option<RawTokens>,
    output_tokens: Option<RawTokens>,
    model: Option<String>,
    #[serde(default)]
    models: Vec<RawWeightedModel>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWeightedModel {
    name: String,
    weight: u32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTokens {
    dist: String,
    value: Option<u64>,
    min: Option<u64>,
    max: Option<u64>,
    median: Option<f64>,
    p99: Option<f64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStrategy {
    name: Option<String>,
    kind: String,
    interval: Option<String>,
    compat: Option<String>,
    margin: Option<String>,
    #[serde(default)]
    fallback: Vec<String>,
    #[serde(default)]
    known_limits: BTreeMap<String, RawLimits>,
    retry: Option<RawRetry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRetry {
    policy: String,
    base: Option<String>,
    cap: Option<String>,
    jitter: Option<Jitter>,
    max_attempts: Option<u32>,
}

// ---------------------------------------------------------------------------------------------
// Validation.

struct Ctx<'a> {
    file: &'a str,
}

impl Ctx<'_> {
    fn err(&self, field: &str, msg: impl fmt::Display) -> ScenarioError {
        ScenarioError(format!("{}: {field}: {msg}", self.file))
    }

    fn duration(&self, field: &str, text: &str) -> Result<Nanos, ScenarioError> {
        parse_duration(text).map_err(|m| self.err(field, m))
    }

    fn positive_duration(&self, field: &str, text: &str) -> Result<Nanos, ScenarioError> {
        match self.duration(field, text)? {
            0 => Err(self.err(field, "must be greater than zero")),
            d => Ok(d),
        }
    }

    fn latency(&self, field: &str, raw: &RawLatency) -> Result<Latency, ScenarioError> {
        let ttft = self.duration(&format!("{field}.ttft"), &raw.ttft)?;
        if !(raw.tokens_per_second.is_finite() && raw.tokens_per_second > 0.0) {
            return Err(self.err(
                &format!("{field}.tokens_per_second"),
                "must be a number greater than zero",
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
        concurrent: raw.concurrent,
    }
}

fn validate(raw: RawScenario, file: &str, base: &Path) -> Result<Scenario, ScenarioError> {
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
        models.push(Model {
            name: name.clone(),
            limits: Limits {
                rpm: m.rpm,
                tpm: m.tpm,
                rpd: m.rpd,
                concurrent: m.concurrent,
            },
            concurrency_scope: m.concurrent_scope,
            latency,
        });
    }

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
    let mut accounts = Vec::new();
    let mut projects: Vec<Project> = Vec::new();
    let mut by_name: HashMap<String, usize> = HashMap::new();
    let mut groups: Vec<(String, String, &CountOrNames)> = Vec::new();
    if let Some(p) = &raw.projects {
        groups.push(("default".into(), "topology.projects".into(), p));
    }
    for (i, a) in raw.accounts.iter().enumerate() {
        if a.name.trim().is_empty() {
            return Err(cx.err(&format!("topology.accounts[{i}].name"), "must not be empty"));
        }
        groups.push((a.name.clone(), format!("topology.accounts[{i}].projects"), &a.projects));
    }
    if groups.is_empty() {
        return Err(cx.err(
            "topology",
            "no projects: give `projects = N` or [[topology.accounts]] with projects",
        ));
    }
    for (account, field, spec) in groups {
        if accounts.iter().any(|a: &Account| a.name == account) {
            return Err(cx.err(&field, format!("account {account:?} is defined twice")));
        }
        let a = accounts.len();
        accounts.push(Account { name: account.clone() });
        let names: Vec<String> = match spec {
            CountOrNames::Count(0) => return Err(cx.err(&field, "must be at least 1")),
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
            projects[p].tier = t.clone();
        }
        for (model, l) in &s.limits {
            let m = cx.model(&format!("{field}.limits.{model:?}"), models, model)?;
            let over = limits(l);
            let cur = &mut projects[p].limits[m];
            cur.rpm = over.rpm.or(cur.rpm);
            cur.tpm = over.tpm.or(cur.tpm);
            cur.rpd = over.rpd.or(cur.rpd);
            cur.concurrent = over.concurrent.or(cur.concurrent);
        }
    }

    let mut keys = Vec::new();
    for (p, project) in projects.iter().enumerate() {
        for i in 0..key_counts[p] + invalid_counts[p] {
            keys.push(Key {
                value: Key::derive(&project.name, i),
                project: p,
                valid: i < key_counts[p],
            });
        }
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
        let n = keys.iter().filter(|x: &&Key| x.project == p).count() as u64;
        let value = match &k.key {
            Some(v) if v.len() < 8 || v.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                return Err(cx.err(&format!("{field}.key"), "must be at least 8 characters with no spaces"))
            }
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
                format!("key {} is given twice", crate::topology::mask(&k.value)),
            ));
        }
    }
    if !keys.iter().any(|k| k.valid) {
        return Err(cx.err("topology", "every key is invalid; at least one valid key is needed"));
    }
    for (p, project) in projects.iter().enumerate() {
        if !keys.iter().any(|k| k.project == p) {
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

fn validate_tokens(cx: &Ctx, field: &str, raw: &Option<RawTokens>) -> Result<TokenDist, ScenarioError> {
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
        v.ok_or_else(|| cx.err(&format!("{field}.{name}"), format!("required for dist = {:?}", t.dist)))
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
            if !(median.is_finite() && median >= 1.0) {
                return Err(cx.err(&format!("{field}.median"), "must be at least 1"));
            }
            if !(p99.is_finite() && p99 >= median) {
                return Err(cx.err(
                    &format!("{field}.p99"),
                    format!("must be at least the median ({median})"),
                ));
            }
            let min = t.min.unwrap_or(1);
            let max = t.max.unwrap_or(u64::MAX);
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
        "trace" => &["path", "duration", "model", "models", "workers"],
        other => {
            return Err(cx.err(
                "workload.kind",
                format!("unknown kind {other:?}; expected \"open\", \"closed\" or \"trace\""),
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
        ("input_tokens", w.input_tokens.is_some()),
        ("output_tokens", w.output_tokens.is_some()),
        ("model", w.model.is_some()),
        ("models", !w.models.is_empty()),
    ];
    for (name, p) in present {
        if p && !allowed.contains(&name) {
            return Err(cx.err(
                &format!("workload.{name}"),
                format!("not used by kind = {kind:?} (it takes {allowed:?})"),
            ));
        }
    }
    if kind == "trace" && w.workers.is_some() {
        return Err(cx.err("workload.workers", "not used by kind = \"trace\""));
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
    let need = |v: Option<u64>, name: &str| -> Result<u64, ScenarioError> {
        match v {
            None => Err(cx.err(&format!("workload.{name}"), format!("required for kind = {kind:?}"))),
            Some(0) => Err(cx.err(&format!("workload.{name}"), "must be at least 1")),
            Some(n) => Ok(n),
        }
    };
    match kind {
        "closed" => {
            let requests = need(w.requests, "requests")?;
            let workers = need(w.workers, "workers")?;
            Ok(WorkloadSpec {
                arrivals: Arrivals::Closed { requests, workers },
                duration: 0,
                input: validate_tokens(cx, "workload.input_tokens", &w.input_tokens)?,
                output: validate_tokens(cx, "workload.output_tokens", &w.output_tokens)?,
                model,
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
                w.duration
                    .as_deref()
                    .ok_or_else(|| cx.err("workload.duration", "required for kind = \"open\""))?,
            )?;
            let bursts = match (&w.burst_on, &w.burst_off) {
                (None, None) => None,
                (Some(on), Some(off)) => Some((
                    cx.positive_duration("workload.burst_on", on)?,
                    cx.positive_duration("workload.burst_off", off)?,
                )),
                _ => return Err(cx.err("workload.burst_on", "give both burst_on and burst_off, or neither")),
            };
            if let Some(0) = w.requests {
                return Err(cx.err("workload.requests", "must be at least 1"));
            }
            Ok(WorkloadSpec {
                arrivals: Arrivals::Open {
                    rate_per_min: rate,
                    bursts,
                    max_requests: w.requests,
                },
                duration,
                input: validate_tokens(cx, "workload.input_tokens", &w.input_tokens)?,
                output: validate_tokens(cx, "workload.output_tokens", &w.output_tokens)?,
                model,
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
            let duration = match &w.duration {
                Some(d) => cx.positive_duration("workload.duration", d)?,
                None => last + crate::time::MINUTE,
            };
            Ok(WorkloadSpec {
                arrivals: Arrivals::Trace {
                    rows: rows.into(),
                    path,
                },
                duration,
                input: TokenDist::Fixed(0),
                output: TokenDist::Fixed(0),
                model,
            })
        }
    }
}

/// Reads a trace CSV: a header `arrival_s,input_tokens,output_tokens[,model]`, then one row per
/// request (arrival offset in seconds, exact to the nanosecond). Rows are sorted by arrival.
pub fn read_trace(path: &Path, models: &[Model]) -> Result<Vec<TraceRow>, ScenarioError> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| ScenarioError(format!("{shown}: cannot read trace: {e}")))?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let header: Vec<String> = match lines.next() {
        Some((_, h)) => h.split(',').map(|c| c.trim().to_string()).collect(),
        None => {
            return Err(ScenarioError(format!(
                "{shown}: empty trace; expected a header `arrival_s,input_tokens,output_tokens[,model]`"
            )))
        }
    };
    let with_model = match header.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["arrival_s", "input_tokens", "output_tokens"] => false,
        ["arrival_s", "input_tokens", "output_tokens", "model"] => true,
        _ => {
            return Err(ScenarioError(format!(
                "{shown}:1: expected the header `arrival_s,input_tokens,output_tokens[,model]`, got {:?}",
                header.join(",")
            )))
        }
    };
    let mut rows = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            return Err(ScenarioError(format!(
                "{shown}:{n}: expected {} columns, got {}",
                header.len(),
                cells.len()
            )));
        }
        let arrival = crate::time::parse_decimal_scaled(cells[0], crate::time::SECOND as u128)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| {
                ScenarioError(format!(
                    "{shown}:{n}: arrival_s: expected non-negative seconds such as 12.5, got {:?}",
                    cells[0]
                ))
            })?;
        let int = |j: usize, name: &str| {
            cells[j].parse::<u64>().map_err(|_| {
                ScenarioError(format!(
                    "{shown}:{n}: {name}: expected a non-negative integer, got {:?}",
                    cells[j]
                ))
            })
        };
        let input_tokens = int(1, "input_tokens")?;
        let output_tokens = int(2, "output_tokens")?;
        let model = if with_model {
            Some(
                models
                    .iter()
                    .position(|m| m.name == cells[3])
                    .ok_or_else(|| ScenarioError(format!("{shown}:{n}: model: unknown model {:?}", cells[3])))?,
            )
        } else {
            None
        };
        rows.push(TraceRow {
            arrival,
            input_tokens,
            output_tokens,
            model,
        });
    }
    if rows.is_empty() {
        return Err(ScenarioError(format!("{shown}: the trace has a header but no rows")));
    }
    rows.sort_by_key(|r| r.arrival);
    Ok(rows)
}

fn validate_strategy(cx: &Ctx, i: usize, s: &RawStrategy, models: &[Model]) -> Result<StrategySpec, ScenarioError> {
    let field = format!("strategies[{i}]");
    let kind = match s.kind.as_str() {
        "round_robin" => StrategyKind::RoundRobin,
        "fixed_interval" => {
            let text = s.interval.as_deref().ok_or_else(|| {
                cx.err(
                    &format!("{field}.interval"),
                    "required for kind = \"fixed_interval\", e.g. \"30s\"",
                )
            })?;
            StrategyKind::FixedInterval {
                interval: cx.positive_duration(&format!("{field}.interval"), text)?,
            }
        }
        "exact_cooldown" => StrategyKind::ExactCooldown {
            gemini_flux: match s.compat.as_deref() {
                None => false,
                Some("gemini-flux") => true,
                Some(other) => {
                    return Err(cx.err(
                        &format!("{field}.compat"),
                        format!("unknown compatibility mode {other:?}; expected \"gemini-flux\""),
                    ))
                }
            },
            margin: match &s.margin {
                None => 0,
                Some(m) => cx.duration(&format!("{field}.margin"), m)?,
            },
        },
        other => {
            return Err(cx.err(
                &format!("{field}.kind"),
                format!(
                    "unknown strategy {other:?}; expected \"round_robin\", \"fixed_interval\" or \"exact_cooldown\""
                ),
            ))
        }
    };
    if s.interval.is_some() && !matches!(kind, StrategyKind::FixedInterval { .. }) {
        return Err(cx.err(&format!("{field}.interval"), "only for kind = \"fixed_interval\""));
    }
    if s.compat.is_some() && !matches!(kind, StrategyKind::ExactCooldown { .. }) {
        return Err(cx.err(&format!("{field}.compat"), "only for kind = \"exact_cooldown\""));
    }
    if s.margin.is_some() && !matches!(kind, StrategyKind::ExactCooldown { .. }) {
        return Err(cx.err(&format!("{field}.margin"), "only for kind = \"exact_cooldown\""));
    }
    if !s.fallback.is_empty() && !matches!(kind, StrategyKind::ExactCooldown { .. }) {
        return Err(cx.err(&format!("{field}.fallback"), "only for kind = \"exact_cooldown\""));
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
    let retry = validate_retry(cx, &field, s.retry.as_ref(), &kind)?;
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
        return Ok(match kind {
            StrategyKind::ExactCooldown { .. } => RetryPolicy::RetryInfo {
                base: crate::time::SECOND,
                cap: 60 * crate::time::SECOND,
                max_attempts: None,
            },
            _ => RetryPolicy::Backoff {
                base: crate::time::SECOND,
                cap: 60 * crate::time::SECOND,
                jitter: Jitter::Full,
                max_attempts: 5,
            },
        });
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
    let base = match &r.base {
        Some(b) => cx.positive_duration(&f("base"), b)?,
        None => crate::time::SECOND,
    };
    let cap = match &r.cap {
        Some(c) => cx.positive_duration(&f("cap"), c)?,
        None => 60 * crate::time::SECOND,
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
            jitter: r.jitter.unwrap_or(Jitter::Full),
            max_attempts: r.max_attempts.unwrap_or(5),
        },
        _ => RetryPolicy::RetryInfo {
            base,
            cap,
            max_attempts: r.max_attempts,
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = r#"
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

    fn parse(text: &str) -> Result<Scenario, String> {
        Scenario::parse(text, Path::new("s.toml")).map_err(|e| e.0)
    }

    #[test]
    fn defaults_fill_in() {
        let s = parse(BASE).unwrap();
        assert_eq!(s.seed, 1);
        assert_eq!(s.horizon, 7 * DAY);
        assert_eq!(s.topology.projects.len(), 2);
        assert_eq!(s.topology.projects[0].name, "default-1");
        assert_eq!(s.topology.keys.len(), 2);
        let names: Vec<&str> = s.strategies.iter().map(|x| x.name.as_str()).collect();
        assert_eq!(names, ["round_robin", "fixed_interval", "exact_cooldown"]);
        assert_eq!(s.server.ledger.window, WindowKind::Sliding);
    }

    #[test]
    fn topology_overrides_keys_and_limits() {
        let text = format!(
            "{BASE}\n[topology.project.\"default-2\"]\nkeys = 3\ninvalid_keys = 1\nrpd_used = 7\nlimits.m = {{ rpm = 99 }}\n\
             [[topology.keys]]\nproject = \"default-1\"\nkey = \"my-own-key-1234\"\ninvalid = true\n"
        );
        let s = parse(&text).unwrap();
        let t = &s.topology;
        assert_eq!(t.keys.iter().filter(|k| k.project == 1).count(), 4);
        assert_eq!(t.keys.iter().filter(|k| k.project == 1 && !k.valid).count(), 1);
        assert_eq!(t.projects[1].limits[0].rpm, Some(99));
        assert_eq!(t.projects[0].limits[0].rpm, Some(10));
        assert_eq!(t.projects[1].rpd_used, 7);
        let own = t.keys.iter().find(|k| k.value == "my-own-key-1234").unwrap();
        assert!(!own.valid && own.project == 0);
    }

    #[test]
    fn validation_errors_name_the_field() {
        let cases: &[(&str, &str)] = &[
            (
                "[models.m]\nrpm = 10",
                "[models.m]\nrpm = 10\nconcurrent_scope = \"key\"",
            ),
            ("kind = \"closed\"", "kind = \"sometimes\""),
            ("value = 10 }\noutput", "value = 10, median = 3 }\noutput"),
            ("projects = 2", "projects = [\"a\", \"a\"]"),
        ];
        let expect = [
            "s.toml: models.\"m\".concurrent_scope: needs a `concurrent` limit",
            "s.toml: workload.kind: unknown kind \"sometimes\"",
            "s.toml: workload.input_tokens.median: not used by dist = \"fixed\"",
            "s.toml: topology.projects: project \"a\" is defined twice",
        ];
        for ((from, to), want) in cases.iter().zip(expect) {
            let err = parse(&BASE.replacen(from, to, 1)).unwrap_err();
            assert!(err.starts_with(want), "{err} !~ {want}");
        }
        let err = parse(&format!("start = \"yesterday\"\n{BASE}")).unwrap_err();
        assert!(err.starts_with("s.toml: start: expected an RFC 3339 time"), "{err}");
        let err = parse(&format!(
            "{BASE}\n[[strategies]]\nkind = \"round_robin\"\nretry = {{ policy = \"backoff\", max_attempts = 0 }}\n"
        ))
        .unwrap_err();
        assert!(err.contains("strategies[0].retry.max_attempts"), "{err}");
        let err = parse(&format!(
            "{BASE}\n[[strategies]]\nkind = \"round_robin\"\ncompat = \"gemini-flux\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("strategies[0].compat: only for kind = \"exact_cooldown\""),
            "{err}"
        );
        let err = parse(&format!(
            "{BASE}\n[[strategies]]\nkind = \"round_robin\"\nmargin = \"5ms\"\n"
        ))
        .unwrap_err();
        assert!(
            err.contains("strategies[0].margin: only for kind = \"exact_cooldown\""),
            "{err}"
        );
        let err = parse(&format!(
            "{BASE}\n[[strategies]]\nkind = \"exact_cooldown\"\nmargin = \"soon\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("strategies[0].margin:"), "{err}");
        let ok = Scenario::parse(
            &format!("{BASE}\n[[strategies]]\nkind = \"exact_cooldown\"\nmargin = \"250ms\"\n"),
            Path::new("s.toml"),
        )
        .unwrap();
        assert_eq!(
            ok.strategies[0].kind,
            StrategyKind::ExactCooldown {
                gemini_flux: false,
                margin: 250 * crate::time::MILLISECOND
            }
        );
        let err = parse(&format!(
            "{BASE}\n[[strategies]]\nkind = \"round_robin\"\n[[strategies]]\nkind = \"round_robin\"\n"
        ))
        .unwrap_err();
        assert!(err.contains("used twice"), "{err}");
        let open = BASE
            .replace("kind = \"closed\"", "kind = \"open\"\nrate = 1\nduration = \"1h\"")
            .replace("requests = 10\nworkers = 2\n", "");
        assert!(parse(&open).is_ok());
        let err = parse(&format!("horizon = \"1h\"\n{open}")).unwrap_err();
        assert!(err.starts_with("s.toml: horizon: only for closed workloads"), "{err}");
    }
}
