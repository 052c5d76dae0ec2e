//! Peer models' settings in scenarios (issue 30 item 1): LiteLLM's Router settings
//! (`cooldown_time`, `allowed_fails`, `num_retries`, `retry_after`) with the tool's defaults,
//! named errors for a setting given to a kind that does not take it, and their effect on a run.

use std::path::Path;

use flux_sim::core::time::SECOND;
use flux_sim::scenario::Scenario;
use flux_sim::sim::run::run;
use flux_sim::strategy::retry::{Jitter, RetryPolicy};

const BASE: &str = "name = \"s\"\n[models.m]\nrpm = 2\n[topology]\nprojects = [\"a\", \"b\"]\n\
[workload]\nkind = \"closed\"\nrequests = 12\nworkers = 12\ninput_tokens = { dist = \"fixed\", value = 10 }\noutput_tokens = { dist = \"fixed\", value = 10 }\n";

fn parse(strategies: &str) -> Result<Scenario, String> {
    Scenario::parse(&format!("{BASE}{strategies}"), Path::new("s.toml")).map_err(|e| e.to_string())
}

#[test]
fn litellm_router_settings_have_the_tools_defaults() {
    let s = parse("[[strategies]]\nkind = \"litellm_least_busy\"\n").unwrap();
    let p = s.strategies[0].kind.params;
    assert_eq!(
        (p.cooldown, p.allowed_fails, p.num_retries, p.retry_after),
        (5 * SECOND, None, 2, 0)
    );
    assert_eq!(s.strategies[0].retry, RetryPolicy::Immediate { max_attempts: 3 });
    let s = parse(
        "[[strategies]]\nkind = \"litellm_shuffle\"\ncooldown_time = \"60s\"\nallowed_fails = 1\nnum_retries = 4\nretry_after = \"2s\"\n",
    )
    .unwrap();
    let p = s.strategies[0].kind.params;
    assert_eq!(
        (p.cooldown, p.allowed_fails, p.num_retries, p.retry_after),
        (60 * SECOND, Some(1), 4, 2 * SECOND)
    );
    assert_eq!(
        s.strategies[0].retry,
        RetryPolicy::Backoff {
            base: 2 * SECOND,
            cap: 2 * SECOND,
            jitter: Jitter::None,
            max_attempts: 5
        }
    );
}

#[test]
fn litellm_settings_are_checked_and_named() {
    let err = parse("[[strategies]]\nkind = \"round_robin\"\ncooldown_time = \"5s\"\n").unwrap_err();
    assert!(
        err.contains("strategies[0].cooldown_time: only for kind = \"litellm_shuffle\", \"litellm_least_busy\" or \"litellm_usage\""),
        "{err}"
    );
    let err = parse("[[strategies]]\nkind = \"litellm_usage\"\ncooldown_time = \"0s\"\n").unwrap_err();
    assert!(err.contains("strategies[0].cooldown_time"), "{err}");
    let err = parse("[[strategies]]\nkind = \"litellm_usage\"\nnum_retries = 3\nretry = { policy = \"none\" }\n")
        .unwrap_err();
    assert!(
        err.contains("strategies[0].retry: num_retries and retry_after"),
        "{err}"
    );
    let err = parse("[[strategies]]\nkind = \"litellm_usage\"\nallowed_fails = \"3\"\n").unwrap_err();
    assert!(err.contains("allowed_fails"), "{err}");
}

#[test]
fn a_longer_cooldown_time_keeps_a_429ing_key_out_longer() {
    // Two keys of rpm 2 and 6 requests a minute: 429s cool keys; with 60 s instead of 5 s the
    // Router finds every deployment cooling more often and fails more requests at once.
    let open = |strategies: &str| {
        let text = BASE
            .replace("kind = \"closed\"", "kind = \"open\"\nrate = 6\nduration = \"5m\"")
            .replace("requests = 12\nworkers = 12\n", "");
        Scenario::parse(&format!("{text}{strategies}"), Path::new("s.toml")).unwrap()
    };
    let five = open("[[strategies]]\nkind = \"litellm_least_busy\"\n");
    let sixty = open("[[strategies]]\nkind = \"litellm_least_busy\"\ncooldown_time = \"60s\"\n");
    let a = &run(&five, &five.strategies, five.seed, None, 1).results[0];
    let b = &run(&sixty, &sixty.strategies, sixty.seed, None, 1).results[0];
    assert_eq!(a.requests, b.requests);
    assert!(a.rate_limited > 0, "{a:?}");
    assert!(b.failed > a.failed, "{a:?}\n{b:?}");
}

