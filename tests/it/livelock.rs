//! Every run ends: over every strategy kind in `strategy::KINDS`, random scenarios (REST
//! requests or Live sessions, each kind on the workloads its tool can send) with invalid
//! keys, 503s and retry policies without a limit (issue 30 item 3, where LiteLLM's least-busy
//! retried a request on an invalid key at t = 0 forever). A watchdog stops a run that spins;
//! the property fails if it had to. The engine reports a request retried at one instant with
//! nothing changing (`StrategyResult::livelock`); only a tool that never leaves a dead key may
//! meet one, and only when every key it can use is invalid. `PROPTEST_CASES` sets the number
//! of cases (256 by default, as in CI).

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use proptest::prelude::*;
use proptest::test_runner::Config;

use flux_sim::scenario::Scenario;
use flux_sim::sim::bound::upper_bound;
use flux_sim::sim::engine::{simulate_full, Control, SimOptions, STALL_LIMIT};
use flux_sim::sim::metrics::StrategyResult;
use flux_sim::strategy::KINDS;

#[derive(Debug, Clone)]
struct Case {
    /// Per project: (valid keys, invalid keys).
    projects: Vec<(u8, u8)>,
    rpm: Option<u64>,
    rpd: Option<u64>,
    fault_rate: f64,
    /// None: a closed batch of `requests` with `workers`; Some(rate): open, for 2 minutes.
    open: Option<u32>,
    requests: u32,
    workers: u32,
    /// `retry_info` without a limit, else `immediate` with the most attempts a scenario allows.
    retry_info: bool,
    /// Some(concurrent sessions per project): a workload of Live sessions (a closed batch of
    /// `requests` sessions from `workers` clients) instead of REST requests.
    live: Option<u64>,
    seed: u64,
}

impl Case {
    fn toml(&self) -> String {
        let mut s = format!(
            "name = \"livelock\"\nseed = {}\n[server]\nfault_rate = {}\n[server.latency]\nttft = \"300ms\"\ntokens_per_second = 100\n[models.m]\n",
            self.seed, self.fault_rate
        );
        if let Some(c) = self.live {
            s += &format!("live = true\nconcurrent = {c}\n");
        }
        if let Some(r) = self.rpm {
            s += &format!("rpm = {r}\n");
        }
        if let Some(r) = self.rpd {
            s += &format!("rpd = {r}\n");
        }
        let names: Vec<String> = (0..self.projects.len()).map(|i| format!("\"p{i}\"")).collect();
        s += &format!("[topology]\nprojects = [{}]\n", names.join(", "));
        for (i, (k, bad)) in self.projects.iter().enumerate() {
            s += &format!("[topology.project.p{i}]\nkeys = {k}\ninvalid_keys = {bad}\n");
        }
        match self.open {
            _ if self.live.is_some() => {
                s += &format!(
                    "[workload]\nkind = \"sessions\"\nclients = {}\nsessions = {}\nturns = 2\npause = \"5s\"\nmodality = \"text\"\n",
                    self.workers, self.requests
                )
            }
            Some(rate) => s += &format!("[workload]\nkind = \"open\"\nrate = {rate}\nduration = \"2m\"\n"),
            None => {
                s += &format!(
                    "[workload]\nkind = \"closed\"\nrequests = {}\nworkers = {}\n",
                    self.requests, self.workers
                )
            }
        }
        s += "input_tokens = { dist = \"uniform\", min = 1, max = 500 }\noutput_tokens = { dist = \"fixed\", value = 20 }\n";
        let retry = if self.retry_info {
            "{ policy = \"retry_info\" }".to_string()
        } else {
            "{ policy = \"immediate\", max_attempts = 1000 }".to_string()
        };
        for def in KINDS.iter().filter(|d| d.serves(self.live.is_some())) {
            s += &format!("[[strategies]]\nkind = \"{}\"\nretry = {retry}\n", def.name);
            for (param, example) in def.requires {
                s += &format!("{} = {example}\n", param.field());
            }
        }
        s
    }
}

