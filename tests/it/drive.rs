//! `flux-sim drive` against HTTP endpoints: wiremock stands in for Gemini to check how each
//! kind of response is fed back (RetryInfo waits, dead keys, 503 retries, malformed bodies),
//! and a real `serve` checks that the simulation predicts what happens over the wire.

use std::path::Path;
use std::time::Duration;

use flux_sim::core::time::SECOND;
use flux_sim::net::drive::{drive, DriveOptions, Driven};
use flux_sim::scenario::Scenario;
use flux_sim::sim::bound::upper_bound;
use flux_sim::sim::engine::{simulate, AttemptRecord};
use flux_sim::sim::metrics::StrategyResult;
use serde_json::json;
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, Request, ResponseTemplate};

const GENERATE: &str = "/v1beta/models/m:generateContent";

/// One project with two keys (the second, named here, is the one the tests make invalid), a closed batch of `requests`, and one strategy.
fn scenario(requests: u64, strategy: &str) -> Scenario {
    let text = format!(
        r#"
name = "drive-test"
seed = 3
[models.m]
rpm = 1000
[topology]
projects = ["p"]
[[topology.keys]]
project = "p"
key = "AIzaSyDRIVE-bad-key-00000"
[workload]
kind = "closed"
requests = {requests}
workers = 1
input_tokens = {{ dist = "fixed", value = 10 }}
output_tokens = {{ dist = "fixed", value = 5 }}
[[strategies]]
{strategy}
"#
    );
    Scenario::parse(&text, Path::new("drive-test.toml")).unwrap()
}

fn ok_body() -> serde_json::Value {
    json!({"candidates": [{"content": {"parts": [{"text": "hi"}], "role": "model"}, "finishReason": "STOP", "index": 0}],
           "usageMetadata": {"promptTokenCount": 10, "candidatesTokenCount": 1, "totalTokenCount": 11}})
}

/// Drives the scenario's only strategy against `base`, collecting every attempt.
async fn run(s: &Scenario, base: &str, time_scale: u64) -> (Driven, Vec<AttemptRecord>) {
    let mut attempts = Vec::new();
    let opts = DriveOptions {
        endpoint: base.to_string(),
        time_scale,
        seed: s.seed,
    };
    let mut sink = |a: &AttemptRecord| attempts.push(a.clone());
    let d = drive(s, &s.strategies[0], &opts, Some(&mut sink), std::future::pending())
        .await
        .unwrap();
    (d, attempts)
}

async fn posts(server: &MockServer) -> Vec<Request> {
    let all = server.received_requests().await.unwrap();
    all.into_iter().filter(|r| r.method.as_str() == "POST").collect()
}

#[tokio::test]
async fn a_429_with_retry_info_waits_exactly_the_stated_delay() {
    let server = MockServer::start().await;
    let quota = json!({"error": {"code": 429, "status": "RESOURCE_EXHAUSTED", "message": "You exceeded your current quota",
        "details": [
            {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [
                {"quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier", "quotaValue": "10"}]},
            {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "0.5s"}]}});
    Mock::given(method("POST"))
        .and(path(GENERATE))
        .respond_with(ResponseTemplate::new(429).set_body_json(quota))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(GENERATE))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok_body()))
        .mount(&server)
        .await;
    let s = scenario(
        1,
        "kind = \"round_robin\"\nretry = { policy = \"retry_info\", max_attempts = 3 }",
    );
    // Time scale 10: "0.5s" on the wire is 5 s of quota time.
    let (d, attempts) = run(&s, &server.uri(), 10).await;
    let r = &d.result;
    assert_eq!(
        (r.completed, r.rate_limited, r.rate_limited_by.rpm, r.attempts),
        (1, 1, 1, 2),
        "{r:?}"
    );
    assert_eq!(
        attempts[0].retry_delay,
        Some(5 * SECOND),
        "RetryInfo parsed exactly and scaled"
    );
    assert_eq!(attempts[0].violated.names(), ["rpm"]);
    let gap = attempts[1].time - attempts[0].time;
    assert!(gap >= 5 * SECOND, "retried after {gap} ns, before the stated delay");
    // Generous: a loaded CI machine may be late by a few hundred ms of real time.
    assert!(gap < 5 * SECOND + 5 * SECOND, "retried {gap} ns later");
    assert_eq!(posts(&server).await.len(), 2);
}

