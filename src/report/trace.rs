//! One JSON line per attempt for `run --trace FILE`: when it was sent, on which key, project and
//! model, its answer (status, outcome, violated dimensions, retry delay) and, for a served one,
//! its completion and the path that admitted it (`admitted_by`: `reserved`, `pool`, `quota`, `paygo` or `priority`).

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
        "admitted_by": a.via.map(|v| v.name()),
    })
    .to_string()
}
