//! The mock Gemini server model (pure): checks a call in Google's admission order — key known
//! and valid, model known, reserved throughput, Vertex PayGo or shared pool or quota, spend
//! cap, injected faults — and answers with the response and, when
//! admitted, when it completes. Both drivers (virtual time and real time) use it.

use serde::Deserialize;

use crate::core::dist::Latency;
use crate::core::ledger::{Admission, BudgetId, Dims, Ledger, LedgerConfig, Limits, PoolId, Usage, WindowKind};
use crate::core::live::LiveRules;
use crate::core::paygo::{Lane, Paygo, PaygoModel, PaygoRules};
use crate::core::rng::{rng, unit, Stream};
use crate::core::shared_pool::{PoolSpec, SharedPool};
use crate::core::spend::{price_at, Prices, SpendRule, SpendWindow};
use crate::core::time::{Calendar, Nanos};
use crate::core::topology::Topology;

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
    /// A shared capacity pool instead of per-project quotas (Vertex AI's dynamic shared quota).
    pub shared_pool: Option<PoolSpec>,
    /// Prices at the start, charged against the account's spend cap.
    pub prices: Prices,
    /// Later prices: from each instant on (ascending), the prices in force.
    pub price_changes: Vec<(Nanos, Prices)>,
    /// Throughput reserved for each project (Vertex AI's provisioned throughput).
    pub provisioned: Option<Provisioned>,
    /// A Live API model: its calls are sessions, its concurrency limit counts open sessions.
    pub live: bool,
    /// A retired model id whose calls Google silently serves with another model (2026-10-08:
    /// gemini-3.5-flash → gemini-3.6-flash, gemini-3.7-flash → gemini-3.8-flash).
    pub route: Option<Route>,
    /// Vertex AI Standard PayGo: the organisation's tier gives the model a prioritized
    /// throughput, with the system limit and the spike rule of [`PaygoRules`].
    pub paygo: Option<PaygoModel>,
}

impl Model {
    /// The least a request of `input` and `output` tokens ever costs on this model.
    pub fn lowest_cost(&self, input: u64, output: u64) -> u128 {
        self.price_changes
            .iter()
            .map(|(_, p)| p.cost(input, output))
            .fold(self.prices.cost(input, output), u128::min)
    }
}

/// Where calls to a re-routed model id go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// The model that serves them (its latency and prices).
    pub to: usize,
    /// Whose quotas they draw on (Google does not say).
    pub quota: RouteQuota,
}

/// Whose quotas a re-routed call draws on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RouteQuota {
    /// The serving model's (the default: the model behind the id is the new one).
    #[default]
    Target,
    /// The retired id's own limits.
    Own,
}

/// Throughput a project has reserved on a model: requests and tokens per minute of its own
/// (sliding windows), before anything else is consulted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Provisioned {
    /// The reserved requests and tokens per minute (`rpm`, `tpm`; the rest unset).
    pub limits: Limits,
    /// What happens to a request the reservation cannot take.
    pub overflow: Overflow,
}

/// Where a request beyond a project's reserved throughput goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// On to the model's pay-as-you-go admission (its shared pool, or its quotas): Vertex's
    /// default.
    Spill,
    /// Refused with a 429 without details (a request sent "dedicated only").
    DedicatedOnly,
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
    /// Behaviours seen in the wild, all off by default.
    pub quirks: Quirks,
    /// How accounts' spend caps are measured.
    pub spend: SpendRule,
    /// How long a REST answer that is not a success (a 429, a 400, a 503) takes to reach its
    /// client after the send: 0, at the send's instant. A real one takes a round trip, in
    /// which a burst's later sends leave before the first 429 is back.
    pub error_latency: Nanos,
    /// How Live sessions are run.
    pub live: LiveRules,
    /// The organisation's Vertex AI PayGo tier and rules (for models with `paygo`).
    pub paygo: PaygoRules,
}

/// The RetryInfo delay Google puts on a 429 that names a per-day dimension (`rpd`, `tpd`).
/// It is not the time to the daily reset: a per-day 429 said `0s` in 2025 (gemini-balance
/// #367) and `36s` with quota id `GenerateRequestsPerDayPerProjectPerModel-FreeTier` in 2026
/// (issue 31; facts/gemini-2026-12.md §3.4), the seconds left in the minute. Clients must
/// classify a 429 by its quota id, not by its delay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerDayRetry {
    /// The time to the next calendar minute of the server's clock (the 2026 observation; the
    /// default).
    #[default]
    NextMinute,
    /// The exact delay: the earliest instant any path admits the request, for a per-day
    /// dimension the daily reset (flux-sim's answer before December 2026).
    Reset,
    /// Always this delay (e.g. `0s`, the 2025 observation).
    Fixed(Nanos),
}

/// Server behaviours users have met that contradict the documented ones; each is off
/// (`None` / 0) unless a scenario turns it on, except the per-day delay, which follows what
/// Google was last seen to send ([`PerDayRetry::NextMinute`]).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quirks {
    /// What a per-day 429's RetryInfo says.
    pub per_day_retry: PerDayRetry,
    /// A per-minute 429's RetryInfo says this (e.g. `86400s`) instead of the exact delay.
    pub per_minute_retry: Option<Nanos>,
    /// A 429 for a quota of 0 still says "Please retry in" this (and carries RetryInfo).
    pub zero_quota_retry: Option<Nanos>,
    /// Probability that a request within every quota gets a detail-less 429 anyway
    /// ("Resource exhausted, please try again later.": no QuotaFailure, no RetryInfo).
    pub capacity_rate: f64,
}

impl Quirks {
    /// The RetryInfo delay a 429 violating `violated` carries when the exact one is `exact`
    /// and the next calendar minute is `to_next_minute` away.
    pub fn retry_delay(&self, violated: Dims, exact: Nanos, to_next_minute: Nanos) -> Nanos {
        if violated.per_day() {
            return match self.per_day_retry {
                PerDayRetry::NextMinute => to_next_minute,
                PerDayRetry::Reset => exact,
                PerDayRetry::Fixed(d) => d,
            };
        }
        match self.per_minute_retry {
            Some(d) if violated.per_minute() => d,
            _ => exact,
        }
    }
}

/// Which key a call carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyRef {
    /// No key at all (403).
    Missing,
    /// A key string the scenario does not know (400 API_KEY_INVALID).
    Unknown,
    /// A scenario key (index into the topology's keys).
    Known(usize),
}

/// One generateContent call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Call {
    /// The key.
    pub key: KeyRef,
    /// Model index, or `None` for a model the server does not know (404).
    pub model: Option<usize>,
    /// Input tokens.
    pub input_tokens: u64,
    /// Output tokens the response will carry.
    pub output_tokens: u64,
    /// Request id (seeds per-attempt jitter).
    pub request: u64,
    /// Attempt number from 1 (seeds per-attempt jitter).
    pub attempt: u32,
    /// Sent with `X-Vertex-AI-LLM-Shared-Request-Type: priority` (Priority PayGo).
    pub priority: bool,
}

