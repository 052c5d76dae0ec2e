//! Client-side strategies: given a request and `now`, choose a key, a model and when to send,
//! or wait for an outcome, or give up; learn from every outcome. Pure (sans-IO): the same code
//! runs in virtual time and for real.

mod backoff;
mod bucket_trial;
mod exact_cooldown;
mod fixed_interval;
mod fleet;
mod flux;
mod gemini_balance;
mod gemini_flux;
mod idle;
mod kind;
pub mod litellm;
mod live_cause;
mod live_loop;
mod pool_pace;
pub mod retry;
mod round_robin;
mod spec;
mod token_bucket;

pub use backoff::Backoff;
pub use exact_cooldown::ExactCooldown;
pub use fixed_interval::FixedInterval;
pub use fleet::{Fleet, FleetSpec, Sharing};
pub use flux::Flux;
pub use gemini_balance::GeminiBalance;
pub use gemini_flux::GeminiFlux;
pub use kind::{kind_names_taking, KindDef, Param, Params, StrategyKind};
pub use litellm::LiteLlm;
pub use round_robin::RoundRobin;
pub use spec::{builtins_help, StrategySpec};
pub use token_bucket::TokenBucket;

use crate::core::ledger::{Dims, Limits, WindowKind};
use crate::core::live::LiveRules;
use crate::core::server::{ConcurrencyScope, Model, Provisioned, TpmCounts};
use crate::core::time::{Calendar, Nanos};
use crate::core::topology::Topology;

/// A request as a strategy sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ask {
    /// Request id.
    pub request: u64,
    /// Input tokens (clients count them before sending).
    pub input_tokens: u64,
    /// Output tokens asked for (the response length).
    pub output_tokens: u64,
    /// The model the request wants.
    pub model: usize,
    /// Attempts already made.
    pub attempts: u32,
}

/// Why a strategy gives up on a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// The request can never fit the limits the strategy knows.
    Unservable,
    /// No key or model is left to try.
    Exhausted,
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Send on `key` with `model` at `at` (`at >= now`).
    Send {
        /// Key index.
        key: usize,
        /// Model index.
        model: usize,
        /// When to send.
        at: Nanos,
    },
    /// Nothing can be planned until an outstanding request ends: ask again after an outcome.
    Defer,
    /// As [`Decision::Defer`] (it waits in line with the other deferred requests, asked again
    /// after an outcome), and asked again at `at` (`> now`) if no outcome came first: room
    /// opens then by the strategy's counts, while an outcome may free some sooner. Unlike
    /// [`Decision::Later`], it keeps its place in the line.
    DeferUntil(Nanos),
    /// Ask again about this request at `at` (`> now`), nothing reserved meanwhile.
    Later(Nanos),
    /// Stop trying.
    GiveUp(GiveUp),
}

/// What came back from a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The response completed.
    Ok,
    /// 429 with the violated dimensions, RetryInfo's delay and QuotaFailure's values, if any.
    RateLimited {
        /// Violated dimensions (empty when the body names none).
        violated: Dims,
        /// The server's retry delay.
        retry_delay: Option<Nanos>,
        /// The limits the 429 states (QuotaFailure's `quotaValue`) for the violated
        /// dimensions; `None` where it states none.
        quota: Limits,
        /// The model whose quota it names (QuotaFailure's `quotaDimensions.model`), when it
        /// names one the client knows: a re-routed id's calls may draw on another model's
        /// quota, which the client was not told it shares.
        quota_model: Option<usize>,
    },
    /// 429 that can never succeed.
    Unservable {
        /// The limits it states (QuotaFailure's `quotaValue`) for the dimensions the request
        /// can never fit; `None` where it states none (a refusal of the client's own).
        quota: Limits,
    },
    /// 400 API_KEY_INVALID.
    InvalidKey,
    /// 503 UNAVAILABLE (worth retrying).
    Unavailable,
    /// Any other error (403, 404, malformed response): not worth retrying.
    Error,
}

impl Outcome {
    /// A 429 that can never succeed and states no limit (a refusal of the client's own): only
    /// the request's size is learned from it.
    pub(crate) const UNSERVABLE_UNSTATED: Outcome = Outcome::Unservable {
        quota: Limits::UNLIMITED,
    };
}

