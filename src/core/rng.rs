//! Seeded, portable randomness. Each consumer gets its own stream derived from the scenario
//! seed, so the request stream is identical for every strategy, and per-attempt draws (latency
//! jitter, faults, backoff jitter) are the same for the same request and attempt whichever
//! strategy sends it (common random numbers).

use rand_pcg::Pcg64Mcg;

/// The splitmix64 finaliser: a fast, well-mixed 64-bit hash step.
pub fn splitmix64(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// Named random streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum Stream {
    /// Arrivals, token sizes, model choice.
    Workload = 1,
    /// Server latency jitter and injected faults.
    Server = 2,
    /// Client-side retry jitter.
    Retry = 3,
    /// A strategy's own random choices (e.g. LiteLLM's weighted shuffle).
    Strategy = 4,
    /// The turns of a Live session (their token sizes).
    Session = 5,
}

/// A generator for `stream`, optionally specific to one request attempt.
pub fn rng(seed: u64, stream: Stream, request: u64, attempt: u32) -> Pcg64Mcg {
    let k = splitmix64(seed ^ splitmix64(stream as u64));
    let k = splitmix64(k ^ request);
    let k = splitmix64(k ^ attempt as u64);
    // 128 bits of state straight from two mixed words (cheaper than `seed_from_u64`).
    Pcg64Mcg::new((k as u128) << 64 | splitmix64(k) as u128)
}

/// A uniform draw in `[0, 1)` from 53 random bits.
pub fn unit(r: &mut impl rand::RngCore) -> f64 {
    (r.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}
