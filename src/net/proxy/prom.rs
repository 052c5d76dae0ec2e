//! `GET /metrics`: what the proxy did per (project, model), in Prometheus' text exposition
//! format 0.0.4, hand-written (the format is a few lines of rules; a client library would add a
//! registry, a global and a dependency for them): requests admitted (sent upstream), held
//! (sent later than they arrived), refused by reason, the upstream's answers by status, and
//! the shared ledger's latency (a histogram) and errors. Labels are project and model names
//! from the configuration, escaped as the format says; no key is ever a label or a value.

use std::collections::{BTreeMap, VecDeque};
use std::fmt::Write;

use crate::core::time::{Nanos, SECOND};

/// Upper bounds of the histograms' buckets, in seconds (a loopback Redis answers in ~0.1 ms, a
/// stalled one in seconds; a send leaves within a millisecond of its plan, a head comes back in
/// milliseconds to seconds).
pub const LEDGER_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// Why the proxy answered a request itself instead of sending it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Refusal {
    /// No key had room before the request's deadline.
    Deadline,
    /// Too many requests were waiting.
    QueueFull,
    /// Too many request bytes were waiting.
    MemoryFull,
    /// The request can never fit any key's limits.
    Unservable,
    /// No key or model is left today.
    Exhausted,
    /// The shared ledger did not answer (fail closed).
    LedgerDown,
}

impl Refusal {
    /// Its `reason` label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Deadline => "deadline",
            Refusal::QueueFull => "queue_full",
            Refusal::MemoryFull => "memory_full",
            Refusal::Unservable => "unservable",
            Refusal::Exhausted => "exhausted",
            Refusal::LedgerDown => "ledger_down",
        }
    }
}

/// How many of a budget's latest answers bound when a send may still go before its request's
/// deadline ([`Stats::answer_time`]): recent enough to follow the upstream, enough that one
/// fast answer does not hide the slow ones.
const RECENT_ANSWERS: usize = 16;

/// A latency histogram: counts per bucket of [`LEDGER_BUCKETS`] (not cumulative), the sum in
/// nanoseconds and the count.
#[derive(Debug, Clone, Default)]
struct Histogram {
    buckets: [u64; LEDGER_BUCKETS.len()],
    sum: u128,
    count: u64,
}

impl Histogram {
    fn observe(&mut self, took: Nanos) {
        let secs = took as f64 / SECOND as f64;
        if let Some(i) = LEDGER_BUCKETS.iter().position(|&b| secs <= b) {
            self.buckets[i] += 1;
        }
        self.sum += took as u128;
        self.count += 1;
    }
}

/// The counts, per budget (`project * models + model`); refusals before a key was chosen have
/// no project (their samples carry no project label: never an empty one).
#[derive(Debug, Default)]
pub struct Stats {
    admitted: BTreeMap<usize, u64>,
    held: BTreeMap<usize, u64>,
    held_nanos: BTreeMap<usize, u128>,
    /// (model, project if known, reason).
    refused: BTreeMap<(usize, Option<usize>, Refusal), u64>,
    /// (budget, HTTP status).
    upstream: BTreeMap<(usize, u16), u64>,
    ledger: BTreeMap<usize, Histogram>,
    ledger_errors: BTreeMap<usize, u64>,
    ledger_refused: BTreeMap<usize, u64>,
    /// Sends on a slot admitted in advance by the shared ledger (no call on their path, unless
    /// the ledger refused them just before).
    preadmitted: BTreeMap<usize, u64>,
    /// Per budget: how much later than planned each send left (timers, the gate, the ledger's
    /// round trip), and how long after it left its answer's head came back (the most it can
    /// have taken to reach the upstream): together, the send-to-arrival skew `--margin` covers.
    late: BTreeMap<usize, Histogram>,
    head: BTreeMap<usize, Histogram>,
    /// Per budget: how long the last [`RECENT_ANSWERS`] answers' heads took (not sends the
    /// deadline cut off).
    recent: BTreeMap<usize, VecDeque<Nanos>>,
    /// Live sessions open now, and opened in all.
    sessions_open: BTreeMap<usize, u64>,
    sessions: BTreeMap<usize, u64>,
}

impl Stats {
    /// A send on `budget` went upstream `waited` after its request arrived (held: the proxy
    /// made it wait).
    pub fn admitted(&mut self, budget: usize, held: bool, waited: Nanos) {
        *self.admitted.entry(budget).or_default() += 1;
        if held {
            *self.held.entry(budget).or_default() += 1;
            *self.held_nanos.entry(budget).or_default() += waited as u128;
        }
    }