fn one_run(text: &str) -> flux_sim::sim::metrics::StrategyResult {
    let s = Scenario::parse(text, Path::new("s.toml")).unwrap();
    run(&s, &s.strategies, s.seed, None, 1).results.remove(0)
}

/// Issue 30: gemini-flux checks every key with a free countTokens at start-up, so an invalid
/// key never gets a generate request (before: one 400 per invalid key).
#[test]
fn gemini_flux_never_sends_to_a_key_its_start_up_check_rejected() {
    let text = "name = \"s\"\n[models.\"gemini-2.5-flash\"]\nrpm = 100\n[topology]\nprojects = [\"a\", \"b\"]\n\
[topology.project.\"a\"]\nkeys = 0\ninvalid_keys = 2\n\
[workload]\nkind = \"closed\"\nrequests = 20\nworkers = 4\ninput_tokens = { dist = \"fixed\", value = 10 }\noutput_tokens = { dist = \"fixed\", value = 10 }\n\
[[strategies]]\nkind = \"gemini_flux\"\n";
    let r = one_run(text);
    assert_eq!((r.completed, r.other_errors, r.attempts), (20, 0, 20), "{r:?}");
}

/// Issue 30: gemini-flux walks its own chain — pro before flash — whatever model the
/// request names (before: the request's flash first).
#[test]
fn gemini_flux_spends_pro_before_the_flash_the_requests_name() {
    let text = "name = \"s\"\n[models.\"gemini-2.5-flash\"]\nrpd = 5\n[models.\"gemini-2.5-pro\"]\nrpd = 3\n\
[topology]\nprojects = 1\n\
[workload]\nkind = \"closed\"\nrequests = 10\nworkers = 1\nmodel = \"gemini-2.5-flash\"\ninput_tokens = { dist = \"fixed\", value = 10 }\noutput_tokens = { dist = \"fixed\", value = 10 }\n\
[[strategies]]\nkind = \"gemini_flux\"\nfallback = [\"gemini-2.5-pro\"]\n";
    let s = Scenario::parse(text, Path::new("s.toml")).unwrap();
    let pro = s.models.iter().position(|m| m.name == "gemini-2.5-pro").unwrap();
    let mut served = Vec::new();
    let mut sink = |_: &str, a: &flux_sim::sim::engine::AttemptRecord| {
        if a.status == 200 {
            served.push(a.model == pro);
        }
    };
    run(&s, &s.strategies, s.seed, Some(&mut sink), 1);
    assert_eq!(served, [true, true, true, false, false, false, false, false]);
}

/// Issue 33 item 7: a tool that reads only the status code retries an unservable 429 as its
/// policy retries any 429: round robin with the SDK's 5 attempts (before: 1 attempt), while
/// exact_cooldown (which reads QuotaFailure) never sends it.
#[test]
fn peers_retry_an_unservable_429_and_the_planner_does_not() {
    let text = |kind: &str| {
        format!(
            "name = \"s\"\n[models.m]\ntpm = 50\n[topology]\nprojects = 2\n\
[workload]\nkind = \"closed\"\nrequests = 1\nworkers = 1\ninput_tokens = {{ dist = \"fixed\", value = 100 }}\noutput_tokens = {{ dist = \"fixed\", value = 10 }}\n\
[[strategies]]\nkind = \"{kind}\"\n"
        )
    };
    let rr = one_run(&text("round_robin"));
    assert_eq!((rr.attempts, rr.rate_limited, rr.unservable), (5, 5, 1), "{rr:?}");
    let ec = one_run(&text("exact_cooldown"));
    assert_eq!((ec.attempts, ec.unservable), (0, 1), "{ec:?}");
    // LiteLLM retries it on the other key (num_retries 2); each 429 cools its deployment, so
    // the third attempt finds none: "No deployments available", a failure.
    let ll = one_run(&text("litellm_least_busy"));
    assert_eq!((ll.attempts, ll.rate_limited, ll.failed), (2, 2, 1), "{ll:?}");
}

