//! The `[server]` table: windows, token counting, faults, quirks, spend caps' rule and the Live
//! API's rules.

use crate::core::ledger::LedgerConfig;
use crate::core::live::{EarlyClose, LiveRules, QuotaCheck};
use crate::core::paygo::{tier_of_spend, PaygoRules};
use crate::core::server::{Quirks, ServerConfig};
use crate::core::spend::SpendRule;
use crate::scenario::schema::*;
use crate::scenario::ScenarioError;

use super::{max, Ctx};
use crate::core::server::PerDayRetry;

/// The `[server]` table (its latency is read by the caller: models inherit it).
pub(super) fn server(cx: &Ctx, s: &RawServer) -> Result<ServerConfig, ScenarioError> {
    if !(s.fault_rate.is_finite() && (0.0..=1.0).contains(&s.fault_rate)) {
        return Err(cx.err("server.fault_rate", "must be a probability between 0 and 1"));
    }
    Ok(ServerConfig {
        ledger: LedgerConfig {
            window: s.window,
            count_rejected: s.count_rejected,
        },
        tpm_counts: s.tpm_counts,
        fault_rate: s.fault_rate,
        quirks: quirks(cx, &s.quirks)?,
        spend: SpendRule {
            window: cx.positive_bounded("server.spend_window", &s.spend_window, max::DELAY)?,
            delay: cx.bounded("server.spend_delay", &s.spend_delay, max::DELAY)?,
        },
        error_latency: cx.bounded("server.error_latency", &s.error_latency, max::DELAY)?,
        live: live_rules(cx, &s.live)?,
        paygo: match &s.paygo {
            None => PaygoRules::default(),
            Some(p) => paygo(cx, p)?,
        },
    })
}

/// `[server.paygo]`: the tier, given or from the 30-day spend (not both), and the rules Google
/// does not publish.
fn paygo(cx: &Ctx, p: &RawPaygo) -> Result<PaygoRules, ScenarioError> {
    const FIELD: &str = "server.paygo";
    let tier = match (p.tier, p.spend_30d) {
        (Some(_), Some(_)) => {
            return Err(cx.err(
                FIELD,
                "give `tier` or `spend_30d`, not both: the tier follows from the spend",
            ))
        }
        (Some(t @ 1..=3), None) => t as u8,
        (Some(t), None) => return Err(cx.err(&format!("{FIELD}.tier"), format!("must be 1, 2 or 3, not {t}"))),
        (None, Some(usd)) => {
            if !(usd.is_finite() && (0.0..=max::SPEND_CAP).contains(&usd)) {
                return Err(cx.err(
                    &format!("{FIELD}.spend_30d"),
                    format!("must be US dollars from 0 to {}, got {usd}", max::SPEND_CAP),
                ));
            }
            tier_of_spend((usd * 100.0).round() as u64)
        }
        (None, None) => PaygoRules::default().tier,
    };
    if p.system_rpm == 0 {
        return Err(cx.err(&format!("{FIELD}.system_rpm"), "must be at least 1 request per minute"));
    }
    cx.at_most(&format!("{FIELD}.system_rpm"), p.system_rpm, max::REQUESTS)?;
    if !(p.spike.is_finite() && (1.0..=60.0).contains(&p.spike)) {
        return Err(cx.err(
            &format!("{FIELD}.spike"),
            format!(
                "must be from 1 (a second holds at most the minute's average) to 60 (a second may hold the whole minute), got {}",
                p.spike
            ),
        ));
    }
    if !(p.priority_price.is_finite() && (1.0..=10.0).contains(&p.priority_price)) {
        return Err(cx.err(
            &format!("{FIELD}.priority_price"),
            format!(
                "must be a multiple of the standard price from 1 to 10, got {}",
                p.priority_price
            ),
        ));
    }
    Ok(PaygoRules {
        tier,
        system_rpm: p.system_rpm,
        spike_permille: (p.spike * 1000.0).round() as u64,
        priority_price_permille: (p.priority_price * 1000.0).round() as u64,
    })
}

/// `[server.live]`.
fn live_rules(cx: &Ctx, l: &RawLive) -> Result<LiveRules, ScenarioError> {
    let quota_check = match l.quota_check.as_str() {
        "setup" => QuotaCheck::Setup,
        "connect" => QuotaCheck::Connect,
        other => {
            return Err(cx.err(
                "server.live.quota_check",
                format!("unknown {other:?}; expected \"setup\" or \"connect\""),
            ))
        }
    };
    let early_close = match l.early_close.as_str() {
        "holds_turn" => EarlyClose::HoldsTurn,
        "releases" => EarlyClose::Releases,
        other => {
            return Err(cx.err(
                "server.live.early_close",
                format!("unknown {other:?}; expected \"holds_turn\" or \"releases\""),
            ))
        }
    };
    if l.audio_tokens_per_second == 0 {
        return Err(cx.err("server.live.audio_tokens_per_second", "must be at least 1"));
    }
    let lifetime = cx.positive_bounded("server.live.lifetime", &l.lifetime, max::DELAY)?;
    let go_away = cx.bounded("server.live.go_away", &l.go_away, max::DELAY)?;
    if go_away > lifetime {
        return Err(cx.err(
            "server.live.go_away",
            format!("{} is longer than the lifetime {}", l.go_away, l.lifetime),
        ));
    }
    Ok(LiveRules {
        setup: cx.bounded("server.live.setup", &l.setup, max::DELAY)?,
        reject_delay: cx.bounded("server.live.reject_delay", &l.reject_delay, max::DELAY)?,
        quota_check,
        release: cx.bounded("server.live.release", &l.release, max::DELAY)?,
        early_close,
        lifetime,
        go_away,
        audio_cap: cx.positive_bounded("server.live.audio_cap", &l.audio_cap, max::DELAY)?,
        video_cap: cx.positive_bounded("server.live.video_cap", &l.video_cap, max::DELAY)?,
        audio_tokens_per_second: l.audio_tokens_per_second,
    })
}

