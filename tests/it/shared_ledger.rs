//! The Redis ledger of `proxy --ledger` against the in-process ledger: the same sequence of
//! requests (bursts, exact window edges, day resets) gets the same decisions, violated
//! dimensions and retry instants from both. Needs `redis-server` and `valkey-server` (Debian's
//! packages; Valkey 8 from bookworm-backports): each test starts its own on a free loopback
//! port — the fleet's checks run on both — and says plainly that it was skipped when a program
//! is not installed, unless `FLUX_REQUIRE_REDIS` is set (`.ci/run` sets it), when it fails
//! instead.

use crate::common;

use chrono::DateTime;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use flux_sim::core::ledger::{Ledger, LedgerConfig, Limits, WindowKind};
use flux_sim::core::time::{Calendar, Nanos, MINUTE, SECOND};
use flux_sim::net::shared_ledger::RedisLedger;

use std::time::{Duration, Instant};

use flux_sim::core::ledger::{Admission, Dimension};

/// Time enough for any call to a local Redis.
const WITHIN: Duration = Duration::from_secs(10);

fn calendar() -> Calendar {
    // 23:58 Pacific: sequences cross midnight, where requests per day reset.
    Calendar::new(
        DateTime::parse_from_rfc3339("2026-03-07T23:58:00-08:00").unwrap(),
        chrono_tz::America::Los_Angeles,
    )
}

fn limit(max: u64) -> impl Strategy<Value = Option<u64>> {
    prop_oneof![Just(None), (1..=max).prop_map(Some)]
}

proptest! {
    #![proptest_config(Config {
        cases: 32,
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/shared_ledger.txt"))),
        ..Config::default()
    })]

    #[test]
    fn redis_ledger_equals_the_in_process_ledger(
        rpm in limit(6),
        tpm in limit(400),
        rpd in limit(12),
        tpd in limit(1_500),
        steps in prop::collection::vec((0u64..3, 0u64..40_000_000, 1u64..150), 1..60),
        margin in prop::sample::select(vec![0u64, 0, 250_000_000]),
    ) {
        for flavor in FLAVORS {
        let Some(server) = common::server_with(flavor, &[]) else { continue };
        let limits = Limits { rpm, tpm, rpd, tpd, concurrent: None };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let redis = rt
            .block_on(RedisLedger::connect(&server.url, calendar(), "t:", margin))
            .unwrap()
            .with_caller_clock();
        let mut local = Ledger::new(calendar(), LedgerConfig { window: WindowKind::Sliding, count_rejected: false })
            .with_margin(margin);
        let b = local.add_budget(limits, 0);
        let mut now: Nanos = 0;
        let mut admitted: Vec<Nanos> = Vec::new();
        for (i, (kind, micros, tokens)) in steps.iter().copied().enumerate() {
            now = match (kind, admitted.len()) {
                // Exactly when an earlier admission leaves its window.
                (0, n) if n > 0 => (admitted[micros as usize % n] + MINUTE + margin).max(now),
                (1, _) => now,
                _ => now + micros * 1000,
            };
            let want = local.admit(now, b, None, tokens, now);
            let got = rt.block_on(redis.admit(now, "p:m", limits, 1, tokens, &format!("r{i}"), WITHIN)).unwrap();
            prop_assert_eq!(got, want, "{:?}: request {} at {} ns, {} tokens", flavor, i, now, tokens);
            if want == flux_sim::core::ledger::Admission::Admitted {
                admitted.push(now);
            }
        }
        }
    }
}

/// The servers every fleet check runs on.
const FLAVORS: [common::Flavor; 2] = [common::Flavor::Redis, common::Flavor::Valkey];

#[test]
fn an_unreachable_redis_is_an_error_not_an_admission() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let e = rt
        .block_on(RedisLedger::connect(
            &format!("redis://127.0.0.1:{port}/0"),
            calendar(),
            "t:",
            0,
        ))
        .err()
        .expect("nothing listens");
    assert!(e.contains("cannot reach Redis"), "{e}");
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn unix_micros() -> i64 {
    chrono::Utc::now().timestamp_micros()
}

