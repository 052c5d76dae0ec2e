//! The command line, end to end: the dubbing comparison, determinism, traces, and a clear
//! one-line error with exit code 2 for every kind of bad input.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

fn bin() -> Command {
    Command::cargo_bin("flux-sim").unwrap()
}

fn scenario(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

fn run_json(args: &[&str]) -> (String, Value) {
    let out = bin().arg("run").args(args).args(["--format", "json"]).output().unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let v: Value = serde_json::from_str(&text).unwrap();
    (text, v)
}

fn row<'a>(v: &'a Value, strategy: &str) -> &'a Value {
    v["results"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["strategy"] == strategy)
        .unwrap()
}

fn u(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

#[test]
fn dubbing_exact_cooldown_has_no_429s_and_round_robin_has_some() {
    let path = scenario("dubbing.toml");
    let (_, v) = run_json(&[path.to_str().unwrap()]);
    assert_eq!(v["scenario"], "dubbing");
    let results = v["results"].as_array().unwrap();
    assert_eq!(results.len(), 3);
    for r in results {
        assert_eq!(
            u(r, "requests"),
            u(r, "completed") + u(r, "failed") + u(r, "unservable") + u(r, "pending"),
            "{r}"
        );
        assert!(
            u(r, "attempts") >= u(r, "completed") + u(r, "rate_limited") + u(r, "other_errors"),
            "{r}"
        );
        let by = &r["rate_limited_by"];
        for d in ["rpm", "tpm", "rpd", "tpd", "concurrency", "capacity", "spend"] {
            assert!(by[d].is_u64(), "{d} in {r}");
        }
        for k in ["wait_ms", "latency_ms"] {
            for p in ["p50", "p90", "p99", "max"] {
                assert!(r[k][p].is_f64(), "{k}.{p} in {r}");
            }
        }
    }
    let ec = row(&v, "exact_cooldown");
    assert_eq!(u(ec, "rate_limited"), 0);
    assert_eq!(u(ec, "completed"), 1800);
    assert!(ec["efficiency"].as_f64().unwrap() >= 0.9, "{ec}");
    assert!(ec["efficiency"].as_f64().unwrap() <= 1.0, "{ec}");
    assert!(u(row(&v, "round_robin"), "rate_limited") > 0);
}

#[test]
fn dubbing_criteria_hold_for_other_seeds_too() {
    let path = scenario("dubbing.toml");
    for seed in ["1", "2", "3", "4", "5"] {
        let (_, v) = run_json(&[
            path.to_str().unwrap(),
            "--seed",
            seed,
            "--strategy",
            "exact_cooldown",
            "--strategy",
            "round_robin",
        ]);
        let ec = row(&v, "exact_cooldown");
        assert_eq!(u(ec, "rate_limited"), 0, "seed {seed}: {ec}");
        assert!(ec["efficiency"].as_f64().unwrap() >= 0.9, "seed {seed}: {ec}");
        assert!(u(row(&v, "round_robin"), "rate_limited") > 0, "seed {seed}");
    }
}

#[test]
fn table_is_the_default_and_lists_every_strategy() {
    bin()
        .arg("run")
        .arg(scenario("dubbing.toml"))
        .assert()
        .success()
        .stdout(
            predicate::str::contains("round_robin")
                .and(predicate::str::contains("fixed_interval"))
                .and(predicate::str::contains("exact_cooldown"))
                .and(predicate::str::contains("bound/min")),
        );
}

#[test]
fn same_seed_is_byte_identical_and_another_seed_differs() {
    let p = scenario("shared-project.toml");
    let p = p.to_str().unwrap();
    let (a, _) = run_json(&[p, "--seed", "11"]);
    let (b, _) = run_json(&[p, "--seed", "11"]);
    let (c, _) = run_json(&[p, "--seed", "12"]);
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn threads_do_not_change_results() {
    let p = scenario("shared-project.toml");
    let p = p.to_str().unwrap();
    let (one, _) = run_json(&[p, "--threads", "1"]);
    let (four, _) = run_json(&[p, "--threads", "4"]);
    assert_eq!(one, four);
    bin()
        .args(["run", p, "--threads", "0"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--threads"));
}

#[test]
fn strategy_flag_selects_and_builtins_are_available() {
    let p = scenario("shared-project.toml");
    let (_, v) = run_json(&[
        p.to_str().unwrap(),
        "--strategy",
        "gemini-flux",
        "--strategy",
        "round_robin",
    ]);
    let names: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["gemini-flux", "round_robin"]);
    // A strategy's numbers do not depend on which others run with it.
    let (_, alone) = run_json(&[p.to_str().unwrap(), "--strategy", "round_robin"]);
    assert_eq!(alone["results"][0], v["results"][1]);
}

#[test]
fn trace_writes_one_line_per_attempt_and_never_overwrites_silently() {
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("trace.jsonl");
    let p = scenario("shared-project.toml");
    let out = bin()
        .arg("run")
        .arg(&p)
        .args(["--format", "json", "--trace"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success());
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let attempts: u64 = v["results"].as_array().unwrap().iter().map(|r| u(r, "attempts")).sum();
    let text = std::fs::read_to_string(&trace).unwrap();
    let lines: Vec<Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Every attempt that got an answer before the end is traced.
    let pending_in_flight: u64 = v["results"].as_array().unwrap().iter().map(|r| u(r, "in_flight")).sum();
    assert_eq!(lines.len() as u64, attempts - pending_in_flight);
    let l = &lines[0];
    for k in [
        "time_ns",
        "request",
        "attempt",
        "strategy",
        "key",
        "project",
        "model",
        "input_tokens",
        "outcome",
        "violated",
        "retry_delay_ns",
        "completion_ns",
        "admitted_by",
    ] {
        assert!(l.get(k).is_some(), "{k} missing in {l}");
    }
    assert!(l["key"].as_str().unwrap().starts_with("****"), "keys are masked: {l}");
    let rl = lines
        .iter()
        .find(|l| l["outcome"] == "rate_limited")
        .expect("shared-project has 429s");
    assert!(rl["retry_delay_ns"].as_u64().unwrap() > 0);
    assert!(!rl["violated"].as_array().unwrap().is_empty());
    let ok = lines.iter().find(|l| l["outcome"] == "ok").unwrap();
    assert!(ok["completion_ns"].as_u64().unwrap() > ok["time_ns"].as_u64().unwrap());
    // Which path served it (shared-project has quotas only); a refused attempt names none.
    assert!(lines
        .iter()
        .filter(|l| l["outcome"] == "ok")
        .all(|l| l["admitted_by"] == "quota"));
    assert!(rl["admitted_by"].is_null());

    bin()
        .arg("run")
        .arg(&p)
        .arg("--trace")
        .arg(&trace)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists").and(predicate::str::contains("--force")));
    assert_eq!(
        std::fs::read_to_string(&trace).unwrap(),
        text,
        "the existing trace is untouched"
    );
    bin()
        .arg("run")
        .arg(&p)
        .arg("--trace")
        .arg(&trace)
        .arg("--force")
        .assert()
        .success();
}

const BASE: &str = r#"
name = "t"
[models.m]
rpm = 10
tpm = 1000
[topology]
projects = ["p"]
[workload]
kind = "closed"
requests = 10
workers = 2
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 10 }
"#;

/// Runs `run` on a scenario file with `text` and expects exit 2 and one line naming all of `needles`.
fn bad(text: &str, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, text).unwrap();
    std::fs::write(
        dir.path().join("trace.csv"),
        "arrival_s,input_tokens,output_tokens\n0.5,10,10\n1.0,abc,10\n",
    )
    .unwrap();
    let out = bin().arg("run").arg(&path).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert_eq!(out.status.code(), Some(2), "stderr: {err}");
    assert!(!err.contains("panicked"), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    for n in needles {
        assert!(err.contains(n), "{n:?} not in {err:?}");
    }
}

#[test]
fn base_scenario_is_valid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, BASE).unwrap();
    bin().arg("run").arg(&path).assert().success();
}

#[test]
fn unknown_fields_are_rejected_with_their_line() {
    bad(
        &BASE.replace("rpm = 10", "rpm = 10\nrpn = 3"),
        &["bad.toml:5", "unknown field `rpn`"],
    );
    bad(
        &format!("{BASE}\n[server]\nwindw = \"fixed\"\n"),
        &["bad.toml", "unknown field `windw`"],
    );
    bad(
        &BASE.replace("workers = 2", "workers = 2\nrate = 3"),
        &["bad.toml", "workload.rate", "not used by kind"],
    );
}

#[test]
fn wrong_types_are_rejected() {
    bad(
        &BASE.replace("rpm = 10", "rpm = \"ten\""),
        &["bad.toml:4", "invalid type"],
    );
    bad(
        &BASE.replace("projects = [\"p\"]", "projects = true"),
        &["bad.toml", "a number of projects or a list of project names"],
    );
    bad(
        &BASE.replace("kind = \"closed\"", "kind = \"closed\"\nduration = 5"),
        &["bad.toml", "duration"],
    );
}

#[test]
fn zero_and_negative_values_are_rejected() {
    bad(
        &BASE.replace("workers = 2", "workers = 0"),
        &["bad.toml", "workload.workers", "at least 1"],
    );
    bad(
        &BASE.replace("requests = 10", "requests = -5"),
        &["bad.toml", "requests"],
    );
    bad(&BASE.replace("rpm = 10", "rpm = -1"), &["bad.toml:4", "-1"]);
    bad(
        &BASE.replace("projects = [\"p\"]", "projects = 0"),
        &["bad.toml", "topology.projects", "at least 1"],
    );
    bad(
        &format!("{BASE}\n[[strategies]]\nkind = \"fixed_interval\"\ninterval = \"0s\"\n"),
        &["strategies[0].interval", "greater than zero"],
    );
}

#[test]
fn unknown_strategy_names_are_rejected() {
    bad(
        &format!("{BASE}\n[[strategies]]\nkind = \"least_busy\"\n"),
        &["bad.toml", "strategies[0].kind", "least_busy", "round_robin"],
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ok.toml");
    std::fs::write(&path, BASE).unwrap();
    bin()
        .arg("run")
        .arg(&path)
        .args(["--strategy", "nope"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--strategy").and(predicate::str::contains("\"nope\"")));
}

#[test]
fn a_key_pointing_at_no_project_is_rejected() {
    bad(
        &format!("{BASE}\n[[topology.keys]]\nproject = \"ghost\"\n"),
        &["bad.toml", "topology.keys[0].project", "ghost"],
    );
}

#[test]
fn bad_trace_rows_name_the_csv_line() {
    let trace = BASE.replace(
        "kind = \"closed\"\nrequests = 10\nworkers = 2\ninput_tokens = { dist = \"fixed\", value = 10 }\noutput_tokens = { dist = \"fixed\", value = 10 }",
        "kind = \"trace\"\npath = \"trace.csv\"",
    );
    bad(&trace, &["trace.csv:3", "input_tokens", "\"abc\""]);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    bin()
        .args(["run", "no/such/scenario.toml"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no/such/scenario.toml").and(predicate::str::contains("cannot read")));
}

#[test]
fn bad_flags_exit_2() {
    bin()
        .arg("run")
        .arg(scenario("dubbing.toml"))
        .args(["--format", "xml"])
        .assert()
        .code(2);
    bin()
        .arg("run")
        .arg(scenario("dubbing.toml"))
        .args(["--seed", "-3"])
        .assert()
        .code(2);
}

#[test]
fn keys_lists_every_key_with_its_project() {
    let out = bin().arg("keys").arg(scenario("shared-project.toml")).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let rows: Vec<Vec<&str>> = text.lines().skip(1).map(|l| l.split('\t').collect()).collect();
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .all(|r| r[0].starts_with("AIzaSy") && r[0].len() == 39 && r[3] == "true"));
    assert_eq!(rows.iter().filter(|r| r[1] == "alpha").count(), 2);
    // Stable: the same scenario always yields the same keys.
    let again = bin().arg("keys").arg(scenario("shared-project.toml")).output().unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), text);
}

