//! flux-sim: compare API-key rotation strategies against a mock Gemini server that enforces
//! per-project quotas exactly, in deterministic virtual time.
//!
//! The core is pure (no clock, no I/O): [`ledger`], [`server`], [`strategy`], [`workload`].
//! [`engine`] drives them in virtual time; [`serve`] (the mock server) and [`drive`] (a
//! strategy as a client) drive them in real time over HTTP; [`export`] and [`report`] turn
//! results into tables, JSON and charts; [`cli`] is the command line.
#![warn(missing_docs)]

pub mod bound;
pub mod cli;
mod dispatch;
pub mod drive;
pub mod engine;
pub mod export;
pub mod ledger;
pub mod metrics;
pub mod report;
pub mod retry;
pub mod rng;
pub mod run;
pub mod scenario;
pub mod serve;
pub mod server;
pub mod strategy;
pub mod sweep;
pub mod time;
pub mod timeline;
pub mod topology;
pub mod wire;
pub mod workload;
