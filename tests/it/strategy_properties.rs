//! Property tests over whole simulations: default `exact_cooldown` that knows the true limits
//! never receives a quota 429 and the server's ledger confirms no window ever held more than
//! its limit; the property has teeth (proptest finds and shrinks breaches by `round_robin` and
//! by gemini-flux when keys share a project); so does `flux`; every request of every built-in
//! strategy ends exactly once; runs are
//! deterministic and independent of strategy order.

use std::path::Path;

use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence, RngAlgorithm, TestError, TestRng, TestRunner};

use flux_sim::report::to_json;
use flux_sim::scenario::Scenario;
use flux_sim::sim::bound::upper_bound;
use flux_sim::sim::engine::{simulate_full, SimOptions};
use flux_sim::sim::metrics::StrategyResult;
use flux_sim::sim::run::run;

#[derive(Debug, Clone)]
struct Case {
    /// Per project: (valid keys, invalid keys).
    projects: Vec<(u8, u8)>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    rpd: Option<u64>,
    tpd: Option<u64>,
    concurrent: Option<u64>,
    key_scope: bool,
    window: &'static str,
    total: bool,
    /// false: a closed batch (what shrinking goes towards).
    open: bool,
    rate: u32,
    minutes: u32,
    requests: u32,
    workers: u32,
    /// Input tokens are uniform in 1..=max_in (never above what TPM can hold).
    max_in: u64,
    out: u64,
    ttft_ms: u32,
    /// Lognormal sigma of the latency jitter.
    jitter: f64,
    /// Share of admitted requests answered 503 (not charged): 0 but where a property says.
    fault_rate: f64,
    seed: u64,
}

impl Case {
    fn toml(&self, strategies: &str) -> String {
        let opt = |name: &str, v: Option<u64>| v.map_or(String::new(), |x| format!("{name} = {x}\n"));
        let mut s = format!(
            "name = \"prop\"\nseed = {}\nstart = \"2025-11-01T18:00:00-07:00\"\n\
             [server]\nwindow = \"{}\"\ntpm_counts = \"{}\"\nfault_rate = {}\n[server.latency]\nttft = \"{}ms\"\ntokens_per_second = 120\njitter = {}\n\
             [models.m]\n{}{}{}{}{}{}",
            self.seed,
            self.window,
            if self.total { "total" } else { "input" },
            self.fault_rate,
            self.ttft_ms,
            self.jitter,
            opt("rpm", self.rpm),
            opt("tpm", self.tpm),
            opt("rpd", self.rpd),
            opt("tpd", self.tpd),
            opt("concurrent", self.concurrent),
            if self.key_scope && self.concurrent.is_some() { "concurrent_scope = \"key\"\n" } else { "" },
        );
        let names: Vec<String> = (0..self.projects.len()).map(|i| format!("\"p{i}\"")).collect();
        s += &format!("[topology]\nprojects = [{}]\n", names.join(", "));
        for (i, (k, bad)) in self.projects.iter().enumerate() {
            s += &format!("[topology.project.p{i}]\nkeys = {k}\ninvalid_keys = {bad}\n");
        }
        let max_in = self.max_in.max(1);
        if self.open {
            s += &format!(
                "[workload]\nkind = \"open\"\nrate = {}\nduration = \"{}m\"\n",
                self.rate, self.minutes
            );
        } else {
            s += &format!(
                "[workload]\nkind = \"closed\"\nrequests = {}\nworkers = {}\n",
                self.requests, self.workers
            );
        }
        s += &format!("input_tokens = {{ dist = \"uniform\", min = 1, max = {max_in} }}\noutput_tokens = {{ dist = \"fixed\", value = {} }}\n", self.out);
        s + strategies
    }

    fn scenario(&self, strategies: &str) -> Scenario {
        let text = self.toml(strategies);
        Scenario::parse(&text, Path::new("prop.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"))
    }
}

fn limit(lo: u64, hi: u64) -> impl Strategy<Value = Option<u64>> {
    // Shrinks towards unlimited, then towards the smallest limit.
    prop_oneof![Just(None), (lo..=hi).prop_map(Some)]
}

