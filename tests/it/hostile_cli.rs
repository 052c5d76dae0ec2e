//! The command line against careless and hostile input: every case that hung, aborted, printed
//! nonsense or leaked a key now ends at once with one clear line and exit code 2.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use assert_cmd::Command;
use predicates::prelude::*;

fn dubbing() -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/dubbing.toml")).unwrap()
}

fn flux() -> Command {
    let mut c = Command::cargo_bin("flux-sim").unwrap();
    c.timeout(Duration::from_secs(60));
    c
}

/// Writes `text` as a scenario in `dir` and runs `flux-sim run` on it.
fn run_text(dir: &Path, text: &str) -> assert_cmd::assert::Assert {
    let p = dir.join("s.toml");
    std::fs::write(&p, text).unwrap();
    flux().arg("run").arg(&p).assert()
}

#[test]
fn values_past_their_limits_are_refused_at_once_naming_field_and_limit() {
    let dir = tempfile::tempdir().unwrap();
    let base = dubbing();
    let cases: [(&str, &str, &str); 8] = [
        ("ttft = \"1.5s\"", "ttft = \"213503d\"", "server.latency.ttft"),
        (
            "tokens_per_second = 180",
            "tokens_per_second = 1e-300",
            "server.latency.tokens_per_second",
        ),
        ("requests = 1_800", "requests = 1_000_000_000_000", "workload.requests"),
        ("projects = 6", "projects = 10_000_000", "projects"),
        (
            "output_tokens = { dist = \"uniform\", min = 3_500, max = 4_500 }",
            "output_tokens = { dist = \"fixed\", value = 1_000_000_000_000 }",
            "workload.output_tokens.value",
        ),
        ("workers = 64", "workers = 1_000_000_000_000", "workload.workers"),
        ("horizon = \"10h\"", "horizon = \"100000d\"", "horizon"),
        (
            "[[strategies]]\nkind = \"round_robin\"\n",
            "[[strategies]]\nkind = \"round_robin\"\nretry = { policy = \"backoff\", max_attempts = 4000000000 }\n",
            "max_attempts",
        ),
    ];
    for (from, to, field) in cases {
        assert!(base.contains(from), "{from}");
        let t = Instant::now();
        run_text(dir.path(), &base.replacen(from, to, 1))
            .code(2)
            .stderr(predicate::str::contains(field).and(predicate::str::contains("panicked").not()));
        assert!(t.elapsed() < Duration::from_secs(10), "{to}: {:?}", t.elapsed());
    }
    // An open workload of 10^12 a minute would never end.
    let open = base
        .replace("kind = \"closed\"", "kind = \"open\"\nrate = 1e12\nduration = \"1h\"")
        .replace("requests = 1_800\n", "")
        .replace("workers = 64\n", "");
    run_text(dir.path(), &open)
        .code(2)
        .stderr(predicate::str::contains("workload.rate").and(predicate::str::contains("1000000000")));
}