#[tokio::test]
async fn api_key_invalid_takes_the_key_out() {
    let server = MockServer::start().await;
    let s = scenario(6, "kind = \"exact_cooldown\"");
    let (good, bad) = (s.topology.keys[0].value.clone(), s.topology.keys[1].value.clone());
    let invalid = json!({"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "API key not valid. Please pass a valid API key.",
        "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo", "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]}});
    Mock::given(method("POST"))
        .and(header("x-goog-api-key", bad.as_str()))
        .respond_with(ResponseTemplate::new(400).set_body_json(invalid))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(header("x-goog-api-key", good.as_str()))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok_body()))
        .mount(&server)
        .await;
    let (d, _) = run(&s, &server.uri(), 1).await;
    let r = &d.result;
    assert_eq!((r.completed, r.failed, r.other_errors), (6, 0, 1), "{r:?}");
    let sent = posts(&server).await;
    let on_bad = sent
        .iter()
        .filter(|q| q.headers["x-goog-api-key"] == bad.as_str())
        .count();
    assert_eq!(
        (on_bad, sent.len()),
        (1, 7),
        "the bad key is tried once, then never again"
    );
}

#[tokio::test]
async fn a_503_follows_the_retry_policy() {
    let server = MockServer::start().await;
    let overloaded = json!({"error": {"code": 503, "status": "UNAVAILABLE", "message": "The model is overloaded. Please try again later."}});
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(503).set_body_json(overloaded))
        .mount(&server)
        .await;
    let s = scenario(
        1,
        "kind = \"round_robin\"\nretry = { policy = \"backoff\", base = \"2s\", cap = \"60s\", jitter = \"none\", max_attempts = 3 }",
    );
    // Time scale 20: backoff of 2 s then 4 s of quota time is 100 ms then 200 ms of real time.
    let (d, attempts) = run(&s, &server.uri(), 20).await;
    let r = &d.result;
    assert_eq!(
        (r.completed, r.failed, r.other_errors, r.attempts),
        (0, 1, 3, 3),
        "{r:?}"
    );
    assert_eq!(posts(&server).await.len(), 3, "max_attempts = 3");
    let gaps: Vec<u64> = attempts.windows(2).map(|w| w[1].time - w[0].time).collect();
    assert!(gaps[0] >= 2 * SECOND && gaps[1] >= 4 * SECOND, "{gaps:?}");
    assert!(gaps[1] > gaps[0], "the backoff doubles: {gaps:?}");
    assert!(attempts.iter().all(|a| a.status == 503 && a.outcome == "error"));
}

#[tokio::test]
async fn malformed_bodies_are_outcomes_not_crashes() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_string("<html>upstream gateway says hi</html>"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(429).set_body_string("{\"error\": {\"details\": 42"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok_body()))
        .mount(&server)
        .await;
    let s = scenario(
        2,
        "kind = \"round_robin\"\nretry = { policy = \"backoff\", base = \"1ms\", cap = \"1ms\", jitter = \"none\", max_attempts = 2 }",
    );
    let (d, attempts) = run(&s, &server.uri(), 1).await;
    let r = &d.result;
    // Request 0: a 200 that is not a response is an error, which no policy retries.
    // Request 1: a 429 without readable details is a capacity 429, retried, then done.
    assert_eq!((r.completed, r.failed, r.other_errors), (1, 1, 1), "{r:?}");
    assert_eq!((r.rate_limited, r.rate_limited_by.capacity), (1, 1), "{r:?}");
    let outcomes: Vec<&str> = attempts.iter().map(|a| a.outcome).collect();
    assert_eq!(outcomes, ["error", "rate_limited", "ok"]);
}

