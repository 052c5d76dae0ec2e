//! A run's report directory (`run --out DIR`): summary.json, summary.md, timeseries.csv, the
//! charts (throughput, rate_limited, wait_cdf, utilisation; PNG and SVG) and index.html.

use std::path::{Path, PathBuf};

use plotters::style::RGBColor;

use crate::core::ledger::Dimension;
use crate::core::time::{Nanos, MINUTE};
use crate::report::markdown::quota_429s;
use crate::report::plot::{colour, log_ms_label, outcome, write_chart, Bars, Body, Line, Panel};
use crate::report::{timeseries_csv, to_html, to_json, to_markdown};
use crate::scenario::Scenario;
use crate::sim::bound::capacity_curve;
use crate::sim::metrics::{RunResult, StrategyResult};
use crate::sim::timeline::{Details, MinuteRow};
use crate::strategy::StrategySpec;

/// The chart files, as (stem, title), in the order a reader should see them.
pub const CHARTS: [(&str, &str); 5] = [
    ("outcomes", "Results at a glance: how every request ended, and 429s"),
    ("completed", "Requests completed so far, against the upper bound"),
    ("rate_limited", "Cumulative 429 responses"),
    ("wait_cdf", "Distribution of waits over all requests"),
    ("utilisation", "Quota window use per project"),
];

/// Why a report directory cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DirError {
    /// It holds files, and writing into it was not forced.
    NotEmpty,
    /// It cannot be created or read, or is a file (the message names it).
    Unusable(String),
}

