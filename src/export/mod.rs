//! Turning results into things people read: an aligned table, JSON, Markdown, CSV, charts,
//! an HTML page, trace lines.

pub(crate) mod csv;
mod html;
mod json;
mod markdown;
pub mod plot;
mod table;
mod trace;

pub use csv::{timeseries_csv, HEADER as TIMESERIES_HEADER};
pub use html::to_html;
pub use json::to_json;
pub use markdown::to_markdown;
pub use table::to_table;
pub use trace::trace_line;
