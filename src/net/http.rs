//! What `serve` and `proxy` share as HTTP servers: Google-style JSON and error responses (404,
//! 405), the bounded reading of request bodies, and the hardened connection loop (header and
//! body timeouts, a connection cap, a shutdown deadline) with the shutdown signal; and the
//! meter that caps the WebSocket frames received at once, as bodies are.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{ready, Context, Poll};
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
/// Client frames of WebSocket sessions received at once beyond their first [`FREE_FRAME`]
/// bytes, as [`MAX_BODIES`] for bodies (a session wanting more waits, its socket unread).
pub const MAX_FRAMES: usize = 64;
/// Bytes of a client frame a session reads before it needs one of the [`MAX_FRAMES`] slots
/// (a second of 16 kHz audio is 43 kB in base64, so small frames never wait).
pub const FREE_FRAME: usize = 64 * 1024;
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
/// connection that sends no byte, or no complete request headers, within [`READ_TIMEOUT`]
/// (also between requests on a kept-alive connection) is closed; over TLS (`tls`), a client that does not
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
        let meter = FrameMeter::default();
        let stream = Metered {
            io: stream,
            meter: meter.clone(),
            acquiring: None,
            deadline: None,
        };
        let service = hyper_util::service::TowerToHyperService::new(tower::ServiceExt::map_request(
            app.clone(),
            move |mut r: axum::http::Request<hyper::body::Incoming>| {
                r.extensions_mut().insert(axum::extract::ConnectInfo(remote));
                r.extensions_mut().insert(meter.clone());
                r
            },
        ));
        let stop = stop_rx.clone();
        let acceptor = acceptor.clone();
        tasks.spawn(async move {
            let _permit = permit;
            // hyper's header timeout starts with the first byte, and telling HTTP/1 from
            // HTTP/2 waits for it without a limit: a client that never sends one is dropped
            // here, so silent connections cannot hold every slot.
            let mut first = [0u8; 1];
            match tokio::time::timeout(READ_TIMEOUT, stream.io.peek(&mut first)).await {
                Ok(Ok(n)) if n > 0 => {}
                _ => return,
            }
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

/// The meter of a connection's incoming bytes, given to its requests as an extension: once a
/// handler [`limit`](FrameMeter::limit)s it (a WebSocket session), the connection reads at
/// most [`FREE_FRAME`] bytes past the last message the session took
/// ([`message_done`](FrameMeter::message_done)) before it holds one of the slots, and a frame
/// that holds one must arrive whole within [`READ_TIMEOUT`] (else the read fails with
/// `TimedOut`). Until then reads are not metered (request bodies have their own slots).
#[derive(Clone, Default)]
pub struct FrameMeter(Arc<MeterState>);

#[derive(Default)]
struct MeterState {
    slots: OnceLock<Arc<tokio::sync::Semaphore>>,
    held: Mutex<Held>,
}

/// What a connection holds now: bytes read past the last message, and its slot if any.
#[derive(Default)]
struct Held {
    unread: usize,
    slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl FrameMeter {
    /// From now on, frames past [`FREE_FRAME`] bytes need one of `slots`.
    pub fn limit(&self, slots: Arc<tokio::sync::Semaphore>) {
        let _ = self.0.slots.set(slots);
    }

    /// The session took a whole message: what it read is no longer held (its slot is freed).
    pub fn message_done(&self) {
        let mut h = self.0.held.lock().expect("no panics holding the meter");
        h.unread = 0;
        h.slot = None;
    }

    /// Whether the connection holds a slot now.
    pub fn holds_slot(&self) -> bool {
        self.0.held.lock().expect("no panics holding the meter").slot.is_some()
    }
}

type Acquiring =
    Pin<Box<dyn Future<Output = Result<tokio::sync::OwnedSemaphorePermit, tokio::sync::AcquireError>> + Send>>;

/// A connection's stream, read as its [`FrameMeter`] allows.
struct Metered<I> {
    io: I,
    meter: FrameMeter,
    /// The slot being waited for.
    acquiring: Option<Acquiring>,
    /// When the frame holding the slot must have arrived.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<I: tokio::io::AsyncRead + Unpin> tokio::io::AsyncRead for Metered<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        let Some(slots) = this.meter.0.slots.get() else {
            return Pin::new(&mut this.io).poll_read(cx, buf);
        };
        let (unread, holds) = {
            let h = this.meter.0.held.lock().expect("no panics holding the meter");
            (h.unread, h.slot.is_some())
        };
        if !holds {
            this.deadline = None;
            if unread >= FREE_FRAME {
                let acquiring = this
                    .acquiring
                    .get_or_insert_with(|| Box::pin(slots.clone().acquire_owned()));
                let slot = ready!(acquiring.as_mut().poll(cx));
                this.acquiring = None;
                let slot = slot.map_err(|_| std::io::Error::other("the frame slots are closed"))?;
                this.meter.0.held.lock().expect("no panics holding the meter").slot = Some(slot);
                this.deadline = Some(Box::pin(tokio::time::sleep(READ_TIMEOUT)));
            }
        }
        if let Some(d) = this.deadline.as_mut() {
            if d.as_mut().poll(cx).is_ready() {
                return Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("a frame did not arrive within {} s", READ_TIMEOUT.as_secs()),
                )));
            }
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        let read = buf.filled().len() - before;
        let mut h = this.meter.0.held.lock().expect("no panics holding the meter");
        h.unread = h.unread.saturating_add(read);
        Poll::Ready(Ok(()))
    }
}

impl<I: tokio::io::AsyncWrite + Unpin> tokio::io::AsyncWrite for Metered<I> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
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
