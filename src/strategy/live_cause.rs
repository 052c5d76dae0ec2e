//! What a Live session closed with a 1011 that names nothing was refused for (issue 26): a
//! limit on sessions, whose closed sessions may keep their slots a while longer (a hold: a
//! release delay, a turn left early playing on), or a limit on the minute's input tokens (the
//! `*-live` models of 2026). flux, told neither, keeps per budget the evidence for and against
//! each, as intervals that every admitted and every refused session narrows, so that either
//! cause can be refuted by what it sees, and neither is believed because it was guessed first.
//!
//! - **Sessions, `C` slots and a hold `h`**: a session reaching the server at `τ` meets the
//!   sessions sent before it on the same budget (and admitted): a slot is taken while a
//!   session is open, and for `h` after the instant flux believes the server freed it. With
//!   `r_(C)` the `C`-th latest of those instants (an open session's counts as never), the
//!   server has a slot free for it iff `r_(C) + h ≤ τ`. So an admitted session bounds the hold
//!   from above, `h ≤ τ − r_(C)` (no hold at all fits if `C` sessions were still open: `C` is
//!   refuted), and a refused one from below, `h > τ − r_(C)` (no hold fits if fewer than `C`
//!   sessions were ever there). Every `C` up to [`WEIGHED`] keeps its interval; a limit is
//!   refuted when its interval is empty or lies beyond the longest hold believed.
//! - **Tokens per minute**: the minute's tokens with an admitted session are at most the
//!   limit, with a refused one more: the limit fits iff the most any admitted session met is
//!   below the least any refused one met. The minute is read both ways a server may count it,
//!   the sliding 60 s before the session and the calendar minute it falls in, each kept
//!   apart: a server counting calendar minutes refutes the sliding reading (a sliding minute
//!   holds its calendar minute and more, so admitted ones meet more than refused ones), and a
//!   sliding one the calendar reading, so the evidence also tells which way the server counts.
//!
//! Both are read with the sessions flux sent itself, in the order it sent them; instants are
//! compared with [`SLACK`] to spare (a constant gap between when flux believes a slot freed
//! and when the server freed it is part of the hold, and only that gap's variation must fit
//! in the slack). Pure: no clock, no I/O.

use crate::core::time::{Nanos, SECOND};

/// Session limits weighed, `1..=WEIGHED`; a larger one is never refuted.
pub const WEIGHED: usize = 64;
/// How far apart two instants must be to contradict each other.
pub const SLACK: Nanos = SECOND;

/// The evidence on one budget (a project and model).
#[derive(Debug, Clone)]
pub struct Causes {
    /// Per session limit `C` (index `C − 1`): the hold is more than this (ns; `i64::MIN`:
    /// nothing says so yet).
    above: Vec<i64>,
    /// Per session limit `C`: the hold is at most this (`i64::MAX`: nothing says so yet).
    below: Vec<i64>,
    /// The most tokens a minute held with an admitted session: `[sliding, calendar]`.
    admitted_tokens: [u64; 2],
    /// The fewest tokens a minute held with a refused session (`u64::MAX`: none refused):
    /// `[sliding, calendar]`.
    refused_tokens: [u64; 2],
}

/// Which way a minute is read: the sliding 60 s before an instant (0) or its calendar minute
/// (1), as indexes of [`Causes`]' token evidence.
fn way(calendar: bool) -> usize {
    usize::from(calendar)
}

impl Default for Causes {
    fn default() -> Self {
        Causes {
            above: vec![i64::MIN; WEIGHED],
            below: vec![i64::MAX; WEIGHED],
            admitted_tokens: [0; 2],
            refused_tokens: [u64::MAX; 2],
        }
    }
}

impl Causes {
    /// A session reached the server at `at` and was `admitted` (or refused), the minute
    /// holding `tokens` with it (`[sliding, calendar]`); `frees` holds, for each session sent before it on the budget
    /// and admitted, when flux believes the server freed its slot (`None`: it was still open
    /// at `at`). `frees` is reordered.
    pub fn record(&mut self, at: Nanos, frees: &mut [Option<Nanos>], tokens: [u64; 2], admitted: bool) {
        // Open ones (None) before every close, then the latest close first.
        frees.sort_unstable_by_key(|f| f.map(std::cmp::Reverse));
        let slack = SLACK as i64;
        for c in 0..WEIGHED {
            // τ − r_(C): how long before the session the C-th latest slot was freed.
            let gap = match frees.get(c) {
                None => i64::MAX,
                Some(None) => i64::MIN,
                Some(&Some(r)) => at as i64 - r as i64,
            };
            if admitted {
                self.below[c] = self.below[c].min(gap.saturating_add(slack));
            } else {
                self.above[c] = self.above[c].max(gap.saturating_sub(slack));
            }
        }
        for (i, t) in tokens.into_iter().enumerate() {
            if admitted {
                self.admitted_tokens[i] = self.admitted_tokens[i].max(t);
            } else {
                self.refused_tokens[i] = self.refused_tokens[i].min(t);
            }
        }
    }

