//! The real-time drivers, over HTTP: Gemini's wire formats (`wire`, pure), the mock server
//! (`serve`, axum), a strategy as a real client (`drive`, reqwest) and in front of real
//! clients (`proxy`, both), `http` (what serve and proxy share as HTTP servers), and `tls`
//! for serve's HTTPS/WSS. The only layer that uses
//! tokio, sockets and the wall clock.

pub mod drive;
pub mod http;
pub mod proxy;
pub mod serve;
pub mod shared_ledger;
pub mod tls;
pub mod wire;
