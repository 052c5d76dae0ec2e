//! A sweep's report: `sweep.csv` (one row per grid point and strategy) and its charts.

use std::fmt::Write as _;
use std::path::Path;

use super::csv::csv_field;
use super::html::{escape, figure, page_head};
use super::plot::{write_chart, Line, Panel};
use crate::sim::metrics::{round3, StrategyResult};
use crate::sim::sweep::{Point, Sweep};

/// The sweep's charts, as (stem, title of the quantity, y axis description, metric (`None`:
/// beyond any axis), counts).
type Metric = (
    &'static str,
    &'static str,
    &'static str,
    fn(&StrategyResult) -> Option<f64>,
    bool,
);
const METRICS: [Metric; 4] = [
    (
        "sweep_completed",
        "share of requests completed",
        "completed / requests",
        |r| {
            Some(if r.requests > 0 {
                r.completed as f64 / r.requests as f64
            } else {
                0.0
            })
        },
        false,
    ),
    (
        "sweep_throughput",
        "throughput",
        "completed per minute",
        |r| Some(r.throughput_per_min),
        false,
    ),
    (
        "sweep_rate_limited",
        "429 responses",
        "429 responses",
        |r| Some(r.rate_limited as f64),
        true,
    ),
    // Over all requests, one never done waiting forever: a strategy that abandons work cannot
    // look quick by it (the p99 of the completed only made round robin, 5-30% done, look best).
    (
        "sweep_wait_p99",
        "p99 wait over all requests",
        "p99 wait over all requests (s)",
        |r| r.wait_all_p99_ms.map(|ms| ms / 1000.0),
        false,
    ),
];

/// What the p99-wait chart's band holds, and its note under the legend.
pub const WAIT_BAND: &str = "× under 99% done: p99 wait never reached";
/// See [`WAIT_BAND`].
pub const WAIT_NOTE: &str = "The p99 wait counts every request, one never done (failed, unservable, pending) as waiting forever. × in the band at the top: fewer than 99% were done there, so that p99 is never reached.";

/// Writes `sweep.csv`, the charts (share completed, throughput, 429s and p99 wait over all
/// requests against the first setting, one line per strategy and combination of the other
/// settings, each in a colour of its own; a p99 wait never reached is marked × in a band
/// above the rest) and `index.html` into `dir`.
pub fn write_sweep(sweep: &Sweep, dir: &Path, points: &[Point], answer: &str) -> Result<(), String> {
    let write = |name: &str, text: &str| {
        std::fs::write(dir.join(name), text)
            .map_err(|e| format!("cannot write the report file {}: {e}", dir.join(name).display()))
    };
    write("sweep.csv", &sweep_csv(sweep, points))?;
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
    let integer_x = !numeric || points.iter().all(|p| p.x.is_some_and(|x| x.fract() == 0.0));
    let durations = first.values.iter().all(|v| v.is_str());
    let x_desc = if numeric && durations {
        format!("{} (s)", first.path)
    } else if numeric {
        first.path.clone()
    } else {
        format!("{} (index of the value)", first.path)
    };
    let name = sweep.grid.base.name.clone();
    let mut charts = Vec::new();
    for (stem, title, y_desc, metric, counts) in METRICS {
        let mut lines: Vec<Line> = Vec::new();
        for (i, p) in points.iter().enumerate() {
            let rest: Vec<String> = sweep.grid.settings[1..]
                .iter()
                .zip(&p.values[1..])
                .map(|(s, v)| format!("{}={v}", s.path.rsplit('.').next().unwrap_or(&s.path)))
                .collect();
            let rest = rest.join(", ");
            for r in &p.results {
                let label = if rest.is_empty() {
                    r.strategy.clone()
                } else {
                    format!("{}, {rest}", r.strategy)
                };
                let line = match lines.iter_mut().position(|l| l.label == label) {
                    Some(k) => &mut lines[k],
                    None => {
                        let colour = lines.len();
                        lines.push(Line {
                            label,
                            colour,
                            dashed: false,
                            points: Vec::new(),
                            beyond: Vec::new(),
                        });
                        lines.last_mut().expect("just pushed")
                    }
                };
                match metric(r) {
                    Some(y) => line.points.push((x_of(i, p), y)),
                    None => line.beyond.push(x_of(i, p)),
                }
            }
        }
        let mut panel = Panel::lines(
            format!("{name}: {title} against {}", first.path),
            &x_desc,
            y_desc,
            lines,
        );
        panel.integer_x = integer_x;
        panel.integer_y = counts;
        if stem == "sweep_completed" {
            panel.y_max = Some(1.0);
        }
        if stem == "sweep_wait_p99" {
            panel.band = Some(WAIT_BAND.to_string());
            panel.note = Some(WAIT_NOTE.to_string());
        }
        write_chart(&dir.join(stem), &[panel]).map_err(|e| format!("report directory: {e}"))?;
        let svg =
            std::fs::read_to_string(dir.join(format!("{stem}.svg"))).map_err(|e| format!("report directory: {e}"))?;
        charts.push((stem, title, svg));
    }
    write("index.html", &sweep_html(&name, answer, &charts))
}

