//! The `[workload]` table: arrivals (open, closed, trace), token sizes, model choice, and Live
//! sessions.

use crate::core::dist::TokenDist;
use crate::core::live::{CloseAfter, Modality, SessionSpec};
use crate::core::server::Model;
use crate::core::time::{format_duration, MINUTE};
use crate::core::workload::{Arrivals, ModelChoice, WorkloadSpec};
use crate::scenario::schema::*;
use crate::scenario::{read_trace, ScenarioError};
use std::path::Path;

use super::{max, Ctx, DEFAULT_TAIL};

pub(super) fn workload(
    cx: &Ctx,
    w: &RawWorkload,
    models: &[Model],
    base: &Path,
) -> Result<WorkloadSpec, ScenarioError> {
    let mut spec = arrivals_and_sizes(cx, w, models, base)?;
    spec.priority = priority(cx, w, models, &spec)?;
    Ok(spec)
}

/// `workload.priority`: the share of requests sent with Priority PayGo's header, to models on
/// PayGo.
fn priority(cx: &Ctx, w: &RawWorkload, models: &[Model], spec: &WorkloadSpec) -> Result<f64, ScenarioError> {
    let Some(share) = w.priority else { return Ok(0.0) };
    if !(share.is_finite() && (0.0..=1.0).contains(&share)) {
        return Err(cx.err(
            "workload.priority",
            format!("must be a share of the requests between 0 and 1, got {share}"),
        ));
    }
    if share > 0.0 && spec.model.models().iter().all(|&m| models[m].paygo.is_none()) {
        return Err(cx.err(
            "workload.priority",
            "Priority PayGo applies to models on PayGo: give the workload's model a [models.<name>.paygo] table",
        ));
    }
    Ok(share)
}

