//! `flux-sim sweep`: the grid's rows, its files, and clear errors for bad paths and values.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;

fn scenario(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

fn sweep(args: &[&str], out: &Path) -> assert_cmd::assert::Assert {
    Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("sweep")
        .arg(scenario("dubbing.toml"))
        .args(args)
        .arg("--out")
        .arg(out)
        .assert()
}

#[test]
fn three_values_times_three_strategies_make_nine_rows() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    let a = sweep(&["--set", "topology.accounts[0].projects=4..6"], &out).success();
    let stdout = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    assert!(
        stdout.contains("exact_cooldown") && stdout.contains("smallest topology.accounts[0].projects"),
        "{stdout}"
    );
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    assert!(
        header.starts_with("topology.accounts[0].projects,strategy,"),
        "{header}"
    );
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 9);
    // With 6 + 2 projects the 1,800 chunks fit the day: exact_cooldown meets the demand.
    assert!(
        rows.iter()
            .any(|r| r.starts_with("6,exact_cooldown,") && r.ends_with(",true")),
        "{csv}"
    );
    assert!(
        rows.iter()
            .any(|r| r.starts_with("5,exact_cooldown,") && r.ends_with(",false")),
        "{csv}"
    );
    assert!(stdout.contains("exact_cooldown       6"), "{stdout}");
    for stem in [
        "sweep_completed",
        "sweep_throughput",
        "sweep_rate_limited",
        "sweep_wait_p99",
    ] {
        let png = std::fs::read(out.join(format!("{stem}.png"))).unwrap();
        assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap();
        let texts: Vec<&str> = doc.descendants().filter_map(|n| n.text()).map(str::trim).collect();
        for s in ["round_robin", "fixed_interval", "exact_cooldown"] {
            assert!(texts.iter().any(|t| t.starts_with(s)), "{stem}.svg names {s}");
        }
    }
    // The same sweep again gives the same CSV.
    let again = dir.path().join("t");
    sweep(&["--set", "topology.accounts[0].projects=4..6"], &again).success();
    assert_eq!(csv, std::fs::read_to_string(again.join("sweep.csv")).unwrap());
}

/// With two settings the answer is given per value of the second, and it is exactly what the
/// CSV says: for each (second value, strategy), the first value of the first setting whose
/// row meets the demand.
#[test]
fn a_grid_of_two_settings_answers_per_combination_as_its_csv_says() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("g");
    let a = sweep(
        &[
            "--set",
            "topology.accounts[0].projects=4..7",
            "--set",
            "workload.workers=8,64",
        ],
        &out,
    )
    .success();
    let stdout = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    assert_eq!(csv.lines().count(), 1 + 4 * 2 * 3);
    let mut expected = String::new();
    for workers in ["8", "64"] {
        expected.push_str(&format!("  with workload.workers={workers}:\n"));
        for strategy in ["round_robin", "fixed_interval", "exact_cooldown"] {
            let first = csv.lines().skip(1).find_map(|l| {
                let c: Vec<&str> = l.split(',').collect();
                (c[1] == workers && c[2] == strategy && c[c.len() - 1] == "true").then(|| c[0].to_string())
            });
            // The whole topology at that value: the second account's 2 projects count too.
            let shown = first.map_or("none in the sweep".to_string(), |v| {
                format!(
                    "{v} ({} projects over 2 accounts in all)",
                    v.parse::<usize>().unwrap() + 2
                )
            });
            expected.push_str(&format!("    {strategy:<20} {shown}\n"));
        }
    }
    assert!(stdout.contains(&expected), "{stdout}\nexpected:\n{expected}");
    // exact_cooldown meets the demand somewhere in this grid (it did not, with the old rule).
    assert!(expected.contains("exact_cooldown       6"), "{expected}");
}

