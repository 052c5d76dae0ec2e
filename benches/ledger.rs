//! One ledger admission per window kind with nearly full windows: requests arrive just below
//! the limit's rate, so the window always holds close to its limit (100,000 requests and
//! 100,000,000 tokens per minute); and one rejection with its exact retry delay.

use std::hint::black_box;

use chrono::DateTime;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use flux_sim::core::ledger::{Ledger, LedgerConfig, Limits, WindowKind};
use flux_sim::core::time::{Calendar, Nanos, MINUTE};

const LIMIT: u64 = 100_000;

fn ledger(window: WindowKind) -> Ledger {
    let start = DateTime::parse_from_rfc3339("2025-10-15T09:00:00-07:00").unwrap();
    Ledger::new(
        Calendar::new(start, chrono_tz::America::Los_Angeles),
        LedgerConfig {
            window,
            count_rejected: false,
        },
    )
}

fn admissions(c: &mut Criterion) {
    let mut g = c.benchmark_group("ledger");
    for (name, window) in [
        ("sliding", WindowKind::Sliding),
        ("fixed", WindowKind::Fixed),
        ("bucket", WindowKind::Bucket),
    ] {
        let mut l = ledger(window);
        let b = l.add_budget(
            Limits {
                rpm: Some(LIMIT),
                tpm: Some(LIMIT * 1000),
                rpd: None,
                tpd: None,
                concurrent: None,
            },
            0,
        );
        // 1% below the limit's rate: the window stays nearly full.
        let step: Nanos = MINUTE / LIMIT * 101 / 100;
        let mut now = 0;
        for _ in 0..2 * LIMIT {
            now += step;
            l.admit(now, b, None, 1000, now);
        }
        g.bench_function(BenchmarkId::new("admit", name), |bench| {
            bench.iter(|| {
                now += step;
                black_box(l.admit(now, b, None, 1000, now))
            })
        });
        // A full window: every check is a rejection that computes its retry instant.
        let mut full = ledger(window);
        let fb = full.add_budget(
            Limits {
                rpm: Some(LIMIT),
                tpm: None,
                rpd: None,
                tpd: None,
                concurrent: None,
            },
            0,
        );
        for i in 0..LIMIT {
            full.admit(i * (MINUTE / 2 / LIMIT), fb, None, 1, 0);
        }
        let at = MINUTE / 2;
        g.bench_function(BenchmarkId::new("reject", name), |bench| {
            bench.iter(|| black_box(full.check(at, fb, None, 1)))
        });
    }
    g.finish();
}

criterion_group!(benches, admissions);
criterion_main!(benches);
