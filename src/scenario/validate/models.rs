//! The `[models]` table: each model's limits, latency, shared pool (Vertex AI's dynamic shared
//! quota), prices and reserved (provisioned) throughput.

use crate::core::dist::Latency;
use crate::core::ledger::Limits;
use crate::core::paygo::{Family, PaygoModel};
use crate::core::server::{ConcurrencyScope, Model, Overflow, Provisioned};
use crate::core::shared_pool::PoolSpec;
use crate::core::spend::Prices;
use crate::scenario::schema::*;
use crate::scenario::ScenarioError;

use super::{max, Ctx};
use crate::core::server::{Route, RouteQuota};
use crate::core::time::{Calendar, Nanos};
use crate::scenario::schema::RawPriceChange;
use chrono::DateTime;

/// The `[models]` table: each model's limits, latency (the server's unless its own), shared pool,
/// prices and reserved throughput.
pub(super) fn models(
    cx: &Ctx,
    raw: &std::collections::BTreeMap<String, RawModel>,
    server_latency: Latency,
    calendar: &Calendar,
) -> Result<Vec<Model>, ScenarioError> {
    if raw.is_empty() {
        return Err(cx.err(
            "models",
            "at least one model is needed, e.g. [models.\"gemini-2.5-flash\"]",
        ));
    }
    let mut models = Vec::new();
    for (name, m) in raw {
        let field = format!("models.{name:?}");
        if m.concurrent_scope == ConcurrencyScope::Key && m.concurrent.is_none() {
            return Err(cx.err(&format!("{field}.concurrent_scope"), "needs a `concurrent` limit"));
        }
        let latency = match &m.latency {
            Some(l) => cx.latency(&format!("{field}.latency"), l)?,
            None => server_latency,
        };
        let shared_pool = match &m.shared_pool {
            None => None,
            Some(p) => Some(shared_pool(cx, &format!("{field}.shared_pool"), p, m)?),
        };
        let prices = Prices {
            input: price(cx, &format!("{field}.price_input"), m.price_input)?,
            output: price(cx, &format!("{field}.price_output"), m.price_output)?,
        };
        let provisioned = match &m.provisioned {
            None => None,
            Some(p) => Some(provisioned(cx, &format!("{field}.provisioned"), p)?),
        };
        let price_changes = price_changes(cx, &format!("{field}.price_changes"), &m.price_changes, calendar)?;
        let paygo = match &m.paygo {
            None => None,
            Some(p) => Some(paygo(cx, &format!("{field}.paygo"), p, m)?),
        };
        models.push(Model {
            paygo,
            provisioned,
            price_changes,
            prices,
            shared_pool,
            name: name.clone(),
            limits: Limits {
                rpm: m.rpm,
                tpm: m.tpm,
                rpd: m.rpd,
                tpd: m.tpd,
                concurrent: m.concurrent,
            },
            concurrency_scope: m.concurrent_scope,
            latency,
            live: m.live,
            route: None,
        });
    }
    routes(cx, raw, &mut models)?;
    Ok(models)
}

fn provisioned(cx: &Ctx, field: &str, p: &RawProvisioned) -> Result<Provisioned, ScenarioError> {
    if p.rpm.is_none() && p.tpm.is_none() {
        return Err(cx.err(field, "reserves nothing: give `rpm`, `tpm` or both"));
    }
    for (name, v) in [("rpm", p.rpm), ("tpm", p.tpm)] {
        if v == Some(0) {
            return Err(cx.err(
                &format!("{field}.{name}"),
                "must be at least 1 (leave it out to reserve none)",
            ));
        }
    }
    let overflow = match p.overflow.as_str() {
        "spill" => Overflow::Spill,
        "dedicated_only" => Overflow::DedicatedOnly,
        other => {
            return Err(cx.err(
                &format!("{field}.overflow"),
                format!("expected \"spill\" or \"dedicated_only\", not {other:?}"),
            ))
        }
    };
    Ok(Provisioned {
        limits: Limits {
            rpm: p.rpm,
            tpm: p.tpm,
            ..Limits::default()
        },
        overflow,
    })
}

