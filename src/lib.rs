//! flux-sim: compare API-key rotation strategies against a mock Gemini server that enforces
//! per-project quotas exactly, in deterministic virtual time.
//!
//! One folder per layer; each uses only the layers listed before it (`tests/it/layers.rs` checks):
//! - [`core`]: pure — time, randomness, the quota ledger, topology, workload, the server model;
//! - [`strategy`]: pure — the client-side strategies and retry policies;
//! - [`scenario`]: the validated scenario and its TOML loader (builds servers and strategies);
//! - [`sim`]: the virtual-time engine, runs, sweeps, the upper bound, metrics;
//! - [`net`]: the real-time drivers over HTTP — the mock server (`serve`) and `drive`;
//! - [`report`]: tables, JSON, CSV, charts and HTML;
//! - [`cli`]: the command line, thin over the rest.
//!
//! See ARCHITECTURE.md for the map and the invariants.
#![warn(missing_docs)]

pub mod cli;
pub mod core;
pub mod net;
pub mod report;
pub mod scenario;
pub mod sim;
pub mod strategy;