/// The answer counts the whole topology (dubbing: 6 in the main account is 8 projects over 2
/// accounts), names its criterion in the workload's terms, says what it assumes, and the
/// charts are titled with the scenario's name, not its file's.
#[test]
fn the_answer_counts_the_whole_topology_and_says_what_it_assumes() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("renamed-file.toml");
    std::fs::copy(scenario("dubbing.toml"), &file).unwrap();
    let out = dir.path().join("s");
    let a = Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("sweep")
        .arg(&file)
        .args([
            "--set",
            "topology.accounts[0].projects=5..7",
            "--strategy",
            "exact_cooldown",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let stdout = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    assert!(
        stdout.contains("smallest topology.accounts[0].projects reaching 99% of the batch done within the horizon"),
        "{stdout}"
    );
    assert!(
        stdout.contains("exact_cooldown       6 (8 projects over 2 accounts in all)"),
        "{stdout}"
    );
    assert!(stdout.contains("assuming the scenario's start (2025-"), "{stdout}");
    assert!(stdout.contains("fresh quotas"), "{stdout}");
    let svg = std::fs::read_to_string(out.join("sweep_completed.svg")).unwrap();
    assert!(
        svg.contains("dubbing: share of requests completed"),
        "titled with the scenario's name"
    );
    assert!(!svg.contains("renamed-file"), "titled with the file's name");
}

/// A sweep of the demand itself is answered by the largest demand met, not the smallest; a
/// sweep of values given out of order or not numbers by the first in the order given.
#[test]
fn a_demand_sweep_is_answered_by_its_largest_value_met() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let a = sweep(
        &["--set", "workload.requests=100,200,400", "--strategy", "exact_cooldown"],
        &out,
    )
    .success();
    let stdout = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    assert!(stdout.starts_with("3 grid points"), "{stdout}");
    assert!(stdout.contains("largest workload.requests met reaching"), "{stdout}");
    assert!(stdout.contains("exact_cooldown       400"), "{stdout}");
    let out = dir.path().join("w");
    let a = sweep(
        &["--set", "server.window=sliding,fixed", "--strategy", "exact_cooldown"],
        &out,
    )
    .success();
    let stdout = String::from_utf8(a.get_output().stdout.clone()).unwrap();
    assert!(
        stdout.contains("first server.window in the order given reaching"),
        "{stdout}"
    );
}

#[test]
fn the_same_setting_twice_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("twice");
    sweep(
        &["--set", "workload.requests=10", "--set", "workload.requests=20"],
        &out,
    )
    .code(2)
    .stderr(predicate::str::contains(
        "--set: workload.requests: the same setting is given twice",
    ));
    assert!(!out.exists(), "nothing written");
}

#[test]
fn bad_paths_and_values_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("e");
    sweep(&["--set", "topology.acounts[0].projects=1..3"], &out)
        .code(2)
        .stderr(predicate::str::contains("acounts"));
    sweep(&["--set", "workload.wrkers=3"], &out)
        .code(2)
        .stderr(predicate::str::contains("unknown field `wrkers`"));
    sweep(&["--set", "workload.workers=0,5"], &out)
        .code(2)
        .stderr(predicate::str::contains("workload.workers=0").and(predicate::str::contains("at least 1")));
    sweep(&["--set", "workload.workers=9..3"], &out)
        .code(2)
        .stderr(predicate::str::contains("A <= B"));
    sweep(&["--set", "workload.workers"], &out)
        .code(2)
        .stderr(predicate::str::contains("PATH=VALUES"));
    assert!(!out.exists(), "nothing written on a bad sweep");
}

#[test]
fn the_thread_count_changes_nothing_in_the_results() {
    let dir = tempfile::tempdir().unwrap();
    let csv = |threads: &str| {
        let out = dir.path().join(format!("t{threads}"));
        sweep(
            &["--set", "topology.accounts[0].projects=2..7", "--threads", threads],
            &out,
        )
        .success();
        std::fs::read(out.join("sweep.csv")).unwrap()
    };
    assert_eq!(csv("1"), csv("2"));
    sweep(&["--set", "seed=1,2", "--threads", "0"], &dir.path().join("z"))
        .failure()
        .stderr(predicate::str::contains("--threads"));
}