/// `models.<name>.paygo`: the model's family in the tier table (or its own throughput), and
/// Priority PayGo's limit; a PayGo model has no per-project limits.
fn paygo(cx: &Ctx, field: &str, p: &RawModelPaygo, m: &RawModel) -> Result<PaygoModel, ScenarioError> {
    if m.rpm.is_some() || m.tpm.is_some() || m.rpd.is_some() || m.tpd.is_some() || m.concurrent.is_some() {
        return Err(cx.err(
            field,
            "a PayGo model has no per-project limits: remove rpm, tpm, rpd, tpd and concurrent from this model",
        ));
    }
    if m.live {
        return Err(cx.err(field, "Live models are not on Standard PayGo's tiers"));
    }
    let family = match p.family.as_str() {
        "pro" => Family::Pro,
        "flash" | "flash_lite" => Family::Flash,
        other => {
            return Err(cx.err(
                &format!("{field}.family"),
                format!("expected \"pro\", \"flash\" or \"flash_lite\", not {other:?}"),
            ))
        }
    };
    for (name, v) in [("tpm", p.tpm), ("priority_tpm", p.priority_tpm)] {
        if let Some(v) = v {
            if v == 0 {
                return Err(cx.err(
                    &format!("{field}.{name}"),
                    "must be at least 1 token per minute (leave it out for no limit of its own)",
                ));
            }
            cx.at_most(&format!("{field}.{name}"), v, max::REQUESTS)?;
        }
    }
    Ok(PaygoModel {
        family,
        tpm: p.tpm,
        priority_tpm: p.priority_tpm,
    })
}

fn shared_pool(cx: &Ctx, field: &str, p: &RawSharedPool, m: &RawModel) -> Result<PoolSpec, ScenarioError> {
    if m.rpm.is_some() || m.tpm.is_some() || m.rpd.is_some() || m.tpd.is_some() || m.concurrent.is_some() {
        return Err(cx.err(
            field,
            "a shared pool has no per-project limits: remove rpm, tpm, rpd, tpd and concurrent from this model",
        ));
    }
    if p.capacity == 0 {
        return Err(cx.err(&format!("{field}.capacity"), "must be at least 1 request per minute"));
    }
    cx.at_most(&format!("{field}.capacity"), p.capacity, max::REQUESTS)?;
    for (name, v, hi) in [
        ("others", p.others, 2.0),
        ("swing", p.swing, 1.0),
        ("burst_load", p.burst_load, 2.0),
        ("bursts_per_hour", p.bursts_per_hour, 3600.0),
    ] {
        if !(v.is_finite() && (0.0..=hi).contains(&v)) {
            return Err(cx.err(
                &format!("{field}.{name}"),
                format!("must be between 0 and {hi}, got {v}"),
            ));
        }
    }
    Ok(PoolSpec {
        capacity: p.capacity,
        others: p.others,
        swing: p.swing,
        bursts_per_hour: p.bursts_per_hour,
        burst: cx.positive_bounded(&format!("{field}.burst"), &p.burst, max::DELAY)?,
        burst_load: p.burst_load,
    })
}

/// A price in USD per million tokens as picodollars per token (to 10⁻⁶ USD per million).
fn price(cx: &Ctx, field: &str, usd_per_million: f64) -> Result<u64, ScenarioError> {
    if !(usd_per_million.is_finite() && (0.0..=max::PRICE).contains(&usd_per_million)) {
        return Err(cx.err(
            field,
            format!("must be a price in USD per million tokens from 0 to {}", max::PRICE),
        ));
    }
    Ok((usd_per_million * 1e6).round() as u64)
}

/// `models.<name>.price_changes`: each `from` an RFC 3339 instant, in increasing order, as the
/// instant after the scenario's start (one before it applies from the start).
fn price_changes(
    cx: &Ctx,
    field: &str,
    raw: &[RawPriceChange],
    calendar: &Calendar,
) -> Result<Vec<(Nanos, Prices)>, ScenarioError> {
    let mut out: Vec<(Nanos, Prices)> = Vec::new();
    let mut last = None;
    for (i, c) in raw.iter().enumerate() {
        let f = format!("{field}[{i}]");
        let at = DateTime::parse_from_rfc3339(&c.from).map_err(|e| {
            cx.err(
                &format!("{f}.from"),
                format!("expected an RFC 3339 time with offset such as \"2026-12-01T00:00:00-08:00\" ({e})"),
            )
        })?;
        if last.is_some_and(|l| at <= l) {
            return Err(cx.err(&format!("{f}.from"), "must be later than the change before it"));
        }
        last = Some(at);
        let prices = Prices {
            input: price(cx, &format!("{f}.price_input"), c.price_input)?,
            output: price(cx, &format!("{f}.price_output"), c.price_output)?,
        };
        out.push((calendar.from_unix_micros(at.timestamp_micros()), prices));
    }
    Ok(out)
}

