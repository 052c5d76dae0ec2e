//! Scenarios: the validated [`Scenario`] that the rest of the crate trusts, and how one is
//! loaded from a TOML file. The schema (every table denies unknown fields) is in `schema`, its
//! checks in `validate`, trace CSVs in `trace`, the sweep's setting editor in `setting`, and
//! quota dumps turned into limits (`limits import`) in `quota_dump`.
//! Errors name the file, the line or field, and what was expected.
//!
//! This is the composition root of the pure layers: a scenario builds its server
//! ([`Scenario::server`]) and its strategies ([`Scenario::strategy`]) from core pieces.

mod keys;
pub mod quota_dump;
pub mod reference;
mod schema;
pub mod setting;
mod trace;
mod validate;

use std::fmt;
use std::path::Path;

use crate::core::live::{self, SessionPlan};
use crate::core::server::{Model, Server, ServerConfig};
use crate::core::time::{Calendar, Nanos};
use crate::core::topology::{mask_secrets, Topology};
use crate::core::workload::{Request, WorkloadSpec};
use crate::strategy::{self, Env, Fleet, FleetSpec, Strategy, StrategySpec};

pub use keys::keys_file;
pub use trace::read_trace;

/// The commented scenarios `flux-sim init --template NAME` writes, as (name, what it models, text).
pub const TEMPLATES: [(&str, &str, &str); 3] = [
    (
        "dubbing",
        "a closed batch of long prompts on free-tier projects (TPM binds)",
        include_str!("templates/dubbing.toml"),
    ),
    (
        "chat",
        "open, bursty chat traffic on paid tier-1 projects with two keys each",
        include_str!("templates/chat.toml"),
    ),
    (
        "batch",
        "an overnight batch of small requests with a model fallback (RPD binds)",
        include_str!("templates/batch.toml"),
    ),
];
pub use validate::{DEFAULT_TAIL, TIERS};

/// A scenario that failed to load: the message names the file and the field or line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScenarioError(pub String);

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ScenarioError {}

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
    /// How many copies of each strategy run on the keys, and what they share.
    pub fleet: FleetSpec,
    /// How `serve` words what the quota model leaves open on the wire.
    pub wire: WireSettings,
}

/// What `serve` decides on the wire where Google's behaviour is not documented
/// (`server.openai_errors`, `server.embed_batch`, `server.standard_keys`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct WireSettings {
    /// The body shape of errors on the OpenAI-compatible endpoint.
    pub openai_errors: OpenAiErrors,
    /// How a batch of embeddings counts against RPM and RPD.
    pub embed_batch: EmbedBatch,
    /// Whether standard (`AIza…`) keys are still accepted.
    pub standard_keys: StandardKeys,
}

/// What `serve` does with a standard API key (`AIza…`) the scenario knows. Google refuses
/// unrestricted standard keys since 2026-06-19 and every standard key from September 2026,
/// in favour of authorization keys (`AQ.…`); users report 401 `ACCESS_TOKEN_TYPE_UNSUPPORTED`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StandardKeys {
    /// Accepted as any other key (the default: the derived keys are `AIza…`).
    #[default]
    Accepted,
    /// Answered 401 UNAUTHENTICATED, reason `ACCESS_TOKEN_TYPE_UNSUPPORTED`, as Google now
    /// does; give the scenario `AQ.…` keys in `[[topology.keys]]`.
    Refused,
}

/// The body of an error on the OpenAI-compatible endpoint (`/v1beta/openai/`). Google's
/// envelope either way; the OpenAI SDK picks its exception by the HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenAiErrors {
    /// `[{"error": {code, message, status, details}}]`: a one-element array holding Google's
    /// envelope with its details (RetryInfo's `retryDelay` included), as reported in 2026.
    #[default]
    Array,
    /// `[{"error": {code, message, status}}]`: the array with a bare message and no details,
    /// as reported in 2025: a client finds no retry delay to read.
    BareArray,
    /// `{"error": {…}}`: the envelope alone, as the native endpoint sends it.
    Object,
}

