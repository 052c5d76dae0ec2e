//! The mock Gemini server model (pure): checks a call in Google's admission order — key known
//! and valid, model known, quota, injected faults — and answers with the response and, when
//! admitted, when it completes. Both drivers (virtual time and real time) use it.

use rand_distr::{Distribution, StandardNormal};

use serde::Deserialize;

use crate::core::ledger::{Admission, BudgetId, Dims, Ledger, LedgerConfig, Limits, PoolId, Usage, WindowKind};
use crate::core::live::LiveRules;
use crate::core::rng::{rng, unit, Stream};
use crate::core::shared_pool::{PoolSpec, SharedPool};
use crate::core::spend::{Prices, SpendRule, SpendWindow};
use crate::core::time::{Calendar, Nanos, MAX_SPAN, SECOND};
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

impl Latency {
    /// The response time of request `request` with `output_tokens`: `ttft + output_tokens /
    /// tokens_per_second` times its lognormal jitter factor, rounded to the nanosecond (at
    /// least 1 ns). The factor is drawn per request, not per attempt: whichever attempt is
    /// admitted, and whichever strategy sent it, the request takes the same time (common random
    /// numbers), so strategies are compared on identical service times and the upper bound can
    /// use the very draws a run will see.
    pub fn draw(&self, output_tokens: u64, seed: u64, request: u64) -> Nanos {
        self.draw_part(output_tokens, seed, request, 0)
    }

    /// [`Latency::draw`] for part `part` of a request (a Live session's turn; part 0 is the
    /// request's own draw).
    pub fn draw_part(&self, output_tokens: u64, seed: u64, request: u64, part: u32) -> Nanos {
        let base = self.ttft as f64 + output_tokens as f64 * SECOND as f64 / self.tokens_per_second;
        let factor = if self.jitter > 0.0 {
            let z: f64 = StandardNormal.sample(&mut rng(seed, Stream::Server, request, part));
            (self.jitter * z).exp()
        } else {
            1.0
        };
        // Round half up (positive), at least 1 ns; `as` saturates rather than wrapping, and no
        // response outlasts MAX_SPAN, so `now + latency` cannot overflow.
        ((base * factor + 0.5) as Nanos).clamp(1, MAX_SPAN)
    }
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
    /// Prices, charged against the account's spend cap.
    pub prices: Prices,
    /// Throughput reserved for each project (Vertex AI's provisioned throughput).
    pub provisioned: Option<Provisioned>,
    /// A Live API model: its calls are sessions, its concurrency limit counts open sessions.
    pub live: bool,
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
    /// How Live sessions are run.
    pub live: LiveRules,
}

/// Server behaviours users have met that contradict the documented ones; each is off
/// (`None` / 0) unless a scenario turns it on.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Quirks {
    /// A per-day 429's RetryInfo says this (e.g. `0s`) instead of the time to the reset.
    pub per_day_retry: Option<Nanos>,
    /// A per-minute 429's RetryInfo says this (e.g. `86400s`) instead of the exact delay.
    pub per_minute_retry: Option<Nanos>,
    /// A 429 for a quota of 0 still says "Please retry in" this (and carries RetryInfo).
    pub zero_quota_retry: Option<Nanos>,
    /// Probability that a request within every quota gets a detail-less 429 anyway
    /// ("Resource exhausted, please try again later.": no QuotaFailure, no RetryInfo).
    pub capacity_rate: f64,
}