/// `models.<name>.routed_to` and `routed_quota`: a retired id served by another model of the
/// scenario, neither of them Live nor re-routed in turn.
fn routes(
    cx: &Ctx,
    raw: &std::collections::BTreeMap<String, RawModel>,
    models: &mut [Model],
) -> Result<(), ScenarioError> {
    for (i, (name, m)) in raw.iter().enumerate() {
        let field = format!("models.{name:?}.routed_to");
        let Some(to) = &m.routed_to else {
            if m.routed_quota != RouteQuota::default() {
                return Err(cx.err(
                    &format!("models.{name:?}.routed_quota"),
                    "applies only with `routed_to`",
                ));
            }
            continue;
        };
        let Some(t) = raw.keys().position(|k| k == to) else {
            return Err(cx.err(&field, format!("{to:?} is not a model of the scenario")));
        };
        if t == i || raw[to].routed_to.is_some() {
            return Err(cx.err(
                &field,
                format!("{to:?} is re-routed itself: name the model that serves the calls"),
            ));
        }
        if m.live || raw[to].live {
            return Err(cx.err(&field, "Live models are not re-routed"));
        }
        models[i].route = Some(Route {
            to: t,
            quota: m.routed_quota,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::core::time::SECOND;
    use crate::scenario::validate::fixture::{error_with, parse, BASE};

    #[test]
    fn a_model_inherits_the_servers_latency_unless_it_has_its_own() {
        let text = format!("{}\n[models.n]\nrpm = 5\nlatency = {{ ttft = \"3s\", tokens_per_second = 50.0 }}\n[server.latency]\nttft = \"2s\"\ntokens_per_second = 100.0\n", BASE.replace("workers = 2", "workers = 2\nmodel = \"m\""));
        let s = parse(&text).unwrap();
        let m = &s.models[s.model_index("m").unwrap()];
        let n = &s.models[s.model_index("n").unwrap()];
        assert_eq!((m.latency.ttft, m.latency.tokens_per_second), (2 * SECOND, 100.0));
        assert_eq!((n.latency.ttft, n.latency.tokens_per_second), (3 * SECOND, 50.0));
        assert_eq!(n.limits.rpm, Some(5));
    }

    #[test]
    fn bad_model_values_name_their_field() {
        for (to, want) in [
            (
                "[models.m]\nrpm = 10\nconcurrent_scope = \"key\"",
                "s.toml: models.\"m\".concurrent_scope: needs a `concurrent` limit",
            ),
            (
                "[models.m]\nrpm = 10\nprice_input = -1.0",
                "s.toml: models.\"m\".price_input: must be a price in USD per million tokens",
            ),
            (
                "[models.m]\nrpm = 10\nprovisioned = {}",
                "s.toml: models.\"m\".provisioned: reserves nothing",
            ),
            (
                "[models.m]\nrpm = 10\nlatency = { ttft = \"1s\", tokens_per_second = 0.5 }",
                "s.toml: models.\"m\".latency.tokens_per_second: must be a number of at least 1",
            ),
        ] {
            let err = error_with("[models.m]\nrpm = 10", to);
            assert!(err.starts_with(want), "{to}: {err} !~ {want}");
        }
        let err = parse(&BASE.replace("[models.m]\nrpm = 10\n", "[models]\n")).unwrap_err();
        assert!(err.starts_with("s.toml: models: at least one model is needed"), "{err}");
    }

    #[test]
    fn routes_price_changes_and_per_day_delays_name_their_field() {
        // Issue 31: the new settings' errors name their field and what was expected.
        for (to, want) in [
            (
                "[models.m]\nrpm = 10\nrouted_to = \"n\"",
                "s.toml: models.\"m\".routed_to: \"n\" is not a model of the scenario",
            ),
            (
                "[models.m]\nrpm = 10\nrouted_to = \"m\"",
                "s.toml: models.\"m\".routed_to: \"m\" is re-routed itself",
            ),
            (
                "[models.m]\nrpm = 10\nrouted_quota = \"own\"",
                "s.toml: models.\"m\".routed_quota: applies only with `routed_to`",
            ),
            (
                "[models.m]\nrpm = 10\nprice_changes = [{ from = \"soon\" }]",
                "s.toml: models.\"m\".price_changes[0].from: expected an RFC 3339 time",
            ),
            (
                "[models.m]\nrpm = 10\nprice_changes = [{ from = \"2026-12-01T00:00:00Z\" }, { from = \"2026-11-01T00:00:00Z\" }]",
                "s.toml: models.\"m\".price_changes[1].from: must be later than the change before it",
            ),
            (
                "[models.m]\nrpm = 10\nprice_changes = [{ from = \"2026-12-01T00:00:00Z\", price_input = -1 }]",
                "s.toml: models.\"m\".price_changes[0].price_input: must be a price",
            ),
            (
                "[server.quirks]\nper_day_retry = \"later\"\n[models.m]\nrpm = 10",
                "s.toml: server.quirks.per_day_retry: expected \"next_minute\", \"reset\" or a duration",
            ),
        ] {
            let err = parse(&BASE.replacen("[models.m]\nrpm = 10", to, 1)).unwrap_err();
            assert!(err.starts_with(want), "{err} !~ {want}");
        }
    }

    /// Issue 31, item 4: Vertex PayGo's settings are read, the tier follows the 30-day spend,
    /// and every bad value names its field.
    #[test]
    fn paygo_settings_are_read_and_bad_ones_name_their_field() {
        let paygo = "[models.m.paygo]\nfamily = \"pro\"";
        let s = parse(&BASE.replacen("[models.m]\nrpm = 10", paygo, 1)).unwrap();
        let m = s.models[0].paygo.expect("on PayGo");
        assert_eq!(m.tier_tpm(s.server.paygo.tier), 500_000, "Tier 1 by default");
        assert_eq!(
            (
                s.server.paygo.system_rpm,
                s.server.paygo.spike_permille,
                s.server.paygo.priority_price_permille
            ),
            (30_000, 2_000, 1_800)
        );
        for (spend, tier) in [("9.99", 1), ("250.0", 2), ("2000.0", 2), ("2000.01", 3)] {
            let text = format!("[server.paygo]\nspend_30d = {spend}\n{paygo}");
            let s = parse(&BASE.replacen("[models.m]\nrpm = 10", &text, 1)).unwrap();
            assert_eq!(s.server.paygo.tier, tier, "${spend}");
        }
        let s = parse(&BASE.replacen(
            "[models.m]\nrpm = 10",
            "[server.paygo]\ntier = 3\nspike = 1.5\n[models.m.paygo]\nfamily = \"flash_lite\"\npriority_tpm = 5",
            1,
        ))
        .unwrap();
        assert_eq!(s.models[0].paygo.unwrap().tier_tpm(3), 10_000_000);
        assert_eq!(s.server.paygo.spike_permille, 1_500);
        for (to, want) in [
            (
                "[models.m]\nrpm = 10\npaygo = { family = \"pro\" }",
                "s.toml: models.\"m\".paygo: a PayGo model has no per-project limits",
            ),
            (
                "[models.m.paygo]\nfamily = \"ultra\"",
                "s.toml: models.\"m\".paygo.family: expected \"pro\", \"flash\" or \"flash_lite\", not \"ultra\"",
            ),
            (
                "[models.m.paygo]\nfamily = \"pro\"\ntpm = 0",
                "s.toml: models.\"m\".paygo.tpm: must be at least 1 token per minute",
            ),
            (
                "[server.paygo]\ntier = 1\nspend_30d = 10.0\n[models.m.paygo]\nfamily = \"pro\"",
                "s.toml: server.paygo: give `tier` or `spend_30d`, not both",
            ),
            (
                "[server.paygo]\ntier = 4\n[models.m.paygo]\nfamily = \"pro\"",
                "s.toml: server.paygo.tier: must be 1, 2 or 3, not 4",
            ),
            (
                "[server.paygo]\nspend_30d = -1.0\n[models.m.paygo]\nfamily = \"pro\"",
                "s.toml: server.paygo.spend_30d: must be US dollars from 0",
            ),
            (
                "[server.paygo]\nspike = 0.5\n[models.m.paygo]\nfamily = \"pro\"",
                "s.toml: server.paygo.spike: must be from 1",
            ),
            (
                "[server.paygo]\nsystem_rpm = 0\n[models.m.paygo]\nfamily = \"pro\"",
                "s.toml: server.paygo.system_rpm: must be at least 1",
            ),
            (
                "[server.paygo]\npriority_price = 0.5\n[models.m.paygo]\nfamily = \"pro\"",
                "s.toml: server.paygo.priority_price: must be a multiple of the standard price",
            ),
            (
                "[server.paygo]\ntier = 2\n[models.m]\nrpm = 10",
                "s.toml: server.paygo: applies only to models on PayGo",
            ),
        ] {
            let err = parse(&BASE.replacen("[models.m]\nrpm = 10", to, 1)).unwrap_err();
            assert!(err.starts_with(want), "{err} !~ {want}");
        }
        let err = parse(&BASE.replace("workers = 2", "workers = 2\npriority = 0.5")).unwrap_err();
        assert!(
            err.starts_with("s.toml: workload.priority: Priority PayGo applies to models on PayGo"),
            "{err}"
        );
        let err = parse(
            &BASE
                .replacen("[models.m]\nrpm = 10", paygo, 1)
                .replace("workers = 2", "workers = 2\npriority = 1.5"),
        )
        .unwrap_err();
        assert!(err.starts_with("s.toml: workload.priority: must be a share"), "{err}");
        let s = parse(
            &BASE
                .replacen("[models.m]\nrpm = 10", paygo, 1)
                .replace("workers = 2", "workers = 2\npriority = 0.5"),
        )
        .unwrap();
        assert_eq!(s.workload.priority, 0.5);
    }
}
