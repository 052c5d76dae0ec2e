//! The quota ledger: per-(project, model) budgets of requests per minute, input tokens per
//! minute, requests per day and concurrent requests, with exact admission decisions and
//! retry delays. Pure: every call takes `now`; calls must come in non-decreasing time.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::core::cache::{prefetch, prefetch_next};
use crate::core::time::{Calendar, Nanos, MINUTE};

/// How a per-minute quota window is measured (Google does not document it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WindowKind {
    /// Any 60 s interval `(t − 60 s, t]` holds at most the limit.
    #[default]
    Sliding,
    /// Each calendar minute (UTC-aligned) holds at most the limit.
    Fixed,
    /// A token bucket of capacity = limit, refilled continuously at limit per 60 s.
    Bucket,
}

/// One quota dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    /// Requests per minute.
    Rpm,
    /// Tokens per minute.
    Tpm,
    /// Requests per day.
    Rpd,
    /// Input tokens per day.
    Tpd,
    /// Requests in flight at once.
    Concurrency,
}

impl Dimension {
    /// Every dimension, in reporting order.
    pub const ALL: [Dimension; 5] = [
        Dimension::Rpm,
        Dimension::Tpm,
        Dimension::Rpd,
        Dimension::Tpd,
        Dimension::Concurrency,
    ];

    /// The dimensions counted over a window or a day (all but concurrency).
    pub const COUNTED: [Dimension; 4] = [Dimension::Rpm, Dimension::Tpm, Dimension::Rpd, Dimension::Tpd];

    /// The short lowercase name used in JSON and traces.
    pub fn name(self) -> &'static str {
        match self {
            Dimension::Rpm => "rpm",
            Dimension::Tpm => "tpm",
            Dimension::Rpd => "rpd",
            Dimension::Tpd => "tpd",
            Dimension::Concurrency => "concurrency",
        }
    }

    fn bit(self) -> u8 {
        1 << (self as u8)
    }
}

impl fmt::Display for Dimension {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A set of dimensions (the violated ones of a rejection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Dims(u8);

impl Dims {
    /// The empty set.
    pub const EMPTY: Dims = Dims(0);

    /// The set as a byte (a dimension a bit), for a record that packs it.
    pub fn bits(self) -> u8 {
        self.0
    }

    /// The set [`Dims::bits`] gave.
    pub fn from_bits(bits: u8) -> Dims {
        Dims(bits)
    }

    /// Adds a dimension.
    pub fn insert(&mut self, d: Dimension) {
        self.0 |= d.bit();
    }

    /// Takes a dimension out.
    pub fn remove(&mut self, d: Dimension) {
        self.0 &= !d.bit();
    }

    /// Whether the set holds `d`.
    pub fn contains(self, d: Dimension) -> bool {
        self.0 & d.bit() != 0
    }

    /// Whether the set is empty.
    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The dimensions in reporting order.
    pub fn iter(self) -> impl Iterator<Item = Dimension> {
        Dimension::ALL.into_iter().filter(move |d| self.contains(*d))
    }

    /// The dimensions in both sets.
    pub fn and(self, other: Dims) -> Dims {
        Dims(self.0 & other.0)
    }

    /// The dimensions in either set.
    pub fn or(self, other: Dims) -> Dims {
        Dims(self.0 | other.0)
    }

    /// Whether every dimension of this set is in `other`.
    pub fn within(self, other: Dims) -> bool {
        self.0 & !other.0 == 0
    }

    /// Whether a per-day dimension (requests or tokens per day) is in the set.
    pub fn per_day(self) -> bool {
        self.contains(Dimension::Rpd) || self.contains(Dimension::Tpd)
    }

    /// Whether a per-minute dimension (requests or tokens per minute) is in the set.
    pub fn per_minute(self) -> bool {
        self.contains(Dimension::Rpm) || self.contains(Dimension::Tpm)
    }

    /// The names, in reporting order.
    pub fn names(self) -> Vec<&'static str> {
        self.iter().map(Dimension::name).collect()
    }
}

impl FromIterator<Dimension> for Dims {
    fn from_iter<I: IntoIterator<Item = Dimension>>(iter: I) -> Self {
        let mut d = Dims::EMPTY;
        for x in iter {
            d.insert(x);
        }
        d
    }
}

/// The limits of one budget; `None` is unlimited, `Some(0)` means not available at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Requests per minute.
    pub rpm: Option<u64>,
    /// Tokens per minute (input tokens, or input + output when the server counts totals).
    pub tpm: Option<u64>,
    /// Requests per day (reset at midnight in the calendar's zone).
    pub rpd: Option<u64>,
    /// Tokens per day (what TPM counts, reset with requests per day).
    #[serde(default)]
    pub tpd: Option<u64>,
    /// Requests in flight at once.
    pub concurrent: Option<u64>,
}

impl Limits {
    /// No limit on any dimension (`Limits::default()` in const contexts).
    pub const UNLIMITED: Limits = Limits {
        rpm: None,
        tpm: None,
        rpd: None,
        tpd: None,
        concurrent: None,
    };

    /// The limit of one dimension.
    pub fn get(&self, d: Dimension) -> Option<u64> {
        match d {
            Dimension::Rpm => self.rpm,
            Dimension::Tpm => self.tpm,
            Dimension::Rpd => self.rpd,
            Dimension::Tpd => self.tpd,
            Dimension::Concurrency => self.concurrent,
        }
    }

    /// These limits on the dimensions in `dims` only (the others unlimited).
    pub fn only(&self, dims: Dims) -> Limits {
        let keep = |d: Dimension, v: Option<u64>| if dims.contains(d) { v } else { None };
        Limits {
            rpm: keep(Dimension::Rpm, self.rpm),
            tpm: keep(Dimension::Tpm, self.tpm),
            rpd: keep(Dimension::Rpd, self.rpd),
            tpd: keep(Dimension::Tpd, self.tpd),
            concurrent: keep(Dimension::Concurrency, self.concurrent),
        }
    }

    /// Every limit scaled by `n / d` (rounded down), as a strategy told limits that far off
    /// believes them: a limit of 0 stays 0 (not available is not a number to get wrong),
    /// others stay at least 1.
    pub fn scaled(&self, n: u64, d: u64) -> Limits {
        let s = |v: Option<u64>| v.map(|v| (v.saturating_mul(n) / d.max(1)).max(v.min(1)));
        Limits {
            rpm: s(self.rpm),
            tpm: s(self.tpm),
            rpd: s(self.rpd),
            tpd: s(self.tpd),
            concurrent: s(self.concurrent),
        }
    }

    /// Sets the limit of one dimension.
    pub fn set(&mut self, d: Dimension, v: Option<u64>) {
        match d {
            Dimension::Rpm => self.rpm = v,
            Dimension::Tpm => self.tpm = v,
            Dimension::Rpd => self.rpd = v,
            Dimension::Tpd => self.tpd = v,
            Dimension::Concurrency => self.concurrent = v,
        }
    }

    /// Whether [`Limits::unservable`] is empty for a request of `tokens`, without building the
    /// set (on every check's path).
    pub fn servable(&self, tokens: u64) -> bool {
        let at_least = |l: Option<u64>, x: u64| l.is_none_or(|l| l >= x);
        let one_and_tokens = tokens.max(1);
        at_least(self.rpm, 1)
            && at_least(self.tpm, one_and_tokens)
            && at_least(self.rpd, 1)
            && at_least(self.tpd, one_and_tokens)
            && at_least(self.concurrent, 1)
    }

    /// The dimensions that can never admit a request costing `tokens`: a limit of 0, or more
    /// tokens than the TPM or TPD limit.
    pub fn unservable(&self, tokens: u64) -> Dims {
        let mut d = Dims::EMPTY;
        for dim in Dimension::ALL {
            if self.get(dim) == Some(0) {
                d.insert(dim);
            }
        }
        if matches!(self.tpm, Some(t) if tokens > t) {
            d.insert(Dimension::Tpm);
        }
        if matches!(self.tpd, Some(t) if tokens > t) {
            d.insert(Dimension::Tpd);
        }
        d
    }
}

/// Usage of each dimension at some instant (or its peak).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct Usage {
    /// Requests in the minute window.
    pub rpm: u64,
    /// Tokens in the minute window.
    pub tpm: u64,
    /// Requests today.
    pub rpd: u64,
    /// Tokens today.
    pub tpd: u64,
    /// Requests in flight.
    pub concurrency: u64,
}

impl Usage {
    /// The usage of one dimension.
    pub fn get(&self, d: Dimension) -> u64 {
        match d {
            Dimension::Rpm => self.rpm,
            Dimension::Tpm => self.tpm,
            Dimension::Rpd => self.rpd,
            Dimension::Tpd => self.tpd,
            Dimension::Concurrency => self.concurrency,
        }
    }

    fn max_with(&mut self, other: Usage) {
        self.rpm = self.rpm.max(other.rpm);
        self.tpm = self.tpm.max(other.tpm);
        self.rpd = self.rpd.max(other.rpd);
        self.tpd = self.tpd.max(other.tpd);
        self.concurrency = self.concurrency.max(other.concurrency);
    }
}

/// The ledger's answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Admitted and recorded.
    Admitted,
    /// Rejected: every violated dimension, and the earliest instant at which this request
    /// alone (nothing else admitted meanwhile) would be admitted.
    Rejected {
        /// The dimensions over their limit.
        violated: Dims,
        /// Earliest admission time (absolute virtual time).
        retry_at: Nanos,
    },
    /// Can never be admitted (a limit of 0, or more tokens than the TPM limit).
    Unservable {
        /// The dimensions that make it impossible.
        violated: Dims,
    },
}

/// A budget's per-minute windows, requests and tokens side by side (`[RPM, TPM]`: 1 per
/// request, and tokens). One entry holds both, so an admission reads one place in memory;
/// a dimension without a limit counts 0.
#[derive(Debug, Clone)]
enum Window {
    /// Sliding, with entries of 16 bytes (the low 32 bits of each cumulative amount) while
    /// it holds less than 2^32 of each amount: what every quota a scenario can state needs.
    Sliding(Slide<u32>),
    /// Sliding, with full-width entries, once it came to hold 2^32 or more of an amount.
    Wide(Slide<u64>),
    /// The current calendar minute's start and what it holds; a client replica's also every
    /// minute's tally (`Minutes`), read by [`Ledger::fits_through`] alone.
    Fixed {
        minute: i128,
        used: [u64; 2],
        minutes: Option<Box<Minutes>>,
    },
    /// Token buckets as scaled debt: `debt` is (capacity − level) × 60 s, in amount·ns, at `at`.
    Bucket { debt: [u128; 2], at: [Nanos; 2] },
    /// Token buckets kept as the sends they took, for a client's replica (`Kept`).
    Kept(Box<Kept>),
}

/// What a client replica's calendar-minute window recorded in each minute, from `lost` on
/// (the current one only is what its checks read: a replica checks ahead, where plans never go
/// back in time; this tells what a send put back in an earlier minute meets). Minutes in time
/// order, one entry each.
#[derive(Debug, Clone, Default)]
struct Minutes {
    tally: VecDeque<(i128, [u64; 2])>,
    lost: i128,
}

impl Minutes {
    /// What minute `m` holds; `None` if it may be forgotten.
    fn get(&self, m: i128) -> Option<[u64; 2]> {
        if m < self.lost {
            return None;
        }
        let k = self.tally.partition_point(|e| e.0 < m);
        Some(self.tally.get(k).filter(|e| e.0 == m).map_or([0; 2], |e| e.1))
    }

    /// Adds `amounts` to minute `m` (`less`: takes them back, as far as it holds them).
    fn count(&mut self, m: i128, amounts: [u64; 2], less: bool) {
        if m < self.lost {
            return;
        }
        let k = self.tally.partition_point(|e| e.0 < m);
        if self.tally.get(k).is_none_or(|e| e.0 != m) {
            if less {
                return;
            }
            self.tally.insert(k, (m, [0; 2]));
        }
        let a = &mut self.tally[k].1;
        if less {
            *a = [a[0] - amounts[0].min(a[0]), a[1] - amounts[1].min(a[1])];
        } else {
            add(a, amounts);
        }
    }

    /// Forgets the minutes before `m`.
    fn forget(&mut self, m: i128) {
        while self.tally.front().is_some_and(|e| e.0 < m) {
            self.tally.pop_front();
        }
        self.lost = self.lost.max(m);
    }
}

/// A token bucket per dimension (`[RPM, TPM]`, capacity the limit, refilled at the limit per
/// 60 s) kept as the sends it took, so that a client's replica can plan sends ahead and take
/// back any it withdraws, or that the server refused, exactly ([`Ledger::exact_buckets`]).
/// A bucket kept as its debt alone cannot: once it drained, what a send added is no longer
/// in it, and taking it back anyway leaves the bucket fuller than the server's (the property
/// tests met a TPM 429 after a 503 that way, issue 26).
///
/// Debt is `Window::Bucket`'s, `(capacity − level) × 60 s` in amount·ns, refilled at `rate`
/// (the limit) per ns. The sends no more than the span and `KEEP_LATE` before the owner's
/// clock ([`Ledger::set_clock`]), and those planned after it, are `entries`; those before were
/// folded into `anchor_debt`, the debt right after the send at `anchor`. The debt at any `t` after
/// the newest entry is `max(0, top − rate × t)`, where `top` is the largest of
/// `anchor_debt + rate × anchor + 60 s × (all entries)` and, for each entry `k`,
/// `rate × t_k + 60 s × (entries from k on)`: one number per dimension, which a send at or
/// after the newest updates in O(1) (`top = 60 s × amount + max(top, rate × t)`), and anything
/// else recomputes from `anchor` (a withdrawal, a refund, a send recorded late). Before the
/// newest entry the same expression is an upper bound: safe to plan by.
#[derive(Debug, Clone)]
struct Kept {
    /// `(time, amounts)` in time order, each after `anchor`; sends at one instant are merged.
    entries: VecDeque<(Nanos, [u64; 2])>,
    anchor: Nanos,
    /// Whether any send was folded into the anchor yet (before, a send at `anchor` is kept).
    folded: bool,
    anchor_debt: [u128; 2],
    /// Refill per ns: the limit (0 where there is none, and nothing is counted).
    rate: [u64; 2],
    top: [u128; 2],
}

/// An amount as bucket debt: what it takes of the capacity, times 60 s.
fn scaled(amount: u64) -> u128 {
    u128::from(amount) * MINUTE as u128
}

impl Kept {
    fn new(limits: [Option<u64>; 2]) -> Self {
        Kept {
            entries: VecDeque::new(),
            anchor: 0,
            folded: false,
            anchor_debt: [0; 2],
            rate: limits.map(|l| l.unwrap_or(0)),
            top: [0; 2],
        }
    }

    /// A bucket that took `sends` (in time order; those at or before `anchor` left out) after
    /// `anchor`, where it held nothing (`drained` false) or was drained, owing its whole
    /// capacity (`drained` true): the least and the most any bucket could owe then, whatever
    /// was sent before. Its debt from then on is a lower or an upper bound of the true one.
    /// Without an anchor it took every send of `sends` from empty: exact.
    fn since(limits: [Option<u64>; 2], anchor: Option<Nanos>, drained: bool, sends: &[(Nanos, [u64; 2])]) -> Self {
        let mut k = Kept::new(limits);
        if let Some(anchor) = anchor {
            k.anchor = anchor;
            k.folded = true;
            if drained {
                k.anchor_debt = limits.map(|l| scaled(l.unwrap_or(0)));
            }
            k.refold();
        }
        for &(t, a) in sends.iter().filter(|e| anchor.is_none_or(|x| e.0 > x)) {
            k.add(t, a);
        }
        k
    }

    /// The server said a send of `amounts` fits at `retry_at`, not at `now`, by the dimensions
    /// `dims` (whose limits are the rates): each of those owes at `now` what makes its wait
    /// `(debt + need − capacity) / rate`, rounded up, `retry_at − now` (at most: a little more
    /// than the server's, the rounding aside), the others what this bucket counted. What was
    /// sent up to `now` is folded into that debt (no longer taken back); later sends stay.
    fn calibrate(&mut self, now: Nanos, dims: [bool; 2], amounts: [u64; 2], retry_at: Nanos) {
        let counted = self.top_through(now);
        self.forget(now.saturating_add(1));
        for i in 0..2 {
            let r = u128::from(self.rate[i]);
            let owed = counted[i].saturating_sub(r * u128::from(now));
            self.anchor_debt[i] = if dims[i] && r > 0 {
                (u128::from(retry_at.saturating_sub(now)) * r + r * MINUTE as u128).saturating_sub(scaled(amounts[i]))
            } else {
                owed
            };
        }
        self.anchor = now;
        self.folded = true;
        self.refold();
    }

    /// The newest entry's time (`anchor` when there is none).
    fn newest(&self) -> Nanos {
        self.entries.back().map_or(self.anchor, |e| e.0)
    }

    /// Recomputes `top` from `anchor` over every entry.
    fn refold(&mut self) {
        self.top = self.top_through(Nanos::MAX);
    }

    /// The debt of dimension `i` at `t` (exact from the newest entry on, an upper bound before).
    fn debt(&self, t: Nanos, i: usize) -> u128 {
        self.top[i].saturating_sub(u128::from(self.rate[i]) * u128::from(t))
    }

    /// `top` over the sends at or before `t` alone (the debt from them is exact at `t`, the
    /// sends planned after `t` left out).
    fn top_through(&self, t: Nanos) -> [u128; 2] {
        [0, 1].map(|i| {
            let r = u128::from(self.rate[i]);
            let mut m = self.anchor_debt[i] + r * u128::from(self.anchor);
            for &(e, a) in self.entries.iter().take_while(|e| e.0 <= t) {
                m = scaled(a[i]) + m.max(r * u128::from(e));
            }
            m
        })
    }

