//! Turning results into things people read: an aligned table, JSON, trace lines.

mod json;
mod table;
mod trace;

pub use json::to_json;
pub use table::to_table;
pub use trace::trace_line;
