//! `flux-sim sweep`: run a scenario over a grid of settings (`--set PATH=VALUES`), in parallel,
//! for capacity planning ("how many projects do I need?").

use std::fmt::Write as _;
use std::path::Path;

use rayon::prelude::*;
use serde::Serialize;

use crate::export::csv::csv_field;
use crate::metrics::StrategyResult;
use crate::run::run;
use crate::scenario::Scenario;
use crate::workload::Arrivals;

/// One `--set`: a path into the scenario file and the values to try.
#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// The path as written (`topology.projects`, `models."gemini-2.5-flash".rpm`).
    pub path: String,
    segments: Vec<Segment>,
    /// The values, as TOML values.
    pub values: Vec<toml::Value>,
}

#[derive(Debug, Clone, PartialEq)]
enum Segment {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Result<Vec<Segment>, String> {
    let bad = || {
        format!("--set: bad path {path:?}; expected keys separated by dots, e.g. workload.rate, topology.accounts[0].projects or models.\"gemini-2.5-flash\".rpm")
    };
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        let (key, after) = if let Some(r) = rest.strip_prefix('"') {
            let end = r.find('"').ok_or_else(bad)?;
            (r[..end].to_string(), &r[end + 1..])
        } else {
            let end = rest.find(['.', '[']).unwrap_or(rest.len());
            (rest[..end].to_string(), &rest[end..])
        };
        if key.is_empty() {
            return Err(bad());
        }
        out.push(Segment::Key(key));
        rest = after;
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']').ok_or_else(bad)?;
            out.push(Segment::Index(r[..end].parse().map_err(|_| bad())?));
            rest = &r[end + 1..];
        }
        match rest.strip_prefix('.') {
            Some(r) if !r.is_empty() => rest = r,
            Some(_) => return Err(bad()),
            None if rest.is_empty() => {}
            None => return Err(bad()),
        }
    }
    Ok(out)
}

fn parse_value(text: &str) -> toml::Value {
    let t = text.trim();
    if let Ok(i) = t.replace('_', "").parse::<i64>() {
        toml::Value::Integer(i)
    } else if let Ok(f) = t.parse::<f64>() {
        toml::Value::Float(f)
    } else if let Ok(b) = t.parse::<bool>() {
        toml::Value::Boolean(b)
    } else {
        toml::Value::String(t.trim_matches('"').to_string())
    }
}

impl Setting {
    /// Parses `PATH=VALUES` where VALUES is `A..B` (integers, inclusive) or `v1,v2,...`.
    pub fn parse(arg: &str) -> Result<Setting, String> {
        let (path, values) = arg
            .split_once('=')
            .ok_or_else(|| format!("--set: expected PATH=VALUES such as workload.rate=10,20,40, got {arg:?}"))?;
        let segments = parse_path(path.trim())?;
        let values = if let Some((a, b)) = values.split_once("..") {
            let (a, b): (i64, i64) = match (a.trim().parse(), b.trim().parse()) {
                (Ok(a), Ok(b)) if a <= b && b - a < 10_000 => (a, b),
                _ => {
                    return Err(format!(
                        "--set {path}: a range is two integers A..B with A <= B (at most 10,000 values), got {values:?}"
                    ))
                }
            };
            (a..=b).map(toml::Value::Integer).collect()
        } else {
            values.split(',').map(parse_value).collect::<Vec<_>>()
        };
        if values.is_empty()
            || values
                .iter()
                .any(|v| matches!(v, toml::Value::String(s) if s.is_empty()))
        {
            return Err(format!("--set {path}: no value given"));
        }
        Ok(Setting {
            path: path.trim().to_string(),
            segments,
            values,
        })
    }
}

/// One point of the grid with each strategy's result.
#[derive(Debug, Clone, Serialize)]
pub struct Point {
    /// The value of each setting, in `--set` order, as written in TOML.
    pub values: Vec<String>,
    /// The value of the first setting as a number, if it is one.
    pub x: Option<f64>,
    /// Requests per minute the workload demands (arrivals over the duration; for a closed
    /// batch, the batch over the shortest possible makespan).
    pub demanded_per_min: f64,
    /// Requests in the workload.
    pub requests: u64,
    /// Each strategy's result.
    pub results: Vec<StrategyResult>,
}

impl Point {
    /// Whether `r` met the demand: 99% of the requests done (closed) or 99% of the demanded
    /// throughput (open), with zero 429s.
    pub fn meets(&self, r: &StrategyResult, closed: bool) -> bool {
        let enough = if closed {
            r.completed as f64 >= 0.99 * self.requests as f64
        } else {
            r.throughput_per_min >= 0.99 * self.demanded_per_min
        };
        enough && r.rate_limited == 0
    }
}

