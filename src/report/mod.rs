//! Turning results into things people read: an aligned table, JSON, Markdown, CSV, charts, an
//! HTML page and trace lines; a run's report directory (`run --out`) and a sweep's.

pub(crate) mod csv;
mod dir;
pub(crate) mod html;
mod json;
mod markdown;
pub mod plot;
pub mod sweep;
mod table;
mod trace;

pub use csv::{timeseries_csv, HEADER as TIMESERIES_HEADER};
pub use dir::{prepare_dir, write_report, DirError};
pub use html::to_html;
pub use json::to_json;
pub use markdown::{comparison, to_markdown};
pub use table::{to_table, to_table_width};
pub use trace::trace_line;
