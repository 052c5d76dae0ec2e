//! `summary.md`: the comparison table in Markdown.

use crate::metrics::RunResult;

/// The run as a Markdown table.
pub fn to_markdown(r: &RunResult) -> String {
    let mut out = format!("# {} (seed {})\n\n", r.scenario, r.seed);
    out.push_str("| strategy | completed | failed | unservable | pending | 429s | rpm | tpm | rpd | conc. | other errors | attempts | done/min | bound/min | efficiency | wait p50 (ms) | wait p99 (ms) | latency p50 (ms) | latency p99 (ms) | makespan (s) |\n");
    out.push_str(
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for x in &r.results {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.2} | {:.2} | {:.3} | {} | {} | {} | {} | {} |\n",
            x.strategy.replace('|', "\\|"),
            x.completed,
            x.failed,
            x.unservable,
            x.pending,
            x.rate_limited,
            x.rate_limited_by.rpm,
            x.rate_limited_by.tpm,
            x.rate_limited_by.rpd,
            x.rate_limited_by.concurrency,
            x.other_errors,
            x.attempts,
            x.throughput_per_min,
            x.upper_bound_per_min,
            x.efficiency,
            x.wait_ms.p50,
            x.wait_ms.p99,
            x.latency_ms.p50,
            x.latency_ms.p99,
            x.makespan_s.map_or("–".to_string(), |m| m.to_string()),
        ));
    }
    out.push_str("\n429s count rate-limited responses (by violated dimension in the next columns); efficiency = throughput / the most any strategy could complete.\n");
    out
}
