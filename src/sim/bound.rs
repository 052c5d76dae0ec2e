//! The upper bound: the most requests any strategy could complete under the scenario's quotas,
//! its workload and its concurrency, whatever it does.
//!
//! `capacity(T)` bounds the requests admitted in `[0, T]`. Time is cut at each daily reset into
//! day segments; in a segment of length `L` each budget admits at most
//! - `rpm × w(L)` requests and `tpm × w(L)` tokens, where `w(L)` is how many per-minute windows
//!   the segment can hold: `⌊L/60 s⌋ + 1` for sliding windows, the calendar minutes it touches
//!   for fixed ones, `1 + L/60 s` for buckets (a full bucket plus its refill);
//! - its RPD (less what was spent before the start, on the first day);
//! - `concurrent × (1 + L / E[latency])` requests, and a closed batch's workers likewise.
//!
//! Tokens become requests by taking the smallest requests first (no strategy can do better).
//! A segment admits the least of these; the run admits the sum over segments, but no more than
//! all segments' tokens allow, nor than the requests that exist (that could ever fit).
//! Budgets are summed over every model the workload or a strategy's fallback chain may use.
//! The concurrency terms use the expected latency, so they hold on average rather than for
//! every draw; the rest are hard bounds.
//!
//! Open workloads: the bound is `capacity(duration)` per minute of the duration. Closed
//! batches: the bound is `M / T*`, where `T*` is the smallest `T` with `capacity(T) ≥ M`
//! (the shortest possible makespan), found by bisection.

use crate::core::ledger::{Limits, WindowKind};
use crate::core::time::{Calendar, Nanos, MINUTE, SECOND};
use crate::core::workload::{Arrivals, ModelChoice, RequestStream};
use crate::scenario::Scenario;

/// The bound of one scenario.
#[derive(Debug, Clone, PartialEq)]
pub struct Bound {
    /// Requests per minute no strategy can beat.
    pub per_min: f64,
    /// Closed batches: the shortest possible makespan (0 for open workloads).
    pub best_span: Nanos,
}

struct Capacity<'a> {
    calendar: &'a Calendar,
    window: WindowKind,
    budgets: Vec<Limits>,
    rpd_used: Vec<u64>,
    /// The servable requests' TPM costs as (cost, how many), smallest first, with the
    /// requests and tokens of all smaller costs: memory grows with distinct costs, not requests.
    costs: Vec<CostGroup>,
    workers: Option<u64>,
    mean_latency: f64,
}

const INF: u128 = u128::MAX / 4;

#[derive(Debug, Clone, Copy)]
struct CostGroup {
    cost: u64,
    count: u64,
    /// Requests and tokens of all cheaper groups.
    requests_before: u128,
    tokens_before: u128,
}

impl Capacity<'_> {
    fn windows(&self, start: Nanos, len: Nanos) -> (u128, u128) {
        match self.window {
            WindowKind::Sliding => ((len / MINUTE) as u128 + 1, 1),
            WindowKind::Fixed => {
                let first = self.calendar.minute_start(start);
                let last = self.calendar.minute_start(start + len);
                (((last - first) / MINUTE as i128) as u128 + 1, 1)
            }
            // 1 + L/W, as a fraction (numerator, denominator).
            WindowKind::Bucket => (MINUTE as u128 + len as u128, MINUTE as u128),
        }
    }

    /// The most requests whose costs add up to at most `tokens` (cheapest first).
    fn count_for_tokens(&self, tokens: u128) -> u128 {
        let i = self.costs.partition_point(|g| g.tokens_before <= tokens);
        let Some(g) = i.checked_sub(1).map(|i| self.costs[i]) else {
            return 0;
        };
        let partial = match g.cost {
            0 => g.count as u128,
            c => ((tokens - g.tokens_before) / c as u128).min(g.count as u128),
        };
        g.requests_before + partial
    }

    fn capacity(&self, t: Nanos) -> u128 {
        let mut total = 0u128;
        let mut all_tokens = 0u128;
        let mut a = 0;
        let mut first = true;
        loop {
            let day_end = self.calendar.next_day_start(a);
            let b = day_end.min(t);
            let len = b - a;
            let (wn, wd) = self.windows(a, len);
            let (mut rpm, mut tpm, mut rpd, mut conc) = (0u128, 0u128, 0u128, 0u128);
            let slots = |c: u64| c as u128 + (c as f64 * len as f64 / self.mean_latency).floor() as u128;
            for (i, l) in self.budgets.iter().enumerate() {
                rpm = rpm.saturating_add(l.rpm.map_or(INF, |r| r as u128 * wn / wd));
                tpm = tpm.saturating_add(l.tpm.map_or(INF, |r| r as u128 * wn / wd));
                let used = if first { self.rpd_used[i] } else { 0 };
                rpd = rpd.saturating_add(l.rpd.map_or(INF, |r| r.saturating_sub(used) as u128));
                conc = conc.saturating_add(l.concurrent.map_or(INF, slots));
            }
            let workers = self.workers.map_or(INF, slots);
            let seg = rpm.min(rpd).min(conc).min(workers).min(self.count_for_tokens(tpm));
            total = total.saturating_add(seg);
            all_tokens = all_tokens.saturating_add(tpm);
            if day_end >= t {
                break;
            }
            a = day_end;
            first = false;
        }
        total.min(self.count_for_tokens(all_tokens))
    }
}

