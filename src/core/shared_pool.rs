//! A shared capacity pool, as Vertex AI's dynamic shared quota works: the model has no
//! per-project limits; its capacity (requests per minute) is shared with other tenants whose
//! load follows a seeded daily profile (a sinusoid peaking at 14:00 in the calendar's zone)
//! with Poisson bursts; a request that finds the pool full gets a 429 without details. Which
//! project or key sends a request makes no difference.

use std::collections::VecDeque;

use rand::RngCore;
use rand_pcg::Pcg64Mcg;

use crate::core::rng::{rng, unit, Stream};
use crate::core::time::{Calendar, Nanos, MINUTE};

/// How a model's shared pool behaves.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PoolSpec {
    /// Requests per minute the pool serves, every tenant together.
    pub capacity: u64,
    /// The other tenants' mean load, as a share of the capacity.
    pub others: f64,
    /// Amplitude of their daily swing (share of capacity), highest at 14:00 local time.
    pub swing: f64,
    /// Their bursts per hour (a Poisson process).
    pub bursts_per_hour: f64,
    /// How long a burst lasts.
    pub burst: Nanos,
    /// What a burst adds (share of capacity).
    pub burst_load: f64,
}

/// One model's pool as the server runs it.
#[derive(Debug, Clone)]
pub struct SharedPool {
    spec: PoolSpec,
    calendar: Calendar,
    /// Our admissions of the last 60 s.
    ours: VecDeque<Nanos>,
    rng: Pcg64Mcg,
    next_burst: Nanos,
    /// Ends of the bursts under way.
    bursts: VecDeque<Nanos>,
}

impl SharedPool {
    /// The pool of model `model` under `spec`, its bursts drawn from `seed`.
    pub fn new(spec: PoolSpec, calendar: &Calendar, seed: u64, model: usize) -> Self {
        let mut p = SharedPool {
            spec,
            calendar: calendar.clone(),
            ours: VecDeque::new(),
            rng: rng(seed, Stream::Server, u64::MAX - model as u64, 0),
            next_burst: 0,
            bursts: VecDeque::new(),
        };
        p.next_burst = p.gap();
        p
    }

    /// Time to the next burst (exponential; never, without bursts).
    fn gap(&mut self) -> Nanos {
        if self.spec.bursts_per_hour <= 0.0 {
            return Nanos::MAX;
        }
        let u = unit(&mut self.rng).max(f64::MIN_POSITIVE);
        let mean = 3600e9 / self.spec.bursts_per_hour;
        (-u.ln() * mean).min(1e18) as Nanos
    }

    /// The other tenants' load at `now`, in requests per minute.
    pub fn others(&mut self, now: Nanos) -> f64 {
        while self.next_burst <= now {
            let start = self.next_burst;
            self.bursts.push_back(start.saturating_add(self.spec.burst));
            self.next_burst = start.saturating_add(self.gap().max(1));
            let _ = self.rng.next_u32();
        }
        while self.bursts.front().is_some_and(|&end| end <= now) {
            self.bursts.pop_front();
        }
        let hour = self.calendar.local_hour(now);
        let daily = self.spec.swing * (std::f64::consts::TAU * (hour - 8.0) / 24.0).sin();
        let share = self.spec.others + daily + self.bursts.len() as f64 * self.spec.burst_load;
        share.max(0.0) * self.spec.capacity as f64
    }

    /// Whether a request at `now` finds room (and takes it).
    pub fn admit(&mut self, now: Nanos) -> bool {
        let room = self.room(now);
        if room {
            self.take(now);
        }
        room
    }

    /// Whether a request at `now` would find room (taking none).
    pub fn room(&mut self, now: Nanos) -> bool {
        while self.ours.front().is_some_and(|&t| t + MINUTE <= now) {
            self.ours.pop_front();
        }
        let free = self.spec.capacity as f64 - self.others(now);
        (self.ours.len() as f64) < free.floor()
    }

    /// Takes room for a request served at `now` (after [`SharedPool::room`] said yes at the
    /// same `now`): it counts for 60 s. A request refused or failed later (spend cap, 503)
    /// takes none, as with a reservation or a quota.
    pub fn take(&mut self, now: Nanos) {
        self.ours.push_back(now);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::DateTime;

    fn calendar() -> Calendar {
        Calendar::new(
            DateTime::parse_from_rfc3339("2025-10-15T08:00:00-07:00").unwrap(),
            chrono_tz::America::Los_Angeles,
        )
    }

    #[test]
    fn others_follow_the_day_and_leave_the_rest_to_us() {
        let spec = PoolSpec {
            capacity: 100,
            others: 0.5,
            swing: 0.3,
            bursts_per_hour: 0.0,
            burst: MINUTE,
            burst_load: 0.0,
        };
        let mut p = SharedPool::new(spec, &calendar(), 1, 0);
        // 08:00: the sinusoid crosses its mean; 14:00: its peak.
        assert!((p.others(0) - 50.0).abs() < 1e-9);
        assert!((p.others(6 * 3600 * 1_000_000_000) - 80.0).abs() < 1e-9);
        // At 08:00, 50 of 100 are free: the 51st request in a minute finds the pool full.
        let admitted = (0..60).filter(|i| p.admit(i * 1_000_000)).count();
        assert_eq!(admitted, 50);
        assert!(p.admit(2 * MINUTE), "a minute later they have all left the window");
    }

    #[test]
    fn bursts_come_and_go_deterministically() {
        let spec = PoolSpec {
            capacity: 100,
            others: 0.2,
            swing: 0.0,
            bursts_per_hour: 6.0,
            burst: 2 * MINUTE,
            burst_load: 0.5,
        };
        let sample = |seed| {
            let mut p = SharedPool::new(spec, &calendar(), seed, 0);
            (0..600).map(|m| p.others(m * MINUTE) as u64).collect::<Vec<_>>()
        };
        let a = sample(3);
        assert_eq!(a, sample(3));
        let busy = a.iter().filter(|&&l| l >= 70).count();
        // 6 bursts an hour of 2 minutes: about a fifth of the minutes.
        assert!((60..200).contains(&busy), "{busy}");
        assert!(a.iter().all(|&l| l == 20 || l >= 70));
    }
}