    /// A send on `budget` left `late` after the moment its strategy planned.
    pub fn late(&mut self, budget: usize, late: Nanos) {
        self.late.entry(budget).or_default().observe(late);
    }

    /// A send on `budget` got its answer's head (`answered`; or failed, or the deadline cut
    /// it off) `took` after it left.
    pub fn head(&mut self, budget: usize, took: Nanos, answered: bool) {
        self.head.entry(budget).or_default().observe(took);
        if answered {
            let recent = self.recent.entry(budget).or_default();
            if recent.len() == RECENT_ANSWERS {
                recent.pop_front();
            }
            recent.push_back(took);
        }
    }

    /// The longest of the last [`RECENT_ANSWERS`] answers' heads of sends on `budget` took (0
    /// before the first): how long before a request's deadline its send may go at the latest.
    pub fn answer_time(&self, budget: usize) -> Nanos {
        self.recent
            .get(&budget)
            .and_then(|r| r.iter().max().copied())
            .unwrap_or(0)
    }

    /// A request for `model` answered by the proxy itself, on `project` if a key was chosen.
    pub fn refused(&mut self, model: usize, project: Option<usize>, why: Refusal) {
        *self.refused.entry((model, project, why)).or_default() += 1;
    }

    /// The upstream answered a send on `budget` with `status`.
    pub fn upstream(&mut self, budget: usize, status: u16) {
        *self.upstream.entry((budget, status)).or_default() += 1;
    }

    /// The shared ledger answered a call about `budget` after `took` (`refused`: it did not
    /// admit), or did not answer (`None`).
    pub fn ledger(&mut self, budget: usize, took: Nanos, answered: Option<bool>) {
        match answered {
            Some(admitted) => {
                self.ledger.entry(budget).or_default().observe(took);
                if !admitted {
                    *self.ledger_refused.entry(budget).or_default() += 1;
                }
            }
            None => *self.ledger_errors.entry(budget).or_default() += 1,
        }
    }

    /// A send on `budget` went on a slot the shared ledger admitted in advance.
    pub fn preadmitted(&mut self, budget: usize) {
        *self.preadmitted.entry(budget).or_default() += 1;
    }

    /// A Live session on `budget` opened (`true`) or ended.
    pub fn session(&mut self, budget: usize, open: bool) {
        let n = self.sessions_open.entry(budget).or_default();
        if open {
            *n += 1;
            *self.sessions.entry(budget).or_default() += 1;
        } else {
            *n = n.saturating_sub(1);
        }
    }