/// The sweep's page: the answer, a link to `sweep.csv`, and every chart inlined.
fn sweep_html(name: &str, answer: &str, charts: &[(&str, &str, String)]) -> String {
    let mut h = page_head(&format!("sweep of {name}"));
    h.push_str(&format!(
        "<h1>Sweep of {}</h1>\n<pre>{}</pre>\n<p>Every grid point and strategy: <a href=\"sweep.csv\">sweep.csv</a>.</p>\n",
        escape(name),
        escape(answer)
    ));
    for (stem, title, svg) in charts {
        h.push_str(&figure(stem, title, svg));
    }
    h.push_str("</body>\n</html>\n");
    h
}

/// The sweep's answer in words: per combination of the other settings, each strategy's first
/// value of the first setting meeting the demand with zero 429s (the largest met, when the
/// first setting is the demand itself), the whole topology at that value when the setting is
/// a topology's, the criterion in the workload's terms, and what the answer assumes.
pub fn answer(sweep: &Sweep, points: &[Point]) -> String {
    let first = &sweep.grid.settings[0];
    let base = &sweep.grid.base;
    let sessions = base.workload.session.is_some();
    let goal = match (sweep.closed, sessions) {
        (true, false) => "99% of the batch done within the horizon".to_string(),
        (true, true) => "99% of the sessions served within the horizon".to_string(),
        (false, false) => "99% of the requests' arrival rate served".to_string(),
        (false, true) => "99% of the sessions' arrival rate served".to_string(),
    };
    let numbers: Vec<Option<f64>> = points.iter().map(|p| p.x).collect();
    let numeric = numbers.iter().all(Option::is_some);
    let ascending = numeric && first.values.len() > 1 && {
        // The first setting's values in the order given (the grid varies it slowest).
        let per = points.len() / first.values.len().max(1);
        let xs: Vec<f64> = points.iter().step_by(per.max(1)).filter_map(|p| p.x).collect();
        xs.windows(2).all(|w| w[0] < w[1])
    };
    let which = if crate::sim::sweep::is_demand(&first.path) {
        format!("largest {} met", first.path)
    } else if ascending {
        format!("smallest {}", first.path)
    } else {
        format!("first {} in the order given", first.path)
    };
    let mut out = format!("{which} reaching {goal} with zero 429s:\n");
    let answers = sweep.smallest_meeting(points);
    let topology = first.path.starts_with("topology");
    let mut others: Option<&str> = None;
    for a in &answers {
        let indent = if a.others.is_empty() { "  " } else { "    " };
        if !a.others.is_empty() && others != Some(a.others.as_str()) {
            out.push_str(&format!("  with {}:\n", a.others));
            others = Some(&a.others);
        }
        let value = match (&a.value, a.topology) {
            (Some(v), Some((p, n))) if topology => format!(
                "{v} ({p} project{} over {n} account{} in all)",
                if p == 1 { "" } else { "s" },
                if n == 1 { "" } else { "s" }
            ),
            (Some(v), _) => v.clone(),
            (None, _) => "none in the sweep".to_string(),
        };
        out.push_str(&format!("{indent}{:<20} {value}\n", a.strategy));
    }
    out.push_str(&format!(
        "assuming the scenario's start ({}) and fresh quotas (nothing used before it); another start time can give another answer: set `start` in the scenario\n",
        base.calendar.start().to_rfc3339()
    ));
    out
}

/// The columns of `sweep.csv` after the settings' own.
pub const HEADER: &str = "strategy,requests,completed,completed_fraction,failed,unservable,pending,rate_limited,\
throughput_per_min,demanded_per_min,upper_bound_per_min,efficiency,makespan_s,wait_p50_ms,wait_p90_ms,wait_p99_ms,\
wait_max_ms,wait_all_p99_ms,latency_p50_ms,latency_p90_ms,latency_p99_ms,meets_demand\n";

/// `sweep.csv`: one row per grid point and strategy.
pub fn sweep_csv(sweep: &Sweep, points: &[Point]) -> String {
    let mut out = String::new();
    for s in &sweep.grid.settings {
        out.push_str(&csv_field(&s.path));
        out.push(',');
    }
    out.push_str(HEADER);
    for p in points {
        for r in &p.results {
            for v in &p.values {
                out.push_str(&csv_field(v));
                out.push(',');
            }
            let completed_fraction = if r.requests > 0 {
                round3(r.completed as f64 / r.requests as f64)
            } else {
                0.0
            };
            let makespan = r.makespan_s.map_or(String::new(), |m| m.to_string());
            let _ = writeln!(
                out,
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}",
                csv_field(&r.strategy),
                r.requests,
                r.completed,
                completed_fraction,
                r.failed,
                r.unservable,
                r.pending,
                r.rate_limited,
                r.throughput_per_min,
                round3(p.demanded_per_min),
                r.upper_bound_per_min,
                r.efficiency,
                makespan,
                r.wait_ms.p50,
                r.wait_ms.p90,
                r.wait_ms.p99,
                r.wait_ms.max,
                r.wait_all_p99_ms.map_or(String::new(), |w| w.to_string()),
                r.latency_ms.p50,
                r.latency_ms.p90,
                r.latency_ms.p99,
                p.meets(r, sweep.closed)
            );
        }
    }
    out
}
