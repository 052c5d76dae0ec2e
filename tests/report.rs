//! `run --out DIR`: every file is produced and well formed, and the same seed gives the same
//! CSV and JSON.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

const CHARTS: [&str; 4] = ["throughput", "rate_limited", "wait_cdf", "utilisation"];

fn scenario(name: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios").join(name)
}

fn report(dir: &Path, extra: &[&str]) {
    Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("run")
        .arg(scenario("shared-project.toml"))
        .arg("--out")
        .arg(dir)
        .args(extra)
        .assert()
        .success();
}

/// Width and height from a PNG's IHDR chunk.
fn png_size(bytes: &[u8]) -> (u32, u32) {
    assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "PNG signature");
    assert_eq!(&bytes[12..16], b"IHDR");
    let be = |i: usize| u32::from_be_bytes(bytes[i..i + 4].try_into().unwrap());
    (be(16), be(20))
}

#[test]
fn every_report_file_is_produced_and_well_formed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("report");
    report(&out, &[]);
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let results = summary["results"].as_array().unwrap();
    let names: Vec<&str> = results.iter().map(|r| r["strategy"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["round_robin", "fixed_interval", "gemini-flux", "exact_cooldown"]
    );

    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for n in &names {
        assert!(md.contains(&format!("| {n} |")), "{n} in summary.md");
    }

    // One CSV row per strategy per simulated minute (an open workload of 25 minutes).
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    assert_eq!(header.len(), 12);
    assert_eq!(&header[..3], ["strategy", "minute", "completed"]);
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()));
    assert_eq!(rows.len(), 4 * 25);
    for (i, r) in results.iter().enumerate() {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|x| x[0] == names[i]).collect();
        let completed: u64 = mine.iter().map(|x| x[2].parse::<u64>().unwrap()).sum();
        assert_eq!(completed, r["completed"].as_u64().unwrap(), "{}", names[i]);
        let limited: u64 = mine
            .iter()
            .map(|x| x[3..8].iter().map(|v| v.parse::<u64>().unwrap()).max().unwrap())
            .sum();
        assert!(limited <= r["rate_limited"].as_u64().unwrap());
    }

    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    for c in CHARTS {
        let png = std::fs::read(out.join(format!("{c}.png"))).unwrap();
        let (w, h) = png_size(&png);
        assert!(w >= 800 && h >= 400, "{c}.png is {w}x{h}");
        let svg = std::fs::read_to_string(out.join(format!("{c}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{c}.svg: {e}"));
        let texts: String = doc
            .descendants()
            .filter_map(|n| n.text())
            .collect::<Vec<_>>()
            .join("\n");
        for n in &names {
            assert!(texts.contains(n), "{c}.svg names {n}");
        }
        assert!(texts.contains("shared-project"), "{c}.svg is titled with the scenario");
        assert!(
            html.contains(&format!("{c}.png")) && html.contains(&format!("id=\"{c}\"")),
            "index.html shows {c}"
        );
    }
    // Self-contained: nothing is fetched from elsewhere (SVG namespaces are names, not fetches).
    for external in ["src=\"http", "href=\"http", "<script", "<link ", "@import"] {
        assert!(!html.contains(external), "index.html contains {external}");
    }
}

#[test]
fn same_seed_same_csv_and_json_and_a_non_empty_dir_needs_force() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    report(&a, &["--seed", "3"]);
    report(&b, &["--seed", "3", "--threads", "1"]);
    for f in ["timeseries.csv", "summary.json", "summary.md"] {
        assert_eq!(
            std::fs::read(a.join(f)).unwrap(),
            std::fs::read(b.join(f)).unwrap(),
            "{f}"
        );
    }
    let before = std::fs::read(a.join("summary.json")).unwrap();
    Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("run")
        .arg(scenario("shared-project.toml"))
        .arg("--out")
        .arg(&a)
        .args(["--seed", "4"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("not empty").and(predicate::str::contains("--force")));
    assert_eq!(
        std::fs::read(a.join("summary.json")).unwrap(),
        before,
        "nothing was overwritten"
    );
    report(&a, &["--seed", "4", "--force"]);
    assert_ne!(std::fs::read(a.join("summary.json")).unwrap(), before);
}

#[test]
fn unwritable_output_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("run")
        .arg(scenario("shared-project.toml"))
        .arg("--out")
        .arg(&file)
        .assert()
        .code(2)
        .stderr(
            predicate::str::contains("--out")
                .and(predicate::str::contains("a-file"))
                .and(predicate::str::contains("panicked").not()),
        );
    Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("run")
        .arg(scenario("shared-project.toml"))
        .arg("--out")
        .arg(file.join("below"))
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--out").and(predicate::str::contains("panicked").not()));
}
