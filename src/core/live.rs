//! Live API sessions (pure): what a session's client does (turns, pauses, when it closes) and
//! the rules the server plays by (when it ends a session, how long it keeps a session's slot),
//! and from both the plan of one admitted session — when the client sees each turn end, when it
//! closes, why the session ended and when the server frees its concurrency slot.
//!
//! Google documents the concurrent-session limit, the session length caps (audio 15 min,
//! audio + video 2 min), the connection lifetime (about 10 min: `goAway`, then close 1008) and
//! that a quota refusal is `setupComplete` then close 1011. It does not document how long a
//! closed session keeps its slot, nor whether a turn the client walked away from keeps running:
//! those are [`LiveRules`] settings with documented defaults.

use crate::core::dist::{Latency, TokenDist};
use crate::core::rng::{rng, Stream};
use crate::core::time::{Nanos, MILLISECOND, MINUTE, SECOND};

/// The reason of a quota close (code 1011) as clients receive it: cut to the 123 bytes a close
/// frame can carry.
pub const QUOTA_CLOSE_REASON: &str = "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: h";

/// Close code of a quota refusal (and of every other server-side error: see [`CloseCause`]).
pub const CLOSE_QUOTA: u16 = 1011;

/// The reason of a session-cap close (code 1011), after a `goAway` (sokuji #179, pydantic-ai
/// #6643; facts/gemini-2026-12.md §3.6).
pub const DEADLINE_CLOSE_REASON: &str = "Deadline expired before operation could complete.";

/// The reason of a backend-failure close (code 1011) (adk-streaming-guide #11).
pub const BACKEND_CLOSE_REASON: &str = "The service is currently unavailable.";

/// The reason of a resume-collision close (code 1011): a session resumed (setup with a
/// `sessionResumption.handle`) while an earlier socket of the same session is still open
/// (sip-to-ai PR #14, 2026-09-18; facts/gemini-2026-12.md §3.6). The text is the one that
/// project's test server sends "like the real server (verified against gemini-3.8-live)"
/// (its tests/test_gemini_resumption.py): one source, not Google's documentation.
pub const RESUME_CLOSE_REASON: &str = "Internal error encountered";

/// Why the server closed a Live session with 1011: the code is the same for all of them, only
/// the reason tells them apart (facts/gemini-2026-12.md §3.6), so a client that learns from
/// quota closes must read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseCause {
    /// A quota is exceeded: "You exceeded your current quota…".
    Quota,
    /// The session reached its length cap: "Deadline expired before operation could complete."
    Deadline,
    /// The backend failed: "The service is currently unavailable."
    Backend,
    /// A resumption while the session's earlier socket is still open: "Internal error
    /// encountered" (close it before resuming).
    Resume,
}

impl CloseCause {
    /// The close reason the server sends.
    pub fn reason(self) -> &'static str {
        match self {
            CloseCause::Quota => QUOTA_CLOSE_REASON,
            CloseCause::Deadline => DEADLINE_CLOSE_REASON,
            CloseCause::Backend => BACKEND_CLOSE_REASON,
            CloseCause::Resume => RESUME_CLOSE_REASON,
        }
    }

    /// The cause of a close with `code` and `reason` as a client receives it (the reason may
    /// be cut to a close frame's 123 bytes), or `None` for another close.
    pub fn of(code: u16, reason: &str) -> Option<CloseCause> {
        if code != CLOSE_QUOTA {
            return None;
        }
        [
            CloseCause::Quota,
            CloseCause::Deadline,
            CloseCause::Backend,
            CloseCause::Resume,
        ]
        .into_iter()
        .find(|c| {
            let full = c.reason();
            // A reason cut short still starts the full one; a minimal prefix is required.
            reason.len() >= 16 && (full.starts_with(reason) || reason.starts_with(full))
        })
    }
}

/// What a session's answers carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Modality {
    /// Spoken answers (`response_modalities = ["AUDIO"]`): a turn completes when its audio has
    /// played in real time; sessions last at most [`LiveRules::audio_cap`].
    #[default]
    Audio,
    /// Spoken answers to audio and video input: at most [`LiveRules::video_cap`].
    AudioVideo,
    /// Text answers: a turn completes when its generation does (cap as audio).
    Text,
}

