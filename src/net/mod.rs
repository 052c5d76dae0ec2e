//! The real-time drivers, over HTTP: Gemini's wire formats (`wire`, pure), the mock server
//! (`serve`, axum) and a strategy as a real client (`drive`, reqwest). The only layer that uses
//! tokio, sockets and the wall clock.

pub mod drive;
pub mod serve;
pub mod wire;