    /// The used capacity at `t`, rounded up (see [`Kept::debt`]).
    fn held(&self, t: Nanos) -> [u64; 2] {
        [0, 1].map(|i| self.debt(t, i).div_ceil(MINUTE as u128) as u64)
    }

    /// New limits: the refill rate changes for what is still kept.
    fn set_rate(&mut self, limits: [Option<u64>; 2]) {
        let rate = limits.map(|l| l.unwrap_or(0));
        if rate != self.rate {
            self.rate = rate;
            self.refold();
        }
    }

    /// Folds the sends before `before` into the anchor: no longer taken back exactly.
    fn forget(&mut self, before: Nanos) {
        while let Some(&(t, a)) = self.entries.front() {
            if t >= before {
                break;
            }
            let since = u128::from(t - self.anchor);
            for ((debt, r), x) in self.anchor_debt.iter_mut().zip(self.rate).zip(a) {
                *debt = debt.saturating_sub(u128::from(r) * since) + scaled(x);
            }
            self.anchor = t;
            self.folded = true;
            self.entries.pop_front();
        }
    }

    /// Counts `amounts` sent at `at`.
    fn add(&mut self, at: Nanos, amounts: [u64; 2]) {
        let kept = at > self.anchor || !self.folded;
        if kept && at >= self.newest() {
            for ((top, r), x) in self.top.iter_mut().zip(self.rate).zip(amounts) {
                *top = scaled(x) + (*top).max(u128::from(r) * u128::from(at));
            }
            match self.entries.back_mut() {
                Some((t, a)) if *t == at => add(a, amounts),
                _ => self.entries.push_back((at, amounts)),
            }
            return;
        }
        if !kept {
            // Before what is kept: as debt at the anchor, no less than it would be.
            for (debt, x) in self.anchor_debt.iter_mut().zip(amounts) {
                *debt += scaled(x);
            }
        } else {
            let k = self.entries.partition_point(|&(t, _)| t < at);
            match self.entries.get_mut(k) {
                Some((t, a)) if *t == at => add(a, amounts),
                _ => self.entries.insert(k, (at, amounts)),
            }
        }
        self.refold();
    }

    /// Takes back `amounts` sent at `at`, as far as the entry at `at` still holds them.
    fn take(&mut self, at: Nanos, amounts: [u64; 2]) {
        let k = self.entries.partition_point(|&(t, _)| t < at);
        if let Some((t, a)) = self.entries.get_mut(k) {
            if *t == at {
                *a = [a[0] - amounts[0].min(a[0]), a[1] - amounts[1].min(a[1])];
                if *a == [0; 2] {
                    // Nothing sent then: later plans may go before that instant again.
                    self.entries.remove(k);
                }
                self.refold();
            }
        }
    }

    /// See [`Window::earliest_fit`]: never before the newest entry (a send before planned
    /// ones would take room they were planned with), and `span − 60 s` later than the bucket
    /// alone says (sends recorded up to that much before they reach the server).
    fn earliest_fit(&self, now: Nanos, i: usize, amount: u64, limit: u64, span: Nanos) -> Nanos {
        let (t0, margin) = (now.max(self.newest()), span.saturating_sub(MINUTE));
        let (need, cap) = (scaled(amount), scaled(limit));
        // The debt `margin` earlier (the sends before may reach the server that late), plus it.
        if self.debt(t0.saturating_sub(margin), i) + need <= cap {
            return t0;
        }
        let fit = (self.top[i] + need - cap).div_ceil(u128::from(self.rate[i]).max(1));
        t0.max(Nanos::try_from(fit).unwrap_or(Nanos::MAX).saturating_add(margin))
    }

    /// What it keeps as `(instant, amounts)`: the anchor's debt (rounded up) at the anchor,
    /// then each send.
    fn contents(&self) -> Vec<(Nanos, [u64; 2])> {
        let anchor = [0, 1].map(|i| self.anchor_debt[i].div_ceil(MINUTE as u128) as u64);
        std::iter::once((self.anchor, anchor))
            .filter(|&(_, a)| a != [0; 2])
            .chain(self.entries.iter().copied())
            .collect()
    }
}

/// A cumulative amount as a sliding window's entry keeps it: read back relative to the
/// window's `base` (the cumulative amount of what has expired), exactly while the window holds
/// less than [`Cum::ROOM`] of it.
trait Cum: Copy + fmt::Debug {
    /// The most a window with these entries may hold, plus one.
    const ROOM: u64;
    /// The entry's form of the cumulative amount `v`.
    fn of(v: u64) -> Self;
    /// The cumulative amount this is, minus `base` (which it is at least, and less than
    /// `ROOM` above).
    fn above(self, base: u64) -> u64;
    /// `self + a`, as the entry's form of the sum.
    fn plus(self, a: u64) -> Self;
    /// `self − a`, as the entry's form of the difference.
    fn less(self, a: u64) -> Self;
}

/// The low 32 bits, compared modulo 2^32.
impl Cum for u32 {
    const ROOM: u64 = 1 << 32;
    fn of(v: u64) -> Self {
        v as u32
    }
    fn above(self, base: u64) -> u64 {
        u64::from(self.wrapping_sub(base as u32))
    }
    fn plus(self, a: u64) -> Self {
        self.wrapping_add(a as u32)
    }
    fn less(self, a: u64) -> Self {
        self.wrapping_sub(a as u32)
    }
}

/// The amount itself.
impl Cum for u64 {
    const ROOM: u64 = u64::MAX;
    fn of(v: u64) -> Self {
        v
    }
    fn above(self, base: u64) -> u64 {
        self - base
    }
    fn plus(self, a: u64) -> Self {
        self + a
    }
    fn less(self, a: u64) -> Self {
        self - a
    }
}

/// A sliding window: entries `(time, cumulative amounts including this entry)` in time order
/// in one ring per budget; `base` is the cumulative amounts of the entries already expired,
/// `last` those of the newest entry (`base` when there is none), `newest` its time
/// (meaningless when there is none). Entries at one instant are merged.
///
/// `last` and `newest` repeat the newest entry so that recording reads nothing from the
/// entries: with many budgets, a budget's newest entry has left the cache by the time the
/// budget is next used, and the read of its time was the dearest instruction of a run
/// (`perf annotate`, issue 34); a write alone does not wait for memory. Entries are 16 bytes
/// (`C = u32`) rather than 24, so a budget's ring spans a third fewer cache lines: each
/// admission reads the oldest entry and writes the newest, both usually cold.
///
/// Forgetting may be owed (a lazy [`Ledger`]'s): the entries before `owed` no longer count
/// (they would have been forgotten) but are still held, and `base` leaves them out. Every
/// answer that depends on them forgets them first ([`Slide::settle`]) or reads past them, so
/// that owing changes no answer; `last − base` then counts at least what the window holds.
/// Only entries that a reading forgot are owed: one recorded or inserted before `owed`
/// settles the debt first.
#[derive(Debug, Clone)]
struct Slide<C> {
    entries: VecDeque<(Nanos, [C; 2])>,
    base: [u64; 2],
    last: [u64; 2],
    newest: Nanos,
    /// The entries before this instant are forgotten in effect (0: nothing owed).
    owed: Nanos,
    /// `owed` when it was last paid (a lazy ledger pays every [`LAG`] of it).
    paid: Nanos,
    /// A client replica's (`Nanos::MAX` elsewhere, keeping nothing): the entries forgotten
    /// from this instant on still count at its clock, and are kept aside in `history`.
    keep: Nanos,
    /// What the window forgot that still counts at the replica's clock (its checks run ahead
    /// of it, planning sends): read by [`Ledger::fits_through`] alone.
    history: Option<Box<History>>,
}

/// The entries a replica's sliding window forgot, checking ahead, that still count at its
/// clock: `(time, amounts)` in time order, one per instant, and the instant before which an
/// entry may be gone from both the window and this.
#[derive(Debug, Clone, Default)]
struct History {
    entries: VecDeque<(Nanos, [u64; 2])>,
    lost: Nanos,
}

impl History {
    /// Keeps `amounts` forgotten at `t` (in time order: a send put back behind later plans is
    /// forgotten after them).
    fn add(&mut self, t: Nanos, amounts: [u64; 2]) {
        if amounts == [0; 2] {
            return;
        }
        match self.entries.back_mut() {
            Some((last, a)) if *last == t => add(a, amounts),
            Some(&mut (last, _)) if last > t => {
                let k = self.entries.partition_point(|&(e, _)| e < t);
                match self.entries.get_mut(k) {
                    Some((e, a)) if *e == t => add(a, amounts),
                    _ => self.entries.insert(k, (t, amounts)),
                }
            }
            _ => self.entries.push_back((t, amounts)),
        }
    }
}

/// How much forgetting a lazy [`Ledger`]'s window may owe before a record pays it: the
/// entries of a second are read together, a few lines in a row, rather than one cold line
/// at each admission (issue 34).
const LAG: Nanos = crate::core::time::SECOND;

impl<C: Cum> Slide<C> {
    fn new() -> Self {
        Slide {
            entries: VecDeque::new(),
            base: [0; 2],
            last: [0; 2],
            newest: 0,
            owed: 0,
            paid: 0,
            keep: Nanos::MAX,
            history: None,
        }
    }

    /// How many of the oldest entries are owed (see [`Slide`]).
    fn owed_entries(&self) -> usize {
        if self.owed == 0 {
            0
        } else {
            self.entries.partition_point(|&(t, _)| t < self.owed)
        }
    }

    fn of(v: [u64; 2]) -> [C; 2] {
        [C::of(v[0]), C::of(v[1])]
    }

    /// The calendar minute of the newest entry and what the window took in it.
    fn to_fixed(&self, cal: &Calendar) -> Window {
        let minute = cal.minute_start(self.newest);
        let k = self.entries.partition_point(|&(t, _)| (t as i128) < minute);
        // A replica's: every minute's tally, from the first one nothing was forgotten of.
        let minutes = (self.keep != Nanos::MAX).then(|| {
            let gone = self.history.as_deref().map_or(self.paid.max(self.owed), |h| h.lost);
            let mut m = Minutes {
                tally: VecDeque::new(),
                lost: if gone == 0 {
                    i128::MIN
                } else {
                    cal.next_minute(gone - 1) as i128
                },
            };
            let kept = self
                .history
                .as_deref()
                .map(|h| h.entries.iter().copied())
                .into_iter()
                .flatten();
            let held = (0..self.entries.len()).map(|k| self.entry(k));
            for (t, a) in kept.chain(held) {
                m.count(cal.minute_start(t), a, false);
            }
            Box::new(m)
        });
        Window::Fixed {
            minute,
            used: minus(self.last, self.cum_through(k)),
            minutes,
        }
    }

    /// Entry `k`'s instant and what it holds.
    fn entry(&self, k: usize) -> (Nanos, [u64; 2]) {
        (self.entries[k].0, minus(self.cum_through(k + 1), self.cum_through(k)))
    }

    /// The cumulative amounts through the first `k` entries (`base` for none).
    fn cum_through(&self, k: usize) -> [u64; 2] {
        match k {
            0 => self.base,
            _ => {
                let c = self.entries[k - 1].1;
                [0, 1].map(|i| self.base[i] + c[i].above(self.base[i]))
            }
        }
    }

    /// What the entries of the span ending at `at` hold (entries already forgotten left out).
    fn held_at(&self, at: Nanos, span: Nanos) -> [u64; 2] {
        // Owed entries are left out, as if forgotten.
        let owed = self.owed_entries();
        let cum = |t: Nanos| self.cum_through(self.entries.partition_point(|&(e, _)| e <= t).max(owed));
        // A span that starts before time 0 holds every entry up to `at`, those at 0 included
        // (`at - span` saturating to 0 left them out).
        let start = at.checked_sub(span).map_or(self.cum_through(owed), cum);
        minus(cum(at), start)
    }

    /// The entries of the span ending at `at`, forgotten ones kept aside too (see
    /// [`Slide::forgot_within`]), as `(time, amounts)` in time order.
    fn through(&self, at: Nanos, span: Nanos) -> Vec<(Nanos, [u64; 2])> {
        let from = (at + 1).saturating_sub(span);
        let first = self.entries.partition_point(|&(e, _)| e < from);
        let mut all: Vec<(Nanos, [u64; 2])> = (first..self.entries.len())
            .take_while(|&k| self.entries[k].0 <= at)
            .map(|k| self.entry(k))
            .collect();
        if let Some(h) = self.history.as_deref() {
            all.extend(h.entries.iter().filter(|e| (from..=at).contains(&e.0)));
            all.sort_by_key(|e| e.0);
        }
        all
    }

    /// The instant after which it knows every send, no earlier than `after` (`None`: since
    /// the start, if it forgot nothing), and those sends (kept aside ones too, planned ones
    /// included), in time order.
    fn sends_after(&self, after: Option<Nanos>) -> (Option<Nanos>, Vec<(Nanos, [u64; 2])>) {
        let gone = self.history.as_deref().map_or(self.owed.max(self.paid), |h| h.lost);
        let from = match (after, gone.checked_sub(1)) {
            (Some(a), Some(g)) => Some(a.max(g)),
            (a, g) => a.or(g),
        };
        let known = |t: Nanos| from.is_none_or(|f| t > f);
        let mut all: Vec<(Nanos, [u64; 2])> = (0..self.entries.len())
            .map(|k| self.entry(k))
            .filter(|e| known(e.0) && e.1 != [0; 2])
            .collect();
        if let Some(h) = self.history.as_deref() {
            all.extend(h.entries.iter().filter(|e| known(e.0)));
            all.sort_by_key(|e| e.0);
        }
        (from, all)
    }

    /// The same window as if it had never been read past `now`: every send it knows of the
    /// span ending at `now` and after (kept aside ones too, planned ones included) held again
    /// as entries, nothing kept aside. `None` where it forgot a send of that span (or they
    /// would not fit entries of this width).
    fn rewound(&self, now: Nanos, span: Nanos) -> Option<Self> {
        let after = now.checked_sub(span);
        let (from, sends) = self.sends_after(after);
        if from != after {
            return None;
        }
        let mut w = Slide::new();
        w.keep = self.keep;
        // What counted no more at `now` is gone (nothing before it may be read).
        w.paid = after.map_or(0, |a| a + 1);
        for (t, a) in sends {
            if !w.fits(a) {
                return None;
            }
            w.record(t, a);
        }
        Some(w)
    }

    /// What the span ending at `at` holds, forgotten entries kept aside too.
    fn held_through(&self, at: Nanos, span: Nanos) -> [u64; 2] {
        self.through(at, span).iter().fold([0; 2], |mut held, e| {
            add(&mut held, e.1);
            held
        })
    }

    /// Whether the span ending at `at` may hold entries the window has forgotten (or owes
    /// forgetting): a replica that checked a send far ahead forgot what counts before it.
    fn forgot_within(&self, at: Nanos, span: Nanos) -> bool {
        let from = (at + 1).saturating_sub(span);
        match self.history.as_deref() {
            // Forgotten entries are kept from `keep` on (see `settle`).
            Some(h) => h.lost > from,
            None => self.owed.max(self.paid) > from,
        }
    }

    /// Can no longer tell what the span of a send before `until` holds (see
    /// [`Slide::forgot_within`]).
    fn lose(&mut self, until: Nanos) {
        if self.keep != Nanos::MAX {
            let h = self.history();
            h.lost = h.lost.max(until);
        }
    }

    /// The history a replica's window keeps what it forgets in (see [`Slide::keep`]), without
    /// what no longer counts at its clock.
    fn history(&mut self) -> &mut History {
        let (keep, paid) = (self.keep, self.paid);
        let h = self.history.get_or_insert_with(|| {
            // What was forgotten before is gone.
            Box::new(History {
                entries: VecDeque::new(),
                lost: paid,
            })
        });
        while let Some(&(t, _)) = h.entries.front() {
            if t >= keep {
                break;
            }
            h.lost = h.lost.max(t + 1);
            h.entries.pop_front();
        }
        h
    }

    /// Whether the window can hold `amounts` more in entries of this width.
    fn fits(&self, amounts: [u64; 2]) -> bool {
        (0..2).all(|i| (self.last[i] - self.base[i]).saturating_add(amounts[i]) < C::ROOM)
    }

    /// Forgets the entries that no longer count at `now` and returns what the window holds.
    fn usage(&mut self, now: Nanos, span: Nanos) -> [u64; 2] {
        self.owe(now, span);
        self.settle();
        minus(self.last, self.base)
    }

    /// Owes forgetting the entries that no longer count at `now` (reads no entry), and returns
    /// what the window holds, owed entries included: at least what it holds.
    fn owe(&mut self, now: Nanos, span: Nanos) -> [u64; 2] {
        // The line a record after this writes (the newest entry, or the slot after it): asked
        // for now, so that the write finds it (a write to a cold line holds up later ones).
        if let Some(e) = self.entries.back() {
            prefetch_next(e);
        }
        // An entry no longer counts at `now` when `t + span <= now`.
        self.owed = self.owed.max((now + 1).saturating_sub(span));
        minus(self.last, self.base)
    }

