//! `flux-sim serve` over real HTTP on loopback: success, streaming, countTokens, every error
//! shape field by field, exact retry delays, and no over-admission under concurrent clients.

use std::path::Path;
use std::time::Duration;

use flux_sim::scenario::Scenario;
use serde_json::{json, Value};

const SCENARIO: &str = r#"
name = "serve-test"
seed = 9
[server.latency]
ttft = "2ms"
tokens_per_second = 100000
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = 5
tpm = 100000
rpd = 1000
[topology]
projects = ["solo", "pair"]
[topology.project.pair]
keys = 2
[[topology.keys]]
project = "solo"
key = "AIzaSyINVALID-test-key-000"
invalid = true
[workload]
kind = "closed"
requests = 1
workers = 1
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 100 }
"#;

struct Live {
    base: String,
    keys: Vec<String>,
    client: reqwest::Client,
    _stop: tokio::sync::oneshot::Sender<()>,
}

async fn start(time_scale: u64) -> Live {
    start_with(SCENARIO, time_scale).await
}

async fn start_with(text: &str, time_scale: u64) -> Live {
    let s = Scenario::parse(text, Path::new("serve-test.toml")).unwrap();
    let keys = s.topology.keys.iter().map(|k| k.value.clone()).collect();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flux_sim::net::serve::serve(listener, s, time_scale, async move {
        let _ = rx.await;
    }));
    Live {
        base: format!("http://{addr}/v1beta/models"),
        keys,
        client: reqwest::Client::new(),
        _stop: tx,
    }
}

/// The detail of type `google.rpc.{kind}` in an error body (panics if absent).
fn detail<'a>(v: &'a Value, kind: &str) -> &'a Value {
    let want = format!("type.googleapis.com/google.rpc.{kind}");
    v["error"]["details"]
        .as_array()
        .and_then(|d| d.iter().find(|d| d["@type"] == want.as_str()))
        .unwrap_or_else(|| panic!("no {kind} in {v}"))
}

fn body(text: &str) -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": text}]}]})
}

impl Live {
    /// serve's `/flux/metrics` (Prometheus text).
    async fn metrics(&self) -> String {
        let url = self.base.replace("/v1beta/models", "/flux/metrics");
        self.client.get(url).send().await.unwrap().text().await.unwrap()
    }

    /// GET `url` and its JSON body.
    async fn get_json(&self, url: String) -> Value {
        self.client.get(url).send().await.unwrap().json().await.unwrap()
    }

    /// The status of a one-token generateContent on key `k`.
    async fn generate(&self, k: &str) -> u16 {
        self.post("gemini-2.5-flash:generateContent", Some(k), &body("x"))
            .await
            .0
    }

    async fn post(&self, path: &str, key: Option<&str>, b: &Value) -> (u16, Value) {
        let mut r = self.client.post(format!("{}/{path}", self.base)).json(b);
        if let Some(k) = key {
            r = r.header("x-goog-api-key", k);
        }
        let resp = r.send().await.unwrap();
        let status = resp.status().as_u16();
        assert_eq!(resp.headers()["content-type"], "application/json; charset=UTF-8");
        assert!(
            resp.headers().get("retry-after").is_none(),
            "Google sends no Retry-After"
        );
        (status, resp.json().await.unwrap())
    }
}

#[tokio::test]
async fn generate_count_and_list() {
    let live = start(1).await;
    let k = &live.keys[0];
    let (status, v) = live
        .post("gemini-2.5-flash:generateContent", Some(k), &body("abcdefgh"))
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["usageMetadata"]["promptTokenCount"], 2);
    assert_eq!(v["usageMetadata"]["candidatesTokenCount"], 100);
    assert_eq!(v["usageMetadata"]["totalTokenCount"], 102);
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");
    assert_eq!(v["candidates"][0]["content"]["role"], "model");
    assert_eq!(
        v["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .chars()
            .count(),
        400
    );
    assert_eq!(v["modelVersion"], "gemini-2.5-flash");
    assert!(v["responseId"].is_string());
    // maxOutputTokens caps the output.
    let mut b = body("x");
    b["generationConfig"] = json!({"maxOutputTokens": 7});
    let (_, v) = live.post("gemini-2.5-flash:generateContent", Some(k), &b).await;
    assert_eq!(
        (
            v["usageMetadata"]["candidatesTokenCount"].as_u64(),
            v["candidates"][0]["finishReason"].as_str()
        ),
        (Some(7), Some("MAX_TOKENS"))
    );
    // ?key= works too; models list and get.
    let list: Value = live.get_json(format!("{}?key={k}", live.base)).await;
    assert_eq!(list["models"][0]["name"], "models/gemini-2.5-flash");
    assert!(list["models"][0]["supportedGenerationMethods"]
        .as_array()
        .unwrap()
        .contains(&json!("generateContent")));
    let one = live
        .client
        .get(format!("{}/gemini-2.5-flash?key={k}", live.base))
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 200);
}

#[tokio::test]
async fn count_tokens_costs_no_quota() {
    let live = start(1).await;
    let k = &live.keys[0];
    for _ in 0..20 {
        let (status, v) = live
            .post("gemini-2.5-flash:countTokens", Some(k), &body("abcdefghi"))
            .await;
        assert_eq!((status, v["totalTokens"].as_u64()), (200, Some(3)));
    }
    for _ in 0..5 {
        assert_eq!(live.generate(k).await, 200);
    }
    assert_eq!(live.generate(k).await, 429);
}