/// Refuses to write into a non-empty `dir` unless `force`; creates it if missing.
pub fn prepare_dir(dir: &Path, force: bool) -> Result<(), DirError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => {
            if entries.next().is_some() && !force {
                return Err(DirError::NotEmpty);
            }
            Ok(())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => std::fs::create_dir_all(dir)
            .map_err(|e| DirError::Unusable(format!("cannot create the report directory {}: {e}", dir.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotADirectory => Err(DirError::Unusable(format!(
            "report directory {} is a file, not a directory",
            dir.display()
        ))),
        Err(e) => Err(DirError::Unusable(format!(
            "cannot read the report directory {}: {e}",
            dir.display()
        ))),
    }
}

fn write(path: PathBuf, text: &str) -> Result<(), String> {
    std::fs::write(&path, text).map_err(|e| format!("cannot write the report file {}: {e}", path.display()))
}

/// Writes the report of `run` of `strategies` (with each one's `details`) into `dir`, which
/// [`prepare_dir`] has checked.
pub fn write_report(
    dir: &Path,
    scenario: &Scenario,
    strategies: &[StrategySpec],
    run: &RunResult,
    details: &[Details],
) -> Result<(), String> {
    write(dir.join("summary.json"), &to_json(run))?;
    write(dir.join("summary.md"), &to_markdown(run))?;
    let end = details.iter().map(|d| d.minutes.len()).max().unwrap_or(1).max(1);
    // The most each strategy could have completed by the end of each minute, with the models
    // its fallback chain lets it use (one curve per distinct chain).
    let at: Vec<Nanos> = (1..=end as u64).map(|m| m * MINUTE).collect();
    let mut curves: Vec<(&[usize], Vec<u64>)> = Vec::new();
    for spec in strategies {
        if !curves.iter().any(|(c, _)| *c == spec.fallback.as_slice()) {
            let curve = capacity_curve(scenario, run.seed, Some(&spec.fallback), &at);
            curves.push((&spec.fallback, curve));
        }
    }
    let bounds: Vec<&[u64]> = strategies
        .iter()
        .map(|spec| {
            curves
                .iter()
                .find(|(c, _)| *c == spec.fallback.as_slice())
                .map_or(&[][..], |(_, v)| v.as_slice())
        })
        .collect();
    write(dir.join("timeseries.csv"), &timeseries_csv(run, details, &bounds))?;
    let labelled: Vec<(String, &[u64])> = curves
        .iter()
        .map(|(chain, v)| {
            let label = if curves.len() == 1 {
                "upper bound".to_string()
            } else if chain.is_empty() {
                "bound, no fallback".to_string()
            } else {
                format!("bound, {} fallbacks", chain.len())
            };
            (label, v.as_slice())
        })
        .collect();
    let panels = [
        outcomes(run),
        completed(run, details, &labelled),
        rate_limited(run, details),
        wait_cdf(run, details),
        utilisation(run, details),
    ];
    let mut charts = Vec::new();
    for ((stem, title), panels) in CHARTS.iter().zip(panels) {
        write_chart(&dir.join(stem), &panels).map_err(|e| format!("report directory: {e}"))?;
        let svg =
            std::fs::read_to_string(dir.join(format!("{stem}.svg"))).map_err(|e| format!("report directory: {e}"))?;
        charts.push((*stem, *title, svg));
    }
    write(dir.join("index.html"), &to_html(run, &charts))
}

fn title(run: &RunResult, what: &str) -> String {
    format!("{}: {what}", run.scenario)
}

/// What the workload's units are called: sessions for a Live workload, else requests.
fn unit(run: &RunResult) -> &'static str {
    if run.results.iter().any(|r| r.sessions.is_some()) {
        "sessions"
    } else {
        "requests"
    }
}

fn strategies(run: &RunResult) -> Vec<String> {
    run.results.iter().map(|r| r.strategy.clone()).collect()
}

/// How every request ended (stacked: completed, failed, unservable, pending) and the 429
/// responses, per strategy: the first thing to read, so no rate can hide abandoned work.
fn outcomes(run: &RunResult) -> Vec<Panel> {
    let each = |f: fn(&StrategyResult) -> u64| -> Vec<f64> { run.results.iter().map(|r| f(r) as f64).collect() };
    type Ending = (&'static str, RGBColor, fn(&StrategyResult) -> u64);
    let ends: [Ending; 4] = [
        ("completed", outcome::COMPLETED, |r| r.completed),
        ("failed (gave up)", outcome::FAILED, |r| r.failed),
        ("unservable", outcome::UNSERVABLE, |r| r.unservable),
        ("pending at the end", outcome::PENDING, |r| r.pending),
    ];
    let series = ends
        .into_iter()
        .map(|(label, colour, count)| Bars {
            label: label.into(),
            colour,
            values: each(count),
            inner: None,
            labelled: true,
        })
        .collect();
    let noun = unit(run);
    let mut ends = Panel::bars(
        title(run, &format!("how every {} ended", noun.trim_end_matches('s'))),
        noun,
        strategies(run),
        series,
        true,
    );
    ends.integer_y = true;
    let limited = vec![Bars {
        label: "429 responses".into(),
        colour: colour(0),
        values: each(|r| r.rate_limited),
        inner: None,
        labelled: true,
    }];
    let mut limited = Panel::bars(
        title(run, "429 responses"),
        "429 responses",
        strategies(run),
        limited,
        false,
    );
    if let Body::Bars { by_category, .. } = &mut limited.body {
        *by_category = Some((0..run.results.len()).map(colour).collect());
    }
    limited.integer_y = true;
    vec![ends, limited]
}

/// Cumulative completions per minute, and (dashed) the most a strategy could have completed
/// by then (one line per distinct fallback chain): a strategy that gives up stops rising, and
/// no line can cross its bound.
fn completed(run: &RunResult, details: &[Details], bounds: &[(String, &[u64])]) -> Vec<Panel> {
    let end = details.iter().map(|d| d.minutes.len()).max().unwrap_or(1).max(1);
    let mut lines: Vec<Line> = run
        .results
        .iter()
        .zip(details)
        .enumerate()
        .map(|(i, (r, d))| {
            let mut points = running_total(d, |m| m.completed);
            // After its span (it finished, or gave up) a strategy completes nothing more.
            if let Some(&(x, total)) = points.last().filter(|_| d.minutes.len() < end) {
                if x < end as f64 {
                    points.push((end as f64, total));
                }
            }
            Line {
                label: format!("{} ({})", r.strategy, r.completed),
                colour: i,
                dashed: false,
                points,
                beyond: Vec::new(),
            }
        })
        .collect();
    for (k, (label, bound)) in bounds.iter().enumerate() {
        // Grey for the first bound; the others in colours no strategy line uses.
        let colour = crate::report::plot::BOUND_COLOUR - k;
        lines.push(Line {
            label: label.clone(),
            colour,
            dashed: true,
            points: std::iter::once((0.0, 0.0))
                .chain(bound.iter().enumerate().map(|(m, &c)| ((m + 1) as f64, c as f64)))
                .collect(),
            beyond: Vec::new(),
        });
    }
    let requests = run.results.first().map_or(0, |r| r.requests);
    let mut p = Panel::lines(
        title(run, &format!("{} completed so far (of {requests})", unit(run))),
        "simulated time (minutes)",
        &format!("{} completed", unit(run)),
        lines,
    );
    p.integer_y = true;
    vec![p]
}

/// The running total of one per-minute count, as (minutes from the start, total so far).
fn running_total(d: &Details, count: fn(&MinuteRow) -> u64) -> Vec<(f64, f64)> {
    let mut total = 0u64;
    std::iter::once((0.0, 0.0))
        .chain(d.minutes.iter().map(|m| {
            total += count(m);
            ((m.minute + 1) as f64, total as f64)
        }))
        .collect()
}

fn rate_limited(run: &RunResult, details: &[Details]) -> Vec<Panel> {
    let unnamed = run.results.iter().any(|r| r.rate_limited > quota_429s(r));
    let none_quota = run.results.iter().all(|r| quota_429s(r) == 0);
    let lines = run
        .results
        .iter()
        .zip(details)
        .enumerate()
        .map(|(i, (r, d))| {
            let points = running_total(d, |m| m.rate_limited_responses);
            // Where some 429s name no quota (a shared pool's capacity, a spend cap), say how
            // many did: no client avoids the others.
            let label = if unnamed && !none_quota {
                format!("{} ({}, {} quota)", r.strategy, r.rate_limited, quota_429s(r))
            } else {
                format!("{} ({})", r.strategy, r.rate_limited)
            };
            Line {
                label,
                colour: i,
                dashed: false,
                points,
                beyond: Vec::new(),
            }
        })
        .collect();
    let what = if unnamed && none_quota {
        "cumulative 429 responses (capacity or spend: none names a quota)"
    } else if unnamed {
        "cumulative 429 responses (legend: all, and those naming a quota)"
    } else {
        "cumulative 429 responses"
    };
    let mut p = Panel::lines(
        title(run, what),
        "simulated time (minutes)",
        "429 responses so far",
        lines,
    );
    p.integer_y = true;
    vec![p]
}

fn wait_cdf(run: &RunResult, details: &[Details]) -> Vec<Panel> {
    let mut lines: Vec<Line> = run
        .results
        .iter()
        .zip(details)
        .enumerate()
        .map(|(i, (r, d))| {
            // A step at each wait: a straight line between two recorded waits would show
            // requests that waited in between, where there were none.
            let mut points = vec![(0.0, 0.0)];
            for &(ms, f) in &d.wait_cdf {
                let x = ms.max(1.0).log10();
                let below = points.last().map_or(0.0, |q| q.1);
                points.push((x, below));
                points.push((x, f));
            }
            let done = if r.requests > 0 {
                r.completed as f64 / r.requests as f64
            } else {
                0.0
            };
            Line {
                label: format!("{} (done {:.0}%)", r.strategy, done * 100.0),
                colour: i,
                dashed: false,
                points,
                beyond: Vec::new(),
            }
        })
        .collect();
    // Each curve runs flat to the right edge at the share it reached.
    let right = lines
        .iter()
        .flat_map(|l: &Line| l.points.last().map(|q| q.0))
        .fold(0.0, f64::max);
    for l in &mut lines {
        if let Some(&(x, f)) = l.points.last() {
            if x < right {
                l.points.push((right, f));
            }
        }
    }
    let mut p = Panel::lines(
        title(run, &format!("distribution of waits over all {}", unit(run))),
        "wait from arrival to the successful send (log scale; under 1 ms shown at 1 ms)",
        &format!("fraction of all {} done", unit(run)),
        lines,
    );
    p.x_label = log_ms_label;
    p.integer_x = true; // ticks at whole decades only: 1 ms, 10 ms, 100 ms, 1 s, …
    p.y_max = Some(1.0);
    vec![p]
}

/// How many budgets a utilisation chart shows at most (the busiest, in scenario order).
const MAX_BUDGETS: usize = 24;

fn utilisation(run: &RunResult, details: &[Details]) -> Vec<Panel> {
    let Some(first) = details.first() else {
        return Vec::new();
    };
    let several_models = first.utilisation.iter().any(|u| u.model != first.utilisation[0].model);
    let name = |j: usize| {
        let u = &first.utilisation[j];
        if several_models {
            format!("{}/{}", u.project, u.model)
        } else {
            u.project.clone()
        }
    };
    let mut panels = Vec::new();
    for d in Dimension::ALL {
        let limited: Vec<usize> = (0..first.utilisation.len())
            .filter(|&j| first.utilisation[j].fraction(d).is_some())
            .collect();
        if limited.is_empty() {
            continue;
        }
        // The busiest budgets (highest peak under any strategy), kept in scenario order.
        let peak = |j: usize| {
            details
                .iter()
                .filter_map(|det| det.utilisation.get(j)?.fraction(d))
                .map(|f| f.0)
                .fold(0.0, f64::max)
        };
        let mut shown = limited.clone();
        if shown.len() > MAX_BUDGETS {
            shown.sort_by(|&a, &b| peak(b).total_cmp(&peak(a)).then(a.cmp(&b)));
            shown.truncate(MAX_BUDGETS);
            shown.sort_unstable();
        }
        let series = run
            .results
            .iter()
            .zip(details)
            .enumerate()
            .map(|(i, (r, det))| {
                let f = |j: usize| det.utilisation.get(j).and_then(|u| u.fraction(d)).unwrap_or((0.0, 0.0));
                Bars {
                    label: r.strategy.clone(),
                    colour: colour(i),
                    values: shown.iter().map(|&j| f(j).0).collect(),
                    inner: Some(shown.iter().map(|&j| f(j).1).collect()),
                    labelled: false,
                }
            })
            .collect();
        let which = if shown.len() < limited.len() {
            format!(" (the {} busiest of {})", shown.len(), limited.len())
        } else {
            String::new()
        };
        let mut p = Panel::bars(
            title(
                run,
                &format!("{} window use per project{which}", d.name().to_uppercase()),
            ),
            &format!("{} use / limit: peak (light), mean (solid)", d.name()),
            shown.iter().map(|&j| name(j)).collect(),
            series,
            false,
        );
        p.x_desc = if several_models { "project/model" } else { "project" }.into();
        p.y_max = Some(peak_max(details, d).max(1.0) * 1.05);
        panels.push(p);
    }
    if panels.is_empty() {
        // Empty axes would read as "nothing used": say why there is nothing to show.
        let mut p = Panel::lines(
            title(run, "no quota window to fill"),
            "project",
            "use / limit",
            Vec::new(),
        );
        p.note = Some(
            "No project has a limit of its own here: every model is served from a shared pool \
             (its 429s name no quota: see the 429 chart) or has no limit, so there is no \
             window whose use could be drawn."
                .to_string(),
        );
        panels.push(p);
    }
    panels
}

/// The highest peak fraction of `d` over every budget and strategy.
fn peak_max(details: &[Details], d: Dimension) -> f64 {
    details
        .iter()
        .flat_map(|det| det.utilisation.iter().filter_map(move |u| u.fraction(d)))
        .map(|f| f.0)
        .fold(0.0, f64::max)
}
