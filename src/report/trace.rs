//! One JSON line per attempt for `run --trace FILE`.

use serde_json::json;

use crate::scenario::Scenario;
use crate::sim::engine::AttemptRecord;

/// The trace line of one attempt (keys masked).
pub fn trace_line(s: &Scenario, strategy: &str, a: &AttemptRecord) -> String {
    json!({
        "time_ns": a.time,
        "request": a.request,
        "attempt": a.attempt,
        "strategy": strategy,
        "key": s.topology.keys[a.key].masked(),
        "project": s.topology.projects[a.project].name,
        "model": s.models[a.model].name,
        "input_tokens": a.input_tokens,
        "status": a.status,
        "outcome": a.outcome,
        "violated": a.violated.names(),
        "retry_delay_ns": a.retry_delay,
        "completion_ns": a.completion,
    })
    .to_string()
}
