//! Property tests of the quota ledger (every dimension, tokens per day included) against a
//! brute-force reference written here from the definitions (O(n²) over the whole history), of the exactness of retry delays, and of the
//! daily reset at midnight America/Los_Angeles for any start instant.

use chrono::{DateTime, Duration, FixedOffset, NaiveDate, NaiveTime, TimeZone, Timelike};
use chrono_tz::America::Los_Angeles as LA;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use flux_sim::core::ledger::{Admission, BudgetId, Dimension, Dims, Ledger, LedgerConfig, Limits, PoolId, WindowKind};
use flux_sim::core::time::{Calendar, Nanos, MINUTE, SECOND};

const W: u64 = MINUTE;

/// One admission request in a generated sequence.
#[derive(Debug, Clone)]
enum Step {
    /// Move time forward by this many nanoseconds (0: a burst at one instant).
    Advance(u64),
    /// Move to a window edge of an earlier admission: its time + 60 s + delta (−1, 0 or +1 ns).
    Edge(usize, i8),
    /// Move to the last rejection's retry instant + delta (−1, 0 or +1 ns).
    Retry(i8),
}

#[derive(Debug, Clone)]
struct Op {
    step: Step,
    budget: usize,
    tokens: u64,
    hold: u64,
}

#[derive(Debug, Clone)]
struct Hist {
    t: Nanos,
    budget: usize,
    tokens: u64,
    until: Nanos,
    admitted: bool,
}

struct Reference {
    start: DateTime<FixedOffset>,
    limits: Vec<Limits>,
    window: WindowKind,
    count_rejected: bool,
    hist: Vec<Hist>,
}

impl Reference {
    fn abs(&self, t: Nanos) -> DateTime<FixedOffset> {
        self.start + Duration::nanoseconds(t as i64)
    }

    fn minute(&self, t: Nanos) -> i64 {
        let a = self.abs(t);
        (a.timestamp() * 1_000_000_000 + a.timestamp_subsec_nanos() as i64).div_euclid(W as i64)
    }

    fn day(&self, t: Nanos) -> NaiveDate {
        crate::common::pacific_day(self.start, t)
    }

    /// The first instant after `t` of another Pacific date.
    fn next_day(&self, t: Nanos) -> Nanos {
        crate::common::next_pacific_day(self.start, t)
    }

    /// Earliest `t >= now` at which `amount` more fits a per-minute window whose past
    /// admissions are `entries` (time, amount), by the definition of each window kind.
    fn minute_window(&self, now: Nanos, entries: &[(Nanos, u64)], amount: u64, limit: u64) -> Nanos {
        match self.window {
            WindowKind::Sliding => {
                let mut cands: Vec<Nanos> = entries.iter().map(|e| e.0 + W).filter(|&t| t > now).collect();
                cands.push(now);
                cands.sort_unstable();
                *cands
                    .iter()
                    .find(|&&t| {
                        entries
                            .iter()
                            .filter(|e| e.0 + W > t && e.0 <= t)
                            .map(|e| e.1)
                            .sum::<u64>()
                            + amount
                            <= limit
                    })
                    .expect("everything expires")
            }
            WindowKind::Fixed => {
                let m = self.minute(now);
                let held: u64 = entries.iter().filter(|e| self.minute(e.0) == m).map(|e| e.1).sum();
                if held + amount <= limit {
                    now
                } else {
                    let mut t = now + 1;
                    // The next minute boundary: the first instant with another minute number.
                    let step = W
                        - (self.abs(now).timestamp_subsec_nanos() as u64 + self.abs(now).second() as u64 * SECOND) % W;
                    t = t.max(now + step);
                    assert_ne!(self.minute(t), m);
                    assert_eq!(self.minute(t - 1), m);
                    t
                }
            }
            WindowKind::Bucket => {
                // A bucket of capacity L refilled at L per W admits x at t iff for every s,
                // (amount admitted in [s, t]) + x <= L + L (t - s) / W.
                let mut t = now;
                for &(s, _) in entries {
                    let a: u64 = entries.iter().filter(|e| e.0 >= s).map(|e| e.1).sum();
                    let need = (a + amount) as u128 * W as u128;
                    let cap = limit as u128 * W as u128;
                    if need > cap {
                        t = t.max(s + (need - cap).div_ceil(limit as u128) as Nanos);
                    }
                }
                t
            }
        }
    }

