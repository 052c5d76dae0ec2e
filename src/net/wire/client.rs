//! The client side of the wire (pure): the body `drive` sends, and what a client learns from an
//! answer (outcome, violated dimensions, the exact retry delay).

use serde_json::{json, Value};

use crate::core::ledger::{Dimension, Dims, Limits};
use crate::core::server::Model;
use crate::core::time::{Nanos, SECOND};
use crate::strategy::Outcome;

use super::response::generated_text;

/// The generateContent body `drive` sends: a prompt that counts as exactly `input_tokens`
/// under `count_tokens`, and `maxOutputTokens` = `output_tokens` (when positive).
pub fn generate_body(input_tokens: u64, output_tokens: u64) -> String {
    let mut v = json!({"contents": [{"role": "user", "parts": [{"text": generated_text(input_tokens)}]}]});
    if output_tokens > 0 {
        v["generationConfig"] = json!({ "maxOutputTokens": output_tokens });
    }
    v.to_string()
}

/// Parses a protobuf duration string (`"38s"`, `"45.837906927s"`) exactly; `None` if it is not one.
pub fn parse_duration_string(text: &str) -> Option<Nanos> {
    let digits = text.strip_suffix('s')?;
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let ok = |d: &str| d.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty() || !ok(whole) || !ok(frac) || frac.len() > 9 || (digits.contains('.') && frac.is_empty()) {
        return None;
    }
    let ns: Nanos = format!("{frac:0<9}").parse().ok()?;
    whole.parse::<Nanos>().ok()?.checked_mul(SECOND)?.checked_add(ns)
}

/// The dimension a QuotaFailure violation's `quotaId` names (Google's ids, and ours for
/// concurrency), or `None` for an id this rule does not know.
pub fn dimension_of_quota_id(id: &str) -> Option<Dimension> {
    if id.contains("Concurrent") {
        Some(Dimension::Concurrency)
    } else if id.contains("Token") && id.contains("PerDay") {
        Some(Dimension::Tpd)
    } else if id.contains("Token") {
        Some(Dimension::Tpm)
    } else if id.contains("PerDay") {
        Some(Dimension::Rpd)
    } else if id.contains("PerMinute") {
        Some(Dimension::Rpm)
    } else {
        None
    }
}

fn detail<'a>(error: &'a Value, kind: &str) -> Option<&'a Value> {
    error
        .get("details")?
        .as_array()?
        .iter()
        .find(|d| d.get("@type").and_then(Value::as_str) == Some(kind))
}

/// What a client learns from one generateContent response with HTTP `status` and `body`, for
/// a request whose TPM cost is `tpm_cost`, on a server whose model ids are `models`: the
/// outcome and the violated dimensions. A 429's violated dimensions come from QuotaFailure and
/// its delay from RetryInfo (in the server's time); a violation whose quota is 0, or a TPM
/// quota below `tpm_cost`, can never be met (unservable). The model whose quota a 429 counts
/// is the index in `models` of the first `quotaDimensions.model` it names there (the asked
/// model's own included, as the simulator reports it; `None` when it names none of them). A
/// 200 whose body is not a response, and any status not listed, is an [`Outcome::Error`]: a
/// malformed body never stops a client.
pub fn read_response(status: u16, body: &[u8], tpm_cost: u64, models: &[Model]) -> (Outcome, Dims) {
    let v: Option<Value> = serde_json::from_slice(body).ok();
    let error = v.as_ref().and_then(|v| v.get("error"));
    let outcome = match status {
        200 => match v.as_ref().and_then(|v| v.get("candidates")) {
            Some(Value::Array(_)) => Outcome::Ok,
            _ => Outcome::Error,
        },
        429 => {
            let (violated, quota, impossible) = violations(error, tpm_cost);
            if impossible {
                return (Outcome::Unservable { quota }, violated);
            }
            let retry_delay = error
                .and_then(|e| detail(e, "type.googleapis.com/google.rpc.RetryInfo"))
                .and_then(|r| r.get("retryDelay"))
                .and_then(Value::as_str)
                .and_then(parse_duration_string);
            return (
                Outcome::RateLimited {
                    violated,
                    retry_delay,
                    quota,
                    quota_model: quota_model(error, models),
                },
                violated,
            );
        }
        400 => {
            let reason = error
                .and_then(|e| detail(e, "type.googleapis.com/google.rpc.ErrorInfo"))
                .and_then(|i| i.get("reason"))
                .and_then(Value::as_str);
            if reason == Some("API_KEY_INVALID") {
                Outcome::InvalidKey
            } else {
                Outcome::Error
            }
        }
        // Server-side trouble that Google's SDKs retry.
        500 | 502 | 503 | 504 => Outcome::Unavailable,
        _ => Outcome::Error,
    };
    (outcome, Dims::EMPTY)
}

