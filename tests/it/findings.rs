//! The findings the shipped scenarios were written for, pinned: if a change to the server
//! model or a strategy moves them, this fails and docs/findings.md must be revisited.

use std::collections::HashMap;
use std::path::Path;

use flux_sim::core::workload::RequestStream;
use flux_sim::scenario::Scenario;
use flux_sim::sim::compare::contenders;
use flux_sim::sim::engine::AttemptRecord;
use flux_sim::sim::run::run;

/// `flux` completes at 99% of `other`'s pace at least.
fn keeps_pace(flux: &flux_sim::sim::metrics::StrategyResult, other: &flux_sim::sim::metrics::StrategyResult) {
    assert!(
        flux.throughput_per_min >= 0.99 * other.throughput_per_min,
        "pace {} against {}",
        flux.throughput_per_min,
        other.throughput_per_min
    );
}

/// Strategy `name` of run `r` (at `seed`) keeps up with exact_cooldown: at least 0.99 of its
/// completions and its pace, and a wait p99 at most `wait` times its. Returns the row.
fn keeps_up<'a>(
    r: &'a flux_sim::sim::metrics::RunResult,
    name: &str,
    wait: f64,
    seed: u64,
) -> &'a flux_sim::sim::metrics::StrategyResult {
    let (truth, told) = (result(r, "exact_cooldown"), result(r, name));
    assert!(
        told.completed as f64 >= 0.99 * truth.completed as f64,
        "seed {seed}: {} done against {}",
        told.completed,
        truth.completed
    );
    keeps_pace(told, truth);
    assert!(
        told.wait_ms.p99 <= wait * truth.wait_ms.p99,
        "seed {seed}: wait p99 {} against {}",
        told.wait_ms.p99,
        truth.wait_ms.p99
    );
    told
}

/// The row of strategy `name` in `r` (panics naming it if there is none).
fn result<'a>(r: &'a flux_sim::sim::metrics::RunResult, name: &str) -> &'a flux_sim::sim::metrics::StrategyResult {
    r.results
        .iter()
        .find(|x| x.strategy == name)
        .unwrap_or_else(|| panic!("no row {name}"))
}

fn load(name: &str) -> Scenario {
    Scenario::load(Path::new(&format!("scenarios/{name}.toml"))).unwrap()
}

/// `oversize.toml`: prompts above the TPM limit are unservable; the planners never send them;
/// round robin (with the SDK's retry options, which read only the status code) retries each
/// as any 429, 5 attempts in all; gemini-flux retries it along its chain and burns it.
#[test]
fn oversize_prompts_are_unservable_at_once_and_burn_gemini_flux_s_chain() {
    let s = load("oversize");
    let oversize = RequestStream::new(&s.workload, s.seed)
        .filter(|r| r.input_tokens > 250_000)
        .count() as u64;
    assert!(oversize >= 10, "the scenario has oversize prompts: {oversize}");
    let mut attempts: HashMap<(String, u64), u32> = HashMap::new();
    let mut unservable_sent: HashMap<String, u64> = HashMap::new();
    let mut sink = |strategy: &str, a: &AttemptRecord| {
        *attempts.entry((strategy.to_string(), a.request)).or_default() += 1;
        if a.outcome == "unservable" {
            *unservable_sent.entry(strategy.to_string()).or_default() += 1;
        }
    };
    let out = run(&s, &s.strategies, s.seed, Some(&mut sink), 1);
    let big: Vec<u64> = RequestStream::new(&s.workload, s.seed)
        .filter(|r| r.input_tokens > 250_000)
        .map(|r| r.id)
        .collect();
    for r in &out.results {
        if r.strategy == "gemini_flux" {
            // Once its chain is burnt it gives up on what is left, big or not.
            assert!(r.unservable <= oversize, "{r:?}");
        } else {
            assert_eq!(
                r.unservable, oversize,
                "{}: every oversize prompt is unservable",
                r.strategy
            );
        }
        // The planners read QuotaFailure and never retry one; round robin's SDK (5 attempts)
        // and gemini-flux (keys × models: 4 × 3) cannot tell it from another 429.
        let most = match r.strategy.as_str() {
            "round_robin" => 5,
            "gemini_flux" => 12,
            _ => 1,
        };
        for id in &big {
            let n = attempts.get(&(r.strategy.clone(), *id)).copied().unwrap_or(0);
            assert!(n <= most, "{}: oversize request {id} was sent {n} times", r.strategy);
        }
    }
    let by = |n: &str| out.results.iter().find(|r| r.strategy == n).unwrap();
    for planner in ["exact_cooldown", "flux"] {
        let r = by(planner);
        assert_eq!(unservable_sent.get(planner), None, "{planner} never sends one");
        assert_eq!(
            (r.rate_limited, r.failed, r.completed + r.unservable),
            (0, 0, 600),
            "{r:?}"
        );
    }
    let gf = by("gemini_flux");
    assert!(
        gf.completed * 2 < by("flux").completed && gf.failed > 300,
        "gemini-flux burns its chain: {gf:?}"
    );
}

/// `free-tier-2026.toml`: the dubbing job needs 90 projects on the December-2025 free tier
/// (20 RPD), against 8 in October 2025.
#[test]
fn the_2026_free_tier_needs_90_projects_for_the_dubbing_job() {
    let text = std::fs::read_to_string("scenarios/free-tier-2026.toml").unwrap();
    let at = |projects: u32| {
        let t = text.replace("projects = 100", &format!("projects = {projects}"));
        let s = Scenario::parse(&t, Path::new("free-tier-2026.toml")).unwrap();
        run(&s, &s.strategies, s.seed, None, 2)
    };
    for (projects, enough) in [(89, false), (90, true)] {
        for r in at(projects)
            .results
            .iter()
            .filter(|r| r.strategy == "flux" || r.strategy == "exact_cooldown")
        {
            assert_eq!(r.completed >= 1_782, enough, "{projects} projects: {r:?}");
            assert_eq!(r.rate_limited, 0, "{r:?}");
        }
    }
}

/// `quirks.toml`: RetryInfo that lies. Told limits 20% too high, `exact_cooldown` believes a
/// per-minute 429's 86,400 s and sits out the day; `flux` learns the true limit and holds the
/// 429 to a minute; both give up on a quota of 0 without sending, whatever "retry in 25s" says.
#[test]
fn retry_info_that_lies_stalls_the_planner_that_trusts_it() {
    let s = load("quirks");
    let out = run(&s, &s.strategies, s.seed, None, 2);
    let by = |n: &str| out.results.iter().find(|r| r.strategy == n).unwrap();
    let (trusting, flux, truth) = (
        by("exact_cooldown, told 12 RPM"),
        by("flux, told 12 RPM"),
        by("exact_cooldown"),
    );
    assert!(trusting.completed * 5 < flux.completed, "{trusting:?}");
    assert!(
        flux.completed as f64 >= 0.99 * truth.completed as f64,
        "{flux:?} {truth:?}"
    );
    assert!(flux.rate_limited <= 3, "one 429 per project to learn: {flux:?}");
    assert_eq!(truth.rate_limited, 0, "{truth:?}");
    let pro = RequestStream::new(&s.workload, s.seed).filter(|r| r.model == 1).count() as u64;
    for r in [trusting, flux, truth] {
        assert_eq!(r.unservable, pro, "{}: quota 0 is unservable at once", r.strategy);
    }
    assert!(by("round_robin").failed > 0, "the SDK's retries hammer the quota of 0");
}

/// `vertex-dsq.toml`: under a shared pool rotation buys nothing (one key and eight projects
/// with the same retries end identically), jitter barely moves the 429 count when failures are
/// not synchronised, giving up at the first 429 loses about a third, and flux, which queues
/// the model's requests behind one pacing of the pool's room without blaming any project,
/// completes the most with a tenth of the rotators' 429s (issue 26, item 8: before, backing
/// off per request, it met 98,851, six times the rotators', with a p99 wait of 39 min).
#[test]
fn under_a_shared_pool_rotation_buys_nothing() {
    let s = load("vertex-dsq");
    let out = run(&s, &s.strategies, s.seed, None, 2);
    let by = |n: &str| out.results.iter().find(|r| r.strategy == n).unwrap();
    let (rotate, one) = (by("rotate, full jitter"), by("one key, full jitter"));
    assert_eq!(
        (rotate.completed, rotate.rate_limited),
        (one.completed, one.rate_limited)
    );
    let plain = by("rotate, exponential, no jitter");
    for name in ["rotate, full jitter", "rotate, equal jitter", "rotate, decorrelated"] {
        let r = by(name);
        let ratio = r.rate_limited as f64 / plain.rate_limited as f64;
        assert!((0.85..1.15).contains(&ratio), "{name}: {ratio}");
    }
    let none = by("rotate, no retry");
    assert!(none.completed as f64 <= 0.92 * plain.completed as f64, "{none:?}");
    let best = out
        .results
        .iter()
        .filter(|r| r.strategy != "flux")
        .map(|r| r.completed)
        .max()
        .unwrap();
    let flux = by("flux");
    assert!(flux.completed >= best && flux.failed == 0, "{flux:?}");
    // Every 429 is a capacity one: no quota dimension named.
    let b = &flux.rate_limited_by;
    assert_eq!((b.rpm, b.tpm, b.rpd, b.concurrency), (0, 0, 0, 0));
    let fewest = out
        .results
        .iter()
        .filter(|r| r.strategy != "flux" && r.strategy != "rotate, no retry")
        .map(|r| r.rate_limited)
        .min()
        .unwrap();
    assert!(
        flux.rate_limited * 10 < fewest,
        "{} 429s against {fewest}",
        flux.rate_limited
    );
    assert!(flux.wait_ms.p99 < 30.0 * 60_000.0, "{:?}", flux.wait_ms);
}

