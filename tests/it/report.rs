//! `run --out DIR`: every file is produced and well formed, and the same seed gives the same
//! CSV and JSON.

use std::path::Path;

use assert_cmd::Command;
use predicates::prelude::*;
use serde_json::Value;

const CHARTS: [&str; 5] = ["outcomes", "completed", "rate_limited", "wait_cdf", "utilisation"];

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
    assert_eq!(header.len(), 16);
    assert_eq!(
        &header[..5],
        [
            "strategy",
            "minute",
            "completed",
            "completed_so_far",
            "upper_bound_so_far"
        ]
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert!(rows.iter().all(|r| r.len() == header.len()));
    assert_eq!(rows.len(), 4 * 25);
    for (i, r) in results.iter().enumerate() {
        let mine: Vec<&Vec<&str>> = rows.iter().filter(|x| x[0] == names[i]).collect();
        let completed: u64 = mine.iter().map(|x| x[2].parse::<u64>().unwrap()).sum();
        assert_eq!(completed, r["completed"].as_u64().unwrap(), "{}", names[i]);
        let limited: u64 = mine.iter().map(|x| x[5].parse::<u64>().unwrap()).sum();
        assert_eq!(limited, r["rate_limited"].as_u64().unwrap(), "{}", names[i]);
        // What the completed chart draws: the running total never crosses the bound.
        for x in &mine {
            let (so_far, most): (u64, u64) = (x[3].parse().unwrap(), x[4].parse().unwrap());
            assert!(
                so_far <= most,
                "{}: {so_far} done by minute {} > bound {most}",
                names[i],
                x[1]
            );
        }
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
    // Two summary tables narrow enough for a 1280-pixel window, times in human units, the notes.
    assert_eq!(html.matches("<table>").count(), 2);
    for table in html.split("<table>").skip(1) {
        let header = &table[..table.find("</tr>").unwrap()];
        assert!(header.matches("<th>").count() <= 12, "{header}");
    }
    assert!(
        !html.contains(" ms<") && !html.contains(".871"),
        "times are shown as 1.7s, 3.6m, 1.9h"
    );
    assert!(html.contains("min</p>") || html.contains("h simulated") || html.contains("m simulated"));
    assert!(
        html.contains("Every request is exactly one of completed"),
        "the column notes"
    );
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

/// On dubbing, round_robin abandons most of the batch early. It must never look best: its
/// rate is not above the bound nor above exact_cooldown's, in the table, the JSON, the
/// time series the charts draw, and a sweep's CSV; no efficiency exceeds 1; its wait CDF
/// stops at the share it completed.
#[test]
fn a_strategy_that_abandons_work_never_looks_best() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("r");
    let table = Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("run")
        .arg(scenario("dubbing.toml"))
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap();
    assert!(table.status.success());
    let table = String::from_utf8(table.stdout).unwrap();
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let row = |name: &str| {
        summary["results"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["strategy"] == name)
            .unwrap()
            .clone()
    };
    let (rr, exact) = (row("round_robin"), row("exact_cooldown"));
    assert!(
        rr["failed"].as_u64().unwrap() > 1000,
        "round_robin still abandons most: {rr}"
    );
    for r in summary["results"].as_array().unwrap() {
        let (t, b, e) = (
            r["throughput_per_min"].as_f64().unwrap(),
            r["upper_bound_per_min"].as_f64().unwrap(),
            r["efficiency"].as_f64().unwrap(),
        );
        assert!(t <= b && e <= 1.0, "{r}");
    }
    assert!(rr["throughput_per_min"].as_f64().unwrap() < exact["throughput_per_min"].as_f64().unwrap());
    // The table's done/min and bound/min columns agree.
    let line = table.lines().find(|l| l.starts_with("round_robin")).unwrap();
    let cells: Vec<&str> = line.split_whitespace().collect();
    let (done, bound): (f64, f64) = (cells[13].parse().unwrap(), cells[14].parse().unwrap());
    assert!(done <= bound, "{line}");
    // The wait CDF over all requests reaches only the share completed.
    let done_share = rr["completed"].as_f64().unwrap() / rr["requests"].as_f64().unwrap();
    let svg = std::fs::read_to_string(out.join("wait_cdf.svg")).unwrap();
    assert!(
        svg.contains(&format!("round_robin (done {:.0}%)", done_share * 100.0)),
        "wait_cdf legend"
    );
    // A sweep's CSV: no throughput above its bound, no efficiency above 1.
    let sweep = dir.path().join("s");
    Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("sweep")
        .arg(scenario("dubbing.toml"))
        .args(["--set", "topology.accounts[0].projects=1,3,10", "--out"])
        .arg(&sweep)
        .assert()
        .success();
    let csv = std::fs::read_to_string(sweep.join("sweep.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let (t, b, e) = (col("throughput_per_min"), col("upper_bound_per_min"), col("efficiency"));
    let mut rows = 0;
    for l in lines {
        let c: Vec<&str> = l.split(',').collect();
        let f = |i: usize| c[i].parse::<f64>().unwrap();
        assert!(f(t) <= f(b) && f(e) <= 1.0, "{l}");
        rows += 1;
    }
    assert_eq!(rows, 9);
    assert!(sweep.join("index.html").exists());
}

/// The fields of one CSV line, unquoting quoted ones (strategy names may hold commas).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut out, mut field, mut quoted) = (Vec::new(), String::new(), false);
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => out.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    out.push(field);
    out
}

/// Checks every file of a `run --out` report in `out` of `scenario` (its `name`): the JSON's
/// strategies appear in summary.md, the CSV has one row per strategy and minute whose counts
/// add up to the JSON's, every chart is a PNG of a sane size and an SVG that parses and names
/// the scenario, and index.html shows every chart.
fn check_report(out: &Path, name: &str) {
    let ctx = |f: &str| format!("{name}: {f}");
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap())
        .unwrap_or_else(|e| panic!("{}: {e}", ctx("summary.json")));
    assert_eq!(summary["scenario"], name, "{}", ctx("summary.json"));
    let results = summary["results"].as_array().unwrap();
    assert!(!results.is_empty(), "{}", ctx("summary.json"));
    let names: Vec<&str> = results.iter().map(|r| r["strategy"].as_str().unwrap()).collect();
    let md = std::fs::read_to_string(out.join("summary.md")).unwrap();
    for n in &names {
        assert!(md.contains(&format!("| {n} |")), "{} row {n}", ctx("summary.md"));
    }
    let csv = std::fs::read_to_string(out.join("timeseries.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<Vec<String>> = lines.map(csv_fields).collect();
    assert!(
        rows.iter().all(|r| r.len() == header.len()),
        "{}",
        ctx("timeseries.csv")
    );
    for (i, r) in results.iter().enumerate() {
        let mine: Vec<&Vec<String>> = rows.iter().filter(|x| x[0] == names[i]).collect();
        // Minutes 0, 1, 2, … of the strategy's own span.
        let minutes: Vec<u64> = mine.iter().map(|x| x[1].parse().unwrap()).collect();
        assert!(!minutes.is_empty(), "{} rows of {}", ctx("timeseries.csv"), names[i]);
        assert!(
            minutes.iter().enumerate().all(|(m, &x)| x == m as u64),
            "{} minutes of {}",
            ctx("timeseries.csv"),
            names[i]
        );
        let completed: u64 = mine.iter().map(|x| x[2].parse::<u64>().unwrap()).sum();
        assert_eq!(
            completed,
            r["completed"].as_u64().unwrap(),
            "{} {}",
            ctx("timeseries.csv"),
            names[i]
        );
        for x in &mine {
            let (so_far, most): (u64, u64) = (x[3].parse().unwrap(), x[4].parse().unwrap());
            assert!(
                so_far <= most,
                "{}: {} {so_far} > bound {most}",
                ctx("timeseries.csv"),
                names[i]
            );
        }
    }
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    for c in CHARTS {
        let png = std::fs::read(out.join(format!("{c}.png"))).unwrap_or_else(|e| panic!("{}: {e}", ctx(c)));
        let (w, h) = png_size(&png);
        assert!(w >= 800 && h >= 400, "{}.png is {w}x{h}", ctx(c));
        let svg = std::fs::read_to_string(out.join(format!("{c}.svg"))).unwrap();
        let doc = roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{}.svg: {e}", ctx(c)));
        let texts: String = doc
            .descendants()
            .filter(|n| n.is_text())
            .filter_map(|n| n.text())
            .collect::<Vec<_>>()
            .join("\n");
        assert!(texts.contains(name), "{}.svg is titled with the scenario", ctx(c));
        // No empty panel: where no budget has a limit (a shared pool) the panel says why.
        if c == "utilisation" {
            assert!(
                texts.contains("window use per project")
                    || (texts.contains("no quota window to fill") && texts.contains("shared pool")),
                "{}.svg draws per-project use or says why there is none:\n{texts}",
                ctx(c)
            );
        }
        // Labels cut to fit never cut two names to the same text: each cut text appears at
        // most once per panel.
        if c == "outcomes" {
            let panels = 2;
            for cut in texts.lines().filter(|t| t.trim().ends_with('…')) {
                let n = texts.lines().filter(|t| t == &cut).count();
                assert!(n <= panels, "{}.svg: {n} labels cut to {cut:?}", ctx(c));
            }
        }
        assert!(
            html.contains(&format!("{c}.png")) && html.contains(&format!("id=\"{c}\"")),
            "{} shows {c}",
            ctx("index.html")
        );
    }
}

/// What `run` prints and the report's pages (issue 27, items 4, 5 and 9): the verdict comes
/// first, naming a strategy of the run, in the table, summary.md and index.html; every line
/// fits a 120-column terminal; every strategy's retry policy is named.
fn check_table(file: &str, table: &str, out: &Path) {
    let summary: Value = serde_json::from_str(&std::fs::read_to_string(out.join("summary.json")).unwrap()).unwrap();
    let names: Vec<&str> = summary["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["strategy"].as_str().unwrap())
        .collect();
    let second = table.lines().nth(1).unwrap_or("");
    let best = second
        .strip_prefix("Verdict: ")
        .unwrap_or_else(|| panic!("{file}: the verdict is not first:\n{table}"));
    assert!(
        names.iter().any(|n| best.starts_with(&format!("{n} (retry: "))),
        "{file}: the verdict names no strategy of the run: {second}"
    );
    for line in table.lines() {
        assert!(
            line.chars().count() <= 120,
            "{file}: a line of {} columns:\n{line}",
            line.chars().count()
        );
    }
    let flat = table.split_whitespace().collect::<Vec<_>>().join(" ");
    let retry = &flat[flat
        .find("Retry policies: ")
        .unwrap_or_else(|| panic!("{file}: no retry line"))..];
    for n in &names {
        let n = n.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            retry.contains(&format!("{n} = ")),
            "{file}: no retry policy for {n}: {retry}"
        );
    }
    for page in ["summary.md", "index.html"] {
        let text = std::fs::read_to_string(out.join(page)).unwrap();
        let first_table = text.find("<table>").or_else(|| text.find("| strategy |")).unwrap();
        assert!(
            text[..first_table].contains("Verdict: "),
            "{file}: {page} has no verdict before its table"
        );
    }
}

/// `run --wide` prints every column in one block; without it the table wraps into blocks of
/// at most 120 columns, each repeating the strategy column.
#[test]
fn the_table_wraps_at_120_columns_unless_wide() {
    let run = |extra: &[&str]| {
        let out = Command::cargo_bin("flux-sim")
            .unwrap()
            .arg("run")
            .arg(scenario("dubbing.toml"))
            .args(extra)
            .output()
            .unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    let narrow = run(&[]);
    let headers: Vec<&str> = narrow.lines().filter(|l| l.starts_with("strategy ")).collect();
    assert!(headers.len() >= 2, "{narrow}");
    assert!(narrow.lines().all(|l| l.chars().count() <= 120), "{narrow}");
    let wide = run(&["--wide"]);
    let headers: Vec<&str> = wide.lines().filter(|l| l.starts_with("strategy ")).collect();
    assert_eq!(headers.len(), 1, "{wide}");
    assert!(
        headers[0].contains(" done ") && headers[0].ends_with("ref pace"),
        "{}",
        headers[0]
    );
    assert!(headers[0].chars().count() > 120, "{}", headers[0]);
}

/// Every shipped scenario writes its whole `--out` report (Live scenarios panicked in the
/// timeline: it kept four utilisation means for five dimensions). `large-10m` runs with a
/// tenth of `large`'s duration (7 s of arrivals instead of 700 s), keeping its 1,000 projects
/// and rates, so CI stays within a few seconds per scenario.
#[test]
fn every_shipped_scenario_writes_its_whole_report() {
    let dir = tempfile::tempdir().unwrap();
    let mut names: Vec<String> = std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".toml"))
        .collect();
    names.sort();
    assert!(names.len() >= 14, "{names:?}");
    for file in &names {
        let mut path = scenario(file);
        if file == "large-10m.toml" {
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("duration = \"700s\""), "large-10m's duration moved");
            path = dir.path().join(file);
            std::fs::write(&path, text.replace("duration = \"700s\"", "duration = \"7s\"")).unwrap();
        }
        let stem = file.trim_end_matches(".toml");
        let out = dir.path().join(stem);
        let run = Command::cargo_bin("flux-sim")
            .unwrap()
            .arg("run")
            .arg(&path)
            .arg("--out")
            .arg(&out)
            .output()
            .unwrap();
        assert!(
            run.status.success(),
            "{file}: exit {:?}\n{}",
            run.status.code(),
            String::from_utf8_lossy(&run.stderr)
        );
        let text = std::fs::read_to_string(&path).unwrap();
        let name = text
            .lines()
            .find_map(|l| l.strip_prefix("name = \""))
            .and_then(|l| l.split('"').next())
            .unwrap();
        check_report(&out, name);
        check_table(file, &String::from_utf8(run.stdout).unwrap(), &out);
    }
}

/// A sweep of a Live scenario writes every file, each well formed.
#[test]
fn a_sweep_of_a_live_scenario_writes_every_file() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("sweep")
        .arg(scenario("live-sessions.toml"))
        .args([
            "--set",
            "models.\"gemini-2.0-flash-live-001\".concurrent=2,3,5",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 3 * 4, "{csv}");
    assert!(rows.iter().all(|r| r.split(',').count() == header.len()), "{csv}");
    let html = std::fs::read_to_string(out.join("index.html")).unwrap();
    for stem in [
        "sweep_completed",
        "sweep_throughput",
        "sweep_rate_limited",
        "sweep_wait_p99",
    ] {
        let (w, h) = png_size(&std::fs::read(out.join(format!("{stem}.png"))).unwrap());
        assert!(w >= 800 && h >= 400, "{stem}.png is {w}x{h}");
        let svg = std::fs::read_to_string(out.join(format!("{stem}.svg"))).unwrap();
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{stem}.svg: {e}"));
        assert!(html.contains(&format!("{stem}.png")), "index.html shows {stem}");
    }
}

/// The colour of the `i`-th series in an SVG, as plotters writes it.
fn svg_colour(i: usize) -> String {
    let c = flux_sim::report::plot::colour(i);
    format!("#{:02X}{:02X}{:02X}", c.0, c.1, c.2)
}

/// The points of the longest polyline of `colour` left of the legend (x < 800) in `svg`: the
/// series' line, not its legend swatch or markers.
fn series_points(svg: &str, colour: &str) -> Vec<(f64, f64)> {
    let doc = roxmltree::Document::parse(svg).unwrap();
    doc.descendants()
        .filter(|n| n.has_tag_name("polyline") && n.attribute("stroke") == Some(colour))
        .map(|n| {
            n.attribute("points")
                .unwrap()
                .split_whitespace()
                .map(|p| {
                    let (x, y) = p.split_once(',').unwrap();
                    (x.parse::<f64>().unwrap(), y.parse::<f64>().unwrap())
                })
                .collect::<Vec<_>>()
        })
        .filter(|pts| pts.iter().all(|p| p.0 < 800.0))
        .max_by_key(|pts| pts.len())
        .unwrap_or_default()
}

/// Issue 27, item 8: the sweep's p99-wait chart made round robin (5-30% of dubbing done) look
/// best, as it counted only the requests completed. It now counts every request, one never
/// done as waiting forever: where under 99% are done the point is marked × in a band above
/// every finite value, and the chart says so.
#[test]
fn the_sweep_wait_chart_never_shows_abandoned_work_as_a_short_wait() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("s");
    Command::cargo_bin("flux-sim")
        .unwrap()
        .arg("sweep")
        .arg(scenario("dubbing.toml"))
        .args([
            "--set",
            "topology.accounts[0].projects=6,8,10",
            "--strategy",
            "round_robin",
            "--strategy",
            "exact_cooldown",
            "--out",
        ])
        .arg(&out)
        .assert()
        .success();
    let csv = std::fs::read_to_string(out.join("sweep.csv")).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let col = |name: &str| header.iter().position(|h| *h == name).unwrap();
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    for r in &rows {
        let done: f64 = r[col("completed_fraction")].parse().unwrap();
        let all = r[col("wait_all_p99_ms")];
        if r[col("strategy")] == "round_robin" {
            // It completes under 99%: its p99 over all requests is never reached, though
            // its p99 over the completed is the smallest of all.
            assert!(done < 0.99 && all.is_empty(), "{r:?}");
        } else {
            assert!(done >= 0.99 && all.parse::<f64>().unwrap() > 0.0, "{r:?}");
        }
    }
    let svg = std::fs::read_to_string(out.join("sweep_wait_p99.svg")).unwrap();
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let texts: String = doc
        .descendants()
        .filter_map(|n| n.text())
        .collect::<Vec<_>>()
        .join("\n");
    assert!(texts.contains("p99 wait over all requests"), "{texts}");
    assert!(texts.contains("under 99% done"), "the band says what it holds: {texts}");
    assert!(
        texts.contains("waiting forever"),
        "the note says how it counts: {texts}"
    );
    // In SVG pixels y grows downwards: round robin's line lies above exact_cooldown's at
    // every point, as no finite wait is as long as one never reached.
    let (rr, exact) = (series_points(&svg, &svg_colour(0)), series_points(&svg, &svg_colour(1)));
    assert_eq!((rr.len(), exact.len()), (3, 3), "{rr:?} {exact:?}");
    let highest_exact = exact.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    assert!(rr.iter().all(|p| p.1 < highest_exact), "{rr:?} vs {exact:?}");
}
