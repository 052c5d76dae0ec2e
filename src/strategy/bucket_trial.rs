//! Token buckets that count refusals, on trial against `flux`'s belief in sliding windows
//! (issue 26, hunt-221).
//!
//! A server whose per-minute windows are token buckets and that counts a refused request
//! against RPM (`server.window = "bucket"`, `count_rejected = true`) can name, at a first 429,
//! the very instant a sliding window that does not count refusals names: two requests a
//! minute, sent at 0 s and 2.4 s, the third refused at 4.4 s, are retried at 60 s by both (the
//! bucket started full, took three, and refills one every 30 s). `flux` then believed sliding
//! windows, refusals not counted, for good; and each minute after, a send its sliding windows
//! had room for met the bucket still owing the refusal: a 429 per request (2,996 of 3,000
//! told ±50% or nothing, at half exact_cooldown's pace). Over HTTP, where a retry is timed
//! from an instant between the send and its answer, the refusal's counting was not told
//! apart at all; sliding windows counting refusals fare no better under such a bucket.
//!
//! So at a per-minute 429 on RPM alone, while `flux` believes sliding windows (counting
//! refusals, not counting them, or not knowing), the refused budget's counting bucket is put
//! on trial: a bucket whose level the retry fixes (the instant a request fits is the retry:
//! [`Ledger::calibrate_bucket`]), then taking one request for every send on the budget,
//! admitted or refused. At the budget's next RPM 429 the trial bucket names a retry: the
//! server's, to the millisecond (and the two 429s' round trips, over a network), and the
//! hypothesis explained what sliding windows could not (`flux` then plans counting buckets);
//! any other instant refutes it, and that budget is never tried again. A trial that met no
//! 429 within [`TRIAL_SPAN`] ends undecided. Sends the trial cannot see (peers, a re-routed
//! id) make its bucket wrong, and a wrong bucket names a wrong instant: it is refuted, never
//! adopted.

use rustc_hash::{FxHashMap, FxHashSet};

use crate::core::ledger::{Admission, BudgetId, Dimension, Dims, Ledger, LedgerConfig, Limits, WindowKind};
use crate::core::time::{Calendar, Nanos, MILLISECOND, MINUTE};

/// How long a trial waits for the next 429 on its budget: then it ends undecided (a budget
/// whose sliding plan meets no 429 needs no other belief).
const TRIAL_SPAN: Nanos = 3 * MINUTE;

/// The budgets on trial and those done with.
#[derive(Debug, Clone)]
pub(super) struct BucketTrials {
    /// One bucket per budget ever on trial (a ledger's budgets are never removed; a budget
    /// is tried once), kept as its sends so that a calibration is exact.
    ledger: Ledger,
    /// Per planner budget on trial: its trial.
    on: FxHashMap<BudgetId, Trial>,
    /// Budgets tried already (refuted, adopted, or ended undecided).
    done: FxHashSet<BudgetId>,
}

/// One budget's trial.
#[derive(Debug, Clone, Copy)]
struct Trial {
    /// Its bucket in the trials' ledger.
    bucket: BudgetId,
    /// When it ends undecided.
    until: Nanos,
    /// A unit that plans on the budget.
    unit: usize,
    /// How long the 429 that calibrated it took to come back.
    late: Nanos,
}

/// What a trial says of a 429 on its budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Verdict {
    /// No trial on that budget.
    None,
    /// The counting bucket names the server's retry: the trial ends, the hypothesis holds.
    Explains,
    /// It names another instant (or no wait): the trial ends, the hypothesis refuted.
    Refuted,
}

impl BucketTrials {
    /// No trial yet, reckoning days by `calendar`.
    pub(super) fn new(calendar: Calendar) -> Self {
        let config = LedgerConfig {
            window: WindowKind::Bucket,
            count_rejected: false,
        };
        BucketTrials {
            ledger: Ledger::new(calendar, config).exact_buckets(),
            on: FxHashMap::default(),
            done: FxHashSet::default(),
        }
    }

    /// Whether any trial is on (sends need recording).
    #[inline]
    pub(super) fn any(&self) -> bool {
        !self.on.is_empty()
    }