/// How `batchEmbedContents` (and an OpenAI embeddings call with several inputs) counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EmbedBatch {
    /// Each text is one request (and its own tokens), admitted in order; the first refused
    /// answers the call, those admitted before it stay counted.
    #[default]
    Each,
    /// The call is one request with the texts' tokens summed.
    One,
}

impl Scenario {
    /// Loads and validates a scenario file.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = read_capped(path, validate::max::SCENARIO_BYTES, "scenario")?;
        Scenario::parse(&text, path)
    }

    /// Parses and validates scenario text; `path` names it in errors and anchors relative paths.
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let file = path.display().to_string();
        let raw: schema::RawScenario = toml::from_str(text).map_err(|e| {
            // One line (table-header errors span several), and no key shown whole.
            let msg = mask_secrets(&e.message().split_whitespace().collect::<Vec<_>>().join(" "));
            match e.span() {
                Some(span) => {
                    let (line, col) = line_col(text, span.start);
                    let src = mask_secrets(text.lines().nth(line - 1).unwrap_or("").trim());
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
        // A value a user wrote may be echoed in an error ("unknown strategy \"AIza…\""): never a
        // key whole.
        validate::validate(raw, &file, &base).map_err(|e| ScenarioError(mask_secrets(&e.0)))
    }

    /// Index of a model by name.
    pub fn model_index(&self, name: &str) -> Option<usize> {
        self.models.iter().position(|m| m.name == name)
    }

    /// The built-in strategy of a kind name, as used when a scenario lists none or when
    /// `--strategy` names a kind the file does not configure.
    pub fn builtin_strategy(&self, name: &str) -> Option<StrategySpec> {
        StrategySpec::builtin(name, self.models.len())
    }

    /// A fresh mock server for this scenario, its randomness drawn from `seed`.
    pub fn server(&self, seed: u64) -> Server {
        Server::new(&self.server, &self.models, &self.topology, &self.calendar, seed)
    }

    /// The plan of session `req` on `model` from its connect at 0 (`None`: the workload is not
    /// made of sessions). The same for every strategy and attempt (common random numbers).
    pub fn session_plan(&self, model: usize, req: &Request, seed: u64) -> Option<SessionPlan> {
        let spec = self.workload.session.as_ref()?;
        Some(live::plan(
            &self.server.live,
            &self.models[model].latency,
            spec,
            live::turns(spec, &self.workload.input, &self.workload.output, seed, req.id),
            seed,
            req.id,
        ))
    }

    /// How long `req` holds the client on `model` once admitted: its response time, or its
    /// session until the client is done with it.
    pub fn service_time(&self, model: usize, req: &Request, seed: u64) -> Nanos {
        match self.session_plan(model, req, seed) {
            Some(plan) => plan.client_end,
            None => self.models[model].latency.draw(req.output_tokens, seed, req.id),
        }
    }

    /// The re-routed ids whose calls draw on their target's quotas: (id, target).
    pub fn quota_routes(&self) -> Vec<(usize, usize)> {
        self.models
            .iter()
            .enumerate()
            .filter_map(|(i, m)| match m.route {
                Some(crate::core::server::Route {
                    to,
                    quota: crate::core::server::RouteQuota::Target,
                }) => Some((i, to)),
                _ => None,
            })
            .collect()
    }

    /// What strategy `spec` may know of this scenario's server.
    pub fn strategy_env(&self, spec: &StrategySpec, seed: u64) -> Env {
        let mut env = Env::new(
            spec,
            &self.models,
            &self.topology,
            &self.calendar,
            self.server.tpm_counts,
            seed,
        );
        // The window kind the scenario states, as its limits (issue 26, item 6).
        env.window = self.server.ledger.window;
        // And how it runs Live sessions.
        env.live_rules = self.server.live;
        env
    }

    /// The strategy `spec` describes, knowing what it may know of this scenario; a fleet of
    /// copies of it when the scenario has one.
    pub fn strategy(&self, spec: &StrategySpec, seed: u64) -> Box<dyn Strategy> {
        self.strategy_told(spec, seed, false)
    }

    /// [`Scenario::strategy`] told, besides, the re-routes the scenario states whose calls
    /// draw on the target's quotas (`routed_to` with `routed_quota = "target"`): for `proxy`,
    /// whose configuration is what its user knows, where a simulation's scenario is the
    /// server's truth that no client is told.
    pub fn strategy_told_routes(&self, spec: &StrategySpec, seed: u64) -> Box<dyn Strategy> {
        self.strategy_told(spec, seed, true)
    }

    fn strategy_told(&self, spec: &StrategySpec, seed: u64, routes: bool) -> Box<dyn Strategy> {
        let one = || {
            let mut env = self.strategy_env(spec, seed);
            if routes {
                env.routes = self.quota_routes();
            }
            strategy::build(env, spec)
        };
        if self.fleet.instances <= 1 {
            return one();
        }
        let copies = (0..self.fleet.instances).map(|_| one()).collect();
        Box::new(Fleet::new(copies, self.fleet, self.server.tpm_counts))
    }
}

/// Reads a file of at most `limit` bytes (`/dev/zero` or a huge file is an error naming it and
/// the limit, not an allocation of everything).
pub fn read_bytes_capped(path: &Path, limit: u64) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| format!("{shown}: cannot read it: {e}"))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{shown}: cannot read it: {e}"))?;
    if bytes.len() as u64 > limit {
        return Err(format!("{shown}: larger than the most allowed, {} KiB", limit >> 10));
    }
    Ok(bytes)
}