#[tokio::test]
async fn an_endpoint_that_does_not_answer_is_a_clear_error() {
    // A port nothing listens on: bind, note it, close.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = scenario(1, "kind = \"round_robin\"");
    let opts = DriveOptions {
        endpoint: format!("http://127.0.0.1:{port}"),
        time_scale: 1,
        seed: 1,
    };
    let err = drive(&s, &s.strategies[0], &opts, None, std::future::pending())
        .await
        .unwrap_err();
    assert!(
        err.starts_with(&format!("http://127.0.0.1:{port}: cannot reach it")),
        "{err}"
    );
    for bad in ["not a url", "ftp://example.com", "http://"] {
        let opts = DriveOptions {
            endpoint: bad.into(),
            ..opts.clone()
        };
        let err = drive(&s, &s.strategies[0], &opts, None, std::future::pending())
            .await
            .unwrap_err();
        assert!(err.starts_with(&format!("{bad:?}: ")), "{bad}: {err}");
    }
}

#[tokio::test]
async fn stopping_early_reports_what_was_done() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(ok_body())
                .set_delay(Duration::from_millis(300)),
        )
        .mount(&server)
        .await;
    let s = scenario(1000, "kind = \"round_robin\"");
    let opts = DriveOptions {
        endpoint: server.uri(),
        time_scale: 1,
        seed: 1,
    };
    let stop = tokio::time::sleep(Duration::from_millis(1000));
    let d = drive(&s, &s.strategies[0], &opts, None, stop).await.unwrap();
    let r = &d.result;
    assert!(d.interrupted);
    assert!((1..=4).contains(&r.completed), "{r:?}");
    assert_eq!(r.in_flight, 1, "one worker, one request on the wire: {r:?}");
    assert_eq!(r.requests, r.completed + r.pending, "{r:?}");
    assert_eq!(r.makespan_s, None);
    assert!(
        // The stop is timed from before the drive starts, so the span may fall a little short of 1 s.
        (SECOND * 9 / 10..5 * SECOND).contains(&d.span),
        "measured until the stop: {}",
        d.span
    );
}

// ---------------------------------------------------------------------------------------------
// Simulation against reality.

/// Three projects of two keys at 10 RPM and 60,000 TPM, 40 requests a minute for 6 minutes:
/// demand exceeds the 30 RPM the projects allow, so round_robin meets 429s and exact_cooldown
/// must queue.
const SIM_VS_REAL: &str = r#"
name = "sim-vs-real"
seed = 11
[server.latency]
ttft = "1s"
tokens_per_second = 200
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = 10
tpm = 60000
rpd = 10000
[topology]
projects = 3
keys_per_project = 2
[workload]
kind = "open"
rate = 40
duration = "6m"
input_tokens = { dist = "lognormal", median = 3000, p99 = 20000 }
output_tokens = { dist = "fixed", value = 100 }
[[strategies]]
kind = "round_robin"
retry = { policy = "backoff", base = "2s", cap = "30s", jitter = "full", max_attempts = 4 }
[[strategies]]
kind = "exact_cooldown"
margin = "3s"
"#;

/// Every arrival before the horizon counts, also when drive's loop wakes after the horizon
/// (a timer late on a busy machine: CI once counted 228 of the simulation's 230 at time scale
/// 30). At a time scale of 10^7 the 6 minutes pass in 36 µs, before the loop first looks:
/// every request is counted (pending), none sent.
#[tokio::test]
async fn arrivals_before_the_horizon_count_when_drive_wakes_after_it() {
    let s = Scenario::parse(SIM_VS_REAL, Path::new("sim-vs-real.toml")).unwrap();
    let sim = simulate(&s, &s.strategies[1], s.seed, &upper_bound(&s, s.seed), None);
    let d = real(&s, 1, 10_000_000).await;
    assert_eq!(d.result.requests, sim.requests, "the same arrivals");
    assert_eq!(
        d.result.requests,
        d.result.completed + d.result.pending,
        "{:?}",
        d.result
    );
}