    /// Puts budget `b`'s (unit `u`'s) counting bucket of `rpm` requests a minute on trial: a
    /// 429 for a send made at `sent` came back at `now` saying a request fits at `retry_at`.
    /// Nothing if `b` is on trial or was tried.
    /// `later`: the sends on `b` made after that one and before `now` (in order), which a
    /// counting bucket counted after it: a round trip's sends, none in a simulation whose 429s
    /// come back at once (blind to them, the trial named the same retry as the sliding window
    /// the server kept, and took it for a counting bucket: `errors-late` at seed 1).
    pub(super) fn start(
        &mut self,
        (b, u): (BudgetId, usize),
        rpm: u64,
        (sent, now): (Nanos, Nanos),
        retry_at: Nanos,
        later: &[Nanos],
    ) {
        if rpm == 0 || self.on.contains_key(&b) || self.done.contains(&b) {
            return;
        }
        let limits = Limits {
            rpm: Some(rpm),
            ..Limits::UNLIMITED
        };
        let bucket = self.ledger.add_budget(limits, 0);
        let rpm_alone: Dims = [Dimension::Rpm].into_iter().collect();
        match later {
            [] => self.ledger.calibrate_bucket(now, bucket, 0, rpm_alone, retry_at),
            _ => {
                self.ledger.calibrate_bucket(sent, bucket, 0, rpm_alone, retry_at);
                for &at in later {
                    self.ledger.set_clock(at);
                    self.ledger.force(at, bucket, None, 0, at);
                }
            }
        }
        let trial = Trial {
            bucket,
            until: now.saturating_add(TRIAL_SPAN),
            unit: u,
            late: now.saturating_sub(sent),
        };
        self.on.insert(b, trial);
    }

    /// A send on budget `b` reached the server at `at`: its bucket on trial takes a request.
    pub(super) fn sent(&mut self, b: BudgetId, at: Nanos) {
        let Some(&trial) = self.on.get(&b) else {
            return;
        };
        if at > trial.until {
            self.end(b);
            return;
        }
        self.ledger.set_clock(at);
        self.ledger.force(at, trial.bucket, None, 0, at);
    }

    /// A 429 on budget `b` for a send made at `sent` (recorded already) came back at `now`
    /// naming `retry_at` for a request, read from the send: the trial's verdict, which ends it.
    /// The server decided each 429 somewhere between its send and its answer, and timed its
    /// retry from then: the trial's instant lies from `retry_at` to this round trip later,
    /// within a millisecond and the trial's own round trip (none in a simulation whose errors
    /// come back at once).
    pub(super) fn judge(&mut self, b: BudgetId, sent: Nanos, now: Nanos, retry_at: Nanos) -> Verdict {
        let Some(&trial) = self.on.get(&b) else {
            return Verdict::None;
        };
        // `retry_at` is read from the send; the server decided between the send and the 429's
        // coming back, so its instant is that much later at most (a slack on both sides, the
        // round trip's, took a sliding window's 429 for a counting bucket's 150 ms off).
        let (ms, late) = (MILLISECOND + trial.late, now.saturating_sub(sent));
        self.end(b);
        if now > trial.until {
            return Verdict::None;
        }
        match self.ledger.check(now, trial.bucket, None, 0) {
            Admission::Rejected { retry_at: named, .. }
                if named.saturating_add(ms) >= retry_at && named <= retry_at.saturating_add(late + ms) =>
            {
                Verdict::Explains
            }
            _ => Verdict::Refuted,
        }
    }

    /// Ends every trial (the hypothesis holds): none starts again. Returns, for each budget
    /// still on trial, a unit of it and when its counting bucket has room for a request at
    /// `now` or later: what the planner's bucket owes (it knew less), in budget order.
    pub(super) fn end_all(&mut self, now: Nanos) -> Vec<(usize, Nanos)> {
        let mut on: Vec<(BudgetId, Trial)> = self.on.drain().collect();
        on.sort_unstable_by_key(|&(b, _)| b.0);
        let mut room = Vec::new();
        for (b, trial) in on {
            self.done.insert(b);
            if now <= trial.until {
                let fit = match self.ledger.check(now, trial.bucket, None, 0) {
                    Admission::Rejected { retry_at, .. } => retry_at,
                    _ => now,
                };
                room.push((trial.unit, fit));
            }
        }
        room
    }