/// `vertex-dsq-peak.toml`, a shared pool flux's pacing was not tuned on (a smaller pool at
/// its peak, work in waves, the others' batches filling it for 8 minutes): flux completes as
/// much as the best other strategy (within one request), with a tenth of round robin's 429s
/// and a shorter p99 wait than exact_cooldown, which retries each request on its own.
#[test]
fn flux_paces_a_shared_pool_it_was_not_tuned_on() {
    let s = load("vertex-dsq-peak");
    let out = run(&s, &s.strategies, s.seed, None, 2);
    let by = |n: &str| out.results.iter().find(|r| r.strategy == n).unwrap();
    let flux = by("flux");
    let best = out
        .results
        .iter()
        .filter(|r| r.strategy != "flux")
        .map(|r| r.completed)
        .max()
        .unwrap();
    assert!(flux.completed + 1 >= best && flux.failed == 0, "{flux:?}");
    let jitter = by("rotate, full jitter");
    assert!(flux.rate_limited * 10 < jitter.rate_limited, "{flux:?}");
    let exact = by("exact_cooldown");
    assert!(
        flux.wait_ms.p99 < exact.wait_ms.p99,
        "{:?} vs {:?}",
        flux.wait_ms,
        exact.wait_ms
    );
}

/// `pro-tokens-per-day.toml`: a planner told the documented limits (no TPD) meets TPD 429s;
/// `flux` learns the quota and moves the requests to the fallback model at once.
/// `exact_cooldown` keeps off the (project, model) the 429 names until midnight (it reads the
/// quota id) and its `retry_info` policy waits what RetryInfo says: under the per-day 429s
/// of 2026 ("retry in 36s", `per_day_retry = "next_minute"`, the default) it is asked again
/// within the minute and sends the request to another project; when RetryInfo said the time
/// to midnight (`"reset"`, flux-sim's answer before issue 31) it waited until then with every
/// request that hit the wall.
#[test]
fn a_tokens_per_day_429_sends_flux_down_the_chain_and_exact_cooldown_to_midnight() {
    let text = std::fs::read_to_string("scenarios/pro-tokens-per-day.toml").unwrap();
    for reset in [false, true] {
        let t = if reset {
            text.replace("[server]\n", "[server.quirks]\nper_day_retry = \"reset\"\n\n[server]\n")
        } else {
            text.clone()
        };
        let s = Scenario::parse(&t, Path::new("scenarios/pro-tokens-per-day.toml")).unwrap();
        let out = run(&s, &s.strategies, s.seed, None, 2);
        let by = |n: &str| out.results.iter().find(|r| r.strategy == n).unwrap();
        let (stuck, flux) = (by("exact_cooldown, told no TPD"), by("flux, told no TPD"));
        assert!(stuck.rate_limited_by.tpd >= 5, "at least one per project: {stuck:?}");
        if reset {
            assert!(stuck.pending >= 5 && stuck.makespan_s.is_none(), "{stuck:?}");
        } else {
            assert_eq!((stuck.completed, stuck.pending), (500, 0), "{stuck:?}");
        }
        assert_eq!(flux.rate_limited_by.tpd, 5, "one per project: {flux:?}");
        assert_eq!((flux.completed, flux.pending), (500, 0), "{flux:?}");
        for truth in [by("exact_cooldown"), by("flux")] {
            assert_eq!((truth.completed, truth.rate_limited), (500, 0), "{truth:?}");
        }
    }
}

/// `fleet.toml`: pods that each count alone over-admit more with every pod; pods sharing one
/// ledger over-admit more the later they see it; sharing request counts but not token counts
/// (LiteLLM #40291) over-admits tokens; flux's learning absorbs most of a sync delay.
#[test]
fn a_fleet_over_admits_with_instances_and_with_sync_delay() {
    use flux_sim::core::time::{MILLISECOND, SECOND};
    use flux_sim::strategy::{FleetSpec, Sharing};
    let base = load("fleet");
    let at = |instances: usize, sharing: Sharing, sync_delay: u64| {
        let mut s = base.clone();
        s.fleet = FleetSpec {
            instances,
            sharing,
            sync_delay,
        };
        let out = run(&s, &s.strategies, s.seed, None, 1);
        for r in &out.results {
            if r.strategy != "round_robin" {
                assert_eq!(r.completed, 12_000, "{instances} {sharing:?} {sync_delay}: {r:?}");
            }
        }
        out.results
    };
    let get = |rs: &[flux_sim::sim::metrics::StrategyResult], name: &str| {
        rs.iter().find(|r| r.strategy == name).unwrap().clone()
    };
    let one = at(1, Sharing::Local, 0);
    let rr = get(&one, "round_robin").rate_limited;
    for planner in ["exact_cooldown", "flux"] {
        assert_eq!(
            get(&one, planner).rate_limited,
            0,
            "one pod: {planner} never over-admits"
        );
    }
    let mut local_prev = [0u64; 2];
    for n in [2, 4, 8] {
        let local = at(n, Sharing::Local, 0);
        let shared = at(n, Sharing::Shared, SECOND);
        // round_robin counts nothing: its 429s hardly depend on the fleet.
        let r = get(&local, "round_robin").rate_limited;
        assert!(r.abs_diff(rr) * 100 < rr, "round_robin {r} vs {rr}");
        for (i, planner) in ["exact_cooldown", "flux"].into_iter().enumerate() {
            let l = get(&local, planner).rate_limited;
            let s = get(&shared, planner).rate_limited;
            assert!(
                l > local_prev[i],
                "{planner}: {n} pods over-admit more than fewer ({l})"
            );
            assert!(s * 3 < l, "{planner}, {n} pods: shared {s} vs local {l}");
            local_prev[i] = l;
        }
        let (e, f) = (
            get(&shared, "exact_cooldown").rate_limited,
            get(&shared, "flux").rate_limited,
        );
        assert!(f * 5 < e, "{n} pods sharing 1 s late: flux {f} vs exact_cooldown {e}");
    }
    // exact_cooldown over-admits more the later the shared ledger is seen; flux pods plan
    // with their share of what peers may take unseen (issue 26, item 9): none up to 1 s, and
    // at 5 s only what they send before first seeing each other.
    let mut prev = None::<u64>;
    for delay in [0, 250 * MILLISECOND, SECOND, 5 * SECOND] {
        let rs = at(4, Sharing::Shared, delay);
        let n = get(&rs, "exact_cooldown").rate_limited;
        match prev {
            None => assert_eq!(n, 0, "exact_cooldown: a ledger seen at once never over-admits"),
            Some(p) => assert!(n > p, "exact_cooldown: {delay} ns late over-admits more ({n} vs {p})"),
        }
        prev = Some(n);
        let f = get(&rs, "flux").rate_limited;
        if delay <= SECOND {
            assert_eq!(f, 0, "flux pods on a ledger seen {delay} ns late");
        } else {
            assert!(
                f * 20 < n,
                "flux pods on a ledger seen {delay} ns late: {f} vs exact_cooldown {n}"
            );
        }
    }
    let shared = at(4, Sharing::Shared, SECOND);
    let tokens_local = at(4, Sharing::RpmShared, SECOND);
    for planner in ["exact_cooldown", "flux"] {
        let (s, t) = (get(&shared, planner), get(&tokens_local, planner));
        assert!(t.rate_limited > 3 * s.rate_limited, "{planner}: {t:?} vs {s:?}");
        assert_eq!(
            t.rate_limited_by.tpm, t.rate_limited,
            "{planner}: token counts local ⇒ TPM 429s"
        );
    }
}

/// `spend-cap.toml`: once a billing account's spend cap binds, projects add nothing: the
/// planners finish in the same time with 1 to 8 projects, every 429 they meet is the cap's,
/// and no 10 minutes ever hold more than the cap; billing data 10 minutes late lets nearly
/// three times the cap through.
#[test]
fn a_spend_cap_makes_more_projects_worthless() {
    use flux_sim::core::time::MINUTE;
    let base = load("spend-cap");
    let mut speeds = Vec::new();
    for projects in [1, 2, 4, 8] {
        let text = std::fs::read_to_string("scenarios/spend-cap.toml")
            .unwrap()
            .replace("projects = 4\n", &format!("projects = {projects}\n"));
        let s = Scenario::parse(&text, Path::new("scenarios/spend-cap.toml")).unwrap();
        let out = run(&s, &s.strategies, s.seed, None, 1);
        for r in out.results.iter().filter(|r| r.strategy != "round_robin") {
            assert_eq!(r.completed, 2_000, "{r:?}");
            assert_eq!(r.rate_limited_by.spend, r.rate_limited, "only the cap refuses: {r:?}");
            assert!(r.peak_spend_usd.unwrap() <= 10.0, "{r:?}");
            assert!(r.efficiency >= 0.95, "the bound knows the cap: {r:?}");
            speeds.push(r.throughput_per_min);
        }
    }
    let (lo, hi) = speeds.iter().fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
    assert!(hi < lo * 1.01, "1 to 8 projects: {lo}..{hi} per minute");
    assert!(hi < 18.5, "about $10 / 10 min at ~5 cents a review: {hi}");
    let mut late = base.clone();
    late.server.spend.delay = 10 * MINUTE;
    let out = run(&late, &late.strategies, late.seed, None, 1);
    for r in &out.results {
        assert!(
            r.peak_spend_usd.unwrap() > 25.0,
            "late billing data overruns the cap: {r:?}"
        );
    }
    let rr = out.results.iter().find(|r| r.strategy == "round_robin").unwrap();
    assert!(rr.failed > 800, "the SDK's retries give up on the cap: {rr:?}");
}

