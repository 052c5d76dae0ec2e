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
