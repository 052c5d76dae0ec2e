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
pub const SUMMARY_HEADER: [&str; 23] = [
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
    "ref done",
    "ref pace",
];

/// Where the HTML summary splits [`SUMMARY_HEADER`] in two tables narrow enough for a
/// 1280-pixel window (the counts, then attempts, rates and times).
pub const RATES_FROM: usize = 12;

/// What the columns mean, one sentence a line, under every summary table.
pub const NOTES: [&str; 5] = [
    "Every request is exactly one of completed, failed (given up), unservable (could never fit) or pending (unfinished when the run stopped).",
    "429s = rate-limited responses; rpm/tpm/rpd/tpd/conc. split them by violated dimension (a response violating several counts in each); other errors = 400, 403, 404 and 503 responses.",
    "done/min = completed per minute of the span (a closed batch: the longer of its makespan and the shortest possible makespan; over the horizon when it gave up on work or left some pending, so abandoning work never raises it); bound/min = the most a strategy with its models (fallback chain) could complete; efficiency = done/min / bound/min, never above 1.",
    "ref done / ref pace = completions and makespan as a share of the clairvoyant reference schedule (a feasible schedule knowing every request up front: earliest fit on any budget, arrival order or smallest first, whichever completes more); above 1 beats it; – where the scenario has none or the batch was not done.",
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
        x.reference
            .as_ref()
            .map_or("–".to_string(), |r| format!("{:.3}", r.completed_share)),
        x.reference
            .as_ref()
            .and_then(|r| r.makespan_share)
            .map_or("–".to_string(), |p| format!("{p:.3}")),
    ]
}

/// Quota 429s: those naming a dimension (a shared pool's capacity 429s and spend-cap 429s
/// name none; no strategy can avoid those).
pub fn quota_429s(x: &StrategyResult) -> u64 {
    let b = &x.rate_limited_by;
    b.rpm + b.tpm + b.rpd + b.tpd + b.concurrency
}

/// The verdict: one sentence naming the strategy that completed most, with fewest quota 429s
/// and least wait among those (in that order), its figures and its shares of the upper bound
/// and of the clairvoyant schedule; then, when the scenario rests on settings Google does not
/// document, a line saying which.
pub fn verdict(r: &RunResult) -> Vec<String> {
    let Some(best) = r.results.iter().min_by(|a, b| {
        (std::cmp::Reverse(a.completed), quota_429s(a))
            .cmp(&(std::cmp::Reverse(b.completed), quota_429s(b)))
            .then(a.wait_ms.p99.total_cmp(&b.wait_ms.p99))
    }) else {
        return Vec::new();
    };
    let tied: Vec<&str> = r
        .results
        .iter()
        .filter(|x| x.strategy != best.strategy && x.completed == best.completed)
        .map(|x| x.strategy.as_str())
        .collect();
    let tie = if tied.is_empty() {
        String::new()
    } else {
        format!(", as many as {}", tied.join(", "))
    };
    let reference = match &best.reference {
        Some(rf) => format!(
            "; {:.3} of the clairvoyant schedule's completions ({}){}",
            rf.completed_share,
            rf.completed,
            rf.makespan_share
                .map_or(String::new(), |p| format!(" and {p:.3} of its pace"))
        ),
        None => "; no clairvoyant schedule for this scenario".to_string(),
    };
    // The 429s no client avoids: how one learns of a re-route, or of a day spent elsewhere.
    let mut rerouted = match best.rerouted_first_429s {
        0 => String::new(),
        n => format!(" ({n} the first on a re-routed quota, from which a client not told learns it)"),
    };
    if best.spent_before_429s > 0 {
        let n = best.spent_before_429s;
        rerouted += &format!(" ({n} the first on a day spent before the run, which no client sees)");
    }
    let capacity = best.rate_limited - quota_429s(best).min(best.rate_limited);
    let capacity = if capacity > 0 {
        format!(" ({capacity} capacity or spend 429s no client avoids)")
    } else {
        String::new()
    };
    // Whoever waited least, if not the same: at what price in completions.
    let quicker = r
        .results
        .iter()
        .filter(|x| x.completed > 0 && x.wait_ms.p99 < best.wait_ms.p99)
        .min_by(|a, b| a.wait_ms.p99.total_cmp(&b.wait_ms.p99))
        .map_or(String::new(), |x| {
            format!(
                " ({} waited least, p99 {}, but completed {})",
                x.strategy,
                human_ms(x.wait_ms.p99),
                x.completed
            )
        });
    let mut out = vec![format!(
        "Verdict: {} (retry: {}) completed the most, {} of {}{tie}, with {} quota 429s{rerouted}{capacity} and a p99 wait of {}{quicker}; {:.2}/min, {:.3} of the upper bound{reference}.",
        best.strategy,
        best.retry,
        best.completed,
        best.requests,
        quota_429s(best),
        human_ms(best.wait_ms.p99),
        best.throughput_per_min,
        best.efficiency,
    )];
    if !r.assumes.is_empty() {
        out.push(format!(
            "This rests on settings Google does not document: {}; sweep them (e.g. `flux-sim sweep --set server.window=sliding,fixed,bucket`) to see whether the answer changes. The limits are the scenario's: check them against your console.",
            r.assumes.join(", ")
        ));
    }
    out
}

