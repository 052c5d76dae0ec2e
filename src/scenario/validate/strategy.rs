//! The `[[strategies]]` tables (kind, parameters, retry policy) and `[fleet]`.

use crate::core::server::Model;
use crate::core::time::SECOND;
use crate::scenario::schema::*;
use crate::scenario::ScenarioError;
use crate::strategy::retry::{Jitter, RetryPolicy};
use crate::strategy::{FleetSpec, Param, Sharing, StrategyKind, StrategySpec};

use super::{limits, max, Ctx};

pub(super) fn strategy(cx: &Ctx, i: usize, s: &RawStrategy, models: &[Model]) -> Result<StrategySpec, ScenarioError> {
    let field = format!("strategies[{i}]");
    // A margin's value is checked before its kind (a bad duration is named as such).
    let margin_value = |m: &str| cx.bounded(&format!("{field}.margin"), m, max::MARGIN);
    if let Some(m) = &s.margin {
        margin_value(m)?;
    }
    // `compat = "gemini-flux"` is shorthand for kind = "gemini_flux".
    let name = match (s.kind.as_str(), s.compat.as_deref()) {
        (_, None) => s.kind.as_str(),
        ("exact_cooldown", Some("gemini-flux")) => "gemini_flux",
        ("exact_cooldown", Some(other)) => {
            return Err(cx.err(
                &format!("{field}.compat"),
                format!("unknown compatibility mode {other:?}; expected \"gemini-flux\" (or kind = \"gemini_flux\")"),
            ))
        }
        (_, Some(_)) => return Err(cx.err(&format!("{field}.compat"), "only for kind = \"exact_cooldown\"")),
    };
    let Some(mut kind) = StrategyKind::named(name) else {
        let names: Vec<String> = crate::strategy::KINDS.iter().map(|d| format!("{:?}", d.name)).collect();
        return Err(cx.err(
            &format!("{field}.kind"),
            format!("unknown strategy {name:?}; expected one of {}", names.join(", ")),
        ));
    };
    for param in Param::ALL {
        let given = match param {
            Param::Interval => s.interval.is_some(),
            Param::Margin => s.margin.is_some(),
            Param::Fallback => !s.fallback.is_empty(),
            Param::Preset => s.preset.is_some(),
            Param::CooldownTime => s.cooldown_time.is_some(),
            Param::AllowedFails => s.allowed_fails.is_some(),
            Param::NumRetries => s.num_retries.is_some(),
            Param::RetryAfter => s.retry_after.is_some(),
            Param::MaxFailures => s.max_failures.is_some(),
        };
        if given && !kind.takes(param) {
            return Err(cx.err(
                &format!("{field}.{}", param.field()),
                format!("only for kind = {}", crate::strategy::kind_names_taking(param)),
            ));
        }
        if !given {
            if let Some((_, example)) = kind.def().requires.iter().find(|(p, _)| *p == param) {
                return Err(cx.err(
                    &format!("{field}.{}", param.field()),
                    format!("required for kind = {:?}, e.g. {example}", kind.name()),
                ));
            }
        }
    }
    if let Some(m) = &s.margin {
        kind.params.margin = margin_value(m)?;
    }
    if let Some(text) = &s.interval {
        kind.params.interval = cx.positive_bounded(&format!("{field}.interval"), text, max::DELAY)?;
    }
    // LiteLLM's Router settings.
    if let Some(text) = &s.cooldown_time {
        // The Router reads `cooldown_time or 5`: a 0 would be its default, not "no cooldown".
        kind.params.cooldown = cx.positive_bounded(&format!("{field}.cooldown_time"), text, max::DELAY)?;
    }
    if let Some(n) = s.allowed_fails {
        cx.at_most(&format!("{field}.allowed_fails"), n as u64, max::ATTEMPTS as u64)?;
        kind.params.allowed_fails = Some(n);
    }
    if let Some(n) = s.num_retries {
        cx.at_most(&format!("{field}.num_retries"), n as u64, max::ATTEMPTS as u64 - 1)?;
        kind.params.num_retries = n;
    }
    if let Some(text) = &s.retry_after {
        kind.params.retry_after = cx.bounded(&format!("{field}.retry_after"), text, max::DELAY)?;
    }
    // gemini-balance's MAX_FAILURES.
    if let Some(n) = s.max_failures {
        if n == 0 {
            return Err(cx.err(
                &format!("{field}.max_failures"),
                "must be at least 1 (a key is skipped after this many failures)",
            ));
        }
        cx.at_most(&format!("{field}.max_failures"), n as u64, max::ATTEMPTS as u64)?;
        kind.params.max_failures = n;
    }
    let router_retry = s.num_retries.is_some() || s.retry_after.is_some();
    if router_retry && (s.retry.is_some() || s.preset.is_some()) {
        return Err(cx.err(
            &format!("{field}.retry"),
            "num_retries and retry_after are the Router's retry policy: give them or a retry table, not both",
        ));
    }
    match s.preset.as_deref() {
        None => {}
        Some("sdk") if s.retry.is_some() => {
            return Err(cx.err(
                &format!("{field}.preset"),
                "preset = \"sdk\" is a retry policy: give it or a retry table, not both",
            ))
        }
        Some("sdk") => {}
        Some(other) => {
            return Err(cx.err(
                &format!("{field}.preset"),
                format!("unknown preset {other:?}; expected \"sdk\" (google-genai's HttpRetryOptions())"),
            ))
        }
    }
    let name = match &s.name {
        Some(n) if n.trim().is_empty() => return Err(cx.err(&format!("{field}.name"), "must not be empty")),
        Some(n) => n.clone(),
        None => kind.name().to_string(),
    };
    let mut fallback = Vec::new();
    for (j, m) in s.fallback.iter().enumerate() {
        fallback.push(cx.model(&format!("{field}.fallback[{j}]"), models, m)?);
    }
    let mut known_limits = vec![None; models.len()];
    for (m, l) in &s.known_limits {
        let idx = cx.model(&format!("{field}.known_limits.{m:?}"), models, m)?;
        known_limits[idx] = Some(limits(l));
    }
    let retry = if router_retry {
        crate::strategy::litellm::router_retry(&kind.params)
    } else {
        retry(cx, &field, s.retry.as_ref(), &kind)?
    };
    Ok(StrategySpec {
        name,
        kind,
        retry,
        fallback,
        known_limits,
        told_scale: None,
    })
}

