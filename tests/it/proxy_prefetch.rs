//! Pre-admission in the shared ledger (issue 28's overhead goal): a proxy keeps per budget at
//! most one slot the ledger admitted in advance, so that a request that fits goes without a
//! Redis call on its path. Against a real redis-server: what a reservation records (and from
//! when it counts), its confirmation (real tokens, refund), its release (unused, at shutdown),
//! none near the limits, a confirmation after Redis lost its state; and end to end, a proxy
//! whose sequential requests go pre-admitted, and a fleet of two proxies driven past the limit
//! with pre-admission on: serve answers no quota 429.

use crate::common;

use std::path::Path;
use std::time::Duration;

use crate::common::{listener, serve};
use flux_sim::core::ledger::{Admission, Limits};
use flux_sim::core::time::Calendar;
use flux_sim::net::proxy::{proxy, ProxyOptions};
use flux_sim::net::shared_ledger::{RedisLedger, PREFETCH_LIFE};
use flux_sim::scenario::Scenario;
use serde_json::json;

const WITHIN: Duration = Duration::from_secs(5);
const BUDGET: &str = "p:m";
const KEY: &str = "t:{p:m}";

fn calendar() -> Calendar {
    Calendar::new(chrono::Utc::now().fixed_offset(), chrono_tz::UTC)
}

fn limits(rpm: u64) -> Limits {
    Limits {
        rpm: Some(rpm),
        tpm: Some(100_000),
        rpd: Some(100_000),
        tpd: Some(10_000_000),
        concurrent: None,
    }
}

fn num(s: String) -> i64 {
    s.trim().parse().unwrap_or_else(|_| panic!("not a number: {s:?}"))
}

/// The minute windows' state: RPM entries, TPM entries, the TPM sum.
fn windows(redis: &common::RedisServer) -> (i64, i64, i64) {
    (
        num(redis.cli(&["ZCARD", &format!("{KEY}:rpm")])),
        num(redis.cli(&["ZCARD", &format!("{KEY}:tpm")])),
        num(redis.cli(&["GET", &format!("{KEY}:tpm_sum")])),
    )
}

/// The day's counts (requests, tokens), over the budget's day hashes.
fn day(redis: &common::RedisServer) -> (i64, i64) {
    let keys = redis.cli(&["KEYS", &format!("{KEY}:day:*")]);
    let (mut r, mut t) = (0, 0);
    for k in keys.split_whitespace() {
        r += num(redis.cli(&["HGET", k, "r"]));
        t += num(redis.cli(&["HGET", k, "t"]));
    }
    (r, t)
}

/// The ledger's clock, Unix µs.
fn ledger_time(redis: &common::RedisServer) -> i64 {
    let t: Vec<i64> = redis
        .cli(&["TIME"])
        .split_whitespace()
        .map(|x| x.parse().unwrap())
        .collect();
    t[0] * 1_000_000 + t[1]
}