/// Runs `strategy` of SIM_VS_REAL through `drive` against a fresh in-process `serve`.
async fn real(s: &Scenario, strategy: usize, time_scale: u64) -> Driven {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(flux_sim::net::serve::serve(
        listener,
        s.clone(),
        time_scale,
        async move {
            let _ = rx.await;
        },
    ));
    let opts = DriveOptions {
        endpoint: format!("http://{addr}"),
        time_scale,
        seed: s.seed,
    };
    let d = drive(s, &s.strategies[strategy], &opts, None, std::future::pending())
        .await
        .unwrap();
    let _ = tx.send(());
    let _ = server.await;
    d
}

/// The same scenario run by `drive` against `serve` (time scale 30: 6 minutes in 12 s) and by
/// the simulator. They differ only in when each request reaches the server: loopback delay,
/// timer lateness and scheduling on a shared machine, a few milliseconds of real time and
/// so a few hundred milliseconds of quota time; measured worst case 11 ms (0.7 s) at the
/// initial burst, when every connection opens at once.
/// - exact_cooldown plans with a 3 s margin (100 ms real; at time scale 60, 50 ms, it met one
///   429 once with the whole suite running on 2 cores), more than that shift: it must get no
///   429 in either, and complete the same requests but those whose completion the shift moves
///   across the end (at 30 per minute and 3 s, at most 2) — we allow 3 (measured: equal in
///   10 of 11 runs, 1 apart once).
/// - round_robin sends at arrival: a shift flips a request between admitted and 429 when it
///   lands within the shift of a window edge (about 0.7 s in 6 s between edges at 10 RPM:
///   ~12% of the requests that meet a full window), and each flip moves later ones. We allow
///   15% + 3 for its 429s (measured: within 9% over 11 runs, also with both cores busy) and
///   5% + 2 for its completions, which the projects' RPM caps whatever the timing (measured:
///   within 1). A lost or misread QuotaFailure, or a quota not shared by a project's keys,
///   moves them far more.
/// Without the margin, exact_cooldown measured 12 429s and 168 completions against 180.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_simulation_predicts_drive_against_serve() {
    let s = Scenario::parse(SIM_VS_REAL, Path::new("sim-vs-real.toml")).unwrap();
    let bound = upper_bound(&s, s.seed);
    for (i, spec) in s.strategies.iter().enumerate() {
        let sim = simulate(&s, spec, s.seed, &bound, None);
        let d = real(&s, i, 30).await;
        let r = &d.result;
        assert_eq!(d.transport_errors, 0, "{:?}", d.first_transport_error);
        assert_eq!(r.requests, sim.requests, "the same arrivals");
        assert_eq!(r.other_errors, 0);
        let close = |a: u64, b: u64, slack: u64| a.abs_diff(b) <= slack;
        if spec.name == "exact_cooldown" {
            assert_eq!((r.rate_limited, sim.rate_limited), (0, 0), "real {r:?}\nsim {sim:?}");
            assert!(close(r.completed, sim.completed, 3), "real {r:?}\nsim {sim:?}");
        } else {
            assert!(sim.rate_limited > 100, "the scenario must stress round_robin: {sim:?}");
            assert!(
                close(r.completed, sim.completed, sim.completed / 20 + 2),
                "real {r:?}\nsim {sim:?}"
            );
            assert!(
                close(r.rate_limited, sim.rate_limited, sim.rate_limited * 15 / 100 + 3),
                "real {r:?}\nsim {sim:?}"
            );
        }
    }
}

