//! Trace workloads: the CSV of recorded arrivals a `kind = "trace"` workload replays.

use std::path::Path;

use super::ScenarioError;
use crate::core::server::Model;
use crate::core::workload::TraceRow;

/// Reads a trace CSV: a header `arrival_s,input_tokens,output_tokens[,model]`, then one row per
/// request (arrival offset in seconds, exact to the nanosecond). Rows are sorted by arrival.
pub fn read_trace(path: &Path, models: &[Model]) -> Result<Vec<TraceRow>, ScenarioError> {
    let shown = path.display();
    let text = super::read_capped(path, super::validate::max::TRACE_BYTES, "trace")?;
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
    let header: Vec<String> = match lines.next() {
        Some((_, h)) => h.split(',').map(|c| c.trim().to_string()).collect(),
        None => {
            return Err(ScenarioError(format!(
                "{shown}: empty trace; expected a header `arrival_s,input_tokens,output_tokens[,model]`"
            )))
        }
    };
    let with_model = match header.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["arrival_s", "input_tokens", "output_tokens"] => false,
        ["arrival_s", "input_tokens", "output_tokens", "model"] => true,
        _ => {
            return Err(ScenarioError(format!(
                "{shown}:1: expected the header `arrival_s,input_tokens,output_tokens[,model]`, got {:?}",
                header.join(",")
            )))
        }
    };
    let mut rows = Vec::new();
    for (i, line) in lines {
        let n = i + 1;
        let cells: Vec<&str> = line.split(',').map(str::trim).collect();
        if cells.len() != header.len() {
            return Err(ScenarioError(format!(
                "{shown}:{n}: expected {} columns, got {}",
                header.len(),
                cells.len()
            )));
        }
        let arrival = crate::core::time::parse_decimal_scaled(cells[0], crate::core::time::SECOND as u128)
            .and_then(|v| u64::try_from(v).ok())
            .ok_or_else(|| {
                ScenarioError(format!(
                    "{shown}:{n}: arrival_s: expected non-negative seconds such as 12.5, got {:?}",
                    cells[0]
                ))
            })?;
        let int = |j: usize, name: &str| {
            cells[j].parse::<u64>().map_err(|_| {
                ScenarioError(format!(
                    "{shown}:{n}: {name}: expected a non-negative integer, got {:?}",
                    cells[j]
                ))
            })
        };
        let (input_tokens, output_tokens) = (int(1, "input_tokens")?, int(2, "output_tokens")?);
        for (v, name, limit) in [
            (input_tokens, "input_tokens", super::validate::max::INPUT_TOKENS),
            (output_tokens, "output_tokens", super::validate::max::OUTPUT_TOKENS),
        ] {
            if v > limit {
                return Err(ScenarioError(format!(
                    "{shown}:{n}: {name}: {v} is more than the most allowed, {limit}"
                )));
            }
        }
        let model = if with_model {
            Some(
                models
                    .iter()
                    .position(|m| m.name == cells[3])
                    .ok_or_else(|| ScenarioError(format!("{shown}:{n}: model: unknown model {:?}", cells[3])))?,
            )
        } else {
            None
        };
        rows.push(TraceRow {
            arrival,
            input_tokens,
            output_tokens,
            model,
        });
    }
    if rows.is_empty() {
        return Err(ScenarioError(format!("{shown}: the trace has a header but no rows")));
    }
    rows.sort_by_key(|r| r.arrival);
    Ok(rows)
}