/// `vertex-pt.toml`: reserved throughput must cover the demand's peaks, not its mean: 429s
/// fall as the reservation grows and vanish above the peak; refusing the overflow ("dedicated
/// only") turns every request beyond the reservation into a 429.
#[test]
fn provisioned_throughput_must_cover_the_peaks() {
    let text = std::fs::read_to_string("scenarios/vertex-pt.toml").unwrap();
    let at = |rpm: u64, overflow: &str| {
        let t = text
            .replace("rpm = 30\n", &format!("rpm = {rpm}\n"))
            .replace("overflow = \"spill\"", &format!("overflow = \"{overflow}\""));
        let s = Scenario::parse(&t, Path::new("scenarios/vertex-pt.toml")).unwrap();
        run(&s, &s.strategies, s.seed, None, 1).results
    };
    let limited = |rs: &[flux_sim::sim::metrics::StrategyResult], name: &str| {
        rs.iter().find(|r| r.strategy == name).unwrap().rate_limited
    };
    let mut prev = [u64::MAX; 2];
    for rpm in [10, 30, 40, 50, 60] {
        let spill = at(rpm, "spill");
        let dedicated = at(rpm, "dedicated_only");
        for (i, name) in ["full jitter", "flux"].into_iter().enumerate() {
            let (s, d) = (limited(&spill, name), limited(&dedicated, name));
            assert!(
                s < prev[i] || s == 0,
                "{name}: {rpm} reserved, spill: {s} vs {}",
                prev[i]
            );
            if name == "flux" {
                // It plans on the reservation (issue 33, item 3): sent dedicated only, it
                // waits for the reservation's room instead of meeting its 429s.
                assert_eq!(d, 0, "flux, {rpm} reserved, dedicated only");
            } else {
                assert!(
                    d >= s,
                    "{name}, {rpm} reserved: refusing the overflow cannot do better ({d} < {s})"
                );
            }
            prev[i] = s;
            if rpm == 60 {
                assert_eq!((s, d), (0, 0), "{name}: 60 reserved cover 40 a minute's peaks");
            }
        }
    }
    let mean = at(40, "dedicated_only");
    assert!(
        limited(&mean, "full jitter") > 1_000,
        "reserving the mean is not enough"
    );
}

/// Runs `name` with its text edited by `edits` (from → to, each must apply).
fn run_edited(name: &str, edits: &[(&str, &str)]) -> flux_sim::sim::metrics::RunResult {
    let path = format!("scenarios/{name}.toml");
    let mut text = std::fs::read_to_string(&path).unwrap();
    for (from, to) in edits {
        assert!(text.contains(from), "{path} has no {from:?}");
        text = text.replace(from, to);
    }
    let s = Scenario::parse(&text, Path::new(&path)).unwrap();
    run(&s, &s.strategies, s.seed, None, 1)
}

/// `live-sessions.toml`: the one-session-at-a-time loop that leaves at generationComplete meets
/// 1011s under the default server (a walked-away turn holds its slot); the same loop reading
/// until turnComplete, or a server that frees the slot at the close, meets none.
#[test]
fn a_loop_leaving_at_generation_complete_meets_1011_and_one_reading_to_turn_complete_does_not() {
    let closes = |r: &flux_sim::sim::metrics::StrategyResult| r.sessions.unwrap().closes_1011;
    let case = run_edited("live-sessions", &[]);
    let by =
        |x: &flux_sim::sim::metrics::RunResult, n: &str| x.results.iter().find(|r| r.strategy == n).unwrap().clone();
    for r in &case.results {
        assert_eq!(
            closes(r),
            r.rate_limited_by.concurrency,
            "every 1011 is the session limit's"
        );
    }
    for n in ["round_robin", "exact_cooldown"] {
        assert!(closes(&by(&case, n)) >= 100, "{n}: {:?}", by(&case, n).sessions);
    }
    // Waiting 30 s never overlaps three; flux learns the hold from a few 1011s and runs faster.
    let (slow, flux) = (by(&case, "rotate_every_30s"), by(&case, "flux"));
    assert_eq!((closes(&slow), slow.completed), (0, 200));
    assert!(closes(&flux) <= 12 && flux.completed == 200, "{flux:?}");
    assert!(flux.throughput_per_min > 1.2 * slow.throughput_per_min, "{flux:?}");
    let to_turn_complete = run_edited(
        "live-sessions",
        &[(
            "close_after = \"generation_complete\"",
            "close_after = \"turn_complete\"",
        )],
    );
    let released = run_edited(
        "live-sessions",
        &[("early_close = \"holds_turn\"", "early_close = \"releases\"")],
    );
    for r in to_turn_complete.results.iter().chain(&released.results) {
        assert_eq!((closes(r), r.completed), (0, 200), "{}: {:?}", r.strategy, r.sessions);
    }
    assert!(
        by(&released, "flux").throughput_per_min > 8.0,
        "no hold to learn: nothing held back"
    );
    // Leaving early still finishes sooner: three sessions overlap, at the price of the 1011s
    // (exact_cooldown does all 200 both ways; round robin gives up on some when leaving early).
    let rr = |x: &flux_sim::sim::metrics::RunResult| by(x, "exact_cooldown").throughput_per_min;
    assert!(
        rr(&case) > 2.0 * rr(&to_turn_complete),
        "{} vs {}",
        rr(&case),
        rr(&to_turn_complete)
    );
}

/// `live-conversations.toml`: 15 conversations need 5 projects' slots (3 each); five keys of
/// one project give 3 whatever the rotation, unless the limit were per key; round robin over
/// the 5 projects still meets 1011s where a strategy that counts open sessions meets none.
#[test]
fn fifteen_conversations_need_five_projects_not_five_keys() {
    let by =
        |x: &flux_sim::sim::metrics::RunResult, n: &str| x.results.iter().find(|r| r.strategy == n).unwrap().clone();
    let five_projects = run_edited("live-conversations", &[]);
    let one_project = run_edited(
        "live-conversations",
        &[(
            "projects = 5\nkeys_per_project = 1",
            "projects = 1\nkeys_per_project = 5",
        )],
    );
    let per_key = run_edited(
        "live-conversations",
        &[
            (
                "projects = 5\nkeys_per_project = 1",
                "projects = 1\nkeys_per_project = 5",
            ),
            ("concurrent_scope = \"project\"", "concurrent_scope = \"key\""),
        ],
    );
    let ec5 = by(&five_projects, "exact_cooldown");
    assert_eq!((ec5.completed, ec5.rate_limited), (150, 0), "{ec5:?}");
    assert_eq!(ec5.wait_ms.p99, 0.0, "15 slots: nobody waits");
    let km5 = by(&five_projects, "key_mixer");
    assert!(
        km5.sessions.unwrap().closes_1011 > 50,
        "round robin ignores where the room is: {km5:?}"
    );
    let ec1 = by(&one_project, "exact_cooldown");
    assert_eq!((ec1.completed, ec1.rate_limited), (150, 0));
    assert!(
        ec1.throughput_per_min < ec5.throughput_per_min / 4.0,
        "3 slots, not 15: {ec1:?}"
    );
    let km1 = by(&one_project, "key_mixer");
    assert!(km1.failed > 100, "15 clients on 3 slots: {km1:?}");
    assert_eq!(
        by(&per_key, "exact_cooldown").throughput_per_min,
        ec5.throughput_per_min
    );
}

/// `live-call-centre.toml` (issue 26, item 1): the server keeps a slot 5 s after a session is
/// over. flux learns that hold counting the sessions it still has open, so it connects the
/// calls at exact_cooldown's pace or better with a far shorter p99 wait to connect (before:
/// it learned a hold of minutes, 0.78 of exact_cooldown's pace).
#[test]
fn flux_learns_a_short_live_release_delay_and_keeps_exact_cooldown_s_pace() {
    let s = load("live-call-centre");
    let out = run(&s, &s.strategies, s.seed, None, 1);
    let by = |n: &str| out.results.iter().find(|r| r.strategy == n).unwrap();
    let (flux, ec) = (by("flux"), by("exact_cooldown"));
    assert_eq!((flux.completed, ec.completed), (400, 400));
    keeps_pace(flux, ec);
    assert!(
        flux.wait_ms.p99 <= ec.wait_ms.p99,
        "p99 wait to connect {} against {}",
        flux.wait_ms.p99,
        ec.wait_ms.p99
    );
    // Its learning costs a few refused sessions, not exact_cooldown's thousand.
    assert!(flux.rate_limited * 10 < ec.rate_limited, "{flux:?}");
}

/// `fleet-late-ledger.toml` (issue 26, item 9): 8 pods share a ledger each sees 3 s late.
/// flux learns the pods and the delay from the ledger's entries and plans with its share of
/// the room the others may be taking unseen: not one quota 429, and at least 95% of the pace
/// one pod reaches alone (before: 674 quota 429s), and at least 0.97 of the clairvoyant
/// schedule's pace.
#[test]
fn flux_pods_on_a_late_ledger_meet_no_429_at_one_pod_s_pace() {
    let fleet = run_edited("fleet-late-ledger", &[]);
    let one = run_edited("fleet-late-ledger", &[("instances = 8", "instances = 1")]);
    let flux = |x: &flux_sim::sim::metrics::RunResult| x.results.iter().find(|r| r.strategy == "flux").unwrap().clone();
    let (f, o) = (flux(&fleet), flux(&one));
    assert_eq!((f.completed, f.rate_limited), (12_000, 0), "{f:?}");
    assert!(
        f.throughput_per_min >= 0.95 * o.throughput_per_min,
        "pace {} against one pod's {}",
        f.throughput_per_min,
        o.throughput_per_min
    );
    // Planning no more than one delay ahead (issue 26, item 9; two delays: 0.968).
    let pace = f.reference.as_ref().and_then(|r| r.makespan_share).unwrap();
    assert!(pace >= 0.97, "{pace} of the clairvoyant schedule's pace");
    let ec = fleet.results.iter().find(|r| r.strategy == "exact_cooldown").unwrap();
    assert!(ec.rate_limited > 1_000, "the delay matters: {ec:?}");
}

