//! What `serve` and `proxy` share as HTTP servers: Google-style JSON and error responses (404,
//! 405), the bounded reading of request bodies, and the hardened connection loop (header and
//! body timeouts, a connection cap, a shutdown deadline) with the shutdown signal.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Router;
use serde_json::{json, Value};

use crate::net::wire;

/// Largest request body accepted (larger → 400 INVALID_ARGUMENT).
pub const MAX_BODY: usize = 4 * 1024 * 1024;
/// Request bodies read at once; more wait (so strangers cannot make a server hold more than
/// 64 × 4 MiB of bodies).
pub const MAX_BODIES: usize = 64;
/// Longest wait for a request's headers (hyper's header read timeout; also an idle keep-alive
/// connection's wait for its next request) and for its body.
pub const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once (fewer when the open-files limit is lower: see
/// [`connection_cap`]); more wait in the listen queue.
pub const MAX_CONNECTIONS: usize = 10_000;
/// How long shutdown waits for requests in progress before it stops anyway.
pub const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(5);

/// A JSON response as Google sends it (`application/json; charset=UTF-8`).
pub fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json; charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// An error envelope as a response with its code as the HTTP status.
pub fn error(body: Value) -> Response {
    let code = body["error"]["code"].as_u64().unwrap_or(500) as u16;
    json_response(
        StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        &body,
    )
}

/// 404 NOT_FOUND for a path the server does not serve, as Google words it.
pub async fn not_found(req: Request) -> Response {
    not_found_at(req.method(), req.uri().path())
}

/// 404 NOT_FOUND for `method` on `path`, in Google's words.
pub fn not_found_at(method: &axum::http::Method, path: &str) -> Response {
    let message = format!("The requested URL {method} {path} was not found on this server.");
    error(json!({"error": {"code": 404, "message": message, "status": "NOT_FOUND"}}))
}

/// 405 for a method a route does not take, in Google's envelope.
pub async fn method_not_allowed(req: Request) -> Response {
    let message = format!("Method {} is not allowed for {}.", req.method(), req.uri().path());
    error(json!({"error": {"code": 405, "message": message, "status": "INVALID_ARGUMENT"}}))
}

/// A request's body: at most `slots`' permits of bodies in memory at once, each at most
/// [`MAX_BODY`] bytes and read within [`READ_TIMEOUT`]; `Err` is the error envelope to
/// answer (400 too large, 408 too slow).
pub async fn read_body(slots: &tokio::sync::Semaphore, req: Request) -> Result<Bytes, Value> {
    let _slot = slots.acquire().await.expect("the semaphore is never closed");
    match tokio::time::timeout(READ_TIMEOUT, axum::body::to_bytes(req.into_body(), MAX_BODY)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err(wire::error::invalid_argument(&format!(
            "Request payload size exceeds the limit: {MAX_BODY} bytes."
        ))),
        Err(_) => Err(
            json!({"error": {"code": 408, "message": format!("The request body did not arrive within {} s.", READ_TIMEOUT.as_secs()), "status": "DEADLINE_EXCEEDED"}}),
        ),
    }
}

/// Connections served at once: [`MAX_CONNECTIONS`], or fewer when the process may open fewer
/// files — `fds_per_connection` descriptors each (2 for the proxy: the client's and its
/// upstream's) and 64 kept for the rest — so that accepting never runs out of descriptors and
/// the surplus waits in the listen queue instead.
pub fn connection_cap(fds_per_connection: usize) -> usize {
    let limit = open_files_limit().unwrap_or(u64::MAX);
    let usable = limit.saturating_sub(64).min(usize::MAX as u64) as usize;
    (usable / fds_per_connection.max(1)).clamp(1, MAX_CONNECTIONS)
}

/// The soft limit of open files (`ulimit -n`), where the platform says.
fn open_files_limit() -> Option<u64> {
    #[cfg(unix)]
    {
        let mut r = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: getrlimit writes into the struct it is given and reads nothing else.
        let ok = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) } == 0;
        (ok && r.rlim_cur != libc::RLIM_INFINITY).then_some(r.rlim_cur)
    }
    #[cfg(not(unix))]
    {
        None
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then lets the requests in progress
/// finish for up to [`SHUTDOWN_DEADLINE`] and stops (a client holding a half-sent request
/// cannot keep it running). At most `max_connections` connections are served at once; a
/// connection that sends no complete request headers within [`READ_TIMEOUT`] (also between
/// requests on a kept-alive connection) is closed; over TLS (`tls`), a client that does not
/// finish its handshake within [`READ_TIMEOUT`] is dropped. Handlers learn the peer's address
/// as `ConnectInfo<SocketAddr>`.
pub async fn serve_connections(
    listener: tokio::net::TcpListener,
    app: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    max_connections: usize,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    let slots = Arc::new(tokio::sync::Semaphore::new(max_connections.max(1)));
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut tasks = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = &mut shutdown => break,
        };
        let (stream, remote) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                // Out of file descriptors and the like: wait a little rather than spin.
                Err(_) => { tokio::time::sleep(Duration::from_millis(50)).await; continue }
            },
            _ = &mut shutdown => break,
        };
        // Small writes go out at once (no Nagle delay against the client's delayed ACKs).
        let _ = stream.set_nodelay(true);
        let service = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut r: axum::http::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(axum::extract::ConnectInfo(remote));
                r
            },
        ));
        let stop = stop_rx.clone();
        let acceptor = acceptor.clone();
        tasks.spawn(async move {
            let _permit = permit;
            match acceptor {
                None => connection(stream, service, stop).await,
                Some(a) => {
                    if let Ok(Ok(tls)) = tokio::time::timeout(READ_TIMEOUT, a.accept(stream)).await {
                        connection(tls, service, stop).await
                    }
                }
            }
        });
        // Reap finished connections so the set does not grow.
        while tasks.try_join_next().is_some() {}
    }
    drop(listener);
    let _ = stop_tx.send(true);
    let _ = tokio::time::timeout(SHUTDOWN_DEADLINE, async { while tasks.join_next().await.is_some() {} }).await;
    tasks.abort_all();
    Ok(())
}

/// Serves one connection (HTTP/1.1 with upgrades, or HTTP/2) until it ends, or until `stop`
/// changes and then gracefully.
async fn connection<I, S>(io: I, service: S, mut stop: tokio::sync::watch::Receiver<bool>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    S: hyper::service::Service<hyper::Request<hyper::body::Incoming>, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    let mut builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(READ_TIMEOUT);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(READ_TIMEOUT))
        .keep_alive_timeout(READ_TIMEOUT);
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        _ = conn.as_mut() => {}
        _ = stop.changed() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
}

/// Makes large freed blocks go back to the system at once (glibc keeps raising its mmap
/// threshold to the largest block freed, so request bodies of a few MiB end up in the heap
/// and the process keeps their pages after a burst). Called once by `serve` and `proxy`.
pub fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets an allocator parameter; called before the runtime starts.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 256 * 1024);
    }
}

/// Completes on Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! { _ = ctrl_c => {}, _ = term => {} }
}