    /// Forgets the owed entries.
    fn settle(&mut self) {
        if self.owed == 0 {
            return;
        }
        // The newest entry's line, where a record after this writes (or the next slot, most
        // often in the same line): fetched while the oldest is read, not after it. Both are
        // usually cold, a thousand budgets later; one miss at a time was a tenth of a run.
        if let Some(e) = self.entries.back() {
            prefetch(e);
        }
        while let Some(&(t, cum)) = self.entries.front() {
            if t >= self.owed {
                break;
            }
            let base = [
                self.base[0] + cum[0].above(self.base[0]),
                self.base[1] + cum[1].above(self.base[1]),
            ];
            if self.keep != Nanos::MAX {
                let amounts = minus(base, self.base);
                let keep = self.keep;
                let h = self.history();
                if t >= keep {
                    h.add(t, amounts);
                } else {
                    h.lost = h.lost.max(t + 1);
                }
            }
            self.base = base;
            self.entries.pop_front();
        }
        self.paid = self.paid.max(self.owed);
        self.owed = 0;
    }

    /// A lazy ledger's settling before a record: when a second of forgetting is owed, or the
    /// ring is full (so that it grows only when what counts fills it, as it would settled).
    fn settle_lazily(&mut self) {
        if self.owed >= self.paid + LAG || self.entries.len() == self.entries.capacity() {
            self.settle();
        }
    }

    /// See [`Window::earliest_fit`].
    fn earliest_fit(&self, now: Nanos, i: usize, amount: u64, limit: u64, span: Nanos) -> Nanos {
        let (base, last) = (self.base[i], self.last[i]);
        if last - base + amount <= limit {
            return now;
        }
        // Drop the oldest entries until what is left plus `amount` fits.
        let target = last - (limit - amount) - base;
        let k = self.entries.partition_point(|&(_, cum)| cum[i].above(base) < target);
        self.entries[k].0 + span
    }

    /// See [`Window::insert`].
    fn insert(&mut self, at: Nanos, amounts: [u64; 2]) {
        self.settle();
        let k = self.entries.partition_point(|&(t, _)| t < at);
        let before = if k == 0 {
            Self::of(self.base)
        } else {
            self.entries[k - 1].1
        };
        if self.entries.get(k).is_none_or(|&(t, _)| t != at) {
            self.entries.insert(k, (at, before));
        }
        for e in self.entries.iter_mut().skip(k) {
            e.1 = [e.1[0].plus(amounts[0]), e.1[1].plus(amounts[1])];
        }
        add(&mut self.last, amounts);
        self.newest = self.entries.back().expect("an entry at `at`").0;
    }

    /// See [`Window::take`].
    fn take(&mut self, at: Nanos, amounts: [u64; 2]) {
        self.settle();
        let k = self.entries.partition_point(|&(t, _)| t < at);
        let mut rest = amounts;
        if self.entries.get(k).is_some_and(|&(t, _)| t == at) {
            // No more than the entry at `at` holds: a client replica may take back a send
            // whose own entry its window already forgot (read ahead of it), where another
            // send's stands at the same instant (a budget merged into it since).
            let held = minus(self.cum_through(k + 1), self.cum_through(k));
            let amounts = [amounts[0].min(held[0]), amounts[1].min(held[1])];
            for e in self.entries.iter_mut().skip(k) {
                e.1 = [e.1[0].less(amounts[0]), e.1[1].less(amounts[1])];
            }
            self.last = minus(self.last, amounts);
            rest = minus(rest, amounts);
        }
        if let Some(h) = self.history.as_deref_mut().filter(|_| rest != [0; 2]) {
            // Forgotten, but kept aside (a replica withdrawing a send it planned far behind).
            let k = h.entries.partition_point(|&(t, _)| t < at);
            if let Some((t, a)) = h.entries.get_mut(k) {
                if *t == at {
                    *a = [a[0] - rest[0].min(a[0]), a[1] - rest[1].min(a[1])];
                    if *a == [0; 2] {
                        h.entries.remove(k);
                    }
                }
            }
        }
    }

    /// See [`Window::record`].
    fn record(&mut self, now: Nanos, amounts: [u64; 2]) -> [u64; 2] {
        if now < self.owed {
            // An entry before what is owed would be forgotten with it.
            self.settle();
        }
        add(&mut self.last, amounts);
        let last = Self::of(self.last);
        match self.entries.back_mut() {
            Some((_, cum)) if self.newest == now => *cum = last,
            _ => {
                self.entries.push_back((now, last));
                self.newest = now;
            }
        }
        minus(self.last, self.base)
    }
}

impl Slide<u32> {
    /// The same window with full-width entries.
    fn widen(&self) -> Slide<u64> {
        let base = self.base;
        Slide {
            entries: self
                .entries
                .iter()
                .map(|&(t, c)| (t, [base[0] + c[0].above(base[0]), base[1] + c[1].above(base[1])]))
                .collect(),
            base,
            last: self.last,
            newest: self.newest,
            owed: self.owed,
            paid: self.paid,
            keep: self.keep,
            history: self.history.clone(),
        }
    }
}

/// A per-minute limit `l` of dimension `i` as a cap binds it: below the limit, but never
/// below the request's `amount` itself.
fn capped(cap: [Option<u64>; 2], i: usize, l: u64, amount: u64) -> u64 {
    cap[i].map_or(l, |c| l.min(c.max(amount)))
}

/// Whether `weight` copies of a request of `tokens` fit a minute window holding `held`
/// (requests, tokens) under `per_minute` and `cap`.
fn fits_held(per_minute: [Option<u64>; 2], cap: [Option<u64>; 2], held: [u64; 2], weight: u64, tokens: u64) -> bool {
    let fits = |i: usize, amount: u64| {
        per_minute[i].is_none_or(|l| held[i].saturating_add(amount) <= capped(cap, i, l, amount))
    };
    fits(0, weight) && fits(1, weight * tokens)
}

/// The per-minute limits of a budget, in a [`Window`]'s order.
fn minute_limits(l: &Limits) -> [Option<u64>; 2] {
    [l.rpm, l.tpm]
}

/// What one request costing `tokens` adds to a [`Window`] under `limits` (0 where unlimited).
fn minute_amounts(limits: [Option<u64>; 2], tokens: u64) -> [u64; 2] {
    limited(limits, [1, tokens])
}

/// `amounts` where `limits` has a limit, 0 elsewhere.
fn limited(limits: [Option<u64>; 2], amounts: [u64; 2]) -> [u64; 2] {
    [limits[0].map_or(0, |_| amounts[0]), limits[1].map_or(0, |_| amounts[1])]
}

/// Whether `held` and `extra` together stay within `limits`.
fn fits_under(held: [u64; 2], extra: [u64; 2], limits: [Option<u64>; 2]) -> bool {
    (0..2).all(|i| limits[i].is_none_or(|l| held[i] + extra[i] <= l))
}

/// The earliest instant at or after `at` at which the span ending then holds room for
/// `amounts` under `limits`, by the entries up to `at` (see [`Slide::drained_by`]).
fn drained<C: Cum>(w: &Slide<C>, at: Nanos, amounts: [u64; 2], limits: [Option<u64>; 2], span: Nanos) -> Nanos {
    let entries = w.through(at, span);
    let held = entries.iter().fold([0; 2], |mut held, e| {
        add(&mut held, e.1);
        held
    });
    let mut next = at;
    for i in 0..2 {
        let Some(l) = limits[i] else { continue };
        if held[i] + amounts[i] <= l {
            continue;
        }
        // The oldest entries leave until what is left and `amounts` fit.
        let mut left = held[i] + amounts[i] - l;
        for &(t, a) in &entries {
            if a[i] >= left {
                next = next.max(t + span);
                break;
            }
            left -= a[i];
        }
    }
    next
}

/// `a += b`, per dimension.
fn add(a: &mut [u64; 2], b: [u64; 2]) {
    a[0] += b[0];
    a[1] += b[1];
}

/// `a − b`, per dimension.
fn minus(a: [u64; 2], b: [u64; 2]) -> [u64; 2] {
    [a[0] - b[0], a[1] - b[1]]
}

impl Window {
    fn new(kind: WindowKind) -> Self {
        match kind {
            WindowKind::Sliding => Window::Sliding(Slide::new()),
            WindowKind::Fixed => Window::Fixed {
                minute: i128::MIN,
                used: [0; 2],
                minutes: None,
            },
            WindowKind::Bucket => Window::Bucket {
                debt: [0; 2],
                at: [0; 2],
            },
        }
    }

    /// This window measured by calendar minute: a sliding one keeps the entries of its newest
    /// entry's minute (later sends never go back in time, so that minute is the one that still
    /// counts); a bucket starts afresh.
    fn to_fixed(&self, cal: &Calendar) -> Window {
        match self {
            Window::Sliding(s) if !s.entries.is_empty() => s.to_fixed(cal),
            Window::Wide(s) if !s.entries.is_empty() => s.to_fixed(cal),
            Window::Fixed { .. } => self.clone(),
            _ => Window::new(WindowKind::Fixed),
        }
    }

    /// A sliding window about to take `amounts` more than its entries can hold gets
    /// full-width ones.
    fn make_room(&mut self, amounts: [u64; 2]) {
        if let Window::Sliding(s) = self {
            if !s.fits(amounts) {
                s.settle();
            }
            if !s.fits(amounts) {
                *self = Window::Wide(s.widen());
            }
        }
    }

    /// A sliding window: owes forgetting what no longer counts at `now` (see [`Slide`]) and
    /// returns what it holds, owed entries included (at least what counts; 0 counted where
    /// there is no limit). Other windows: `None`.
    fn owe(&mut self, now: Nanos, span: Nanos) -> Option<[u64; 2]> {
        match self {
            Window::Sliding(s) => Some(s.owe(now, span)),
            Window::Wide(s) => Some(s.owe(now, span)),
            _ => None,
        }
    }

    /// A replica's window keeps what counts at its clock `clock` and after, aside: a sliding
    /// one its entries from `keep` on (see [`Slide::keep`]), a calendar one its minutes from
    /// the clock's on.
    fn keep_from(&mut self, keep: Nanos, clock: Nanos, cal: &Calendar) {
        match self {
            Window::Sliding(s) => s.keep = keep,
            Window::Wide(s) => s.keep = keep,
            Window::Fixed { minutes: Some(t), .. } => t.forget(cal.minute_start(clock)),
            _ => {}
        }
    }

    /// Until when what a replica's window kept aside reaches (see [`Ledger::fits_through`]):
    /// nothing before it is in [`Window::contents`]; 0 for none.
    fn kept_aside(&self) -> Nanos {
        let slide = |forgot: Nanos, h: Option<&History>| {
            h.map_or(forgot, |h| h.entries.back().map_or(h.lost, |e| e.0 + 1).max(h.lost))
        };
        match self {
            Window::Sliding(s) => slide(s.owed.max(s.paid), s.history.as_deref()),
            Window::Wide(s) => slide(s.owed.max(s.paid), s.history.as_deref()),
            // Its contents are its current minute: every one before.
            Window::Fixed { minute, .. } => Nanos::try_from(*minute).unwrap_or(0),
            _ => 0,
        }
    }

    /// A replica's window can no longer tell what a send before `until` meets.
    fn lose(&mut self, until: Nanos, cal: &Calendar) {
        match self {
            Window::Sliding(s) => s.lose(until),
            Window::Wide(s) => s.lose(until),
            Window::Fixed { minutes: Some(t), .. } => t.forget(if until == 0 {
                i128::MIN
            } else {
                i128::from(cal.next_minute(until - 1) as i64)
            }),
            _ => {}
        }
    }

    /// Forgets what a sliding window owes.
    fn settle(&mut self) {
        match self {
            Window::Sliding(s) => s.settle(),
            Window::Wide(s) => s.settle(),
            _ => {}
        }
    }

    /// A lazy ledger's settling before a record (see [`Slide::settle_lazily`]).
    fn settle_lazily(&mut self) {
        match self {
            Window::Sliding(s) => s.settle_lazily(),
            Window::Wide(s) => s.settle_lazily(),
            _ => {}
        }
    }

    /// Forgets what no longer counts at `now`, and returns the amounts that do (for a bucket
    /// of capacity `limits[i]`: its used capacity, rounded up; 0 where there is no limit).
    fn usage(&mut self, now: Nanos, limits: [Option<u64>; 2], cal: &Calendar, span: Nanos) -> [u64; 2] {
        let held = match self {
            Window::Sliding(s) => s.usage(now, span),
            Window::Wide(s) => s.usage(now, span),
            Window::Fixed { minute, used, .. } => {
                let m = cal.minute_start(now);
                if m != *minute {
                    *minute = m;
                    *used = [0; 2];
                }
                *used
            }
            Window::Kept(k) => k.held(now),
            Window::Bucket { debt, at } => {
                let mut held = [0; 2];
                for i in 0..2 {
                    if let Some(limit) = limits[i] {
                        debt[i] = debt[i].saturating_sub(limit as u128 * (now - at[i]) as u128);
                        at[i] = now;
                        held[i] = debt[i].div_ceil(MINUTE as u128) as u64;
                    }
                }
                held
            }
        };
        limited(limits, held)
    }

    /// Earliest instant `>= now` at which `amount` more of dimension `i` fits under `limit`
    /// (`amount <= limit`); the window is settled at `now`.
    #[inline]
    fn earliest_fit(&self, now: Nanos, i: usize, amount: u64, limit: u64, cal: &Calendar, span: Nanos) -> Nanos {
        match self {
            Window::Sliding(s) => s.earliest_fit(now, i, amount, limit, span),
            Window::Wide(s) => s.earliest_fit(now, i, amount, limit, span),
            Window::Fixed { used, .. } => {
                if used[i] + amount <= limit {
                    now
                } else {
                    cal.next_minute(now)
                }
            }
            Window::Kept(k) => k.earliest_fit(now, i, amount, limit, span),
            Window::Bucket { debt, .. } => {
                let need = debt[i] + amount as u128 * MINUTE as u128;
                let cap = limit as u128 * MINUTE as u128;
                if need <= cap {
                    now
                } else {
                    now + (need - cap).div_ceil(limit as u128) as Nanos
                }
            }
        }
    }

    /// What the window holds, as `(instant, amounts)` in time order (a fixed window: its
    /// minute's start and what it took; a bucket's debt has no instants: nothing).
    fn contents(&self) -> Vec<(Nanos, [u64; 2])> {
        fn of<C: Cum>(s: &Slide<C>) -> Vec<(Nanos, [u64; 2])> {
            (0..s.entries.len()).map(|k| s.entry(k)).collect()
        }
        match self {
            Window::Sliding(s) => of(s),
            Window::Wide(s) => of(s),
            Window::Fixed { minute, used, .. } if *minute != i128::MIN && *used != [0; 2] => {
                vec![((*minute).max(0) as Nanos, *used)]
            }
            Window::Kept(k) => k.contents(),
            _ => Vec::new(),
        }
    }

    /// Counts `amounts` from `at`, which may lie before entries already held (entries stay in
    /// time order; a bucket takes it as debt now; a fixed window counts it only in its minute).
    fn insert(&mut self, at: Nanos, amounts: [u64; 2], cal: &Calendar) {
        self.make_room(amounts);
        match self {
            Window::Sliding(s) => s.insert(at, amounts),
            Window::Wide(s) => s.insert(at, amounts),
            Window::Fixed { minute, used, minutes } => {
                let m = cal.minute_start(at);
                if let Some(t) = minutes {
                    t.count(m, amounts, false);
                }
                if m > *minute {
                    *minute = m;
                    *used = [0; 2];
                }
                if m == *minute {
                    add(used, amounts);
                }
            }
            Window::Bucket { debt, .. } => {
                for i in 0..2 {
                    debt[i] += amounts[i] as u128 * MINUTE as u128;
                }
            }
            Window::Kept(k) => k.add(at, amounts),
        }
    }

    /// Takes back `amounts` counted at `at`, as far as the window still holds them.
    fn take(&mut self, at: Nanos, amounts: [u64; 2], cal: &Calendar) {
        match self {
            Window::Sliding(s) => s.take(at, amounts),
            Window::Wide(s) => s.take(at, amounts),
            Window::Fixed { minute, used, minutes } => {
                let m = cal.minute_start(at);
                if let Some(t) = minutes {
                    t.count(m, amounts, true);
                }
                if *minute == m {
                    used[0] = used[0].saturating_sub(amounts[0]);
                    used[1] = used[1].saturating_sub(amounts[1]);
                }
            }
            Window::Bucket { debt, .. } => {
                for i in 0..2 {
                    debt[i] = debt[i].saturating_sub(amounts[i] as u128 * MINUTE as u128);
                }
            }
            Window::Kept(k) => k.take(at, amounts),
        }
    }

    /// Records `amounts` at `now` (the window settled at `now`) and returns what it holds then.
    fn record(&mut self, now: Nanos, amounts: [u64; 2]) -> [u64; 2] {
        self.make_room(amounts);
        match self {
            Window::Sliding(s) => s.record(now, amounts),
            Window::Wide(s) => s.record(now, amounts),
            Window::Fixed { minute, used, minutes } => {
                // Settled at `now`: `minute` is its minute.
                if let Some(t) = minutes {
                    t.count(*minute, amounts, false);
                }
                add(used, amounts);
                *used
            }
            Window::Bucket { debt, .. } => {
                let mut held = [0; 2];
                for i in 0..2 {
                    debt[i] += amounts[i] as u128 * MINUTE as u128;
                    held[i] = debt[i].div_ceil(MINUTE as u128) as u64;
                }
                held
            }
            Window::Kept(k) => {
                k.add(now, amounts);
                k.held(now)
            }
        }
    }
}

/// Requests and tokens per day, reset at midnight in the calendar's zone.
#[derive(Debug, Clone)]
struct Daily {
    day_end: Nanos,
    used: u64,
    tokens: u64,
}

impl Daily {
    /// Requests and tokens counted for the day containing `now`, and when that day ends,
    /// without forgetting the current day's counts.
    fn view(&self, now: Nanos, cal: &Calendar) -> (u64, u64, Nanos) {
        if now >= self.day_end {
            (0, 0, cal.next_day_start(now))
        } else {
            (self.used, self.tokens, self.day_end)
        }
    }