/// `fixed-windows-untold.toml`: flux told no limits, or wrong ones, trusts the scenario's window
/// kind no more than them; it starts with sliding windows and learns the calendar minutes from
/// the 429s that teach it the limits (issue 26, item 6), and then waits no longer than flux
/// and exact_cooldown given the true limits and kind, and less than round robin, which fails
/// some of its requests.
#[test]
fn flux_learns_calendar_minutes_it_was_not_told() {
    let s = load("fixed-windows-untold");
    let out = run(&s, &s.strategies, s.seed, None, 2);
    let by = |n: &str| out.results.iter().find(|r| r.strategy == n).unwrap();
    let (told, rr) = (by("flux"), by("round_robin"));
    for name in ["flux, told nothing", "flux, told 15 rpm"] {
        let f = by(name);
        assert_eq!((f.completed, f.failed), (told.completed, 0), "{f:?}");
        assert!(f.rate_limited <= 8, "{name}: only the 429s that teach it: {f:?}");
        assert!(
            f.wait_ms.p99 <= told.wait_ms.p99 + 1_000.0,
            "{name}: {:?} vs {:?}",
            f.wait_ms,
            told.wait_ms
        );
        assert!(
            f.wait_ms.p99 < rr.wait_ms.p99,
            "{name}: {:?} vs {:?}",
            f.wait_ms,
            rr.wait_ms
        );
    }
}

/// `fleet-own-ledgers.toml` (issue 26, item 9): pods that share keys but not a ledger learn of
/// each other only from 429s. flux reads a 429 its own count cannot explain as peers using
/// the budget and keeps a share of it: with 2, 4 and 8 pods, at most one quota 429 per ten
/// completed requests and under a tenth of exact_cooldown's, at 95% of one pod's pace at
/// least (before: 0.18, 0.62 and 1.30 quota 429s per request, 7,451 with 4 pods).
#[test]
fn flux_pods_with_ledgers_of_their_own_keep_a_share_of_each_budget() {
    let pick = |x: &flux_sim::sim::metrics::RunResult, name: &str| {
        x.results.iter().find(|r| r.strategy == name).unwrap().clone()
    };
    let one = pick(
        &run_edited("fleet-own-ledgers", &[("instances = 4", "instances = 1")]),
        "flux",
    );
    assert_eq!(one.rate_limited, 0);
    for n in [2, 4, 8] {
        let pods = format!("instances = {n}");
        let out = run_edited("fleet-own-ledgers", &[("instances = 4", &pods)]);
        let (f, ec) = (pick(&out, "flux"), pick(&out, "exact_cooldown"));
        assert_eq!(f.completed, 12_000, "{n} pods: {f:?}");
        assert!(
            f.rate_limited * 10 <= f.completed && f.rate_limited * 10 < ec.rate_limited,
            "{n} pods: flux {} quota 429s, exact_cooldown {}",
            f.rate_limited,
            ec.rate_limited
        );
        assert!(
            f.throughput_per_min >= 0.95 * one.throughput_per_min,
            "{n} pods: pace {} against one pod's {}",
            f.throughput_per_min,
            one.throughput_per_min
        );
    }
}

/// `tpd-heavy-tail.toml` and `pr-review-backlog.toml` (issue 26, item 7): closed batches under
/// tokens per day. flux's workers take the smallest waiting request while the day's tokens
/// cannot hold them all, so it completes what the clairvoyant schedule does (at least 0.97 of
/// it) and more than exact_cooldown, which takes the batch in order (before: 581 of 768, 0.757,
/// and 522 of 592, 0.882, as exact_cooldown), with no quota 429 and the batch's order kept
/// where the day is not binding (across-midnight, bound by requests per day, is unchanged).
#[test]
fn flux_takes_a_closed_batch_smallest_first_while_the_day_s_tokens_bind() {
    for name in ["tpd-heavy-tail", "pr-review-backlog"] {
        let s = load(name);
        let r = run(&s, &s.strategies, s.seed, None, 1);
        let by = |n: &str| result(&r, n).clone();
        let (flux, ec) = (by("flux"), by("exact_cooldown"));
        let share = flux.reference.as_ref().unwrap().completed_share;
        assert!(
            share >= 0.97,
            "{name}: {share} of the clairvoyant schedule's completions: {flux:?}"
        );
        assert!(flux.completed > ec.completed, "{name}: {flux:?} vs {ec:?}");
        assert_eq!(flux.rate_limited, 0, "{name}");
    }
}

/// `overridden-days.toml` (issue 26): told the free tier's 20 a day where an override left
/// 12, flux scales every project's told day by the factor the first per-day 429 shows, and
/// waits as exact_cooldown told the truth does (before: a wait p99 of 2.1 min against its
/// 53.9 s), while exact_cooldown trusting the same config waits minutes for projects already
/// spent.
#[test]
fn flux_told_days_too_high_scales_them_from_the_first_per_day_429() {
    let s = load("overridden-days");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let by = |n: &str| result(&r, n).clone();
    let (flux, truth, config) = (
        by("flux, told the config"),
        by("exact_cooldown"),
        by("exact_cooldown, told the config"),
    );
    assert_eq!((flux.completed, truth.completed, config.completed), (300, 300, 300));
    assert!(
        flux.wait_ms.p99 <= truth.wait_ms.p99 * 1.1,
        "{:?} vs {:?}",
        flux.wait_ms,
        truth.wait_ms
    );
    assert!(config.wait_ms.p99 > 3.0 * flux.wait_ms.p99, "{:?}", config.wait_ms);
    assert!(flux.throughput_per_min >= 0.95 * truth.throughput_per_min);
}

/// `live-speaking-drills.toml` (issue 26): told nothing, flux learns the session limit from
/// its first close 1011 as the sessions the server met when the refused one came, not those
/// open when the refusal came back a second later: drills ending together, a session of the
/// same project closed in between, and the limit learned was 2 where the server holds 3
/// (before: 7.58 sessions a minute against exact_cooldown's 11.23, a third of the slots idle,
/// wait p99 1.3 min). Now it keeps pace with exact_cooldown, which knows the limit.
#[test]
fn flux_told_nothing_learns_the_session_limit_the_server_met() {
    let s = load("live-speaking-drills");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let by = |n: &str| result(&r, n).clone();
    let (flux, ec) = (by("flux, told nothing"), by("exact_cooldown"));
    assert_eq!((flux.completed, ec.completed), (400, 400));
    keeps_pace(&flux, &ec);
    assert!(flux.wait_ms.p99 <= ec.wait_ms.p99 + 1_000.0, "{:?}", flux.wait_ms);
}

/// `cron-retired-id.toml` (issue 26): told nothing, flux learns the window kind from a retry
/// "at the next calendar minute" only where no send on the refused quota a minute before
/// explains it, the sends of a re-routed id drawing on it included. The job starts on the
/// minute: the old id's first 429 names the target's quota and a retry at 60 s, which the
/// target's send at 0 s explains. Judged by the old id's own sends (none at 0 s), flux read
/// calendar minutes and planned whole minutes where one slot freed (before: 19.47 a minute
/// against exact_cooldown's 25.98, 25 429s, a minute late). And the limit the 429 named is
/// known to both ids of the merged budget: the target's unit probed it as only told, and
/// its admission doubled it (10 429s with the window read right, 5 now).
#[test]
fn flux_told_nothing_reads_a_re_routed_ids_retry_against_the_shared_quota() {
    let s = load("cron-retired-id");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let by = |n: &str| result(&r, n).clone();
    let (flux, ec) = (by("flux, told nothing"), by("exact_cooldown"));
    assert_eq!((flux.completed, ec.completed), (80, 80));
    assert!(
        flux.throughput_per_min >= 0.95 * ec.throughput_per_min,
        "pace {} against {}",
        flux.throughput_per_min,
        ec.throughput_per_min
    );
    assert!(flux.rate_limited <= 6, "{} 429s", flux.rate_limited);
}

/// Issue 26 (`retired-ids-told-half`, found as `retired-two-ids` told -50% at seed 21): a
/// retry on the calendar minute that a send of another model on the project a minute before
/// explains is not read as calendar minutes, though no re-route is learned yet. The batch
/// starts on the minute; the first 429 is the target's, naming its own quota, retry at 60 s,
/// when the old id's send at 0 s leaves the window. Read as calendar minutes, flux sent at
/// 60 s what the sliding window had no room for and took the refusals for peers (before:
/// 44.37 a minute against exact_cooldown's 56.50, 25 429s).
#[test]
fn flux_told_half_keeps_sliding_windows_when_an_unlearned_re_route_may_explain_a_retry() {
    let s = load("retired-ids-told-half");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let by = |n: &str| result(&r, n).clone();
    let (flux, ec) = (by("flux, told half"), by("exact_cooldown"));
    assert_eq!((flux.completed, ec.completed), (180, 180));
    assert!(
        flux.throughput_per_min >= 0.99 * ec.throughput_per_min,
        "pace {} against {}",
        flux.throughput_per_min,
        ec.throughput_per_min
    );
    assert!(flux.rate_limited <= 12, "{} 429s", flux.rate_limited);
}