/// When the client closes after its last turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CloseAfter {
    /// At `turnComplete` (the end of the model's turn, audio played out).
    #[default]
    TurnComplete,
    /// At `generationComplete` (the model has generated everything; its turn may still run).
    GenerationComplete,
}

/// A session workload's client: turns of the workload's token sizes, a pause before each next
/// turn, and how it ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionSpec {
    /// Turns per session (at least 1).
    pub turns: u32,
    /// After a turn, how long the client waits before sending the next.
    pub pause: Nanos,
    /// After its last turn, how long the client keeps the session open before closing.
    pub hold: Nanos,
    /// What the answers carry.
    pub modality: Modality,
    /// Whether the client waits for `turnComplete` or leaves at `generationComplete`.
    pub close_after: CloseAfter,
}

/// Whether a turn the client closed on keeps running on the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EarlyClose {
    /// A session closed before its turn completed keeps its slot until the turn would have
    /// completed (the default: it explains the 1011s of a one-session-at-a-time loop).
    #[default]
    HoldsTurn,
    /// Closing ends the turn and the session at once.
    Releases,
}

/// When the server checks a new session against its quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QuotaCheck {
    /// After `setup`: the client gets `setupComplete`, then close 1011 after
    /// [`LiveRules::reject_delay`] (what users report).
    #[default]
    Setup,
    /// At the WebSocket upgrade: HTTP 429, which clients report as close 1006.
    Connect,
}

/// How the server runs Live sessions (`[server.live]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveRules {
    /// From the client's `setup` message to `setupComplete`.
    pub setup: Nanos,
    /// From `setupComplete` to the 1011 close of a refused session.
    pub reject_delay: Nanos,
    /// Where the quota check happens.
    pub quota_check: QuotaCheck,
    /// How long a session's slot stays taken after the session ends.
    pub release: Nanos,
    /// What closing before `turnComplete` does.
    pub early_close: EarlyClose,
    /// How long a connection lasts before the server closes it with 1008.
    pub lifetime: Nanos,
    /// How long before the lifetime's end `goAway` comes (its `timeLeft`).
    pub go_away: Nanos,
    /// Longest audio (and text) session.
    pub audio_cap: Nanos,
    /// Longest audio + video session.
    pub video_cap: Nanos,
    /// Audio tokens played per second (a turn of N output tokens plays N / this seconds).
    pub audio_tokens_per_second: u64,
}

impl Default for LiveRules {
    fn default() -> Self {
        LiveRules {
            setup: 300 * MILLISECOND,
            reject_delay: 800 * MILLISECOND,
            quota_check: QuotaCheck::Setup,
            release: 0,
            early_close: EarlyClose::HoldsTurn,
            lifetime: 10 * MINUTE,
            go_away: 50 * SECOND,
            audio_cap: 15 * MINUTE,
            video_cap: 2 * MINUTE,
            audio_tokens_per_second: 32,
        }
    }
}

impl LiveRules {
    /// The longest a session of `modality` may last.
    pub fn cap(&self, modality: Modality) -> Nanos {
        match modality {
            Modality::AudioVideo => self.video_cap,
            Modality::Audio | Modality::Text => self.audio_cap,
        }
    }

    /// How long the audio of `tokens` output tokens plays.
    pub fn playback(&self, tokens: u64) -> Nanos {
        (tokens as u128 * SECOND as u128 / self.audio_tokens_per_second.max(1) as u128).min(u64::MAX as u128) as Nanos
    }

    /// From connect to the moment the client learns a refusal.
    pub fn refusal_delay(&self) -> Nanos {
        match self.quota_check {
            QuotaCheck::Setup => self.setup + self.reject_delay,
            QuotaCheck::Connect => 0,
        }
    }

    /// The close code a refused client sees.
    pub fn refusal_code(&self) -> u16 {
        match self.quota_check {
            QuotaCheck::Setup => CLOSE_QUOTA,
            QuotaCheck::Connect => 1006,
        }
    }

