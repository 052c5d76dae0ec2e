//! The integration tests, one binary (one link instead of twenty; shared helpers in `common`).
//! Each module is one concern; ARCHITECTURE.md lists them.

mod cli;
mod common;
mod compare;
mod drive;
mod findings;
mod fuzz;
mod hostile_cli;
mod hostile_live;
mod hostile_proxy;
mod hostile_serve;
mod hostile_shutdown;
mod layers;
mod ledger_properties;
mod limits_import;
mod live;
mod livelock;
mod meetings;
mod peers;
mod per_day;
mod proxy;
mod proxy_fleet;
mod proxy_prefetch;
mod readme;
mod registry;
mod report;
mod serve;
mod shared_ledger;
mod spend_properties;
mod strategy_properties;
mod structured_properties;
mod sweep;