#[tokio::test]
async fn error_shapes_field_by_field() {
    let live = start(1).await;
    let (s, v) = live.post("gemini-2.5-flash:generateContent", None, &body("x")).await;
    assert_eq!(
        (s, v["error"]["code"].as_u64(), v["error"]["status"].as_str()),
        (403, Some(403), Some("PERMISSION_DENIED"))
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .starts_with("Method doesn't allow unregistered callers"));

    for bad in ["not-a-key", "AIzaSyINVALID-test-key-000"] {
        let (s, v) = live
            .post("gemini-2.5-flash:generateContent", Some(bad), &body("x"))
            .await;
        assert_eq!(s, 400);
        assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
        assert_eq!(v["error"]["message"], "API key not valid. Please pass a valid API key.");
        let d = &v["error"]["details"][0];
        assert_eq!(
            (d["@type"].as_str(), d["reason"].as_str(), d["domain"].as_str()),
            (
                Some("type.googleapis.com/google.rpc.ErrorInfo"),
                Some("API_KEY_INVALID"),
                Some("googleapis.com")
            )
        );
        assert_eq!(d["metadata"]["service"], "generativelanguage.googleapis.com");
    }

    let k = &live.keys[0];
    let (s, v) = live.post("gemini-9:generateContent", Some(k), &body("x")).await;
    assert_eq!((s, v["error"]["status"].as_str()), (404, Some("NOT_FOUND")));
    assert_eq!(v["error"]["message"], "models/gemini-9 is not found for API version v1beta, or is not supported for generateContent. Call ListModels to see the list of available models and their supported methods.");

    let raw = live
        .client
        .post(format!("{}/gemini-2.5-flash:generateContent", live.base))
        .header("x-goog-api-key", k)
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let v: Value = raw.json().await.unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("Invalid JSON payload received."),
        "{v}"
    );
    let huge = "x".repeat(flux_sim::net::serve::MAX_BODY + 10);
    let raw = live
        .client
        .post(format!("{}/gemini-2.5-flash:generateContent", live.base))
        .header("x-goog-api-key", k)
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status(), 400);
    let v: Value = raw.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");

    // Quota: 5 RPM on project "solo", then a 429 with every field.
    for _ in 0..5 {
        assert_eq!(live.generate(k).await, 200);
    }
    let (s, v) = live.post("gemini-2.5-flash:generateContent", Some(k), &body("x")).await;
    assert_eq!(s, 429);
    let e = &v["error"];
    assert_eq!(
        (e["code"].as_u64(), e["status"].as_str()),
        (Some(429), Some("RESOURCE_EXHAUSTED"))
    );
    let d = e["details"].as_array().unwrap();
    assert_eq!(d.len(), 3);
    assert_eq!(d[0]["@type"], "type.googleapis.com/google.rpc.Help");
    assert_eq!(d[1]["@type"], "type.googleapis.com/google.rpc.QuotaFailure");
    let viol = d[1]["violations"].as_array().unwrap();
    assert_eq!(viol.len(), 1);
    assert_eq!(
        viol[0]["quotaId"],
        "GenerateRequestsPerMinutePerProjectPerModel-FreeTier"
    );
    assert_eq!(
        viol[0]["quotaMetric"],
        "generativelanguage.googleapis.com/generate_content_free_tier_requests"
    );
    assert_eq!(viol[0]["quotaValue"], "5");
    assert_eq!(
        viol[0]["quotaDimensions"],
        json!({"location": "global", "model": "gemini-2.5-flash"})
    );
    assert_eq!(d[2]["@type"], "type.googleapis.com/google.rpc.RetryInfo");
    let delay = d[2]["retryDelay"].as_str().unwrap();
    let secs: f64 = delay.trim_end_matches('s').parse().unwrap();
    assert!(secs > 55.0 && secs <= 60.0, "{delay}");
    let msg = e["message"].as_str().unwrap();
    assert!(msg.contains("\n* Quota exceeded for metric: generativelanguage.googleapis.com/generate_content_free_tier_requests, limit: 5, model: gemini-2.5-flash"));
    assert!(msg.ends_with(&format!("\nPlease retry in {delay}.")));
    // The other project's budget is untouched; its two keys share theirs.
    assert_eq!(
        live.post("gemini-2.5-flash:generateContent", Some(&live.keys[1]), &body("x"))
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn retry_delay_is_honoured_in_scaled_time() {
    // Time scale 600: a quota minute lasts 100 ms of real time.
    let live = start(600).await;
    let k = &live.keys[0];
    for _ in 0..5 {
        assert_eq!(live.generate(k).await, 200);
    }
    let (s, v) = live.post("gemini-2.5-flash:generateContent", Some(k), &body("x")).await;
    assert_eq!(s, 429);
    let delay: f64 = v["error"]["details"][2]["retryDelay"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();
    assert!(delay > 0.0 && delay <= 0.1, "{delay}");
    tokio::time::sleep(Duration::from_secs_f64(delay + 0.02)).await;
    assert_eq!(live.generate(k).await, 200);
}

#[tokio::test]
async fn streaming_in_both_forms() {
    let live = start(1).await;
    let k = &live.keys[0];
    let sse = live
        .client
        .post(format!("{}/gemini-2.5-flash:streamGenerateContent?alt=sse", live.base))
        .header("x-goog-api-key", k)
        .json(&body("abcd"))
        .send()
        .await
        .unwrap();
    assert_eq!(sse.status(), 200);
    assert_eq!(sse.headers()["content-type"], "text/event-stream");
    let text = sse.text().await.unwrap();
    let events: Vec<Value> = text
        .split("\r\n\r\n")
        .filter(|e| !e.is_empty())
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(events.len(), 2, "100 tokens in chunks of 64");
    assert_eq!(events[0]["usageMetadata"]["candidatesTokenCount"], 64);
    assert!(events[0]["candidates"][0].get("finishReason").is_none());
    assert_eq!(events[1]["usageMetadata"]["candidatesTokenCount"], 100);
    assert_eq!(events[1]["candidates"][0]["finishReason"], "STOP");
    let all: String = events
        .iter()
        .map(|e| e["candidates"][0]["content"]["parts"][0]["text"].as_str().unwrap())
        .collect();
    assert_eq!(all.chars().count(), 400);
    let arr = live
        .client
        .post(format!("{}/gemini-2.5-flash:streamGenerateContent", live.base))
        .header("x-goog-api-key", k)
        .json(&body("abcd"))
        .send()
        .await
        .unwrap();
    let v: Value = arr.json().await.unwrap();
    assert_eq!(v.as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_clients_never_over_admit() {
    let live = std::sync::Arc::new(start(1).await);
    // Project "pair" has two keys sharing 5 RPM: 40 concurrent calls on both keys.
    let mut tasks = Vec::new();
    for i in 0..40 {
        let live = live.clone();
        tasks.push(tokio::spawn(async move {
            live.post(
                "gemini-2.5-flash:generateContent",
                Some(&live.keys[1 + i % 2]),
                &body("x"),
            )
            .await
            .0
        }));
    }
    let mut codes = Vec::new();
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 5, "{codes:?}");
    assert_eq!(codes.iter().filter(|&&c| c == 429).count(), 35);
    let metrics = live.metrics().await;
    assert!(
        metrics.contains("flux_responses_total{project=\"pair\",model=\"gemini-2.5-flash\",code=\"200\"} 5"),
        "{metrics}"
    );
    assert!(
        metrics.contains("flux_rate_limited_total{project=\"pair\",model=\"gemini-2.5-flash\",dimension=\"rpm\"} 35"),
        "{metrics}"
    );
    let ledger: Value = live.get_json(live.base.replace("/v1beta/models", "/flux/ledger")).await;
    let pair = ledger["budgets"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["project"] == "pair")
        .unwrap();
    assert_eq!(pair["peak"]["rpm"], 5);
}

#[tokio::test]
async fn v1_is_served_too_and_unknown_versions_are_404() {
    let live = start(1).await;
    let k = &live.keys[0];
    let v1 = live.base.replace("/v1beta/", "/v1/");
    let list: Value = live.get_json(format!("{v1}?key={k}")).await;
    assert_eq!(list["models"][0]["name"], "models/gemini-2.5-flash");
    let r = live
        .client
        .post(format!("{v1}/gemini-9:generateContent?key={k}"))
        .json(&body("x"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(
        v["error"]["message"].as_str().unwrap().contains("for API version v1,"),
        "{v}"
    );
    let r = live
        .client
        .get(format!("{}?key={k}", live.base.replace("/v1beta/", "/v9/")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = live
        .client
        .get(live.base.replace("/v1beta/models", "/elsewhere"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        v["error"]["message"],
        "The requested URL GET /elsewhere was not found on this server."
    );
}

/// `POST /flux/reset` starts the server fresh (empty ledger, counters at zero), so drives can
/// be repeated; only loopback peers may ask.
#[tokio::test]
async fn reset_starts_fresh_for_loopback_clients_only() {
    let live = start(1).await;
    let solo = &live.keys[0];
    for _ in 0..5 {
        assert_eq!(live.generate(solo).await, 200);
    }
    assert_eq!(live.generate(solo).await, 429, "rpm 5 spent");
    let root = live.base.trim_end_matches("/v1beta/models");
    let r = live.client.post(format!("{root}/flux/reset")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(live.generate(solo).await, 200, "a fresh minute after the reset");
    let ledger: Value = live.get_json(format!("{root}/flux/ledger")).await;
    assert_eq!(ledger["budgets"][0]["usage"]["rpm"], 1, "{ledger}");
    // Without a known loopback peer (here: the router called in process) it is refused.
    use tower::ServiceExt;
    let s = Scenario::parse(SCENARIO, Path::new("serve-test.toml")).unwrap();
    let req = axum::http::Request::builder()
        .method("POST")
        .uri("/flux/reset")
        .body(axum::body::Body::empty())
        .unwrap();
    let resp = flux_sim::net::serve::router(s, 1).oneshot(req).await.unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}

/// A stream's first chunk comes at the time to first token, not before (it came after an
/// even share of the whole latency).
#[tokio::test]
async fn a_stream_starts_at_the_time_to_first_token() {
    let text = SCENARIO.replace("ttft = \"2ms\"", "ttft = \"400ms\"");
    let s = Scenario::parse(&text, Path::new("serve-test.toml")).unwrap();
    let key = s.topology.keys[1].value.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(flux_sim::net::serve::serve(listener, s, 1, std::future::pending()));
    let client = reqwest::Client::new();
    // Both endpoints: Gemini's SSE and the OpenAI-compatible one.
    let mut openai = chat("x");
    openai["stream"] = json!(true);
    for (url, b) in [
        (
            format!("http://{addr}/v1beta/models/gemini-2.5-flash:streamGenerateContent?alt=sse&key={key}"),
            body("x"),
        ),
        (
            format!("http://{addr}/v1beta/openai/chat/completions?key={key}"),
            openai,
        ),
    ] {
        let t = std::time::Instant::now();
        let mut resp = client.post(&url).json(&b).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{url}");
        let first = resp.chunk().await.unwrap().expect("a first chunk");
        assert!(String::from_utf8_lossy(&first).starts_with("data: "));
        let waited = t.elapsed();
        assert!(
            waited >= Duration::from_millis(390),
            "{url}: first chunk after {waited:?}, before the 400 ms ttft"
        );
        while resp.chunk().await.unwrap().is_some() {}
    }
}

/// `models.list` honours `pageSize` and hands back a `nextPageToken` (the SDK pages with it).
#[tokio::test]
async fn models_are_listed_page_by_page_over_http() {
    let text = SCENARIO
        .replace("[topology]", "[models.\"gemini-2.5-flash-lite\"]\nrpm = 5\n[topology]")
        .replace("[workload]", "[workload]\nmodel = \"gemini-2.5-flash\"");
    let s = Scenario::parse(&text, Path::new("t.toml")).unwrap();
    let key = s.topology.keys[0].value.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(flux_sim::net::serve::serve(listener, s, 1, std::future::pending()));
    let get = |q: String| {
        let url = format!("http://{addr}/v1beta/models?key={key}{q}");
        async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() }
    };
    let p1 = get("&pageSize=1".into()).await;
    assert_eq!(p1["models"].as_array().unwrap().len(), 1, "{p1}");
    let token = p1["nextPageToken"].as_str().expect("a next page").to_string();
    let p2 = get(format!("&pageSize=1&pageToken={token}")).await;
    assert_eq!(p2["models"].as_array().unwrap().len(), 1);
    assert_ne!(p1["models"][0]["name"], p2["models"][0]["name"]);
    assert!(p2.get("nextPageToken").is_none(), "{p2}");
    let bad = get("&pageToken=nonsense".into()).await;
    assert_eq!(bad["error"]["code"], 400);
}

/// The server quirks of `[server.quirks]` in Google's wire shape, field by field: a per-minute
/// 429 whose RetryInfo says a day, a quota of 0 that says "retry in 25s", and a detail-less
/// capacity 429.
#[tokio::test]
async fn quirks_in_google_s_wire_shape() {
    let text = format!(
        "{}\n[server.quirks]\nper_minute_retry = \"86400s\"\nzero_quota_retry = \"25s\"\n\
         [models.\"gemini-2.5-pro\"]\nrpm = 0\n",
        SCENARIO.replace("[workload]\n", "[workload]\nmodel = \"gemini-2.5-flash\"\n")
    );
    let live = start_with(&text, 1).await;
    let key = &live.keys[0];
    for _ in 0..5 {
        assert_eq!(live.generate(key).await, 200);
    }
    let (status, v) = live
        .post("gemini-2.5-flash:generateContent", Some(key), &body("x"))
        .await;
    assert_eq!(status, 429);
    let retry = detail(&v, "RetryInfo");
    assert_eq!(retry["retryDelay"], "86400s", "the lie, not the exact delay");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("Please retry in 86400s."),
        "{v}"
    );
    let quota = detail(&v, "QuotaFailure");
    assert_eq!(quota["violations"][0]["quotaValue"], "5");

    let (status, v) = live.post("gemini-2.5-pro:generateContent", Some(key), &body("x")).await;
    assert_eq!(status, 429);
    let quota = detail(&v, "QuotaFailure");
    assert_eq!(quota["violations"][0]["quotaValue"], "0");
    let retry = detail(&v, "RetryInfo");
    assert_eq!(retry["retryDelay"], "25s");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .ends_with("Please retry in 25s."),
        "{v}"
    );

    let busy = start_with(&format!("{SCENARIO}\n[server.quirks]\ncapacity_rate = 1.0\n"), 1).await;
    let (status, v) = busy
        .post("gemini-2.5-flash:generateContent", Some(&busy.keys[0]), &body("x"))
        .await;
    assert_eq!(status, 429);
    assert_eq!(v["error"]["code"], 429);
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert_eq!(v["error"]["message"], "Resource exhausted, please try again later.");
    assert!(
        v["error"]["details"].as_array().is_none_or(|d| d.is_empty()),
        "no details: {v}"
    );
}

/// A tokens-per-day violation in Google's wire shape: quotaId and metric as Google names them,
/// the limit, and a RetryInfo delay to Pacific midnight (`per_day_retry = "reset"`), or by
/// default to the next minute.
#[tokio::test]
async fn a_tokens_per_day_429_names_its_quota() {
    let text =
        SCENARIO.replace("rpd = 1000\n", "rpd = 1000\ntpd = 3\n") + "\n[server.quirks]\nper_day_retry = \"reset\"\n";
    let live = start_with(&text, 1).await;
    let key = &live.keys[0];
    for _ in 0..3 {
        assert_eq!(live.generate(key).await, 200, "one token each");
    }
    let (status, v) = live
        .post("gemini-2.5-flash:generateContent", Some(key), &body("x"))
        .await;
    assert_eq!(status, 429);
    let q = detail(&v, "QuotaFailure");
    let violation = &q["violations"][0];
    assert_eq!(
        violation["quotaId"],
        "GenerateContentInputTokensPerModelPerDay-FreeTier"
    );
    assert_eq!(
        violation["quotaMetric"],
        "generativelanguage.googleapis.com/generate_content_free_tier_input_token_count"
    );
    assert_eq!(violation["quotaValue"], "3");
    assert_eq!(
        q["violations"].as_array().unwrap().len(),
        1,
        "only TPD is violated: {v}"
    );
    let retry = detail(&v, "RetryInfo");
    let delay = flux_sim::net::wire::client::parse_duration_string(retry["retryDelay"].as_str().unwrap()).unwrap();
    assert!(
        delay > 60 * 1_000_000_000 && delay <= 24 * 3600 * 1_000_000_000,
        "to midnight: {delay}"
    );
    // By default (issue 31) it says the seconds left in the minute, as Google's do.
    let text = SCENARIO.replace("rpd = 1000\n", "rpd = 1000\ntpd = 3\n");
    let live = start_with(&text, 1).await;
    let key = &live.keys[0];
    for _ in 0..3 {
        assert_eq!(live.generate(key).await, 200, "one token each");
    }
    let (status, v) = live
        .post("gemini-2.5-flash:generateContent", Some(key), &body("x"))
        .await;
    assert_eq!(status, 429);
    let retry = detail(&v, "RetryInfo");
    let delay = flux_sim::net::wire::client::parse_duration_string(retry["retryDelay"].as_str().unwrap()).unwrap();
    assert!(delay > 0 && delay <= 60 * 1_000_000_000, "to the next minute: {delay}");
}

/// A billing account past its spend cap: 429 RESOURCE_EXHAUSTED without details, whichever of
/// its projects sends; the refused request is not charged.
#[tokio::test]
async fn a_spend_cap_429_has_no_details_and_spans_the_account() {
    // Each response is 100 output tokens at $1 per million: $0.0001; the cap allows two.
    let text = SCENARIO
        .replace("rpd = 1000\n", "rpd = 1000\nprice_output = 1.0\n")
        .replace(
            "projects = [\"solo\", \"pair\"]\n",
            "projects = [\"solo\", \"pair\"]\nspend_cap = 0.00025\n",
        );
    let live = start_with(&text, 1).await;
    assert_eq!(live.generate(&live.keys[0]).await, 200);
    assert_eq!(live.generate(&live.keys[1]).await, 200, "another project, same account");
    for k in [&live.keys[1], &live.keys[2]] {
        let (status, v) = live.post("gemini-2.5-flash:generateContent", Some(k), &body("x")).await;
        assert_eq!(status, 429);
        assert_eq!(v["error"]["code"], 429);
        assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
        assert_eq!(v["error"]["message"], flux_sim::net::wire::error::SPEND_CAP_MESSAGE);
        assert!(
            v["error"]["details"].as_array().is_none_or(|d| d.is_empty()),
            "no details: {v}"
        );
    }
    let m = live.metrics().await;
    assert!(
        m.contains("flux_rate_limited_total{project=\"pair\",model=\"gemini-2.5-flash\",dimension=\"spend_cap\"} 2"),
        "{m}"
    );
}

// ---- The OpenAI-compatible endpoint, structured output, media tokens, embeddings (#15) ----

impl Live {
    /// POST to `/v1beta/openai/{path}` with `Authorization: Bearer key`: status, content type
    /// and the body's text.
    async fn openai(&self, path: &str, key: Option<&str>, b: &Value) -> (u16, String, String) {
        let url = format!("{}/{path}", self.base.replace("/v1beta/models", "/v1beta/openai"));
        let mut r = self.client.post(url).json(b);
        if let Some(k) = key {
            r = r.bearer_auth(k);
        }
        let resp = r.send().await.unwrap();
        assert!(
            resp.headers().get("retry-after").is_none(),
            "Google sends no Retry-After"
        );
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        (resp.status().as_u16(), ct, resp.text().await.unwrap())
    }

    /// The answer's text of a generateContent call with this generationConfig.
    async fn text_with(&self, prompt: &str, config: Value) -> String {
        let mut b = body(prompt);
        b["generationConfig"] = config;
        let (status, v) = self
            .post("gemini-2.5-flash:generateContent", Some(&self.keys[1]), &b)
            .await;
        assert_eq!(status, 200, "{v}");
        v["candidates"][0]["content"]["parts"][0]["text"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

fn chat(text: &str) -> Value {
    json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": text}]})
}

#[tokio::test]
async fn openai_chat_stream_models_and_embeddings() {
    let live = start(1).await;
    let k = live.keys[1].as_str();
    let (status, ct, text) = live.openai("chat/completions", Some(k), &chat("abcdefgh")).await;
    assert_eq!(
        (status, ct.as_str()),
        (200, "application/json; charset=UTF-8"),
        "{text}"
    );
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gemini-2.5-flash");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        v["choices"][0]["message"]["content"].as_str().unwrap().chars().count(),
        400
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert_eq!(
        v["usage"],
        json!({"prompt_tokens": 2, "completion_tokens": 100, "total_tokens": 102})
    );
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    // max_completion_tokens wins over max_tokens; a cut answer finishes with "length".
    let mut b = chat("x");
    b["max_tokens"] = json!(50);
    b["max_completion_tokens"] = json!(7);
    let (_, _, text) = live.openai("chat/completions", Some(k), &b).await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        (
            v["usage"]["completion_tokens"].as_u64(),
            v["choices"][0]["finish_reason"].as_str()
        ),
        (Some(7), Some("length"))
    );
    // Streamed: SSE chunks, the role first, finish_reason and usage last, then [DONE].
    let mut b = chat("x");
    b["stream"] = json!(true);
    b["stream_options"] = json!({"include_usage": true});
    let (status, ct, text) = live.openai("chat/completions", Some(k), &b).await;
    assert_eq!((status, ct.as_str()), (200, "text/event-stream"));
    let events: Vec<&str> = text.split("\n\n").filter(|e| !e.is_empty()).collect();
    assert_eq!(events.last(), Some(&"data: [DONE]"));
    let chunks: Vec<Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e.strip_prefix("data: ").unwrap()).unwrap())
        .collect();
    assert_eq!(chunks.len(), 2, "100 tokens in chunks of 64");
    assert_eq!(chunks[0]["object"], "chat.completion.chunk");
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks[0]["choices"][0]["finish_reason"].is_null());
    assert_eq!(chunks[1]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks[1]["usage"]["completion_tokens"], 100);
    let all: String = chunks
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(all.chars().count(), 400);
    // Models, listed and fetched by either name.
    let base = live.base.replace("/v1beta/models", "/v1beta/openai/models");
    let list: Value = live
        .client
        .get(&base)
        .bearer_auth(k)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        list,
        json!({"object": "list", "data": [{"id": "models/gemini-2.5-flash", "object": "model", "created": 0, "owned_by": "google"}]})
    );
    for id in ["models/gemini-2.5-flash", "gemini-2.5-flash"] {
        let r = live
            .client
            .get(format!("{base}/{id}"))
            .bearer_auth(k)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{id}");
    }
    // Embeddings: floats, or base64 little-endian f32 (the SDK's default); same text, same vector.
    let e = json!({"model": "gemini-2.5-flash", "input": ["dub this", "and this"], "dimensions": 16});
    let (status, _, text) = live.openai("embeddings", Some(k), &e).await;
    assert_eq!(status, 200, "{text}");
    let floats: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(floats["data"].as_array().unwrap().len(), 2);
    assert_eq!(floats["usage"]["prompt_tokens"], 4);
    let v0: Vec<f64> = floats["data"][0]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(v0.len(), 16);
    assert!(
        (v0.iter().map(|x| x * x).sum::<f64>() - 1.0).abs() < 1e-5,
        "unit length"
    );
    live.client
        .post(live.base.replace("/v1beta/models", "/flux/reset"))
        .send()
        .await
        .unwrap();
    let mut e64 = e.clone();
    e64["encoding_format"] = json!("base64");
    let (_, _, text) = live.openai("embeddings", Some(k), &e64).await;
    let b64: Value = serde_json::from_str(&text).unwrap();
    let bytes = flux_sim::net::wire::request::decode_base64(b64["data"][0]["embedding"].as_str().unwrap()).unwrap();
    let decoded: Vec<f32> = bytes
        .chunks(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(decoded, v0.iter().map(|&x| x as f32).collect::<Vec<_>>());
}

#[tokio::test]
async fn openai_error_shapes_field_by_field() {
    for shape in ["array", "bare_array", "object"] {
        let text = SCENARIO.replace(
            "[server.latency]",
            &format!("[server]\nopenai_errors = \"{shape}\"\n[server.latency]"),
        );
        let live = start_with(&text, 1).await;
        let k = live.keys[1].as_str();
        // The envelope, whatever the shape.
        let envelope = |body: &str| -> Value {
            let v: Value = serde_json::from_str(body).unwrap();
            match shape {
                "object" => v,
                _ => {
                    assert_eq!(v.as_array().map(Vec::len), Some(1), "{shape}: {v}");
                    v[0].clone()
                }
            }
        };
        for _ in 0..5 {
            assert_eq!(live.openai("chat/completions", Some(k), &chat("x")).await.0, 200);
        }
        let (status, ct, body) = live.openai("chat/completions", Some(k), &chat("x")).await;
        assert_eq!(
            (status, ct.as_str()),
            (429, "application/json; charset=UTF-8"),
            "{shape}"
        );
        let e = envelope(&body);
        assert_eq!(e["error"]["code"], 429);
        assert_eq!(e["error"]["status"], "RESOURCE_EXHAUSTED");
        assert!(e["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("You exceeded your current quota"));
        let retry = e["error"]["details"].as_array().and_then(|d| {
            d.iter()
                .find(|d| d["@type"] == "type.googleapis.com/google.rpc.RetryInfo")
        });
        match shape {
            "bare_array" => assert!(e["error"].get("details").is_none(), "{e}"),
            _ => {
                let delay = retry.unwrap()["retryDelay"].as_str().unwrap();
                assert!(delay.ends_with('s') && delay != "0s", "{delay}");
            }
        }
        // No key, or one serve does not know: 401 (the SDK's AuthenticationError).
        for key in [None, Some("AIzaSyNOT-A-KEY-OF-THIS-SCENARIO")] {
            let (status, _, body) = live.openai("chat/completions", key, &chat("x")).await;
            let e = envelope(&body);
            assert_eq!(
                (status, e["error"]["status"].as_str()),
                (401, Some("UNAUTHENTICATED")),
                "{body}"
            );
            if shape != "bare_array" {
                assert_eq!(e["error"]["details"][0]["reason"], "CREDENTIALS_MISSING");
            }
        }
        // An unknown model: 404 (NotFoundError); an unknown field: Google's 400 wording.
        let mut b = chat("x");
        b["model"] = json!("gemini-9");
        let (status, _, body) = live.openai("chat/completions", Some(k), &b).await;
        assert_eq!(
            (status, envelope(&body)["error"]["status"].as_str()),
            (404, Some("NOT_FOUND"))
        );
        let mut b = chat("x");
        b["prompt_cache_key"] = json!("a");
        let (status, _, body) = live.openai("chat/completions", Some(&live.keys[2]), &b).await;
        assert_eq!(status, 400);
        assert_eq!(
            envelope(&body)["error"]["message"],
            "Invalid JSON payload received. Unknown name \"prompt_cache_key\": Cannot find field."
        );
    }
}

/// Schemas (JSON Schema, as `responseJsonSchema` and OpenAI's `response_format` take them),
/// each answer validated by the `jsonschema` crate.
fn schemas() -> Vec<Value> {
    vec![
        json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer", "minimum": 0, "maximum": 120}}, "required": ["name", "age"]}),
        json!({"type": "object", "properties": {"mood": {"type": "string", "enum": ["calm", "loud", "tense"]}, "score": {"type": "number", "exclusiveMinimum": 0, "maximum": 1}}, "required": ["mood", "score"], "additionalProperties": false}),
        json!({"type": "object", "properties": {"lines": {"type": "array", "minItems": 2, "maxItems": 4, "items": {"type": "object", "properties": {
            "speaker": {"type": "string", "maxLength": 12}, "start": {"type": "string", "format": "time"}, "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}}},
            "required": ["speaker", "start", "tags"]}}}, "required": ["lines"]}),
        json!({"$defs": {"node": {"type": "object", "properties": {"label": {"type": "string", "minLength": 3}, "children": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["label"]}},
            "$ref": "#/$defs/node"}),
        json!({"type": "object", "properties": {"when": {"type": "string", "format": "date-time"}, "id": {"type": "string", "format": "uuid"}, "note": {"type": ["string", "null"]},
            "either": {"anyOf": [{"type": "integer"}, {"type": "boolean"}]}, "done": {"type": "boolean"}, "kind": {"const": "review"}}, "required": ["when", "id", "note", "either", "done", "kind"]}),
        json!({"type": "array", "items": {"type": "integer", "minimum": -5, "maximum": 5}, "minItems": 3}),
    ]
}

#[tokio::test]
async fn structured_output_is_json_valid_against_the_schema() {
    let live = start(1000).await;
    let text = |v: &Value| v["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    for (i, schema) in schemas().into_iter().enumerate() {
        let validator = jsonschema::validator_for(&schema).unwrap();
        // Native: responseJsonSchema.
        let a = live
            .text_with(
                "x",
                json!({"responseMimeType": "application/json", "responseJsonSchema": schema}),
            )
            .await;
        // OpenAI: response_format json_schema.
        let mut b = chat("x");
        b["response_format"] =
            json!({"type": "json_schema", "json_schema": {"name": "s", "schema": schema, "strict": true}});
        let (status, _, resp) = live.openai("chat/completions", Some(&live.keys[1]), &b).await;
        assert_eq!(status, 200, "{resp}");
        let c = text(&serde_json::from_str(&resp).unwrap());
        for answer in [a, c] {
            let v: Value =
                serde_json::from_str(&answer).unwrap_or_else(|e| panic!("schema {i}: not JSON ({e}): {answer}"));
            let errors: Vec<String> = validator.iter_errors(&v).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "schema {i}: {errors:?} in {v}");
        }
        live.client
            .post(live.base.replace("/v1beta/models", "/flux/reset"))
            .send()
            .await
            .unwrap();
    }
    // Gemini's own schema dialect (as google-genai sends a pydantic model): upper-case types,
    // numbers as strings, propertyOrdering; and text/x.enum.
    let gemini = json!({"type": "OBJECT", "properties": {"title": {"type": "STRING"}, "lines": {"type": "ARRAY", "minItems": "2", "items": {"type": "OBJECT",
        "properties": {"speaker": {"type": "STRING"}, "seconds": {"type": "NUMBER"}, "mood": {"type": "STRING", "format": "enum", "enum": ["calm", "loud"]}}, "required": ["speaker", "seconds", "mood"]}}},
        "required": ["title", "lines"], "propertyOrdering": ["title", "lines"]});
    let v: Value = serde_json::from_str(
        &live
            .text_with(
                "x",
                json!({"responseMimeType": "application/json", "responseSchema": gemini}),
            )
            .await,
    )
    .unwrap();
    assert!(v["title"].is_string());
    let lines = v["lines"].as_array().unwrap();
    assert!(lines.len() >= 2);
    assert!(lines
        .iter()
        .all(|l| l["seconds"].is_number() && ["calm", "loud"].contains(&l["mood"].as_str().unwrap())));
    let e = live.text_with("x", json!({"responseMimeType": "text/x.enum", "responseSchema": {"type": "STRING", "format": "enum", "enum": ["up", "down"]}})).await;
    assert!(["up", "down"].contains(&e.as_str()), "{e}");
    // Sized to the drawn output (100 tokens ≈ 400 characters) and fixed by the seed.
    let open = json!({"responseMimeType": "application/json", "responseSchema": {"type": "OBJECT", "properties": {"summary": {"type": "STRING"}}}});
    let s = live.text_with("x", open.clone()).await;
    assert!((350..=450).contains(&s.len()), "{} characters: {s}", s.len());
    // json_object without a schema: still a JSON object.
    let mut b = chat("x");
    b["response_format"] = json!({"type": "json_object"});
    let (_, _, resp) = live.openai("chat/completions", Some(&live.keys[2]), &b).await;
    assert!(
        serde_json::from_str::<Value>(&text(&serde_json::from_str(&resp).unwrap()))
            .unwrap()
            .is_object()
    );
    // gemini-flux's policy prompt asks for JSON in words, showing a template: it gets that shape.
    let prompt = "You are a data provider. Return ONLY a raw JSON object.\nUse this exact schema:\n\n{\n  \"pro\": {\n    \"requests_per_day\": <integer>,\n    \"tokens_per_minute\": <integer>\n  },\n  \"token_cooldown_seconds\": <integer>,\n  \"daily_reset_time_pt\": \"<HH:MM>\"\n}\n\nOnly return the JSON. Nothing else.";
    let policy: Value = serde_json::from_str(&live.text_with(prompt, json!({})).await).unwrap();
    assert!(
        policy["pro"]["requests_per_day"].is_u64() && policy["token_cooldown_seconds"].is_u64(),
        "{policy}"
    );
    assert!(policy["daily_reset_time_pt"].is_string());
    // Schemas that cannot be met, or a schema with a text MIME type: 400 before any quota.
    for config in [
        json!({"responseMimeType": "application/json", "responseSchema": {"type": "INTEGER", "minimum": 5, "maximum": 1}}),
        json!({"responseMimeType": "application/json", "responseJsonSchema": {"$ref": "#/$defs/nowhere"}}),
        json!({"responseMimeType": "text/plain", "responseSchema": {"type": "STRING"}}),
        json!({"responseMimeType": "image/png"}),
    ] {
        let mut b = body("x");
        b["generationConfig"] = config.clone();
        let (status, v) = live
            .post("gemini-2.5-flash:generateContent", Some(&live.keys[0]), &b)
            .await;
        assert_eq!(
            (status, v["error"]["status"].as_str()),
            (400, Some("INVALID_ARGUMENT")),
            "{config}: {v}"
        );
    }
}

fn png(w: u32, h: u32) -> Vec<u8> {
    let mut d = b"\x89PNG\r\n\x1a\n\0\0\0\x0dIHDR".to_vec();
    d.extend(w.to_be_bytes());
    d.extend(h.to_be_bytes());
    d.extend([8, 2, 0, 0, 0]);
    d
}

fn wav_16k_mono(seconds: usize) -> Vec<u8> {
    let data = 32_000 * seconds;
    let mut d = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0\x01\0\x01\0".to_vec();
    d.extend(16_000u32.to_le_bytes());
    d.extend(32_000u32.to_le_bytes());
    d.extend([2, 0, 16, 0]);
    d.extend(b"data");
    d.extend((data as u32).to_le_bytes());
    d.extend(vec![0u8; data]);
    d
}

fn b64(d: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(d)
}

#[tokio::test]
async fn inline_media_costs_gemini_s_tokens() {
    let live = start(1).await;
    let k = live.keys[0].as_str();
    let media = json!({"contents": [{"role": "user", "parts": [
        {"text": "abcd"},
        {"inlineData": {"mimeType": "image/png", "data": b64(&png(200, 300))}},
        {"inline_data": {"mime_type": "image/png", "data": b64(&png(1920, 1080))}},
        {"inlineData": {"mimeType": "audio/wav", "data": b64(&wav_16k_mono(10))}},
    ]}]});
    let (status, v) = live.post("gemini-2.5-flash:countTokens", Some(k), &media).await;
    // 1 for the text, 258 for the small image, 3 × 2 tiles of 258, 10 s × 32.
    assert_eq!(
        (status, v["totalTokens"].as_u64()),
        (200, Some(1 + 258 + 6 * 258 + 320)),
        "{v}"
    );
    // The same rule on the OpenAI endpoint (a data URL).
    let b = json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [
        {"type": "text", "text": "abcd"},
        {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{}", b64(&png(1024, 1024)))}},
        {"type": "input_audio", "input_audio": {"data": b64(&wav_16k_mono(2)), "format": "wav"}},
    ]}]});
    let (status, _, body) = live.openai("chat/completions", Some(&live.keys[1]), &b).await;
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["usage"]["prompt_tokens"], 1 + 4 * 258 + 64);
    // Bytes that are not base64: a 400 naming the field.
    let bad = json!({"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "not base64!"}}]}]});
    let (status, v) = live.post("gemini-2.5-flash:countTokens", Some(k), &bad).await;
    assert_eq!(status, 400);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("contents[0].parts[0].inline_data.data"),
        "{v}"
    );
}

#[tokio::test]
async fn embeddings_spend_their_model_s_quota_as_the_scenario_says() {
    let with = |batch: &str| {
        SCENARIO
            .replace(
                "[server.latency]",
                &format!("[server]\nembed_batch = \"{batch}\"\n[server.latency]"),
            )
            .replace("[topology]", "[models.\"gemini-embedding-001\"]\nrpm = 3\n[topology]")
            .replace("kind = \"closed\"", "kind = \"closed\"\nmodel = \"gemini-2.5-flash\"")
    };
    let two = json!({"requests": [
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "one"}]}, "outputDimensionality": 8},
        {"model": "models/gemini-embedding-001", "content": {"parts": [{"text": "two"}]}},
    ]});
    // Each text is a request: 2 fit in rpm 3, the next batch's second text does not.
    let live = start_with(&with("each"), 1).await;
    let k = live.keys[0].as_str();
    let (status, v) = live
        .post("gemini-embedding-001:batchEmbedContents", Some(k), &two)
        .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["embeddings"][0]["values"].as_array().unwrap().len(), 8);
    assert_eq!(v["embeddings"][1]["values"].as_array().unwrap().len(), 3072);
    let (status, v) = live
        .post("gemini-embedding-001:batchEmbedContents", Some(k), &two)
        .await;
    assert_eq!(status, 429, "{v}");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("model: gemini-embedding-001"));
    // The embedding model's quota is its own: generateContent on the same key still works.
    assert_eq!(live.generate(k).await, 200);
    // One call, one request: three batches fit, the fourth does not.
    let live = start_with(&with("one"), 1).await;
    let k = live.keys[0].as_str();
    for _ in 0..3 {
        assert_eq!(
            live.post("gemini-embedding-001:batchEmbedContents", Some(k), &two)
                .await
                .0,
            200
        );
    }
    assert_eq!(
        live.post("gemini-embedding-001:batchEmbedContents", Some(k), &two)
            .await
            .0,
        429
    );
    // embedContent: one vector; the same text embeds alike on any key.
    let live = start_with(&with("each"), 1).await;
    let one = json!({"content": {"parts": [{"text": "same"}]}, "outputDimensionality": 4});
    let (_, a) = live
        .post("gemini-embedding-001:embedContent", Some(&live.keys[0]), &one)
        .await;
    let (_, b) = live
        .post("gemini-embedding-001:embedContent", Some(&live.keys[1]), &one)
        .await;
    assert_eq!(a["embedding"]["values"].as_array().unwrap().len(), 4);
    assert_eq!(a, b);
}