fn arrivals_and_sizes(cx: &Ctx, w: &RawWorkload, models: &[Model], base: &Path) -> Result<WorkloadSpec, ScenarioError> {
    let kind = w.kind.as_str();
    fields_fit_kind(cx, w, kind)?;
    let model = model_choice(cx, w, models)?;
    let session = sessions(cx, w, kind, &model, models)?;
    // A sessions workload arrives like an open one (`rate`), or from `clients` that each open
    // the next session when their last one ends (a closed batch of `sessions`).
    let shown = kind;
    let (kind, requests_field, workers_field, requests, workers) = match kind {
        "sessions" if w.clients.is_some() || w.rate.is_none() => {
            ("closed", "sessions", "clients", w.sessions, w.clients)
        }
        "sessions" => ("open", "sessions", "clients", w.sessions, w.clients),
        k => (k, "requests", "workers", w.requests, w.workers),
    };
    let need = |v: Option<u64>, name: &str| -> Result<u64, ScenarioError> {
        match v {
            None if shown == "sessions" => Err(cx.err(
                &format!("workload.{name}"),
                "required for kind = \"sessions\" without `rate` (clients that reconnect)",
            )),
            None => Err(cx.err(&format!("workload.{name}"), format!("required for kind = {kind:?}"))),
            Some(0) => Err(cx.err(&format!("workload.{name}"), "must be at least 1")),
            Some(n) => Ok(n),
        }
    };
    match kind {
        "closed" => {
            if session.is_some() && w.duration.is_some() {
                return Err(cx.err(
                    "workload.duration",
                    "sessions from `clients` run until `sessions` are done or the horizon; give `rate` for open arrivals over a duration",
                ));
            }
            let requests = cx.at_most(
                &format!("workload.{requests_field}"),
                need(requests, requests_field)?,
                max::REQUESTS,
            )?;
            let workers = cx.at_most(
                &format!("workload.{workers_field}"),
                need(workers, workers_field)?,
                max::WORKERS,
            )?;
            Ok(WorkloadSpec {
                arrivals: Arrivals::Closed { requests, workers },
                duration: 0,
                input: tokens(cx, "workload.input_tokens", &w.input_tokens, max::INPUT_TOKENS)?,
                output: tokens(cx, "workload.output_tokens", &w.output_tokens, max::OUTPUT_TOKENS)?,
                model,
                session,
                priority: 0.0,
            })
        }
        "open" => {
            let rate = w
                .rate
                .ok_or_else(|| cx.err("workload.rate", "required for kind = \"open\" (requests per minute)"))?;
            if !(rate.is_finite() && rate > 0.0) {
                return Err(cx.err(
                    "workload.rate",
                    "must be a number of requests per minute greater than zero",
                ));
            }
            let duration = cx.positive_duration(
                "workload.duration",
                w.duration.as_deref().ok_or_else(|| {
                    cx.err(
                        "workload.duration",
                        format!("required for kind = {shown:?} with `rate`"),
                    )
                })?,
            )?;
            let bursts = match (&w.burst_on, &w.burst_off) {
                (None, None) => None,
                (Some(on), Some(off)) => Some((
                    cx.positive_duration("workload.burst_on", on)?,
                    cx.positive_duration("workload.burst_off", off)?,
                )),
                _ => return Err(cx.err("workload.burst_on", "give both burst_on and burst_off, or neither")),
            };
            if let Some(0) = requests {
                return Err(cx.err(&format!("workload.{requests_field}"), "must be at least 1"));
            }
            // What the run would have to simulate: refuse it before it cannot end.
            let on_minutes = match bursts {
                None => duration as f64 / MINUTE as f64,
                Some((on, off)) => duration as f64 / MINUTE as f64 * on as f64 / (on + off) as f64,
            };
            let expected = (rate * on_minutes).min(requests.map_or(f64::INFINITY, |r| r as f64));
            if expected > max::REQUESTS as f64 {
                return Err(cx.err(
                    "workload.rate",
                    format!(
                        "{rate} a minute for {} means about {expected:.3e} requests, more than the most a run simulates, {}; \
                         lower the rate or the duration, or cap it with workload.requests",
                        format_duration(duration),
                        max::REQUESTS
                    ),
                ));
            }
            Ok(WorkloadSpec {
                arrivals: Arrivals::Open {
                    rate_per_min: rate,
                    bursts,
                    max_requests: requests,
                },
                duration,
                input: tokens(cx, "workload.input_tokens", &w.input_tokens, max::INPUT_TOKENS)?,
                output: tokens(cx, "workload.output_tokens", &w.output_tokens, max::OUTPUT_TOKENS)?,
                model,
                session,
                priority: 0.0,
            })
        }
        _ => {
            let rel = w
                .path
                .as_deref()
                .ok_or_else(|| cx.err("workload.path", "required for kind = \"trace\" (a CSV file)"))?;
            let path = base.join(rel);
            let rows = read_trace(&path, models)?;
            let last = rows.last().map_or(0, |r| r.arrival);
            let duration = match (&w.duration, &w.tail) {
                (Some(_), Some(_)) => {
                    return Err(cx.err(
                        "workload.tail",
                        "give `duration` (the whole run) or `tail` (the run past the last arrival), not both",
                    ))
                }
                (Some(d), None) => cx.positive_duration("workload.duration", d)?,
                (None, Some(t)) => last.saturating_add(cx.duration("workload.tail", t)?),
                (None, None) => last.saturating_add(DEFAULT_TAIL),
            };
            if duration > max::SPAN {
                return Err(cx.err(
                    "workload.path",
                    format!(
                        "the trace runs past the longest span allowed, {}",
                        format_duration(max::SPAN)
                    ),
                ));
            }
            Ok(WorkloadSpec {
                arrivals: Arrivals::Trace {
                    rows: rows.into(),
                    path,
                },
                duration,
                input: TokenDist::Fixed(0),
                output: TokenDist::Fixed(0),
                model,
                session,
                priority: 0.0,
            })
        }
    }
}

/// Every field given is one `kind` uses (an open workload takes no `workers`...).
fn fields_fit_kind(cx: &Ctx, w: &RawWorkload, kind: &str) -> Result<(), ScenarioError> {
    let allowed: &[&str] = match kind {
        "open" => &[
            "rate",
            "duration",
            "burst_on",
            "burst_off",
            "requests",
            "input_tokens",
            "output_tokens",
            "model",
            "models",
        ],
        "closed" => &[
            "requests",
            "workers",
            "input_tokens",
            "output_tokens",
            "model",
            "models",
        ],
        "trace" => &["path", "duration", "tail", "model", "models"],
        "sessions" => &[
            "rate",
            "duration",
            "sessions",
            "clients",
            "turns",
            "pause",
            "hold",
            "modality",
            "close_after",
            "input_tokens",
            "output_tokens",
            "model",
            "models",
        ],
        other => {
            return Err(cx.err(
                "workload.kind",
                format!("unknown kind {other:?}; expected \"open\", \"closed\", \"trace\" or \"sessions\""),
            ))
        }
    };
    let present = [
        ("rate", w.rate.is_some()),
        ("duration", w.duration.is_some()),
        ("burst_on", w.burst_on.is_some()),
        ("burst_off", w.burst_off.is_some()),
        ("requests", w.requests.is_some()),
        ("workers", w.workers.is_some()),
        ("path", w.path.is_some()),
        ("tail", w.tail.is_some()),
        ("input_tokens", w.input_tokens.is_some()),
        ("output_tokens", w.output_tokens.is_some()),
        ("model", w.model.is_some()),
        ("models", !w.models.is_empty()),
        ("sessions", w.sessions.is_some()),
        ("clients", w.clients.is_some()),
        ("turns", w.turns.is_some()),
        ("pause", w.pause.is_some()),
        ("hold", w.hold.is_some()),
        ("modality", w.modality.is_some()),
        ("close_after", w.close_after.is_some()),
    ];
    for (name, p) in present {
        if p && !allowed.contains(&name) {
            return Err(cx.err(
                &format!("workload.{name}"),
                format!("not used by kind = {kind:?} (it takes {allowed:?})"),
            ));
        }
    }
    Ok(())
}