    /// When a turn generating `output` tokens in `generation`, started at `start`, completes:
    /// audio plays out in real time from its first token on.
    pub fn turn_complete(
        &self,
        modality: Modality,
        start: Nanos,
        ttft: Nanos,
        generation: Nanos,
        output: u64,
    ) -> Nanos {
        let generated = start + generation;
        match modality {
            Modality::Text => generated,
            Modality::Audio | Modality::AudioVideo => generated.max(start + ttft + self.playback(output)),
        }
    }
}

/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The client closed it after its turns.
    Closed,
    /// The connection's lifetime ran out: `goAway`, then close 1008.
    Lifetime,
    /// The session length cap ended it.
    Cap,
}

/// One admitted session, from its connect at 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionPlan {
    /// When the client is done with the session (closed, or closed by the server).
    pub client_end: Nanos,
    /// When the server frees the session's slot.
    pub release_at: Nanos,
    /// Why it ended.
    pub end: SessionEnd,
    /// Turns the client saw to the end (by its close policy).
    pub turns_done: u32,
}

/// The token sizes of the turns of session `request`: `(input, output)` per turn, drawn from
/// their own stream (the same whichever strategy runs the session).
pub fn turns<'a>(
    spec: &SessionSpec,
    input: &'a TokenDist,
    output: &'a TokenDist,
    seed: u64,
    request: u64,
) -> impl Iterator<Item = (u64, u64)> + 'a {
    let mut r = rng(seed, Stream::Session, request, 0);
    (0..spec.turns.max(1)).map(move |_| (input.sample(&mut r), output.sample(&mut r)))
}