fn cases() -> impl Strategy<Value = Case> {
    (
        prop::collection::vec((0u8..=3, 0u8..=2), 1..=4),
        prop_oneof![Just(None), (1u64..=30).prop_map(Some)],
        prop_oneof![Just(None), (1u64..=200).prop_map(Some)],
        prop_oneof![Just(0.0), Just(0.1), Just(0.5), Just(0.9)],
        prop_oneof![Just(None), (1u32..=60).prop_map(Some)],
        (1u32..=40, 1u32..=10),
        any::<bool>(),
        prop_oneof![3 => Just(None), 1 => (1u64..=3).prop_map(Some)],
        any::<u64>(),
    )
        .prop_map(
            |(mut projects, rpm, rpd, fault_rate, open, (requests, workers), retry_info, live, seed)| {
                // A project needs a key, a scenario a valid one.
                for p in &mut projects {
                    if p.0 + p.1 == 0 {
                        p.1 = 1;
                    }
                }
                if projects.iter().all(|p| p.0 == 0) {
                    projects.last_mut().expect("one project").0 = 1;
                }
                Case {
                    projects,
                    rpm,
                    rpd,
                    fault_rate,
                    open,
                    requests,
                    workers,
                    retry_info,
                    live,
                    seed: seed % (1 << 53),
                }
            },
        )
}

/// Kinds modelling a tool that never leaves a dead key: with every key it can use invalid and
/// a policy without a limit, the real tool spins too, and the engine says so.
fn spins_on_dead_keys(kind: &str) -> bool {
    matches!(
        kind,
        "round_robin" | "fixed_interval" | "gemini_balance" | "token_bucket" | "live_mixer" | "live_reconnect"
    )
}

/// Runs every strategy of `s`; a watchdog stops any run still going after `limit`. Returns
/// each result and whether the watchdog had to stop it.
fn run_all(s: &Scenario, limit: Duration) -> Vec<(StrategyResult, bool)> {
    let bound = upper_bound(s, s.seed);
    s.strategies
        .iter()
        .map(|spec| {
            let control = Control::default();
            let done = AtomicBool::new(false);
            let fired = AtomicBool::new(false);
            let result = std::thread::scope(|scope| {
                scope.spawn(|| {
                    let start = Instant::now();
                    while !done.load(Ordering::Relaxed) {
                        if start.elapsed() > limit {
                            fired.store(true, Ordering::Relaxed);
                            control.stop.store(true, Ordering::Relaxed);
                            return;
                        }
                        std::thread::sleep(Duration::from_millis(2));
                    }
                });
                let r = simulate_full(
                    s,
                    spec,
                    s.seed,
                    &bound,
                    SimOptions {
                        control: Some(&control),
                        ..SimOptions::default()
                    },
                )
                .result;
                done.store(true, Ordering::Relaxed);
                r
            });
            (result, fired.load(Ordering::Relaxed))
        })
        .collect()
}

proptest! {
    #![proptest_config(Config { failure_persistence: None, ..Config::default() })]

    /// Every run of every kind ends on its own, and a livelock is reported only where the
    /// tool itself would spin.
    #[test]
    fn every_run_ends(c in cases()) {
        let text = c.toml();
        let s = Scenario::parse(&text, Path::new("livelock.toml")).unwrap_or_else(|e| panic!("{e}\n{text}"));
        let all_invalid = s.topology.keys.iter().all(|k| !k.valid);
        let first_invalid = !s.topology.keys[0].valid;
        for (r, stopped) in run_all(&s, Duration::from_secs(20)) {
            prop_assert!(!stopped, "{} did not end within 20 s of wall clock\n{}", r.strategy, text);
            prop_assert_eq!(r.requests, r.completed + r.failed + r.unservable + r.pending, "{:?}", r);
            if let Some(why) = &r.livelock {
                // The cookbook's processor and the SDK's reconnect loop use one key, the first.
                let one_key = matches!(r.kind.as_str(), "token_bucket" | "live_reconnect");
                let dead = if one_key { first_invalid } else { all_invalid };
                prop_assert!(spins_on_dead_keys(&r.kind) && dead, "{}\n{}", why, text);
                prop_assert!(why.contains(&r.strategy) && why.contains("request "), "{}", why);
            }
        }
    }
}

