//! `live_reconnect` and `live_mixer`: the Live API clients people write themselves around
//! google-genai's `client.aio.live.connect` (issue 30 item 4), the two shapes of the seed cases:
//! one client looping sessions on its key (live-api-1011-loop), and a key mixer handing each
//! new session the next key (live-api-3-sessions-key-mixer: "5 Gmail accounts … instead of 3
//! concurrent conversations, you can now have 15").
//!
//! What the SDK does, read from google-genai 3.6.1 (`google/genai/live.py`, the PyPI wheel):
//! `AsyncLive.connect` opens one WebSocket, sends the setup and waits for its answer; a close
//! there (1011 "You exceeded your current quota…", or 1006) is raised as `APIError` with the
//! close's code and reason, a close later as websockets' `ConnectionClosedError`. It never
//! retries, reconnects or sleeps: `HttpOptions.retry_options` governs its HTTP calls only. So
//! the reconnect loop is the user's code, and so is its delay.
//!
//! Modelled:
//! - `live_reconnect`: one `genai.Client(api_key=…)`, the first key; every conversation is a
//!   session on it, opened at once; a session refused (close 1011, or 1006 when the scenario
//!   checks quota at the upgrade) is reconnected on the same key after the loop's delay.
//! - `live_mixer`: key-mixer (npm) per session: each connect — a new conversation or a
//!   reconnect — takes the next key of the keystore in strict rotation, over every key of
//!   every account, whatever project a key belongs to (keys of one project share its session
//!   limit) and whether it has been refused; the same loop around it.
//! - The loop's delay is the retry policy. Google documents no reconnect policy for Live and
//!   the SDK has none, so the default is a setting with a stated choice: the SDK's own HTTP
//!   backoff shape (1 s doubling to 60 s plus up to 1 s, tenacity's `wait_exponential_jitter`)
//!   without an attempt limit — a `while True` loop that sleeps as the SDK does between HTTP
//!   retries and never drops a conversation. A loop without a sleep is `retry = { policy =
//!   "immediate", max_attempts = 1000 }`; the forum's loop, which catches only
//!   `ConnectionClosedOK` and so dies at the first 1011, is `retry = { policy = "none" }`.
//!
//! Not modelled: session resumption after a `goAway` or the session-length cap (the
//! conversation is counted as ended there, as for every strategy); the loop reading the close
//! reason (a 1011 for quota and one for a backend failure are retried alike); a second client
//! per key.

use super::kind::{KindDef, Params};
use super::retry::{Jitter, RetryPolicy};
use super::round_robin::RoundRobin;
use super::{Ask, Decision, Outcome, Strategy};
use crate::core::time::{Nanos, SECOND};

/// The reconnect loop's default delay: the SDK's HTTP backoff shape, no attempt limit.
pub const RECONNECT: RetryPolicy = RetryPolicy::Backoff {
    base: SECOND,
    cap: 60 * SECOND,
    jitter: Jitter::Plus(SECOND),
    max_attempts: u32::MAX,
};

/// `live_reconnect` as the registry (`strategy::KINDS`) knows it.
pub(super) const RECONNECT_KIND: KindDef = KindDef {
    name: "live_reconnect",
    help: "google-genai's live.connect in a reconnect loop: one client, the first key; a refused session reconnects after 1 s doubling to 60 s (+0..1 s), never giving up",
    takes: &[],
    requires: &[],
    defaults: Params::NONE,
    retry: RECONNECT,
    live: true,
    rest: false,
    build: |_, _| Box::new(OneKey),
};

/// `live_mixer` as the registry (`strategy::KINDS`) knows it.
pub(super) const MIXER_KIND: KindDef = KindDef {
    name: "live_mixer",
    help: "key-mixer per Live session: each connect (reconnects too) takes the next key in strict rotation, around google-genai's live.connect in the same reconnect loop",
    takes: &[],
    requires: &[],
    defaults: Params::NONE,
    retry: RECONNECT,
    live: true,
    rest: false,
    build: |env, _| Box::new(RoundRobin::new(&env)),
};

/// One client on the first key: every session on it, at once.
#[derive(Debug, Clone, Copy)]
pub struct OneKey;

impl Strategy for OneKey {
    fn decide(&mut self, now: Nanos, ask: &Ask) -> Decision {
        Decision::Send {
            key: 0,
            model: ask.model,
            at: now,
        }
    }

    /// A close names no dimension; it reads nothing of a 429 either.
    fn tells_unservable(&self) -> bool {
        false
    }

    fn on_outcome(&mut self, _: Nanos, _: &Ask, _: usize, _: usize, _: Nanos, _: &Outcome) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::tests::{ask, env, send};

    /// The reconnect loop stays on its one key, refused or not; the mixer moves on at every
    /// connect, reconnects included.
    #[test]
    fn the_loop_keeps_its_key_and_the_mixer_rotates_per_connect() {
        let e = env(&[0, 0, 1], None);
        let refused = Outcome::RateLimited {
            violated: crate::core::ledger::Dims::EMPTY,
            retry_delay: None,
            quota: crate::core::ledger::Limits::UNLIMITED,
            quota_model: None,
        };
        let mut one = (RECONNECT_KIND.build)(
            e.clone(),
            &crate::strategy::StrategySpec::builtin("live_reconnect", 1).unwrap(),
        );
        let mut mix = (MIXER_KIND.build)(e, &crate::strategy::StrategySpec::builtin("live_mixer", 1).unwrap());
        let (mut a, mut b) = (Vec::new(), Vec::new());
        for t in 0..5 {
            let (k, _) = send(one.decide(t, &ask(t, 1)));
            one.on_outcome(t, &ask(t, 1), k, 0, t, &refused);
            a.push(k);
            let (k, _) = send(mix.decide(t, &ask(0, 1)));
            mix.on_outcome(t, &ask(0, 1), k, 0, t, &refused);
            b.push(k);
        }
        assert_eq!(a, [0, 0, 0, 0, 0]);
        assert_eq!(b, [0, 1, 2, 0, 1]);
    }

    /// The loop's delay: 1 s doubling to 60 s plus up to 1 s, and it never gives up.
    #[test]
    fn the_reconnect_loop_backs_off_and_never_gives_up() {
        let closed = Outcome::RateLimited {
            violated: crate::core::ledger::Dims::EMPTY,
            retry_delay: None,
            quota: crate::core::ledger::Limits::UNLIMITED,
            quota_model: None,
        };
        let d = |n| RECONNECT.next_delay(n, &closed, 0.5).expect("retried");
        assert_eq!(d(1), SECOND + SECOND / 2);
        assert_eq!(d(2), 2 * SECOND + SECOND / 2);
        assert_eq!(d(7), 60 * SECOND);
        assert_eq!(d(100_000), 60 * SECOND);
        assert_eq!(
            RECONNECT.describe(),
            "backoff 1s→60s, +0..1s jitter, unlimited attempts"
        );
    }
}