/// Random cases; `rpm`, `concurrency` and `tpd` may be switched off (gemini-flux never sees
/// them).
fn cases(with_rpm: bool, with_concurrency: bool, keys_max: u8) -> impl Strategy<Value = Case> {
    let topo = prop::collection::vec((1u8..=keys_max, prop_oneof![3 => Just(0u8), 1 => Just(1u8)]), 1..=20);
    let lim = (
        if with_rpm {
            limit(1, 30).boxed()
        } else {
            Just(None).boxed()
        },
        limit(1, 20_000),
        limit(1, 300),
        if with_concurrency {
            (limit(1, 4), limit(1, 400_000)).boxed()
        } else {
            Just((None, None)).boxed()
        },
        any::<bool>(),
    );
    let kind = (
        prop_oneof![Just("sliding"), Just("fixed"), Just("bucket")],
        any::<bool>(),
    );
    let load = (any::<bool>(), 1u32..=120, 1u32..=20, 1u32..=200, 1u32..=50);
    let sizes = (
        1u64..=20_000,
        0u64..=400,
        100u32..=3_000,
        prop_oneof![Just(0.6), Just(0.0), Just(3.0)],
        0u64..=i64::MAX as u64,
    );
    (topo, lim, kind, load, sizes).prop_map(
        |(
            projects,
            (rpm, tpm, rpd, (concurrent, tpd), key_scope),
            (window, total),
            (open, rate, minutes, requests, workers),
            (max_in, out, ttft_ms, jitter, seed),
        )| {
            let mut c = Case {
                projects,
                rpm,
                tpm,
                rpd,
                tpd,
                concurrent,
                key_scope,
                window,
                total,
                open,
                rate,
                minutes,
                requests,
                workers,
                max_in,
                out,
                ttft_ms,
                jitter,
                fault_rate: 0.0,
                seed,
            };
            // Token sizes up to the TPM limit.
            if let Some(t) = c.tpm {
                let room = if c.total { t.saturating_sub(c.out) } else { t };
                if room == 0 {
                    c.out = 0;
                }
                c.max_in = c.max_in.min(t.saturating_sub(if c.total { c.out } else { 0 }).max(1));
            }
            // And up to the TPD limit.
            if let Some(t) = c.tpd {
                if c.total && t <= c.out {
                    c.out = 0;
                }
                c.max_in = c.max_in.min(t.saturating_sub(if c.total { c.out } else { 0 }).max(1));
            }
            c
        },
    )
}

fn simulate(c: &Case, strategies: &str) -> (Scenario, StrategyResult, flux_sim::core::server::Server) {
    let s = c.scenario(strategies);
    let b = upper_bound(&s, s.seed);
    let sim = simulate_full(&s, &s.strategies[0], s.seed, &b, SimOptions::default());
    (s, sim.result, sim.server)
}

/// The server's ledger never saw a window fuller than its limit.
fn assert_within_limits(s: &Scenario, server: &flux_sim::core::server::Server) -> Result<(), TestCaseError> {
    for (p, project) in s.topology.projects.iter().enumerate() {
        let l = project.limits[0];
        let peak = server.peak(p, 0);
        prop_assert!(l.rpm.is_none_or(|x| peak.rpm <= x), "rpm {} > {:?}", peak.rpm, l.rpm);
        prop_assert!(l.tpm.is_none_or(|x| peak.tpm <= x), "tpm {} > {:?}", peak.tpm, l.tpm);
        prop_assert!(l.rpd.is_none_or(|x| peak.rpd <= x), "rpd {} > {:?}", peak.rpd, l.rpd);
        prop_assert!(l.tpd.is_none_or(|x| peak.tpd <= x), "tpd {} > {:?}", peak.tpd, l.tpd);
        prop_assert!(
            l.concurrent.is_none_or(|x| peak.concurrency <= x),
            "concurrency {} > {:?}",
            peak.concurrency,
            l.concurrent
        );
    }
    Ok(())
}