/// Issue 26 (`rerouted-told-nothing`, found as `rerouted-paid` told nothing at seed 22): a
/// server that does not count a refused request against RPM says so in its RetryInfo (the
/// retry it names is the replica's without the refusal), and flux stops counting its
/// refusals; one that counts them says that, and flux keeps them. Before, each 429 of the
/// learning held a slot the server had given back for a minute, and the rush's first burst
/// went a slot late: a wait p99 of 8.7 s against 5.5 s told the true limits.
#[test]
fn flux_told_nothing_gives_back_the_slot_of_a_refusal_the_server_did_not_count() {
    let s = load("rerouted-told-nothing");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let by = |n: &str| result(&r, n).clone();
    let (nothing, flux) = (by("flux, told nothing"), by("flux"));
    assert_eq!((nothing.completed, flux.completed), (500, 500));
    assert!(nothing.wait_ms.p99 <= 4_000.0, "wait p99 {} ms", nothing.wait_ms.p99);
    assert!(nothing.rate_limited <= 4, "{} 429s", nothing.rate_limited);
    // On a server that counts refusals, nothing is given back: no more 429s than before.
    let mut counting = s.clone();
    counting.server.ledger.count_rejected = true;
    let r = run(&counting, &counting.strategies, counting.seed, None, 1);
    let nothing = result(&r, "flux, told nothing");
    assert_eq!(nothing.completed, 500);
    assert!(nothing.rate_limited <= 4, "{} 429s", nothing.rate_limited);
}

/// Issue 26 (`cron-retired-told-half`, found as `cron-retired-id` told -50%): a 429 on the
/// target naming its own quota, which the old id's sends explain, teaches the re-route also
/// when the limits were told too low. A told limit rules a re-route out no lower than the one
/// the 429 named; the told ones did, and beyond them the two ids had always sent (that is
/// what the 429 meant), so flux met the old id's 429s project by project (before: 25.77 a minute against
/// exact_cooldown's 25.98, 8 429s).
#[test]
fn flux_told_half_learns_a_re_route_from_the_targets_429() {
    let s = load("cron-retired-told-half");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let by = |n: &str| result(&r, n).clone();
    let (flux, ec) = (by("flux, told half"), by("exact_cooldown"));
    assert_eq!((flux.completed, ec.completed), (80, 80));
    assert!(
        flux.throughput_per_min >= ec.throughput_per_min,
        "pace {} against {}",
        flux.throughput_per_min,
        ec.throughput_per_min
    );
    assert!(flux.rate_limited <= 7, "{} 429s", flux.rate_limited);
}

/// Issue 26 (`retired-two-ids-evening`, found as `retired-two-ids` at seed 2): calls planned
/// on the target's own budget before the old id's 429 merged it are planned again on the
/// merged one (before: two went at 60 s where one slot freed, 3 429s); and
/// (`retired-two-ids-saturday`, seed 33) after a 429 either old id may explain, a project the
/// target fills later is held until the retry too (before: a second such 429 0.7 s after the
/// first, 4 429s). Each keeps one 429 no client not told can be sure to avoid.
#[test]
fn flux_replans_on_a_merged_budget_and_holds_the_target_after_an_ambiguous_429() {
    for (name, most) in [("retired-two-ids-evening", 2), ("retired-two-ids-saturday", 3)] {
        let s = load(name);
        let r = run(&s, &s.strategies, s.seed, None, 1);
        let by = |n: &str| result(&r, n).clone();
        let (flux, ec) = (by("flux"), by("exact_cooldown"));
        assert_eq!((flux.completed, ec.completed), (180, 180), "{name}");
        assert!(
            flux.throughput_per_min >= ec.throughput_per_min,
            "{name}: pace {} against {}",
            flux.throughput_per_min,
            ec.throughput_per_min
        );
        assert!(flux.rate_limited <= most, "{name}: {} 429s", flux.rate_limited);
    }
}

/// Issue 26 (`retired-two-ids-counted`): on a server that counts the requests it refuses, a
/// client told half of each limit probes its told day; a per-minute 429 on such a probe is
/// explained by the minute alone (before: by the day the replica counted full, so no block
/// was set and the same probe went again at the same instant until the simulator stopped
/// the run as a livelock). The rotators that retry at RetryInfo without knowing the re-routes
/// meet a counted 429 for each: exact_cooldown well under half of flux's pace.
#[test]
fn flux_told_half_on_a_counting_server_does_not_retry_a_probe_in_place() {
    let s = load("retired-two-ids-counted");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let by = |n: &str| result(&r, n).clone();
    let (half, flux, ec) = (by("flux, told half"), by("flux"), by("exact_cooldown"));
    assert_eq!((half.completed, flux.completed, ec.completed), (180, 180, 180));
    assert!(half.attempts < 300, "{} attempts", half.attempts);
    assert!(
        2.0 * ec.throughput_per_min < flux.throughput_per_min && ec.throughput_per_min < half.throughput_per_min,
        "exact_cooldown {} a minute, flux {}, told half {}",
        ec.throughput_per_min,
        flux.throughput_per_min,
        half.throughput_per_min
    );
}

/// Issue 26 (`live-phone-translate-calendar`): Live calls on a server counting each project's
/// input tokens per calendar minute. flux told nothing counted the minutes its refused calls
/// met as sliding ones, found no token limit that explained them (a call admitted early in a
/// minute met more in the sliding 60 s than one refused late in it), guessed a session limit
/// and held the line at 8.2 calls a minute with 53 refused (1,479 of 1,887). Read both ways,
/// only calendar minutes explain the refusals: it plans them and keeps exact_cooldown's pace.
/// At seed 9 a session sent beyond the session limit guessed on the second project was
/// refused after the first project's evidence had the 1011s read as tokens, and was taken
/// for the session limit's: 9 sessions and a hold on top, 1,746 of 1,951.
#[test]
fn flux_told_nothing_learns_live_token_minutes_on_the_calendar() {
    let s = load("live-phone-translate-calendar");
    for (seed, done) in [(s.seed, 1_887), (9, 1_951)] {
        let r = run(&s, &s.strategies, seed, None, 1);
        let by = |n: &str| result(&r, n).clone();
        let (nothing, ec) = (by("flux, told nothing"), by("exact_cooldown"));
        assert_eq!(ec.completed, done, "seed {seed}");
        assert_eq!(nothing.completed, ec.completed, "seed {seed}");
        keeps_pace(&nothing, &ec);
        assert!(
            nothing.rate_limited <= 20,
            "seed {seed}: {} 1011s",
            nothing.rate_limited
        );
    }
}

/// Issue 26 (`reservation-calendar-minutes`): a planner told the server counts its quota by
/// calendar minute keeps its replica of the reservation sliding, as the server keeps it.
/// Counted by the minute, both planners sent four contracts at 3,180 s where the reservation's
/// sliding minute had room for two, and the spill met a 429 on the quota.
#[test]
fn planners_count_a_reservation_sliding_under_calendar_minutes() {
    let s = load("reservation-calendar-minutes");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    for name in ["exact_cooldown", "flux"] {
        let x = result(&r, name);
        assert_eq!((x.completed, x.rate_limited), (400, 0), "{name}");
    }
}

/// Session 27 (`invalid-keys-full-day`): two requests refused with 400 for revoked keys, retried
/// while their project's three slots were taken and the other project's day was spent, wait
/// for a slot to free today instead of sleeping until midnight. Before, both planners ended
/// the batch 13.1 hours late; gemini_flux, which sends one at a time, took 26 minutes.
#[test]
fn planners_wait_for_a_slot_today_rather_than_sleep_to_midnight() {
    let s = load("invalid-keys-full-day");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let gf = result(&r, "gemini_flux");
    for name in ["exact_cooldown", "flux"] {
        let x = result(&r, name);
        assert_eq!((x.completed, x.rate_limited), (50, 0), "{name}");
        assert!(x.makespan_s.unwrap() < 30.0 * 60.0, "{name}: {:?}", x.makespan_s);
        assert!(x.throughput_per_min >= 0.99 * gf.throughput_per_min, "{name}: {x:?}");
    }
    // Told nothing, flux planned every contract ahead on every key, the revoked ones among
    // them: a send planned before its key's 400 now goes on a live key at its planned
    // instant (it met its own 400, and its slot was lost: 36 minutes, 71.7% of the pace).
    let (_, claim) = flux_sim::sim::compare::compare(&s, s.seed, 1);
    assert!(claim.holds(), "{claim:?}");
}

/// Session 27 (`concurrency-slots-queue`): while four projects wait for concurrency slots, flux
/// told the limits ±50% or nothing (which never learns the fifth project's slots) does not
/// plan the queue an hour ahead on the fifth's slow minute. Before, the four idled between
/// bursts with nothing left to take their slots: 1,377–1,491 of the 3,135 tickets.
#[test]
fn a_slow_minute_does_not_take_the_queue_from_projects_waiting_for_slots() {
    let s = load("concurrency-slots-queue");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let ec = result(&r, "exact_cooldown");
    assert_eq!(ec.completed, 3_135);
    for name in ["flux", "flux, told nothing"] {
        let x = result(&r, name);
        assert_eq!(x.completed, ec.completed, "{name}");
        keeps_pace(x, ec);
        assert!(x.wait_ms.p99 <= 2.0 * ec.wait_ms.p99 + 1_000.0, "{name}: {x:?}");
    }
    // Every row `compare` judges (flux told ±50% too) meets the claim.
    let (_, claim) = flux_sim::sim::compare::compare(&s, s.seed, 1);
    assert!(claim.holds(), "{claim:?}");
}