/// Issue 31: authorization keys (`AQ.…`, `IQ.…`) and any other format are keys like any; with
/// `server.standard_keys = "refused"`, an `AIza…` key the scenario knows gets Google's 401
/// ACCESS_TOKEN_TYPE_UNSUPPORTED while the others go on working. The key is never in metrics.
#[tokio::test]
async fn authorization_keys_work_and_standard_keys_can_be_refused() {
    let aq = "AQ.Ab8RN6LxYzQ0wErTy-uIoP_aSdFgHjKl";
    let iq = "IQ.Zx9Cv8Bn7Mq6Wr5Et4Yu3Io2Pa1Sd0Fg";
    let text = SCENARIO.replace(
        "[workload]",
        &format!(
            "[[topology.keys]]\nproject = \"pair\"\nkey = \"{aq}\"\n[[topology.keys]]\nproject = \"solo\"\nkey = \"{iq}\"\n[[topology.keys]]\nproject = \"solo\"\nkey = \"custom:format/1234\"\n[workload]"
        ),
    );
    let live = start_with(&text, 1).await;
    for k in [aq, iq, "custom:format/1234", live.keys[0].as_str()] {
        assert_eq!(live.generate(k).await, 200, "{k}");
    }
    let refusing = text.replace(
        "[server.latency]",
        "[server]\nstandard_keys = \"refused\"\n[server.latency]",
    );
    let live = start_with(&refusing, 1).await;
    assert_eq!(live.generate(aq).await, 200);
    assert_eq!(live.generate(iq).await, 200);
    let standard = live
        .keys
        .iter()
        .find(|k| k.starts_with("AIza") && !k.contains("INVALID"))
        .unwrap();
    let (status, v) = live
        .post("gemini-2.5-flash:generateContent", Some(standard), &body("x"))
        .await;
    assert_eq!(
        (status, v["error"]["status"].as_str()),
        (401, Some("UNAUTHENTICATED")),
        "{v}"
    );
    assert_eq!(
        detail(&v, "ErrorInfo")["reason"],
        "ACCESS_TOKEN_TYPE_UNSUPPORTED",
        "{v}"
    );
    let m = live.metrics().await;
    for k in [aq, iq, standard.as_str()] {
        assert!(!m.contains(&k[..12]), "{m}");
    }
}