const RPM2: Limits = Limits {
    rpm: Some(2),
    tpm: None,
    rpd: None,
    tpd: None,
    concurrent: None,
};

/// The scores (admission times, Unix µs) of the budget's minute window.
fn scores(server: &common::RedisServer, key: &str) -> Vec<i64> {
    let out = server.cli(&["ZRANGE", key, "0", "-1", "WITHSCORES"]);
    let lines: Vec<&str> = out.lines().collect();
    lines.chunks(2).map(|c| c[1].trim().parse().unwrap()).collect()
}

/// Issue 28 item 3: a request admitted while Redis stalls (`DEBUG SLEEP`, a real stall of the
/// server's one thread) is recorded when the ledger admitted it, by the ledger's clock, not
/// when the proxy asked: recorded at the asking time it left the shared window 2 s early (the
/// upstream counts it from its send, after the stall), and the fleet over-sent at the edge.
/// The caller-clock ledger (the old behaviour) records the asking time, as the test shows.
#[test]
fn a_stall_does_not_move_an_admission_back_in_time() {
    let Some(server) = common::redis_server() else { return };
    let rt = runtime();
    for caller_clock in [false, true] {
        let ledger = rt
            .block_on(RedisLedger::connect(&server.url, calendar(), "t:", 0))
            .unwrap();
        let ledger = if caller_clock {
            ledger.with_caller_clock()
        } else {
            ledger
        };
        let budget = format!("stall-{caller_clock}");
        let port = server.port();
        let stall = std::thread::spawn(move || common::redis_cli(port, &["DEBUG", "SLEEP", "2"]));
        std::thread::sleep(Duration::from_millis(200));
        // The proxy's clock: the calendar's start is 2026-03-07, so map "now" onto it.
        let asked = unix_micros();
        let now = calendar().from_unix_micros(asked);
        let t = Instant::now();
        let got = rt.block_on(ledger.admit(now, &budget, RPM2, 1, 1, "a", WITHIN));
        assert_eq!(got, Ok(Admission::Admitted));
        assert!(
            t.elapsed() >= Duration::from_millis(1500),
            "the stall: {:?}",
            t.elapsed()
        );
        stall.join().unwrap();
        let recorded = scores(&server, &format!("t:{{{budget}}}:rpm"));
        assert_eq!(recorded.len(), 1);
        let late = recorded[0] - asked;
        if caller_clock {
            assert!(late < 1_000, "the caller's time: {late} µs after asking");
        } else {
            assert!(
                late >= 1_500_000,
                "the ledger's time after the stall: only {late} µs after asking"
            );
        }
    }
}

/// Issue 28 item 3: every call is bounded by the time its request has left, failing closed,
/// and the ledger says it was down and back.
#[test]
fn a_stalled_ledger_is_bounded_by_the_time_left_and_comes_back() {
    let Some(server) = common::redis_server() else { return };
    let rt = runtime();
    let ledger = rt
        .block_on(RedisLedger::connect(&server.url, calendar(), "t:", 0))
        .unwrap();
    let now = calendar().from_unix_micros(unix_micros());
    assert_eq!(
        rt.block_on(ledger.admit(now, "b", RPM2, 1, 1, "a", WITHIN)),
        Ok(Admission::Admitted)
    );
    let port = server.port();
    let stall = std::thread::spawn(move || common::redis_cli(port, &["DEBUG", "SLEEP", "3"]));
    std::thread::sleep(Duration::from_millis(200));
    // A request's last 50 ms running out is an error, not an outage.
    assert!(rt
        .block_on(ledger.admit(now, "b", RPM2, 1, 1, "b0", Duration::from_millis(50)))
        .is_err());
    let s = ledger.status();
    assert!(s.up && s.outages == 0 && s.errors == 1, "{s:?}");
    let t = Instant::now();
    let e = rt
        .block_on(ledger.admit(now, "b", RPM2, 1, 1, "b", Duration::from_millis(500)))
        .expect_err("no answer within 500 ms");
    assert!(t.elapsed() < Duration::from_millis(1500), "{:?}", t.elapsed());
    assert!(e.contains("did not answer within 500ms"), "{e}");
    let s = ledger.status();
    assert!(!s.up && s.outages == 1 && s.errors == 2, "{s:?}");
    stall.join().unwrap();
    rt.block_on(ledger.ping(WITHIN)).unwrap();
    let s = ledger.status();
    assert!(s.up && s.outages == 1, "{s:?}");
}

