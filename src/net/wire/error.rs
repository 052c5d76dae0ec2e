//! Error bodies in Google's envelope and wording (pure): QuotaFailure, RetryInfo, Help and
//! ErrorInfo details on 429s, and the 400/401/403/404/503 answers serve and proxy give.

use serde_json::{json, Value};

use crate::core::ledger::{Dimension, Dims, Limits};
use crate::core::time::{Nanos, SECOND};

/// Help link of quota errors.
pub const RATE_LIMITS_URL: &str = "https://ai.google.dev/gemini-api/docs/rate-limits";

fn envelope(code: u16, status: &str, message: &str, details: Vec<Value>) -> Value {
    let mut e = json!({"code": code, "message": message, "status": status});
    if !details.is_empty() {
        e["details"] = Value::Array(details);
    }
    json!({ "error": e })
}

/// 429 RESOURCE_EXHAUSTED from `flux-sim proxy` itself (its queue is full, or the request could
/// not be sent before its deadline), with RetryInfo when the proxy knows when to retry.
pub fn proxy_refusal(message: &str, retry: Option<Nanos>) -> Value {
    let mut message = message.to_string();
    let mut details = Vec::new();
    if let Some(d) = retry {
        message.push_str(&format!(" Please retry in {}.", duration_string(d)));
        details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": duration_string(d)}));
    }
    envelope(429, "RESOURCE_EXHAUSTED", &message, details)
}

/// 502 UNAVAILABLE from `flux-sim proxy`: the upstream could not be reached.
pub fn upstream_unreachable(why: &str) -> Value {
    envelope(
        502,
        "UNAVAILABLE",
        &format!("flux-sim proxy: the upstream did not answer: {why}"),
        Vec::new(),
    )
}

/// 503 UNAVAILABLE from `flux-sim proxy`: the ledger it shares with other proxies did not
/// answer, so it sends nothing (it fails closed); RetryInfo says when it will have tried to
/// reach the ledger again (`retry`: its reconnection backoff).
pub fn shared_ledger_down(why: &str, retry: Nanos) -> Value {
    envelope(
        503,
        "UNAVAILABLE",
        &format!(
            "flux-sim proxy: not sent, {why}; the proxy sends nothing its fleet's ledger has not admitted. Please retry in {}.",
            duration_string(retry)
        ),
        vec![json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": duration_string(retry)})],
    )
}

/// An upstream error body (Google's envelope) whose RetryInfo says `retry` instead of what the
/// upstream said (added if it had none), and whose message's "Please retry in …" says the same;
/// `None` when the body is not an error envelope (then it is passed on as it came).
pub fn with_retry_delay(body: &[u8], retry: Nanos) -> Option<Vec<u8>> {
    let mut v: Value = serde_json::from_slice(body).ok()?;
    // The OpenAI-compatible endpoint may wrap the envelope in a list.
    let envelope = match &mut v {
        Value::Array(a) if a.len() == 1 => &mut a[0],
        other => other,
    };
    let error = envelope.get_mut("error")?.as_object_mut()?;
    let delay = duration_string(retry);
    if let Some(Value::String(m)) = error.get_mut("message") {
        if let Some(at) = m.find("Please retry in ") {
            let rest = &m[at + "Please retry in ".len()..];
            let end = rest.find("s.").map_or(rest.len(), |e| e + 2);
            let tail = rest[end..].to_string();
            m.truncate(at);
            m.push_str(&format!("Please retry in {delay}.{tail}"));
        }
    }
    let details = error
        .entry("details")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()?;
    let info = "type.googleapis.com/google.rpc.RetryInfo";
    match details.iter_mut().find(|d| d["@type"] == info) {
        Some(d) => d["retryDelay"] = Value::String(delay),
        None => details.push(json!({"@type": info, "retryDelay": delay})),
    }
    serde_json::to_vec(&v).ok()
}

/// 400 API_KEY_INVALID.
pub fn invalid_key() -> Value {
    envelope(
        400,
        "INVALID_ARGUMENT",
        "API key not valid. Please pass a valid API key.",
        vec![
            json!({"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com",
                    "metadata": {"service": "generativelanguage.googleapis.com"}}),
        ],
    )
}

/// 401 UNAUTHENTICATED, reason `ACCESS_TOKEN_TYPE_UNSUPPORTED`: what users report Google
/// answers a standard (`AIza…`) key since it refuses them (2026-06 unrestricted, 2026-09
/// all). A best reconstruction, not a captured body: the status and reason are reported
/// (google-gemini/gemini-cli#28538, 2026-07-26); the message is Google's 401 wording quoted by
/// Kilo-Org/kilocode#12162 for that rejection; the ErrorInfo domain and metadata follow
/// Google's other ErrorInfo details.
pub fn access_token_type_unsupported() -> Value {
    envelope(
        401,
        "UNAUTHENTICATED",
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
        vec![json!({
            "@type": "type.googleapis.com/google.rpc.ErrorInfo",
            "reason": "ACCESS_TOKEN_TYPE_UNSUPPORTED",
            "domain": "googleapis.com",
            "metadata": {"service": "generativelanguage.googleapis.com"}
        })],
    )
}

/// 403 for a request without a key.
pub fn missing_key() -> Value {
    envelope(
        403,
        "PERMISSION_DENIED",
        "Method doesn't allow unregistered callers (callers without established identity). Please use API Key or other form of API consumer identity to call this API.",
        Vec::new(),
    )
}

/// 404 for an unknown model.
pub fn unknown_model(model: &str, version: &str, method: &str) -> Value {
    envelope(
        404,
        "NOT_FOUND",
        &format!("models/{model} is not found for API version {version}, or is not supported for {method}. Call ListModels to see the list of available models and their supported methods."),
        Vec::new(),
    )
}

/// 400 INVALID_ARGUMENT with `message`.
pub fn invalid_argument(message: &str) -> Value {
    envelope(400, "INVALID_ARGUMENT", message, Vec::new())
}

/// 429 RESOURCE_EXHAUSTED without details, as Google sends it when it has no capacity (a
/// shared pool is full) rather than a quota is exceeded.
pub fn capacity_exhausted() -> Value {
    envelope(
        429,
        "RESOURCE_EXHAUSTED",
        "Resource exhausted, please try again later.",
        Vec::new(),
    )
}

/// The message of a spend-cap 429. Google documents that spend-based limits answer 429
/// RESOURCE_EXHAUSTED but no body has been recorded: this wording is flux-sim's, and the body
/// carries no details (no QuotaFailure, no RetryInfo).
pub const SPEND_CAP_MESSAGE: &str = "Your billing account has reached its spend limit for the current period. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits";

/// 429 RESOURCE_EXHAUSTED for a billing account whose spend cap is reached.
pub fn spend_cap_exhausted() -> Value {
    envelope(429, "RESOURCE_EXHAUSTED", SPEND_CAP_MESSAGE, Vec::new())
}

/// Whether an error body is a spend-cap 429's.
pub fn names_spend_cap(body: &[u8]) -> bool {
    serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(|m| m == SPEND_CAP_MESSAGE)
        })
        .unwrap_or(false)
}

