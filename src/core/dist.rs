//! The distributions a scenario draws from: token counts ([`TokenDist`]) and the mock
//! server's response time ([`Latency`]). Both are pure functions of the seed; the workload,
//! the server model and Live sessions share them (this module depends on nothing but `rng`
//! and `time`, which keeps `core` free of import cycles).

use rand::Rng;
use rand_distr::{Distribution, StandardNormal};
use rand_pcg::Pcg64Mcg;

use crate::core::rng::{rng, Stream};
use crate::core::time::{Nanos, MAX_SPAN, SECOND};

/// The 99th percentile of the standard normal distribution.
const Z99: f64 = 2.326_347_874_040_840_8;

/// A distribution of token counts.
#[derive(Debug, Clone, PartialEq)]
pub enum TokenDist {
    /// Always `value`.
    Fixed(u64),
    /// Uniform over `min..=max`.
    Uniform {
        /// Smallest value.
        min: u64,
        /// Largest value.
        max: u64,
    },
    /// Lognormal, rounded and clamped to `min..=max` (see [`TokenDist::lognormal`]).
    LogNormal {
        /// Mean of the logarithm (ln of the median).
        mu: f64,
        /// Standard deviation of the logarithm.
        sigma: f64,
        /// Clamp below.
        min: u64,
        /// Clamp above.
        max: u64,
    },
}

impl TokenDist {
    /// The lognormal distribution with this median and 99th percentile.
    pub fn lognormal(median: f64, p99: f64, min: u64, max: u64) -> TokenDist {
        TokenDist::LogNormal {
            mu: median.ln(),
            sigma: (p99.ln() - median.ln()) / Z99,
            min,
            max,
        }
    }

    /// Draws one value.
    pub fn sample(&self, r: &mut Pcg64Mcg) -> u64 {
        match *self {
            TokenDist::Fixed(v) => v,
            TokenDist::Uniform { min, max } => r.random_range(min..=max),
            TokenDist::LogNormal { mu, sigma, min, max } => {
                let z: f64 = StandardNormal.sample(r);
                // Round half up (the value is positive); `as` saturates.
                (((mu + sigma * z).exp() + 0.5) as u64).clamp(min, max)
            }
        }
    }
}

/// Response time of the mock server: `ttft + output_tokens / tokens_per_second`, times a
/// lognormal factor of median 1 and shape `jitter`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Latency {
    /// Time to first token.
    pub ttft: Nanos,
    /// Output tokens generated per second.
    pub tokens_per_second: f64,
    /// Sigma of the lognormal jitter factor (0 = none).
    pub jitter: f64,
}

impl Latency {
    /// The response time of request `request` with `output_tokens`: `ttft + output_tokens /
    /// tokens_per_second` times its lognormal jitter factor, rounded to the nanosecond (at
    /// least 1 ns). The factor is drawn per request, not per attempt: whichever attempt is
    /// admitted, and whichever strategy sent it, the request takes the same time (common random
    /// numbers), so strategies are compared on identical service times and the upper bound can
    /// use the very draws a run will see.
    pub fn draw(&self, output_tokens: u64, seed: u64, request: u64) -> Nanos {
        self.draw_part(output_tokens, seed, request, 0)
    }

    /// [`Latency::draw`] for part `part` of a request (a Live session's turn; part 0 is the
    /// request's own draw).
    pub fn draw_part(&self, output_tokens: u64, seed: u64, request: u64, part: u32) -> Nanos {
        let base = self.ttft as f64 + output_tokens as f64 * SECOND as f64 / self.tokens_per_second;
        let factor = if self.jitter > 0.0 {
            let z: f64 = StandardNormal.sample(&mut rng(seed, Stream::Server, request, part));
            (self.jitter * z).exp()
        } else {
            1.0
        };
        // Round half up (positive), at least 1 ns; `as` saturates rather than wrapping, and no
        // response outlasts MAX_SPAN, so `now + latency` cannot overflow.
        ((base * factor + 0.5) as Nanos).clamp(1, MAX_SPAN)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lognormal_hits_its_median_and_p99() {
        let d = TokenDist::lognormal(40_000.0, 120_000.0, 1, u64::MAX);
        let mut r = rng(3, Stream::Workload, 0, 0);
        let mut v: Vec<u64> = (0..20_000).map(|_| d.sample(&mut r)).collect();
        v.sort_unstable();
        let med = v[10_000] as f64;
        let p99 = v[19_800] as f64;
        assert!((med / 40_000.0 - 1.0).abs() < 0.03, "{med}");
        assert!((p99 / 120_000.0 - 1.0).abs() < 0.08, "{p99}");
    }
}