/// The server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// 200: the response ends at `completes_at`.
    Ok {
        /// Completion time (absolute).
        completes_at: Nanos,
        /// The path that admitted it.
        via: Via,
    },
    /// 429 RESOURCE_EXHAUSTED with every violated dimension and the exact retry delay.
    RateLimited {
        /// Violated dimensions.
        violated: Dims,
        /// Delay until this request alone would be admitted.
        retry_delay: Nanos,
        /// The violated dimensions' limits, as QuotaFailure states them.
        quota: Limits,
        /// The model whose quota it is (QuotaFailure's `quotaDimensions.model`): a re-routed
        /// id's calls may draw on its target's.
        quota_model: usize,
    },
    /// 429 that no retry can cure (limit 0, or more tokens than TPM); no RetryInfo.
    Unservable {
        /// The impossible dimensions.
        violated: Dims,
        /// Their limits, as QuotaFailure states them.
        quota: Limits,
    },
    /// 400 API_KEY_INVALID.
    InvalidKey,
    /// 403 PERMISSION_DENIED (no key).
    MissingKey,
    /// 404 NOT_FOUND.
    UnknownModel,
    /// 503 UNAVAILABLE (injected fault).
    Unavailable,
    /// 429 RESOURCE_EXHAUSTED without details: no capacity right now (not charged).
    Capacity,
    /// 429 RESOURCE_EXHAUSTED: the billing account's spend cap is reached (not charged).
    SpendCap,
}

/// The path that admitted a request (in the order they are tried).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Via {
    /// The project's reserved throughput (provisioned throughput).
    Reserved,
    /// The model's shared capacity pool (dynamic shared quota).
    Pool,
    /// The (project, model) quota.
    Quota,
    /// The organisation's PayGo tier (Vertex AI Standard PayGo, prioritized throughput).
    Paygo,
    /// Priority PayGo (a request sent with the priority header).
    Priority,
}

impl Via {
    /// The lowercase name traces use: `reserved`, `pool`, `quota`, `paygo` or `priority`.
    pub fn name(self) -> &'static str {
        match self {
            Via::Reserved => "reserved",
            Via::Pool => "pool",
            Via::Quota => "quota",
            Via::Paygo => "paygo",
            Via::Priority => "priority",
        }
    }
}

/// What [`Server::admission`] decides for a request before spend caps, quirks and faults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A path admits it now.
    Admit(Via),
    /// A 429 without details: the shared pool is full, or a dedicated-only request does not
    /// fit its reservation.
    Capacity,
    /// No path admits it now; `retry_at` is the earliest instant one does (it alone sent).
    Limited {
        violated: Dims,
        retry_at: Nanos,
        quota: Limits,
    },
    /// No path can ever admit it.
    Unservable { violated: Dims },
}

/// The mock server: topology, ledger, latency and faults.
#[derive(Debug, Clone)]
pub struct Server {
    ledger: Ledger,
    models: usize,
    /// Budget of (project, model) at `project * models + model`.
    budgets: Vec<BudgetId>,
    /// Concurrency pool of (project or key, model), per the model's scope.
    pools: Vec<Option<PoolId>>,
    key_project: Vec<usize>,
    key_valid: Vec<bool>,
    scopes: Vec<ConcurrencyScope>,
    latencies: Vec<Latency>,
    tpm_counts: TpmCounts,
    fault_rate: f64,
    quirks: Quirks,
    /// The calendar (the per-day 429's delay to the next minute).
    calendar: Calendar,
    /// Per model: its shared pool, if it has one.
    shared: Vec<Option<SharedPool>>,
    /// Per model: its PayGo tier, if it is on PayGo.
    paygo: Vec<Option<Paygo>>,
    /// The organisation's PayGo rules (Priority PayGo's price).
    paygo_rules: PaygoRules,
    /// Per account: its spend cap, if it has one.
    spend: Vec<Option<SpendWindow>>,
    /// Reserved throughput: its own ledger, a budget per (project, model) that has one.
    reserved: Ledger,
    reserved_budgets: Vec<Option<(BudgetId, Overflow)>>,
    project_account: Vec<usize>,
    prices: Vec<Prices>,
    /// Per model: its later prices.
    price_changes: Vec<Vec<(Nanos, Prices)>>,
    /// Per model: (the model that serves its calls, the model whose quotas they draw on).
    routes: Vec<(usize, usize)>,
    /// Per project: requests of its first day spent before the run
    /// (`topology.project.X.rpd_used`), and when that day ends.
    rpd_used: Vec<u64>,
    first_day_end: Nanos,
    seed: u64,
}

/// The quota ledger of `models` × `topology`: a budget per (project, model) at
/// `project * models + model`, and the concurrency pool each (key, model) draws on at
/// `key * models + model` (the project's, the key's own, or none), as the server keeps them.
/// Also what a reference schedule plans against (`sim::clairvoyant`).
pub fn quota_ledger(
    config: LedgerConfig,
    models: &[Model],
    topology: &Topology,
    calendar: &Calendar,
) -> (Ledger, Vec<BudgetId>, Vec<Option<PoolId>>) {
    let m = models.len();
    let mut ledger = Ledger::new(calendar.clone(), config);
    let mut budgets = Vec::new();
    let mut project_pools = Vec::new();
    for p in &topology.projects {
        for (mi, model) in models.iter().enumerate() {
            let limits = p.limits[mi];
            budgets.push(ledger.add_budget(limits, p.rpd_used));
            project_pools.push(match (limits.concurrent, model.concurrency_scope) {
                (Some(c), ConcurrencyScope::Project) => Some(ledger.add_pool(c)),
                _ => None,
            });
        }
    }
    let mut pools = Vec::new();
    for k in &topology.keys {
        for (mi, model) in models.iter().enumerate() {
            let limits = topology.projects[k.project].limits[mi];
            pools.push(match (limits.concurrent, model.concurrency_scope) {
                (Some(c), ConcurrencyScope::Key) => Some(ledger.add_pool(c)),
                (_, ConcurrencyScope::Project) => project_pools[k.project * m + mi],
                _ => None,
            });
        }
    }
    (ledger, budgets, pools)
}

