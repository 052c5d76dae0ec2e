//! The pure core: virtual time, seeded randomness, the quota ledger, shared capacity pools,
//! Vertex AI's PayGo tiers,
//! spend caps, accounts → projects → keys, the workload, Live sessions, and the mock Gemini server
//! model.
//!
//! Nothing here reads a clock, sleeps, touches a file or a socket, or knows about the layers
//! above (strategies, scenarios, drivers, reports): every call takes `now` and returns a
//! decision, so the virtual-time engine and the real-time servers drive the same code.
//! `tests/it/layers.rs` enforces this.

pub mod cache;
pub mod dist;
pub mod idmap;
pub mod ledger;
pub mod live;
pub mod paygo;
pub mod rng;
pub mod server;
pub mod shared_pool;
pub mod spend;
pub mod time;
pub mod topology;
pub mod workload;