/// Session 27 (`overloaded-few-slots`): a 503 is the model's, not the project's: flux backs the
/// request off alone (full jitter) and leaves the project's 15 slots to the others, as
/// exact_cooldown does. Before, it held the project for a second after each 503: 94.7% of
/// exact_cooldown's pace, p99 wait 12.5 s against 9.2 s.
#[test]
fn a_503_backs_off_the_request_not_the_project() {
    let s = load("overloaded-few-slots");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    let ec = result(&r, "exact_cooldown");
    let flux = result(&r, "flux");
    assert!(flux.other_errors > 0, "the model answers 503s: {flux:?}");
    assert_eq!((flux.completed, flux.rate_limited), (ec.completed, 0));
    keeps_pace(flux, ec);
    assert!(flux.wait_ms.p99 <= ec.wait_ms.p99 + 1_000.0, "{flux:?}");
}

/// Session 27 (`days-spent-before`): the first per-day 429 on each project whose day a daytime
/// app had partly spent is how any client learns it; `compare` no longer holds it against
/// flux (it judged flux with the true limits failing for 3 such 429s), and later ones still
/// count.
#[test]
fn the_first_429_on_a_day_spent_before_the_run_is_a_learning_one() {
    let s = load("days-spent-before");
    let (r, claim) = flux_sim::sim::compare::compare(&s, s.seed, 1);
    let flux = result(&r, "flux");
    assert_eq!((flux.completed, flux.rate_limited, flux.spent_before_429s), (600, 3, 3));
    let ec = result(&r, "exact_cooldown");
    assert!(ec.spent_before_429s == 3 && ec.rate_limited > 3, "{ec:?}");
    let v = claim.flux.iter().find(|v| v.name == "flux").unwrap();
    assert_eq!((v.quota_429s, v.spent_before_429s), (0, 3));
    assert!(claim.holds(), "{claim:?}");
}

/// Session 28 (`gateway-buckets`): on a server that meters with token buckets the planners keep
/// each bucket as the sends it took, so they send when the bucket has room, not a sliding
/// minute after a burst, and a 503 gives its room back exactly (a bucket kept as its level
/// could not, once drained, and met 429s). Before, both planned sliding windows: the same
/// 1,435 done, median wait 74.8 s and p99 4.0 min; now 48.3 s and 3.2 min, 0 429s.
#[test]
fn planners_plan_a_bucket_as_a_bucket() {
    let s = load("gateway-buckets");
    let r = run(&s, &s.strategies, s.seed, None, 1);
    for name in ["exact_cooldown", "flux"] {
        let x = result(&r, name);
        assert!(x.other_errors > 0, "the gateway passes 503s back: {x:?}");
        assert_eq!((x.completed, x.rate_limited), (1_435, 0), "{name}");
        assert!(x.wait_ms.p50 < 60_000.0 && x.wait_ms.p99 < 210_000.0, "{name}: {x:?}");
    }
    let (_, claim) = flux_sim::sim::compare::compare(&s, s.seed, 1);
    assert!(claim.holds(), "{claim:?}");
}

/// Session 28 (`legacy-project-told-half`): a unit awaiting a probe's outcome knows it by the
/// probe's grace, so the planner does not plan the queue far ahead on another unit meanwhile.
/// Before, told half its limits, flux planned 200 prompts on a legacy 1-RPM project while the
/// three others awaited their probes for a second: 1.12 a minute, p99 wait 2.9 h, where
/// exact_cooldown does 39.45 a minute.
#[test]
fn a_probe_out_does_not_send_the_queue_to_the_slowest_project() {
    let (half, ec) = keeps_up_with_exact_cooldown("legacy-project-told-half", "flux, limits -50%", 200);
    assert!(half.wait_ms.p99 <= ec.wait_ms.p99 + 1_000.0, "{half:?}");
}

/// `compare` on scenario `name`: its `row` and exact_cooldown's both complete `done`, the row
/// keeps exact_cooldown's pace, and flux's claim holds; the two rows, for more.
fn keeps_up_with_exact_cooldown(
    name: &str,
    row: &str,
    done: u64,
) -> (
    flux_sim::sim::metrics::StrategyResult,
    flux_sim::sim::metrics::StrategyResult,
) {
    let s = load(name);
    let (r, claim) = flux_sim::sim::compare::compare(&s, s.seed, 1);
    let by = |n: &str| result(&r, n).clone();
    let (flux, ec) = (by(row), by("exact_cooldown"));
    assert_eq!((flux.completed, ec.completed), (done, done), "{name}");
    keeps_pace(&flux, &ec);
    assert!(claim.holds(), "{name}: {claim:?}");
    (flux, ec)
}

/// Session 29 (`tpd-packing-midnight`): each project's tokens per day is a bin. A batch that
/// crossed midnight fitted the new day's 10 million tokens only if the 1.67 million document
/// found a project before the smaller ones part-spent all five; taken in the batch's order it
/// waited a second day (flux 0.10 a minute, exact_cooldown 0.38). flux now takes the largest
/// first while the day is tight.
#[test]
fn a_tight_day_is_packed_largest_first() {
    let (flux, _) = keeps_up_with_exact_cooldown("tpd-packing-midnight", "flux", 200);
    assert!(flux.makespan_s.unwrap() < 10.0 * 3600.0, "{flux:?}");
}

/// Session 29 (`tpd-told-half-legacy`): a unit awaiting its day's probe was indexed by its
/// believed day (spent), so no request reached it, and told half its limits flux planned the
/// rest of the batch on a 1-RPM legacy project for an hour (3.17 a minute against
/// exact_cooldown's 16.08). Indexed by the days it does not await, it is reached, and the
/// queue waits the second for the probe's outcome.
#[test]
fn a_unit_awaiting_its_days_probe_is_not_passed_over() {
    let (half, ec) = keeps_up_with_exact_cooldown("tpd-told-half-legacy", "flux, limits -50%", 200);
    assert!(half.wait_ms.p99 <= 2.0 * ec.wait_ms.p99 + 1_000.0, "{half:?}");
}

/// Session 30 (`contracts-few-slots`): with every project's two slots taken, the line's head
/// was told to come back a minute later, when a full project's window opened, and left the
/// line; the slots freed milliseconds later and the requests behind it took them, so it went
/// alone a minute late (exact_cooldown and flux 49.8 a minute, wait p99 57.9 s). It now keeps
/// its place and is asked again at an outcome or at that instant, whichever is first.
#[test]
fn the_lines_head_is_not_overtaken_while_it_waits_for_a_slot() {
    let s = load("contracts-few-slots");
    let r = run(&s, &s.strategies, s.seed, None, 2);
    for row in ["exact_cooldown", "flux"] {
        let x = result(&r, row);
        assert_eq!(x.completed, 50, "{row}");
        assert!(x.makespan_s.unwrap() < 15.0, "{row}: {x:?}");
        assert!(x.wait_ms.p99 < 10_000.0, "{row}: {x:?}");
        assert_eq!(x.rate_limited, 0, "{row}");
    }
}

/// Issue 26 (item 5), `scenarios/overloaded-backlog.toml`: a 503 is not charged, so its slot
/// is free again, but only at the instant it was sent, and under a queue planned a slot apart
/// the retry a moment later overfilled the minute of the plan a minute on. Plans never went
/// back in time, so each 503 cost its project a slot: the planners completed 28.51 a minute
/// (0.903 of the upper bound). The retry now goes where the minute has room by what was sent,
/// and each plan it goes before moves by as little as the minute needs, checked when due:
/// 31.46 a minute (0.996), still without a 429. Buckets keep such a send in their debt beyond
/// a minute: `gateway-buckets`' planners met eight 429s until every plan made before it was
/// checked.
#[test]
fn a_503s_slot_is_taken_back_under_a_queue_planned_ahead() {
    let s = load("overloaded-backlog");
    let r = run(&s, &s.strategies, s.seed, None, 2);
    for row in ["exact_cooldown", "flux"] {
        let x = result(&r, row);
        assert_eq!(x.completed, 600, "{row}");
        assert!(x.efficiency > 0.99, "{row}: {x:?}");
        assert_eq!(x.rate_limited, 0, "{row}");
    }
    let s = load("gateway-buckets");
    let r = run(&s, &s.strategies, s.seed, None, 2);
    for row in ["exact_cooldown", "flux"] {
        let x = result(&r, row);
        assert_eq!(x.rate_limited, 0, "{row}: {x:?}");
        assert!(x.wait_ms.p99 < 3.0 * 60_000.0, "{row}: {x:?}");
    }
}

/// A request refused while flux learns a limit keeps its place in line (session 32). Google
/// publishes no value for requests in flight, so a team tells flux the console's per-minute
/// limits and nothing about slots (`eval-slots-unpublished`): its first burst meets one 429 per
/// project, which names the slots. The refused request used to be offered again behind every
/// request that had waited meanwhile, and when it was a long answer the batch ended late
/// (0.787 of exact_cooldown's pace at this seed; 0.754–1.034 over seeds 1–20). Now it waits
/// where it would have waited had flux known the limit, so flux runs the truth's schedule,
/// the two 429s aside; `overloaded-few-slots` told +50% or nothing likewise (87.4% → 100%).
#[test]
fn a_request_refused_while_learning_a_limit_keeps_its_place() {
    runs_the_truths_schedule("eval-slots-unpublished", "flux-console", 19, 60, 2);
    let s = load("overloaded-few-slots");
    let r = run(&s, &contenders(&s), s.seed, None, 2);
    let row = |name: &str| result(&r, name);
    let truth = row("exact_cooldown").throughput_per_min;
    for told in ["flux, limits +50%", "flux, no limits"] {
        assert_eq!(row(told).throughput_per_min, truth, "{told}");
    }
}