fn quirks(cx: &Ctx, q: &RawQuirks) -> Result<Quirks, ScenarioError> {
    let delay = |name: &str, v: &Option<String>| {
        v.as_deref()
            .map(|t| cx.bounded(&format!("server.quirks.{name}"), t, max::DELAY))
            .transpose()
    };
    if !(q.capacity_rate.is_finite() && (0.0..=1.0).contains(&q.capacity_rate)) {
        return Err(cx.err("server.quirks.capacity_rate", "must be a probability between 0 and 1"));
    }
    Ok(Quirks {
        per_day_retry: per_day_retry(cx, q.per_day_retry.as_deref())?,
        per_minute_retry: delay("per_minute_retry", &q.per_minute_retry)?,
        zero_quota_retry: delay("zero_quota_retry", &q.zero_quota_retry)?,
        capacity_rate: q.capacity_rate,
    })
}

/// `server.quirks.per_day_retry`: `"next_minute"` (the default), `"reset"` or a duration.
fn per_day_retry(cx: &Ctx, v: Option<&str>) -> Result<PerDayRetry, ScenarioError> {
    const FIELD: &str = "server.quirks.per_day_retry";
    match v {
        None | Some("next_minute") => Ok(PerDayRetry::NextMinute),
        Some("reset") => Ok(PerDayRetry::Reset),
        Some(t) if t.starts_with(|c: char| c.is_ascii_digit()) => {
            Ok(PerDayRetry::Fixed(cx.bounded(FIELD, t, max::DELAY)?))
        }
        Some(t) => Err(cx.err(
            FIELD,
            format!("expected \"next_minute\", \"reset\" or a duration such as \"0s\", not {t:?}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use crate::core::live::QuotaCheck;
    use crate::core::time::SECOND;
    use crate::scenario::validate::fixture::{parse, BASE};

    fn with_server(table: &str) -> Result<crate::scenario::Scenario, String> {
        parse(&format!("{BASE}\n[server]\n{table}\n"))
    }

    #[test]
    fn server_settings_are_read_and_defaults_fill_in() {
        let s = with_server("fault_rate = 0.25\n[server.live]\nquota_check = \"connect\"\nlifetime = \"10m\"").unwrap();
        assert_eq!(s.server.fault_rate, 0.25);
        assert_eq!(s.server.live.quota_check, QuotaCheck::Connect);
        assert_eq!(s.server.live.lifetime, 600 * SECOND);
        let d = parse(BASE).unwrap();
        assert_eq!(d.server.fault_rate, 0.0);
        assert_eq!(d.server.live.quota_check, QuotaCheck::Setup);
    }

    #[test]
    fn bad_server_values_name_their_field() {
        for (table, want) in [
            (
                "fault_rate = 1.5",
                "s.toml: server.fault_rate: must be a probability between 0 and 1",
            ),
            (
                "daily_reset_tz = \"Mars/Olympus\"",
                "s.toml: server.daily_reset_tz: unknown IANA time zone",
            ),
            (
                "[server.live]\nquota_check = \"later\"",
                "s.toml: server.live.quota_check: unknown \"later\"",
            ),
            (
                "[server.live]\nlifetime = \"1m\"\ngo_away = \"2m\"",
                "s.toml: server.live.go_away: 2m is longer than the lifetime 1m",
            ),
            (
                "[server.live]\naudio_tokens_per_second = 0",
                "s.toml: server.live.audio_tokens_per_second: must be at least 1",
            ),
            (
                "[server.quirks]\ncapacity_rate = -0.1",
                "s.toml: server.quirks.capacity_rate: must be a probability",
            ),
            (
                "[server.quirks]\nper_day_retry = \"2d\"",
                "s.toml: server.quirks.per_day_retry: \"2d\" is longer than the most allowed",
            ),
            (
                "spend_window = \"0s\"",
                "s.toml: server.spend_window: must be greater than zero",
            ),
        ] {
            let err = with_server(table).unwrap_err();
            assert!(err.starts_with(want), "{table}: {err} !~ {want}");
        }
    }
}
