//! The JSON of `run --format json` (a public interface: fields may be added, never renamed).

use crate::sim::metrics::RunResult;

/// Pretty-printed JSON with a trailing newline; byte-identical for identical results.
pub fn to_json(r: &RunResult) -> String {
    let mut s = serde_json::to_string_pretty(r).expect("results serialize");
    s.push('\n');
    s
}