/// An endpoint that accepts connections and never answers: the start-up check gives up after
/// its timeout with a clear error (it waited 600 s).
#[tokio::test]
async fn a_silent_endpoint_is_refused_at_start_up_within_the_check_timeout() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // Accept and hold every connection, saying nothing.
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    let s = scenario(1, "kind = \"round_robin\"");
    let opts = DriveOptions {
        endpoint: format!("http://{addr}"),
        time_scale: 1,
        seed: 1,
    };
    let t = std::time::Instant::now();
    let err = drive(&s, &s.strategies[0], &opts, None, std::future::pending())
        .await
        .map(|_| ())
        .expect_err("refused");
    assert!(err.contains("no answer"), "{err}");
    assert!(t.elapsed() < flux_sim::net::drive::PREFLIGHT_TIMEOUT + Duration::from_secs(3));
}

/// An endless response body is cut at the cap (it grew to 2.9 GB), counted as a transport
/// error, and the drive goes on.
#[tokio::test]
async fn an_endless_body_is_cut_at_the_cap() {
    let server = MockServer::start().await;
    let huge = vec![b'x'; flux_sim::net::drive::MAX_RESPONSE + 1];
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(huge))
        .mount(&server)
        .await;
    let s = scenario(1, "kind = \"round_robin\"\nretry = { policy = \"none\" }");
    let (d, _) = run(&s, &server.uri(), 1).await;
    assert_eq!(d.result.completed, 0);
    assert_eq!(d.transport_errors, 1);
    assert!(
        d.first_transport_error.unwrap().contains("larger than"),
        "the cap is named"
    );
}

/// A redirect to another origin is not followed: the key and the prompt never leave (866
/// requests carried them elsewhere); a same-origin redirect is followed.
#[tokio::test]
async fn the_key_never_follows_a_redirect_to_another_origin() {
    let elsewhere = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok_body()))
        .mount(&elsewhere)
        .await;
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATE))
        .respond_with(ResponseTemplate::new(307).insert_header(
            "location",
            format!("{}/v1beta/models/m:generateContent", elsewhere.uri()),
        ))
        .mount(&server)
        .await;
    let s = scenario(3, "kind = \"round_robin\"\nretry = { policy = \"none\" }");
    let (d, _) = run(&s, &server.uri(), 1).await;
    assert_eq!(d.result.completed, 0, "nothing was answered from elsewhere");
    assert!(
        posts(&elsewhere).await.is_empty(),
        "no request reached the other origin"
    );
    // Within the same origin the redirect is followed.
    let same = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path(GENERATE))
        .respond_with(ResponseTemplate::new(307).insert_header("location", "/moved"))
        .mount(&same)
        .await;
    Mock::given(method("POST"))
        .and(path("/moved"))
        .respond_with(ResponseTemplate::new(200).set_body_json(ok_body()))
        .mount(&same)
        .await;
    let (d, _) = run(&s, &same.uri(), 1).await;
    assert_eq!(d.result.completed, 3);
}

/// `drive --fresh` resets serve (`POST /flux/reset`) so a third drive is not charged for the
/// first two; anything else at the endpoint is a clear error (the CLI names --fresh).
#[tokio::test]
async fn fresh_resets_serve_and_refuses_other_endpoints() {
    let other = MockServer::start().await;
    let err = flux_sim::net::drive::reset_endpoint(&other.uri()).await.unwrap_err();
    assert!(err.contains("/flux/reset answered 404"), "{err}");
    let s = scenario(1, "kind = \"round_robin\"");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(flux_sim::net::serve::serve(listener, s, 1, std::future::pending()));
    flux_sim::net::drive::reset_endpoint(&format!("http://{addr}"))
        .await
        .unwrap();
}

/// An interrupted drive's simulated row is cut at the time driven (it covered the whole
/// scenario: 95 real against 1,799 simulated).
#[test]
fn an_interrupted_drive_is_compared_with_the_same_span_simulated() {
    let s = scenario(1_000, "kind = \"round_robin\"");
    let bound = upper_bound(&s, s.seed);
    let whole = simulate(&s, &s.strategies[0], s.seed, &bound, None);
    let driven = Driven {
        result: whole.clone(),
        span: SECOND / 100,
        transport_errors: 0,
        first_transport_error: None,
        interrupted: true,
    };
    let r = flux_sim::net::drive::beside_simulation(&s, &s.strategies[0], s.seed, driven);
    let simulated = &r.results[1];
    assert!(simulated.completed < whole.completed, "{simulated:?}");
    assert!(r.simulated_seconds <= 0.011, "{}", r.simulated_seconds);
}