fn scores(redis: &common::RedisServer) -> Vec<(String, i64)> {
    let out = redis.cli(&["ZRANGE", &format!("{KEY}:rpm"), "0", "-1", "WITHSCORES"]);
    let v: Vec<&str> = out.split_whitespace().collect();
    v.chunks(2).map(|c| (c[0].to_string(), c[1].parse().unwrap())).collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// An admission that asks for a slot gets one (while the budget stays half empty): it is in
/// every window from the ledger's now plus its life (so it counts until a window after the
/// latest instant it may be used); a request that fits takes it, one that does not fit does
/// not; the confirmation moves it to the ledger's now with its real tokens (refunding the
/// rest) and reserves the next; at shutdown the unused slot is given back.
#[test]
fn a_slot_is_reserved_confirmed_and_given_back() {
    let Some(redis) = common::redis_server() else { return };
    let rt = runtime();
    rt.block_on(async {
        let ledger = RedisLedger::connect(&redis.url, calendar(), "t:", 0).await.unwrap();
        let before = ledger_time(&redis);
        let a = ledger
            .admit_reserving(0, BUDGET, limits(100), 1, 10, "m1", WITHIN, Some(20))
            .await
            .unwrap();
        assert_eq!(a, Admission::Admitted);
        assert!(ledger.holds_slot(BUDGET));
        assert_eq!(windows(&redis), (2, 2, 30));
        assert_eq!(day(&redis), (2, 30));
        let s = scores(&redis);
        let reserved = s.iter().find(|(m, _)| m.contains("~r")).unwrap().1;
        assert!(
            reserved >= before + PREFETCH_LIFE.as_micros() as i64,
            "the slot counts from its life's end: {s:?}, asked at {before}"
        );
        // Too many tokens for it, or two requests: not taken.
        assert!(ledger.take(BUDGET, 1, 21).is_none());
        assert!(ledger.take(BUDGET, 2, 5).is_none());
        let taken = ledger.take(BUDGET, 1, 15).expect("it fits");
        assert!(!ledger.holds_slot(BUDGET));
        let sent_at = ledger_time(&redis);
        let next = ledger
            .confirm(0, BUDGET, limits(100), taken, 15, Some(20), WITHIN)
            .await
            .unwrap();
        assert!(next, "the next slot is reserved");
        assert!(ledger.holds_slot(BUDGET));
        // m1 (10), the confirmed send (15), the next slot (20).
        assert_eq!(windows(&redis), (3, 3, 45));
        assert_eq!(day(&redis), (3, 45));
        let s = scores(&redis);
        let confirmed = s.iter().find(|(m, _)| m.ends_with("~r0")).unwrap().1;
        assert!(
            confirmed >= sent_at && confirmed < reserved,
            "moved to the ledger's now: {s:?}"
        );
        assert_eq!(ledger.release(0, true, WITHIN).await, 1);
        assert!(!ledger.holds_slot(BUDGET));
        assert_eq!(windows(&redis), (2, 2, 25));
        assert_eq!(day(&redis), (2, 25));
    });
}

/// No slot is reserved once any dimension would pass half its limit with it: near the limits
/// every request asks the ledger, and no proxy sits on capacity others need.
#[test]
fn no_slot_past_half_of_a_limit() {
    let Some(redis) = common::redis_server() else { return };
    let rt = runtime();
    rt.block_on(async {
        let ledger = RedisLedger::connect(&redis.url, calendar(), "t:", 0).await.unwrap();
        // 4 RPM: one admitted and one reserved is half.
        ledger
            .admit_reserving(0, BUDGET, limits(4), 1, 10, "m1", WITHIN, Some(10))
            .await
            .unwrap();
        let taken = ledger.take(BUDGET, 1, 10).expect("reserved at half");
        let next = ledger
            .confirm(0, BUDGET, limits(4), taken, 10, Some(10), WITHIN)
            .await
            .unwrap();
        assert!(!next, "a third would pass half of 4");
        assert_eq!(windows(&redis).0, 2);
        // TPM: 100,000 a minute; a slot of 60,000 would pass half.
        let l = Limits { rpm: None, ..limits(4) };
        let other = RedisLedger::connect(&redis.url, calendar(), "u:", 0).await.unwrap();
        other
            .admit_reserving(0, BUDGET, l, 1, 10, "m1", WITHIN, Some(60_000))
            .await
            .unwrap();
        assert!(!other.holds_slot(BUDGET));
        other
            .admit_reserving(0, BUDGET, l, 1, 10, "m2", WITHIN, Some(40_000))
            .await
            .unwrap();
        assert!(other.holds_slot(BUDGET));
    });
}

/// A slot unused for its life is not taken, and goes back to the fleet at the next sweep.
#[test]
fn a_slot_unused_for_its_life_goes_back() {
    let Some(redis) = common::redis_server() else { return };
    let rt = runtime();
    rt.block_on(async {
        let ledger = RedisLedger::connect(&redis.url, calendar(), "t:", 0).await.unwrap();
        ledger
            .admit_reserving(0, BUDGET, limits(100), 1, 10, "m1", WITHIN, Some(20))
            .await
            .unwrap();
        assert_eq!(ledger.release(0, false, WITHIN).await, 0, "still young");
        tokio::time::sleep(PREFETCH_LIFE + Duration::from_millis(50)).await;
        assert!(ledger.take(BUDGET, 1, 10).is_none(), "too old to use");
        assert_eq!(ledger.release(0, false, WITHIN).await, 1);
        assert_eq!(windows(&redis), (1, 1, 10));
        assert_eq!(day(&redis), (1, 10));
    });
}

/// Redis lost its state between a slot's reservation and its confirmation: the send it made
/// is recorded again (it really went), and no next slot is reserved; the next admission sees
/// the loss and holds the budget for a window, as without pre-admission.
#[test]
fn a_confirmation_after_redis_lost_its_state_records_the_send_again() {
    let Some(redis) = common::redis_server() else { return };
    let rt = runtime();
    rt.block_on(async {
        let ledger = RedisLedger::connect(&redis.url, calendar(), "t:", 0).await.unwrap();
        ledger
            .admit_reserving(0, BUDGET, limits(100), 1, 10, "m1", WITHIN, Some(20))
            .await
            .unwrap();
        let taken = ledger.take(BUDGET, 1, 15).unwrap();
        redis.cli(&["FLUSHALL"]);
        let next = ledger
            .confirm(0, BUDGET, limits(100), taken, 15, Some(20), WITHIN)
            .await
            .unwrap();
        assert!(!next);
        assert_eq!(windows(&redis), (1, 1, 15));
        assert_eq!(day(&redis), (1, 15));
        let a = ledger
            .admit_reserving(0, BUDGET, limits(100), 1, 10, "m2", WITHIN, Some(20))
            .await
            .unwrap();
        assert!(matches!(a, Admission::Rejected { .. }), "{a:?}");
        assert_eq!(ledger.status().losses, 1);
    });
}

const TOKEN: &str = "proxy-token-for-prefetch-tests";

fn scenario(rpm: u64) -> String {
    format!(
        r#"
name = "prefetch-test"
seed = 5
[server.latency]
ttft = "1ms"
tokens_per_second = 100000
jitter = 0.0
[models."gemini-2.5-flash"]
rpm = {rpm}
tpm = 1000000
rpd = 100000
[topology]
projects = ["solo"]
[workload]
kind = "closed"
requests = 1
workers = 1
input_tokens = {{ dist = "fixed", value = 10 }}
output_tokens = {{ dist = "fixed", value = 20 }}
"#
    )
}

/// A proxy in this process; its stop, and its end (after it gave its slots back).
async fn start_proxy(
    text: &str,
    upstream: &str,
    ledger: &str,
    deadline: Duration,
) -> (
    String,
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<Result<(), String>>,
) {
    let s = Scenario::parse(text, Path::new("proxy.toml")).unwrap();
    let spec = s.builtin_strategy("flux").unwrap();
    let (l, base) = listener().await;
    let opts = ProxyOptions {
        upstream: upstream.to_string(),
        token: TOKEN.into(),
        deadline,
        queue: 256,
        ledger: Some(ledger.to_string()),
        margin: 0,
        allow_eviction: false,
    };
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let end = tokio::spawn(proxy(l, s, spec, opts, async move {
        let _ = rx.await;
    }));
    (base, tx, end)
}

async fn generate(client: &reqwest::Client, base: &str) -> u16 {
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hello"}]}], "generationConfig": {"maxOutputTokens": 20}});
    client
        .post(format!("{base}/v1beta/models/gemini-2.5-flash:generateContent"))
        .header("x-goog-api-key", TOKEN)
        .json(&body)
        .send()
        .await
        .map_or(0, |r| r.status().as_u16())
}

fn count(text: &str, line_start: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(line_start))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<f64>().unwrap() as u64)
        .sum()
}

