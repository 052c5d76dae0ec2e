//! The sweep's setting editor: `--set PATH=VALUES` parsed, and a scenario file's TOML edited at
//! PATH for every point of the grid, each point validated like a file of its own.

use std::path::{Path, PathBuf};

use super::Scenario;

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
        format!("bad path {path:?}; expected keys separated by dots, e.g. workload.rate, topology.accounts[0].projects or models.\"gemini-2.5-flash\".rpm")
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
            .ok_or_else(|| format!("expected PATH=VALUES such as workload.rate=10,20,40, got {arg:?}"))?;
        let segments = parse_path(path.trim())?;
        let values = if let Some((a, b)) = values.split_once("..") {
            let (a, b): (i64, i64) = match (a.trim().parse(), b.trim().parse()) {
                (Ok(a), Ok(b)) if a <= b && b - a < 10_000 => (a, b),
                _ => {
                    return Err(format!(
                        "{path}: a range is two integers A..B with A <= B (at most 10,000 values), got {values:?}"
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
            return Err(format!("{path}: no value given"));
        }
        Ok(Setting {
            path: path.trim().to_string(),
            segments,
            values,
        })
    }
}

/// Why a grid cannot be made.
#[derive(Debug, Clone, PartialEq)]
pub enum GridError {
    /// The scenario file cannot be read or is not valid (the message names the file).
    Scenario(String),
    /// A setting is wrong: its path, a value, or the scenario one of its points makes.
    Setting(String),
    /// More points than allowed.
    TooManyPoints {
        /// Points of the grid (saturating).
        points: u64,
        /// Values per setting, `2 x 3`.
        sizes: String,
        /// The most allowed.
        most: u64,
    },
}

/// A scenario file and the settings to vary in it: the grid of a sweep.
pub struct Grid {
    doc: toml::Value,
    path: PathBuf,
    /// The scenario as the file has it.
    pub base: Scenario,
    /// The settings, in `--set` order.
    pub settings: Vec<Setting>,
}

impl Grid {
    /// The scenario file the grid varies.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Reads the scenario file, counts the grid (refusing more than `max_points`) and checks
    /// every grid point loads (so bad paths or values fail before anything runs).
    pub fn load(path: &Path, settings: Vec<Setting>, max_points: u64) -> Result<Grid, GridError> {
        let text = super::read_capped(path, super::validate::max::SCENARIO_BYTES, "scenario")
            .map_err(|e| GridError::Scenario(e.0))?;
        let base = Scenario::parse(&text, path).map_err(|e| GridError::Scenario(e.to_string()))?;
        let table: toml::Table = text
            .parse()
            .map_err(|e| GridError::Scenario(format!("{}: {e}", path.display())))?;
        if settings.is_empty() {
            return Err(GridError::Setting("give at least one PATH=VALUES".into()));
        }
        for (i, s) in settings.iter().enumerate() {
            if settings[..i].iter().any(|o| o.segments == s.segments) {
                return Err(GridError::Setting(format!(
                    "{}: the same setting is given twice; give all its values at once, e.g. {}=1,2,3",
                    s.path, s.path
                )));
            }
        }
        // Count before building anything: a 10^12-point grid must be refused, not allocated.
        let count = settings
            .iter()
            .fold(1u64, |n, s| n.saturating_mul(s.values.len() as u64));
        if count > max_points {
            let sizes: Vec<String> = settings.iter().map(|s| s.values.len().to_string()).collect();
            return Err(GridError::TooManyPoints {
                points: count,
                sizes: sizes.join(" x "),
                most: max_points,
            });
        }
        let grid = Grid {
            doc: toml::Value::Table(table),
            path: path.to_path_buf(),
            base,
            settings,
        };
        for i in 0..grid.len() {
            grid.scenario(&grid.point(i)).map_err(GridError::Setting)?;
        }
        Ok(grid)
    }

    /// How many points the grid has.
    pub fn len(&self) -> usize {
        self.settings.iter().map(|s| s.values.len()).product()
    }

    /// Whether the grid has no point (never: every setting has a value).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The `i`-th combination of values, the last setting varying fastest (made on demand, so
    /// the grid is never held in memory whole).
    pub fn point(&self, mut i: usize) -> Vec<toml::Value> {
        let mut combo = vec![toml::Value::Boolean(false); self.settings.len()];
        for (slot, s) in combo.iter_mut().zip(&self.settings).rev() {
            *slot = s.values[i % s.values.len()].clone();
            i /= s.values.len();
        }
        combo
    }

    /// The scenario at one grid point, validated like a file.
    pub fn scenario(&self, combo: &[toml::Value]) -> Result<Scenario, String> {
        let mut doc = self.doc.clone();
        for (s, v) in self.settings.iter().zip(combo) {
            apply_path(s, &mut doc, v)?;
        }
        let text = toml::to_string(&doc).map_err(|e| format!("cannot write the scenario: {e}"))?;
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
}

fn apply_path(s: &Setting, root: &mut toml::Value, value: &toml::Value) -> Result<(), String> {
    let missing = |what: &str| format!("{}: the scenario has no {what}", s.path);
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