    /// Whether a limit of `c` sessions, with some hold no longer than `longest`, explains
    /// every session recorded. A limit above [`WEIGHED`] is refuted only by a refusal with
    /// fewer than [`WEIGHED`] sessions before it.
    pub fn sessions_explain(&self, c: u64, longest: Nanos) -> bool {
        if c == 0 {
            return false;
        }
        let Some(i) = usize::try_from(c - 1).ok().filter(|&i| i < WEIGHED) else {
            return self.above[WEIGHED - 1] < i64::MAX - SLACK as i64;
        };
        let (above, below) = (self.above[i], self.below[i]);
        above < below && below >= 0 && above < longest as i64
    }

    /// Whether some limit on sessions, with some hold no longer than `longest`, explains
    /// every session recorded.
    pub fn some_session_limit_explains(&self, longest: Nanos) -> bool {
        (1..=WEIGHED as u64 + 1).any(|c| self.sessions_explain(c, longest))
    }

    /// Whether a limit on the minute's tokens, counted by `calendar` minutes or sliding ones,
    /// explains every session recorded: the most an admitted session's minute held is below
    /// the least a refused one's did.
    pub fn tokens_explain(&self, calendar: bool) -> bool {
        self.admitted_tokens[way(calendar)] < self.refused_tokens[way(calendar)]
    }

    /// The most tokens a minute (counted by `calendar` minutes or sliding ones) held with an
    /// admitted session (0: none admitted yet).
    pub fn admitted_tokens(&self, calendar: bool) -> u64 {
        self.admitted_tokens[way(calendar)]
    }

    /// The fewest tokens a minute (counted by `calendar` minutes or sliding ones) held with a
    /// refused session, if any was.
    pub fn refused_tokens(&self, calendar: bool) -> Option<u64> {
        let t = self.refused_tokens[way(calendar)];
        (t != u64::MAX).then_some(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Nanos = SECOND;

    /// Sessions refused with fewer open than a limit and no close before them cannot be
    /// explained by that limit and any hold; a limit of the sessions open can, until a session
    /// is admitted with as many open.
    #[test]
    fn a_limit_is_refuted_by_a_refusal_with_no_close_to_hold_its_slot() {
        let mut c = Causes::default();
        // Two admitted with 0 and 1 open, a third refused with 2 open.
        c.record(0, &mut [], [5_000; 2], true);
        c.record(0, &mut [None], [10_000; 2], true);
        c.record(0, &mut [None, None], [15_000; 2], false);
        assert!(c.sessions_explain(2, 15 * 60 * S));
        assert!(!c.sessions_explain(3, 15 * 60 * S), "nothing held a third slot");
        assert!(!c.sessions_explain(1, 15 * 60 * S), "admitted with one open");
        assert!(c.some_session_limit_explains(15 * 60 * S));
        assert!(c.tokens_explain(false));
        // A minute later, admitted with both still open: no limit on sessions explains it all.
        c.record(60 * S, &mut [None, None], [12_000; 2], true);
        assert!(!c.sessions_explain(2, 15 * 60 * S));
        assert!(!c.some_session_limit_explains(15 * 60 * S));
        assert!(c.tokens_explain(false));
    }

    /// A release delay: refused 1 s after a close, admitted 6 s after one: a limit of 3 with a
    /// hold of 1-6 s explains both; the tokens do not (the refused minute held less).
    #[test]
    fn a_hold_explains_refusals_soon_after_a_close() {
        let mut c = Causes::default();
        c.record(100 * S, &mut [None, None, Some(99 * S)], [3_000; 2], false);
        c.record(106 * S, &mut [None, None, Some(99 * S)], [3_500; 2], true);
        assert!(c.sessions_explain(3, 15 * 60 * S));
        assert!(!c.tokens_explain(false));
        // Refused 20 s after a close where 7 s after one was admitted: no hold fits.
        c.record(200 * S, &mut [None, None, Some(193 * S)], [3_000; 2], true);
        c.record(300 * S, &mut [None, None, Some(280 * S)], [3_000; 2], false);
        assert!(!c.sessions_explain(3, 15 * 60 * S));
    }

    /// A server counting calendar minutes: a session admitted early in a minute meets more in
    /// the sliding 60 s before it than one refused late in the minute after (the sliding
    /// reading is refuted), while the calendar minutes tell them apart.
    #[test]
    fn calendar_minutes_refute_the_sliding_reading_and_explain_the_refusals() {
        let mut c = Causes::default();
        // 59 s: the first minute reaches 18,000; 61 s: admitted, 18,000 + 3,000 in the sliding
        // minute, 3,000 in its calendar one; 119 s: refused, the second minute holding 19,000
        // with it and 14,000 of the sliding 60 s.
        c.record(59 * S, &mut [], [18_000, 18_000], true);
        c.record(61 * S, &mut [], [21_000, 3_000], true);
        c.record(119 * S, &mut [], [14_000, 19_000], false);
        assert!(!c.tokens_explain(false));
        assert!(c.tokens_explain(true));
        assert_eq!(
            (c.admitted_tokens(true), c.refused_tokens(true)),
            (18_000, Some(19_000))
        );
        assert_eq!(c.refused_tokens(false), Some(14_000));
    }
}