/// The plan of session `request` admitted at time 0 under `rules`, its turns generated at the
/// model's `latency` (each turn's jitter drawn per (request, turn)).
pub fn plan(
    rules: &LiveRules,
    latency: &Latency,
    spec: &SessionSpec,
    sizes: impl Iterator<Item = (u64, u64)>,
    seed: u64,
    request: u64,
) -> SessionPlan {
    let cap = rules.cap(spec.modality);
    let (cut, cut_end) = if rules.lifetime <= cap {
        (rules.lifetime, SessionEnd::Lifetime)
    } else {
        (cap, SessionEnd::Cap)
    };
    let mut t = rules.setup;
    let mut last_turn_complete = t;
    let mut turns_done = 0;
    let n = spec.turns.max(1);
    for (i, (_, out)) in sizes.enumerate() {
        let generation = latency.draw_part(out, seed, request, i as u32);
        let generated = t + generation;
        let complete = rules.turn_complete(spec.modality, t, latency.ttft, generation, out);
        let done = match spec.close_after {
            CloseAfter::TurnComplete => complete,
            CloseAfter::GenerationComplete => generated,
        };
        if done > cut {
            break;
        }
        turns_done += 1;
        last_turn_complete = complete;
        t = done + if i as u32 + 1 < n { spec.pause } else { spec.hold };
    }
    if turns_done < n || t > cut {
        return SessionPlan {
            client_end: cut,
            release_at: cut + rules.release,
            end: cut_end,
            turns_done,
        };
    }
    let server_end = match rules.early_close {
        EarlyClose::HoldsTurn => t.max(last_turn_complete).min(cut),
        EarlyClose::Releases => t,
    };
    SessionPlan {
        client_end: t,
        release_at: server_end + rules.release,
        end: SessionEnd::Closed,
        turns_done,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latency() -> Latency {
        Latency {
            ttft: 500 * MILLISECOND,
            tokens_per_second: 320.0,
            jitter: 0.0,
        }
    }

    fn spec(turns: u32, close_after: CloseAfter) -> SessionSpec {
        SessionSpec {
            turns,
            pause: 2 * SECOND,
            hold: 0,
            modality: Modality::Audio,
            close_after,
        }
    }

    fn one(out: u64, n: u32) -> impl Iterator<Item = (u64, u64)> {
        std::iter::repeat_n((10, out), n as usize)
    }

    #[test]
    fn the_quota_reason_fills_a_close_frame() {
        assert_eq!(QUOTA_CLOSE_REASON.len(), 123);
    }

    /// Issue 31, item 5: a 1011 is told apart by its reason only.
    #[test]
    fn a_1011_s_cause_is_read_from_its_reason() {
        for c in [
            CloseCause::Quota,
            CloseCause::Deadline,
            CloseCause::Backend,
            CloseCause::Resume,
        ] {
            assert_eq!(CloseCause::of(1011, c.reason()), Some(c));
            assert_eq!(CloseCause::of(1008, c.reason()), None, "another code");
        }
        assert_eq!(
            CloseCause::of(1011, "You exceeded your current quota, please check your plan"),
            Some(CloseCause::Quota),
            "cut short"
        );
        assert_eq!(
            CloseCause::of(1011, "keepalive ping timeout"),
            None,
            "a client-side 1011"
        );
        assert_eq!(CloseCause::of(1011, ""), None);
    }

    #[test]
    fn audio_plays_out_after_generation_and_an_early_close_keeps_the_slot() {
        let r = LiveRules::default();
        // 1,600 tokens: generated in 0.5 + 5 s, played in 0.5 + 50 s.
        let late = plan(&r, &latency(), &spec(1, CloseAfter::TurnComplete), one(1600, 1), 1, 0);
        assert_eq!(late.client_end, r.setup + 500 * MILLISECOND + 50 * SECOND);
        assert_eq!(late.release_at, late.client_end);
        let early = plan(
            &r,
            &latency(),
            &spec(1, CloseAfter::GenerationComplete),
            one(1600, 1),
            1,
            0,
        );
        assert_eq!(early.client_end, r.setup + 5_500 * MILLISECOND);
        assert_eq!(early.release_at, late.release_at, "the turn runs on, holding the slot");
        let freed = LiveRules {
            early_close: EarlyClose::Releases,
            release: 2 * SECOND,
            ..r
        };
        let p = plan(
            &freed,
            &latency(),
            &spec(1, CloseAfter::GenerationComplete),
            one(1600, 1),
            1,
            0,
        );
        assert_eq!(p.release_at, p.client_end + 2 * SECOND);
        assert_eq!((p.end, p.turns_done), (SessionEnd::Closed, 1));
    }

    #[test]
    fn text_turns_complete_with_their_generation() {
        let s = SessionSpec {
            modality: Modality::Text,
            ..spec(2, CloseAfter::TurnComplete)
        };
        let p = plan(&LiveRules::default(), &latency(), &s, one(320, 2), 1, 0);
        // setup, 1.5 s turn, 2 s pause, 1.5 s turn.
        assert_eq!(p.client_end, 300 * MILLISECOND + 5 * SECOND);
    }

    #[test]
    fn the_lifetime_and_the_caps_end_long_sessions() {
        let r = LiveRules::default();
        // 40 turns of 50 s with 2 s pauses: past the 10 min lifetime.
        let p = plan(&r, &latency(), &spec(40, CloseAfter::TurnComplete), one(1600, 40), 1, 0);
        assert_eq!(
            (p.end, p.client_end, p.release_at),
            (SessionEnd::Lifetime, r.lifetime, r.lifetime)
        );
        assert_eq!(p.turns_done, 11, "11 turns of 52.5 s fit in 10 min");
        let video = SessionSpec {
            modality: Modality::AudioVideo,
            ..spec(40, CloseAfter::TurnComplete)
        };
        let p = plan(&r, &latency(), &video, one(1600, 40), 1, 0);
        assert_eq!((p.end, p.client_end), (SessionEnd::Cap, 2 * MINUTE));
        // A client that stays idle past the lifetime is closed too.
        let idle = SessionSpec {
            hold: 20 * MINUTE,
            ..spec(1, CloseAfter::TurnComplete)
        };
        let p = plan(&r, &latency(), &idle, one(10, 1), 1, 0);
        assert_eq!((p.end, p.turns_done), (SessionEnd::Lifetime, 1));
    }

    #[test]
    fn turns_are_the_same_for_the_same_request_and_differ_between_requests() {
        let s = spec(3, CloseAfter::TurnComplete);
        let d = TokenDist::Uniform { min: 1, max: 1_000_000 };
        let a: Vec<_> = turns(&s, &d, &d, 7, 4).collect();
        assert_eq!(a.len(), 3);
        assert_eq!(a, turns(&s, &d, &d, 7, 4).collect::<Vec<_>>());
        assert_ne!(a, turns(&s, &d, &d, 7, 5).collect::<Vec<_>>());
    }
}