fn retry(cx: &Ctx, field: &str, r: Option<&RawRetry>, kind: &StrategyKind) -> Result<RetryPolicy, ScenarioError> {
    let Some(r) = r else {
        return Ok(kind.def().retry);
    };
    let f = |n: &str| format!("{field}.retry.{n}");
    let allowed: &[&str] = match r.policy.as_str() {
        "none" => &[],
        "immediate" => &["max_attempts"],
        "backoff" => &["base", "cap", "jitter", "max_attempts"],
        "retry_info" => &["base", "cap", "max_attempts"],
        other => {
            return Err(cx.err(
                &f("policy"),
                format!(
                    "unknown retry policy {other:?}; expected \"none\", \"immediate\", \"backoff\" or \"retry_info\""
                ),
            ))
        }
    };
    for (name, p) in [
        ("base", r.base.is_some()),
        ("cap", r.cap.is_some()),
        ("jitter", r.jitter.is_some()),
        ("max_attempts", r.max_attempts.is_some()),
    ] {
        if p && !allowed.contains(&name) {
            return Err(cx.err(&f(name), format!("not used by policy = {:?}", r.policy)));
        }
    }
    if r.max_attempts == Some(0) {
        return Err(cx.err(&f("max_attempts"), "must be at least 1 (the first attempt counts)"));
    }
    if let Some(n) = r.max_attempts {
        cx.at_most(&f("max_attempts"), n as u64, max::ATTEMPTS as u64)?;
    }
    let base = match &r.base {
        Some(b) => cx.positive_bounded(&f("base"), b, max::DELAY)?,
        None => SECOND,
    };
    let cap = match &r.cap {
        Some(c) => cx.positive_bounded(&f("cap"), c, max::DELAY)?,
        None => 60 * SECOND,
    };
    if cap < base {
        return Err(cx.err(&f("cap"), "must be at least base"));
    }
    Ok(match r.policy.as_str() {
        "none" => RetryPolicy::None,
        "immediate" => RetryPolicy::Immediate {
            max_attempts: r.max_attempts.unwrap_or(10),
        },
        "backoff" => RetryPolicy::Backoff {
            base,
            cap,
            jitter: match r.jitter.as_deref() {
                None | Some("full") => Jitter::Full,
                Some("equal") => Jitter::Equal,
                Some("none") => Jitter::None,
                Some("decorrelated") => Jitter::Decorrelated,
                Some(text) => Jitter::Plus(cx.positive_bounded(&f("jitter"), text, max::DELAY).map_err(|_| {
                    cx.err(
                        &f("jitter"),
                        format!("expected \"full\", \"equal\", \"none\", \"decorrelated\" or a duration added to each delay (e.g. \"1s\"), got {text:?}"),
                    )
                })?),
            },
            max_attempts: r.max_attempts.unwrap_or(5),
        },
        _ => RetryPolicy::RetryInfo {
            base,
            cap,
            max_attempts: r.max_attempts,
        },
    })
}