impl Server {
    /// A server for `models` and `topology` under `config`, its days cut by `calendar` and its
    /// randomness drawn from `seed`.
    pub fn new(config: &ServerConfig, models: &[Model], topology: &Topology, calendar: &Calendar, seed: u64) -> Self {
        let m = models.len();
        let (ledger, budgets, pools) = quota_ledger(config.ledger, models, topology, calendar);
        let mut reserved = Ledger::new(
            calendar.clone(),
            LedgerConfig {
                window: WindowKind::Sliding,
                count_rejected: false,
            },
        );
        let mut reserved_budgets = Vec::new();
        for _ in &topology.projects {
            for model in models {
                reserved_budgets.push(
                    model
                        .provisioned
                        .map(|pt| (reserved.add_budget(pt.limits, 0), pt.overflow)),
                );
            }
        }
        Server {
            reserved,
            reserved_budgets,
            ledger,
            models: m,
            budgets,
            pools,
            key_project: topology.keys.iter().map(|k| k.project).collect(),
            key_valid: topology.keys.iter().map(|k| k.valid).collect(),
            scopes: models.iter().map(|m| m.concurrency_scope).collect(),
            latencies: models.iter().map(|m| m.latency).collect(),
            tpm_counts: config.tpm_counts,
            fault_rate: config.fault_rate,
            quirks: config.quirks,
            calendar: calendar.clone(),
            shared: models
                .iter()
                .enumerate()
                .map(|(i, m)| m.shared_pool.map(|spec| SharedPool::new(spec, calendar, seed, i)))
                .collect(),
            paygo: models
                .iter()
                .map(|m| m.paygo.map(|p| Paygo::new(config.paygo, p)))
                .collect(),
            paygo_rules: config.paygo,
            spend: topology
                .accounts
                .iter()
                .map(|a| a.spend_cap.map(|cap| SpendWindow::new(cap, config.spend)))
                .collect(),
            project_account: topology.projects.iter().map(|p| p.account).collect(),
            prices: models.iter().map(|m| m.prices).collect(),
            price_changes: models.iter().map(|m| m.price_changes.clone()).collect(),
            routes: models
                .iter()
                .enumerate()
                .map(|(i, m)| match m.route {
                    None => (i, i),
                    Some(Route {
                        to,
                        quota: RouteQuota::Target,
                    }) => (to, to),
                    Some(Route {
                        to,
                        quota: RouteQuota::Own,
                    }) => (to, i),
                })
                .collect(),
            rpd_used: topology.projects.iter().map(|p| p.rpd_used).collect(),
            first_day_end: calendar.next_day_start(0),
            seed,
        }
    }

    /// Whether a 429 at `now` naming only requests per day, for a call on `key` drawing on
    /// `quota_model`'s quota, is explained only by the requests the project spent before the
    /// run (`rpd_used`): on the first day, its requests counted today less those are under its
    /// limit. No client can see another's requests of the day; the first such 429 is how one
    /// learns of them.
    pub fn day_spent_before(&self, now: Nanos, key: usize, quota_model: usize) -> bool {
        let before = self.rpd_used[self.key_project[key]];
        if before == 0 || now >= self.first_day_end {
            return false;
        }
        let b = self.budget(key, quota_model);
        let limit = self.ledger.limits(b).rpd.unwrap_or(u64::MAX);
        self.ledger.used_today(now, b).saturating_sub(before) < limit
    }

    /// Tokens a call costs against TPM.
    pub fn tpm_cost(&self, input_tokens: u64, output_tokens: u64) -> u64 {
        self.tpm_counts.cost(input_tokens, output_tokens)
    }

    /// How long request `request`'s response of `output_tokens` takes on `model`.
    pub fn latency(&self, model: usize, output_tokens: u64, request: u64) -> Nanos {
        self.latencies[model].draw(output_tokens, self.seed, request)
    }

    /// Answers a call at `now`, recording it in the ledger when admitted.
    pub fn handle(&mut self, now: Nanos, call: &Call) -> Response {
        self.answer(now, call, None, None)
    }

    /// [`Server::handle`] for a caller that already drew the call's response time on model
    /// `drawn.0` ([`Latency::draw`] of that model with this server's seed, the call's request
    /// and output tokens; a simulation's bound draws it anyway): used when that model serves
    /// the call, instead of drawing the same number again.
    pub fn handle_drawn(&mut self, now: Nanos, call: &Call, drawn: (usize, Nanos)) -> Response {
        self.answer(now, call, None, Some(drawn))
    }

    /// Answers a Live session's setup at `now` like [`Server::handle`] (its RPM, TPM and RPD
    /// charged once, its tokens the session's); admitted, it holds a concurrency slot until
    /// `release_at`, which is also its `completes_at`.
    pub fn open_session(&mut self, now: Nanos, call: &Call, release_at: Nanos) -> Response {
        self.answer(now, call, Some(release_at.max(now)), None)
    }

    /// A session of `key` on `model` admitted until `held` ends its hold at `release_at` instead
    /// (`serve` admits a live session until the latest it could last and learns its end when
    /// the client closes).
    pub fn end_session(&mut self, key: usize, model: usize, held: Nanos, release_at: Nanos) {
        if let Some(pool) = self.pools[key * self.models + model] {
            self.ledger.reschedule(pool, held, release_at);
        }
    }

    fn answer(&mut self, now: Nanos, call: &Call, hold: Option<Nanos>, drawn: Option<(usize, Nanos)>) -> Response {
        let key = match call.key {
            KeyRef::Missing => return Response::MissingKey,
            KeyRef::Unknown => return Response::InvalidKey,
            KeyRef::Known(k) if !self.key_valid[k] => return Response::InvalidKey,
            KeyRef::Known(k) => k,
        };
        let Some(asked) = call.model else {
            return Response::UnknownModel;
        };
        // A re-routed id: served by its target, on the quotas its route says.
        let (served, model) = self.routes[asked];
        let via = match self.admission(now, key, model, call) {
            Verdict::Admit(via) => via,
            Verdict::Capacity => return Response::Capacity,
            Verdict::Limited {
                violated,
                retry_at,
                quota,
            } => {
                return Response::RateLimited {
                    violated,
                    retry_delay: self.quirks.retry_delay(
                        violated,
                        retry_at - now,
                        self.calendar.next_minute(now) - now,
                    ),
                    quota,
                    quota_model: model,
                }
            }
            Verdict::Unservable { violated } => {
                let quota = self.ledger.limits(self.budget(key, model)).only(violated);
                return match self.quirks.zero_quota_retry {
                    // The body still says "Please retry in …" for a quota of 0.
                    Some(retry_delay) if !quota.unservable(0).is_empty() => Response::RateLimited {
                        violated,
                        retry_delay,
                        quota,
                        quota_model: model,
                    },
                    _ => Response::Unservable { violated, quota },
                };
            }
        };
        // Admitted by a path; what follows may still refuse it, and a refused or failed
        // request takes nothing from any path (quota, reservation, shared pool) nor the spend.
        let account = self.project_account[self.key_project[key]];
        // The prices in force now (spend caps follow a price change from its instant on).
        let mut price =
            price_at(self.prices[served], &self.price_changes[served], now).cost(call.input_tokens, call.output_tokens);
        if via == Via::Priority {
            price = self.paygo_rules.priority_cost(price);
        }
        if let Some(w) = self.spend[account].as_mut() {
            if !w.allows(now, price) {
                return Response::SpendCap;
            }
        }
        if self.quirks.capacity_rate > 0.0 {
            let u = unit(&mut rng(
                self.seed,
                Stream::Server,
                call.request,
                call.attempt ^ 0x4000_0000,
            ));
            if u < self.quirks.capacity_rate {
                return Response::Capacity;
            }
        }
        if self.fault_rate > 0.0 {
            let u = unit(&mut rng(
                self.seed,
                Stream::Server,
                call.request,
                call.attempt ^ 0x8000_0000,
            ));
            if u < self.fault_rate {
                return Response::Unavailable;
            }
        }
        let completes_at = match (hold, drawn) {
            (Some(until), _) => until,
            (None, Some((m, latency))) if m == served => {
                debug_assert_eq!(latency, self.latency(served, call.output_tokens, call.request));
                now + latency
            }
            (None, _) => now + self.latency(served, call.output_tokens, call.request),
        };
        let budget = self.budget(key, model);
        let pool = self.pools[key * self.models + model];
        let cost = self.tpm_cost(call.input_tokens, call.output_tokens);
        match via {
            Via::Reserved => {
                let (b, _) = self.reserved_budgets[self.key_project[key] * self.models + model].expect("a reservation");
                self.reserved.commit(now, b, None, call.input_tokens, completes_at);
            }
            Via::Pool => {
                self.shared[model].as_mut().expect("a shared pool").take(now);
                if let Some(p) = self.paygo[model].as_mut() {
                    p.take(now, cost, Lane::BestEffort);
                }
                self.ledger.commit(now, budget, pool, cost, completes_at);
            }
            Via::Paygo | Via::Priority => {
                let lane = if via == Via::Priority {
                    Lane::Priority
                } else {
                    Lane::Tier
                };
                self.paygo[model].as_mut().expect("a PayGo model").take(now, cost, lane);
                self.ledger.commit(now, budget, pool, cost, completes_at);
            }
            Via::Quota => self.ledger.commit(now, budget, pool, cost, completes_at),
        }
        if let Some(w) = self.spend[account].as_mut() {
            w.charge(now, price);
        }
        Response::Ok { completes_at, via }
    }