    fn settle(&mut self, now: Nanos, cal: &Calendar) -> u64 {
        if now >= self.day_end {
            self.used = 0;
            self.tokens = 0;
            self.day_end = cal.next_day_start(now);
        }
        self.used
    }
}

/// A pool of concurrency slots, each held until a known end time (released lazily).
#[derive(Debug, Clone)]
struct Slots {
    limit: u64,
    ends: BinaryHeap<Reverse<Nanos>>,
}

impl Slots {
    fn settle(&mut self, now: Nanos) -> u64 {
        while let Some(&Reverse(end)) = self.ends.peek() {
            if end <= now {
                self.ends.pop();
            } else {
                break;
            }
        }
        self.ends.len() as u64
    }
}

/// Identifies a budget inside a [`Ledger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BudgetId(pub u32);

/// Identifies a pool of concurrency slots inside a [`Ledger`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PoolId(pub u32);

#[derive(Debug, Clone)]
struct Budget {
    limits: Limits,
    /// Its per-minute windows slide whatever the ledger measures (a reservation: the server
    /// keeps provisioned throughput in sliding windows, see [`Ledger::add_sliding_budget`]).
    sliding: bool,
    /// A client replica's own ceilings on its per-minute windows, `[RPM, TPM]`, below the
    /// limits (see [`Ledger::set_cap`]); `None` on a server's budgets.
    cap: [Option<u64>; 2],
    minute: Window,
    daily: Daily,
    peak: Usage,
}

/// Server-side settings of the ledger.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LedgerConfig {
    /// How per-minute windows are measured.
    pub window: WindowKind,
    /// Whether a rejected request still counts against RPM (Gemini: not known; default no).
    pub count_rejected: bool,
}

/// All budgets of a server: admits or rejects requests exactly.
#[derive(Debug, Clone)]
pub struct Ledger {
    calendar: Calendar,
    config: LedgerConfig,
    /// How long a sliding window holds an entry: 60 s, plus a client replica's margin.
    span: Nanos,
    budgets: Vec<Budget>,
    pools: Vec<Slots>,
    pool_peaks: Vec<u64>,
    /// Whether sliding windows may owe forgetting (see [`Ledger::lazy`]).
    lazy: bool,
    /// Whether bucket windows keep their sends (see [`Ledger::exact_buckets`]).
    kept: bool,
    /// The latest instant its owner said it is (see [`Ledger::set_clock`]).
    clock: Nanos,
}

/// How long after its send's window a kept bucket's send may still be taken back: a refusal
/// or an error answers within a response time, and `flux` refunds the refusals of the last
/// two minutes once it learns the server does not count them.
const KEEP_LATE: Nanos = 5 * MINUTE;

impl Ledger {
    /// A client replica that withdrew the sends it planned ahead on budget `b` reads its
    /// sliding windows from `now` again: they forgot, checking those plans, what the span
    /// ending at `now` held, and take it back from what they kept aside. Whether they could
    /// (a calendar minute or a bucket is left as it is, and so is a window that lost a send
    /// of that span): then the latest instant they hold a send at (`now` if none is later),
    /// and later plans may go from there, on what they hold.
    pub fn rewind(&mut self, b: BudgetId, now: Nanos) -> Option<Nanos> {
        let span = self.span;
        let minute = &mut self.budgets[b.0 as usize].minute;
        let (rewound, newest) = match minute {
            Window::Sliding(s) => {
                let w = s.rewound(now, span)?;
                let newest = w.entries.back().map(|e| e.0);
                (Window::Sliding(w), newest)
            }
            Window::Wide(s) => {
                let w = s.rewound(now, span)?;
                let newest = w.entries.back().map(|e| e.0);
                (Window::Wide(w), newest)
            }
            _ => return None,
        };
        *minute = rewound;
        Some(newest.map_or(now, |t| t.max(now)))
    }

    /// Measures per-minute windows by calendar minute from now on (a client's replica that
    /// learned the server does): each budget keeps what the current minute holds, but those
    /// added by [`Ledger::add_sliding_budget`], which keep sliding.
    pub fn measure_fixed(&mut self) {
        self.config.window = WindowKind::Fixed;
        for b in self.budgets.iter_mut().filter(|b| !b.sliding) {
            b.minute.settle();
            b.minute = b.minute.to_fixed(&self.calendar);
        }
    }

    /// Measures per-minute windows as token buckets from `now` on (a client's replica, kept
    /// exactly ([`Ledger::exact_buckets`]), that learned the server's are): each sliding window
    /// becomes a bucket that was drained a span before `now` (what was sent before that can
    /// owe no more) and took every send since, planned ones included. At `now` it owes what
    /// the sliding window held, so nothing planned by it is overfilled; its room then grows
    /// as the bucket refills. Those added by [`Ledger::add_sliding_budget`] keep sliding;
    /// calendar minutes stay as they are.
    pub fn measure_buckets(&mut self, now: Nanos) {
        self.config.window = WindowKind::Bucket;
        let after = now.checked_sub(self.span);
        for b in self.budgets.iter_mut().filter(|b| !b.sliding) {
            let (anchor, sends) = match &b.minute {
                Window::Sliding(s) => s.sends_after(after),
                Window::Wide(s) => s.sends_after(after),
                _ => continue,
            };
            b.minute = Window::Kept(Box::new(Kept::since(minute_limits(&b.limits), anchor, true, &sends)));
        }
    }

    /// When a send costing `tokens` at `at` would fit budget `b`'s per-minute `dims` were they
    /// token buckets (capacity the limit, refilled at the limit per 60 s) that took the sends
    /// the sliding window recorded up to `at`: `(least, most)` over what the span before may
    /// have left in them (nothing, or their whole capacity owed), the least also without the
    /// requests `less` (`(instant, requests, tokens)`: sends the server may not have counted
    /// before the refused one). `None` where the window is not a sliding one, or may have
    /// forgotten sends of that span. A client that planned sliding windows reads a 429's retry
    /// instant against it: a bucket server names an instant between the two.
    pub fn bucket_retry(
        &self,
        at: Nanos,
        b: BudgetId,
        tokens: u64,
        dims: Dims,
        less: &[(Nanos, u64, u64)],
    ) -> Option<(Nanos, Nanos)> {
        let budget = &self.budgets[b.0 as usize];
        let limits = minute_limits(&budget.limits);
        let amounts = minute_amounts(limits, tokens);
        let sends = match &budget.minute {
            Window::Sliding(w) if !w.forgot_within(at, self.span) => w.through(at, self.span),
            Window::Wide(w) if !w.forgot_within(at, self.span) => w.through(at, self.span),
            _ => return None,
        };
        let mut fewer = sends.clone();
        for &(t, requests, tokens) in less {
            if let Some(e) = fewer.iter_mut().find(|e| e.0 == t) {
                let a = limited(limits, [requests, tokens]);
                e.1 = [e.1[0].saturating_sub(a[0]), e.1[1].saturating_sub(a[1])];
            }
        }
        // Before the first span nothing was sent: the buckets were full.
        let anchor = at.checked_sub(self.span);
        let fit = |drained: bool| {
            let sends = if drained { &sends } else { &fewer };
            let k = Kept::since(limits, anchor, drained, sends);
            [(0, Dimension::Rpm), (1, Dimension::Tpm)]
                .into_iter()
                .filter(|&(_, d)| dims.contains(d))
                .filter_map(|(i, _)| limits[i].map(|l| k.earliest_fit(at, i, amounts[i], l, MINUTE)))
                .max()
                .unwrap_or(at)
        };
        Some((fit(false), fit(true)))
    }

    /// A 429 said a send costing `tokens` at `now` fits budget `b`'s per-minute `dims` at
    /// `retry_at`: a replica's bucket ([`Ledger::exact_buckets`]) then owes what the server's
    /// does (see `Kept::calibrate`), where it counted less (sends it cannot see) or more
    /// (sends the server did not charge, whose answers are still to come). Other windows are
    /// left as they are.
    pub fn calibrate_bucket(&mut self, now: Nanos, b: BudgetId, tokens: u64, dims: Dims, retry_at: Nanos) {
        let budget = &mut self.budgets[b.0 as usize];
        let limits = minute_limits(&budget.limits);
        let amounts = minute_amounts(limits, tokens);
        if let Window::Kept(k) = &mut budget.minute {
            k.calibrate(
                now,
                [dims.contains(Dimension::Rpm), dims.contains(Dimension::Tpm)],
                amounts,
                retry_at,
            );
        }
    }

    /// An empty ledger.
    pub fn new(calendar: Calendar, config: LedgerConfig) -> Self {
        Ledger {
            calendar,
            config,
            span: MINUTE,
            budgets: Vec::new(),
            pools: Vec::new(),
            pool_peaks: Vec::new(),
            lazy: false,
            kept: false,
            clock: 0,
        }
    }

    /// A ledger whose sliding windows forget expired entries late, up to a second of them at
    /// a time, and keep no peaks (a client's replica, whose peaks nobody reads): a check that
    /// fits counting the entries still held reads none of them, and a record writes the newest
    /// without reading the oldest. With many budgets both are cold by the time a budget comes
    /// up again; reading the oldest was a third of a `flux` decision at 16,384 keys (issue 34).
    /// Every answer is the same as a settled ledger's.
    pub fn lazy(mut self) -> Self {
        self.lazy = true;
        self
    }

    /// A ledger whose bucket windows keep the sends they took (`Kept`), for a client's
    /// replica that plans sends ahead and takes back those withdrawn or refused: it stays
    /// exact where a bucket kept as its level alone would come out fuller than the server's.
    /// A margin ([`Ledger::with_margin`]) plans each send that much later than the bucket
    /// alone would. The server's own buckets need not: it records in time order and takes
    /// nothing back.
    pub fn exact_buckets(mut self) -> Self {
        self.kept = true;
        self
    }

    /// The owner's time is `now` (never earlier than before): a kept bucket forgets, one by
    /// one, the sends made more than its span and `KEEP_LATE` before it, which nothing will
    /// take back any more. Checks and records give later instants (a replica plans ahead), so
    /// they cannot tell it; without this a kept bucket keeps every send.
    pub fn set_clock(&mut self, now: Nanos) {
        self.clock = self.clock.max(now);
    }

    /// A client-side replica's ledger: sliding windows hold each entry `margin` longer than
    /// 60 s, so that a client whose sends reach the server up to `margin` later than planned
    /// (network delay and its jitter, timer lateness) still never overfills the server's
    /// windows. Fixed windows ignore it; buckets kept exact plan by it too.
    pub fn with_margin(mut self, margin: Nanos) -> Self {
        self.span = MINUTE + margin;
        self
    }

    /// The margin sliding windows hold entries beyond 60 s.
    pub fn margin(&self) -> Nanos {
        self.span - MINUTE
    }

    /// Widens (or narrows) the margin from now on; entries already forgotten stay forgotten.
    pub fn set_margin(&mut self, margin: Nanos) {
        // What is owed was reckoned with the old margin.
        for b in &mut self.budgets {
            b.minute.settle();
        }
        self.span = MINUTE + margin;
    }

    /// The calendar the ledger resets by.
    pub fn calendar(&self) -> &Calendar {
        &self.calendar
    }

    /// Adds a budget whose day starts with `rpd_used` requests already spent.
    pub fn add_budget(&mut self, limits: Limits, rpd_used: u64) -> BudgetId {
        self.push_budget(limits, rpd_used, false)
    }

    /// [`Ledger::add_budget`] whose per-minute windows slide whatever this ledger measures,
    /// now or after [`Ledger::measure_fixed`]: a client's replica of a reservation, which the
    /// server keeps in sliding windows under every `server.window`.
    pub fn add_sliding_budget(&mut self, limits: Limits) -> BudgetId {
        self.push_budget(limits, 0, true)
    }

    fn push_budget(&mut self, limits: Limits, rpd_used: u64, sliding: bool) -> BudgetId {
        let id = BudgetId(self.budgets.len() as u32);
        let kind = if sliding {
            WindowKind::Sliding
        } else {
            self.config.window
        };
        self.budgets.push(Budget {
            limits,
            sliding,
            cap: [None; 2],
            minute: match kind {
                WindowKind::Bucket if self.kept => Window::Kept(Box::new(Kept::new(minute_limits(&limits)))),
                WindowKind::Fixed if self.kept => Window::Fixed {
                    minute: i128::MIN,
                    used: [0; 2],
                    minutes: Some(Box::new(Minutes {
                        tally: VecDeque::new(),
                        lost: i128::MIN,
                    })),
                },
                _ => Window::new(kind),
            },
            daily: Daily {
                day_end: self.calendar.next_day_start(0),
                used: rpd_used,
                tokens: 0,
            },
            peak: Usage {
                rpd: rpd_used,
                ..Usage::default()
            },
        });
        id
    }

    /// Adds a pool of `limit` concurrency slots.
    pub fn add_pool(&mut self, limit: u64) -> PoolId {
        let id = PoolId(self.pools.len() as u32);
        self.pools.push(Slots {
            limit,
            ends: BinaryHeap::new(),
        });
        self.pool_peaks.push(0);
        id
    }

    /// How this ledger measures per-minute windows (those of [`Ledger::add_sliding_budget`]
    /// aside).
    pub fn window(&self) -> WindowKind {
        self.config.window
    }

    /// The limits of a budget.
    pub fn limits(&self, b: BudgetId) -> Limits {
        self.budgets[b.0 as usize].limits
    }

    /// Changes the limits of budget `b` (a client replica that learned better ones). What the
    /// windows hold stays; a dimension that was unlimited has recorded nothing.
    pub fn set_limits(&mut self, b: BudgetId, limits: Limits) {
        let budget = &mut self.budgets[b.0 as usize];
        budget.limits = limits;
        if let Window::Kept(k) = &mut budget.minute {
            k.set_rate(minute_limits(&limits));
        }
    }

    /// Caps budget `b`'s per-minute windows, `[RPM, TPM]`, below its limits (a client replica
    /// that learned it has only a share of the budget: others it cannot see use the rest).
    /// A request larger than the cap still fits a window that holds nothing else, so a cap
    /// never makes a request unservable. What the windows count is unchanged.
    pub fn set_cap(&mut self, b: BudgetId, cap: [Option<u64>; 2]) {
        self.budgets[b.0 as usize].cap = cap;
    }

    /// Budget `b`'s caps (see [`Ledger::set_cap`]).
    pub fn cap(&self, b: BudgetId) -> [Option<u64>; 2] {
        self.budgets[b.0 as usize].cap
    }

    /// What budget `b`'s per-minute windows held at `at` (`at` not later than the latest
    /// `now` by more than the window, and not so early that the window has forgotten entries
    /// it held then: those are left out), `[RPM, TPM]`, read only. Sliding windows count the
    /// entries of the span ending at `at`; a fixed window its minute, if `at` is in it; a
    /// bucket its fill now.
    pub fn held_at(&self, at: Nanos, b: BudgetId) -> [u64; 2] {
        let budget = &self.budgets[b.0 as usize];
        let per_minute = minute_limits(&budget.limits);
        let held = match &budget.minute {
            Window::Sliding(w) => w.held_at(at, self.span),
            Window::Wide(w) => w.held_at(at, self.span),
            Window::Fixed { minute, used, .. } => {
                if self.calendar.minute_start(at) == *minute {
                    *used
                } else {
                    [0; 2]
                }
            }
            Window::Bucket { debt, .. } => [0, 1].map(|i| debt[i].div_ceil(MINUTE as u128) as u64),
            Window::Kept(k) => k.held(at),
        };
        limited(per_minute, held)
    }

    /// Whether a send costing `tokens` at `at` fits budget `b`'s per-minute windows by what
    /// was recorded at or before `at` alone: what the server has counted when the send reaches
    /// it, the sends planned after `at` still to come (each is checked when it is due). With
    /// `counted`, the send is among what was recorded (a planned send now due); without, it
    /// would come on top. A calendar minute counts every send in it, later ones too. `None`
    /// where the window cannot tell: a server's (it keeps a calendar minute as the current one
    /// alone, a bucket as its debt alone), or a replica's before what it kept aside.
    pub fn fits_through(&self, at: Nanos, b: BudgetId, tokens: u64, counted: bool) -> Option<bool> {
        let (limits, amounts) = self.through_limits(b, tokens)?;
        let extra = if counted { [0; 2] } else { amounts };
        let margin = self.span - MINUTE;
        match &self.budgets[b.0 as usize].minute {
            Window::Sliding(w) if !w.forgot_within(at, self.span) => {
                Some(fits_under(w.held_through(at, self.span), extra, limits))
            }
            Window::Wide(w) if !w.forgot_within(at, self.span) => {
                Some(fits_under(w.held_through(at, self.span), extra, limits))
            }
            // Every send of a calendar minute counts, whenever in it (later plans too).
            Window::Fixed { minutes: Some(t), .. } => {
                Some(fits_under(t.get(self.calendar.minute_start(at))?, extra, limits))
            }
            Window::Kept(k) => {
                let top = k.top_through(at);
                Some((0..2).all(|i| {
                    limits[i].is_none_or(|l| {
                        let debt = top[i].saturating_sub(u128::from(k.rate[i]) * u128::from(at.saturating_sub(margin)));
                        debt + scaled(extra[i]) <= scaled(l)
                    })
                }))
            }
            _ => None,
        }
    }

