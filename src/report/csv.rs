//! `timeseries.csv`: per strategy, per simulated minute.

use crate::sim::metrics::RunResult;
use crate::sim::timeline::Details;

/// The CSV header.
pub const HEADER: &str = "strategy,minute,completed,completed_so_far,upper_bound_so_far,rate_limited,rate_limited_rpm,rate_limited_tpm,rate_limited_rpd,rate_limited_tpd,rate_limited_concurrency,rate_limited_capacity,rate_limited_spend,input_tokens,in_flight,queued";

/// The time series of every strategy of `run`, in run order. `bounds[i][m]` is the most
/// strategy `i` could have completed by the end of minute `m` (the chart's dashed line).
pub fn timeseries_csv(run: &RunResult, details: &[Details], bounds: &[&[u64]]) -> String {
    let mut out = format!("{HEADER}\n");
    for (i, (r, d)) in run.results.iter().zip(details).enumerate() {
        let bound = bounds.get(i).copied().unwrap_or(&[]);
        let mut so_far = 0;
        for m in &d.minutes {
            let by = &m.rate_limited;
            so_far += m.completed;
            let most = bound.get(m.minute as usize).copied().unwrap_or(u64::MAX);
            out.push_str(&format!(
                "{},{},{},{},{},{},{},{},{},{},{},{},{},{},{},{}\n",
                csv_field(&r.strategy),
                m.minute,
                m.completed,
                so_far,
                most,
                m.rate_limited_responses,
                by.rpm,
                by.tpm,
                by.rpd,
                by.tpd,
                by.concurrency,
                by.capacity,
                by.spend,
                m.input_tokens,
                m.in_flight,
                m.queued
            ));
        }
    }
    out
}

/// Quotes a field when it holds a comma, quote or line break.
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