#[test]
fn files_are_read_up_to_a_limit() {
    let t = Instant::now();
    flux()
        .args(["run", "/dev/zero"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("/dev/zero").and(predicate::str::contains("MiB")));
    assert!(t.elapsed() < Duration::from_secs(10));
    let dir = tempfile::tempdir().unwrap();
    let text = dubbing()
        .replace("kind = \"closed\"", "kind = \"trace\"\npath = \"/dev/zero\"")
        .replace("requests = 1_800\n", "")
        .replace("workers = 64\n", "")
        .replace(
            "input_tokens = { dist = \"lognormal\", median = 40_000, p99 = 120_000, max = 240_000 }\n",
            "",
        )
        .replace("output_tokens = { dist = \"uniform\", min = 3_500, max = 4_500 }\n", "")
        .replace("horizon = \"10h\"", "");
    run_text(dir.path(), &text)
        .code(2)
        .stderr(predicate::str::contains("trace").and(predicate::str::contains("MiB")));
}

#[test]
fn no_error_shows_a_key_whole() {
    let dir = tempfile::tempdir().unwrap();
    let secret = "AIzaSyD-very-secret-key-0001";
    let base = dubbing();
    let variants = [
        // A syntax error on the key's line.
        format!("{base}\n[[topology.keys]]\nproject = \"studio-main-1\"\nkey = \"{secret}\" oops\n"),
        // An unknown field next to it in an inline table.
        format!("{base}\n[topology.extra]\nk = {{ project = \"studio-main-1\", key = \"{secret}\", colour = 1 }}\n"),
        // A wrong type on the same line.
        format!("{base}\n[[topology.keys]]\nproject = \"studio-main-1\"\nkey = \"{secret}\"\ninvalid = \"{secret}\"\n"),
    ];
    for text in variants {
        let out = run_text(dir.path(), &text).code(2).get_output().clone();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!err.contains("very-secret"), "{err}");
    }
    // The same key twice: masked, and never more than a quarter of it shown.
    let twice = format!(
        "{base}\n[[topology.keys]]\nproject = \"studio-main-1\"\nkey = \"Sh0rtKey\"\n[[topology.keys]]\nproject = \"studio-main-2\"\nkey = \"Sh0rtKey\"\n"
    );
    run_text(dir.path(), &twice)
        .code(2)
        .stderr(predicate::str::contains("******ey").and(predicate::str::contains("tKey").not()));
}