/// Token buckets learned from 429s (issue 26, item 6; session 32). Behind a gateway that meters
/// each project with a token bucket, flux told an old plan's higher limit learned the true one
/// from its first 429 but kept planning sliding minutes (it trusts no window kind it was not
/// told), waiting for the whole minute where the bucket has room every 12 s
/// (`gateway-buckets-told-high`: 0.927 of exact_cooldown's pace at its seed, a wait p99 of
/// 110.2 s against 68.4 s). A retry that only a bucket of its sends explains now makes it plan
/// buckets, and each later 429 tells the bucket's debt: the truth's schedule after one 429 a
/// project. `compare`'s told rows likewise, and on `gateway-buckets` their wait p99 (3.3 min,
/// exact_cooldown 2.6) falls to 2.4 min.
#[test]
fn token_buckets_are_learned_from_a_429_retried_one_refill_away() {
    runs_the_truths_schedule("gateway-buckets-told-high", "flux-config", 4, 60, 3);
    let s = load("gateway-buckets");
    let r = run(&s, &contenders(&s), s.seed, None, 2);
    let row = |name: &str| result(&r, name);
    for told in ["flux, limits +50%", "flux, limits -50%", "flux, no limits"] {
        assert_eq!(row(told).completed, 1435, "{told}");
        assert!(
            row(told).wait_ms.p99 < 2.5 * 60_000.0,
            "{told}: {:?}",
            row(told).wait_ms
        );
    }
}

/// A queue deferred behind a probe planned minutes ahead waits in line (issue 26, session 33).
/// flux told a project's limit too low probes it one send at a time, planned where the minute
/// has room, minutes ahead; while a probe was out, every request the planner deferred was told
/// to come back alone once the probe was known admitted, and left the line: requests taken up
/// after it went first (`probe-ahead-line`: wait p99 3.0 h against exact_cooldown's 56 min,
/// 2.2–3.2 times over seeds 1–10). It now waits in the planner's line, behind the request that
/// comes back when the room opens, or, every slot planned, for the outcome that frees one:
/// the truth's waits. `compare`'s told rows likewise (2.9 h and 2.6 h before).
#[test]
fn a_request_deferred_behind_a_probe_waits_in_line() {
    let s = load("probe-ahead-line");
    for seed in [s.seed, 3] {
        let r = run(&s, &s.strategies, seed, None, 2);
        let (truth, told) = (result(&r, "exact_cooldown"), result(&r, "flux-config"));
        assert_eq!(told.completed, 3000, "seed {seed}");
        assert_eq!(told.throughput_per_min, truth.throughput_per_min, "seed {seed}");
        assert_eq!(told.wait_ms.p99, truth.wait_ms.p99, "seed {seed}");
    }
    let r = run(&s, &contenders(&s), s.seed, None, 2);
    for told in ["flux, limits +50%", "flux, limits -50%"] {
        assert_eq!(
            result(&r, told).wait_ms.p99,
            result(&r, "exact_cooldown").wait_ms.p99,
            "{told}"
        );
    }
}

/// A request the server calls unservable bounds what a project is offered (issue 26, session 33).
/// flux told a token limit too low probes it with the large contracts; a 429 that can never
/// succeed taught it nothing, so every larger contract was tried on each project and each try
/// held the project's minute, one a minute on the legacy 1-RPM project at the batch's end
/// (`unservable-sizes`: 0.23 of exact_cooldown's pace at its seed, 34 429s; 0.28 and 0.21 at
/// seeds 3 and 7). Now a project that refused a request is offered no larger one. And the
/// limit the refusal states is the project's from then on (session 38): only told it, flux
/// tried each request between the truth and its belief on each project in turn, 9 to 13 429s
/// a run, and at seed 1 the last of them went a minute after the batch (0.72 of the pace).
#[test]
fn a_project_that_called_a_request_unservable_is_offered_no_larger_one() {
    let s = load("unservable-sizes");
    for seed in [s.seed, 3, 7, 1] {
        let r = run(&s, &s.strategies, seed, None, 2);
        let (truth, told) = (result(&r, "exact_cooldown"), result(&r, "flux-config"));
        assert_eq!(told.completed, truth.completed, "seed {seed}");
        keeps_pace(told, truth);
        assert!(told.rate_limited <= 5, "seed {seed}: {} 429s", told.rate_limited);
    }
}

/// On `name`, at its seed and at `other_seed`, the strategy `told` (flux told something other
/// than the truth) completes all `requests` with `learning` 429s, one per project, and
/// otherwise runs exact_cooldown's schedule, told the truth: the same makespan and wait p99.
fn runs_the_truths_schedule(name: &str, told: &str, other_seed: u64, requests: u64, learning: u64) {
    let s = load(name);
    for seed in [s.seed, other_seed] {
        let r = run(&s, &s.strategies, seed, None, 2);
        let row = |name: &str| result(&r, name);
        let (truth, told) = (row("exact_cooldown"), row(told));
        assert_eq!(told.completed, requests, "{name} seed {seed}");
        assert_eq!(
            told.rate_limited, learning,
            "{name} seed {seed}: one learning 429 per project"
        );
        assert_eq!(told.makespan_s, truth.makespan_s, "{name} seed {seed}: {told:?}");
        assert_eq!(told.wait_ms.p99, truth.wait_ms.p99, "{name} seed {seed}");
    }
}

/// On a model answering 503 to one request in seven by chance, under no binding quota, flux
/// backed off from a request's first 503 (full jitter from 1 s): the pace of LiteLLM's router,
/// which retries at once, but a wait p99 of 0.7-2.1 s against none (`flaky-light-load` at
/// seeds 1-20; 748 ms at its seed). A request's first three attempts are now retried at once.
#[test]
fn a_chance_503_is_retried_at_once() {
    let s = load("flaky-light-load");
    for seed in [s.seed, 2, 3] {
        let r = run(&s, &s.strategies, seed, None, 2);
        let (flux, litellm) = (result(&r, "flux"), result(&r, "litellm_shuffle"));
        assert_eq!(flux.completed, 200, "seed {seed}");
        assert!(flux.other_errors > 0, "seed {seed}: the model answered 503s");
        assert!(
            flux.throughput_per_min >= litellm.throughput_per_min,
            "seed {seed}: {flux:?} against {litellm:?}"
        );
        assert_eq!(flux.wait_ms.p99, 0.0, "seed {seed}: {flux:?}");
    }
}

/// A closed batch half of whose prompts are over every project's TPM, on projects with
/// tokens per day, three of them with part of the day spent before the run: the prompts no
/// project can take counted as tokens the day owed, so the day looked short, flux took the
/// smallest first, and the two projects whose day ran out had carried small prompts only,
/// leaving the rest the long ones to pace through their minutes (95.3-99.4% of exact_cooldown's
/// pace at 15 of the seeds 1-20; `oversized-half-batch`, hunt-407). They leave no demand on the
/// day now: the batch goes in its order, as exact_cooldown's does.
#[test]
fn prompts_no_project_can_take_leave_the_batch_in_its_order() {
    let s = load("oversized-half-batch");
    for seed in [s.seed, 2, 3, 5] {
        let r = run(&s, &s.strategies, seed, None, 2);
        let (flux, truth) = (result(&r, "flux"), result(&r, "exact_cooldown"));
        assert_eq!(flux.completed, truth.completed, "seed {seed}");
        assert!(
            flux.unservable > 400,
            "seed {seed}: most prompts over the TPM: {flux:?}"
        );
        keeps_pace(flux, truth);
    }
}

/// Two projects' token buckets and no limit on requests a day, at 110% of what they refill:
/// every idle project's share of its day was 0 and the planners gave each request to the
/// first, so the second's bucket sat full and wasted its refill (flux 633 done, wait p99
/// 20.6 s, where round robin did 645 with none waiting; `buckets-left-full`, hunt-820). On
/// buckets without a day limit the planners now send on the project sent on least today.
#[test]
fn a_bucket_left_full_wastes_no_refill() {
    let s = load("buckets-left-full");
    for seed in [s.seed, 1, 2] {
        let r = run(&s, &s.strategies, seed, None, 2);
        let (flux, rr) = (result(&r, "flux"), result(&r, "round_robin"));
        let best = r
            .results
            .iter()
            .filter(|x| x.strategy != "flux")
            .map(|x| x.completed)
            .max()
            .unwrap();
        assert!(
            100 * flux.completed >= 99 * best,
            "seed {seed}: {} done against {best}",
            flux.completed
        );
        assert!(
            flux.wait_ms.p99 <= 2.0 * rr.wait_ms.p99 + 1000.0,
            "seed {seed}: wait p99 {} ms against round robin's {} ms",
            flux.wait_ms.p99,
            rr.wait_ms.p99
        );
    }
}

/// A closed batch over days on projects with requests and tokens per day, where the day's
/// count runs out before its tokens: flux took the smallest first whenever the day's tokens
/// could not hold the whole backlog, so the first night spent its count on short prompts
/// (4.8 of its 18 million tokens) and the largest were left for a day whose tokens no longer
/// held its count (`two-limits-a-day`: 68.8% of exact_cooldown's pace, 76 h against
/// 52 h; hunt-1330). It now keeps the batch's order while the day's tokens hold its count of
/// the waiting prompts' mean size.
#[test]
fn a_day_whose_count_binds_first_keeps_the_batch_order() {
    completes_as_exact_cooldown("two-limits-a-day", [1, 2]);
}

/// A closed batch started at 23:55 on projects with a small day of tokens: for the minutes
/// before midnight the requests a minute bind, and flux took the smallest 100 (0.23 of the
/// 2.5 million tokens that then expired; 0.57 in the batch's order), so the batch spilled
/// into a fourth day (`minutes-before-midnight`: 51.6% of exact_cooldown's pace; hunt-2398).
/// The day's count now takes the RPM over the minutes left.
#[test]
fn the_minutes_before_midnight_go_in_the_batch_order() {
    completes_as_exact_cooldown("minutes-before-midnight", [1, 2]);
}