/// One client sending back to back through a proxy with a ledger: after the first request
/// (which asks the ledger and reserves a slot), the requests go on slots admitted in advance
/// (counted in `/flux/metrics` and `/metrics`); the ledger holds exactly what was sent plus at
/// most the one unused slot, which the proxy gives back when it stops.
#[tokio::test]
async fn sequential_requests_go_on_slots_admitted_in_advance() {
    let Some(redis) = common::redis_server() else { return };
    let (upstream, _up) = serve(&scenario(1000)).await;
    let (base, stop, end) = start_proxy(&scenario(1000), &upstream, &redis.url, Duration::from_secs(5)).await;
    let client = reqwest::Client::new();
    for _ in 0..20 {
        assert_eq!(generate(&client, &base).await, 200);
        // A client that reads its answer before the next request: the confirmation is back.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let events = reqwest::get(format!("{base}/flux/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let pre = count(&events, "flux_proxy_events_total{event=\"shared_ledger_preadmitted\"}");
    let asked = count(&events, "flux_proxy_events_total{event=\"shared_ledger_asked\"}");
    assert_eq!((pre, asked), (19, 1), "{events}");
    let prom = reqwest::get(format!("{base}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(count(&prom, "flux_proxy_ledger_preadmitted_total{"), 19, "{prom}");
    let key = "flux:{solo:gemini-2.5-flash}:rpm";
    assert_eq!(num(redis.cli(&["ZCARD", key])), 21, "20 sent, 1 slot");
    stop.send(()).unwrap();
    end.await.unwrap().unwrap();
    assert_eq!(num(redis.cli(&["ZCARD", key])), 20, "the slot went back at shutdown");
}

/// Two proxies on one Redis in front of one serve allowing 30 requests a minute, with
/// pre-admission on (the budget starts empty): clients on both, sequential at first (slots
/// are reserved and used while the budget is under half), then 24 at once on each, past the
/// limit: exactly 30 are sent, serve answers no 429.
#[tokio::test]
async fn a_fleet_with_pre_admission_never_exceeds_a_limit() {
    let Some(redis) = common::redis_server() else { return };
    let (upstream, _up) = serve(&scenario(30)).await;
    let (a, _sa, _ea) = start_proxy(&scenario(30), &upstream, &redis.url, Duration::from_secs(3)).await;
    let (b, _sb, _eb) = start_proxy(&scenario(30), &upstream, &redis.url, Duration::from_secs(3)).await;
    let client = reqwest::Client::new();
    let mut codes = Vec::new();
    for i in 0..10 {
        codes.push(generate(&client, if i % 2 == 0 { &a } else { &b }).await);
        codes.push(generate(&client, if i % 2 == 0 { &a } else { &b }).await);
    }
    assert!(codes.iter().all(|&c| c == 200), "{codes:?}");
    let mut pre = 0;
    for base in [&a, &b] {
        let m = reqwest::get(format!("{base}/flux/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        pre += count(&m, "flux_proxy_events_total{event=\"shared_ledger_preadmitted\"}");
    }
    assert!(pre >= 4, "some went on slots admitted in advance: {pre}");
    let mut tasks = Vec::new();
    for i in 0..48 {
        let (client, base) = (client.clone(), if i % 2 == 0 { a.clone() } else { b.clone() });
        tasks.push(tokio::spawn(async move { generate(&client, &base).await }));
    }
    for t in tasks {
        codes.push(t.await.unwrap());
    }
    assert_eq!(codes.iter().filter(|&&c| c == 200).count(), 30, "{codes:?}");
    assert!(codes.iter().all(|&c| c == 200 || c == 429), "{codes:?}");
    let m = reqwest::get(format!("{upstream}/flux/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let refused: u64 = m
        .lines()
        .filter(|l| l.starts_with("flux_responses_total") && l.contains("code=\"429\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(refused, 0, "{m}");
}

/// A send the shared ledger refuses never left: the strategy withdraws it and waits the
/// ledger's exact wait, nothing more. Here peers' two sends of 57 s ago fill a 2-RPM window
/// that frees 3 s from now; two requests at once are refused by the ledger, then both go once
/// the peers' sends leave the window. Before, each refusal reached flux as a server's 429,
/// whose minute entry stays in its replica: the two refused sends filled it for a whole
/// window, and both requests got a 429 at their 10 s deadline (with the SDK against a Redis
/// restarted empty: a whole proxy's queue refused at the hold's end, the next ones held a
/// minute more).
#[tokio::test]
async fn a_refusal_by_the_ledger_holds_only_until_the_ledger_has_room() {
    let Some(redis) = common::redis_server() else { return };
    let peer_clock = Calendar::new(
        (chrono::Utc::now() - chrono::Duration::seconds(57)).fixed_offset(),
        chrono_tz::UTC,
    );
    let peer = RedisLedger::connect(&redis.url, peer_clock, "flux:", 0)
        .await
        .unwrap()
        .with_caller_clock();
    for m in ["peer-1", "peer-2"] {
        let a = peer
            .admit(0, "solo:gemini-2.5-flash", limits(2), 1, 10, m, WITHIN)
            .await
            .unwrap();
        assert_eq!(a, Admission::Admitted);
    }
    let (upstream, _up) = serve(&scenario(2)).await;
    let (base, _stop, _end) = start_proxy(&scenario(2), &upstream, &redis.url, Duration::from_secs(10)).await;
    let client = reqwest::Client::new();
    let started = std::time::Instant::now();
    let (a, b) = tokio::join!(generate(&client, &base), generate(&client, &base));
    let took = started.elapsed();
    assert_eq!((a, b), (200, 200), "after {took:?}");
    assert!(
        took >= Duration::from_secs(2),
        "sent before the peers' sends left: {took:?}"
    );
}