/// Computes the bound for `scenario` with `seed`.
pub fn upper_bound(scenario: &Scenario, seed: u64) -> Bound {
    let mut used_models: Vec<usize> = match &scenario.workload.model {
        ModelChoice::One(m) => vec![*m],
        ModelChoice::Weighted(v) => v.iter().map(|(m, _)| *m).collect(),
    };
    if let Arrivals::Trace { rows, .. } = &scenario.workload.arrivals {
        used_models.extend(rows.iter().filter_map(|r| r.model));
    }
    for s in &scenario.strategies {
        used_models.extend(s.fallback.iter().copied());
    }
    used_models.sort_unstable();
    used_models.dedup();

    let mut budgets = Vec::new();
    let mut rpd_used = Vec::new();
    for (pi, p) in scenario.topology.projects.iter().enumerate() {
        if !scenario.topology.keys.iter().any(|k| k.valid && k.project == pi) {
            continue;
        }
        for &m in &used_models {
            budgets.push(p.limits[m]);
            rpd_used.push(p.rpd_used);
        }
    }
    let cost = |input: u64, output: u64| scenario.server.tpm_counts.cost(input, output);
    let mut counts: std::collections::HashMap<u64, u64> = std::collections::HashMap::new();
    let mut n = 0u128;
    let mut latency_sum = 0.0;
    let closed = matches!(scenario.workload.arrivals, Arrivals::Closed { .. });
    for r in RequestStream::new(&scenario.workload, seed) {
        if !closed && r.arrival >= scenario.workload.duration {
            break;
        }
        let c = cost(r.input_tokens, r.output_tokens);
        if budgets.iter().any(|l| l.unservable(c).is_empty()) {
            *counts.entry(c).or_default() += 1;
            n += 1;
        }
        let l = scenario.models[r.model].latency;
        let base = l.ttft as f64 + r.output_tokens as f64 * SECOND as f64 / l.tokens_per_second;
        latency_sum += base * (l.jitter * l.jitter / 2.0).exp();
    }
    let mean_latency = if n == 0 { 1.0 } else { (latency_sum / n as f64).max(1.0) };
    let mut distinct: Vec<(u64, u64)> = counts.into_iter().collect();
    distinct.sort_unstable();
    let (mut requests_before, mut tokens_before) = (0u128, 0u128);
    let costs = distinct
        .into_iter()
        .map(|(cost, count)| {
            let g = CostGroup {
                cost,
                count,
                requests_before,
                tokens_before,
            };
            requests_before += count as u128;
            tokens_before += cost as u128 * count as u128;
            g
        })
        .collect();
    let workers = match scenario.workload.arrivals {
        Arrivals::Closed { workers, .. } => Some(workers),
        _ => None,
    };
    let cap = Capacity {
        calendar: &scenario.calendar,
        window: scenario.server.ledger.window,
        budgets,
        rpd_used,
        costs,
        workers,
        mean_latency,
    };
    let per_min = |count: u128, span: Nanos| count as f64 * MINUTE as f64 / span.max(1) as f64;
    match scenario.workload.arrivals {
        Arrivals::Closed { .. } => {
            let horizon = scenario.horizon;
            if n == 0 {
                return Bound {
                    per_min: 0.0,
                    best_span: 0,
                };
            }
            if cap.capacity(horizon) < n {
                return Bound {
                    per_min: per_min(cap.capacity(horizon), horizon),
                    best_span: horizon,
                };
            }
            let (mut lo, mut hi) = (0, horizon);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if cap.capacity(mid) >= n {
                    hi = mid;
                } else {
                    lo = mid + 1;
                }
            }
            Bound {
                per_min: per_min(n, lo),
                best_span: lo,
            }
        }
        _ => {
            let d = scenario.workload.duration;
            Bound {
                per_min: per_min(n.min(cap.capacity(d)), d),
                best_span: 0,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::HOUR;
    use std::path::Path;

    fn closed(limits: &str, requests: u64, extra: &str) -> Scenario {
        let text = format!(
            "name = \"b\"\nstart = \"2025-10-15T09:00:00-07:00\"\n{extra}\n[models.m]\n{limits}\n[topology]\nprojects = 1\n\
             [workload]\nkind = \"closed\"\nrequests = {requests}\nworkers = 1000\n\
             input_tokens = {{ dist = \"fixed\", value = 10 }}\noutput_tokens = {{ dist = \"fixed\", value = 1 }}\n"
        );
        Scenario::parse(&text, Path::new("b.toml")).unwrap()
    }

    #[test]
    fn rpm_bound_counts_sliding_windows() {
        // 10 per window: 100 requests need 10 windows, the 10th opening at 9 minutes.
        let b = upper_bound(&closed("rpm = 10", 100, ""), 1);
        assert_eq!(b.best_span, 9 * MINUTE);
        assert!((b.per_min - 100.0 / 9.0).abs() < 1e-9);
    }

    #[test]
    fn tpm_bound_counts_tokens() {
        // 10 tokens each, 50 tokens per window: 5 requests per window -> 20 windows.
        let b = upper_bound(&closed("tpm = 50", 100, ""), 1);
        assert_eq!(b.best_span, 19 * MINUTE);
    }

    #[test]
    fn rpd_bound_waits_for_pacific_midnight() {
        // 50 today (until midnight, 15 h away), then 10 per minute: 50 more need 5 windows.
        let b = upper_bound(&closed("rpm = 10\nrpd = 50", 100, ""), 1);
        assert_eq!(b.best_span, 15 * HOUR + 4 * MINUTE);
    }

    #[test]
    fn fixed_windows_count_calendar_minutes() {
        // Starting 30 s into a minute, the first calendar minute ends after 30 s.
        let s = closed("rpm = 10", 20, "[server]\nwindow = \"fixed\"");
        let s = Scenario {
            calendar: Calendar::new(
                chrono::DateTime::parse_from_rfc3339("2025-10-15T09:00:30-07:00").unwrap(),
                s.calendar.tz(),
            ),
            ..s
        };
        assert_eq!(upper_bound(&s, 1).best_span, 30 * SECOND);
    }

    #[test]
    fn open_bound_is_the_lesser_of_demand_and_capacity() {
        let text = "name = \"o\"\n[models.m]\nrpm = 10\n[topology]\nprojects = 2\n[workload]\nkind = \"open\"\nrate = 5\nduration = \"1h\"\n\
                    input_tokens = { dist = \"fixed\", value = 1 }\noutput_tokens = { dist = \"fixed\", value = 1 }\n";
        let s = Scenario::parse(text, Path::new("o.toml")).unwrap();
        let b = upper_bound(&s, 1);
        let arrived = crate::core::workload::RequestStream::new(&s.workload, 1).count() as f64;
        assert!((b.per_min - arrived / 60.0).abs() < 1e-9, "{b:?} vs {arrived}");
        let hot = Scenario::parse(&text.replace("rate = 5", "rate = 100"), Path::new("o.toml")).unwrap();
        // 2 projects x 10 per window x 61 windows in [0, 1 h].
        assert!((upper_bound(&hot, 1).per_min - 1220.0 / 60.0).abs() < 1e-9);
    }
}