/// Prompts all larger than the tokens a minute flux was told (a config from an older model's
/// tier): flux probes the told minute with one send, and while that probe was out every other
/// request was given up as unservable, since no project was offered a request the believed
/// minute could not hold (`old-config-large-prompts` told the old config: 3 of 90 done;
/// hunt-3054). A project awaiting its minute's probe is now offered them, and they wait for
/// its outcome.
#[test]
fn requests_larger_than_a_told_minute_wait_for_its_probe() {
    told_keeps_up(
        "old-config-large-prompts",
        "flux-old-config",
        [1, 2],
        (90, 0.99),
        |seed, told, _| {
            assert_eq!(told.unservable, 0, "seed {seed}");
            assert!(told.rate_limited <= 3, "seed {seed}: {} 429s", told.rate_limited);
        },
    );
}

/// A gateway's buckets that count refusals, where a 503's retry a nanosecond late left the
/// 1-RPM project's next token a minute and a nanosecond away: each 429 named 60.000000001 s,
/// flux took a per-minute delay over a minute for a lie and retried a minute on, a nanosecond
/// early, refused and counted again (`gateway-refill-late` told the old plan: 468 429s at its
/// seed, 473 at seed 1; hunt-2979). A delay up to two minutes is now believed. Then each 429
/// on the legacy project left its queue, planned a minute apart, to go round once with nothing
/// sent, and flux read the first 429 (120 s, on a minute start) as calendar minutes, so a
/// 503's retry a nanosecond late left its next send a nanosecond early (0.56 of
/// exact_cooldown's pace at its seed, 0.60 at seed 1): now at least 0.95.
#[test]
fn a_bucket_s_delay_just_over_a_minute_is_believed() {
    told_keeps_up(
        "gateway-refill-late",
        "flux-old-plan",
        [1, 2],
        (50, 0.95),
        |seed, told, _| {
            assert!(told.rate_limited <= 3, "seed {seed}: {} 429s", told.rate_limited);
        },
    );
}

/// One project planned ten minutes ahead, told nothing: the 429 that taught its tokens a
/// minute left every earlier plan to be decided again when due, and each went after the
/// project's last plan, so the queue went round once with nothing sent (`papers-untold-queue`
/// at its seed: 15.1 minutes against exact_cooldown's 10.1, 0.67 of its pace; 0.59 at seed
/// 19; hunt-1128). A plan decided again goes where the windows have room before the later ones.
#[test]
fn plans_made_before_a_429_keep_their_place_in_the_queue() {
    told_keeps_up(
        "papers-untold-queue",
        "flux-untold",
        [19, 1],
        (50, 0.9),
        |seed, told, _| {
            assert!(told.rate_limited <= 3, "seed {seed}: {} 429s", told.rate_limited);
        },
    );
}

/// Four projects told half their day: when three reached it together, their day probes were
/// planned a minute ahead, and the requests decided in that minute found every day believed
/// spent and waited for midnight (`days-told-half-batch` told the old days: 0.108 of
/// exact_cooldown's pace at its seed and at seed 3; hunt-2687). They are asked again when a
/// probe's admission is known.
#[test]
fn requests_put_off_while_a_day_probe_is_out_wait_for_it() {
    told_keeps_up(
        "days-told-half-batch",
        "flux-old-days",
        [3, 1],
        (3_000, 0.99),
        |_, _, _| {},
    );
}

/// On `name`, at its seed and at `others`, flux completes what exact_cooldown does, at its pace.
fn completes_as_exact_cooldown(name: &str, others: [u64; 2]) {
    let s = load(name);
    for seed in [s.seed, others[0], others[1]] {
        let r = run(&s, &s.strategies, seed, None, 2);
        let (flux, truth) = (result(&r, "flux"), result(&r, "exact_cooldown"));
        assert_eq!(flux.completed, truth.completed, "{name} seed {seed}");
        keeps_pace(flux, truth);
    }
}

/// On `name`, at its seed and at `others`, the strategy `told` (flux told something other than
/// the truth) completes all `requests` at `pace` of exact_cooldown's at least; `check` asserts
/// the rest of each seed's `(seed, told, exact_cooldown)`.
fn told_keeps_up(
    name: &str,
    told: &str,
    others: [u64; 2],
    (requests, pace): (u64, f64),
    check: impl Fn(u64, &flux_sim::sim::metrics::StrategyResult, &flux_sim::sim::metrics::StrategyResult),
) {
    let s = load(name);
    for seed in [s.seed, others[0], others[1]] {
        let r = run(&s, &s.strategies, seed, None, 2);
        let (truth, told) = (result(&r, "exact_cooldown"), result(&r, told));
        assert_eq!(told.completed, requests, "{name} seed {seed}");
        assert!(
            told.throughput_per_min >= pace * truth.throughput_per_min,
            "{name} seed {seed}: {told:?} against {truth:?}"
        );
        check(seed, told, truth);
    }
}

/// A gateway's token buckets of 2 requests a minute that count the requests they refuse: the
/// first 429 names the instant a sliding window that does not count refusals names too, and
/// flux believed that for good; every minute after, a send its windows had room for met the
/// bucket still owing the refusal (`gateway-counts-refusals` told nothing: 296 429s, one per
/// contract, at half exact_cooldown's pace; hunt-221). Now the counting bucket is put on
/// trial at that 429 and names the next one's retry exactly: flux plans counting buckets.
#[test]
fn a_bucket_that_counts_refusals_is_told_apart_from_a_sliding_window() {
    told_keeps_up(
        "gateway-counts-refusals",
        "flux, told nothing",
        [3, 8],
        (300, 0.97),
        |seed, told, _| {
            assert!(told.rate_limited <= 4, "seed {seed}: {} 429s", told.rate_limited);
        },
    );
}

/// A burst on token buckets that count refusals: the first 429 names a retry more than one
/// refill away (the bucket took a token for the refusal too), which flux read as no bucket's,
/// believing sliding minutes and holding every project until the burst's minute had passed
/// (`gateway-burst-counted` told its config's old limits: wait p99 52.6 s against
/// exact_cooldown's 11.9 s, 0.81-0.94 of its pace at these seeds; hunt-290). Unless refusals
/// are known not to count, a bucket may name one refill further for RPM. Its five 429s
/// learning the buckets cost a token each (refusals count): since exact_cooldown spreads its
/// sends over buckets without a day limit (session 42, +2.5% pace at seeds 1-20), flux told
/// anything keeps 0.941-0.971 of its pace (0.966-1.0 before), the same pace as it had.
#[test]
fn a_bucket_that_counts_refusals_may_name_a_refill_further() {
    told_keeps_up(
        "gateway-burst-counted",
        "flux-config",
        [2, 5],
        (200, 0.94),
        |seed, told, truth| {
            assert!(
                told.wait_ms.p99 <= 1.25 * truth.wait_ms.p99,
                "seed {seed}: wait p99 {} against {}",
                told.wait_ms.p99,
                truth.wait_ms.p99
            );
        },
    );
}

/// A 429 that comes back a round trip after its send (`server.error_latency`, 150 ms): the
/// server decided between the send and the coming back. flux compared the instant it read at
/// the coming back with its replica's to the millisecond, and told nothing it completed 31.7%
/// of exact_cooldown's requests on `errors-late` (34.7% and 29.6% at seeds 1 and 6, where a
/// bucket's trial blind to the sends of the round trip also took the sliding window for a
/// counting bucket), with a wait p99 of half an hour.
#[test]
fn a_429_read_a_round_trip_late_still_teaches_the_limits() {
    let text = std::fs::read_to_string("scenarios/errors-late.toml").unwrap()
        + "\n[[strategies]]\nname = \"flux, told nothing\"\nkind = \"flux\"\nknown_limits = { \"gemini-2.5-flash\" = {} }\n";
    let s = Scenario::parse(&text, Path::new("errors-late.toml")).unwrap();
    for seed in [s.seed, 1, 6] {
        let r = run(&s, &s.strategies, seed, None, 2);
        keeps_up(&r, "flux, told nothing", 1.25, seed);
    }
}

/// Session 38 (`invalid-keys-told-half`): flux told half its limits probes one at a time. A
/// probe of the one told slot was planned two minutes ahead, and a request asked about while
/// the project's plans reached past that probe's outcome was judged by the day told half,
/// which the plans had spent: flux planned the last 26 contracts for the next day and the day
/// after (0.02 a minute, wait p99 37 hours against exact_cooldown's 26 minutes). It now waits
/// for the outcome, and the day's probe then finds room today.
#[test]
fn a_request_waits_for_the_probe_out_before_its_day_is_judged_spent() {
    let s = load("invalid-keys-told-half");
    let r = run(&s, &s.strategies, s.seed, None, 2);
    let told = keeps_up(&r, "flux, told the old export", 1.0, s.seed);
    assert_eq!(told.completed, 50);
    assert!(told.makespan_s.unwrap() < 30.0 * 60.0, "{told:?}");
}

/// A project's concurrency cap learned nine minutes into a backlog planned ahead at the RPM's
/// pace: the 429 withdrew the plans, but each held its slot until it came due and was then
/// planned again after the latest one (`slots-learned-late` told the console's limits: 0.85,
/// 0.89 and 0.92 of exact_cooldown's completions at these seeds, 4.5 minutes without a send;
/// hunt-296). Now the withdrawn plans give their slots and their windows' room back at once.
#[test]
fn a_concurrency_limit_learned_late_keeps_the_backlog_going() {
    let s = load("slots-learned-late");
    for seed in [s.seed, 18, 19] {
        let r = run(&s, &s.strategies, seed, None, 2);
        let told = keeps_up(&r, "flux, told the console", 1.35, seed);
        assert!(told.rate_limited <= 2, "seed {seed}: {} 429s", told.rate_limited);
    }
}
