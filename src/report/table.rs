//! The aligned comparison table printed by `run`.

use super::markdown::summary_cells;
use crate::sim::metrics::RunResult;

/// The table: one row per strategy, then a line explaining the columns.
pub fn to_table(r: &RunResult) -> String {
    let header = [
        "strategy",
        "done",
        "failed",
        "unserv",
        "pending",
        "429s",
        "rpm",
        "tpm",
        "rpd",
        "tpd",
        "conc",
        "errors",
        "attempts",
        "done/min",
        "bound/min",
        "eff",
        "wait p50",
        "wait p99",
        "lat p50",
        "lat p99",
        "makespan",
    ];
    let mut rows: Vec<Vec<String>> = vec![header.iter().map(|s| s.to_string()).collect()];
    for x in &r.results {
        let mut row = summary_cells(x);
        if x.makespan_s.is_none() {
            row[20] = "-".into();
        }
        rows.push(row);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let fleet = r.fleet.as_deref().map_or(String::new(), |f| format!("; {f}"));
    let mut out = format!(
        "scenario {} (seed {}, {:.0} s simulated{fleet})\n",
        r.scenario, r.seed, r.simulated_seconds
    );
    for row in &rows {
        let cells: Vec<String> = row
            .iter()
            .enumerate()
            .map(|(c, v)| {
                if c == 0 {
                    format!("{v:<w$}", w = widths[c])
                } else {
                    format!("{v:>w$}", w = widths[c])
                }
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out.push_str(
        "429s = rate-limited responses (rpm/tpm/rpd/tpd/conc: by violated dimension); errors = other error responses;\n",
    );
    out.push_str(
        "done/min over the span (a closed batch: at least its shortest possible makespan); eff = done/min / bound/min;\n",
    );
    out.push_str("bound = the most any strategy could complete; wait = arrival to the successful send.\n");
    if r.results.iter().any(|x| x.sessions.is_some()) {
        out.push_str("Live sessions: done = sessions the client closed; wait = time waiting to connect.\n");
        for x in &r.results {
            if let Some(s) = &x.sessions {
                let used = s
                    .slot_utilisation
                    .map_or(String::new(), |u| format!(", slots {:.0}% used", u * 100.0));
                out.push_str(&format!(
                    "  {}: {} closed 1011 (quota), {} ended 1008 (lifetime), {} ended at the length cap{used}\n",
                    x.strategy, s.closes_1011, s.ends_1008, s.ends_cap
                ));
            }
        }
    }
    out
}