    /// A hint, changing nothing: a request on `key` and `model` is likely soon; `second` asks
    /// for its budget's window entries, else for the budget's record (see
    /// [`Ledger::prefetch_budget`]). Out-of-range keys or models are ignored.
    pub fn prefetch(&self, key: usize, model: usize, second: bool) {
        let Some(&p) = self.key_project.get(key) else { return };
        if model >= self.models {
            return;
        }
        if let Some(&b) = self.budgets.get(p * self.models + model) {
            if second {
                self.ledger.prefetch_window(b);
            } else {
                self.ledger.prefetch_budget(b);
            }
        }
    }

    /// The quota budget of (`key`'s project, `model`).
    fn budget(&self, key: usize, model: usize) -> BudgetId {
        self.budgets[self.key_project[key] * self.models + model]
    }

    /// The one rule every admission follows: the request's paths in Google's order — the
    /// project's reservation (counting input tokens, whatever `tpm_counts` says), then, for the
    /// overflow that spills, a PayGo model's lanes (system limit, Priority PayGo, the tier,
    /// best-effort in the shared pool), or the model's shared pool, or else the (project,
    /// model) quota — and,
    /// when none admits it now, the earliest instant at which *any* path would admit it alone
    /// (the least of each path's own earliest instant; each path only opens up as time passes,
    /// so their union does too). The violated set is the quota's; a request is unservable only
    /// when no path can ever admit it. Nothing is recorded except a rejected request in the
    /// quota's RPM when the server counts those (`count_rejected`).
    fn admission(&mut self, now: Nanos, key: usize, model: usize, call: &Call) -> Verdict {
        let budget = self.budget(key, model);
        let pool = self.pools[key * self.models + model];
        let cost = self.tpm_cost(call.input_tokens, call.output_tokens);
        // When the reservation admits it alone (`None`: never, or no reservation).
        let mut reserved_at = None;
        if let Some((b, overflow)) = self.reserved_budgets[self.key_project[key] * self.models + model] {
            match self.reserved.check(now, b, None, call.input_tokens) {
                Admission::Admitted => return Verdict::Admit(Via::Reserved),
                // Sent "dedicated only": a 429 without details, whatever else has room.
                _ if overflow == Overflow::DedicatedOnly => return Verdict::Capacity,
                Admission::Rejected { retry_at, .. } => reserved_at = Some(retry_at),
                Admission::Unservable { .. } => {}
            }
        }
        // A PayGo model (Vertex AI) has no per-project quota either (the loader refuses one):
        // the system limit, then Priority PayGo for a request that asks for it, then the
        // organisation's tier, then best-effort room in the shared pool; all refusals are 429s
        // without details.
        if let Some(paygo) = self.paygo[model].as_mut() {
            return match paygo.lane(now, cost, call.priority) {
                Lane::Refused => Verdict::Capacity,
                Lane::Priority => Verdict::Admit(Via::Priority),
                Lane::Tier => Verdict::Admit(Via::Paygo),
                Lane::BestEffort => match self.shared[model].as_mut().map(|p| p.room(now)) {
                    Some(true) => Verdict::Admit(Via::Pool),
                    _ => Verdict::Capacity,
                },
            };
        }
        // A shared-pool model has no per-project quota (the loader refuses one): the pool
        // decides, and a full pool says nothing about when it has room.
        if let Some(shared) = self.shared[model].as_mut() {
            return if shared.room(now) {
                Verdict::Admit(Via::Pool)
            } else {
                Verdict::Capacity
            };
        }
        match self.ledger.check(now, budget, pool, cost) {
            Admission::Admitted => Verdict::Admit(Via::Quota),
            Admission::Unservable { violated } => match reserved_at {
                Some(retry_at) => Verdict::Limited {
                    violated,
                    retry_at,
                    quota: self.ledger.limits(budget).only(violated),
                },
                None => Verdict::Unservable { violated },
            },
            Admission::Rejected { .. } => {
                // `admit` records a rejected request when the server counts those.
                match self.ledger.admit(now, budget, pool, cost, now) {
                    Admission::Rejected { violated, retry_at } => Verdict::Limited {
                        violated,
                        retry_at: reserved_at.map_or(retry_at, |r| r.min(retry_at)),
                        quota: self.ledger.limits(budget).only(violated),
                    },
                    other => unreachable!("check said rejected, admit said {other:?}"),
                }
            }
        }
    }

    /// Spend of `account`: (the most it ever spent within one spend window, its cap), in
    /// picodollars; `None` when it has no cap.
    pub fn spend_peak(&self, account: usize) -> Option<(u128, u128)> {
        self.spend[account].as_ref().map(|w| (w.peak(), w.cap()))
    }

    /// The ledger (for snapshots and checks).
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Usage of (project, model) at `now`.
    pub fn usage(&mut self, now: Nanos, project: usize, model: usize) -> Usage {
        let b = self.budgets[project * self.models + model];
        let pool = match self.scopes[model] {
            ConcurrencyScope::Project => self
                .key_project
                .iter()
                .position(|&p| p == project)
                .and_then(|k| self.pools[k * self.models + model]),
            ConcurrencyScope::Key => None,
        };
        self.ledger.usage(now, b, pool)
    }