    /// The text of `GET /metrics`: `projects` and `models` name the budgets' labels; `ledger`
    /// is the shared ledger's state, if there is one; `waiting` the requests waiting now.
    pub fn render(&self, projects: &[&str], models: &[&str], ledger: Option<LedgerGauges>, waiting: u64) -> String {
        let n = models.len();
        let labels = |b: usize| vec![("project", projects[b / n]), ("model", models[b % n])];
        let mut out = String::new();
        family(&mut out, "flux_proxy_admitted_total", "counter", "Requests the proxy sent upstream (admitted by its strategy, its window check and, with a shared ledger, the fleet's ledger), per project and model.");
        for (&b, &v) in &self.admitted {
            sample(&mut out, "flux_proxy_admitted_total", &labels(b), v as f64);
        }
        family(
            &mut out,
            "flux_proxy_held_total",
            "counter",
            "Requests sent later than they arrived because the proxy held them until a key had room.",
        );
        for (&b, &v) in &self.held {
            sample(&mut out, "flux_proxy_held_total", &labels(b), v as f64);
        }
        family(
            &mut out,
            "flux_proxy_held_seconds_total",
            "counter",
            "Time the held requests waited in the proxy before their send.",
        );
        for (&b, &v) in &self.held_nanos {
            sample(
                &mut out,
                "flux_proxy_held_seconds_total",
                &labels(b),
                v as f64 / SECOND as f64,
            );
        }
        family(&mut out, "flux_proxy_refused_total", "counter", "Requests the proxy answered itself, by reason (deadline, queue_full, memory_full, unservable, exhausted, ledger_down), per project and model; refused before a key was chosen (queue_full, memory_full and the like): no project label, only the model.");
        for (&(m, p, why), &v) in &self.refused {
            let mut l = Vec::with_capacity(3);
            if let Some(p) = p {
                l.push(("project", projects[p]));
            }
            l.push(("model", models[m]));
            l.push(("reason", why.label()));
            sample(&mut out, "flux_proxy_refused_total", &l, v as f64);
        }
        family(
            &mut out,
            "flux_proxy_upstream_responses_total",
            "counter",
            "The upstream's answers to the proxy's sends, by HTTP status (101: a Live session opened; a Live session the upstream then closes for quota, 1011 \"You exceeded your current quota…\", counts once more, as 429, as serve counts it).",
        );
        for (&(b, code), &v) in &self.upstream {
            let code = code.to_string();
            let mut l = labels(b);
            l.push(("code", &code));
            sample(&mut out, "flux_proxy_upstream_responses_total", &l, v as f64);
        }
        family(&mut out, "flux_proxy_send_late_seconds", "histogram", "How much later than its strategy planned each send left (timers, the window check, the shared ledger's round trip): part of the send-to-arrival skew the proxy's margin covers.");
        histograms(&mut out, "flux_proxy_send_late_seconds", &self.late, &labels);
        family(&mut out, "flux_proxy_send_to_head_seconds", "histogram", "From a send's start to its answer's head (or failure): the most the send can have taken to reach the upstream (a stream's time to first byte; a plain call's whole generation, so an upper bound).");
        histograms(&mut out, "flux_proxy_send_to_head_seconds", &self.head, &labels);
        family(
            &mut out,
            "flux_proxy_live_sessions_open",
            "gauge",
            "Live sessions open through the proxy now.",
        );
        for (&b, &v) in &self.sessions_open {
            sample(&mut out, "flux_proxy_live_sessions_open", &labels(b), v as f64);
        }
        family(
            &mut out,
            "flux_proxy_live_sessions_total",
            "counter",
            "Live sessions opened through the proxy.",
        );
        for (&b, &v) in &self.sessions {
            sample(&mut out, "flux_proxy_live_sessions_total", &labels(b), v as f64);
        }
        family(
            &mut out,
            "flux_proxy_waiting_requests",
            "gauge",
            "Requests waiting in the proxy now.",
        );
        sample(&mut out, "flux_proxy_waiting_requests", &[], waiting as f64);
        let Some(g) = ledger else {
            return out;
        };
        family(
            &mut out,
            "flux_proxy_ledger_up",
            "gauge",
            "Whether the shared ledger (Redis) answered the last call (1) or not (0).",
        );
        sample(&mut out, "flux_proxy_ledger_up", &[], f64::from(u8::from(g.up)));
        family(
            &mut out,
            "flux_proxy_ledger_outages_total",
            "counter",
            "Times the shared ledger stopped answering.",
        );
        sample(&mut out, "flux_proxy_ledger_outages_total", &[], g.outages as f64);
        family(
            &mut out,
            "flux_proxy_ledger_state_losses_total",
            "counter",
            "Budgets whose state the shared ledger lost (restarted empty, flushed, evicted).",
        );
        sample(&mut out, "flux_proxy_ledger_state_losses_total", &[], g.losses as f64);
        family(
            &mut out,
            "flux_proxy_ledger_request_duration_seconds",
            "histogram",
            "Time the shared ledger took to admit or refuse a send, per project and model.",
        );
        histograms(
            &mut out,
            "flux_proxy_ledger_request_duration_seconds",
            &self.ledger,
            &labels,
        );
        family(
            &mut out,
            "flux_proxy_ledger_refused_total",
            "counter",
            "Sends the shared ledger refused (the fleet's window was full): the request waited or went elsewhere.",
        );
        for (&b, &v) in &self.ledger_refused {
            sample(&mut out, "flux_proxy_ledger_refused_total", &labels(b), v as f64);
        }
        family(
            &mut out,
            "flux_proxy_ledger_preadmitted_total",
            "counter",
            "Sends on a slot the shared ledger admitted in advance (while the budget was at most half full): no call to the ledger on their path, unless the ledger had just refused them; the call that confirms each follows it. The others asked the ledger (flux_proxy_ledger_request_duration_seconds_count, which counts refused calls too: calls = sends - preadmitted + refused).",
        );
        for (&b, &v) in &self.preadmitted {
            sample(&mut out, "flux_proxy_ledger_preadmitted_total", &labels(b), v as f64);
        }
        family(
            &mut out,
            "flux_proxy_ledger_errors_total",
            "counter",
            "Calls to the shared ledger not answered (in time), per project and model; nothing was sent.",
        );
        for (&b, &v) in &self.ledger_errors {
            sample(&mut out, "flux_proxy_ledger_errors_total", &labels(b), v as f64);
        }
        out
    }
}