const EXACT: &str = "[[strategies]]\nkind = \"exact_cooldown\"\n";
const ROUND_ROBIN: &str = "[[strategies]]\nkind = \"round_robin\"\nretry = { policy = \"none\" }\n";
const GEMINI_FLUX: &str = "[[strategies]]\nkind = \"gemini_flux\"\nretry = { policy = \"none\" }\n";
const FLUX: &str = "[[strategies]]\nkind = \"flux\"\n";
/// Every built-in kind.
const ALL: &str =
    "[[strategies]]\nkind = \"round_robin\"\n[[strategies]]\nkind = \"fixed_interval\"\ninterval = \"7s\"\n\
                   [[strategies]]\nkind = \"gemini_flux\"\n[[strategies]]\nkind = \"exact_cooldown\"\n\
                   [[strategies]]\nkind = \"backoff\"\n[[strategies]]\nkind = \"token_bucket\"\n\
                   [[strategies]]\nkind = \"litellm_shuffle\"\n[[strategies]]\nkind = \"litellm_least_busy\"\n\
                   [[strategies]]\nkind = \"litellm_usage\"\n[[strategies]]\nkind = \"gemini_balance\"\n\
                   [[strategies]]\nkind = \"flux\"\n";

proptest! {
    #![proptest_config(Config {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct("proptest-regressions/strategy_properties.txt"))),
        ..Config::default()
    })]

    /// Default exact_cooldown knowing the true limits never gets a quota 429, whatever the
    /// topology, limits, window kind and workload, with or without 503s (whose room a retry
    /// takes back before later plans, which move: issue 26); the ledger's peaks confirm it.
    #[test]
    fn exact_cooldown_never_breaches_a_quota(c in cases(true, true, 4), faults in prop_oneof![Just(0.0), Just(0.25)]) {
        let c = Case { fault_rate: faults, ..c };
        let (s, r, server) = simulate(&c, EXACT);
        prop_assert_eq!(r.rate_limited, 0, "{:?}", r);
        assert_within_limits(&s, &server)?;
    }

    /// A safety margin only makes exact_cooldown more careful: still no 429, still within
    /// every limit, whatever the margin (to the nanosecond up to 10 s).
    #[test]
    fn exact_cooldown_with_a_margin_never_breaches_a_quota(c in cases(true, true, 4), margin in 1u64..10_000_000_000, faults in prop_oneof![Just(0.0), Just(0.25)]) {
        let c = Case { fault_rate: faults, ..c };
        let spec = format!("[[strategies]]\nkind = \"exact_cooldown\"\nmargin = \"{margin}ns\"\n");
        let (s, r, server) = simulate(&c, &spec);
        prop_assert_eq!(r.rate_limited, 0, "{:?}", r);
        assert_within_limits(&s, &server)?;
    }

    /// gemini-flux is safe exactly when its assumption holds: one key per project, input-token
    /// TPM, no RPM limit.
    #[test]
    fn gemini_flux_is_safe_with_one_key_per_project(c in cases(false, false, 1)) {
        let c = Case { total: false, ..c };
        let (s, r, server) = simulate(&c, GEMINI_FLUX);
        prop_assert_eq!(r.rate_limited, 0, "{:?}", r);
        assert_within_limits(&s, &server)?;
    }

    /// flux knowing the true limits never gets a quota 429 either (it never probes limits it
    /// knows), whatever the topology, limits, window kind and workload, 503s or none.
    #[test]
    fn flux_never_breaches_a_quota(c in cases(true, true, 4), faults in prop_oneof![Just(0.0), Just(0.25)]) {
        let c = Case { fault_rate: faults, ..c };
        let (s, r, server) = simulate(&c, FLUX);
        prop_assert_eq!(r.rate_limited, 0, "{:?}", r);
        assert_within_limits(&s, &server)?;
    }

    /// Every request ends exactly once and attempts add up, for every strategy.
    #[test]
    fn every_request_ends_once(c in cases(true, true, 4)) {
        let s = c.scenario(ALL);
        let out = run(&s, &s.strategies, s.seed, None, 1);
        for r in &out.results {
            prop_assert_eq!(r.requests, r.completed + r.failed + r.unservable + r.pending, "{:?}", r);
            prop_assert_eq!(r.attempts, r.completed + r.rate_limited + r.other_errors + r.in_flight, "{:?}", r);
            prop_assert!(r.in_flight <= r.pending);
            if !c.open {
                prop_assert_eq!(r.requests, c.requests as u64);
            }
        }
    }

    /// The upper bound holds in every run, not on average: no strategy, not even one that
    /// gives up on a closed batch early, completes more per minute than the bound, and no
    /// efficiency exceeds 1 — with latency jitter up to sigma 3, concurrency per project or
    /// per key, and closed batches whose workers cap the parallelism.
    #[test]
    fn no_strategy_beats_the_upper_bound(c in cases(true, true, 4)) {
        let s = c.scenario(ALL);
        for r in &run(&s, &s.strategies, s.seed, None, 1).results {
            prop_assert!(
                r.throughput_per_min <= r.upper_bound_per_min,
                "{}: {} per minute > bound {}", r.strategy, r.throughput_per_min, r.upper_bound_per_min
            );
            prop_assert!(r.efficiency <= 1.0, "{}: efficiency {}", r.strategy, r.efficiency);
        }
    }

    /// Same scenario and seed: byte-identical JSON; reordering the strategies in the file
    /// changes no strategy's numbers.
    #[test]
    fn runs_are_deterministic_and_order_free(c in cases(true, true, 4)) {
        let s = c.scenario(ALL);
        let a = to_json(&run(&s, &s.strategies, s.seed, None, 1));
        // Threads change nothing either.
        prop_assert_eq!(&a, &to_json(&run(&s, &s.strategies, s.seed, None, 3)));
        let b = to_json(&run(&s, &s.strategies, s.seed, None, 1));
        prop_assert_eq!(&a, &b);
        let mut reversed = s.strategies.clone();
        reversed.reverse();
        let r = run(&s, &reversed, s.seed, None, 2);
        let fwd = run(&s, &s.strategies, s.seed, None, 1);
        for x in &r.results {
            let y = fwd.results.iter().find(|y| y.strategy == x.strategy).unwrap();
            prop_assert_eq!(x, y);
        }
    }
}