/// The model each request prefers: `model`, weighted `models`, or the only model.
fn model_choice(cx: &Ctx, w: &RawWorkload, models: &[Model]) -> Result<ModelChoice, ScenarioError> {
    Ok(match (&w.model, w.models.is_empty()) {
        (Some(_), false) => return Err(cx.err("workload.models", "give either `model` or `models`, not both")),
        (Some(m), true) => ModelChoice::One(cx.model("workload.model", models, m)?),
        (None, false) => {
            let mut v = Vec::new();
            for (i, m) in w.models.iter().enumerate() {
                if m.weight == 0 {
                    return Err(cx.err(&format!("workload.models[{i}].weight"), "must be at least 1"));
                }
                v.push((
                    cx.model(&format!("workload.models[{i}].name"), models, &m.name)?,
                    m.weight,
                ));
            }
            ModelChoice::Weighted(v)
        }
        (None, true) if models.len() == 1 => ModelChoice::One(0),
        (None, true) => return Err(cx.err("workload.model", "required when the scenario has several models")),
    })
}

/// A sessions workload's session shape, on Live models only (and Live models only in one).
fn sessions(
    cx: &Ctx,
    w: &RawWorkload,
    kind: &str,
    model: &ModelChoice,
    models: &[Model],
) -> Result<Option<SessionSpec>, ScenarioError> {
    let used = model.models();
    Ok(if kind == "sessions" {
        if let Some(&m) = used.iter().find(|&&m| !models[m].live) {
            return Err(cx.err(
                "workload.model",
                format!(
                    "{:?} is not a Live model; a sessions workload needs `live = true` on its models",
                    models[m].name
                ),
            ));
        }
        Some(session_spec(cx, w)?)
    } else {
        if let Some(&m) = used.iter().find(|&&m| models[m].live) {
            return Err(cx.err(
                "workload.model",
                format!(
                    "{:?} is a Live model (`live = true`): its calls are sessions, use kind = \"sessions\"",
                    models[m].name
                ),
            ));
        }
        None
    })
}

/// A token-size distribution whose values never exceed `limit` (a lognormal is clamped there
/// unless its `max` is lower).
fn tokens(cx: &Ctx, field: &str, raw: &Option<RawTokens>, limit: u64) -> Result<TokenDist, ScenarioError> {
    let Some(t) = raw else {
        return Err(cx.err(field, "missing; e.g. { dist = \"fixed\", value = 1000 }"));
    };
    let only = |allowed: &[&str]| -> Result<(), ScenarioError> {
        let given = [
            ("value", t.value.is_some()),
            ("min", t.min.is_some()),
            ("max", t.max.is_some()),
            ("median", t.median.is_some()),
            ("p99", t.p99.is_some()),
        ];
        for (name, present) in given {
            if present && !allowed.contains(&name) {
                return Err(cx.err(
                    &format!("{field}.{name}"),
                    format!("not used by dist = {:?} (it takes {allowed:?})", t.dist),
                ));
            }
        }
        Ok(())
    };
    let need_u = |v: Option<u64>, name: &str| {
        let v = v.ok_or_else(|| cx.err(&format!("{field}.{name}"), format!("required for dist = {:?}", t.dist)))?;
        cx.at_most(&format!("{field}.{name}"), v, limit)
    };
    match t.dist.as_str() {
        "fixed" => {
            only(&["value"])?;
            Ok(TokenDist::Fixed(need_u(t.value, "value")?))
        }
        "uniform" => {
            only(&["min", "max"])?;
            let (min, max) = (need_u(t.min, "min")?, need_u(t.max, "max")?);
            if min > max {
                return Err(cx.err(&format!("{field}.min"), format!("{min} is greater than max {max}")));
            }
            Ok(TokenDist::Uniform { min, max })
        }
        "lognormal" => {
            only(&["median", "p99", "min", "max"])?;
            let median = t
                .median
                .ok_or_else(|| cx.err(&format!("{field}.median"), "required for dist = \"lognormal\""))?;
            let p99 = t
                .p99
                .ok_or_else(|| cx.err(&format!("{field}.p99"), "required for dist = \"lognormal\""))?;
            if !(median.is_finite() && median >= 1.0 && median <= limit as f64) {
                return Err(cx.err(&format!("{field}.median"), format!("must be between 1 and {limit}")));
            }
            if !(p99.is_finite() && p99 >= median && p99 <= limit as f64) {
                return Err(cx.err(
                    &format!("{field}.p99"),
                    format!("must be at least the median ({median}) and at most {limit}"),
                ));
            }
            let min = cx.at_most(&format!("{field}.min"), t.min.unwrap_or(1), limit)?;
            let max = cx.at_most(&format!("{field}.max"), t.max.unwrap_or(limit), limit)?;
            if min > max {
                return Err(cx.err(&format!("{field}.min"), format!("{min} is greater than max {max}")));
            }
            Ok(TokenDist::lognormal(median, p99, min, max))
        }
        other => Err(cx.err(
            &format!("{field}.dist"),
            format!("unknown distribution {other:?}; expected \"fixed\", \"uniform\" or \"lognormal\""),
        )),
    }
}