/// Issue 30 item 4: a tool that cannot open a Live session is refused on a Live workload, by
/// `run --strategy` (exit 2, naming the kinds that can) and in a scenario's `[[strategies]]`;
/// a Live-only client is refused on REST requests. Before, `run scenarios/live-sessions.toml
/// --strategy gemini_flux` printed a row (3 of 200 "done") for a tool that cannot connect.
#[test]
fn a_tool_is_run_only_on_the_workloads_it_can_send() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let out = std::process::Command::new(assert_cmd::cargo::cargo_bin("flux-sim"))
        .args([
            "run",
            root.join("scenarios/live-sessions.toml").to_str().unwrap(),
            "--strategy",
            "gemini_flux",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(out.stdout.is_empty());
    assert!(
        stderr.contains("--strategy: \"gemini_flux\" cannot open a Live session")
            && stderr.contains("\"live_reconnect\""),
        "{stderr}"
    );
    let live = "name = \"l\"\n[models.m]\nlive = true\nconcurrent = 3\n[topology]\nprojects = 1\n\
                [workload]\nkind = \"sessions\"\nclients = 2\nsessions = 4\ninput_tokens = { dist = \"fixed\", value = 10 }\noutput_tokens = { dist = \"fixed\", value = 10 }\n";
    for kind in ["token_bucket", "gemini_balance", "gemini_flux"] {
        let e = Scenario::parse(
            &format!("{live}[[strategies]]\nkind = \"{kind}\"\n"),
            Path::new("l.toml"),
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("strategies[0].kind") && e.to_string().contains("cannot open a Live session"),
            "{e}"
        );
    }
    for kind in ["live_reconnect", "live_mixer"] {
        let e = parse(&format!("[[strategies]]\nkind = \"{kind}\"\n")).unwrap_err();
        assert!(
            e.contains("strategies[0].kind") && e.contains("cannot send REST requests"),
            "{e}"
        );
        assert!(Scenario::parse(
            &format!("{live}[[strategies]]\nkind = \"{kind}\"\n"),
            Path::new("l.toml")
        )
        .is_ok());
    }
}

/// Issue 30 item 4, on `scenarios/live-reconnect.toml`: the SDK's reconnect loop stays on its
/// one key and never drops a conversation (so it waits); the key mixer in the same loop moves
/// to the next key at every connect, over all 6 keys; the mixer with google-genai's HTTP retry
/// numbers (5 attempts) drops conversations.
#[test]
fn the_live_loops_keep_their_keys_and_their_conversations() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let s = Scenario::load(&root.join("scenarios/live-reconnect.toml")).unwrap();
    let mut keys: std::collections::BTreeMap<String, std::collections::BTreeSet<usize>> = Default::default();
    let mut sink = |name: &str, a: &flux_sim::sim::engine::AttemptRecord| {
        keys.entry(name.to_string()).or_default().insert(a.key);
    };
    let r = run(&s, &s.strategies, s.seed, Some(&mut sink), 1);
    let row = |n: &str| r.results.iter().find(|x| x.strategy == n).unwrap();
    let (one, mix, sdk) = (row("live_reconnect"), row("live_mixer"), row("mixer_sdk_retry"));
    assert_eq!((one.completed, one.failed), (120, 0), "{one:?}");
    assert_eq!((mix.completed, mix.failed), (120, 0), "{mix:?}");
    assert!(sdk.failed > 0, "{sdk:?}");
    assert_eq!(keys["live_reconnect"].len(), 1);
    assert_eq!(keys["live_mixer"].len(), 6);
    // One key's 3 slots for 15 callers: many more refusals and a much longer batch.
    assert!(one.rate_limited > 5 * mix.rate_limited, "{one:?}\n{mix:?}");
    assert!(one.makespan_s.unwrap() > 3.0 * mix.makespan_s.unwrap());
}