    fn end(&mut self, b: BudgetId) {
        self.on.remove(&b);
        self.done.insert(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::SECOND;

    fn calendar() -> Calendar {
        Calendar::new(
            chrono::DateTime::parse_from_rfc3339("2026-03-10T14:55:00-08:00").unwrap(),
            chrono_tz::America::Los_Angeles,
        )
    }

    /// hunt-221's first project: 2 RPM, sends at 0 s and 2.392 s, a third refused at 4.42 s
    /// with a retry at 60 s (what a sliding window of the sends names too); the trial starts
    /// there, takes the send admitted at 60 s and the one refused at 62.392 s, and names that
    /// one's retry, 120 s, as the counting bucket does.
    #[test]
    fn a_counting_bucket_names_the_retry_a_sliding_window_cannot() {
        let mut t = BucketTrials::new(calendar());
        let b = BudgetId(3);
        t.start((b, 0), 2, (4_420 * MILLISECOND, 4_420 * MILLISECOND), 60 * SECOND, &[]);
        assert!(t.any());
        t.sent(b, 60 * SECOND);
        t.sent(b, 62_392 * MILLISECOND);
        assert_eq!(
            t.judge(b, 62_392 * MILLISECOND, 62_392 * MILLISECOND, 120 * SECOND),
            Verdict::Explains
        );
        assert!(!t.any());
        // Tried once: not again.
        t.start((b, 0), 2, (130 * SECOND, 130 * SECOND), 180 * SECOND, &[]);
        assert!(!t.any());
    }

    /// Over a network each 429 comes back 5 ms after its send, and its retry is timed from
    /// the server's instant in between: the trial still names the server's retry, within the
    /// round trips; 40 ms off is another instant.
    #[test]
    fn round_trips_are_allowed_for() {
        let ms = MILLISECOND;
        for (named, verdict) in [(120_003 * ms, Verdict::Explains), (120_040 * ms, Verdict::Refuted)] {
            let mut t = BucketTrials::new(calendar());
            let b = BudgetId(0);
            t.start((b, 0), 2, (4_420 * ms, 4_425 * ms), 60_003 * ms, &[]);
            t.sent(b, 60_000 * ms);
            t.sent(b, 62_392 * ms);
            assert_eq!(t.judge(b, 62_392 * ms, 62_397 * ms, named), verdict);
        }
    }

    /// A sliding window that does not count refusals names the oldest send + 60 s: the send
    /// at 60 s leaves room at 62.392 s, and a refusal there (peers' sends, a late network)
    /// names 120 s + what they sent, which the counting bucket does not: refuted.
    #[test]
    fn another_instant_refutes_it() {
        let mut t = BucketTrials::new(calendar());
        let b = BudgetId(0);
        t.start((b, 0), 2, (4_420 * MILLISECOND, 4_420 * MILLISECOND), 60 * SECOND, &[]);
        t.sent(b, 60 * SECOND);
        t.sent(b, 62_392 * MILLISECOND);
        assert_eq!(
            t.judge(b, 62_392 * MILLISECOND, 62_392 * MILLISECOND, 122_392 * MILLISECOND),
            Verdict::Refuted
        );
        assert_eq!(
            t.judge(b, 62_392 * MILLISECOND, 62_392 * MILLISECOND, 120 * SECOND),
            Verdict::None
        );
    }

    /// A trial that met no 429 within its span ends undecided; other budgets are apart.
    #[test]
    fn a_trial_ends_after_its_span() {
        let mut t = BucketTrials::new(calendar());
        t.start((BudgetId(0), 0), 2, (0, 0), 60 * SECOND, &[]);
        t.start((BudgetId(1), 1), 2, (0, 0), 60 * SECOND, &[]);
        t.sent(BudgetId(0), TRIAL_SPAN + 1);
        assert_eq!(
            t.judge(BudgetId(0), TRIAL_SPAN + 2, TRIAL_SPAN + 2, TRIAL_SPAN + MINUTE),
            Verdict::None
        );
        assert!(t.any());
        // The other's bucket, full again by then, takes two: room for one more 30 s on.
        t.sent(BudgetId(1), TRIAL_SPAN);
        t.sent(BudgetId(1), TRIAL_SPAN);
        assert_eq!(t.end_all(TRIAL_SPAN), vec![(1, TRIAL_SPAN + 30 * SECOND)]);
        assert!(!t.any());
    }
}