/// 503 UNAVAILABLE.
pub fn unavailable() -> Value {
    envelope(
        503,
        "UNAVAILABLE",
        "The model is overloaded. Please try again later.",
        Vec::new(),
    )
}

/// Quota id and metric of one dimension on one tier (`free`, `tier1`, `tier2`, `tier3`).
/// Google publishes the free-tier ids and the paid TPM ids; the paid RPM/RPD ids follow the
/// same pattern, and concurrency has no published id (ours is marked as such).
pub fn quota_names(d: Dimension, tier: &str) -> (String, String) {
    let m = "generativelanguage.googleapis.com/";
    let (id_suffix, metric_tier) = match tier {
        "free" => ("-FreeTier", "free_tier"),
        "tier1" => ("", "paid_tier"),
        "tier2" => ("-PaidTier2", "paid_tier_2"),
        _ => ("-PaidTier3", "paid_tier_3"),
    };
    match d {
        Dimension::Rpm => (
            format!("GenerateRequestsPerMinutePerProjectPerModel{id_suffix}"),
            format!("{m}generate_content_{metric_tier}_requests"),
        ),
        Dimension::Rpd => (
            format!("GenerateRequestsPerDayPerProjectPerModel{id_suffix}"),
            format!("{m}generate_content_{metric_tier}_requests"),
        ),
        Dimension::Tpm if tier == "free" => (
            "GenerateContentInputTokensPerModelPerMinute-FreeTier".into(),
            format!("{m}generate_content_free_tier_input_token_count"),
        ),
        Dimension::Tpm => (
            format!("GenerateContentPaidTierInputTokensPerModelPerMinute{id_suffix}"),
            format!("{m}generate_content_{metric_tier}_input_token_count"),
        ),
        Dimension::Tpd if tier == "free" => (
            "GenerateContentInputTokensPerModelPerDay-FreeTier".into(),
            format!("{m}generate_content_free_tier_input_token_count"),
        ),
        Dimension::Tpd => (
            format!("GenerateContentPaidTierInputTokensPerModelPerDay{id_suffix}"),
            format!("{m}generate_content_{metric_tier}_input_token_count"),
        ),
        Dimension::Concurrency => (
            format!("ConcurrentRequestsPerProjectPerModel{id_suffix}-FluxSim"),
            format!("{m}concurrent_requests"),
        ),
    }
}

/// A protobuf duration string, exact to the nanosecond (`"38s"`, `"45.837906927s"`).
pub fn duration_string(ns: Nanos) -> String {
    let (s, frac) = (ns / SECOND, ns % SECOND);
    if frac == 0 {
        format!("{s}s")
    } else {
        format!("{s}.{}s", format!("{frac:09}").trim_end_matches('0'))
    }
}