/// A sweep: the scenario's document, the settings and where relative paths are anchored.
pub struct Sweep {
    doc: toml::Value,
    path: std::path::PathBuf,
    /// The settings, in `--set` order.
    pub settings: Vec<Setting>,
    /// Whether the workload is a closed batch.
    pub closed: bool,
}

impl Sweep {
    /// Reads the scenario file and checks every grid point loads (so bad paths or values fail
    /// before anything runs).
    pub fn load(path: &Path, settings: Vec<Setting>) -> Result<Sweep, String> {
        let text =
            std::fs::read_to_string(path).map_err(|e| format!("{}: cannot read scenario: {e}", path.display()))?;
        let base = Scenario::parse(&text, path).map_err(|e| e.to_string())?;
        let table: toml::Table = text.parse().map_err(|e| format!("{}: {e}", path.display()))?;
        if settings.is_empty() {
            return Err("--set: give at least one PATH=VALUES".into());
        }
        let sweep = Sweep {
            doc: toml::Value::Table(table),
            path: path.to_path_buf(),
            closed: matches!(base.workload.arrivals, Arrivals::Closed { .. }),
            settings,
        };
        for combo in sweep.grid() {
            sweep.scenario(&combo)?;
        }
        Ok(sweep)
    }

    /// Every combination of values, the last setting varying fastest.
    pub fn grid(&self) -> Vec<Vec<toml::Value>> {
        let mut grid = vec![Vec::new()];
        for s in &self.settings {
            grid = grid
                .into_iter()
                .flat_map(|prefix| s.values.iter().map(move |v| [prefix.clone(), vec![v.clone()]].concat()))
                .collect();
        }
        grid
    }

    /// The scenario at one grid point, validated like a file.
    pub fn scenario(&self, combo: &[toml::Value]) -> Result<Scenario, String> {
        let mut doc = self.doc.clone();
        for (s, v) in self.settings.iter().zip(combo) {
            apply_path(s, &mut doc, v)?;
        }
        let text = toml::to_string(&doc).map_err(|e| format!("--set: cannot write the scenario: {e}"))?;
        Scenario::parse(&text, &self.path).map_err(|e| {
            let shown: Vec<String> = self
                .settings
                .iter()
                .zip(combo)
                .map(|(s, v)| format!("{}={v}", s.path))
                .collect();
            format!(
                "with {}: {}",
                shown.join(" "),
                e.0.replacen(&format!("{}:", self.path.display()), "", 1)
                    .trim_start_matches(|c: char| c.is_ascii_digit() || c == ':')
                    .trim()
            )
        })
    }

    /// Runs every grid point (in parallel), calling `tick` after each.
    pub fn run(&self, tick: &(dyn Fn() + Sync)) -> Vec<Point> {
        self.grid()
            .par_iter()
            .map(|combo| {
                let s = self.scenario(combo).expect("checked by load");
                let bound = crate::bound::upper_bound(&s, s.seed);
                let out = run(&s, &s.strategies, s.seed, None, 1);
                let requests = out.results.first().map_or(0, |r| r.requests);
                let demanded_per_min = match s.workload.arrivals {
                    Arrivals::Closed { .. } => bound.per_min,
                    _ => requests as f64 * crate::time::MINUTE as f64 / s.workload.duration.max(1) as f64,
                };
                tick();
                Point {
                    values: combo.iter().map(|v| v.to_string()).collect(),
                    x: combo
                        .first()
                        .and_then(|v| v.as_integer().map(|i| i as f64).or(v.as_float())),
                    demanded_per_min,
                    requests,
                    results: out.results,
                }
            })
            .collect()
    }

