//! The `[models]` table: each model's limits, latency, shared pool (Vertex AI's dynamic shared
//! quota), prices and reserved (provisioned) throughput.

use crate::core::dist::Latency;
use crate::core::ledger::Limits;
use crate::core::server::{ConcurrencyScope, Model, Overflow, Provisioned};
use crate::core::shared_pool::PoolSpec;
use crate::core::spend::Prices;
use crate::scenario::schema::*;
use crate::scenario::ScenarioError;

use super::{max, Ctx};

/// The `[models]` table: each model's limits, latency (the server's unless its own), shared pool,
/// prices and reserved throughput.
pub(super) fn models(
    cx: &Ctx,
    raw: &std::collections::BTreeMap<String, RawModel>,
    server_latency: Latency,
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
        models.push(Model {
            provisioned,
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
        });
    }
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

#[cfg(test)]
mod tests {
    use crate::scenario::validate::fixture::{error_with, parse, BASE};
    use crate::core::time::SECOND;

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
}
