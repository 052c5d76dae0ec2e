//! What a report shows beyond the summary, collected only when asked for: per simulated minute
//! (completed, 429s by dimension, input tokens, in flight, queued), the distribution of waits,
//! and per (project, model) how full each quota window was — peak and mean.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::core::ledger::{Dimension, Dims, Limits, Usage};
use crate::core::server::Server;
use crate::core::time::{Nanos, MINUTE};
use crate::scenario::Scenario;
use crate::sim::metrics::ByDimension;

/// One simulated minute of one strategy.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct MinuteRow {
    /// Minute index from the start.
    pub minute: u64,
    /// Requests completed in the minute.
    pub completed: u64,
    /// 429 responses in the minute.
    pub rate_limited_responses: u64,
    /// 429 responses in the minute, by dimension (one response may count in several).
    pub rate_limited: ByDimension,
    /// Input tokens of the requests completed in the minute.
    pub input_tokens: u64,
    /// Attempts awaiting their response at the end of the minute.
    pub in_flight: u64,
    /// Requests waiting (arrived, not sent or between attempts) at the end of the minute.
    pub queued: u64,
}

/// How full the windows of one (project, model) budget were.
#[derive(Debug, Clone, PartialEq)]
pub struct Utilisation {
    /// Project name.
    pub project: String,
    /// Model name.
    pub model: String,
    /// The budget's limits.
    pub limits: Limits,
    /// Highest use right after an admission.
    pub peak: Usage,
    /// Time-averaged use over the span, per dimension in `Dimension::ALL` order: the content
    /// of a sliding 60 s window (requests, tokens), the day's request and token counts, the
    /// requests in flight.
    pub mean: [f64; 5],
}

impl Utilisation {
    /// Peak and mean use of `d` as fractions of its limit, if it has a (non-zero) limit.
    pub fn fraction(&self, d: Dimension) -> Option<(f64, f64)> {
        let l = self.limits.get(d).filter(|&l| l > 0)? as f64;
        let i = Dimension::ALL.iter().position(|x| *x == d).expect("listed");
        Some((self.peak.get(d) as f64 / l, self.mean[i] / l))
    }
}

/// Everything a report needs about one strategy beyond its summary row.
#[derive(Debug, Clone, PartialEq)]
pub struct Details {
    /// One row per simulated minute of the span.
    pub minutes: Vec<MinuteRow>,
    /// Cumulative distribution of waits: (wait in ms, fraction of completed requests).
    pub wait_cdf: Vec<(f64, f64)>,
    /// Per (project, model) budget.
    pub utilisation: Vec<Utilisation>,
}

/// Time-averaged use of one budget, accumulated per admission: each admission adds the time
/// it spends in each window (a sliding minute, its day, its concurrency slot).
#[derive(Debug, Clone, Default)]
struct BudgetArea {
    /// Sum over admissions of amount × nanoseconds in the window, per dimension in
    /// `Dimension::ALL` order.
    area: [f64; 5],
    /// Admissions of the last minute, (time, tokens): their windows may outlast the span.
    recent: VecDeque<(Nanos, u64)>,
    /// End of the current day, and the admissions and tokens in it.
    day_end: Nanos,
    today: u64,
    today_tokens: u64,
    /// When admitted requests release their slots.
    slots: BinaryHeap<Reverse<Nanos>>,
}

/// Collects [`Details`] during a simulation.
#[derive(Debug, Clone, Default)]
pub(crate) struct Timeline {
    rows: Vec<MinuteRow>,
    /// Minute boundaries sampled so far.
    sampled: u64,
    /// Per budget (project-major).
    budgets: Vec<BudgetArea>,
}

impl Timeline {
    pub(crate) fn row(&mut self, now: Nanos) -> &mut MinuteRow {
        let m = (now / MINUTE) as usize;
        if self.rows.len() <= m {
            let start = self.rows.len() as u64;
            self.rows.extend((start..=m as u64).map(|minute| MinuteRow {
                minute,
                ..MinuteRow::default()
            }));
        }
        &mut self.rows[m]
    }

    pub(crate) fn rate_limited(&mut self, now: Nanos, violated: Dims) {
        let row = self.row(now);
        row.rate_limited_responses += 1;
        row.rate_limited.count(violated);
    }