/// 429 RESOURCE_EXHAUSTED in the 2026 shape (Help, QuotaFailure with one violation per
/// exceeded dimension, RetryInfo) and Google's message lines. `retry` is `None` for a request
/// that can never fit.
pub fn quota_exceeded(violated: Dims, limits: &Limits, tier: &str, model: &str, retry: Option<Nanos>) -> Value {
    let mut message = String::from(
        "You exceeded your current quota, please check your plan and billing details. For more information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits. To monitor your current usage, head to: https://ai.dev/rate-limit. ",
    );
    let mut violations = Vec::new();
    for d in violated.iter() {
        let (id, metric) = quota_names(d, tier);
        let value = limits.get(d).unwrap_or(0);
        message.push_str(&format!(
            "\n* Quota exceeded for metric: {metric}, limit: {value}, model: {model}"
        ));
        violations.push(json!({"quotaMetric": metric, "quotaId": id, "quotaDimensions": {"location": "global", "model": model}, "quotaValue": value.to_string()}));
    }
    let mut details = vec![
        json!({"@type": "type.googleapis.com/google.rpc.Help", "links": [{"description": "Learn more about Gemini API quotas", "url": RATE_LIMITS_URL}]}),
        json!({"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": violations}),
    ];
    if let Some(d) = retry {
        message.push_str(&format!("\nPlease retry in {}.", duration_string(d)));
        details.push(json!({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": duration_string(d)}));
    }
    envelope(429, "RESOURCE_EXHAUSTED", &message, details)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_errors_match_googles_shape() {
        let limits = Limits {
            rpm: Some(10),
            tpm: Some(250_000),
            rpd: Some(250),
            tpd: None,
            concurrent: None,
        };
        let v = quota_exceeded(
            [Dimension::Rpm, Dimension::Tpm].into_iter().collect(),
            &limits,
            "free",
            "gemini-2.5-flash",
            Some(38_909_233_000),
        );
        let e = &v["error"];
        assert_eq!(e["code"], 429);
        assert_eq!(e["status"], "RESOURCE_EXHAUSTED");
        let msg = e["message"].as_str().unwrap();
        assert!(msg.contains("\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 10, model: gemini-2.5-flash"));
        assert!(msg.contains("generate_content_free_tier_input_token_count, limit: 250000"));
        assert!(msg.ends_with("\nPlease retry in 38.909233s."));
        let d = e["details"].as_array().unwrap();
        assert_eq!(d[0]["@type"], "type.googleapis.com/google.rpc.Help");
        assert_eq!(
            d[1]["violations"][0]["quotaId"],
            "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
        );
        assert_eq!(
            d[1]["violations"][1]["quotaId"],
            "GenerateContentInputTokensPerModelPerMinute-FreeTier"
        );
        assert_eq!(d[1]["violations"][0]["quotaValue"], "10");
        assert_eq!(d[1]["violations"][0]["quotaDimensions"]["model"], "gemini-2.5-flash");
        assert_eq!(d[2]["retryDelay"], "38.909233s");
        assert_eq!(
            quota_names(Dimension::Tpm, "tier1").0,
            "GenerateContentPaidTierInputTokensPerModelPerMinute"
        );
        assert_eq!(
            quota_names(Dimension::Tpm, "tier2").1,
            "generativelanguage.googleapis.com/generate_content_paid_tier_2_input_token_count"
        );
    }

    #[test]
    fn an_upstream_retry_delay_is_replaced_everywhere_it_is_said() {
        let limits = Limits {
            rpm: Some(10),
            ..Limits::default()
        };
        let upstream = quota_exceeded(
            [Dimension::Rpm].into_iter().collect(),
            &limits,
            "free",
            "gemini-2.5-flash",
            Some(50_000_000),
        );
        let body = serde_json::to_vec(&upstream).unwrap();
        let out: Value = serde_json::from_slice(&with_retry_delay(&body, 59_250_000_000).unwrap()).unwrap();
        let e = &out["error"];
        assert!(
            e["message"].as_str().unwrap().ends_with("\nPlease retry in 59.25s."),
            "{e}"
        );
        assert_eq!(e["details"][2]["retryDelay"], "59.25s");
        // QuotaFailure is kept as the upstream said it.
        assert_eq!(e["details"][1], upstream["error"]["details"][1]);
        // No RetryInfo: one is added; not an envelope: nothing to do.
        let bare = serde_json::to_vec(&unavailable()).unwrap();
        let out: Value = serde_json::from_slice(&with_retry_delay(&bare, SECOND).unwrap()).unwrap();
        assert_eq!(
            out["error"]["details"].as_array().unwrap().last().unwrap()["retryDelay"],
            "1s"
        );
        assert_eq!(with_retry_delay(b"<html>", SECOND), None);
        let down = shared_ledger_down("Redis did not answer", SECOND);
        assert_eq!(down["error"]["details"][0]["retryDelay"], "1s");
    }

    #[test]
    fn other_errors_use_googles_wording() {
        assert_eq!(invalid_key()["error"]["details"][0]["reason"], "API_KEY_INVALID");
        assert_eq!(missing_key()["error"]["status"], "PERMISSION_DENIED");
        assert!(unknown_model("x", "v1beta", "generateContent")["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("models/x is not found for API version v1beta"));
        assert_eq!(unavailable()["error"]["code"], 503);
        assert_eq!(duration_string(38 * SECOND), "38s");
        assert_eq!(duration_string(45_837_906_927), "45.837906927s");
    }
}