/// A `flux-sim serve` child process on a free loopback port; killed when dropped.
struct Served {
    child: std::process::Child,
    url: String,
}

impl Served {
    /// `flux-sim serve SCENARIO_FILE --bind 127.0.0.1:0 ARGS…`
    fn start(scenario_file: &Path, args: &[&str]) -> Served {
        use std::io::BufRead;
        let mut child = std::process::Command::new(assert_cmd::cargo::cargo_bin("flux-sim"))
            .arg("serve")
            .arg(scenario_file)
            .args(["--bind", "127.0.0.1:0"])
            .args(args)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        std::io::BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        // "flux-sim serve: NAME on http://127.0.0.1:PORT (time scale …"
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Served { child, url }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn drive_runs_a_strategy_against_serve_next_to_its_simulation() {
    let file = scenario("dubbing.toml");
    let served = Served::start(&file, &["--time-scale", "600"]);
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("drive.jsonl");
    let out = bin()
        .arg("drive")
        .arg(&file)
        .args([
            "--endpoint",
            &served.url,
            "--strategy",
            "exact_cooldown",
            "--time-scale",
            "600",
        ])
        .args(["--duration", "2s", "--margin", "30ms", "--format", "json", "--trace"])
        .arg(&trace)
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = v["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["exact_cooldown", "exact_cooldown (simulated)"]);
    let real = row(&v, "exact_cooldown");
    let sim = row(&v, "exact_cooldown (simulated)");
    assert!(u(real, "completed") > 50, "{real}");
    assert_eq!(
        u(real, "requests"),
        u(sim, "requests"),
        "the same batch, cut at 20 minutes"
    );
    assert_eq!(
        u(real, "requests"),
        u(real, "completed") + u(real, "failed") + u(real, "unservable") + u(real, "pending")
    );
    let lines = std::fs::read_to_string(&trace).unwrap();
    let answered = u(real, "attempts") - u(real, "in_flight");
    assert_eq!(lines.lines().count() as u64, answered, "one line per answered attempt");
    for l in lines.lines() {
        let t: Value = serde_json::from_str(l).unwrap();
        assert!(t["key"].as_str().unwrap().starts_with("********"), "{t}");
        assert_eq!(t["strategy"], "exact_cooldown");
    }
    // The trace is not overwritten without --force.
    bin()
        .arg("drive")
        .arg(&file)
        .args(["--endpoint", &served.url, "--strategy", "round_robin", "--trace"])
        .arg(&trace)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("already exists"));
}

#[test]
fn drive_rejects_what_it_cannot_do() {
    let file = scenario("dubbing.toml");
    let drive = |args: &[&str]| bin().arg("drive").arg(&file).args(args).assert().code(2);
    drive(&["--endpoint", "http://127.0.0.1:9"])
        .stderr(predicate::str::contains("one strategy at a time").and(predicate::str::contains("exact_cooldown")));
    drive(&[
        "--endpoint",
        "http://127.0.0.1:9",
        "--strategy",
        "round_robin",
        "--margin",
        "5ms",
    ])
    .stderr(predicate::str::contains(
        "--margin: only \"exact_cooldown\" or \"flux\" plan",
    ));
    let dir = tempfile::tempdir().unwrap();
    let trace = dir.path().join("t.jsonl");
    let trace_arg = trace.to_str().unwrap();
    drive(&[
        "--endpoint",
        "http://127.0.0.1:9",
        "--strategy",
        "round_robin",
        "--trace",
        trace_arg,
    ])
    .stderr(predicate::str::contains(
        "--endpoint http://127.0.0.1:9: cannot reach it",
    ));
    assert!(!trace.exists(), "no empty trace is left behind");
    drive(&["--endpoint", "localhost:8080", "--strategy", "round_robin"])
        .stderr(predicate::str::contains("--endpoint"));
    drive(&[
        "--endpoint",
        "http://127.0.0.1:9",
        "--strategy",
        "round_robin",
        "--duration",
        "0s",
    ])
    .stderr(predicate::str::contains("--duration"));
    drive(&[
        "--endpoint",
        "http://127.0.0.1:9",
        "--strategy",
        "round_robin",
        "--duration",
        "soon",
    ])
    .stderr(predicate::str::contains("--duration"));
    drive(&["--strategy", "round_robin"]).stderr(predicate::str::contains("--endpoint"));
}

#[test]
fn start_moves_the_daily_reset_of_serve_and_drive() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("midnight.toml");
    std::fs::write(
        &file,
        r#"
name = "midnight"
[server.latency]
ttft = "1ms"
tokens_per_second = 1000000
jitter = 0.0
[models.m]
rpd = 1
[topology]
projects = 1
[workload]
kind = "closed"
requests = 2
workers = 2
input_tokens = { dist = "fixed", value = 4 }
output_tokens = { dist = "fixed", value = 4 }
[[strategies]]
kind = "exact_cooldown"
"#,
    )
    .unwrap();
    // One request a day, starting 1.5 s before midnight Pacific: the second waits for the
    // new day, 1.5 s later, instead of the scenario's default 15 hours.
    let start = "2025-10-15T23:59:58.500-07:00";
    let served = Served::start(&file, &["--start", start]);
    let t0 = std::time::Instant::now();
    let out = bin()
        .arg("drive")
        .arg(&file)
        .args([
            "--endpoint",
            &served.url,
            "--start",
            start,
            "--duration",
            "20s",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let real = row(&v, "exact_cooldown");
    assert_eq!((u(real, "completed"), u(real, "rate_limited")), (2, 0), "{real}");
    let makespan = real["makespan_s"].as_f64().unwrap();
    assert!((1.5..5.0).contains(&makespan), "{real}");
    assert!(t0.elapsed() < std::time::Duration::from_secs(15));
    bin()
        .arg("serve")
        .arg(&file)
        .args(["--start", "yesterday"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--start").and(predicate::str::contains("RFC 3339")));
}

/// `proxy` refuses to start without its token or with a bad keys file, saying which and why,
/// and never echoes a key.
#[test]
fn proxy_refuses_a_missing_token_and_a_bad_keys_file() {
    let out = bin()
        .args([
            "proxy",
            scenario("dubbing.toml").to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
        ])
        .env_remove("FLUX_PROXY_TOKEN")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("set FLUX_PROXY_TOKEN"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let keys = dir.path().join("keys.txt");
    std::fs::write(
        &keys,
        "studio-main-1 AIzaSyQ000000000000000000000000000000001\nnope AIzaSyQ000000000000000000000000000000002\n",
    )
    .unwrap();
    let out = bin()
        .args([
            "proxy",
            scenario("dubbing.toml").to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
            "--keys",
        ])
        .arg(&keys)
        .env("FLUX_PROXY_TOKEN", "t")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("keys.txt: line 2: no project \"nope\""), "{err}");
    assert!(!err.contains("AIzaSyQ0000000000000"), "no key whole: {err}");
}

/// A Live model and a sessions workload on it.
const LIVE: &str = r#"
name = "l"
[models.live]
live = true
concurrent = 3
[models.m]
rpm = 10
[topology]
projects = ["p"]
[workload]
kind = "sessions"
model = "live"
clients = 2
sessions = 10
input_tokens = { dist = "fixed", value = 10 }
output_tokens = { dist = "fixed", value = 10 }
"#;

#[test]
fn sessions_workloads_and_live_settings_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let ok = dir.path().join("live.toml");
    std::fs::write(&ok, LIVE).unwrap();
    let (_, v) = run_json(&[ok.to_str().unwrap()]);
    assert_eq!(v["results"][0]["sessions"]["closes_1011"], 0);
    bad(
        &LIVE.replace("model = \"live\"", "model = \"m\""),
        &["workload.model", "not a Live model"],
    );
    bad(
        &BASE.replace("rpm = 10", "rpm = 10\nlive = true"),
        &["workload.model", "is a Live model"],
    );
    bad(&LIVE.replace("clients = 2\n", ""), &["workload.clients", "required"]);
    bad(
        &LIVE.replace("sessions = 10", "sessions = 10\nturns = 0"),
        &["workload.turns", "at least 1"],
    );
    bad(
        &LIVE.replace("sessions = 10", "sessions = 10\nmodality = \"video\""),
        &["workload.modality", "audio_video"],
    );
    bad(
        &LIVE.replace("sessions = 10", "sessions = 10\nclose_after = \"soon\""),
        &["workload.close_after", "generation_complete"],
    );
    bad(
        &LIVE.replace("sessions = 10", "sessions = 10\nrequests = 3"),
        &["workload.requests", "not used"],
    );
    bad(
        &format!("{LIVE}\n[server.live]\nearly_close = \"never\"\n"),
        &["server.live.early_close", "releases"],
    );
    bad(
        &format!("{LIVE}\n[server.live]\ngo_away = \"20m\"\n"),
        &["server.live.go_away", "lifetime"],
    );
    bad(&format!("{LIVE}\n[server.live]\nrelase = \"1s\"\n"), &["relase"]);
}

#[test]
fn cert_writes_a_pair_once_and_serve_names_a_bad_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("certs");
    bin()
        .arg("cert")
        .arg(&d)
        .assert()
        .success()
        .stdout(predicate::str::contains("cert.pem"));
    let cert = std::fs::read(d.join("cert.pem")).unwrap();
    assert!(String::from_utf8_lossy(&cert).contains("BEGIN CERTIFICATE"));
    bin()
        .arg("cert")
        .arg(&d)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("exists; pass --force"));
    assert_eq!(std::fs::read(d.join("cert.pem")).unwrap(), cert, "not overwritten");
    bin().arg("cert").arg(&d).arg("--force").assert().success();
    let s = scenario("live-sessions.toml");
    // serve and the proxy take the same pair, name the flag whose file is wrong, and want both.
    for command in ["serve", "proxy"] {
        bin()
            .env("FLUX_PROXY_TOKEN", "a-token")
            .args([command, s.to_str().unwrap(), "--bind", "127.0.0.1:0", "--tls-cert"])
            .arg(d.join("key.pem"))
            .arg("--tls-key")
            .arg(d.join("key.pem"))
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--tls-cert").and(predicate::str::contains("key.pem")));
        bin()
            .args([command, s.to_str().unwrap(), "--tls-cert"])
            .arg(d.join("cert.pem"))
            .assert()
            .code(2)
            .stderr(predicate::str::contains("--tls-key"));
    }
}