#[test]
fn flags_name_themselves_and_outputs_do_not_overlap() {
    let scen = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/dubbing.toml");
    flux()
        .arg("run")
        .arg(&scen)
        .args(["--seed", "-1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--seed"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    flux()
        .arg("run")
        .arg(&scen)
        .arg("--out")
        .arg(&out)
        .arg("--trace")
        .arg(out.join("summary.json"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--trace").and(predicate::str::contains("inside --out")));
    assert!(!out.exists(), "nothing written");
    // drive refuses a bad endpoint before printing its banner.
    flux()
        .arg("drive")
        .arg(&scen)
        .args(["--endpoint", "localhost:8080", "--strategy", "exact_cooldown"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--endpoint").and(predicate::str::contains("flux-sim drive:").not()));
}

#[test]
fn a_grid_too_large_is_counted_and_refused_before_anything_runs() {
    let scen = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("scenarios/dubbing.toml");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g");
    let t = Instant::now();
    flux()
        .arg("sweep")
        .arg(&scen)
        .args([
            "--set",
            "workload.requests=1..10000",
            "--set",
            "workload.workers=1..10000",
            "--set",
            "topology.accounts[0].projects=1..10000",
            "--out",
        ])
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("1000000000000 points").and(predicate::str::contains("--max-points")));
    let list: Vec<String> = (1..=20_000).map(|i| i.to_string()).collect();
    flux()
        .arg("sweep")
        .arg(&scen)
        .arg("--set")
        .arg(format!("workload.requests={}", list.join(",")))
        .arg("--out")
        .arg(&out)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("20000 points"));
    assert!(t.elapsed() < Duration::from_secs(10));
    assert!(!out.exists());
}

/// A large but legal run stops on Ctrl-C (SIGINT) within moments and prints what it simulated
/// (it could only be killed before).
#[test]
fn ctrl_c_stops_a_long_run_with_a_partial_report() {
    let dir = tempfile::tempdir().unwrap();
    let text = dubbing()
        .replace("requests = 1_800", "requests = 300_000_000")
        .replace("horizon = \"10h\"", "horizon = \"400d\"")
        .replace("rpd = 250\n", "rpd = 2_500_000\n");
    let p = dir.path().join("long.toml");
    std::fs::write(&p, text).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("flux-sim");
    let child = std::process::Command::new(bin)
        .arg("run")
        .arg(&p)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let t = Instant::now();
    assert!(std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap()
        .success());
    let out = child.wait_with_output().unwrap();
    assert!(t.elapsed() < Duration::from_secs(20), "stopped after {:?}", t.elapsed());
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    assert!(
        stdout.contains("exact_cooldown") && stdout.contains("pending"),
        "{stdout}"
    );
}

/// A proxy that must not start: exit 2, one clear error, no banner before it, no panic, no
/// key or password shown.
fn proxy_refuses(args: &[&str], keys: Option<&str>, expect: &str, hidden: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("c.toml");
    std::fs::write(&config, dubbing()).unwrap();
    let mut c = flux();
    c.env("FLUX_PROXY_TOKEN", "token-of-the-test")
        .env("FLUX_TEST_EMPTY_KEY", "")
        .env("FLUX_TEST_CTL_KEY", "bell\u{7}key-123456")
        .arg("proxy")
        .arg(&config)
        .args(["--bind", "127.0.0.1:0"]);
    if let Some(k) = keys {
        let path = dir.path().join("keys.txt");
        std::fs::write(&path, k).unwrap();
        c.arg("--keys").arg(&path);
    }
    let out = c.args(args).timeout(Duration::from_secs(30)).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(err.contains(expect), "{args:?}: {err}");
    assert!(
        !err.contains("panicked") && !err.contains("flux-sim proxy: flux on"),
        "{err}"
    );
    for h in hidden {
        assert!(!err.contains(h), "{h} shown: {err}");
    }
}

#[test]
fn the_proxy_refuses_bad_starts_with_exit_2_and_shows_no_secret() {
    let aq = "AQ.Ab8RN6LxYzQ0wErTy-uIoP_aSdFgHjKl";
    // issue 29: a project left without a key panicked (exit 101).
    proxy_refuses(&[], Some(&format!("studio-main-1 {aq}\n")), "has no key", &[aq]);
    // Columns swapped: the key was printed whole.
    proxy_refuses(&[], Some(&format!("{aq} studio-main-1\n")), "KEY PROJECT", &[&aq[..20]]);
    // An empty key (from the environment) or one with control characters: the proxy started
    // and blamed the upstream with a 502 later.
    for var in ["FLUX_TEST_EMPTY_KEY", "FLUX_TEST_CTL_KEY"] {
        let keys = format!("studio-main-1 ${var}\n");
        proxy_refuses(
            &[],
            Some(&keys),
            "the key of project \"studio-main-1\"",
            &["key-123456"],
        );
    }
    // --queue at 2^61 and more panicked.
    proxy_refuses(&["--queue", "2305843009213693952"], None, "--queue", &[]);
    // A Redis password in every ledger error; a port that never answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    let t = Instant::now();
    proxy_refuses(
        &["--ledger", &format!("redis://flux:hunter2-secret@127.0.0.1:{port}/0")],
        None,
        "--ledger",
        &["hunter2"],
    );
    assert!(t.elapsed() < Duration::from_secs(20), "{:?}", t.elapsed());
    drop(silent);
    // A password in --upstream.
    proxy_refuses(
        &["--upstream", "ftp://me:s3cret-pass@example.com/"],
        None,
        "--upstream",
        &["s3cret-pass"],
    );
}

#[test]
fn serve_drive_and_compare_name_what_is_wrong() {
    // issue 29: serve --tls-cert /dev/zero read without a cap and aborted at 4 GB.
    let dir = tempfile::tempdir().unwrap();
    let s = dir.path().join("s.toml");
    std::fs::write(&s, dubbing()).unwrap();
    flux()
        .args([
            "serve",
            s.to_str().unwrap(),
            "--bind",
            "127.0.0.1:0",
            "--tls-cert",
            "/dev/zero",
            "--tls-key",
            "/dev/zero",
        ])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--tls-cert /dev/zero: larger than the most allowed",
        ));
    // compare --seed -1 did not name --seed.
    flux()
        .args(["compare", s.to_str().unwrap(), "--seed", "-1"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--seed"));
    // drive printed its banner before "cannot reach".
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://127.0.0.1:{}", closed.local_addr().unwrap().port());
    drop(closed);
    let out = flux()
        .args([
            "drive",
            s.to_str().unwrap(),
            "--endpoint",
            &url,
            "--strategy",
            "round_robin",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("cannot reach") && !err.contains("flux-sim drive:"),
        "{err}"
    );
}
