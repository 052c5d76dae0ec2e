//! The virtual-time driver and what it measures: the discrete-event engine, the bookkeeping of
//! live requests it shares with `drive`, runs of several strategies, comparisons of every built-in and sweeps over a grid, the
//! upper bound, the clairvoyant reference schedule, and the metrics (summary rows and, for reports, the per-minute timeline).
//!
//! Deterministic: no wall clock, no I/O; the same scenario and seed give the same results on
//! any number of threads.

pub mod bound;
pub mod clairvoyant;
pub mod compare;
pub(crate) mod dispatch;
pub mod engine;
pub mod metrics;
mod queue;
pub mod run;
pub mod sweep;
pub mod timeline;
