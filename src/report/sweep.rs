//! A sweep's report: `sweep.csv` (one row per grid point and strategy) and its charts.

use std::fmt::Write as _;
use std::path::Path;

use super::csv::csv_field;
use super::plot::{plain_label, write_chart, Line, Panel};
use crate::sim::metrics::{round3, StrategyResult};
use crate::sim::sweep::{Point, Sweep};

/// Writes `sweep.csv` and the charts (throughput, 429s and p99 wait against the first
/// setting, one line per strategy and combination of the other settings) into `dir`.
pub fn write_sweep(sweep: &Sweep, dir: &Path, points: &[Point]) -> Result<(), String> {
    std::fs::write(dir.join("sweep.csv"), sweep_csv(sweep, points))
        .map_err(|e| format!("--out: cannot write {}: {e}", dir.join("sweep.csv").display()))?;
    let first = &sweep.grid.settings[0];
    let numeric = points.iter().all(|p| p.x.is_some());
    let x_of = |i: usize, p: &Point| {
        if numeric {
            p.x.unwrap_or(0.0)
        } else {
            (i / sweep.grid.settings[1..]
                .iter()
                .map(|s| s.values.len())
                .product::<usize>()) as f64
        }
    };
    let x_desc = if numeric {
        first.path.clone()
    } else {
        format!("{} (index of the value)", first.path)
    };
    let name = points
        .first()
        .map(|_| {
            sweep
                .grid
                .path()
                .file_stem()
                .map_or(String::new(), |s| s.to_string_lossy().to_string())
        })
        .unwrap_or_default();
    type Metric = (&'static str, &'static str, &'static str, fn(&StrategyResult) -> f64);
    let metrics: [Metric; 3] = [
        ("sweep_throughput", "throughput", "completed per minute", |r| {
            r.throughput_per_min
        }),
        ("sweep_rate_limited", "429 responses", "429 responses", |r| {
            r.rate_limited as f64
        }),
        ("sweep_wait_p99", "p99 wait", "p99 wait (s)", |r| r.wait_ms.p99 / 1000.0),
    ];
    for (stem, title, y_desc, metric) in metrics {
        let mut lines: Vec<Line> = Vec::new();
        for (i, p) in points.iter().enumerate() {
            let rest = p.values[1..].join(", ");
            for (j, r) in p.results.iter().enumerate() {
                let label = if rest.is_empty() {
                    r.strategy.clone()
                } else {
                    format!("{} ({rest})", r.strategy)
                };
                let line = match lines.iter_mut().find(|l| l.label == label) {
                    Some(l) => l,
                    None => {
                        let colour = lines.len().max(j);
                        lines.push(Line {
                            label,
                            colour,
                            dashed: false,
                            points: Vec::new(),
                        });
                        lines.last_mut().expect("just pushed")
                    }
                };
                line.points.push((x_of(i, p), metric(r)));
            }
        }
        let panel = Panel {
            title: format!("{name}: {title} against {}", first.path),
            x_desc: x_desc.clone(),
            y_desc: y_desc.into(),
            lines,
            x_label: plain_label,
            y_min: 0.0,
        };
        write_chart(&dir.join(stem), &[panel]).map_err(|e| format!("--out: {e}"))?;
    }
    Ok(())
}

/// `sweep.csv`: one row per grid point and strategy.
pub fn sweep_csv(sweep: &Sweep, points: &[Point]) -> String {
    let mut out = String::new();
    for s in &sweep.grid.settings {
        out.push_str(&csv_field(&s.path));
        out.push(',');
    }
    out.push_str("strategy,requests,completed,failed,pending,rate_limited,throughput_per_min,demanded_per_min,upper_bound_per_min,efficiency,wait_p50_ms,wait_p99_ms,meets_demand\n");
    for p in points {
        for r in &p.results {
            for v in &p.values {
                out.push_str(&csv_field(v));
                out.push(',');
            }
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&r.strategy),
                r.requests,
                r.completed,
                r.failed,
                r.pending,
                r.rate_limited,
                r.throughput_per_min,
                round3(p.demanded_per_min),
                r.upper_bound_per_min,
                r.efficiency,
                r.wait_ms.p50,
                r.wait_ms.p99,
                p.meets(r, sweep.closed)
            );
        }
    }
    out
}