    /// The earliest instant at or after `from` at which a send costing `tokens` fits budget
    /// `b`'s per-minute windows by [`Ledger::fits_through`] (what was recorded up to then,
    /// later plans still to come), `None` where the window cannot tell or the send never fits.
    pub fn earliest_fit_through(&self, from: Nanos, b: BudgetId, tokens: u64) -> Option<Nanos> {
        let (limits, amounts) = self.through_limits(b, tokens)?;
        if (0..2).any(|i| limits[i].is_some_and(|l| amounts[i] > l)) {
            return None;
        }
        let margin = self.span - MINUTE;
        let mut t = from;
        loop {
            // The earliest instant what was recorded up to `t` could let it in; what was
            // recorded between `t` and then is read on the next round.
            let mut next = t;
            match &self.budgets[b.0 as usize].minute {
                // The first minute with room for it beside every send counted in it.
                Window::Fixed { minutes: Some(m), .. } => {
                    let minute = self.calendar.minute_start(t);
                    if !fits_under(m.get(minute)?, amounts, limits) {
                        next = self.calendar.next_minute(t);
                    }
                }
                Window::Sliding(w) if !w.forgot_within(from, self.span) => {
                    next = drained(w, t, amounts, limits, self.span)
                }
                Window::Wide(w) if !w.forgot_within(from, self.span) => {
                    next = drained(w, t, amounts, limits, self.span)
                }
                Window::Kept(k) => {
                    let top = k.top_through(t);
                    for i in 0..2 {
                        let Some(l) = limits[i] else { continue };
                        let r = u128::from(k.rate[i]).max(1);
                        let (need, cap) = (scaled(amounts[i]), scaled(l));
                        if top[i].saturating_sub(r * u128::from(t.saturating_sub(margin))) + need > cap {
                            let fit = Nanos::try_from((top[i] + need - cap).div_ceil(r)).unwrap_or(Nanos::MAX);
                            next = next.max(fit.saturating_add(margin));
                        }
                    }
                }
                _ => return None,
            }
            if next == t {
                return Some(t);
            }
            t = next;
        }
    }

    /// Budget `b`'s per-minute limits as a send costing `tokens` is held to (its caps too),
    /// and what the send adds; `None` without per-minute limits.
    fn through_limits(&self, b: BudgetId, tokens: u64) -> Option<([Option<u64>; 2], [u64; 2])> {
        let budget = &self.budgets[b.0 as usize];
        let per_minute = minute_limits(&budget.limits);
        if per_minute == [None; 2] {
            return None;
        }
        let amounts = minute_amounts(per_minute, tokens);
        let limits = [0, 1].map(|i| per_minute[i].map(|l| budget.cap[i].map_or(l, |c| l.min(c.max(amounts[i])))));
        Some((limits, amounts))
    }

    /// What budgets `b` and `other` would hold together at `at` (their sends up to `at` in one
    /// window with `b`'s limits), `[RPM, TPM]`, where both are buckets kept as their sends: one
    /// bucket that took both's sends drains at one rate, so its fill is not the sum of theirs.
    /// `None` for other windows, whose counts add ([`Ledger::held_at`] of each).
    pub fn held_together_at(&self, at: Nanos, b: BudgetId, other: BudgetId) -> Option<[u64; 2]> {
        let budget = &self.budgets[b.0 as usize];
        let (Window::Kept(x), Window::Kept(y)) = (&budget.minute, &self.budgets[other.0 as usize].minute) else {
            return None;
        };
        let per_minute = minute_limits(&budget.limits);
        let mut sends: Vec<(Nanos, [u64; 2])> = x
            .contents()
            .into_iter()
            .chain(y.contents())
            .filter(|e| e.0 <= at)
            .collect();
        sends.sort_by_key(|e| e.0);
        let mut both = Kept::new(per_minute);
        for (t, a) in sends {
            both.add(t, a);
        }
        Some(limited(per_minute, both.held(at)))
    }

    /// Takes back a request costing `tokens` recorded at `at` against budget `b` (a client
    /// replica withdrawing a planned send), as far as its windows still hold it. Calls stay in
    /// non-decreasing time: `at` may be earlier than later calls' `now`, never later.
    pub fn cancel(&mut self, at: Nanos, b: BudgetId, tokens: u64) {
        let budget = &mut self.budgets[b.0 as usize];
        let amounts = minute_amounts(minute_limits(&budget.limits), tokens);
        budget.minute.take(at, amounts, &self.calendar);
        self.refund_day(at, b, tokens);
    }

    /// Takes back from the minute windows the `tokens` of a request recorded at `at` against
    /// budget `b`, leaving the request itself counted: what a server counts of a request it
    /// refused is at most the request (`count_rejected`), never its tokens.
    pub fn refund_tokens(&mut self, at: Nanos, b: BudgetId, tokens: u64) {
        let budget = &mut self.budgets[b.0 as usize];
        let amounts = limited(minute_limits(&budget.limits), [0, tokens]);
        budget.minute.take(at, amounts, &self.calendar);
    }

    /// Takes back from the minute windows the request itself recorded at `at` against budget
    /// `b`, its tokens left as they are: all a server that does not count refusals
    /// (`count_rejected` false) still held of a refused request once its tokens went back
    /// ([`Ledger::refund_tokens`]).
    pub fn refund_request(&mut self, at: Nanos, b: BudgetId) {
        let budget = &mut self.budgets[b.0 as usize];
        let amounts = limited(minute_limits(&budget.limits), [1, 0]);
        budget.minute.take(at, amounts, &self.calendar);
    }

    /// Counts again in the minute windows the request [`Ledger::refund_request`] took back.
    pub fn recount_request(&mut self, at: Nanos, b: BudgetId) {
        let budget = &mut self.budgets[b.0 as usize];
        let amounts = limited(minute_limits(&budget.limits), [1, 0]);
        budget.minute.insert(at, amounts, &self.calendar);
    }

    /// Takes back from the day's counts a request costing `tokens` recorded at `at` (a send the
    /// server refused, which it does not charge to the day), if that day is still the current
    /// one.
    pub fn refund_day(&mut self, at: Nanos, b: BudgetId, tokens: u64) {
        let budget = &mut self.budgets[b.0 as usize];
        if self.calendar.next_day_start(at) == budget.daily.day_end {
            if budget.limits.rpd.is_some() {
                budget.daily.used = budget.daily.used.saturating_sub(1);
            }
            if budget.limits.tpd.is_some() {
                budget.daily.tokens = budget.daily.tokens.saturating_sub(tokens);
            }
        }
    }

    /// Records a request costing `tokens` that was sent at `at` whatever the limits say, where
    /// `at` may lie before requests already recorded (another client's send, learned late
    /// through a shared ledger's sync delay): windows count it from `at`, a day that has
    /// already ended does not.
    pub fn insert(&mut self, at: Nanos, b: BudgetId, tokens: u64) {
        let cal = &self.calendar;
        let budget = &mut self.budgets[b.0 as usize];
        let limits = budget.limits;
        let per_minute = minute_limits(&limits);
        if per_minute != [None; 2] {
            budget.minute.insert(at, minute_amounts(per_minute, tokens), cal);
        }
        if limits.rpd.is_some() || limits.tpd.is_some() {
            let day_end = cal.next_day_start(at);
            if day_end > budget.daily.day_end {
                budget.daily.settle(at, cal);
            }
            if day_end == budget.daily.day_end {
                budget.daily.used += u64::from(limits.rpd.is_some());
                budget.daily.tokens += if limits.tpd.is_some() { tokens } else { 0 };
            }
        }
    }

    /// Moves one slot of `pool` held until `from` to end at `to` instead (a Live session whose
    /// end the server learns only when its client closes). Nothing if no slot ends at `from`.
    pub fn reschedule(&mut self, pool: PoolId, from: Nanos, to: Nanos) {
        let slots = &mut self.pools[pool.0 as usize];
        let mut ends = std::mem::take(&mut slots.ends).into_vec();
        if let Some(i) = ends.iter().position(|&Reverse(e)| e == from) {
            ends[i] = Reverse(to);
        }
        slots.ends = ends.into();
    }

    /// Records a request costing `tokens` at `now` whatever the limits say (a client probing
    /// whether its believed limits are too low).
    pub fn force(&mut self, now: Nanos, b: BudgetId, pool: Option<PoolId>, tokens: u64, until: Nanos) {
        self.record(now, b, pool, tokens, until);
    }

    /// Decides on a request costing `tokens` against budget `b` (and concurrency pool `pool`,
    /// if the budget limits concurrency) at `now`; if admitted, records it, holding a slot
    /// until `until`.
    pub fn admit(&mut self, now: Nanos, b: BudgetId, pool: Option<PoolId>, tokens: u64, until: Nanos) -> Admission {
        let (violated, retry_at) = match self.check(now, b, pool, tokens) {
            Admission::Admitted => {
                self.record(now, b, pool, tokens, until);
                return Admission::Admitted;
            }
            Admission::Unservable { violated } => return Admission::Unservable { violated },
            Admission::Rejected { violated, retry_at } => (violated, retry_at),
        };
        if self.config.count_rejected && self.budgets[b.0 as usize].limits.rpm.is_some() {
            let budget = &mut self.budgets[b.0 as usize];
            budget.minute.record(now, [1, 0]);
            // Recording made RPM fuller: the earliest retry may move.
            if let Admission::Rejected { retry_at: later, .. } = self.check(now, b, pool, tokens) {
                return Admission::Rejected {
                    violated,
                    retry_at: later.max(retry_at),
                };
            }
        }
        Admission::Rejected { violated, retry_at }
    }

    /// What [`Ledger::admit`] would answer, without recording anything.
    pub fn check(&mut self, now: Nanos, b: BudgetId, pool: Option<PoolId>, tokens: u64) -> Admission {
        self.check_except(now, b, pool, tokens, Dims::EMPTY)
    }

    /// [`Ledger::check`] as if the dimensions in `except` had no limit (a client asking when
    /// the limits it trusts allow a send that probes the others).
    pub fn check_except(
        &mut self,
        now: Nanos,
        b: BudgetId,
        pool: Option<PoolId>,
        tokens: u64,
        except: Dims,
    ) -> Admission {
        self.check_weighted(now, b, pool, tokens, except, 1)
    }

    /// A hint, changing nothing: asks the CPU for budget `b`'s record, which a check will
    /// soon read (step one of two: [`Ledger::prefetch_window`] then asks for the entries the
    /// record points to). Both are cold by the time a budget comes up again, a thousand
    /// others later, and waiting for them was most of an admission's cost (issue 34).
    #[inline]
    pub fn prefetch_budget(&self, b: BudgetId) {
        if let Some(r) = self.budgets.get(b.0 as usize) {
            crate::core::cache::prefetch_all(r);
        }
    }

    /// A hint, changing nothing: asks for the oldest and newest entries of budget `b`'s
    /// sliding window, which a check reads and a record writes (reads the record: call it a
    /// while after [`Ledger::prefetch_budget`]).
    #[inline]
    pub fn prefetch_window(&self, b: BudgetId) {
        fn ends<C>(e: &VecDeque<(Nanos, [C; 2])>) {
            if let Some(x) = e.front() {
                prefetch(x);
            }
            if let Some(x) = e.back() {
                prefetch(x);
            }
        }
        match self.budgets.get(b.0 as usize).map(|r| &r.minute) {
            Some(Window::Sliding(s)) => ends(&s.entries),
            Some(Window::Wide(s)) => ends(&s.entries),
            _ => {}
        }
    }

    /// [`Ledger::check_except`] for `weight` copies of the request in the per-minute windows
    /// (`weight` requests, `weight × tokens` tokens; the day's counts and concurrency as one):
    /// a client replica in a fleet that may send only when its share, one in `weight`, of the
    /// room it sees is enough. The caller keeps `weight × tokens` within the TPM limit and
    /// `weight` within the RPM limit.
    pub fn check_weighted(
        &mut self,
        now: Nanos,
        b: BudgetId,
        pool: Option<PoolId>,
        tokens: u64,
        except: Dims,
        weight: u64,
    ) -> Admission {
        let (cal, span) = (&self.calendar, self.span);
        let budget = &mut self.budgets[b.0 as usize];
        let mut limits = budget.limits;
        for d in except.iter() {
            limits.set(d, None);
        }
        if !limits.servable(tokens) {
            return Admission::Unservable {
                violated: limits.unservable(tokens),
            };
        }
        let mut violated = Dims::EMPTY;
        let mut retry_at = now;
        let mut consider = |d: Dimension, at: Nanos| {
            if at > now {
                violated.insert(d);
                retry_at = retry_at.max(at);
            }
        };
        let per_minute = minute_limits(&limits);
        let cap = budget.cap;
        let capped = |i: usize, l: u64, amount: u64| capped(cap, i, l, amount);
        // A lazy ledger's window that fits the request with its owed entries still counted
        // fits it settled: nothing else to read.
        let fits_owing = self.lazy
            && per_minute != [None; 2]
            && budget
                .minute
                .owe(now, span)
                .is_some_and(|held| fits_held(per_minute, cap, held, weight, tokens));
        match &mut budget.minute {
            Window::Kept(k) => k.forget(self.clock.saturating_sub(span + KEEP_LATE)),
            // A replica's: what counts at its clock is kept, for `fits_through`.
            w if self.kept => w.keep_from((self.clock + 1).saturating_sub(span), self.clock, cal),
            _ => {}
        }
        if per_minute != [None; 2] && !fits_owing {
            budget.minute.usage(now, per_minute, cal, span);
            if let Some(l) = per_minute[0] {
                let l = capped(0, l, weight);
                consider(Dimension::Rpm, budget.minute.earliest_fit(now, 0, weight, l, cal, span));
            }
            if let Some(l) = per_minute[1] {
                let amount = weight * tokens;
                let l = capped(1, l, amount);
                consider(Dimension::Tpm, budget.minute.earliest_fit(now, 1, amount, l, cal, span));
            }
        }
        if limits.rpd.is_some() || limits.tpd.is_some() {
            // Read only: a client replica asking about a send on a later day must not drop
            // the current day's counts, which its refunds and withdrawals still change.
            let (used, day_tokens, day_end) = budget.daily.view(now, cal);
            if let Some(l) = limits.rpd {
                consider(Dimension::Rpd, if used < l { now } else { day_end });
            }
            if let Some(l) = limits.tpd {
                let fits = day_tokens + tokens <= l;
                consider(Dimension::Tpd, if fits { now } else { day_end });
            }
        }
        if let (Some(_), Some(p)) = (limits.concurrent, pool) {
            let slots = &mut self.pools[p.0 as usize];
            let held = slots.settle(now);
            if held >= slots.limit {
                // Slots are never over-admitted, so the earliest end frees one.
                let Reverse(first_end) = *slots.ends.peek().expect("a full pool holds slots");
                consider(Dimension::Concurrency, first_end);
            }
        }
        if violated.is_empty() {
            Admission::Admitted
        } else {
            Admission::Rejected { violated, retry_at }
        }
    }

    /// Whether [`Ledger::check`] of `tokens` at `now` on budget `b` (no pool) is sure to admit
    /// it without reading a window's entries: a lazy ledger's sliding window holds room for it
    /// with its owed entries still counted (the check's own first test), and the day has room.
    /// Changes nothing. Asked right after [`Ledger::commit`] at the same `now` (which owed the
    /// window's forgetting at `now`), `true` says the check would admit it and change nothing
    /// either: a planner re-indexing the budget it just sent on may skip it (issue 34).
    pub fn fits_held(&self, now: Nanos, b: BudgetId, tokens: u64) -> bool {
        let budget = &self.budgets[b.0 as usize];
        let limits = budget.limits;
        if !self.lazy || !limits.servable(tokens) {
            return false;
        }
        let per_minute = minute_limits(&limits);
        if per_minute != [None; 2] {
            let held = match &budget.minute {
                Window::Sliding(s) => minus(s.last, s.base),
                Window::Wide(s) => minus(s.last, s.base),
                _ => return false,
            };
            if !fits_held(per_minute, budget.cap, held, 1, tokens) {
                return false;
            }
        }
        let (used, day_tokens, _) = budget.daily.view(now, &self.calendar);
        limits.rpd.is_none_or(|l| used < l) && limits.tpd.is_none_or(|l| day_tokens + tokens <= l)
    }

    /// Records a request that [`Ledger::check`] just admitted at the same `now` (saves checking
    /// twice).
    pub fn commit(&mut self, now: Nanos, b: BudgetId, pool: Option<PoolId>, tokens: u64, until: Nanos) {
        debug_assert_eq!(self.check(now, b, pool, tokens), Admission::Admitted);
        self.record(now, b, pool, tokens, until);
    }

    fn record(&mut self, now: Nanos, b: BudgetId, pool: Option<PoolId>, tokens: u64, until: Nanos) {
        let (cal, span) = (&self.calendar, self.span);
        let budget = &mut self.budgets[b.0 as usize];
        let limits = budget.limits;
        // Settle each window at `now` before counting (a send planned earlier may be recorded
        // past a minute or day boundary); unlimited dimensions count nothing.
        let mut now_usage = Usage::default();
        let per_minute = minute_limits(&limits);
        if per_minute != [None; 2] {
            if self.lazy && budget.minute.owe(now, span).is_some() {
                budget.minute.settle_lazily();
            } else {
                budget.minute.usage(now, per_minute, cal, span);
            }
            let held = budget.minute.record(now, minute_amounts(per_minute, tokens));
            [now_usage.rpm, now_usage.tpm] = limited(per_minute, held);
        }
        if limits.rpd.is_some() {
            budget.daily.settle(now, cal);
            budget.daily.used += 1;
            now_usage.rpd = budget.daily.used;
        }
        if limits.tpd.is_some() {
            budget.daily.settle(now, cal);
            budget.daily.tokens += tokens;
            now_usage.tpd = budget.daily.tokens;
        }
        if let (Some(_), Some(p)) = (limits.concurrent, pool) {
            let slots = &mut self.pools[p.0 as usize];
            slots.ends.push(Reverse(until));
            now_usage.concurrency = slots.ends.len() as u64;
            let pp = &mut self.pool_peaks[p.0 as usize];
            *pp = (*pp).max(now_usage.concurrency);
        }
        if !self.lazy {
            budget.peak.max_with(now_usage);
        }
    }