impl Quirks {
    /// The RetryInfo delay a 429 violating `violated` carries when the exact one is `exact`.
    pub fn retry_delay(&self, violated: Dims, exact: Nanos) -> Nanos {
        match (self.per_day_retry, self.per_minute_retry) {
            (Some(d), _) if violated.per_day() => d,
            (_, Some(d)) if violated.per_minute() && !violated.per_day() => d,
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
}

/// The server's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Response {
    /// 200: the response ends at `completes_at`.
    Ok {
        /// Completion time (absolute).
        completes_at: Nanos,
    },
    /// 429 RESOURCE_EXHAUSTED with every violated dimension and the exact retry delay.
    RateLimited {
        /// Violated dimensions.
        violated: Dims,
        /// Delay until this request alone would be admitted.
        retry_delay: Nanos,
        /// The violated dimensions' limits, as QuotaFailure states them.
        quota: Limits,
    },
    /// 429 that no retry can cure (limit 0, or more tokens than TPM); no RetryInfo.
    Unservable {
        /// The impossible dimensions.
        violated: Dims,
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
    /// Per model: its shared pool, if it has one.
    shared: Vec<Option<SharedPool>>,
    /// Per account: its spend cap, if it has one.
    spend: Vec<Option<SpendWindow>>,
    /// Reserved throughput: its own ledger, a budget per (project, model) that has one.
    reserved: Ledger,
    reserved_budgets: Vec<Option<(BudgetId, Overflow)>>,
    project_account: Vec<usize>,
    prices: Vec<Prices>,
    seed: u64,
}

impl Server {
    /// A server for `models` and `topology` under `config`, its days cut by `calendar` and its
    /// randomness drawn from `seed`.
    pub fn new(config: &ServerConfig, models: &[Model], topology: &Topology, calendar: &Calendar, seed: u64) -> Self {
        let m = models.len();
        let mut ledger = Ledger::new(calendar.clone(), config.ledger);
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
            shared: models
                .iter()
                .enumerate()
                .map(|(i, m)| m.shared_pool.map(|spec| SharedPool::new(spec, calendar, seed, i)))
                .collect(),
            spend: topology
                .accounts
                .iter()
                .map(|a| a.spend_cap.map(|cap| SpendWindow::new(cap, config.spend)))
                .collect(),
            project_account: topology.projects.iter().map(|p| p.account).collect(),
            prices: models.iter().map(|m| m.prices).collect(),
            seed,
        }
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
        self.answer(now, call, None)
    }

    /// Answers a Live session's setup at `now` like [`Server::handle`] (its RPM, TPM and RPD
    /// charged once, its tokens the session's); admitted, it holds a concurrency slot until
    /// `release_at`, which is also its `completes_at`.
    pub fn open_session(&mut self, now: Nanos, call: &Call, release_at: Nanos) -> Response {
        self.answer(now, call, Some(release_at.max(now)))
    }

    /// A session of `key` on `model` admitted until `held` ends its hold at `release_at` instead
    /// (`serve` admits a live session until the latest it could last and learns its end when
    /// the client closes).
    pub fn end_session(&mut self, key: usize, model: usize, held: Nanos, release_at: Nanos) {
        if let Some(pool) = self.pools[key * self.models + model] {
            self.ledger.reschedule(pool, held, release_at);
        }
    }

    fn answer(&mut self, now: Nanos, call: &Call, hold: Option<Nanos>) -> Response {
        let key = match call.key {
            KeyRef::Missing => return Response::MissingKey,
            KeyRef::Unknown => return Response::InvalidKey,
            KeyRef::Known(k) if !self.key_valid[k] => return Response::InvalidKey,
            KeyRef::Known(k) => k,
        };
        let Some(model) = call.model else {
            return Response::UnknownModel;
        };
        let budget = self.budgets[self.key_project[key] * self.models + model];
        let pool = self.pools[key * self.models + model];
        let cost = self.tpm_cost(call.input_tokens, call.output_tokens);
        // Reserved throughput first: what fits is served whatever else is full.
        let reserved = self.reserved_budgets[self.key_project[key] * self.models + model];
        let dedicated = match reserved {
            Some((b, overflow)) => match self.reserved.check(now, b, None, cost) {
                Admission::Admitted => Some(b),
                _ if overflow == Overflow::DedicatedOnly => return Response::Capacity,
                _ => None,
            },
            None => None,
        };
        // Traffic on reserved throughput takes nothing from the shared pool and spends none of
        // the pay-as-you-go quotas.
        if dedicated.is_none() {
            if let Some(pool) = self.shared[model].as_mut() {
                if !pool.admit(now) {
                    return Response::Capacity;
                }
            }
            match self.ledger.check(now, budget, pool, cost) {
                Admission::Admitted => {}
                Admission::Unservable { violated } => {
                    let quota = self.ledger.limits(budget).only(violated);
                    return match self.quirks.zero_quota_retry {
                        // The body still says "Please retry in …" for a quota of 0.
                        Some(retry_delay) if !quota.unservable(0).is_empty() => Response::RateLimited {
                            violated,
                            retry_delay,
                            quota,
                        },
                        _ => Response::Unservable { violated },
                    };
                }
                Admission::Rejected { .. } => {
                    // `admit` records a rejected request when the server counts those.
                    return match self.ledger.admit(now, budget, pool, cost, now) {
                        Admission::Rejected { violated, retry_at } => Response::RateLimited {
                            violated,
                            retry_delay: self.quirks.retry_delay(violated, retry_at - now),
                            quota: self.ledger.limits(budget).only(violated),
                        },
                        other => unreachable!("check said rejected, admit said {other:?}"),
                    };
                }
            }
        }
        let account = self.project_account[self.key_project[key]];
        let price = self.prices[model].cost(call.input_tokens, call.output_tokens);
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
        let completes_at = match hold {
            Some(until) => until,
            None => now + self.latency(model, call.output_tokens, call.request),
        };
        match dedicated {
            Some(b) => self.reserved.commit(now, b, None, cost, completes_at),
            None => self.ledger.commit(now, budget, pool, cost, completes_at),
        }
        if let Some(w) = self.spend[account].as_mut() {
            w.charge(now, price);
        }
        Response::Ok { completes_at }
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
    use crate::core::topology::{Account, Key, Project};
    use chrono::DateTime;

    /// One project with one key, a model of `quota` with `provisioned`, and its server.
    fn server(quota: Limits, provisioned: Option<Provisioned>) -> Server {
        let model = Model {
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
        };
        let topology = Topology {
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
        let config = ServerConfig {
            ledger: LedgerConfig::default(),
            tpm_counts: TpmCounts::Input,
            fault_rate: 0.0,
            quirks: Quirks::default(),
            spend: SpendRule {
                window: 10 * crate::core::time::MINUTE,
                delay: 0,
            },
            live: LiveRules::default(),
        };
        let cal = Calendar::new(
            DateTime::parse_from_rfc3339("2026-03-03T10:00:00-08:00").unwrap(),
            chrono_tz::America::Los_Angeles,
        );
        Server::new(&config, &[model], &topology, &cal, 1)
    }

    fn call(request: u64) -> Call {
        Call {
            key: KeyRef::Known(0),
            model: Some(0),
            input_tokens: 10,
            output_tokens: 1,
            request,
            attempt: 1,
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
        assert!(matches!(s.open_session(0, &call(0), held), Response::Ok { completes_at } if completes_at == held));
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
}