/// Issue 31, item 4: serve honours Vertex AI's Priority PayGo header on a model on PayGo: with
/// the organisation's tier spent, a standard request gets a 429 without details and one sent
/// with `X-Vertex-AI-LLM-Shared-Request-Type: priority` is served.
#[tokio::test]
async fn serve_honours_the_priority_paygo_header() {
    let text = SCENARIO.replace(
        "[models.\"gemini-2.5-flash\"]\nrpm = 5\ntpm = 100000\nrpd = 1000\n",
        "[models.\"gemini-2.5-flash\".paygo]\nfamily = \"flash\"\ntpm = 10\n",
    );
    let live = start_with(&text, 1).await;
    let k = live.keys[1].clone();
    // 40 characters: 10 tokens, the tier's whole minute.
    let b = body("0123456789012345678901234567890123456789");
    let send = |header: Option<&'static str>| {
        let mut r = live
            .client
            .post(format!("{}/gemini-2.5-flash:generateContent", live.base))
            .header("x-goog-api-key", &k)
            .json(&b);
        if let Some(v) = header {
            r = r.header("X-Vertex-AI-LLM-Shared-Request-Type", v);
        }
        async move {
            let resp = r.send().await.unwrap();
            (resp.status().as_u16(), resp.json::<Value>().await.unwrap())
        }
    };
    assert_eq!(send(None).await.0, 200, "within the tier");
    let (status, v) = send(None).await;
    assert_eq!(status, 429, "the tier's minute is spent: {v}");
    assert_eq!(v["error"]["status"], "RESOURCE_EXHAUSTED");
    assert!(v["error"]["details"].as_array().is_none_or(|d| d.is_empty()), "{v}");
    assert_eq!(send(Some("priority")).await.0, 200, "Priority PayGo");
    assert_eq!(send(Some("PRIORITY")).await.0, 200, "the value's case does not matter");
    assert_eq!(send(Some("standard")).await.0, 429, "any other value is standard");
}