/// A rotation strategy.
///
/// A driver (the virtual-time engine, `drive`, `proxy`) asks it about each request, sends
/// when and where it says, and tells it every outcome; the strategy never reads a clock:
///
/// ```
/// use flux_sim::scenario::Scenario;
/// use flux_sim::strategy::{Ask, Decision, Outcome};
///
/// let toml = r#"
/// name = "doc"
/// [models."gemini-2.5-flash"]
/// rpm = 2
/// [topology]
/// projects = 1
/// [workload]
/// kind = "closed"
/// requests = 3
/// workers = 1
/// input_tokens = { dist = "fixed", value = 100 }
/// output_tokens = { dist = "fixed", value = 10 }
/// "#;
/// let scenario = Scenario::parse(toml, std::path::Path::new("doc.toml")).unwrap();
/// let spec = scenario.builtin_strategy("exact_cooldown").unwrap();
/// let mut strategy = scenario.strategy(&spec, 1);
/// let (mut now, mut sent) = (0, Vec::new());
/// for request in 0..3 {
///     let ask = Ask { request, input_tokens: 100, output_tokens: 10, model: 0, attempts: 0 };
///     loop {
///         match strategy.decide(now, &ask) {
///             Decision::Send { key, model, at } => {
///                 // The driver waits until `at` (a planned send is `confirm`ed then), sends
///                 // on `key` with `model` and reports the outcome; here each succeeds at once.
///                 now = at;
///                 strategy.on_outcome(now, &ask, key, model, at, &Outcome::Ok);
///                 sent.push(at / 1_000_000_000);
///                 break;
///             }
///             Decision::Later(at) => now = at, // ask again at `at`
///             Decision::Defer | Decision::DeferUntil(_) => {
///                 unreachable!("one worker: nothing else is outstanding")
///             }
///             Decision::GiveUp(why) => panic!("{why:?}"),
///         }
///     }
/// }
/// // Two requests a minute: the third waits exactly until the first leaves the window.
/// assert_eq!(sent, [0, 0, 60]);
/// ```
pub trait Strategy: Send {
    /// Decides what to do with `ask` at `now`.
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision;
    /// Learns the outcome of a send decided earlier for `ask` on (`key`, `model`) at `sent`.
    fn on_outcome(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, sent: Nanos, outcome: &Outcome);
    /// A send planned for later (at `now`, on `key` and `model`) is due: true to send it,
    /// false to withdraw it (the strategy forgets it; the driver offers the request again at
    /// once). Strategies that never re-plan keep the default.
    fn confirm(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize) -> bool {
        let _ = (now, ask, key, model);
        true
    }
    /// A hint, changing nothing: the driver will soon hand over `request` (an outcome, a due
    /// send, an offer), so a strategy that keeps per-request state asks the CPU for its cache
    /// line now (see [`crate::core::idmap::IdMap::prefetch`]).
    fn prefetch(&self, request: u64) {
        let _ = request;
    }
    /// A hint, changing nothing: the next request will want `model`. Returns the key it would
    /// likely be sent on, if the strategy can tell (the driver asks the server for that
    /// budget's state); a strategy with a replica asks for its own budget's record
    /// (`second` false) or, a little later, its window entries (`second` true).
    fn prefetch_next(&self, model: usize, second: bool) -> Option<usize> {
        let _ = (model, second);
        None
    }
    /// Whether [`Strategy::prefetch`] does anything: a driver asks only then (finding the
    /// id of the request an event is about reads memory that may be cold itself).
    fn prefetches(&self) -> bool {
        false
    }
    /// The send it decided for `ask` on `key` and `model` at `at` will not happen (a proxy's
    /// client went away before it was due): forget it and free what it held. Strategies that
    /// reserve nothing at decision time keep the default.
    fn cancel(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, at: Nanos) {
        let _ = (now, ask, key, model, at);
    }
    /// The send decided for `ask` on `key` and `model` was refused before it left, by a shared
    /// ledger that had no room for it (`refusal`: the 429 it stands for, its RetryInfo the
    /// ledger's exact wait): it never reached the server, so nothing of it counts anywhere
    /// (not even the minute entry a server's 429 may leave), and no send on (`key`, `model`)
    /// can go before the wait is over. Strategies that keep no counts keep the default, which
    /// hands it over as that 429.
    fn unsent(&mut self, now: Nanos, ask: &Ask, key: usize, model: usize, sent: Nanos, refusal: &Outcome) {
        self.on_outcome(now, ask, key, model, sent, refusal);
    }
    /// Learns at `now` what another instance of its fleet did, through a shared ledger (see
    /// [`Fleet`]). Strategies that keep no counts keep the default and learn nothing.
    fn observe(&mut self, now: Nanos, peer: &Peer) {
        let _ = (now, peer);
    }
    /// Learns at `now` that instance `from` of its fleet acted at `published` (what a shared
    /// ledger records with each entry: who wrote it, and when); called just before
    /// [`Strategy::observe`] shows what it did. Strategies that do not plan for a fleet keep
    /// the default.
    fn heard(&mut self, now: Nanos, from: usize, published: Nanos) {
        let _ = (now, from, published);
    }
    /// How many independent queues its deferred requests wait in (request `r` in queue
    /// `r % lanes`): one, except for a fleet, whose instances each have their own.
    fn lanes(&self) -> usize {
        1
    }
    /// Whether `request`, deferred now, waits at its place in its queue (behind the requests
    /// that arrived before it, ahead of those that arrived after it) rather than behind every
    /// other. The default, false, is a plain queue: a request offered again (a retry) joins
    /// its end, as it does in the libraries the peer strategies model.
    fn keeps_place(&self, request: u64) -> bool {
        let _ = request;
        false
    }
    /// Whether it stops at a 429 that no retry cures (it reads QuotaFailure and sees the
    /// request is bigger than the limit). The tools that read only the status code (the SDK's
    /// retry options, LiteLLM, gemini-flux, the cookbook, gemini-balance) cannot tell it from
    /// another 429 and retry it as their retry policy retries any 429: they say false.
    fn tells_unservable(&self) -> bool {
        true
    }
    /// Whether it chooses which of a closed batch's waiting requests a free worker takes next
    /// ([`Strategy::pick`]); if not (the default), workers take them in the batch's order and
    /// the driver shows it none ahead of time.
    fn orders_batch(&self) -> bool {
        false
    }
    /// Which of a closed batch's `waiting` requests (the next ones not yet taken, in the
    /// batch's order, at most [`BATCH_LOOKAHEAD`]) a free worker takes at `now`: an index
    /// into `waiting`. Asked only of a strategy that [`Strategy::orders_batch`].
    fn pick(&mut self, now: Nanos, waiting: &[Ask]) -> usize {
        let _ = (now, waiting);
        0
    }
}