/// A retired id re-routed to its successor on the successor's quota (serve's default,
/// `routed_quota = "target"`), both ids told 5 RPM each: two budgets on paper, one of 5 RPM
/// per project in fact. A closed batch of 40, half under each id, on 2 projects.
const REROUTED: &str = r#"
name = "rerouted-over-http"
seed = 26
horizon = "15m"
[server]
window = "sliding"
tpm_counts = "input"
[server.latency]
ttft = "1s"
tokens_per_second = 200
jitter = 0.0
[models."gemini-3.5-flash"]
routed_to = "gemini-3.6-flash"
rpm = 5
tpm = 250_000
[models."gemini-3.6-flash"]
rpm = 5
tpm = 250_000
[topology]
projects = 2
keys_per_project = 1
[workload]
kind = "closed"
requests = 40
workers = 6
models = [{ name = "gemini-3.5-flash", weight = 1 }, { name = "gemini-3.6-flash", weight = 1 }]
input_tokens = { dist = "fixed", value = 500 }
output_tokens = { dist = "fixed", value = 100 }
[[strategies]]
kind = "flux"
margin = "3s"
"#;

/// flux learns over HTTP that a retired id draws on its target's quota, from the 429 that
/// names it (QuotaFailure's `quotaDimensions.model`, as serve writes it from the route), or
/// from the target's own 429 that the retired id's sends explain: it
/// merges the two ids' budgets on every project and meets no quota 429 it could have avoided
/// after that one. The wire client used to leave `quota_model` empty, so flux kept planning
/// two budgets and read each 429 as peers' sends: it met 429s all along.
/// drive against a real serve at time scale 30 (the batch takes about 3.3 quota minutes, 6.6 s),
/// flux with a 3 s margin (100 ms real) for sends that reach serve later than planned, as in
/// `the_simulation_predicts_drive_against_serve`. A 429 sent within 2 s (quota; 67 ms real)
/// after the first one on the retired id may have been planned before its answer came back:
/// not counted (measured: those go out at the same instant). Measured with the wire client
/// that left `quota_model` empty: 13–17 such 429s in 6 runs (time scales 60 and 30); now 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_naming_the_targets_quota_merges_the_budgets_over_http() {
    let s = Scenario::parse(REROUTED, Path::new("rerouted.toml")).unwrap();
    let old = s.model_index("gemini-3.5-flash").unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(flux_sim::net::serve::serve(listener, s.clone(), 30, async move {
        let _ = rx.await;
    }));
    let opts = DriveOptions {
        endpoint: format!("http://{addr}"),
        time_scale: 30,
        seed: s.seed,
    };
    let mut attempts = Vec::new();
    let mut sink = |a: &AttemptRecord| attempts.push(a.clone());
    let d = drive(&s, &s.strategies[0], &opts, Some(&mut sink), std::future::pending())
        .await
        .unwrap();
    let _ = tx.send(());
    let _ = server.await;
    let r = &d.result;
    assert_eq!(d.transport_errors, 0, "{:?}", d.first_transport_error);
    assert_eq!(r.completed, 40, "{r:?}");
    let refused: Vec<_> = attempts.iter().filter(|a| a.outcome == "rate_limited").collect();
    // The first 429 on the shared quota teaches the re-route: one on the retired id names the
    // target's quota, one on the target that the retired id's sends explain names its own.
    let first = refused
        .iter()
        .min_by_key(|a| a.time)
        .expect("the two ids together fill the target's minute: a 429 on the shared quota");
    let avoidable: Vec<_> = refused.iter().filter(|a| a.time > first.time + 2 * SECOND).collect();
    assert!(
        avoidable.is_empty(),
        "after the 429 at {} s on model {} (the retired id is {old}), {} more: {avoidable:#?}",
        first.time as f64 / 1e9,
        first.model,
        avoidable.len()
    );
}