/// Turns per session at most (each is planned when the session opens).
const MAX_TURNS: u64 = 10_000;

/// The client of a sessions workload: `turns`, `pause`, `hold`, `modality`, `close_after`.
fn session_spec(cx: &Ctx, w: &RawWorkload) -> Result<SessionSpec, ScenarioError> {
    let turns = match w.turns {
        None => 1,
        Some(0) => return Err(cx.err("workload.turns", "must be at least 1")),
        Some(n) => cx.at_most("workload.turns", n, MAX_TURNS)?,
    };
    let modality = match w.modality.as_deref().unwrap_or("audio") {
        "audio" => Modality::Audio,
        "audio_video" => Modality::AudioVideo,
        "text" => Modality::Text,
        other => {
            return Err(cx.err(
                "workload.modality",
                format!("unknown modality {other:?}; expected \"audio\", \"audio_video\" or \"text\""),
            ))
        }
    };
    let close_after = match w.close_after.as_deref().unwrap_or("turn_complete") {
        "turn_complete" => CloseAfter::TurnComplete,
        "generation_complete" => CloseAfter::GenerationComplete,
        other => {
            return Err(cx.err(
                "workload.close_after",
                format!("unknown close policy {other:?}; expected \"turn_complete\" or \"generation_complete\""),
            ))
        }
    };
    Ok(SessionSpec {
        turns: turns as u32,
        pause: cx.bounded("workload.pause", w.pause.as_deref().unwrap_or("0s"), max::DELAY)?,
        hold: cx.bounded("workload.hold", w.hold.as_deref().unwrap_or("0s"), max::DELAY)?,
        modality,
        close_after,
    })
}

#[cfg(test)]
mod tests {
    use crate::core::dist::TokenDist;
    use crate::core::time::SECOND;
    use crate::core::workload::Arrivals;
    use crate::scenario::validate::fixture::{error_with, parse, BASE};

    #[test]
    fn an_open_workload_with_lognormal_tokens() {
        let text = BASE
            .replace(
                "kind = \"closed\"\nrequests = 10\nworkers = 2",
                "kind = \"open\"\nrate = 2\nduration = \"30s\"",
            )
            .replace(
                "input_tokens = { dist = \"fixed\", value = 10 }",
                "input_tokens = { dist = \"lognormal\", median = 100, p99 = 1000 }",
            );
        let s = parse(&text).unwrap();
        assert!(
            matches!(s.workload.arrivals, Arrivals::Open { .. }),
            "{:?}",
            s.workload.arrivals
        );
        assert_eq!(s.workload.duration, 30 * SECOND);
        assert!(matches!(s.workload.input, TokenDist::LogNormal { .. }));
        assert_eq!(s.horizon, 30 * SECOND);
    }

    #[test]
    fn bad_workload_values_name_their_field() {
        for (from, to, want) in [
            (
                "kind = \"closed\"",
                "kind = \"sometimes\"",
                "s.toml: workload.kind: unknown kind \"sometimes\"",
            ),
            (
                "value = 10 }\noutput",
                "value = 10, median = 3 }\noutput",
                "s.toml: workload.input_tokens.median: not used by dist = \"fixed\"",
            ),
            ("workers = 2", "workers = 0", "s.toml: workload.workers:"),
            (
                "requests = 10",
                "requests = 1000000001",
                "s.toml: workload.requests: 1000000001 is more than the most allowed",
            ),
        ] {
            let err = error_with(from, to);
            assert!(err.starts_with(want), "{to}: {err} !~ {want}");
        }
    }
}