/// The most requests of a closed batch a driver shows a strategy that orders its batch
/// ([`Strategy::pick`]): the batch is read that far ahead, no further (a client holds its
/// batch, but the choice stays cheap on a long one).
pub const BATCH_LOOKAHEAD: usize = 1024;

/// What another instance of a fleet did, as its shared ledger tells the others.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Peer {
    /// It planned a send on `key` and `model` at `at`, counting `tokens` (0 where tokens are
    /// not shared).
    Sent {
        /// Key index.
        key: usize,
        /// Model index.
        model: usize,
        /// When the send goes (or went).
        at: Nanos,
        /// Tokens it counts.
        tokens: u64,
    },
    /// It withdrew the send it had planned at `at`.
    Withdrawn {
        /// Key index.
        key: usize,
        /// Model index.
        model: usize,
        /// When the send was planned.
        at: Nanos,
        /// Tokens it counted.
        tokens: u64,
    },
    /// Its send (as [`Peer::Sent`] told) ended at `at`, having used `tokens` (input + output of
    /// a success; 0 on a failure or where tokens are not shared); `refused` when it got a 429,
    /// which the server does not charge to the day.
    Ended {
        /// Key index.
        key: usize,
        /// Model index.
        model: usize,
        /// When it was sent.
        sent: Nanos,
        /// The tokens its send counted.
        cost: u64,
        /// When it ended.
        at: Nanos,
        /// Tokens used.
        tokens: u64,
        /// Whether it got a 429.
        refused: bool,
    },
}

