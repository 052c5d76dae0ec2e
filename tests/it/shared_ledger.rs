//! The Redis ledger of `proxy --ledger` against the in-process ledger: the same sequence of
//! requests (bursts, exact window edges, day resets) gets the same decisions, violated
//! dimensions and retry instants from both. Needs `redis-server` (Debian's package): each test
//! starts its own on a free loopback port, and says plainly that it was skipped when the
//! program is not installed — unless `FLUX_REQUIRE_REDIS` is set (`.ci/run` sets it), when it
//! fails instead.

use crate::common;

use chrono::DateTime;
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};

use flux_sim::core::ledger::{Ledger, LedgerConfig, Limits, WindowKind};
use flux_sim::core::time::{Calendar, Nanos, MINUTE};
use flux_sim::net::shared_ledger::RedisLedger;

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
        let Some(server) = common::redis_server() else { return Ok(()) };
        let limits = Limits { rpm, tpm, rpd, tpd, concurrent: None };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let redis = rt.block_on(RedisLedger::connect(&server.url, calendar(), "t:", margin)).unwrap();
        let mut local = Ledger::new(calendar(), LedgerConfig { window: WindowKind::Sliding, count_rejected: false })
            .with_margin(margin);
        let b = local.add_budget(limits, 0);
        let mut now: Nanos = 0;
        let mut admitted: Vec<Nanos> = Vec::new();
        for (i, (kind, micros, tokens)) in steps.into_iter().enumerate() {
            now = match (kind, admitted.len()) {
                // Exactly when an earlier admission leaves its window.
                (0, n) if n > 0 => (admitted[micros as usize % n] + MINUTE + margin).max(now),
                (1, _) => now,
                _ => now + micros * 1000,
            };
            let want = local.admit(now, b, None, tokens, now);
            let got = rt.block_on(redis.admit(now, "p:m", limits, tokens, &format!("r{i}"))).unwrap();
            prop_assert_eq!(got, want, "request {} at {} ns, {} tokens", i, now, tokens);
            if want == flux_sim::core::ledger::Admission::Admitted {
                admitted.push(now);
            }
        }
    }
}

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