/// Issue 28 item 2: an empty ledger is not an empty quota. After Redis lost a budget's state
/// (FLUSHALL here; a restart without persistence or an eviction alike) a proxy that had seen
/// the budget holds it for one full window from the loss — every proxy does, the hold is in
/// Redis — since the upstream's windows still hold what was sent before. A budget never seen
/// is not held. On Redis and on Valkey.
#[test]
fn a_ledger_that_lost_its_state_holds_the_budget_for_a_window() {
    for flavor in FLAVORS {
        if let Some(server) = common::server_with(flavor, &[]) {
            state_loss_holds_the_budget(&server);
        }
    }
}

fn state_loss_holds_the_budget(server: &common::RedisServer) {
    let rt = runtime();
    let a = rt
        .block_on(RedisLedger::connect(&server.url, calendar(), "t:", 0))
        .unwrap();
    let b = rt
        .block_on(RedisLedger::connect(&server.url, calendar(), "t:", 0))
        .unwrap();
    let now = calendar().from_unix_micros(unix_micros());
    assert_eq!(
        rt.block_on(a.admit(now, "p:m", RPM2, 1, 1, "1", WITHIN)),
        Ok(Admission::Admitted)
    );
    assert_eq!(server.cli(&["FLUSHALL"]).trim(), "OK");
    let now = calendar().from_unix_micros(unix_micros());
    match rt.block_on(a.admit(now, "p:m", RPM2, 1, 1, "2", WITHIN)) {
        Ok(Admission::Rejected { violated, retry_at }) => {
            assert!(violated.contains(Dimension::Rpm), "{violated:?}");
            let wait = retry_at - now;
            assert!((59 * SECOND..=61 * SECOND).contains(&wait), "{wait} ns");
        }
        other => panic!("admitted into a budget whose past is unknown: {other:?}"),
    }
    assert_eq!(a.status().losses, 1);
    // Another proxy, which never saw the budget, is held too.
    assert!(matches!(
        rt.block_on(b.admit(now, "p:m", RPM2, 1, 1, "3", WITHIN)),
        Ok(Admission::Rejected { .. })
    ));
    // A budget nobody saw before is not.
    assert_eq!(
        rt.block_on(a.admit(now, "p:other", RPM2, 1, 1, "4", WITHIN)),
        Ok(Admission::Admitted)
    );
}

/// Issue 28 item 4: a Redis that may evict the ledger's keys is named, `volatile-*` included
/// (the ledger's keys expire, so they are candidates); `noeviction` or no `maxmemory` is fine.
/// On Redis and on Valkey.
#[test]
fn an_evicting_redis_is_named() {
    let rt = runtime();
    for flavor in FLAVORS {
        for (args, risky) in [
            (vec!["--maxmemory", "50mb", "--maxmemory-policy", "allkeys-lru"], true),
            (vec!["--maxmemory", "50mb", "--maxmemory-policy", "volatile-ttl"], true),
            (vec!["--maxmemory", "50mb", "--maxmemory-policy", "noeviction"], false),
            (vec!["--maxmemory-policy", "allkeys-lru"], false),
        ] {
            let Some(server) = common::server_with(flavor, &args) else {
                continue;
            };
            let ledger = rt
                .block_on(RedisLedger::connect(&server.url, calendar(), "t:", 0))
                .unwrap();
            let risk = rt.block_on(ledger.eviction_risk()).unwrap();
            assert_eq!(risk.is_some(), risky, "{flavor:?} {args:?}: {risk:?}");
            if let Some(r) = risk {
                assert!(r.contains(args[3]) && r.contains("noeviction"), "{r}");
            }
        }
    }
}