/// Runs the never-breach property for `strategies` over `cases` and returns proptest's
/// shrunk counterexample. The generator is seeded: shrinking from a random start does not
/// always reach the global minimum (about one run in twelve stopped at 3 requests instead of
/// 2), and a test of what the minimum looks like must not be flaky.
fn find_breach(cases: impl Strategy<Value = Case>, strategies: &'static str) -> Case {
    let config = Config {
        cases: 512,
        failure_persistence: None,
        ..Config::default()
    };
    let mut runner = TestRunner::new_with_rng(config, TestRng::deterministic_rng(RngAlgorithm::ChaCha));
    let result = runner.run(&cases, |c| {
        let (_, r, _) = simulate(&c, strategies);
        prop_assert_eq!(r.rate_limited, 0);
        Ok(())
    });
    match result {
        Err(TestError::Fail(why, minimal)) => {
            eprintln!("shrunk counterexample ({why}): {minimal:?}");
            minimal
        }
        other => panic!("expected a breach, got {other:?}"),
    }
}

fn limited_dimensions(c: &Case) -> usize {
    [c.rpm, c.tpm, c.rpd, c.tpd, c.concurrent]
        .iter()
        .filter(|l| l.is_some())
        .count()
}

#[test]
fn the_property_catches_round_robin() {
    let m = find_breach(cases(true, true, 4), ROUND_ROBIN);
    // Minimal: one project with one valid key, one limited dimension at 1, a batch of 2.
    assert_eq!(m.projects, vec![(1, 0)], "{m:?}");
    assert_eq!(limited_dimensions(&m), 1, "{m:?}");
    assert!([m.rpm, m.tpm, m.rpd, m.tpd, m.concurrent].contains(&Some(1)), "{m:?}");
    assert!(!m.open && m.requests == 2, "{m:?}");
}

#[test]
fn the_property_catches_gemini_flux_when_keys_share_a_project() {
    let m = find_breach(
        cases(false, false, 4).prop_map(|c| Case { total: false, ..c }),
        GEMINI_FLUX,
    );
    // Minimal: a single project holding two valid keys, two requests.
    assert_eq!(m.projects, vec![(2, 0)], "{m:?}");
    assert_eq!(limited_dimensions(&m), 1, "{m:?}");
    assert!(!m.open && m.requests == 2, "{m:?}");
}