    pub(crate) fn spend_limited(&mut self, now: Nanos) {
        let row = self.row(now);
        row.rate_limited_responses += 1;
        row.rate_limited.spend += 1;
    }

    pub(crate) fn completed(&mut self, now: Nanos, input_tokens: u64) {
        let r = self.row(now);
        r.completed += 1;
        r.input_tokens += input_tokens;
    }

    /// An admission at `now` on budget `b` (of `budgets`) costing `tokens`, holding its slot
    /// until `until`.
    pub(crate) fn admitted(&mut self, now: Nanos, b: usize, budgets: usize, tokens: u64, until: Nanos, s: &Scenario) {
        if self.budgets.is_empty() {
            self.budgets = vec![BudgetArea::default(); budgets];
        }
        let a = &mut self.budgets[b];
        a.area[0] += MINUTE as f64;
        a.area[1] += tokens as f64 * MINUTE as f64;
        a.recent.push_back((now, tokens));
        while a.recent.front().is_some_and(|&(t, _)| t + MINUTE <= now) {
            a.recent.pop_front();
        }
        if now >= a.day_end {
            a.day_end = s.calendar.next_day_start(now);
            a.today = 0;
            a.today_tokens = 0;
        }
        a.today += 1;
        a.today_tokens += tokens;
        a.area[2] += (a.day_end - now) as f64;
        a.area[3] += tokens as f64 * (a.day_end - now) as f64;
        a.area[4] += (until - now) as f64;
        a.slots.push(Reverse(until));
        while a.slots.peek().is_some_and(|&Reverse(e)| e <= now) {
            a.slots.pop();
        }
    }

    /// Samples in-flight and queued counts at every minute boundary up to `now` (state is
    /// constant between events).
    pub(crate) fn sample_until(&mut self, now: Nanos, in_flight: u64, queued: u64) {
        while (self.sampled + 1) * MINUTE <= now {
            let boundary = (self.sampled + 1) * MINUTE;
            let row = self.row(boundary - 1);
            row.in_flight = in_flight;
            row.queued = queued;
            self.sampled += 1;
        }
    }

    pub(crate) fn finish(mut self, span: Nanos, server: &Server, s: &Scenario, wait_cdf: Vec<(f64, f64)>) -> Details {
        let minutes = span.div_ceil(MINUTE).max(1);
        self.row(minutes * MINUTE - 1);
        self.rows.truncate(minutes as usize);
        let models = s.models.len();
        let t = span.max(1) as f64;
        let mut utilisation = Vec::new();
        for (p, project) in s.topology.projects.iter().enumerate() {
            for (m, model) in s.models.iter().enumerate() {
                let mut mean = [0.0; 5];
                if let Some(a) = self.budgets.get(p * models + m) {
                    let mut area = a.area;
                    // Windows still open at the end count only up to the end.
                    for &(at, tokens) in &a.recent {
                        let over = (at + MINUTE).saturating_sub(span) as f64;
                        area[0] -= over;
                        area[1] -= tokens as f64 * over;
                    }
                    let day_left = a.day_end.saturating_sub(span) as f64;
                    area[2] -= a.today as f64 * day_left;
                    area[3] -= a.today_tokens as f64 * day_left;
                    for &Reverse(end) in &a.slots {
                        area[4] -= end.saturating_sub(span) as f64;
                    }
                    mean = area.map(|x| x.max(0.0) / t);
                }
                utilisation.push(Utilisation {
                    project: project.name.clone(),
                    model: model.name.clone(),
                    limits: project.limits[m],
                    peak: server.peak(p, m),
                    mean,
                });
            }
        }
        Details {
            minutes: self.rows,
            wait_cdf,
            utilisation,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_dimension_has_its_own_mean() {
        // Four means for five dimensions made concurrency (Live scenarios) index past the end
        // and TPD read concurrency's mean.
        let u = Utilisation {
            project: "p".into(),
            model: "m".into(),
            limits: Limits {
                rpm: Some(10),
                tpm: Some(10),
                rpd: Some(10),
                tpd: Some(10),
                concurrent: Some(10),
            },
            peak: Usage::default(),
            mean: [1.0, 2.0, 3.0, 4.0, 5.0],
        };
        let means: Vec<f64> = Dimension::ALL.iter().map(|&d| u.fraction(d).unwrap().1).collect();
        assert_eq!(means, [0.1, 0.2, 0.3, 0.4, 0.5]);
    }
}