/// The samples of histogram family `name`, one per budget (cumulative buckets, `+Inf` = count).
fn histograms<'a>(
    out: &mut String,
    name: &str,
    of: &BTreeMap<usize, Histogram>,
    labels: &dyn Fn(usize) -> Vec<(&'a str, &'a str)>,
) {
    let bucket = format!("{name}_bucket");
    for (&b, h) in of {
        let mut cumulative = 0;
        for (i, bound) in LEDGER_BUCKETS.iter().enumerate() {
            cumulative += h.buckets[i];
            let le = bound.to_string();
            let mut l = labels(b);
            l.push(("le", &le));
            sample(out, &bucket, &l, cumulative as f64);
        }
        let mut l = labels(b);
        l.push(("le", "+Inf"));
        sample(out, &bucket, &l, h.count as f64);
        sample(out, &format!("{name}_sum"), &labels(b), h.sum as f64 / SECOND as f64);
        sample(out, &format!("{name}_count"), &labels(b), h.count as f64);
    }
}

/// The shared ledger's state for [`Stats::render`].
#[derive(Debug, Clone, Copy)]
pub struct LedgerGauges {
    pub up: bool,
    pub outages: u64,
    pub losses: u64,
}

/// A family's `# HELP` and `# TYPE` lines.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {}", escape_help(help));
    let _ = writeln!(out, "# TYPE {name} {kind}");
}

/// One sample line: `name{label="value",…} value`.
fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: f64) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (k, v)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let _ = write!(out, "{k}=\"{}\"", escape_label(v));
        }
        out.push('}');
    }
    let _ = writeln!(out, " {}", number(value));
}

/// A label value as the format writes it: `\`, `"` and line feeds escaped.
pub fn escape_label(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

/// A HELP text as the format writes it: `\` and line feeds escaped.
fn escape_help(v: &str) -> String {
    v.replace('\\', "\\\\").replace('\n', "\\n")
}

/// A value: integers without a fraction, `+Inf`/`-Inf`/`NaN` spelt as the format spells them.
fn number(v: f64) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "+Inf" } else { "-Inf" }.into()
    } else if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{}", v as i64)
    } else {
        format!("{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::core::time::MILLISECOND;

    #[test]
    fn labels_are_escaped_and_histograms_are_cumulative() {
        let mut s = Stats::default();
        s.admitted(1, true, 1500 * MILLISECOND);
        s.refused(0, None, Refusal::QueueFull);
        s.ledger(1, 200_000, Some(true));
        s.ledger(1, 3 * SECOND, Some(false));
        let text = s.render(
            &["a\"b\\c\nd"],
            &["m0", "m1"],
            Some(LedgerGauges {
                up: true,
                outages: 0,
                losses: 0,
            }),
            0,
        );
        assert!(
            text.contains("flux_proxy_admitted_total{project=\"a\\\"b\\\\c\\nd\",model=\"m1\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("flux_proxy_held_seconds_total{project=\"a\\\"b\\\\c\\nd\",model=\"m1\"} 1.5\n"));
        assert!(text.contains("flux_proxy_refused_total{model=\"m0\",reason=\"queue_full\"} 1\n"));
        assert!(text.contains("_bucket{project=\"a\\\"b\\\\c\\nd\",model=\"m1\",le=\"0.00025\"} 1\n"));
        assert!(text.contains("_bucket{project=\"a\\\"b\\\\c\\nd\",model=\"m1\",le=\"2.5\"} 1\n"));
        assert!(text.contains("_bucket{project=\"a\\\"b\\\\c\\nd\",model=\"m1\",le=\"+Inf\"} 2\n"));
        assert!(text.contains(
            "flux_proxy_ledger_request_duration_seconds_sum{project=\"a\\\"b\\\\c\\nd\",model=\"m1\"} 3.0002\n"
        ));
        assert!(text.contains("flux_proxy_ledger_refused_total{project=\"a\\\"b\\\\c\\nd\",model=\"m1\"} 1\n"));
        assert_eq!(number(f64::INFINITY), "+Inf");
        assert_eq!(number(0.5), "0.5");
    }

    /// Issue 28: a refusal decided before a key was chosen (a full queue, too many bytes
    /// waiting) is labelled by its model alone, never with an empty project.
    #[test]
    fn a_refusal_before_a_key_was_chosen_has_no_empty_project_label() {
        let mut s = Stats::default();
        s.refused(1, None, Refusal::MemoryFull);
        s.refused(1, Some(0), Refusal::Deadline);
        let text = s.render(&["p0"], &["m0", "m1"], None, 0);
        assert!(!text.contains("=\"\""), "an empty label: {text}");
        assert!(text.contains("flux_proxy_refused_total{model=\"m1\",reason=\"memory_full\"} 1\n"));
        assert!(text.contains("flux_proxy_refused_total{project=\"p0\",model=\"m1\",reason=\"deadline\"} 1\n"));
    }
}