/// What a strategy is allowed to know about the world.
#[derive(Debug, Clone)]
pub struct Env {
    /// Project of each key.
    pub key_project: Vec<usize>,
    /// Number of projects.
    pub projects: usize,
    /// Number of models.
    pub models: usize,
    /// Known limits of (project, model) at `project * models + model`.
    pub limits: Vec<Limits>,
    /// Concurrency scope per model.
    pub scopes: Vec<ConcurrencyScope>,
    /// Calendar (daily reset).
    pub calendar: Calendar,
    /// What TPM counts.
    pub tpm_counts: TpmCounts,
    /// Per model: the limits are what the strategy was told (`known_limits`), not known to
    /// be the server's.
    pub believed: Vec<bool>,
    /// The run's seed, for a strategy's own random choices.
    pub seed: u64,
    /// Per model: a Live API model (its sends are sessions; a refusal is a close 1011).
    pub live: Vec<bool>,
    /// Per model: its name (`gemini-2.5-pro`), for a tool that orders models by name as
    /// gemini-flux's model discovery does.
    pub model_names: Vec<String>,
    /// Per key: whether the server accepts it — what a free `countTokens` call per key at
    /// start-up tells. Only a tool that makes that check (gemini-flux) may read it; every
    /// other strategy learns an invalid key from its 400.
    pub key_valid: Vec<bool>,
    /// Per model: the throughput each project has reserved on it (provisioned throughput),
    /// which the server consults before the quotas; a planner that ignores it gives up on
    /// requests only the reservation can serve.
    pub reserved: Vec<Option<Provisioned>>,
    /// How the server's per-minute windows are measured, as the strategy takes it from the
    /// scenario (`server.window`, sliding unless it says otherwise). Sliding is safe under
    /// the others, but waits needlessly under fixed minutes or buckets.
    pub window: WindowKind,
    /// How the server runs Live sessions, as the strategy takes it from the scenario
    /// (`[server.live]`: whether a turn the client left keeps its slot, how long a closed
    /// session's slot stays taken, the audio rate); the documented defaults elsewhere. Like
    /// the window kind, trusted only with the true limits.
    pub live_rules: LiveRules,
    /// Per model: its time to first token, what a Live client sees of its own turns (when
    /// their audio starts playing).
    pub ttft: Vec<Nanos>,
    /// Re-routes the strategy is told of: (model, model whose quotas its calls draw on). Empty
    /// in a simulation, where a scenario's `routed_to` is the server's truth that no client is
    /// told (a planner learns it from the 429 that names the other model's quota); `proxy`
    /// tells what its configuration states, which is what its user knows.
    pub routes: Vec<(usize, usize)>,
}

impl Env {
    /// What `spec` may know of a server with `models` and `topology`: the true limits unless
    /// `known_limits` overrides a model, or `told_scale` scales every project's; `seed` is the
    /// run's.
    pub fn new(
        spec: &StrategySpec,
        models: &[Model],
        topology: &Topology,
        calendar: &Calendar,
        tpm_counts: TpmCounts,
        seed: u64,
    ) -> Self {
        let n = models.len();
        let mut limits = Vec::new();
        for p in &topology.projects {
            for m in 0..n {
                let told = spec.told_scale.map(|(n, d)| p.limits[m].scaled(n, d));
                limits.push(spec.known_limits[m].or(told).unwrap_or(p.limits[m]));
            }
        }
        Env {
            key_project: topology.keys.iter().map(|k| k.project).collect(),
            projects: topology.projects.len(),
            models: n,
            limits,
            scopes: models.iter().map(|m| m.concurrency_scope).collect(),
            calendar: calendar.clone(),
            tpm_counts,
            believed: spec
                .known_limits
                .iter()
                .map(|k| k.is_some() || spec.told_scale.is_some())
                .collect(),
            seed,
            live: models.iter().map(|m| m.live).collect(),
            model_names: models.iter().map(|m| m.name.clone()).collect(),
            key_valid: topology.keys.iter().map(|k| k.valid).collect(),
            reserved: models.iter().map(|m| m.provisioned).collect(),
            window: WindowKind::Sliding,
            live_rules: LiveRules::default(),
            ttft: models.iter().map(|m| m.latency.ttft).collect(),
            routes: Vec::new(),
        }
    }