/// Reads a text file of at most `limit` bytes (`/dev/zero` or a huge file is an error, not an
/// allocation of everything); `what` names it in errors.
pub fn read_capped(path: &Path, limit: u64, what: &str) -> Result<String, ScenarioError> {
    use std::io::Read;
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| ScenarioError(format!("{shown}: cannot read {what}: {e}")))?;
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| ScenarioError(format!("{shown}: cannot read {what}: {e}")))?;
    if bytes.len() as u64 > limit {
        return Err(ScenarioError(format!(
            "{shown}: the {what} is larger than the most allowed, {} MiB",
            limit >> 20
        )));
    }
    String::from_utf8(bytes).map_err(|e| ScenarioError(format!("{shown}: the {what} is not UTF-8 text ({e})")))
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::WindowKind;
    use crate::core::time::DAY;

    use super::validate::fixture::{parse, BASE};

    #[test]
    fn every_template_loads_and_runs_its_strategies() {
        for (name, _, text) in TEMPLATES {
            let s = Scenario::parse(text, Path::new(&format!("{name}.toml"))).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_eq!(s.name, name);
            assert!(!s.strategies.is_empty());
            assert!(text.starts_with("# "), "{name} opens with a comment on the situation");
        }
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
    fn scenario_level_errors_name_the_field() {
        // Each table's errors are tested beside its part of `validate`; these are the top level's.
        let err = parse(&format!("start = \"yesterday\"\n{BASE}")).unwrap_err();
        assert!(err.starts_with("s.toml: start: expected an RFC 3339 time"), "{err}");
        let err = parse(&BASE.replace("name = \"t\"", "name = \" \"")).unwrap_err();
        assert!(err.starts_with("s.toml: name: must not be empty"), "{err}");
        let open = BASE
            .replace("kind = \"closed\"", "kind = \"open\"\nrate = 1\nduration = \"1h\"")
            .replace("requests = 10\nworkers = 2\n", "");
        assert!(parse(&open).is_ok());
        let err = parse(&format!("horizon = \"1h\"\n{open}")).unwrap_err();
        assert!(err.starts_with("s.toml: horizon: only for closed workloads"), "{err}");
    }
}