    fn earliest(&self, now: Nanos, b: usize, tokens: u64) -> Vec<(Dimension, Nanos)> {
        let l = self.limits[b];
        let mine: Vec<&Hist> = self.hist.iter().filter(|h| h.budget == b).collect();
        let mut out = Vec::new();
        if let Some(lim) = l.rpm {
            let e: Vec<(Nanos, u64)> = mine
                .iter()
                .filter(|h| h.admitted || self.count_rejected)
                .map(|h| (h.t, 1))
                .collect();
            out.push((Dimension::Rpm, self.minute_window(now, &e, 1, lim)));
        }
        if let Some(lim) = l.tpm {
            let e: Vec<(Nanos, u64)> = mine.iter().filter(|h| h.admitted).map(|h| (h.t, h.tokens)).collect();
            out.push((Dimension::Tpm, self.minute_window(now, &e, tokens, lim)));
        }
        if let Some(lim) = l.rpd {
            let today = self.day(now);
            let used = mine.iter().filter(|h| h.admitted && self.day(h.t) == today).count() as u64;
            out.push((Dimension::Rpd, if used < lim { now } else { self.next_day(now) }));
        }
        if let Some(lim) = l.tpd {
            let today = self.day(now);
            let used: u64 = mine
                .iter()
                .filter(|h| h.admitted && self.day(h.t) == today)
                .map(|h| h.tokens)
                .sum();
            out.push((
                Dimension::Tpd,
                if used + tokens <= lim { now } else { self.next_day(now) },
            ));
        }
        if let Some(lim) = l.concurrent {
            let mut cands: Vec<Nanos> = mine
                .iter()
                .filter(|h| h.admitted && h.until > now)
                .map(|h| h.until)
                .collect();
            cands.push(now);
            cands.sort_unstable();
            let t = *cands
                .iter()
                .find(|&&t| (mine.iter().filter(|h| h.admitted && h.until > t).count() as u64) < lim)
                .expect("every slot ends");
            out.push((Dimension::Concurrency, t));
        }
        out
    }

    fn decide(&mut self, now: Nanos, b: usize, tokens: u64, until: Nanos) -> Admission {
        let l = self.limits[b];
        let mut impossible = Dims::EMPTY;
        for d in Dimension::ALL {
            if l.get(d) == Some(0) {
                impossible.insert(d);
            }
        }
        if l.tpm.is_some_and(|t| tokens > t) {
            impossible.insert(Dimension::Tpm);
        }
        if l.tpd.is_some_and(|t| tokens > t) {
            impossible.insert(Dimension::Tpd);
        }
        if !impossible.is_empty() {
            return Admission::Unservable { violated: impossible };
        }
        let e = self.earliest(now, b, tokens);
        let violated: Dims = e.iter().filter(|(_, t)| *t > now).map(|(d, _)| *d).collect();
        if violated.is_empty() {
            self.hist.push(Hist {
                t: now,
                budget: b,
                tokens,
                until,
                admitted: true,
            });
            return Admission::Admitted;
        }
        if self.count_rejected {
            self.hist.push(Hist {
                t: now,
                budget: b,
                tokens,
                until: now,
                admitted: false,
            });
        }
        let retry_at = self.earliest(now, b, tokens).iter().map(|(_, t)| *t).max().unwrap();
        Admission::Rejected { violated, retry_at }
    }
}

fn limit(max: u64) -> impl Strategy<Value = Option<u64>> {
    prop_oneof![1 => Just(None), 1 => Just(Some(0)), 6 => (1..=max).prop_map(Some)]
}