/// The index in `models` of the first model a QuotaFailure violation of `error` names in
/// `quotaDimensions.model` (Google writes the bare id; a `models/` prefix is read too), or
/// `None` when none names one of them.
fn quota_model(error: Option<&Value>, models: &[Model]) -> Option<usize> {
    let list = error
        .and_then(|e| detail(e, "type.googleapis.com/google.rpc.QuotaFailure"))
        .and_then(|q| q.get("violations"))
        .and_then(Value::as_array)?;
    list.iter().find_map(|v| {
        let name = v.get("quotaDimensions")?.get("model")?.as_str()?;
        let name = name.strip_prefix("models/").unwrap_or(name);
        models.iter().position(|m| m.name == name)
    })
}

/// The dimensions an error's QuotaFailure names with the values it states for them, and
/// whether one of them can never be met by a request costing `tpm_cost`.
fn violations(error: Option<&Value>, tpm_cost: u64) -> (Dims, Limits, bool) {
    let mut violated = Dims::EMPTY;
    let mut quota = Limits::default();
    let mut impossible = false;
    let list = error
        .and_then(|e| detail(e, "type.googleapis.com/google.rpc.QuotaFailure"))
        .and_then(|q| q.get("violations"))
        .and_then(Value::as_array);
    for v in list.into_iter().flatten() {
        let Some(d) = v.get("quotaId").and_then(Value::as_str).and_then(dimension_of_quota_id) else {
            continue;
        };
        violated.insert(d);
        let value = v.get("quotaValue").and_then(|q| match q {
            Value::String(s) => s.parse::<u64>().ok(),
            other => other.as_u64(),
        });
        if value.is_some() {
            quota.set(d, value);
        }
        impossible |= value == Some(0) || (d == Dimension::Tpm && value.is_some_and(|l| l < tpm_cost));
    }
    (violated, quota, impossible)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::wire::error::*;
    use crate::net::wire::request::{count_tokens, parse_generate, GenerateRequest};
    use crate::net::wire::response::response;
    use crate::net::wire::structured::Format;

    fn read_response_outcome(status: u16, body: &[u8], tpm_cost: u64) -> Outcome {
        read_response(status, body, tpm_cost, &[]).0
    }

    /// The models of a server where gemini-3.5-flash is re-routed to gemini-3.6-flash.
    fn routed_models() -> Vec<Model> {
        let text = r#"
name = "routed"
[models."gemini-3.5-flash"]
routed_to = "gemini-3.6-flash"
rpm = 5
[models."gemini-3.6-flash"]
rpm = 5
[topology]
projects = 1
[workload]
kind = "closed"
requests = 1
workers = 1
model = "gemini-3.6-flash"
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 5 }
"#;
        crate::scenario::Scenario::parse(text, std::path::Path::new("routed.toml"))
            .unwrap()
            .models
    }

    /// The model index a 429 naming `named` in every violation gives, asked of `models`.
    fn named_quota_model(named: &str, models: &[Model]) -> Option<usize> {
        let limits = Limits {
            rpm: Some(5),
            ..Limits::default()
        };
        let rpm: Dims = [Dimension::Rpm].into_iter().collect();
        let body = quota_exceeded(rpm, &limits, "free", named, Some(SECOND)).to_string();
        match read_response(429, body.as_bytes(), 1, models).0 {
            Outcome::RateLimited { quota_model, .. } => quota_model,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_429_says_whose_quota_it_counts() {
        let models = routed_models();
        let index = |name: &str| models.iter().position(|m| m.name == name).unwrap();
        let (old, new) = (index("gemini-3.5-flash"), index("gemini-3.6-flash"));
        // A call to the retired id refused on its target's quota names the target, bare (as
        // Google and serve write it) or as a resource name.
        assert_eq!(named_quota_model("gemini-3.6-flash", &models), Some(new));
        assert_eq!(named_quota_model("models/gemini-3.6-flash", &models), Some(new));
        // Its own quota names itself, as the simulator reports it (flux merges nothing then).
        assert_eq!(named_quota_model("gemini-3.5-flash", &models), Some(old));
        // A model the client does not know, or none at all, says nothing.
        for unknown in [
            "gemini-9-pro",
            "models/",
            "",
            "GEMINI-3.6-FLASH",
            "gemini-3.6-flash-001",
        ] {
            assert_eq!(named_quota_model(unknown, &models), None, "{unknown:?}");
        }
        assert_eq!(named_quota_model("gemini-3.6-flash", &[]), None);
        // The first violation naming a known model counts; odd `quotaDimensions` are skipped.
        let body = br#"{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
            {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaDimensions": 3},
            {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaDimensions": {"model": 7}},
            {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaDimensions": {"model": "nope"}},
            {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaDimensions": {"model": "gemini-3.6-flash"}},
            {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaDimensions": {"model": "gemini-3.5-flash"}}]}]}}"#;
        assert!(matches!(
            read_response(429, body, 1, &models).0,
            Outcome::RateLimited { quota_model: Some(m), .. } if m == new
        ));
    }

    #[test]
    fn clients_parse_what_the_server_writes() {
        let limits = Limits {
            rpm: Some(10),
            tpm: Some(250_000),
            rpd: Some(250),
            tpd: Some(6_000_000),
            concurrent: Some(3),
        };
        let body = |v: Dims, retry| quota_exceeded(v, &limits, "free", "m", retry).to_string().into_bytes();
        let all: Dims = Dimension::ALL.into_iter().collect();
        assert_eq!(
            read_response_outcome(429, &body(all, Some(45_837_906_927)), 100),
            Outcome::RateLimited {
                violated: all,
                retry_delay: Some(45_837_906_927),
                quota: limits,
                quota_model: None,
            }
        );
        let tpm: Dims = [Dimension::Tpm].into_iter().collect();
        assert_eq!(
            read_response(429, &body(tpm, None), 300_000, &[]),
            (
                Outcome::Unservable {
                    quota: Limits {
                        tpm: Some(250_000),
                        ..Limits::default()
                    }
                },
                tpm
            )
        );
        assert_eq!(
            read_response_outcome(429, &body(tpm, Some(SECOND)), 1_000),
            Outcome::RateLimited {
                violated: tpm,
                retry_delay: Some(SECOND),
                quota: Limits {
                    tpm: Some(250_000),
                    ..Limits::default()
                },
                quota_model: None,
            }
        );
        for tier in ["tier1", "tier2", "tier3"] {
            for d in Dimension::ALL {
                assert_eq!(dimension_of_quota_id(&quota_names(d, tier).0), Some(d), "{tier} {d}");
            }
        }
        let zero = Limits { rpd: Some(0), ..limits };
        let rpd: Dims = [Dimension::Rpd].into_iter().collect();
        let v = quota_exceeded(rpd, &zero, "free", "m", None).to_string();
        assert_eq!(
            read_response_outcome(429, v.as_bytes(), 1),
            Outcome::Unservable {
                quota: Limits {
                    rpd: Some(0),
                    ..Limits::default()
                }
            }
        );
        assert_eq!(
            read_response_outcome(400, invalid_key().to_string().as_bytes(), 1),
            Outcome::InvalidKey
        );
        assert_eq!(
            read_response_outcome(400, invalid_argument("x").to_string().as_bytes(), 1),
            Outcome::Error
        );
        assert_eq!(
            read_response_outcome(503, unavailable().to_string().as_bytes(), 1),
            Outcome::Unavailable
        );
        assert_eq!(
            read_response_outcome(403, missing_key().to_string().as_bytes(), 1),
            Outcome::Error
        );
        let ok = response("hi", 1, 1, Some("STOP"), "m", "r").to_string();
        assert_eq!(read_response_outcome(200, ok.as_bytes(), 1), Outcome::Ok);
    }

    #[test]
    fn malformed_bodies_are_errors_or_bare_429s() {
        for junk in [
            &b"<html>oops"[..],
            b"",
            b"{\"candidates\": 3}",
            b"{\"error\": {}}",
            b"\xff\xfe",
        ] {
            assert_eq!(read_response_outcome(200, junk, 1), Outcome::Error);
            assert_eq!(read_response_outcome(400, junk, 1), Outcome::Error);
            assert_eq!(
                read_response_outcome(429, junk, 1),
                Outcome::RateLimited {
                    violated: Dims::EMPTY,
                    retry_delay: None,
                    quota: Limits::default(),
                    quota_model: None,
                }
            );
        }
        let odd =
            br#"{"error": {"details": [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "soon"},
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{"quotaId": "Mystery"}, 7]}]}}"#;
        assert_eq!(
            read_response_outcome(429, odd, 1),
            Outcome::RateLimited {
                violated: Dims::EMPTY,
                retry_delay: None,
                quota: Limits::default(),
                quota_model: None,
            }
        );
    }

    #[test]
    fn duration_strings_round_trip_exactly() {
        for ns in [0, 1, 999_999_999, SECOND, 38 * SECOND, 45_837_906_927, u64::MAX / 2] {
            assert_eq!(parse_duration_string(&duration_string(ns)), Some(ns), "{ns}");
        }
        for bad in [
            "",
            "s",
            "1",
            "1.s",
            ".5s",
            "-1s",
            "1.0000000001s",
            "1e3s",
            "99999999999999999999s",
        ] {
            assert_eq!(parse_duration_string(bad), None, "{bad:?}");
        }
        let body: Value = serde_json::from_str(&generate_body(7, 3)).unwrap();
        assert_eq!(count_tokens(&body), 7);
        assert_eq!(
            parse_generate(generate_body(7, 3).as_bytes()).unwrap(),
            GenerateRequest {
                input_tokens: 7,
                max_output_tokens: Some(3),
                format: Format::Text,
            }
        );
        assert_eq!(
            parse_generate(generate_body(2, 0).as_bytes())
                .unwrap()
                .max_output_tokens,
            None
        );
    }
}
