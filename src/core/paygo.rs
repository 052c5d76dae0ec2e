//! Vertex AI Standard and Priority PayGo (pure): an organisation's usage tier, set by its spend
//! over the last 30 days, gives each model a prioritized throughput in tokens per minute
//! (Pro 500K / 1M / 2M, Flash and Flash-Lite 2M / 4M / 10M for Tiers 1 / 2 / 3); traffic
//! beyond it is served best-effort (the model's shared pool, if it has one); every model has
//! a system limit of 30,000 requests per minute per region; second-level spikes are throttled
//! even when the minute's average fits (Google publishes no rule: here a second may hold at
//! most `spike` / 60 of a per-minute limit); a request sent with the header
//! `X-Vertex-AI-LLM-Shared-Request-Type: priority` is served from Priority PayGo, ahead of the
//! tier, at a higher price. Sources: facts/gemini-2026-12.md §3.7 (the standard-paygo and
//! priority-paygo pages, ja/zh-cn copies).

use std::collections::VecDeque;

use crate::core::time::{Nanos, MINUTE, SECOND};

/// Which column of the tier table a model is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Gemini Pro models: 500K / 1M / 2M TPM.
    Pro,
    /// Gemini Flash and Flash-Lite models: 2M / 4M / 10M TPM.
    Flash,
}

impl Family {
    /// The prioritized throughput (tokens per minute) of a model of this family in `tier`
    /// (1, 2 or 3).
    pub fn tier_tpm(self, tier: u8) -> u64 {
        match (self, tier) {
            (Family::Pro, 1) => 500_000,
            (Family::Pro, 2) => 1_000_000,
            (Family::Pro, _) => 2_000_000,
            (Family::Flash, 1) => 2_000_000,
            (Family::Flash, 2) => 4_000_000,
            (Family::Flash, _) => 10_000_000,
        }
    }
}

/// The usage tier of an organisation that spent `cents` US cents over the last 30 days:
/// Tier 1 for $10–250, Tier 2 from $250 to $2,000, Tier 3 above $2,000. The table starts at
/// $10; below it, Tier 1 (an assumption: Google gives no tier for less). $250 is Tier 2 and
/// $2,000 is Tier 2 (the table says "$250–2,000" and "> $2,000").
pub fn tier_of_spend(cents: u64) -> u8 {
    match cents {
        0..25_000 => 1,
        25_000..=200_000 => 2,
        _ => 3,
    }
}

/// The organisation's PayGo settings (`[server.paygo]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaygoRules {
    /// The usage tier (1, 2 or 3).
    pub tier: u8,
    /// Requests per minute per model per region, whatever the tier (Google: 30,000).
    pub system_rpm: u64,
    /// How much of a per-minute limit one second may hold, in thousandths of limit / 60
    /// (2,000: twice the minute's average rate).
    pub spike_permille: u64,
    /// Priority PayGo's price, in thousandths of the standard price (1,800: +80%).
    pub priority_price_permille: u64,
}

impl Default for PaygoRules {
    fn default() -> Self {
        PaygoRules {
            tier: 1,
            system_rpm: 30_000,
            spike_permille: 2_000,
            priority_price_permille: 1_800,
        }
    }
}

impl PaygoRules {
    /// What one second may hold of a per-minute `limit` (at least 1).
    pub fn per_second(&self, limit: u64) -> u64 {
        ((limit as u128 * self.spike_permille as u128) / 60_000).clamp(1, u64::MAX as u128) as u64
    }

    /// A price of `standard` picodollars as Priority PayGo charges it.
    pub fn priority_cost(&self, standard: u128) -> u128 {
        standard * self.priority_price_permille as u128 / 1_000
    }
}

/// A model on PayGo (`[models.<name>.paygo]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaygoModel {
    /// Its column of the tier table.
    pub family: Family,
    /// Its prioritized throughput instead of the table's (a custom tier).
    pub tpm: Option<u64>,
    /// Tokens per minute Priority PayGo serves it at most (`None`: no limit of its own;
    /// Google publishes none). A priority request beyond it is served as a standard one.
    pub priority_tpm: Option<u64>,
}

