//! The aligned comparison table printed by `run`.

use crate::metrics::RunResult;

/// Milliseconds as a short human duration.
fn human_ms(ms: f64) -> String {
    if ms < 1000.0 {
        format!("{ms:.0}ms")
    } else if ms < 60_000.0 {
        format!("{:.1}s", ms / 1000.0)
    } else if ms < 3_600_000.0 {
        format!("{:.1}m", ms / 60_000.0)
    } else {
        format!("{:.1}h", ms / 3_600_000.0)
    }
}

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
        rows.push(vec![
            x.strategy.clone(),
            x.completed.to_string(),
            x.failed.to_string(),
            x.unservable.to_string(),
            x.pending.to_string(),
            x.rate_limited.to_string(),
            x.rate_limited_by.rpm.to_string(),
            x.rate_limited_by.tpm.to_string(),
            x.rate_limited_by.rpd.to_string(),
            x.rate_limited_by.concurrency.to_string(),
            x.other_errors.to_string(),
            x.attempts.to_string(),
            format!("{:.2}", x.throughput_per_min),
            format!("{:.2}", x.upper_bound_per_min),
            format!("{:.3}", x.efficiency),
            human_ms(x.wait_ms.p50),
            human_ms(x.wait_ms.p99),
            human_ms(x.latency_ms.p50),
            human_ms(x.latency_ms.p99),
            x.makespan_s.map_or("-".into(), |m| human_ms(m * 1000.0)),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|c| rows.iter().map(|r| r[c].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = format!(
        "scenario {} (seed {}, {:.0} s simulated)\n",
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
        "429s = rate-limited responses (rpm/tpm/rpd/conc: by violated dimension); errors = other error responses;\n",
    );
    out.push_str(
        "eff = throughput / bound (the most any strategy could complete); wait = arrival to the successful send.\n",
    );
    out
}