/// Issue 31, item 6: a retired id re-routed (`routed_to`) is answered as Google documents
/// `modelVersion` — "the model version used to generate the response", the new model — and
/// its 429s and metrics name the model whose quota it drew on (`routed_quota`).
#[tokio::test]
async fn a_re_routed_id_names_the_model_that_served_it() {
    for (routed_quota, quota_model) in [("target", "gemini-3.6-flash"), ("own", "gemini-3.5-flash")] {
        let text = SCENARIO.replace(
            "[models.\"gemini-2.5-flash\"]\nrpm = 5\ntpm = 100000\nrpd = 1000\n",
            &format!(
                "[models.\"gemini-3.6-flash\"]\nrpm = 1\n[models.\"gemini-3.5-flash\"]\nrpm = 1\nrouted_to = \"gemini-3.6-flash\"\nrouted_quota = \"{routed_quota}\"\n"
            ),
        ).replace("[workload]\n", "[workload]\nmodel = \"gemini-3.6-flash\"\n");
        let live = start_with(&text, 1).await;
        let k = live.keys[1].clone();
        let (status, v) = live
            .post("gemini-3.5-flash:generateContent", Some(&k), &body("x"))
            .await;
        assert_eq!(status, 200, "{v}");
        assert_eq!(
            v["modelVersion"], "gemini-3.6-flash",
            "{routed_quota}: the serving model"
        );
        let (status, v) = live
            .post("gemini-3.5-flash:generateContent", Some(&k), &body("x"))
            .await;
        assert_eq!(status, 429, "{v}");
        let violation = &detail(&v, "QuotaFailure")["violations"][0];
        assert_eq!(
            violation["quotaDimensions"]["model"], quota_model,
            "{routed_quota}: {v}"
        );
        let m = live.metrics().await;
        let line = format!("flux_responses_total{{project=\"pair\",model=\"{quota_model}\",code=\"429\"}} 1");
        assert!(m.contains(&line), "{routed_quota}: {m}");
    }
}