    /// Usage of budget `b` at `now` (concurrency from `pool`, when given).
    pub fn usage(&mut self, now: Nanos, b: BudgetId, pool: Option<PoolId>) -> Usage {
        let (cal, span) = (&self.calendar, self.span);
        let budget = &mut self.budgets[b.0 as usize];
        let limits = budget.limits;
        let [rpm, tpm] = budget.minute.usage(now, minute_limits(&limits), cal, span);
        Usage {
            rpm,
            tpm,
            rpd: budget.daily.settle(now, cal),
            tpd: budget.daily.tokens,
            concurrency: pool.map_or(0, |p| self.pools[p.0 as usize].settle(now)),
        }
    }

    /// Requests budget `b` has counted for the day containing `now` (read-only).
    pub fn used_today(&self, now: Nanos, b: BudgetId) -> u64 {
        let d = &self.budgets[b.0 as usize].daily;
        if now >= d.day_end {
            0
        } else {
            d.used
        }
    }

    /// Tokens budget `b` has counted for the day containing `now` (read-only).
    pub fn tokens_today(&self, now: Nanos, b: BudgetId) -> u64 {
        self.budgets[b.0 as usize].daily.view(now, &self.calendar).1
    }

    /// The highest usage budget `b` ever reached right after an admission (RPM and TPM as the
    /// window's content; with bucket windows, the bucket's used capacity). A lazy ledger keeps
    /// none (see [`Ledger::lazy`]).
    pub fn peak(&self, b: BudgetId) -> Usage {
        debug_assert!(!self.lazy, "a lazy ledger keeps no peaks");
        self.budgets[b.0 as usize].peak
    }

    /// The most slots pool `p` ever had in use at once.
    pub fn pool_peak(&self, p: PoolId) -> u64 {
        self.pool_peaks[p.0 as usize]
    }

    /// Budget `into` takes over what budget `from` counts (its per-minute entries, from their
    /// instants, and its day's requests and tokens), as a client replica does when it learns
    /// that two budgets it kept apart are one on the server (a re-routed model id drawing on
    /// its target's quota). `from` keeps its counts; its owner should plan on `into` from now on.
    pub fn absorb(&mut self, from: BudgetId, into: BudgetId) {
        if from == into {
            return;
        }
        self.budgets[from.0 as usize].minute.settle();
        let (entries, daily, aside) = {
            let f = &self.budgets[from.0 as usize];
            (f.minute.contents(), f.daily.clone(), f.minute.kept_aside())
        };
        let cal = &self.calendar;
        let b = &mut self.budgets[into.0 as usize];
        let per_minute = minute_limits(&b.limits);
        for (at, amounts) in entries {
            let amounts = limited(per_minute, amounts);
            if amounts != [0; 2] {
                b.minute.insert(at, amounts, cal);
            }
        }
        // What `from` kept aside is not taken over: `into` can no longer tell what a send
        // before it meets (`fits_through`).
        b.minute.lose(aside, cal);
        if daily.day_end > b.daily.day_end {
            b.daily = Daily {
                day_end: daily.day_end,
                used: 0,
                tokens: 0,
            };
        }
        if daily.day_end == b.daily.day_end {
            b.daily.used += if b.limits.rpd.is_some() { daily.used } else { 0 };
            b.daily.tokens += if b.limits.tpd.is_some() { daily.tokens } else { 0 };
        }
    }