impl PaygoModel {
    /// Its prioritized throughput in `tier`.
    pub fn tier_tpm(&self, tier: u8) -> u64 {
        self.tpm.unwrap_or_else(|| self.family.tier_tpm(tier))
    }
}

/// Amounts in a sliding minute and a sliding second, `(t − 60 s, t]` and `(t − 1 s, t]`.
#[derive(Debug, Clone, Default)]
struct Rolling {
    minute: VecDeque<(Nanos, u64)>,
    minute_sum: u64,
    second: VecDeque<(Nanos, u64)>,
    second_sum: u64,
}

impl Rolling {
    fn expire(&mut self, now: Nanos) {
        while let Some(&(t, a)) = self.minute.front() {
            if t + MINUTE > now {
                break;
            }
            self.minute_sum -= a;
            self.minute.pop_front();
        }
        while let Some(&(t, a)) = self.second.front() {
            if t + SECOND > now {
                break;
            }
            self.second_sum -= a;
            self.second.pop_front();
        }
    }

    /// Whether `amount` more at `now` keeps the minute within `per_minute` (if any) and the
    /// second within `per_second`; a request alone in its second is never a spike.
    fn fits(&mut self, now: Nanos, amount: u64, per_minute: Option<u64>, per_second: u64) -> bool {
        self.expire(now);
        per_minute.is_none_or(|l| self.minute_sum.saturating_add(amount) <= l)
            && (self.second.is_empty() || self.second_sum.saturating_add(amount) <= per_second)
    }

    fn add(&mut self, now: Nanos, amount: u64) {
        self.expire(now);
        self.minute.push_back((now, amount));
        self.minute_sum += amount;
        self.second.push_back((now, amount));
        self.second_sum += amount;
    }
}

/// How a PayGo model's request may be served, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Priority PayGo (the request carried the priority header).
    Priority,
    /// Within the organisation's tier: prioritized.
    Tier,
    /// Beyond the tier: best-effort (the model's shared pool decides).
    BestEffort,
    /// Over the system limit: refused, whatever the header.
    Refused,
}

/// One PayGo model as the server runs it.
#[derive(Debug, Clone)]
pub struct Paygo {
    rules: PaygoRules,
    tier_tpm: u64,
    priority_tpm: Option<u64>,
    requests: Rolling,
    tier: Rolling,
    priority: Rolling,
}

impl Paygo {
    /// `model` under `rules`.
    pub fn new(rules: PaygoRules, model: PaygoModel) -> Self {
        Paygo {
            rules,
            tier_tpm: model.tier_tpm(rules.tier),
            priority_tpm: model.priority_tpm,
            requests: Rolling::default(),
            tier: Rolling::default(),
            priority: Rolling::default(),
        }
    }

    /// The lane a request of `tokens` at `now` finds (taking nothing).
    pub fn lane(&mut self, now: Nanos, tokens: u64, priority: bool) -> Lane {
        let rpm = self.rules.system_rpm;
        if !self.requests.fits(now, 1, Some(rpm), self.rules.per_second(rpm)) {
            return Lane::Refused;
        }
        if priority {
            let room = match self.priority_tpm {
                None => true,
                Some(l) => self.priority.fits(now, tokens, Some(l), self.rules.per_second(l)),
            };
            if room {
                return Lane::Priority;
            }
        }
        let tpm = self.tier_tpm;
        if self.tier.fits(now, tokens, Some(tpm), self.rules.per_second(tpm)) {
            Lane::Tier
        } else {
            Lane::BestEffort
        }
    }

    /// Records a request of `tokens` served at `now` in `lane` (after [`Paygo::lane`] said so
    /// at the same `now`; a best-effort one counts only against the system limit).
    pub fn take(&mut self, now: Nanos, tokens: u64, lane: Lane) {
        self.requests.add(now, 1);
        match lane {
            Lane::Priority => self.priority.add(now, tokens),
            Lane::Tier => self.tier.add(now, tokens),
            Lane::BestEffort | Lane::Refused => {}
        }
    }