/// `server.error_latency`: a 429 (and any other error answer) reaches its client that long
/// after the call, as in a simulation; a success keeps its own response time and serve's own
/// endpoints answer at once. The 429's RetryInfo counts from the server's decision.
#[tokio::test]
async fn an_error_answer_comes_back_error_latency_late() {
    let text = SCENARIO.replace("rpm = 5", "rpm = 1").replace(
        "[server.latency]",
        "[server]\nerror_latency = \"400ms\"\n[server.latency]",
    );
    let live = start_with(&text, 1).await;
    let k = live.keys[1].clone();
    let t = std::time::Instant::now();
    assert_eq!(live.generate(&k).await, 200);
    assert!(t.elapsed() < Duration::from_millis(300), "{:?}", t.elapsed());
    let t = std::time::Instant::now();
    let (status, v) = live
        .post("gemini-2.5-flash:generateContent", Some(&k), &body("x"))
        .await;
    assert_eq!(status, 429, "{v}");
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());
    let delay = detail(&v, "RetryInfo")["retryDelay"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse::<f64>()
        .unwrap();
    assert!((59.0..60.0).contains(&delay), "{v}");
    // An invalid key's 400 too.
    let t = std::time::Instant::now();
    assert_eq!(live.generate("AIzaSyINVALID-test-key-000").await, 400);
    assert!(t.elapsed() >= Duration::from_millis(400), "{:?}", t.elapsed());
    let t = std::time::Instant::now();
    assert!(live.metrics().await.contains("flux_responses_total"));
    assert!(t.elapsed() < Duration::from_millis(300), "{:?}", t.elapsed());
}