pub(super) fn fleet(cx: &Ctx, f: &RawFleet) -> Result<FleetSpec, ScenarioError> {
    let mut spec = FleetSpec::default();
    if let Some(n) = f.instances {
        if n == 0 {
            return Err(cx.err("fleet.instances", "must be at least 1"));
        }
        spec.instances = cx.at_most("fleet.instances", n, max::INSTANCES)? as usize;
    }
    if let Some(name) = &f.ledger {
        spec.sharing = Sharing::parse(name).ok_or_else(|| {
            cx.err(
                "fleet.ledger",
                format!("expected \"local\", \"shared\" or \"rpm_shared\", not {name:?}"),
            )
        })?;
    }
    if let Some(d) = &f.sync_delay {
        if spec.sharing == Sharing::Local {
            return Err(cx.err(
                "fleet.sync_delay",
                "applies only to a shared ledger: set `ledger = \"shared\"` or `\"rpm_shared\"`",
            ));
        }
        spec.sync_delay = cx.bounded("fleet.sync_delay", d, max::DELAY)?;
    }
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use crate::core::time::MILLISECOND;
    use crate::scenario::validate::fixture::{parse, BASE};

    fn with(strategies: &str) -> Result<crate::scenario::Scenario, String> {
        parse(&format!("{BASE}\n{strategies}\n"))
    }

    #[test]
    fn strategies_and_their_parameters() {
        let s = with("[[strategies]]\nkind = \"exact_cooldown\"\nmargin = \"250ms\"\n[fleet]\ninstances = 3").unwrap();
        assert_eq!(s.strategies[0].kind.name(), "exact_cooldown");
        assert_eq!(s.strategies[0].kind.params.margin, 250 * MILLISECOND);
        assert_eq!(s.fleet.instances, 3);
    }

    #[test]
    fn bad_strategy_values_name_their_field() {
        for (table, want) in [
            (
                "[[strategies]]\nkind = \"round_robin\"\nretry = { policy = \"backoff\", max_attempts = 0 }",
                "strategies[0].retry.max_attempts",
            ),
            (
                "[[strategies]]\nkind = \"round_robin\"\ncompat = \"gemini-flux\"",
                "strategies[0].compat: only for kind = \"exact_cooldown\"",
            ),
            (
                "[[strategies]]\nkind = \"round_robin\"\nmargin = \"5ms\"",
                "strategies[0].margin: only for kind = \"exact_cooldown\"",
            ),
            (
                "[[strategies]]\nkind = \"exact_cooldown\"\nmargin = \"soon\"",
                "strategies[0].margin:",
            ),
            (
                "[[strategies]]\nkind = \"round_robin\"\n[[strategies]]\nkind = \"round_robin\"",
                "used twice",
            ),
            ("[[strategies]]\nkind = \"teleport\"", "strategies[0].kind"),
            (
                "[fleet]\ninstances = 1001",
                "fleet.instances: 1001 is more than the most allowed, 1000",
            ),
        ] {
            let err = with(table).unwrap_err();
            assert!(err.contains(want), "{table}: {err} !~ {want}");
        }
    }
}