/// The first strategy of scenario `text`, simulated and driven against a fresh `serve` at time
/// scale 60 (a minute of quota time a second).
async fn simulated_and_driven(text: &str) -> (StrategyResult, StrategyResult) {
    let s = Scenario::parse(text, Path::new("t.toml")).unwrap();
    let sim = simulate(&s, &s.strategies[0], s.seed, &upper_bound(&s, s.seed), None);
    (sim, real(&s, 0, 60).await.result)
}

/// A request the strategy defers until an instant (`Decision::DeferUntil`) is asked again
/// then, though no answer comes before, by the engine and by drive: project a's one slot is
/// taken for 5 minutes, b's minute holds one request, so the third request goes at b's next
/// minute (60 s of quota time, 1 s real at time scale 60, plus a 5 s margin for sends that
/// reach serve late: 83 ms real), not when the first answers come (300 s). Each driver's
/// pump disabled, its half fails.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_deferred_until_an_instant_is_sent_then() {
    let text = r#"
name = "d"
seed = 1
[server.latency]
ttft = "300s"
tokens_per_second = 1000
jitter = 0
[models.m]
rpm = 1000
concurrent = 1
concurrent_scope = "project"
[topology]
projects = ["a", "b"]
[topology.project.b]
limits = { m = { rpm = 1, concurrent = 100 } }
[workload]
kind = "closed"
requests = 3
workers = 3
input_tokens = { dist = "fixed", value = 1 }
output_tokens = { dist = "fixed", value = 1 }
[[strategies]]
kind = "exact_cooldown"
margin = "5s"
"#;
    let (sim, r) = simulated_and_driven(text).await;
    assert_eq!((sim.completed, sim.rate_limited), (3, 0), "{sim:?}");
    assert!((64_000.0..66_000.0).contains(&sim.wait_ms.max), "{sim:?}");
    assert_eq!((r.completed, r.rate_limited), (3, 0), "{r:?}");
    assert!((64_000.0..90_000.0).contains(&r.wait_ms.max), "{r:?}");
}

/// A request sent on a key the server does not know (400 API_KEY_INVALID, charged to no
/// project) takes back the instant it held on a live key, as in the simulation, where the
/// 400 comes back at that very instant: over HTTP it comes back a round trip later, and the
/// retry counted where the send was, within the margin (3 s of quota time, 50 ms real at
/// time scale 60). One project of 3 RPM, two live keys and a revoked one, 9 requests at once:
/// three minutes of three, the batch ends after 126 s. Before, `drive` planned the retry
/// after every other request, a minute later than the simulation (189 s).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_send_withdrawn_from_a_revoked_key_keeps_its_instant_over_http() {
    let text = r#"
name = "revoked"
seed = 3
[server.latency]
ttft = "200ms"
tokens_per_second = 1000
jitter = 0
[models.m]
rpm = 3
[topology]
projects = ["a"]
keys_per_project = 2
[topology.project.a]
invalid_keys = 1
[workload]
kind = "closed"
requests = 9
workers = 9
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 10 }
[[strategies]]
kind = "exact_cooldown"
margin = "3s"
"#;
    let (sim, r) = simulated_and_driven(text).await;
    assert_eq!(
        (sim.completed, sim.rate_limited, sim.other_errors),
        (9, 0, 1),
        "{sim:?}"
    );
    assert_eq!((r.completed, r.rate_limited, r.other_errors), (9, 0, 1), "{r:?}");
    let (real_s, sim_s) = (r.makespan_s.unwrap(), sim.makespan_s.unwrap());
    assert!((real_s - sim_s).abs() < 10.0, "real {real_s} s, simulated {sim_s} s");
}
