//! `summary.md`: the comparison table in Markdown, and the summary columns every table shares.

use crate::sim::metrics::{RunResult, StrategyResult};

/// Milliseconds as a short human duration: `850ms`, `1.7s`, `3.6m`, `1.9h`.
pub fn human_ms(ms: f64) -> String {
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

/// Column headers of the summary tables (Markdown and HTML).
pub const SUMMARY_HEADER: [&str; 21] = [
    "strategy",
    "completed",
    "failed",
    "unservable",
    "pending",
    "429s",
    "rpm",
    "tpm",
    "rpd",
    "tpd",
    "conc.",
    "other errors",
    "attempts",
    "done/min",
    "bound/min",
    "efficiency",
    "wait p50",
    "wait p99",
    "latency p50",
    "latency p99",
    "makespan",
];

/// Where the HTML summary splits [`SUMMARY_HEADER`] in two tables narrow enough for a
/// 1280-pixel window (the counts, then attempts, rates and times).
pub const RATES_FROM: usize = 12;

/// What the columns mean, one sentence a line, under every summary table.
pub const NOTES: [&str; 4] = [
    "Every request is exactly one of completed, failed (given up), unservable (could never fit) or pending (unfinished when the run stopped).",
    "429s = rate-limited responses; rpm/tpm/rpd/tpd/conc. split them by violated dimension (a response violating several counts in each); other errors = 400, 403, 404 and 503 responses.",
    "done/min = completed per minute of the span (a closed batch: the longer of its makespan and the shortest possible makespan, so giving up early never raises it); bound/min = the most any strategy could complete; efficiency = done/min / bound/min, never above 1.",
    "wait = arrival to the send of the attempt that succeeded; latency = arrival to completion (both over completed requests); makespan = until a closed batch's last request ended.",
];

/// The cells of one strategy's row, matching [`SUMMARY_HEADER`]; times in human units.
pub fn summary_cells(x: &StrategyResult) -> Vec<String> {
    vec![
        x.strategy.clone(),
        x.completed.to_string(),
        x.failed.to_string(),
        x.unservable.to_string(),
        x.pending.to_string(),
        x.rate_limited.to_string(),
        x.rate_limited_by.rpm.to_string(),
        x.rate_limited_by.tpm.to_string(),
        x.rate_limited_by.rpd.to_string(),
        x.rate_limited_by.tpd.to_string(),
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
        x.makespan_s.map_or("–".to_string(), |m| human_ms(m * 1000.0)),
    ]
}

/// The run as a Markdown table.
pub fn to_markdown(r: &RunResult) -> String {
    let mut out = format!("# {} (seed {})\n\n", r.scenario, r.seed);
    if let Some(f) = &r.fleet {
        out.push_str(&format!("Each strategy as {f}.\n\n"));
    }
    out.push_str(&format!("| {} |\n", SUMMARY_HEADER.join(" | ")));
    out.push_str(&format!("|---|{}\n", "---:|".repeat(SUMMARY_HEADER.len() - 1)));
    for x in &r.results {
        let cells: Vec<String> = summary_cells(x).iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
    for note in NOTES {
        out.push_str(note);
        out.push('\n');
    }
    out
}

/// `compare`'s table: every scenario × every strategy (completed, 429s, wait p99, efficiency),
/// then, per scenario, whether flux's claim holds.
pub fn comparison(runs: &[(RunResult, crate::sim::compare::Claim)]) -> String {
    let mut out = String::from(
        "| scenario | strategy | completed | failed | 429s | wait p99 | efficiency |\n|---|---|--:|--:|--:|--:|--:|\n",
    );
    for (r, _) in runs {
        for x in &r.results {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {} | {} | {:.3} |\n",
                r.scenario,
                x.strategy,
                x.completed,
                x.failed,
                x.rate_limited,
                human_ms(x.wait_ms.p99),
                x.efficiency
            ));
        }
    }
    out.push('\n');
    for (r, c) in runs {
        let best = c.best_completed.max(1) as f64;
        let rows: Vec<String> = c
            .flux
            .iter()
            .map(|(name, done, limited, ok)| {
                format!(
                    "{name} {:.1}%{} {}",
                    100.0 * *done as f64 / best,
                    if *limited > 0 {
                        format!(" ({limited} 429s)")
                    } else {
                        String::new()
                    },
                    if *ok { "✓" } else { "✗" }
                )
            })
            .collect();
        out.push_str(&format!(
            "- {}: best other {} ({} completed); {}\n",
            r.scenario,
            c.best_other,
            c.best_completed,
            rows.join("; ")
        ));
    }
    out
}
