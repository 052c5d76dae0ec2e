//! A run's report directory (`run --out DIR`): summary.json, summary.md, timeseries.csv, the
//! charts (throughput, rate_limited, wait_cdf, utilisation; PNG and SVG) and index.html.

use std::path::{Path, PathBuf};

use crate::core::ledger::Dimension;
use crate::report::plot::{log_ms_label, plain_label, write_chart, Line, Panel};
use crate::report::{timeseries_csv, to_html, to_json, to_markdown};
use crate::sim::metrics::RunResult;
use crate::sim::timeline::Details;

/// The chart files, as (stem, title).
pub const CHARTS: [(&str, &str); 4] = [
    ("throughput", "Completed per minute"),
    ("rate_limited", "Cumulative 429 responses"),
    ("wait_cdf", "Distribution of waits"),
    ("utilisation", "Quota window use per project"),
];

/// Refuses to write into a non-empty `dir` unless `force`; creates it if missing.
pub fn prepare_dir(dir: &Path, force: bool) -> Result<(), String> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(format!(
                    "--out: {} is not empty; pass --force to write into it",
                    dir.display()
                ));
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::create_dir_all(dir).map_err(|e| format!("--out: cannot create {}: {e}", dir.display()))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => {
            Err(format!("--out: {} is a file, not a directory", dir.display()))
        }
        Err(e) => Err(format!("--out: cannot read {}: {e}", dir.display())),
    }
}

fn write(path: PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(&path, text).map_err(|e| format!("--out: cannot write {}: {e}", path.display()))
}

/// Writes the report of `run` (with each strategy's `details`) into `dir`, which
/// [`prepare_dir`] has checked.
pub fn write_report(dir: &Path, run: &RunResult, details: &[Details]) -> Result<(), String> {
    write(dir.join("summary.json"), &to_json(run))?;
    write(dir.join("summary.md"), &to_markdown(run))?;
    write(dir.join("timeseries.csv"), &timeseries_csv(run, details))?;
    let panels = [
        throughput(run, details),
        rate_limited(run, details),
        wait_cdf(run, details),
        utilisation(run, details),
    ];
    let mut charts = Vec::new();
    for ((stem, title), panels) in CHARTS.iter().zip(panels) {
        write_chart(&dir.join(stem), &panels).map_err(|e| format!("--out: {e}"))?;
        let svg = std::fs::read_to_string(dir.join(format!("{stem}.svg"))).map_err(|e| format!("--out: {e}"))?;
        charts.push((*stem, *title, svg));
    }
    write(dir.join("index.html"), &to_html(run, &charts))
}

fn panel(run: &RunResult, title: &str, x_desc: &str, y_desc: &str, lines: Vec<Line>) -> Panel {
    Panel {
        title: format!("{}: {title}", run.scenario),
        x_desc: x_desc.into(),
        y_desc: y_desc.into(),
        lines,
        x_label: plain_label,
        y_min: 0.0,
    }
}

fn throughput(run: &RunResult, details: &[Details]) -> Vec<Panel> {
    let mut lines: Vec<Line> = run
        .results
        .iter()
        .zip(details)
        .enumerate()
        .map(|(i, (r, d))| Line {
            label: r.strategy.clone(),
            colour: i,
            dashed: false,
            points: d
                .minutes
                .iter()
                .map(|m| (m.minute as f64, m.completed as f64))
                .collect(),
        })
        .collect();
    let end = details
        .iter()
        .map(|d| d.minutes.len())
        .max()
        .unwrap_or(1)
        .saturating_sub(1) as f64;
    if let Some(r) = run.results.first() {
        lines.push(Line {
            label: format!("upper bound ({:.1}/min)", r.upper_bound_per_min),
            colour: 7,
            dashed: true,
            points: vec![(0.0, r.upper_bound_per_min), (end.max(1.0), r.upper_bound_per_min)],
        });
    }
    vec![panel(
        run,
        "completed per minute",
        "simulated time (minutes)",
        "requests completed per minute",
        lines,
    )]
}

fn rate_limited(run: &RunResult, details: &[Details]) -> Vec<Panel> {
    let lines = run
        .results
        .iter()
        .zip(details)
        .enumerate()
        .map(|(i, (r, d))| {
            let mut total = 0u64;
            let mut points = vec![(0.0, 0.0)];
            for m in &d.minutes {
                total += m.rate_limited_responses;
                points.push(((m.minute + 1) as f64, total as f64));
            }
            Line {
                label: format!("{} ({})", r.strategy, r.rate_limited),
                colour: i,
                dashed: false,
                points,
            }
        })
        .collect();
    vec![panel(
        run,
        "cumulative 429 responses",
        "simulated time (minutes)",
        "429 responses so far",
        lines,
    )]
}

fn wait_cdf(run: &RunResult, details: &[Details]) -> Vec<Panel> {
    let lines = run
        .results
        .iter()
        .zip(details)
        .enumerate()
        .map(|(i, (r, d))| {
            let mut points = vec![(0.0, 0.0)];
            points.extend(d.wait_cdf.iter().map(|&(ms, f)| (ms.max(1.0).log10(), f)));
            Line {
                label: r.strategy.clone(),
                colour: i,
                dashed: false,
                points,
            }
        })
        .collect();
    let mut p = panel(
        run,
        "distribution of waits",
        "wait from arrival to the successful send (log scale; under 1 ms shown at 1 ms)",
        "fraction of completed requests",
        lines,
    );
    p.x_label = log_ms_label;
    vec![p]
}

fn utilisation(run: &RunResult, details: &[Details]) -> Vec<Panel> {
    let Some(first) = details.first() else {
        return Vec::new();
    };
    let mut panels = Vec::new();
    for d in Dimension::ALL {
        if !first.utilisation.iter().any(|u| u.fraction(d).is_some()) {
            continue;
        }
        let mut lines = Vec::new();
        for (i, (r, det)) in run.results.iter().zip(details).enumerate() {
            let fractions: Vec<(f64, (f64, f64))> = det
                .utilisation
                .iter()
                .enumerate()
                .filter_map(|(j, u)| u.fraction(d).map(|f| (j as f64, f)))
                .collect();
            lines.push(Line {
                label: format!("{} peak (solid)", r.strategy),
                colour: i,
                dashed: false,
                points: fractions.iter().map(|&(x, f)| (x, f.0)).collect(),
            });
            lines.push(Line {
                label: format!("{} mean (dashed)", r.strategy),
                colour: i,
                dashed: true,
                points: fractions.iter().map(|&(x, f)| (x, f.1)).collect(),
            });
        }
        panels.push(panel(
            run,
            &format!("{} window use per project", d.name().to_uppercase()),
            "project (index in the scenario; models in order within each project)",
            &format!("{} use / limit", d.name()),
            lines,
        ));
    }
    if panels.is_empty() {
        panels.push(panel(run, "no limited dimension", "project", "use / limit", Vec::new()));
    }
    panels
}