    /// The peak usage of (project, model) over the run.
    pub fn peak(&self, project: usize, model: usize) -> Usage {
        let mut u = self.ledger.peak(self.budgets[project * self.models + model]);
        u.concurrency = self
            .key_project
            .iter()
            .enumerate()
            .filter(|(_, &p)| p == project)
            .filter_map(|(k, _)| self.pools[k * self.models + model])
            .map(|p| self.ledger.pool_peak(p))
            .max()
            .unwrap_or(0);
        u
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::ledger::Dimension;
    use crate::core::time::SECOND;
    use crate::core::topology::{Account, Key, Project};
    use chrono::DateTime;

    /// One project with one key, a model of `quota` with `provisioned`, and its server.
    fn server(quota: Limits, provisioned: Option<Provisioned>) -> Server {
        server_with(quota, provisioned, "2026-03-03T10:00:00-08:00", |_, _, _| {})
    }

    /// [`server`] starting at `start`, with whatever `tweak` changes.
    fn server_with(
        quota: Limits,
        provisioned: Option<Provisioned>,
        start: &str,
        tweak: impl FnOnce(&mut Model, &mut Topology, &mut ServerConfig),
    ) -> Server {
        let mut model = Model {
            name: "m".into(),
            limits: quota,
            concurrency_scope: ConcurrencyScope::Project,
            latency: Latency {
                ttft: SECOND,
                tokens_per_second: 100.0,
                jitter: 0.0,
            },
            shared_pool: None,
            prices: Prices::default(),
            provisioned,
            live: false,
            route: None,
            price_changes: Vec::new(),
            paygo: None,
        };
        let mut topology = Topology {
            accounts: vec![Account {
                name: "a".into(),
                spend_cap: None,
            }],
            projects: vec![Project {
                name: "p".into(),
                account: 0,
                tier: "free".into(),
                limits: vec![quota],
                rpd_used: 0,
            }],
            keys: vec![Key {
                value: "k".into(),
                project: 0,
                valid: true,
            }],
        };
        let mut config = ServerConfig {
            ledger: LedgerConfig::default(),
            tpm_counts: TpmCounts::Input,
            fault_rate: 0.0,
            quirks: Quirks::default(),
            spend: SpendRule {
                window: 10 * crate::core::time::MINUTE,
                delay: 0,
            },
            error_latency: 0,
            live: LiveRules::default(),
            paygo: PaygoRules::default(),
        };
        tweak(&mut model, &mut topology, &mut config);
        let cal = Calendar::new(
            DateTime::parse_from_rfc3339(start).unwrap(),
            chrono_tz::America::Los_Angeles,
        );
        // A second model when the tweak gave the project a second model's limits: the first
        // model's copy under the name `new`, at the server's default latency.
        let mut models = vec![model.clone()];
        if topology.projects[0].limits.len() > 1 {
            models.push(Model {
                name: "new".into(),
                limits: topology.projects[0].limits[1],
                route: None,
                latency: Latency {
                    ttft: SECOND,
                    tokens_per_second: 100.0,
                    jitter: 0.0,
                },
                ..model
            });
        }
        Server::new(&config, &models, &topology, &cal, 1)
    }

    fn call(request: u64) -> Call {
        Call {
            key: KeyRef::Known(0),
            model: Some(0),
            input_tokens: 10,
            output_tokens: 1,
            request,
            attempt: 1,
            priority: false,
        }
    }

    fn reserved(rpm: u64, overflow: Overflow) -> Option<Provisioned> {
        Some(Provisioned {
            limits: Limits {
                rpm: Some(rpm),
                ..Limits::default()
            },
            overflow,
        })
    }

    /// The driver's hint for a key and model (issue 34) reads only what exists: any key or
    /// model, in range or not, is taken without a panic, and changes nothing.
    /// A per-day 429 on the first day is explained by the requests spent before the run only
    /// while the run's own requests of the day are under the limit; on a later day it never is.
    #[test]
    fn a_day_spent_before_the_run_explains_a_per_day_429_until_the_run_fills_it_itself() {
        let limits = Limits {
            rpd: Some(3),
            ..Limits::default()
        };
        let mut s = server_with(limits, None, "2026-03-03T10:00:00-08:00", |_, t, _| {
            t.projects[0].rpd_used = 2
        });
        assert!(matches!(s.handle(0, &call(0)), Response::Ok { .. }));
        assert!(matches!(s.handle(SECOND, &call(1)), Response::RateLimited { .. }));
        assert!(
            s.day_spent_before(SECOND, 0, 0),
            "1 of the run's own against a limit of 3"
        );
        let mut s = server_with(limits, None, "2026-03-03T10:00:00-08:00", |_, _, _| {});
        for r in 0..3 {
            assert!(matches!(s.handle(r * SECOND, &call(r)), Response::Ok { .. }));
        }
        assert!(matches!(s.handle(5 * SECOND, &call(3)), Response::RateLimited { .. }));
        assert!(!s.day_spent_before(5 * SECOND, 0, 0), "nothing spent before");
        let mut s = server_with(limits, None, "2026-03-03T10:00:00-08:00", |_, t, _| {
            t.projects[0].rpd_used = 3
        });
        let tomorrow = 15 * 3_600 * SECOND;
        assert!(!s.day_spent_before(tomorrow, 0, 0), "a later day");
        assert!(matches!(s.handle(0, &call(0)), Response::RateLimited { .. }));
        assert!(s.day_spent_before(0, 0, 0));
    }

    #[test]
    fn a_prefetch_hint_changes_nothing_whatever_it_names() {
        let quota = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let mut s = server(quota, None);
        for (k, m) in [(0, 0), (1, 0), (0, 1), (usize::MAX, usize::MAX)] {
            s.prefetch(k, m, false);
            s.prefetch(k, m, true);
        }
        let call = |request| Call {
            key: KeyRef::Known(0),
            model: Some(0),
            input_tokens: 10,
            output_tokens: 10,
            request,
            attempt: 1,
            priority: false,
        };
        assert!(matches!(s.handle(0, &call(1)), Response::Ok { .. }));
        s.prefetch(0, 0, false);
        s.prefetch(0, 0, true);
        assert!(matches!(s.handle(SECOND, &call(2)), Response::RateLimited { .. }));
    }

    #[test]
    fn reserved_throughput_comes_first_and_spends_no_quota() {
        let quota = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let mut s = server(quota, reserved(2, Overflow::Spill));
        for r in 0..3 {
            assert!(
                matches!(s.handle(0, &call(r)), Response::Ok { .. }),
                "2 reserved + 1 quota"
            );
        }
        assert!(matches!(s.handle(0, &call(3)), Response::RateLimited { .. }));
        assert_eq!(s.usage(0, 0, 0).rpm, 1, "the quota counted only the spilled request");
    }

    #[test]
    fn a_session_s_slot_frees_exactly_when_its_end_is_learned() {
        let quota = Limits {
            concurrent: Some(1),
            ..Limits::default()
        };
        let mut s = server(quota, None);
        let held = 600 * SECOND;
        assert!(matches!(s.open_session(0, &call(0), held), Response::Ok { completes_at, .. } if completes_at == held));
        // The client closed at 5 s; the server frees the slot 2 s later.
        let release = 7 * SECOND;
        s.end_session(0, 0, held, release);
        match s.open_session(release - 1, &call(1), held) {
            Response::RateLimited {
                violated, retry_delay, ..
            } => {
                assert!(violated.contains(crate::core::ledger::Dimension::Concurrency));
                assert_eq!(retry_delay, 1, "free to the nanosecond");
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(s.open_session(release, &call(2), held), Response::Ok { .. }));
    }

    #[test]
    fn dedicated_only_refuses_the_overflow_without_details() {
        let mut s = server(Limits::default(), reserved(2, Overflow::DedicatedOnly));
        assert!(matches!(s.handle(0, &call(0)), Response::Ok { .. }));
        assert!(matches!(s.handle(0, &call(1)), Response::Ok { .. }));
        assert_eq!(s.handle(0, &call(2)), Response::Capacity);
        assert!(matches!(
            s.handle(crate::core::time::MINUTE, &call(3)),
            Response::Ok { .. }
        ));
    }

    /// A call of `input` and `output` tokens.
    fn sized(request: u64, input: u64, output: u64) -> Call {
        Call {
            input_tokens: input,
            output_tokens: output,
            ..call(request)
        }
    }

    fn via(r: Response) -> Via {
        match r {
            Response::Ok { via, .. } => via,
            r => panic!("not admitted: {r:?}"),
        }
    }

    fn reserved_tpm(tpm: u64, overflow: Overflow) -> Option<Provisioned> {
        Some(Provisioned {
            limits: Limits {
                tpm: Some(tpm),
                ..Limits::default()
            },
            overflow,
        })
    }

    /// Issue 33, item 2: a quota 429's delay is the earliest instant at which any path admits
    /// the request, the reservation included (it was the quota's alone: Pacific midnight).
    #[test]
    fn a_quota_429_s_delay_is_the_earliest_instant_any_path_admits() {
        let quota = Limits {
            rpd: Some(1),
            concurrent: Some(1),
            ..Limits::default()
        };
        // 09:00 PST: midnight is 15 h away.
        let mut s = server_with(
            quota,
            reserved(2, Overflow::Spill),
            "2026-03-03T09:00:00-08:00",
            |_, _, c| c.quirks.per_day_retry = PerDayRetry::Reset,
        );
        // 1,000 output tokens at 100/s: each holds its slot 11 s.
        assert_eq!(via(s.handle(0, &sized(0, 10, 1000))), Via::Reserved);
        assert_eq!(via(s.handle(0, &sized(1, 10, 1000))), Via::Reserved);
        assert_eq!(via(s.handle(0, &sized(2, 10, 1000))), Via::Quota);
        match s.handle(3 * SECOND, &sized(3, 10, 1000)) {
            Response::RateLimited {
                violated, retry_delay, ..
            } => {
                assert_eq!(violated.names(), ["rpd", "concurrency"], "the quota's violated set");
                assert_eq!(
                    retry_delay,
                    57 * SECOND,
                    "the reservation admits it at 60 s, not at midnight (53,997 s)"
                );
            }
            r => panic!("{r:?}"),
        }
        assert!(matches!(
            s.handle(60 * SECOND - 1, &sized(4, 10, 1000)),
            Response::RateLimited { .. }
        ));
        assert_eq!(via(s.handle(60 * SECOND, &sized(5, 10, 1000))), Via::Reserved);
    }

    /// Issue 33, item 3: a request beyond the quota's TPM that the reservation can take later
    /// is a 429 with that delay, not unservable; one no path can ever take is unservable.
    #[test]
    fn unservable_only_when_no_path_can_ever_admit_it() {
        let quota = Limits {
            tpm: Some(1_000),
            ..Limits::default()
        };
        let mut s = server(quota, reserved_tpm(10_000, Overflow::Spill));
        assert_eq!(via(s.handle(0, &sized(0, 6_000, 1))), Via::Reserved);
        match s.handle(2 * SECOND, &sized(1, 6_000, 1)) {
            Response::RateLimited {
                violated,
                retry_delay,
                quota,
                ..
            } => {
                assert_eq!(violated.names(), ["tpm"]);
                assert_eq!(retry_delay, 58 * SECOND);
                assert_eq!(quota.tpm, Some(1_000), "QuotaFailure states the quota's value");
            }
            r => panic!("{r:?}"),
        }
        assert_eq!(via(s.handle(60 * SECOND, &sized(2, 6_000, 1))), Via::Reserved);
        assert_eq!(
            s.handle(61 * SECOND, &sized(3, 10_001, 1)),
            Response::Unservable {
                violated: [Dimension::Tpm].into_iter().collect(),
                quota: Limits {
                    tpm: Some(1_000),
                    ..Limits::UNLIMITED
                },
            },
            "beyond the reservation and the quota"
        );
        // The quota still serves what fits it while the reservation is full.
        assert_eq!(via(s.handle(61 * SECOND, &sized(4, 3_500, 1))), Via::Reserved);
        assert_eq!(via(s.handle(61 * SECOND, &sized(5, 1_000, 1))), Via::Quota);
    }

    /// Issue 33, item 4: the reservation counts input tokens per minute (REFERENCE; the
    /// facts: Gemini's TPM metrics are input-token counts), whatever `tpm_counts` makes the
    /// quota count.
    #[test]
    fn the_reservation_counts_input_tokens_whatever_tpm_counts_says() {
        let total = |_: &mut Model, _: &mut Topology, c: &mut ServerConfig| c.tpm_counts = TpmCounts::Total;
        let quota = Limits {
            tpm: Some(1_000),
            ..Limits::default()
        };
        let start = "2026-03-03T10:00:00-08:00";
        let mut s = server_with(quota, reserved_tpm(1_000, Overflow::DedicatedOnly), start, total);
        assert_eq!(via(s.handle(0, &sized(0, 600, 600))), Via::Reserved, "600 in / 600 out");
        assert_eq!(
            s.handle(0, &sized(1, 401, 0)),
            Response::Capacity,
            "600 + 401 input tokens"
        );
        let mut q = server_with(quota, None, start, total);
        assert!(
            matches!(q.handle(0, &sized(0, 600, 600)), Response::Unservable { .. }),
            "the quota counts the total"
        );
    }

    /// Issue 33, item 8: nothing that is refused or fails takes room in the shared pool, as
    /// with the reservation and the quota: a spend-capped request and a 503 leave it alone.
    #[test]
    fn the_shared_pool_counts_only_what_is_served() {
        let pool = PoolSpec {
            capacity: 2,
            others: 0.0,
            swing: 0.0,
            bursts_per_hour: 0.0,
            burst: crate::core::time::MINUTE,
            burst_load: 0.0,
        };
        let price = Prices {
            input: 1_000_000,
            output: 0,
        };
        // A cap of exactly one 10-token request: 10 × 10⁶ picodollars.
        let mut s = server_with(Limits::default(), None, "2026-03-03T10:00:00-08:00", |m, t, _| {
            m.shared_pool = Some(pool);
            m.prices = price;
            t.accounts[0].spend_cap = Some(10_000_000);
        });
        assert_eq!(via(s.handle(0, &call(0))), Via::Pool);
        assert_eq!(s.handle(0, &call(1)), Response::SpendCap);
        assert_eq!(s.handle(0, &call(2)), Response::SpendCap);
        // Free requests still find the pool's second place.
        assert_eq!(via(s.handle(0, &sized(3, 0, 0))), Via::Pool);
        assert_eq!(s.handle(0, &sized(4, 0, 0)), Response::Capacity);

        // One place, 503s on half the requests: a 503 leaves the place to the next request.
        let one = || {
            server_with(Limits::default(), None, "2026-03-03T10:00:00-08:00", |m, _, c| {
                m.shared_pool = Some(PoolSpec { capacity: 1, ..pool });
                c.fault_rate = 0.5;
            })
        };
        let answer = |r| one().handle(0, &call(r));
        let failed = (0..64).find(|&r| answer(r) == Response::Unavailable).expect("a 503");
        let served = (0..64)
            .find(|&r| matches!(answer(r), Response::Ok { .. }))
            .expect("a 200");
        let mut s = one();
        assert_eq!(s.handle(0, &call(failed)), Response::Unavailable);
        assert_eq!(via(s.handle(0, &call(served))), Via::Pool);
        assert_eq!(s.handle(0, &call(served + 64)), Response::Capacity, "now it is full");
    }

    /// Issue 33, item 8: the spend cap is checked after the quota and before the capacity
    /// quirk and 503s; refused or failed requests spend nothing; spend equal to the cap is
    /// allowed; late billing data is seen `spend_delay` after the spend.
    #[test]
    fn the_spend_cap_s_place_in_the_order() {
        let price = Prices {
            input: 1_000_000,
            output: 0,
        };
        let start = "2026-03-03T10:00:00-08:00";
        let capped = |cap: u128| {
            move |m: &mut Model, t: &mut Topology, _: &mut ServerConfig| {
                m.prices = price;
                t.accounts[0].spend_cap = Some(cap);
            }
        };
        // After the quota: a request over both the quota and the cap names the quota.
        let rpm1 = Limits {
            rpm: Some(1),
            ..Limits::default()
        };
        let mut s = server_with(rpm1, None, start, capped(10_000_000));
        assert!(matches!(s.handle(0, &call(0)), Response::Ok { .. }));
        assert!(matches!(s.handle(0, &call(1)), Response::RateLimited { .. }));
        // Equal to the cap is allowed: two requests of 5 µUSD under a cap of 10 µUSD.
        let mut s = server_with(Limits::default(), None, start, capped(10_000_000));
        assert!(matches!(s.handle(0, &sized(0, 5, 0)), Response::Ok { .. }));
        assert!(matches!(s.handle(0, &sized(1, 5, 0)), Response::Ok { .. }));
        assert_eq!(s.handle(0, &sized(2, 1, 0)), Response::SpendCap);
        assert_eq!(s.spend_peak(0), Some((10_000_000, 10_000_000)));
        // Before the capacity quirk and 503s: a capped request is SpendCap even when every
        // request would get one of those.
        for tweak in [0, 1] {
            let mut s = server_with(Limits::default(), None, start, |m, t, c| {
                capped(10_000_000)(m, t, c);
                if tweak == 0 {
                    c.quirks.capacity_rate = 1.0;
                } else {
                    c.fault_rate = 1.0;
                }
            });
            assert_eq!(s.handle(0, &sized(0, 11, 0)), Response::SpendCap, "the cap first");
            assert!(matches!(
                s.handle(0, &call(1)),
                Response::Capacity | Response::Unavailable
            ));
            assert!(matches!(
                s.handle(0, &call(2)),
                Response::Capacity | Response::Unavailable
            ));
            assert_eq!(
                s.spend_peak(0),
                Some((0, 10_000_000)),
                "refused or failed: nothing spent"
            );
        }
        // Late billing data: a spend is seen `delay` after it.
        let mut s = server_with(Limits::default(), None, start, |m, t, c| {
            capped(10_000_000)(m, t, c);
            c.spend.delay = 30 * SECOND;
        });
        assert!(matches!(s.handle(0, &call(0)), Response::Ok { .. }));
        assert!(
            matches!(s.handle(30 * SECOND - 1, &call(1)), Response::Ok { .. }),
            "not seen yet"
        );
        assert_eq!(s.handle(30 * SECOND, &call(2)), Response::SpendCap);
    }

    /// Issue 33, item 8: `per_day_retry` applies whenever a per-day dimension is named,
    /// `per_minute_retry` only when none is; other 429s keep the exact delay.
    #[test]
    fn retry_quirks_by_the_dimensions_named() {
        let q = Quirks {
            per_day_retry: PerDayRetry::Fixed(1),
            per_minute_retry: Some(2),
            ..Quirks::default()
        };
        let dims = |d: &[Dimension]| d.iter().copied().collect::<Dims>();
        assert_eq!(q.retry_delay(dims(&[Dimension::Rpm, Dimension::Rpd]), 99, 7), 1);
        assert_eq!(q.retry_delay(dims(&[Dimension::Tpm, Dimension::Tpd]), 99, 7), 1);
        assert_eq!(q.retry_delay(dims(&[Dimension::Tpm]), 99, 7), 2);
        assert_eq!(q.retry_delay(dims(&[Dimension::Rpm, Dimension::Concurrency]), 99, 7), 2);
        assert_eq!(q.retry_delay(dims(&[Dimension::Concurrency]), 99, 7), 99);
        let reset = Quirks {
            per_day_retry: PerDayRetry::Reset,
            ..q
        };
        assert_eq!(reset.retry_delay(dims(&[Dimension::Rpm, Dimension::Rpd]), 99, 7), 99);
        let next = Quirks {
            per_day_retry: PerDayRetry::NextMinute,
            ..q
        };
        assert_eq!(next.retry_delay(dims(&[Dimension::Rpd]), 99, 7), 7);
        assert_eq!(
            next.retry_delay(dims(&[Dimension::Rpm]), 99, 7),
            2,
            "per-minute: its own rule"
        );
    }

    /// Issue 31, item 2: by default a per-day 429 says the seconds left in the calendar
    /// minute, as Google's did in 2026 (`36s` on a `…PerDay…-FreeTier` violation), not the
    /// time to Pacific midnight; `reset` restores the exact delay, a duration fixes it.
    #[test]
    fn a_per_day_429_says_the_seconds_to_the_next_minute_by_default() {
        let quota = Limits {
            rpd: Some(1),
            ..Limits::default()
        };
        // 09:00:00 PST: midnight is 15 h away; at 24 s into the minute, the next is 36 s away.
        let start = "2026-12-02T09:00:00-08:00";
        let at = 24 * SECOND;
        let delay = |mode: Option<PerDayRetry>| {
            let mut s = server_with(quota, None, start, |_, _, c| {
                if let Some(m) = mode {
                    c.quirks.per_day_retry = m;
                }
            });
            assert!(matches!(s.handle(0, &call(0)), Response::Ok { .. }));
            match s.handle(at, &call(1)) {
                Response::RateLimited {
                    violated, retry_delay, ..
                } => {
                    assert_eq!(violated.names(), ["rpd"]);
                    retry_delay
                }
                r => panic!("{r:?}"),
            }
        };
        assert_eq!(delay(None), 36 * SECOND, "the default: to the next minute");
        assert_eq!(delay(Some(PerDayRetry::Reset)), 15 * 3600 * SECOND - at, "to midnight");
        assert_eq!(delay(Some(PerDayRetry::Fixed(0))), 0);
    }

    /// Issue 31, item 6: a retired id is served by its target (its latency), on the target's
    /// quotas by default (`routed_quota = "target"`) or on its own (`"own"`).
    #[test]
    fn a_re_routed_id_draws_on_the_quota_its_route_says() {
        let one_a_day = Limits {
            rpd: Some(1),
            ..Limits::default()
        };
        for (quota, second) in [(RouteQuota::Target, false), (RouteQuota::Own, true)] {
            let mut s = server_with(one_a_day, None, "2026-12-02T09:00:00-08:00", |m, t, _| {
                m.latency.ttft = 7 * SECOND;
                m.route = Some(Route { to: 1, quota });
                t.projects[0].limits.push(one_a_day);
            });
            let on = |model: usize| Call {
                model: Some(model),
                ..call(model as u64)
            };
            match s.handle(0, &on(0)) {
                // The target's latency (ttft 1 s + 1 token at 100/s), not the old id's 7 s.
                Response::Ok { completes_at, .. } => assert_eq!(completes_at, SECOND + SECOND / 100),
                r => panic!("{r:?}"),
            }
            assert_eq!(
                matches!(s.handle(0, &on(1)), Response::Ok { .. }),
                second,
                "{quota:?}: the target's own day"
            );
        }
    }

    /// Issue 31, item 4: a PayGo model's order — reservation, system limit, Priority PayGo,
    /// the organisation's tier (with the spike rule), best-effort room in the shared pool — and
    /// Priority PayGo's price against a spend cap.
    #[test]
    fn a_paygo_model_throttles_a_spike_the_minute_would_hold() {
        use crate::core::paygo::{Family, PaygoModel};
        let tier = |tpm: u64| {
            move |m: &mut Model, _: &mut Topology, c: &mut ServerConfig| {
                m.limits = Limits::default();
                m.paygo = Some(PaygoModel {
                    family: Family::Flash,
                    tpm: Some(tpm),
                    priority_tpm: None,
                });
                c.paygo.system_rpm = 120;
            }
        };
        let start = "2026-12-02T09:00:00-08:00";
        let on = |request: u64, priority: bool| Call {
            priority,
            ..sized(request, 1_000, 1)
        };
        // 60,000 TPM: 2,000 tokens a second at the default spike factor of 2.
        let mut s = server_with(Limits::default(), None, start, tier(60_000));
        assert_eq!(via(s.handle(0, &on(0, false))), Via::Paygo);
        assert_eq!(via(s.handle(SECOND / 10, &on(1, false))), Via::Paygo);
        assert_eq!(
            s.handle(SECOND / 5, &on(2, false)),
            Response::Capacity,
            "3,000 tokens in a second though the minute holds 60,000"
        );
        assert_eq!(
            via(s.handle(SECOND / 5, &on(3, true))),
            Via::Priority,
            "the header goes first"
        );
        assert_eq!(via(s.handle(SECOND + SECOND / 10, &on(4, false))), Via::Paygo);
        // The system limit: 120 RPM allows 4 requests a second, whatever the header.
        let mut s = server_with(Limits::default(), None, start, tier(60_000_000));
        for r in 0..4 {
            assert!(matches!(s.handle(0, &on(r, r % 2 == 0)), Response::Ok { .. }));
        }
        assert_eq!(s.handle(0, &on(4, true)), Response::Capacity, "over the system limit");
        // Beyond the tier, the shared pool's best-effort room serves what it can.
        let mut s = server_with(Limits::default(), None, start, |m, t, c| {
            tier(1_000)(m, t, c);
            m.shared_pool = Some(PoolSpec {
                capacity: 1,
                others: 0.0,
                swing: 0.0,
                bursts_per_hour: 0.0,
                burst: crate::core::time::MINUTE,
                burst_load: 0.0,
            });
        });
        assert_eq!(via(s.handle(0, &on(0, false))), Via::Paygo);
        assert_eq!(via(s.handle(0, &on(1, false))), Via::Pool, "best effort");
        assert_eq!(s.handle(0, &on(2, false)), Response::Capacity);
        // A reservation still comes first.
        let mut s = server_with(Limits::default(), reserved(1, Overflow::Spill), start, tier(1_000));
        assert_eq!(via(s.handle(0, &on(0, true))), Via::Reserved);
        assert_eq!(
            via(s.handle(0, &on(1, true))),
            Via::Priority,
            "PT first, spill to priority"
        );
        // Priority costs `priority_price` × the price: 1,000 tokens at 1 µUSD are 1,800 µUSD.
        let mut s = server_with(Limits::default(), None, start, |m, t, c| {
            tier(60_000_000)(m, t, c);
            m.prices = Prices {
                input: 1_000_000,
                output: 0,
            };
            t.accounts[0].spend_cap = Some(2_800_000_000);
        });
        assert!(matches!(s.handle(0, &on(0, true)), Response::Ok { .. }));
        assert_eq!(s.spend_peak(0), Some((1_800_000_000, 2_800_000_000)));
        assert!(
            matches!(s.handle(0, &on(1, false)), Response::Ok { .. }),
            "1,800 + 1,000"
        );
        assert_eq!(s.handle(0, &on(2, true)), Response::SpendCap);
    }

    /// Issue 31, item 6: a spend cap charges the price in force at the request's instant.
    #[test]
    fn a_spend_cap_charges_the_price_in_force() {
        let old = Prices {
            input: 1_000_000,
            output: 0,
        };
        let new = Prices {
            input: 2_000_000,
            output: 0,
        };
        // 10 input tokens: 10 µUSD before 60 s, 20 µUSD from then on; a cap of 25 µUSD.
        let capped = || {
            server_with(Limits::default(), None, "2026-11-30T23:59:00-08:00", |m, t, _| {
                m.prices = old;
                m.price_changes = vec![(60 * SECOND, new)];
                t.accounts[0].spend_cap = Some(25_000_000);
            })
        };
        let mut s = capped();
        assert!(matches!(s.handle(0, &call(0)), Response::Ok { .. }));
        assert!(
            matches!(s.handle(60 * SECOND - 1, &call(1)), Response::Ok { .. }),
            "10 + 10"
        );
        let mut s = capped();
        assert!(matches!(s.handle(0, &call(0)), Response::Ok { .. }));
        assert_eq!(s.handle(60 * SECOND, &call(1)), Response::SpendCap, "10 + 20 > 25");
        assert_eq!(s.spend_peak(0), Some((10_000_000, 25_000_000)));
    }
}