/// Each strategy's retry policy, one line.
pub fn retry_line(r: &RunResult) -> String {
    let each: Vec<String> = r
        .results
        .iter()
        .map(|x| format!("{} = {}", x.strategy, x.retry))
        .collect();
    format!("Retry policies: {}.", each.join("; "))
}

/// The run as a Markdown table.
pub fn to_markdown(r: &RunResult) -> String {
    let mut out = format!("# {} (seed {})\n\n", r.scenario, r.seed);
    if let Some(f) = &r.fleet {
        out.push_str(&format!("Each strategy as {f}.\n\n"));
    }
    for line in verdict(r) {
        out.push_str(&format!("{line}\n\n"));
    }
    out.push_str(&format!("| {} |\n", SUMMARY_HEADER.join(" | ")));
    out.push_str(&format!("|---|{}\n", "---:|".repeat(SUMMARY_HEADER.len() - 1)));
    for x in &r.results {
        let cells: Vec<String> = summary_cells(x).iter().map(|c| c.replace('|', "\\|")).collect();
        out.push_str(&format!("| {} |\n", cells.join(" | ")));
    }
    out.push('\n');
    out.push_str(&retry_line(r));
    out.push('\n');
    for note in NOTES {
        out.push_str(note);
        out.push('\n');
    }
    out
}

/// `compare`'s table: every scenario × every strategy (completed, done/min, 429s, wait p99,
/// efficiency),
/// then, per scenario, whether flux's claim holds.
pub fn comparison(runs: &[(RunResult, crate::sim::compare::Claim)]) -> String {
    let mut out = String::from(
        "| scenario | strategy | retry | completed | done/min | failed | unservable | pending | 429s | wait p99 | efficiency | ref done |\n|---|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|\n",
    );
    for (r, _) in runs {
        for x in &r.results {
            out.push_str(&format!(
                "| {} | {} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {:.3} | {} |\n",
                r.scenario,
                x.strategy,
                x.retry,
                x.completed,
                x.throughput_per_min,
                x.failed,
                x.unservable,
                x.pending,
                x.rate_limited,
                human_ms(x.wait_ms.p99),
                x.efficiency,
                x.reference
                    .as_ref()
                    .map_or("–".to_string(), |rf| format!("{:.3}", rf.completed_share)),
            ));
        }
    }
    out.push('\n');
    for (r, c) in runs {
        let best = c.best_completed.max(1) as f64;
        let rows: Vec<String> = c
            .flux
            .iter()
            .map(|v| {
                let pace = if c.best_pace > 0.0 { v.pace / c.best_pace } else { 1.0 };
                let wait = v.wait_against.as_ref().map_or(String::new(), |(n, w)| {
                    format!(", wait p99 {} vs {n} {}", human_ms(v.wait_p99_ms), human_ms(*w))
                });
                let learning = [
                    (v.rerouted_first_429s, "first naming a re-route"),
                    (v.spent_before_429s, "first on a day spent before"),
                ]
                .iter()
                .filter(|(n, _)| *n > 0)
                .map(|(n, what)| format!(", {n} {what}"))
                .collect::<String>();
                let limited = if !learning.is_empty() {
                    format!(", {} 429s ({} quota{learning})", v.rate_limited, v.quota_429s)
                } else if v.rate_limited > 0 {
                    format!(", {} 429s ({} quota)", v.rate_limited, v.quota_429s)
                } else {
                    String::new()
                };
                format!(
                    "{} {:.1}% done, {:.1}% pace{wait}{limited} {}",
                    v.name,
                    100.0 * v.completed as f64 / best,
                    100.0 * pace,
                    if v.holds { "✓" } else { "✗" }
                )
            })
            .collect();
        out.push_str(&format!(
            "- {}: best other {} ({} completed), fastest other {} ({:.2}/min); {}\n",
            r.scenario,
            c.best_other,
            c.best_completed,
            c.fastest_other,
            c.best_pace,
            rows.join("; ")
        ));
    }
    out
}
