//! `summary.md`: the comparison table in Markdown, and the summary columns every table shares.

use crate::sim::metrics::{RunResult, StrategyResult};

/// Column headers of the summary tables (Markdown and HTML).
pub const SUMMARY_HEADER: [&str; 20] = [
    "strategy",
    "completed",
    "failed",
    "unservable",
    "pending",
    "429s",
    "rpm",
    "tpm",
    "rpd",
    "conc.",
    "other errors",
    "attempts",
    "done/min",
    "bound/min",
    "efficiency",
    "wait p50 (ms)",
    "wait p99 (ms)",
    "latency p50 (ms)",
    "latency p99 (ms)",
    "makespan (s)",
];

/// The cells of one strategy's row, matching [`SUMMARY_HEADER`].
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
        x.rate_limited_by.concurrency.to_string(),
        x.other_errors.to_string(),
        x.attempts.to_string(),
        format!("{:.2}", x.throughput_per_min),
        format!("{:.2}", x.upper_bound_per_min),
        format!("{:.3}", x.efficiency),
        x.wait_ms.p50.to_string(),
        x.wait_ms.p99.to_string(),
        x.latency_ms.p50.to_string(),
        x.latency_ms.p99.to_string(),
        x.makespan_s.map_or("–".to_string(), |m| m.to_string()),
    ]
}

/// The run as a Markdown table.
pub fn to_markdown(r: &RunResult) -> String {
    let mut out = format!("# {} (seed {})\n\n", r.scenario, r.seed);
    out.push_str(&format!("| {} |\n", SUMMARY_HEADER.join(" | ")));
    out.push_str(&format!("|---|{}\n", "---:|".repeat(SUMMARY_HEADER.len() - 1)));
    for x in &r.results {
        let cells: Vec<String> = summary_cells(x).iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push_str("\n429s count rate-limited responses (by violated dimension in the next columns); efficiency = throughput / the most any strategy could complete.\n");
    out
}