    /// The prioritized throughput in force (tokens per minute).
    pub fn tier_tpm(&self) -> u64 {
        self.tier_tpm
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::MILLISECOND;

    #[test]
    fn the_tier_follows_the_30_day_spend_and_the_family() {
        assert_eq!(tier_of_spend(0), 1, "below the table's $10: Tier 1");
        assert_eq!(tier_of_spend(24_999), 1);
        assert_eq!(tier_of_spend(25_000), 2, "$250 is Tier 2");
        assert_eq!(tier_of_spend(200_000), 2, "$2,000 is Tier 2");
        assert_eq!(tier_of_spend(200_001), 3, "above $2,000");
        let tpm = |f: Family| [1, 2, 3].map(|t| f.tier_tpm(t));
        assert_eq!(tpm(Family::Pro), [500_000, 1_000_000, 2_000_000]);
        assert_eq!(tpm(Family::Flash), [2_000_000, 4_000_000, 10_000_000]);
    }

    fn flash(rules: PaygoRules) -> Paygo {
        Paygo::new(
            rules,
            PaygoModel {
                family: Family::Flash,
                tpm: Some(60_000),
                priority_tpm: None,
            },
        )
    }

    /// The spike rule: 60,000 TPM and a factor of 2 let a second hold 2,000 tokens, so a burst
    /// of 3,000 tokens in one second is throttled though the minute holds 60,000; spread over
    /// the minute, the same tokens all fit.
    #[test]
    fn a_second_level_spike_is_throttled_though_the_minute_fits() {
        let mut p = flash(PaygoRules::default());
        let mut lanes = Vec::new();
        for i in 0..3 {
            let lane = p.lane(i * 100 * MILLISECOND, 1_000, false);
            p.take(i * 100 * MILLISECOND, 1_000, lane);
            lanes.push(lane);
        }
        assert_eq!(lanes, [Lane::Tier, Lane::Tier, Lane::BestEffort]);
        assert_eq!(p.lane(SECOND, 1_000, false), Lane::Tier, "the next second has room");

        let mut even = flash(PaygoRules::default());
        for i in 0..60 {
            let now = i * SECOND;
            assert_eq!(even.lane(now, 1_000, false), Lane::Tier, "second {i}");
            even.take(now, 1_000, Lane::Tier);
        }
        assert_eq!(
            even.lane(59 * SECOND + 1, 1, false),
            Lane::BestEffort,
            "the minute is full"
        );
        assert_eq!(
            even.lane(60 * SECOND, 1_000, false),
            Lane::Tier,
            "the first left the window"
        );

        // A request alone in its second is no spike, however large.
        let mut big = flash(PaygoRules::default());
        assert_eq!(big.lane(0, 50_000, false), Lane::Tier);
        assert_eq!(big.lane(0, 60_001, false), Lane::BestEffort, "beyond the minute");
    }

    #[test]
    fn the_system_limit_refuses_and_priority_goes_first() {
        let rules = PaygoRules {
            system_rpm: 120,
            ..PaygoRules::default()
        };
        let mut p = flash(rules);
        // 120 RPM × 2 / 60: 4 requests a second.
        for i in 0..4 {
            let lane = p.lane(0, 10, true);
            assert_eq!(lane, Lane::Priority, "request {i}");
            p.take(0, 10, lane);
        }
        assert_eq!(p.lane(0, 10, true), Lane::Refused, "whatever the header");
        assert_eq!(p.lane(SECOND, 10, false), Lane::Tier);
        // Priority traffic takes nothing from the tier.
        assert_eq!(p.tier.minute_sum, 0);
        // A priority lane with a limit of its own falls back to the tier when full.
        let mut q = Paygo::new(
            PaygoRules::default(),
            PaygoModel {
                family: Family::Pro,
                tpm: None,
                priority_tpm: Some(600),
            },
        );
        assert_eq!(q.tier_tpm(), 500_000);
        let lane = q.lane(0, 600, true);
        q.take(0, 600, lane);
        assert_eq!(lane, Lane::Priority);
        assert_eq!(q.lane(2 * SECOND, 1, true), Lane::Tier, "the priority minute is full");
        assert_eq!(rules.priority_cost(1_000), 1_800);
    }
}