    /// Writes `sweep.csv` and the charts (throughput, 429s and p99 wait against the first
    /// setting, one line per strategy and combination of the other settings) into `dir`.
    pub fn write_report(&self, dir: &Path, points: &[Point]) -> Result<(), String> {
        std::fs::write(dir.join("sweep.csv"), self.csv(points))
            .map_err(|e| format!("--out: cannot write {}: {e}", dir.join("sweep.csv").display()))?;
        let first = &self.settings[0];
        let numeric = points.iter().all(|p| p.x.is_some());
        let x_of = |i: usize, p: &Point| {
            if numeric {
                p.x.unwrap_or(0.0)
            } else {
                (i / self.settings[1..].iter().map(|s| s.values.len()).product::<usize>()) as f64
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
                self.path
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
            let mut lines: Vec<crate::export::plot::Line> = Vec::new();
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
                            lines.push(crate::export::plot::Line {
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
            let panel = crate::export::plot::Panel {
                title: format!("{name}: {title} against {}", first.path),
                x_desc: x_desc.clone(),
                y_desc: y_desc.into(),
                lines,
                x_label: crate::export::plot::plain_label,
                y_min: 0.0,
            };
            crate::export::plot::write_chart(&dir.join(stem), &[panel]).map_err(|e| format!("--out: {e}"))?;
        }
        Ok(())
    }

    /// For each strategy, the smallest value of the first setting at which it meets the demand
    /// (99% of demanded throughput, or of a closed batch, with zero 429s), if any.
    pub fn smallest_meeting(&self, points: &[Point]) -> Vec<(String, Option<String>)> {
        let mut out: Vec<(String, Option<String>)> = Vec::new();
        for p in points {
            for r in &p.results {
                let met = self.meets_everywhere(points, p, r);
                match out.iter_mut().find(|(n, _)| *n == r.strategy) {
                    Some((_, found)) => {
                        if found.is_none() && met {
                            *found = Some(p.values[0].clone());
                        }
                    }
                    None => out.push((r.strategy.clone(), met.then(|| p.values[0].clone()))),
                }
            }
        }
        out
    }

    /// Whether `r` meets the demand at every point sharing `p`'s first value.
    fn meets_everywhere(&self, points: &[Point], p: &Point, r: &StrategyResult) -> bool {
        points.iter().filter(|q| q.values[0] == p.values[0]).all(|q| {
            q.results
                .iter()
                .filter(|x| x.strategy == r.strategy)
                .all(|x| q.meets(x, self.closed))
        })
    }

    /// `sweep.csv`: one row per grid point and strategy.
    pub fn csv(&self, points: &[Point]) -> String {
        let mut out = String::new();
        for s in &self.settings {
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
                    crate::metrics::round3(p.demanded_per_min),
                    r.upper_bound_per_min,
                    r.efficiency,
                    r.wait_ms.p50,
                    r.wait_ms.p99,
                    p.meets(r, self.closed)
                );
            }
        }
        out
    }
}

fn apply_path(s: &Setting, root: &mut toml::Value, value: &toml::Value) -> Result<(), String> {
    let missing = |what: &str| format!("--set {}: the scenario has no {what}", s.path);
    let (last, parents) = s.segments.split_last().expect("a path has a segment");
    let mut cur = root;
    for seg in parents {
        cur = match seg {
            Segment::Key(k) => cur
                .as_table_mut()
                .ok_or_else(|| missing(&format!("table at `{k}`")))?
                .get_mut(k)
                .ok_or_else(|| missing(&format!("`{k}`")))?,
            Segment::Index(i) => cur
                .as_array_mut()
                .ok_or_else(|| missing(&format!("list at [{i}]")))?
                .get_mut(*i)
                .ok_or_else(|| missing(&format!("element [{i}]")))?,
        };
    }
    match last {
        Segment::Key(k) => {
            cur.as_table_mut()
                .ok_or_else(|| missing(&format!("table holding `{k}`")))?
                .insert(k.clone(), value.clone());
        }
        Segment::Index(i) => {
            *cur.as_array_mut()
                .and_then(|a| a.get_mut(*i))
                .ok_or_else(|| missing(&format!("element [{i}]")))? = value.clone();
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_parse_ranges_lists_and_quoted_paths() {
        let s = Setting::parse("topology.projects=1..3").unwrap();
        assert_eq!(
            s.values,
            vec![
                toml::Value::Integer(1),
                toml::Value::Integer(2),
                toml::Value::Integer(3)
            ]
        );
        let s = Setting::parse("models.\"gemini-2.5-flash\".rpm=5,10").unwrap();
        assert_eq!(
            s.segments,
            vec![
                Segment::Key("models".into()),
                Segment::Key("gemini-2.5-flash".into()),
                Segment::Key("rpm".into())
            ]
        );
        let s = Setting::parse("topology.accounts[1].projects=2").unwrap();
        assert_eq!(s.segments[2], Segment::Index(1));
        assert_eq!(
            Setting::parse("server.window=fixed,bucket").unwrap().values[1],
            toml::Value::String("bucket".into())
        );
        assert!(Setting::parse("workload.rate").is_err());
        assert!(Setting::parse("workload.rate=5..2").is_err());
        assert!(Setting::parse("a..b=1").is_err());
        assert!(Setting::parse("a[x]=1").is_err());
        assert!(Setting::parse("a=").is_err());
    }
}