    /// Entries held in memory (for tests of boundedness).
    pub fn held_entries(&self) -> usize {
        self.budgets
            .iter()
            .map(|b| match &b.minute {
                Window::Sliding(s) => s.entries.len(),
                Window::Wide(s) => s.entries.len(),
                Window::Kept(k) => k.entries.len() + 1,
                _ => 1,
            })
            .sum::<usize>()
            + self.pools.iter().map(|p| p.ends.len()).sum::<usize>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::{HOUR, SECOND};
    use chrono::DateTime;

    fn calendar(start: &str) -> Calendar {
        Calendar::new(
            DateTime::parse_from_rfc3339(start).unwrap(),
            chrono_tz::America::Los_Angeles,
        )
    }

    /// A replica's ledger of bucket windows kept as their sends, with one budget.
    fn kept_ledger(limits: Limits) -> (Ledger, BudgetId) {
        with_budget(empty(WindowKind::Bucket).exact_buckets(), limits)
    }

    fn ledger(window: WindowKind, limits: Limits) -> (Ledger, BudgetId) {
        with_budget(empty(window), limits)
    }

    fn empty(window: WindowKind) -> Ledger {
        Ledger::new(
            calendar("2025-10-15T09:00:00-07:00"),
            LedgerConfig {
                window,
                count_rejected: false,
            },
        )
    }

    fn with_budget(mut l: Ledger, limits: Limits) -> (Ledger, BudgetId) {
        let b = l.add_budget(limits, 0);
        (l, b)
    }

    fn rpm(n: u64) -> Limits {
        Limits {
            rpm: Some(n),
            ..Limits::default()
        }
    }

    /// What a window held at an instant less than a minute after time 0 includes the entries
    /// at 0 (before, the span's start saturated to 0 and left them out: a Live session
    /// refused at the start of a run was read as the only one its minute held).
    #[test]
    fn what_a_window_held_early_includes_time_zero() {
        let (mut l, b) = ledger(
            WindowKind::Sliding,
            Limits {
                rpm: Some(10),
                tpm: Some(1_000),
                ..Limits::default()
            },
        );
        l.insert(0, b, 300);
        l.insert(0, b, 200);
        l.insert(SECOND, b, 100);
        assert_eq!(l.held_at(0, b), [2, 500]);
        assert_eq!(l.held_at(SECOND, b), [3, 600]);
        assert_eq!(l.held_at(MINUTE, b), [1, 100]);
    }

    fn tpm(n: u64) -> Limits {
        Limits {
            tpm: Some(n),
            ..Limits::default()
        }
    }

    #[test]
    fn sliding_rpm_admits_exactly_the_limit_then_names_the_delay() {
        let (mut l, b) = ledger(WindowKind::Sliding, rpm(3));
        for i in 0..3 {
            assert_eq!(l.admit(i * SECOND, b, None, 1, 0), Admission::Admitted);
        }
        let r = l.admit(10 * SECOND, b, None, 1, 0);
        assert_eq!(
            r,
            Admission::Rejected {
                violated: [Dimension::Rpm].into_iter().collect(),
                retry_at: MINUTE
            }
        );
        // One nanosecond before the oldest entry expires: still full.
        assert!(
            matches!(l.admit(MINUTE - 1, b, None, 1, 0), Admission::Rejected { retry_at, .. } if retry_at == MINUTE)
        );
        assert_eq!(l.admit(MINUTE, b, None, 1, 0), Admission::Admitted);
        // Next slot frees when the entry at 1 s expires.
        assert!(
            matches!(l.check(MINUTE, b, None, 1), Admission::Rejected { retry_at, .. } if retry_at == MINUTE + SECOND)
        );
    }

    #[test]
    fn a_send_learned_late_counts_from_when_it_was_sent() {
        let limits = Limits {
            rpm: Some(2),
            tpm: Some(100),
            rpd: Some(10),
            ..Limits::default()
        };
        let (mut l, b) = ledger(WindowKind::Sliding, limits);
        l.commit(10 * SECOND, b, None, 10, 10 * SECOND);
        // Another client's send at 5 s, learned at 12 s: the window is full until 65 s.
        l.insert(5 * SECOND, b, 30);
        assert_eq!(
            l.check(12 * SECOND, b, None, 10),
            Admission::Rejected {
                violated: Dims::from_iter([Dimension::Rpm]),
                retry_at: 65 * SECOND
            }
        );
        assert_eq!(l.usage(12 * SECOND, b, None).tpm, 40);
        assert_eq!(l.usage(66 * SECOND, b, None).tpm, 10, "the late entry expires first");
        assert_eq!(l.used_today(66 * SECOND, b), 2);
        // At an instant already held, it merges.
        l.insert(10 * SECOND, b, 5);
        assert_eq!(l.usage(66 * SECOND, b, None).tpm, 15);
    }

    #[test]
    fn a_replica_margin_holds_entries_that_much_longer() {
        let (l, b) = ledger(WindowKind::Sliding, rpm(1));
        let mut l = l.with_margin(250);
        assert_eq!(l.admit(SECOND, b, None, 1, 0), Admission::Admitted);
        assert!(
            matches!(l.check(MINUTE + SECOND, b, None, 1), Admission::Rejected { retry_at, .. } if retry_at == MINUTE + SECOND + 250)
        );
        assert_eq!(l.admit(MINUTE + SECOND + 250, b, None, 1, 0), Admission::Admitted);
        let (tl, tb) = ledger(WindowKind::Sliding, tpm(10));
        let mut tl = tl.with_margin(7);
        assert_eq!(tl.admit(0, tb, None, 10, 0), Admission::Admitted);
        assert_eq!(tl.usage(MINUTE + 6, tb, None).tpm, 10);
        assert_eq!(tl.usage(MINUTE + 7, tb, None).tpm, 0);
    }

    #[test]
    fn burst_at_one_instant_counts_every_request() {
        let (mut l, b) = ledger(WindowKind::Sliding, rpm(2));
        assert_eq!(l.admit(5, b, None, 1, 0), Admission::Admitted);
        assert_eq!(l.admit(5, b, None, 1, 0), Admission::Admitted);
        assert!(matches!(l.admit(5, b, None, 1, 0), Admission::Rejected { retry_at, .. } if retry_at == 5 + MINUTE));
        assert_eq!(l.held_entries(), 1); // one merged RPM entry; unlimited TPM keeps nothing
    }

    #[test]
    fn sliding_tpm_waits_for_enough_tokens_to_expire() {
        let (mut l, b) = ledger(WindowKind::Sliding, tpm(100));
        assert_eq!(l.admit(0, b, None, 40, 0), Admission::Admitted);
        assert_eq!(l.admit(SECOND, b, None, 30, 0), Admission::Admitted);
        assert_eq!(l.admit(2 * SECOND, b, None, 30, 0), Admission::Admitted);
        // Exactly at the limit: 100 held, a request of 0 tokens still fits.
        assert_eq!(l.check(3 * SECOND, b, None, 0), Admission::Admitted);
        // 50 tokens need the 40 and the 30 gone: at 1 s + 60 s.
        assert!(
            matches!(l.check(3 * SECOND, b, None, 50), Admission::Rejected { retry_at, .. } if retry_at == MINUTE + SECOND)
        );
        assert!(matches!(l.check(3 * SECOND, b, None, 40), Admission::Rejected { retry_at, .. } if retry_at == MINUTE));
        assert_eq!(l.check(MINUTE + SECOND, b, None, 50), Admission::Admitted);
    }

    #[test]
    fn request_larger_than_tpm_and_zero_limits_are_unservable() {
        let (mut l, b) = ledger(WindowKind::Sliding, tpm(100));
        assert_eq!(
            l.admit(0, b, None, 101, 0),
            Admission::Unservable {
                violated: [Dimension::Tpm].into_iter().collect()
            }
        );
        assert_eq!(l.admit(0, b, None, 100, 0), Admission::Admitted);
        let (mut l, b) = ledger(
            WindowKind::Fixed,
            Limits {
                rpm: Some(0),
                rpd: Some(0),
                ..Limits::default()
            },
        );
        assert_eq!(
            l.admit(0, b, None, 1, 0),
            Admission::Unservable {
                violated: [Dimension::Rpm, Dimension::Rpd].into_iter().collect()
            }
        );
    }

    /// `servable` is `unservable` being empty, on every mix of absent, zero, small and large
    /// limits and request sizes around them.
    #[test]
    fn servable_is_unservable_empty() {
        let values = [None, Some(0), Some(1), Some(5), Some(u64::MAX)];
        for (i, &rpm) in values.iter().enumerate() {
            for &tpm in &values {
                for &tpd in &values {
                    let limits = Limits {
                        rpm,
                        tpm,
                        rpd: values[(i + 2) % values.len()],
                        tpd,
                        concurrent: values[(i + 3) % values.len()],
                    };
                    for tokens in [0, 1, 4, 5, 6, u64::MAX] {
                        assert_eq!(
                            limits.servable(tokens),
                            limits.unservable(tokens).is_empty(),
                            "{limits:?} {tokens}"
                        );
                    }
                }
            }
        }
    }

    /// `fits_held` says yes only where `check` admits: on a lazy ledger right after a commit at
    /// the same instant, over windows filled to every level around the limits.
    #[test]
    fn fits_held_only_where_the_check_admits() {
        let limits = Limits {
            rpm: Some(4),
            tpm: Some(100),
            rpd: Some(9),
            tpd: Some(300),
            concurrent: None,
        };
        let (mut yes, mut no) = (0, 0);
        for tokens in [0u64, 1, 30, 60, 100] {
            let mut l = empty(WindowKind::Sliding).lazy();
            let b = l.add_budget(limits, 0);
            for k in 0..12u64 {
                let now = k * 7 * SECOND;
                if l.check(now, b, None, 25) == Admission::Admitted {
                    l.commit(now, b, None, 25, now);
                }
                let fits = l.fits_held(now, b, tokens);
                let admitted = l.check(now, b, None, tokens) == Admission::Admitted;
                assert!(
                    !fits || admitted,
                    "at {k}: fits_held says yes to {tokens} where the check does not"
                );
                yes += u32::from(fits);
                no += u32::from(!admitted);
            }
        }
        assert!(yes >= 5 && no >= 5, "yes {yes}, refused {no}: the test shows nothing");
    }

    #[test]
    fn fixed_window_resets_on_the_calendar_minute() {
        // Start at :30 past the minute: the first minute ends after 30 s.
        let mut l = Ledger::new(
            calendar("2025-10-15T09:00:30-07:00"),
            LedgerConfig {
                window: WindowKind::Fixed,
                count_rejected: false,
            },
        );
        let b = l.add_budget(rpm(2), 0);
        assert_eq!(l.admit(0, b, None, 1, 0), Admission::Admitted);
        assert_eq!(l.admit(29 * SECOND, b, None, 1, 0), Admission::Admitted);
        assert!(
            matches!(l.admit(30 * SECOND - 1, b, None, 1, 0), Admission::Rejected { retry_at, .. } if retry_at == 30 * SECOND)
        );
        // The fixed window admits a second burst right after the boundary (2x in 2 s).
        assert_eq!(l.admit(30 * SECOND, b, None, 1, 0), Admission::Admitted);
        assert_eq!(l.admit(30 * SECOND, b, None, 1, 0), Admission::Admitted);
    }

    /// A client's replica that learned the server counts calendar minutes keeps what the
    /// current minute holds (issue 26, item 6).
    #[test]
    fn a_sliding_ledger_measured_by_calendar_minute_keeps_the_current_minute() {
        // Start at :30 past the minute: the first minute ends after 30 s.
        let mut l = Ledger::new(
            calendar("2025-10-15T09:00:30-07:00"),
            LedgerConfig {
                window: WindowKind::Sliding,
                count_rejected: false,
            },
        );
        let b = l.add_budget(rpm(2), 0);
        assert_eq!(l.admit(0, b, None, 1, 0), Admission::Admitted);
        assert_eq!(l.admit(31 * SECOND, b, None, 1, 0), Admission::Admitted);
        l.measure_fixed();
        // The minute from 30 s holds one: one more fits now (a sliding window held two), and
        // the next waits for the minute from 90 s.
        assert_eq!(l.admit(32 * SECOND, b, None, 1, 0), Admission::Admitted);
        assert!(
            matches!(l.admit(33 * SECOND, b, None, 1, 0), Admission::Rejected { retry_at, .. } if retry_at == 90 * SECOND)
        );
    }

    /// A client's replica of a reservation slides under calendar minutes too, as the server
    /// keeps it (`long-context-reservation` on calendar minutes, seeds 2 and 18: the planners
    /// counted the reservation by the minute, sent at 3,180 s what its sliding minute had no
    /// room for, and met a 429 on the quota it spilled to).
    #[test]
    fn a_sliding_budget_slides_in_a_ledger_of_calendar_minutes() {
        let (mut l, fixed) = ledger(WindowKind::Fixed, rpm(1));
        let sliding = l.add_sliding_budget(rpm(1));
        for b in [fixed, sliding] {
            assert_eq!(l.admit(50 * SECOND, b, None, 1, 0), Admission::Admitted);
        }
        // At 61 s the calendar minute is new; the sliding one still holds the send at 50 s.
        assert_eq!(l.check(61 * SECOND, fixed, None, 1), Admission::Admitted);
        assert!(
            matches!(l.check(61 * SECOND, sliding, None, 1), Admission::Rejected { retry_at, .. } if retry_at == 110 * SECOND)
        );
        // Nor does a replica that learns calendar minutes later measure it by them.
        let (mut l, quota) = ledger(WindowKind::Sliding, rpm(1));
        let sliding = l.add_sliding_budget(rpm(1));
        for b in [quota, sliding] {
            assert_eq!(l.admit(50 * SECOND, b, None, 1, 0), Admission::Admitted);
        }
        l.measure_fixed();
        assert_eq!(l.check(61 * SECOND, quota, None, 1), Admission::Admitted);
        assert!(matches!(
            l.check(61 * SECOND, sliding, None, 1),
            Admission::Rejected { .. }
        ));
    }

    #[test]
    fn bucket_refills_continuously() {
        let (mut l, b) = ledger(WindowKind::Bucket, tpm(60));
        assert_eq!(l.admit(0, b, None, 60, 0), Admission::Admitted);
        // Refill 1 token per second: 10 tokens after exactly 10 s.
        assert!(matches!(l.check(0, b, None, 10), Admission::Rejected { retry_at, .. } if retry_at == 10 * SECOND));
        assert!(
            matches!(l.check(10 * SECOND - 1, b, None, 10), Admission::Rejected { retry_at, .. } if retry_at == 10 * SECOND)
        );
        assert_eq!(l.admit(10 * SECOND, b, None, 10, 0), Admission::Admitted);
        // Uneven rates: 7 per minute -> 1 token after ceil(60/7 s).
        let (mut l, b) = ledger(WindowKind::Bucket, rpm(7));
        for _ in 0..7 {
            assert_eq!(l.admit(0, b, None, 1, 0), Admission::Admitted);
        }
        let expect = (MINUTE as u128).div_ceil(7) as Nanos;
        assert!(matches!(l.check(0, b, None, 1), Admission::Rejected { retry_at, .. } if retry_at == expect));
        assert!(matches!(l.check(expect - 1, b, None, 1), Admission::Rejected { .. }));
        assert_eq!(l.check(expect, b, None, 1), Admission::Admitted);
    }

    /// A replica's bucket kept as its sends answers as the server's bucket that never took the
    /// sends it took back: after a burst drained, a send withdrawn leaves the bucket as full as
    /// the server's (a bucket kept as its level alone took the whole withdrawn send back from
    /// a debt that had drained below it, and believed room the server did not have).
    #[test]
    fn a_kept_bucket_takes_back_exactly_after_it_drained() {
        let (mut l, b) = kept_ledger(rpm(2));
        // Two sends at 0 s (full), one at 30 s (one refilled by then: full again).
        l.insert(0, b, 1);
        l.insert(0, b, 1);
        l.insert(30 * SECOND, b, 1);
        // One refills every 30 s: the next one fits at 60 s.
        assert!(
            matches!(l.check(50 * SECOND, b, None, 1), Admission::Rejected { retry_at, .. } if retry_at == 60 * SECOND)
        );
        // The 30 s send is withdrawn (a 503): as if never sent, room at once (two refilled by 60 s,
        // one already by 30 s: at 50 s one is there).
        l.cancel(30 * SECOND, b, 1);
        assert_eq!(l.check(50 * SECOND, b, None, 1), Admission::Admitted);
        // Tokens: 60 a minute, one refilled a second. 60 at 0 s, 30 at 40 s; the 0 s send is
        // withdrawn at 50 s. The server that never had it filled to 60 by 40 s: 40 left at 50 s.
        let sends = |l: &mut Ledger, b| {
            l.insert(0, b, 60);
            l.insert(40 * SECOND, b, 30);
            l.check(50 * SECOND, b, None, 1);
            l.cancel(0, b, 60);
        };
        let (mut level, b) = ledger(WindowKind::Bucket, tpm(60));
        sends(&mut level, b);
        // Kept as its level, it took 60 back from a debt of 40: empty, it believes.
        assert_eq!(level.check(50 * SECOND, b, None, 60), Admission::Admitted);
        let (mut kept, b) = kept_ledger(tpm(60));
        sends(&mut kept, b);
        assert_eq!(kept.check(50 * SECOND, b, None, 40), Admission::Admitted);
        assert!(
            matches!(kept.check(50 * SECOND, b, None, 50), Admission::Rejected { retry_at, .. } if retry_at == 60 * SECOND)
        );
    }

    /// Two kept buckets' sends, together: one bucket draining at one rate, not the sum of two
    /// fills (a re-routed id's sends and its target's share the target's bucket: summed, the
    /// fills of 10 and 5 sends in 33 s looked like 6 of 10, and flux missed the re-route on a
    /// bucket server and met a second 429).
    #[test]
    fn kept_buckets_held_together_are_one_bucket() {
        let (mut l, a) = kept_ledger(rpm(10));
        let b = l.add_budget(rpm(10), 0);
        // 10 sends on `a` and 5 on `b` in 30 s; 1 request refills every 6 s.
        for k in 0..10 {
            l.insert(k * 3 * SECOND, a, 1);
        }
        for k in 0..5 {
            l.insert(k * 6 * SECOND + SECOND, b, 1);
        }
        let at = 30 * SECOND;
        let (own, other) = (l.held_at(at, a), l.held_at(at, b));
        assert!(own[0] + other[0] < 10, "each alone, summed: {own:?} {other:?}");
        // One bucket: 15 sends, 30 s of refill at 1 per 6 s (5): 10 held, full.
        assert_eq!(l.held_together_at(at, a, b), Some([10, 0]));
        // Sends after `at` are not counted.
        l.insert(40 * SECOND, b, 1);
        assert_eq!(l.held_together_at(at, a, b), Some([10, 0]));
        // Sliding windows add: no answer here.
        let (mut s, x) = ledger(WindowKind::Sliding, rpm(10));
        let y = s.add_budget(rpm(10), 0);
        assert_eq!(s.held_together_at(at, x, y), None);
    }

    /// Random sends planned in time order, some withdrawn soon after: at every step the kept
    /// bucket's earliest fit is the server's bucket replayed with the sends that stand.
    #[test]
    fn a_kept_bucket_plans_as_the_server_would_admit() {
        use rand::{Rng, SeedableRng};
        let limits = Limits {
            rpm: Some(7),
            tpm: Some(1_000),
            ..Limits::default()
        };
        for seed in 0..40 {
            let mut rng = rand_pcg::Pcg64::seed_from_u64(seed);
            let (mut kept, b) = kept_ledger(limits);
            let mut sends: Vec<(Nanos, u64, bool)> = Vec::new();
            let mut now = 0;
            for _ in 0..120 {
                now += rng.random_range(0..20 * SECOND);
                kept.set_clock(now);
                let tokens = rng.random_range(1..=400);
                let fit = match kept.check(now, b, None, tokens) {
                    Admission::Admitted => now,
                    Admission::Rejected { retry_at, .. } => retry_at,
                    Admission::Unservable { .. } => unreachable!(),
                };
                // The server, replaying every standing send in order, admits it then, and not
                // a nanosecond before (unless that is before the replica's newest send).
                let (mut server, sb) = ledger(WindowKind::Bucket, limits);
                let newest = sends.iter().filter(|s| s.2).map(|s| s.0).max().unwrap_or(0);
                for &(t, k, _) in sends.iter().filter(|s| s.2) {
                    assert_eq!(server.admit(t, sb, None, k, 0), Admission::Admitted, "seed {seed}");
                }
                // (A server's bucket is asked in time order: the instant before first.)
                if fit > now.max(newest) {
                    assert!(
                        matches!(server.check(fit - 1, sb, None, tokens), Admission::Rejected { .. }),
                        "seed {seed}"
                    );
                }
                assert_eq!(
                    server.check(fit, sb, None, tokens),
                    Admission::Admitted,
                    "seed {seed} at {fit}"
                );
                kept.insert(fit, b, tokens);
                sends.push((fit, tokens, true));
                now = now.max(fit.saturating_sub(rng.random_range(0..30 * SECOND)));
                // One in four recent sends is taken back (withdrawn, or a 503).
                if rng.random_bool(0.25) {
                    let i = rng.random_range(sends.len().saturating_sub(5)..sends.len());
                    if sends[i].2 {
                        kept.cancel(sends[i].0, b, sends[i].1);
                        sends[i].2 = false;
                    }
                }
            }
        }
    }

    #[test]
    fn rpd_resets_at_pacific_midnight_on_dst_days() {
        for (start, day_hours) in [
            ("2025-03-08T12:00:00-08:00", 23), // spring forward
            ("2025-11-01T12:00:00-07:00", 25), // fall back
            ("2025-10-15T12:00:00-07:00", 24),
        ] {
            let mut l = Ledger::new(calendar(start), LedgerConfig::default());
            let b = l.add_budget(
                Limits {
                    rpd: Some(1),
                    ..Limits::default()
                },
                0,
            );
            assert_eq!(l.admit(0, b, None, 1, 0), Admission::Admitted);
            let first_midnight = 12 * HOUR;
            assert!(
                matches!(l.admit(first_midnight - 1, b, None, 1, 0), Admission::Rejected { retry_at, .. } if retry_at == first_midnight)
            );
            assert_eq!(l.admit(first_midnight, b, None, 1, 0), Admission::Admitted);
            let second = first_midnight + day_hours * HOUR;
            assert!(
                matches!(l.admit(second - 1, b, None, 1, 0), Admission::Rejected { retry_at, .. } if retry_at == second)
            );
            assert_eq!(l.admit(second, b, None, 1, 0), Admission::Admitted);
        }
    }

    #[test]
    fn rejection_names_every_violated_dimension_and_the_latest_delay() {
        let mut l = Ledger::new(calendar("2025-10-15T09:00:00-07:00"), LedgerConfig::default());
        let b = l.add_budget(
            Limits {
                rpm: Some(1),
                tpm: Some(100),
                rpd: Some(5),
                tpd: None,
                concurrent: Some(1),
            },
            0,
        );
        let p = l.add_pool(1);
        assert_eq!(l.admit(0, b, Some(p), 100, 90 * SECOND), Admission::Admitted);
        match l.admit(SECOND, b, Some(p), 10, 0) {
            Admission::Rejected { violated, retry_at } => {
                assert_eq!(violated.names(), ["rpm", "tpm", "concurrency"]);
                assert_eq!(retry_at, 90 * SECOND);
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(l.admit(90 * SECOND, b, Some(p), 10, 100 * SECOND), Admission::Admitted);
        assert_eq!(
            l.peak(b),
            Usage {
                rpm: 1,
                tpm: 100,
                rpd: 2,
                tpd: 0,
                concurrency: 1
            }
        );
    }

    #[test]
    fn counting_rejected_requests_extends_the_rpm_delay() {
        let mut l = Ledger::new(
            calendar("2025-10-15T09:00:00-07:00"),
            LedgerConfig {
                window: WindowKind::Sliding,
                count_rejected: true,
            },
        );
        let b = l.add_budget(rpm(1), 0);
        assert_eq!(l.admit(0, b, None, 1, 0), Admission::Admitted);
        assert!(
            matches!(l.admit(10 * SECOND, b, None, 1, 0), Admission::Rejected { retry_at, .. } if retry_at == 70 * SECOND)
        );
        assert!(matches!(l.admit(MINUTE, b, None, 1, 0), Admission::Rejected { .. }));
    }

    #[test]
    fn a_commit_planned_past_midnight_counts_against_the_new_day() {
        // 09:00 PDT start: midnight is 15 h in. Check early, commit at the planned instant.
        let (mut l, b) = ledger(
            WindowKind::Fixed,
            Limits {
                rpm: Some(1),
                rpd: Some(1),
                ..Limits::default()
            },
        );
        assert_eq!(l.admit(0, b, None, 1, 0), Admission::Admitted);
        let midnight = 15 * HOUR;
        assert!(matches!(l.check(SECOND, b, None, 1), Admission::Rejected { retry_at, .. } if retry_at == midnight));
        l.commit(midnight, b, None, 1, midnight);
        assert_eq!(
            l.usage(midnight, b, None),
            Usage {
                rpm: 1,
                tpm: 0,
                rpd: 1,
                tpd: 0,
                concurrency: 0
            }
        );
        assert!(
            matches!(l.check(midnight + MINUTE, b, None, 1), Admission::Rejected { retry_at, .. } if retry_at == midnight + 24 * HOUR)
        );
    }

    /// Issue 26, item 2: asking whether a send fits tomorrow does not forget today: a refund
    /// of today's send still frees today's day (before, the check moved the day record to
    /// tomorrow and the refund was dropped).
    /// A take never draws more than the entry at its instant holds: a client replica taking
    /// back a send whose own entry its window forgot (read ahead) where another send's entry
    /// stands at the same instant (merged in since) leaves the window ordered. Before, the
    /// over-draw made the cumulative counts fall and `earliest_fit` indexed past the end.
    #[test]
    fn a_take_draws_no_more_than_the_entry_holds() {
        let (mut l, b) = ledger(
            WindowKind::Sliding,
            Limits {
                rpm: Some(3),
                tpm: Some(1_000),
                ..Limits::default()
            },
        );
        l.insert(0, b, 10);
        l.insert(SECOND, b, 500);
        l.insert(2 * SECOND, b, 400);
        // 60 tokens taken back at 0, where the window holds 10 there.
        l.refund_tokens(0, b, 60);
        assert_eq!(l.held_at(2 * SECOND, b), [3, 900]);
        // Full by requests: the next send waits for the entry at 0 to leave.
        assert!(matches!(
            l.check(2 * SECOND, b, None, 50),
            Admission::Rejected { retry_at, .. } if retry_at == MINUTE
        ));
    }

    #[test]
    fn a_check_on_a_later_day_keeps_today_s_counts() {
        let (mut l, b) = ledger(
            WindowKind::Sliding,
            Limits {
                rpd: Some(2),
                tpd: Some(100),
                ..Limits::default()
            },
        );
        assert_eq!(l.admit(0, b, None, 60, 0), Admission::Admitted);
        assert_eq!(l.admit(SECOND, b, None, 30, 0), Admission::Admitted);
        let midnight = 15 * HOUR;
        assert_eq!(
            l.check(midnight, b, None, 100),
            Admission::Admitted,
            "tomorrow is empty"
        );
        assert!(
            matches!(l.check(2 * SECOND, b, None, 1), Admission::Rejected { retry_at, .. } if retry_at == midnight),
            "today is still full"
        );
        l.refund_day(SECOND, b, 30);
        assert_eq!(
            l.check(2 * SECOND, b, None, 40),
            Admission::Admitted,
            "today's refund kept"
        );
        assert_eq!(l.used_today(2 * SECOND, b), 1);
    }

    #[test]
    fn unlimited_dimensions_hold_nothing() {
        let (mut l, b) = ledger(WindowKind::Sliding, Limits::default());
        for i in 0..1000 {
            assert_eq!(l.admit(i, b, None, 5, 0), Admission::Admitted);
        }
        assert_eq!(l.held_entries(), 0);
    }

    #[test]
    fn memory_is_bounded_by_the_window() {
        let (mut l, b) = ledger(
            WindowKind::Sliding,
            Limits {
                rpm: Some(1_000_000),
                tpm: Some(u64::MAX / 4),
                ..Limits::default()
            },
        );
        for i in 0..100_000u64 {
            assert_eq!(l.admit(i * SECOND, b, None, 10, 0), Admission::Admitted);
        }
        assert!(l.held_entries() <= 2 * 60, "held {}", l.held_entries());
    }
    /// Entries keep the low 32 bits of their cumulative amounts while a window holds less
    /// than 2^32 of each; a window that comes to hold more (here 6 × 10^9 tokens) switches to
    /// full-width entries and stays exact: its usage, the retry instant it names, a send
    /// learned late and a withdrawal.
    #[test]
    fn a_window_holding_more_than_2_pow_32_tokens_stays_exact() {
        let (mut l, b) = ledger(WindowKind::Sliding, tpm(10_000_000_000));
        for i in 0..3 {
            assert_eq!(l.admit(i * SECOND, b, None, 2_000_000_000, 0), Admission::Admitted);
        }
        assert_eq!(l.usage(2 * SECOND, b, None).tpm, 6_000_000_000);
        // 5 × 10^9 more fits once the first 2 × 10^9 expire, at 60 s.
        match l.check(2 * SECOND, b, None, 5_000_000_000) {
            Admission::Rejected { retry_at, .. } => assert_eq!(retry_at, MINUTE),
            a => panic!("{a:?}"),
        }
        // Learned late: 3 × 10^9 sent at 500 ms; the first two entries must expire now.
        l.insert(SECOND / 2, b, 3_000_000_000);
        assert_eq!(l.usage(2 * SECOND, b, None).tpm, 9_000_000_000);
        match l.check(2 * SECOND, b, None, 5_000_000_000) {
            Admission::Rejected { retry_at, .. } => assert_eq!(retry_at, MINUTE + SECOND / 2),
            a => panic!("{a:?}"),
        }
        l.cancel(SECOND / 2, b, 3_000_000_000);
        assert_eq!(l.usage(MINUTE + SECOND / 2, b, None).tpm, 4_000_000_000);
        assert_eq!(l.usage(MINUTE + 2 * SECOND, b, None).tpm, 0);
        assert_eq!(
            l.admit(MINUTE + 2 * SECOND, b, None, 9_999_999_999, 0),
            Admission::Admitted
        );
        assert_eq!(l.usage(MINUTE + 3 * SECOND, b, None).tpm, 9_999_999_999);
    }

    /// A sliding window's entry is 16 bytes: a third fewer cache lines per budget than the
    /// 24 of full-width amounts (each admission reads the oldest and writes the newest).
    #[test]
    fn a_sliding_entry_is_16_bytes() {
        assert_eq!(std::mem::size_of::<(Nanos, [u32; 2])>(), 16);
        let s = Slide::<u32>::new();
        assert_eq!(
            std::mem::size_of_val(&s.entries.iter().next().copied().unwrap_or((0, [0; 2]))),
            16
        );
    }

    /// The compact entries' amounts wrap around 2^32 many times over a long run (here 1.3 ×
    /// 10^11 tokens in all) and the window still counts, and names retry instants, exactly.
    #[test]
    fn compact_entries_stay_exact_as_the_total_wraps_past_2_pow_32() {
        let (mut l, b) = ledger(WindowKind::Sliding, tpm(4_000_000_000));
        for i in 0..100u64 {
            let now = i * 20 * SECOND;
            assert_eq!(l.admit(now, b, None, 1_300_000_000, 0), Admission::Admitted, "{i}");
            // This one and the two before it count (an entry leaves at exactly 60 s).
            assert_eq!(l.usage(now, b, None).tpm, 1_300_000_000 * (i.min(2) + 1), "{i}");
            if i >= 2 {
                match l.check(now, b, None, 1_300_000_000) {
                    Admission::Rejected { retry_at, .. } => assert_eq!(retry_at, now + 20 * SECOND, "{i}"),
                    a => panic!("{i}: {a:?}"),
                }
            }
        }
    }

    /// A lazy ledger (a replica's) answers every question as a settled one does, while it
    /// owes forgetting: checks, weighted and capped checks, what a window held at an instant,
    /// usage, through records, forced sends, cancels and refunds, late inserts, checks ahead
    /// of time, merged budgets, a changed margin and calendar minutes. It does hold entries
    /// that no longer count (up to a second of them), which a settled ledger has dropped.
    /// A replica planning sends far ahead, withdrawing some and putting sends back before its
    /// plans, tells what a send at its clock meets exactly as a recount of the sends it still
    /// counts: the span before it for a sliding window, the bucket's debt from those sends for
    /// a bucket, every send of its calendar minute for calendar minutes (issue 26). Its checks
    /// ahead made a sliding window forget that span, and a calendar one every minute but the
    /// last it planned in; it keeps them aside now.
    /// A client's sliding replica that recorded what a token-bucket server admitted brackets
    /// the server's retry instant for each refusal (`bucket_retry`, exactly within the first
    /// span, when nothing was sent before); turned into buckets (`measure_buckets`) and told
    /// each refusal's retry (`calibrate_bucket`), it never admits a send the server refuses,
    /// nor names a retry before the server's; with one per-minute limit it names the
    /// server's, a nanosecond of rounding aside (with two, the one no 429 named stays as
    /// counted from the drained bucket it started from: safe, and later by at most that).
    #[test]
    fn a_sliding_replica_brackets_a_buckets_retry_and_plans_the_bucket_from_429s() {
        for tpm in [Some(1_000), None] {
            let limits = Limits {
                rpm: Some(4),
                tpm,
                ..Limits::default()
            };
            replica_plans_a_bucket_from_429s(limits, tpm.is_none());
        }
    }

    fn replica_plans_a_bucket_from_429s(limits: Limits, exact: bool) {
        use rand::Rng;
        let (mut server, sb) = ledger(WindowKind::Bucket, limits);
        let (mut replica, rb) = with_budget(empty(WindowKind::Sliding).exact_buckets(), limits);
        let mut r = crate::core::rng::rng(32, crate::core::rng::Stream::Strategy, 0, 0);
        let (mut now, mut refusals, mut buckets) = (0, 0, false);
        for step in 0..6_000 {
            now += r.random_range(0..3 * SECOND);
            replica.set_clock(now);
            let tokens = r.random_range(1..=400);
            if buckets {
                // The replica plans the bucket: whatever it admits, the server admits.
                let mine = replica.check(now, rb, None, tokens);
                match server.admit(now, sb, None, tokens, now) {
                    Admission::Admitted => replica.record(now, rb, None, tokens, now),
                    Admission::Rejected { violated, retry_at } => {
                        assert!(
                            mine != Admission::Admitted,
                            "step {step}: the replica admitted a refused send"
                        );
                        if let Admission::Rejected { retry_at: at, .. } = mine {
                            assert!(at + 1 >= retry_at, "step {step}: planned {at}, the server's {retry_at}");
                        }
                        replica.calibrate_bucket(now, rb, tokens, violated, retry_at);
                        let Admission::Rejected { retry_at: at, .. } = replica.check(now, rb, None, tokens) else {
                            panic!("step {step}: calibrated, it admits the refused send");
                        };
                        assert!(at + 1 >= retry_at, "step {step}: {at} against {retry_at}");
                        if exact {
                            assert!(at.abs_diff(retry_at) <= 1, "step {step}: {at} against {retry_at}");
                        }
                    }
                    a => panic!("{a:?}"),
                }
                continue;
            }
            match server.admit(now, sb, None, tokens, now) {
                Admission::Admitted => replica.record(now, rb, None, tokens, now),
                Admission::Rejected { violated, retry_at } => {
                    let (least, most) = replica.bucket_retry(now, rb, tokens, violated, &[]).expect("sliding");
                    assert!(
                        least <= retry_at && retry_at <= most,
                        "step {step}: {least} {retry_at} {most}"
                    );
                    if now < MINUTE {
                        assert_eq!(least, retry_at, "step {step}: nothing was sent before");
                    }
                    refusals += 1;
                    if refusals == 40 {
                        replica.measure_buckets(now);
                        replica.calibrate_bucket(now, rb, tokens, violated, retry_at);
                        buckets = true;
                    }
                }
                a => panic!("{a:?}"),
            }
        }
        assert!(buckets, "the server refused 40 sends");
    }

    #[test]
    fn a_replica_tells_what_a_send_now_meets_by_what_was_sent() {
        use rand::Rng;
        for window in [WindowKind::Sliding, WindowKind::Bucket, WindowKind::Fixed] {
            let (mut l, b) = with_budget(
                empty(window).lazy().exact_buckets(),
                Limits {
                    rpm: Some(4),
                    tpm: Some(1_000),
                    ..Limits::default()
                },
            );
            let mut r = crate::core::rng::rng(11, crate::core::rng::Stream::Strategy, 0, 0);
            // What the replica still counts: (instant, tokens).
            let mut sends: Vec<(Nanos, u64)> = Vec::new();
            let (mut now, mut last) = (0, 0);
            // Whether `tokens` more fit at `t` by the sends up to `t` (`extra`: not counted).
            let fits = |sends: &[(Nanos, u64)], t: Nanos, tokens: u64, extra: bool| -> bool {
                let more = [u64::from(extra), if extra { tokens } else { 0 }];
                match window {
                    WindowKind::Bucket => (0..2).all(|i| {
                        // The debt replayed send by send, refilled at the limit per minute.
                        let (limit, mut debt, mut at) = ([4u128, 1_000][i], 0u128, 0);
                        let mut ordered: Vec<_> = sends.iter().filter(|s| s.0 <= t).collect();
                        ordered.sort();
                        for &&(s, x) in &ordered {
                            debt = debt.saturating_sub(limit * u128::from(s - at));
                            debt += [1, u128::from(x)][i] * MINUTE as u128;
                            at = s;
                        }
                        debt = debt.saturating_sub(limit * u128::from(t - at));
                        debt + u128::from(more[i]) * MINUTE as u128 <= limit * MINUTE as u128
                    }),
                    // Every send of the calendar minute, whenever in it.
                    WindowKind::Fixed => {
                        let minute = |x: Nanos| calendar("2025-10-15T09:00:00-07:00").minute_start(x);
                        let inside = sends.iter().filter(|s| minute(s.0) == minute(t));
                        let held = inside.fold([0, 0], |h, s| [h[0] + 1, h[1] + s.1]);
                        held[0] + more[0] <= 4 && held[1] + more[1] <= 1_000
                    }
                    _ => {
                        let inside = sends.iter().filter(|s| s.0 <= t && s.0 + MINUTE > t);
                        let held = inside.fold([0, 0], |h, s| [h[0] + 1, h[1] + s.1]);
                        held[0] + more[0] <= 4 && held[1] + more[1] <= 1_000
                    }
                }
            };
            let mut told = 0;
            for step in 0..4_000 {
                now += r.random_range(0..4 * SECOND);
                l.set_clock(now);
                let tokens = r.random_range(1..=400);
                match r.random_range(0..10) {
                    // Plan a send as a planner does, at its budget's earliest room after its last.
                    0..=4 => {
                        if let Admission::Rejected { retry_at, .. } = l.check(last.max(now), b, None, tokens) {
                            last = retry_at;
                        }
                        last = last.max(now);
                        assert_eq!(l.check(last, b, None, tokens), Admission::Admitted, "step {step}");
                        l.commit(last, b, None, tokens, last);
                        sends.push((last, tokens));
                    }
                    // Withdraw one that still counts (a 503, a 400 for an invalid key, a plan
                    // moved; a bucket keeps sends exact a few minutes longer).
                    5 | 6 if sends.iter().any(|s| s.0 + MINUTE > now) => {
                        let live: Vec<usize> = (0..sends.len()).filter(|&i| sends[i].0 + MINUTE > now).collect();
                        let (at, x) = sends.swap_remove(live[r.random_range(0..live.len())]);
                        l.cancel(at, b, x);
                    }
                    // Put one back before the plans, where what was sent lets it in.
                    _ => {
                        let Some(at) = l.earliest_fit_through(now, b, tokens) else {
                            panic!("{window:?}: the replica cannot tell at step {step}");
                        };
                        assert!(
                            fits(&sends, at, tokens, true),
                            "{window:?} step {step}: {at} does not fit"
                        );
                        if at > now {
                            assert!(
                                !fits(&sends, at - 1, tokens, true),
                                "{window:?} step {step}: {at} is late"
                            );
                        }
                        l.insert(at, b, tokens);
                        sends.push((at, tokens));
                        told += 1;
                    }
                }
                for t in [now, now + 5 * SECOND, now + MINUTE / 2] {
                    let tokens = r.random_range(1..=400);
                    assert_eq!(
                        l.fits_through(t, b, tokens, false),
                        Some(fits(&sends, t, tokens, true)),
                        "{window:?} step {step} at {t}"
                    );
                }
            }
            assert!(told > 500, "{window:?}: {told}");
        }
        // A server's calendar minutes are kept as the current one alone: it cannot tell.
        let (mut f, fb) = ledger(WindowKind::Fixed, rpm(3));
        f.admit(10 * MINUTE, fb, None, 1, 10 * MINUTE);
        assert_eq!(f.fits_through(0, fb, 1, false), None);
        assert_eq!(f.earliest_fit_through(0, fb, 1), None);
    }

    /// A replica that planned sends minutes ahead, its windows having forgotten what the
    /// minute before its clock held, withdraws those plans: rewound, it reads the minute before
    /// its clock again (from what it kept aside) and plans from there; not rewound, it would
    /// take a send its windows have no room for (the third RPM 429 of hunt-296 before
    /// `Ledger::rewind`). A calendar minute is not rewound.
    #[test]
    fn a_rewound_replica_plans_from_its_clock_again() {
        for lazy in [false, true] {
            let mut l = empty(WindowKind::Sliding).exact_buckets();
            if lazy {
                l = l.lazy();
            }
            let (mut l, b) = with_budget(l, rpm(3));
            for t in [0, 10 * SECOND, 20 * SECOND] {
                l.set_clock(t);
                assert_eq!(l.check(t, b, None, 1), Admission::Admitted);
                l.commit(t, b, None, 1, t);
            }
            // Planned ahead at the RPM's pace, the clock still at 30 s.
            l.set_clock(30 * SECOND);
            let plans: Vec<Nanos> = (0..9).map(|i| MINUTE + i * 20 * SECOND).collect();
            for &t in &plans {
                assert_eq!(l.check(t, b, None, 1), Admission::Admitted, "{t}");
                l.commit(t, b, None, 1, t);
            }
            for &t in plans.iter().rev() {
                l.cancel(t, b, 1);
            }
            assert_eq!(l.rewind(b, 30 * SECOND), Some(30 * SECOND), "lazy {lazy}");
            let now = 30 * SECOND;
            assert!(
                matches!(l.check(now, b, None, 1), Admission::Rejected { retry_at, .. } if retry_at == MINUTE),
                "lazy {lazy}: {:?}",
                l.check(now, b, None, 1)
            );
            assert_eq!(l.fits_through(now, b, 1, false), Some(false));
            // And it plans on: the minute from 60 s takes three again.
            for t in [MINUTE, MINUTE + 10 * SECOND, MINUTE + 20 * SECOND] {
                assert_eq!(l.check(t, b, None, 1), Admission::Admitted, "lazy {lazy} at {t}");
                l.commit(t, b, None, 1, t);
            }
            assert!(matches!(
                l.check(MINUTE + 30 * SECOND, b, None, 1),
                Admission::Rejected { .. }
            ));
        }
        let (mut f, fb) = with_budget(empty(WindowKind::Fixed).exact_buckets(), rpm(3));
        f.commit(0, fb, None, 1, 0);
        assert_eq!(f.rewind(fb, 0), None);
    }

    #[test]
    fn a_lazy_ledger_answers_as_a_settled_one() {
        use crate::core::time::MILLISECOND;
        use rand::Rng;
        let cal = calendar("2025-10-15T09:00:00-07:00");
        let config = LedgerConfig::default();
        let mut exact = Ledger::new(cal.clone(), config).with_margin(50 * MILLISECOND);
        let mut lazy = Ledger::new(cal.clone(), config).with_margin(50 * MILLISECOND).lazy();
        // A client replica's: it also keeps what counts at its clock (`fits_through`).
        let mut kept = Ledger::new(cal, config)
            .with_margin(50 * MILLISECOND)
            .lazy()
            .exact_buckets();
        let limits = [
            Limits {
                rpm: Some(40),
                tpm: Some(40_000),
                ..Limits::default()
            },
            Limits {
                rpm: Some(25),
                ..Limits::default()
            },
            Limits {
                tpm: Some(9_000),
                rpd: Some(2_000),
                ..Limits::default()
            },
        ];
        let budgets: Vec<BudgetId> = limits
            .iter()
            .map(|&l| (exact.add_budget(l, 0), lazy.add_budget(l, 0), kept.add_budget(l, 0)).0)
            .collect();
        let mut r = crate::core::rng::rng(7, crate::core::rng::Stream::Strategy, 0, 0);
        let (mut now, mut sent, mut owed_seen) = (0, Vec::new(), false);
        for step in 0..60_000u32 {
            now += r.random_range(0..200 * MILLISECOND);
            let b = budgets[r.random_range(0..budgets.len())];
            let tokens = r.random_range(0..1_500);
            let ahead = now + r.random_range(0..4) * 30 * SECOND;
            kept.set_clock(now);
            let answer = exact.check(ahead, b, None, tokens);
            assert_eq!(answer, lazy.check(ahead, b, None, tokens), "step {step}");
            assert_eq!(answer, kept.check(ahead, b, None, tokens), "step {step}");
            let (w, cap) = (r.random_range(1..4), [Some(r.random_range(5..40)), None]);
            for l in [&mut exact, &mut lazy, &mut kept] {
                l.set_cap(b, cap);
            }
            let answer = exact.check_weighted(now, b, None, tokens, Dims::EMPTY, w);
            assert_eq!(
                answer,
                lazy.check_weighted(now, b, None, tokens, Dims::EMPTY, w),
                "step {step}"
            );
            assert_eq!(
                answer,
                kept.check_weighted(now, b, None, tokens, Dims::EMPTY, w),
                "step {step}"
            );
            for l in [&mut exact, &mut lazy, &mut kept] {
                l.set_cap(b, [None; 2]);
            }
            let admitted = exact.check(now, b, None, tokens);
            assert_eq!(admitted, lazy.check(now, b, None, tokens), "step {step}");
            assert_eq!(admitted, kept.check(now, b, None, tokens), "step {step}");
            match r.random_range(0..20) {
                0 => {
                    for l in [&mut exact, &mut lazy, &mut kept] {
                        l.force(now, b, None, tokens, now);
                    }
                    sent.push((now, b, tokens));
                }
                1 if !sent.is_empty() => {
                    let (at, b, tokens) = sent.swap_remove(r.random_range(0..sent.len()));
                    for l in [&mut exact, &mut lazy, &mut kept] {
                        l.cancel(at, b, tokens);
                    }
                }
                2 if !sent.is_empty() => {
                    let (at, b, tokens) = sent[r.random_range(0..sent.len())];
                    for l in [&mut exact, &mut lazy, &mut kept] {
                        l.refund_tokens(at, b, tokens);
                    }
                }
                3 => {
                    let at = now.saturating_sub(r.random_range(0..90 * SECOND));
                    for l in [&mut exact, &mut lazy, &mut kept] {
                        l.insert(at, b, tokens);
                    }
                }
                _ if admitted == Admission::Admitted => {
                    for l in [&mut exact, &mut lazy, &mut kept] {
                        l.commit(now, b, None, tokens, now);
                    }
                    sent.push((now, b, tokens));
                }
                _ => {}
            }
            if step % 5_000 == 4_999 {
                let m = r.random_range(0..3) * 100 * MILLISECOND;
                for l in [&mut exact, &mut lazy, &mut kept] {
                    l.set_margin(m);
                }
            }
            if step == 30_000 {
                for l in [&mut exact, &mut lazy, &mut kept] {
                    l.absorb(budgets[1], budgets[0]);
                }
            }
            if step == 50_000 {
                for l in [&mut exact, &mut lazy, &mut kept] {
                    l.measure_fixed();
                }
            }
            owed_seen |= lazy.held_entries() > exact.held_entries();
            for &v in &budgets {
                let at = now.saturating_sub(r.random_range(0..30 * SECOND));
                assert_eq!(exact.held_at(at, v), lazy.held_at(at, v), "step {step}");
            }
            if step % 97 == 0 {
                let usage = exact.usage(now, b, None);
                assert_eq!(usage, lazy.usage(now, b, None), "step {step}");
                assert_eq!(usage, kept.usage(now, b, None), "step {step}");
            }
        }
        assert!(owed_seen, "the lazy ledger never owed anything");
    }
}