fn limits() -> impl Strategy<Value = Limits> {
    (limit(6), limit(300), limit(8), limit(900), limit(3)).prop_map(|(rpm, tpm, rpd, tpd, concurrent)| Limits {
        rpm,
        tpm,
        rpd,
        tpd,
        concurrent,
    })
}

fn window() -> impl Strategy<Value = WindowKind> {
    prop_oneof![
        Just(WindowKind::Sliding),
        Just(WindowKind::Fixed),
        Just(WindowKind::Bucket)
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => Just(Step::Advance(0)),
        4 => (1u64..20 * SECOND).prop_map(Step::Advance),
        1 => (1u64..3 * 3600 * SECOND).prop_map(Step::Advance),
        3 => (0usize..64, -1i8..=1).prop_map(|(i, d)| Step::Edge(i, d)),
        3 => (-1i8..=1).prop_map(Step::Retry),
    ]
}

fn ops() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(
        (step(), 0usize..2, 0u64..=320, 1u64..90 * SECOND).prop_map(|(step, budget, tokens, hold)| Op {
            step,
            budget,
            tokens,
            hold,
        }),
        1..60,
    )
}

/// A start instant: any date and UTC offset, often near a DST change or a midnight.
fn start() -> impl Strategy<Value = DateTime<FixedOffset>> {
    let date = prop_oneof![
        (2024i32..=2026, 1u32..=12, 1u32..=28).prop_map(|(y, m, d)| NaiveDate::from_ymd_opt(y, m, d).unwrap()),
        (prop_oneof![
            Just((3u32, 9u32)),
            Just((11, 2)),
            Just((3, 10)),
            Just((11, 3)),
            Just((3, 8)),
            Just((11, 1))
        ])
        .prop_map(|(m, d)| NaiveDate::from_ymd_opt(2025, m, d).unwrap()),
    ];
    (date, 0u32..86_400, 0u32..1_000_000_000, -48i32..=56).prop_map(|(d, secs, nanos, quarter_hours)| {
        let off = FixedOffset::east_opt(quarter_hours * 900).unwrap();
        let t = d.and_time(NaiveTime::from_num_seconds_from_midnight_opt(secs, nanos).unwrap());
        off.from_local_datetime(&t).unwrap()
    })
}

fn setup(
    start: DateTime<FixedOffset>,
    window: WindowKind,
    count_rejected: bool,
    lims: &[Limits],
) -> (Ledger, Vec<(BudgetId, Option<PoolId>)>) {
    let mut l = Ledger::new(Calendar::new(start, LA), LedgerConfig { window, count_rejected });
    let ids = lims
        .iter()
        .map(|x| {
            let b = l.add_budget(*x, 0);
            (b, x.concurrent.map(|c| l.add_pool(c)))
        })
        .collect();
    (l, ids)
}