    /// The TPM cost of a request as the strategy counts it.
    pub fn tpm_cost(&self, ask: &Ask) -> u64 {
        self.tpm_counts.cost(ask.input_tokens, ask.output_tokens)
    }
}

/// Every strategy kind, in the order `flux-sim strategies` lists them and `compare` runs them.
/// Adding a strategy: its module, with its [`KindDef`], and one line here.
pub const KINDS: &[&KindDef] = &[
    &round_robin::KIND,
    &fixed_interval::KIND,
    &exact_cooldown::KIND,
    &gemini_flux::KIND,
    &backoff::KIND,
    &token_bucket::KIND,
    &litellm::SHUFFLE,
    &litellm::LEAST_BUSY,
    &litellm::USAGE,
    &gemini_balance::KIND,
    &live_loop::RECONNECT_KIND,
    &live_loop::MIXER_KIND,
    &flux::KIND,
];

/// Builds the strategy `spec` describes, knowing what `env` tells it.
pub fn build(env: Env, spec: &StrategySpec) -> Box<dyn Strategy> {
    (spec.kind.def().build)(env, spec)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use chrono::DateTime;

    /// Request `request` for model 0 with `tokens` input tokens and 1 output token, first
    /// attempt.
    pub(crate) fn ask(request: u64, tokens: u64) -> Ask {
        Ask {
            request,
            input_tokens: tokens,
            output_tokens: 1,
            model: 0,
            attempts: 0,
        }
    }

    /// A limit of `n` requests a minute, nothing else.
    pub(crate) fn rpm(n: u64) -> Limits {
        Limits {
            rpm: Some(n),
            ..Limits::default()
        }
    }

    /// A limit of `n` tokens a minute, nothing else.
    pub(crate) fn tpm(n: u64) -> Limits {
        Limits {
            tpm: Some(n),
            ..Limits::default()
        }
    }

    /// The key and time of a `Send` (panics on anything else).
    pub(crate) fn send(d: Decision) -> (usize, Nanos) {
        match d {
            Decision::Send { key, at, .. } => (key, at),
            d => panic!("{d:?}"),
        }
    }

    /// A 429 naming `violated` with RetryInfo `delay` and QuotaFailure values `quota`.
    pub(crate) fn limited(violated: &[crate::core::ledger::Dimension], delay: Nanos, quota: Limits) -> Outcome {
        Outcome::RateLimited {
            violated: violated.iter().copied().collect(),
            retry_delay: Some(delay),
            quota,
            quota_model: None,
        }
    }

    /// An environment with one model, keys in the given projects, the same limits everywhere.
    pub(crate) fn env(key_project: &[usize], limits: Option<Limits>) -> Env {
        let projects = key_project.iter().max().map_or(0, |m| m + 1);
        Env {
            key_project: key_project.to_vec(),
            projects,
            models: 1,
            limits: vec![limits.unwrap_or_default(); projects],
            scopes: vec![ConcurrencyScope::Project; 1],
            calendar: Calendar::new(
                DateTime::parse_from_rfc3339("2025-10-15T09:00:00-07:00").unwrap(),
                chrono_tz::America::Los_Angeles,
            ),
            tpm_counts: TpmCounts::Input,
            believed: vec![false],
            seed: 0,
            live: vec![false],
            model_names: vec!["gemini-2.5-flash".into()],
            key_valid: vec![true; key_project.len()],
            reserved: vec![None],
            window: crate::core::ledger::WindowKind::Sliding,
            live_rules: crate::core::live::LiveRules::default(),
            ttft: vec![0],
            routes: Vec::new(),
        }
    }

    /// [`env`] with two models, gemini-3.5-flash and gemini-3.6-flash (an id and the one
    /// Google re-routed it to), the same limits on both.
    pub(crate) fn env_two_models(key_project: &[usize], limits: Limits) -> Env {
        let mut e = env(key_project, Some(limits));
        e.models = 2;
        e.limits = vec![limits; 2 * e.projects];
        e.scopes = vec![e.scopes[0]; 2];
        e.believed = vec![false; 2];
        e.live = vec![false; 2];
        e.model_names = vec!["gemini-3.5-flash".into(), "gemini-3.6-flash".into()];
        e.reserved = vec![None; 2];
        e.ttft = vec![0; 2];
        e
    }
}