/// Issue 28 item 5: on a real 3-node Redis Cluster every budget's keys share one slot (one
/// hash tag), so the one script runs atomically wherever the budget lives: budgets spread
/// over the three nodes get the same decisions as on one Redis (they got CROSSSLOT before).
#[test]
fn a_redis_cluster_keeps_each_budget_in_one_slot() {
    let Some(cluster) = common::redis_cluster() else { return };
    each_budget_in_one_slot(&cluster);
}

/// The same on a 3-node Valkey cluster (`valkey-cli --cluster create`).
#[test]
fn a_valkey_cluster_keeps_each_budget_in_one_slot() {
    let Some(cluster) = common::valkey_cluster() else {
        return;
    };
    each_budget_in_one_slot(&cluster);
}

fn each_budget_in_one_slot(cluster: &common::RedisCluster) {
    let rt = runtime();
    let ledger = rt
        .block_on(RedisLedger::connect(&cluster.url, calendar(), "flux:", 0))
        .unwrap();
    let now = calendar().from_unix_micros(unix_micros());
    let limits = Limits {
        rpm: Some(2),
        tpm: Some(100),
        rpd: Some(10),
        tpd: Some(1000),
        concurrent: None,
    };
    let keys = || -> Vec<usize> {
        cluster
            .ports()
            .iter()
            .map(|&port| cluster.cli(port, &["DBSIZE"]).trim().parse().unwrap())
            .collect()
    };
    // Budgets until every node holds some (a handful do).
    for p in 0..200 {
        if keys().iter().all(|&n| n > 0) {
            break;
        }
        let budget = format!("project-{p}:gemini-2.5-flash");
        for i in 0..2 {
            let got = rt.block_on(ledger.admit(now, &budget, limits, 1, 10, &format!("{p}-{i}"), WITHIN));
            assert_eq!(got, Ok(Admission::Admitted), "{budget} #{i}");
        }
        let got = rt.block_on(ledger.admit(now, &budget, limits, 1, 10, &format!("{p}-2"), WITHIN));
        assert!(matches!(got, Ok(Admission::Rejected { .. })), "{budget}: {got:?}");
    }
    // The budgets landed on every node.
    assert!(keys().iter().all(|&n| n > 0), "keys per node: {:?}", keys());
}

/// Issue 28 item 7 (embeddings): a call counting several requests (a batch of embeddings, one
/// per text as serve counts them) takes that many of the RPM and RPD limits at once, and waits
/// for the entry that must leave to make room for all of them; more than a limit is never
/// servable. On Redis and on Valkey.
#[test]
fn a_batch_counts_each_of_its_requests_in_the_shared_ledger() {
    for flavor in FLAVORS {
        let Some(server) = common::server_with(flavor, &[]) else {
            continue;
        };
        let rt = runtime();
        let l = rt
            .block_on(RedisLedger::connect(&server.url, calendar(), "t:", 0))
            .unwrap()
            .with_caller_clock();
        let limits = Limits {
            rpm: Some(5),
            tpm: None,
            rpd: Some(8),
            tpd: None,
            concurrent: None,
        };
        let admit = |now: Nanos, requests: u64, member: &str| {
            rt.block_on(l.admit(now, "p:m", limits, requests, 30, member, WITHIN))
                .unwrap()
        };
        assert_eq!(admit(0, 3, "a"), Admission::Admitted);
        match admit(SECOND, 3, "b") {
            Admission::Rejected { violated, retry_at } => {
                assert!(violated.contains(Dimension::Rpm), "{violated:?}");
                assert_eq!(retry_at, MINUTE, "the first of a's entries must leave");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(admit(SECOND, 2, "c"), Admission::Admitted);
        assert!(
            matches!(admit(2 * SECOND, 6, "d"), Admission::Unservable { violated } if violated.contains(Dimension::Rpm))
        );
        assert_eq!(admit(MINUTE, 3, "e"), Admission::Admitted, "a's three entries left");
        match admit(MINUTE + SECOND / 2, 1, "f") {
            Admission::Rejected { violated, .. } => {
                assert!(
                    violated.contains(Dimension::Rpm) && violated.contains(Dimension::Rpd),
                    "{violated:?}"
                )
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(server.cli(&["ZCARD", "t:{p:m}:rpm"]).trim(), "5");
    }
}