proptest! {
    #![proptest_config(Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/ledger_properties.txt"))),
        ..Config::default()
    })]

    /// Ledger = reference: decisions, violated dimensions and retry instants agree, for random
    /// limits, window kinds and admission sequences with bursts and exact window edges.
    #[test]
    fn ledger_equals_brute_force_reference(
        start in start(),
        window in window(),
        count_rejected in any::<bool>(),
        lims in prop::collection::vec(limits(), 2),
        ops in ops(),
    ) {
        let (mut ledger, ids) = setup(start, window, count_rejected, &lims);
        let mut reference = Reference { start, limits: lims.clone(), window, count_rejected, hist: Vec::new() };
        let mut now = 0u64;
        let mut last_retry = None;
        for op in &ops {
            let target = match op.step {
                Step::Advance(d) => now + d,
                Step::Edge(i, d) => reference.hist.get(i % reference.hist.len().max(1)).map_or(now, |h| (h.t + W).saturating_add_signed(d as i64)),
                Step::Retry(d) => last_retry.map_or(now, |t: Nanos| t.saturating_add_signed(d as i64)),
            };
            now = now.max(target);
            let (b, pool) = ids[op.budget];
            let until = now + op.hold;
            let got = ledger.admit(now, b, pool, op.tokens, until);
            let want = reference.decide(now, op.budget, op.tokens, until);
            prop_assert_eq!(got, want, "at {} ns, budget {}, {} tokens", now, op.budget, op.tokens);
            if let Admission::Rejected { retry_at, .. } = got {
                last_retry = Some(retry_at);
            }
        }
        // No window ever held more than its limit (peaks are taken right after each admission).
        for (i, (b, pool)) in ids.iter().enumerate() {
            let p = ledger.peak(*b);
            let l = lims[i];
            if !count_rejected {
                prop_assert!(l.rpm.is_none_or(|x| p.rpm <= x));
            }
            prop_assert!(l.tpm.is_none_or(|x| p.tpm <= x));
            prop_assert!(l.rpd.is_none_or(|x| p.rpd <= x));
            if let Some(pool) = pool {
                prop_assert!(ledger.pool_peak(*pool) <= l.concurrent.unwrap());
            }
        }
    }

    /// Retry delays are exact and tight: alone at `retry_at` the request is admitted; 1 ns
    /// earlier it is still rejected.
    #[test]
    fn retry_delay_is_exact_and_tight(
        start in start(),
        window in window(),
        count_rejected in any::<bool>(),
        lims in prop::collection::vec(limits(), 2),
        ops in ops(),
    ) {
        let (mut ledger, ids) = setup(start, window, count_rejected, &lims);
        let mut now = 0u64;
        let mut checked = 0;
        for op in &ops {
            if let Step::Advance(d) = op.step {
                now += d;
            }
            let (b, pool) = ids[op.budget];
            if let Admission::Rejected { retry_at, violated } = ledger.admit(now, b, pool, op.tokens, now + op.hold) {
                prop_assert!(retry_at > now && !violated.is_empty());
                let mut at = ledger.clone();
                prop_assert_eq!(at.check(retry_at, b, pool, op.tokens), Admission::Admitted);
                let mut before = ledger.clone();
                let early = before.check(retry_at - 1, b, pool, op.tokens);
                prop_assert!(matches!(early, Admission::Rejected { retry_at: r, .. } if r == retry_at), "{:?}", early);
                checked += 1;
            }
        }
        let _ = checked;
    }

    /// RPD resets exactly at 00:00 America/Los_Angeles, ordinary days and both DST days, from
    /// any start instant at any UTC offset.
    #[test]
    fn rpd_resets_at_pacific_midnight(start in start(), days in 1usize..4) {
        let lims = [Limits { rpd: Some(1), ..Limits::default() }];
        let (mut ledger, ids) = setup(start, WindowKind::Sliding, false, &lims);
        let (b, _) = ids[0];
        let mut now = 0;
        for _ in 0..days {
            prop_assert_eq!(ledger.admit(now, b, None, 1, now), Admission::Admitted);
            let Admission::Rejected { retry_at: reset, violated } = ledger.admit(now, b, None, 1, now) else {
                return Err(TestCaseError::fail("second request of the day admitted"));
            };
            prop_assert_eq!(violated.names(), vec!["rpd"]);
            // The reset is a Pacific midnight, the first after `now`.
            let local = (start + Duration::nanoseconds(reset as i64)).with_timezone(&LA);
            prop_assert_eq!((local.hour(), local.minute(), local.second(), local.nanosecond()), (0, 0, 0, 0));
            let before = (start + Duration::nanoseconds(reset as i64 - 1)).with_timezone(&LA);
            prop_assert_eq!(before.date_naive(), (start + Duration::nanoseconds(now as i64)).with_timezone(&LA).date_naive());
            let early = ledger.check(reset - 1, b, None, 1);
            prop_assert!(matches!(early, Admission::Rejected { .. }), "{:?}", early);
            now = reset;
        }
    }
}