/// The report has teeth: the cookbook's processor sends every request on the first key; when
/// that key is invalid, no limit paces it and its policy retries without a limit, it is stopped
/// after [`STALL_LIMIT`] retries at t = 0 and the report names the strategy and the request.
/// Before the engine's check this run never ended.
#[test]
fn a_tool_stuck_on_a_dead_key_is_reported() {
    let text = "name = \"dead\"\n[models.m]\nrpd = 100\n[topology]\nprojects = [\"p0\", \"p1\"]\n[topology.project.p0]\nkeys = 0\ninvalid_keys = 1\n\
                [workload]\nkind = \"closed\"\nrequests = 3\nworkers = 1\ninput_tokens = { dist = \"fixed\", value = 1 }\noutput_tokens = { dist = \"fixed\", value = 1 }\n\
                [[strategies]]\nkind = \"token_bucket\"\nretry = { policy = \"retry_info\" }\n";
    let s = Scenario::parse(text, Path::new("dead.toml")).unwrap();
    assert!(!s.topology.keys[0].valid);
    let (r, stopped) = run_all(&s, Duration::from_secs(20)).remove(0);
    assert!(!stopped);
    let why = r.livelock.clone().expect("a livelock");
    assert!(why.contains("\"token_bucket\"") && why.contains("request 0"), "{why}");
    assert!(
        why.contains(&format!("{STALL_LIMIT} times")) && why.contains("t = 0"),
        "{why}"
    );
    assert!(why.contains("API key not valid"), "{why}");
    assert_eq!(r.attempts, STALL_LIMIT as u64, "{r:?}");
    assert_eq!((r.completed, r.pending), (0, 3), "{r:?}");
}

/// The case: LiteLLM's least-busy with an invalid key first and retries without a
/// limit never ended; now the invalid key cools down and every request completes.
#[test]
fn litellm_least_busy_leaves_an_invalid_key() {
    for kind in ["litellm_least_busy", "litellm_usage", "litellm_shuffle"] {
        let text = format!(
            "name = \"ll\"\n[models.m]\nrpm = 10\n[topology]\nprojects = [\"p0\", \"p1\"]\n[topology.project.p0]\nkeys = 1\ninvalid_keys = 1\n\
             [workload]\nkind = \"closed\"\nrequests = 5\nworkers = 5\ninput_tokens = {{ dist = \"fixed\", value = 10 }}\noutput_tokens = {{ dist = \"fixed\", value = 10 }}\n\
             [[strategies]]\nkind = \"{kind}\"\nretry = {{ policy = \"retry_info\" }}\n"
        );
        let s = Scenario::parse(&text, Path::new("ll.toml")).unwrap();
        let (r, stopped) = run_all(&s, Duration::from_secs(20)).remove(0);
        assert!(!stopped && r.livelock.is_none(), "{r:?}");
        assert_eq!(r.completed, 5, "{r:?}");
    }
}

/// The command fails on a livelock: `run` (and `compare`, through the same check) exits 2 with
/// one line naming the scenario file, the strategy and the request, and prints no table (issue
/// 30 item 3: "a clear error naming the strategy and request, non-zero exit"). `timeout` in
/// the command's stead would be 124 on a binary without the engine's check.
#[test]
fn run_exits_2_naming_the_strategy_and_request_of_a_livelock() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("dead.toml");
    std::fs::write(
        &path,
        "name = \"dead\"\n[models.m]\nrpd = 100\n[topology]\nprojects = [\"p0\", \"p1\"]\n[topology.project.p0]\nkeys = 0\ninvalid_keys = 1\n\
         [workload]\nkind = \"closed\"\nrequests = 3\nworkers = 1\ninput_tokens = { dist = \"fixed\", value = 1 }\noutput_tokens = { dist = \"fixed\", value = 1 }\n\
         [[strategies]]\nname = \"cookbook\"\nkind = \"token_bucket\"\nretry = { policy = \"retry_info\" }\n",
    )
    .unwrap();
    let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("flux-sim"))
        .args(["run", path.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            child.kill().unwrap();
            panic!("flux-sim run did not end within 60 s on a livelock");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for part in [
        "dead.toml",
        "strategy \"cookbook\"",
        "request 0",
        "livelocked",
        "t = 0s",
    ] {
        assert!(stderr.contains(part), "{part:?} missing: {stderr}");
    }
}
