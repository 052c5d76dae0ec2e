//! What several test files share: a redis-server of the test's own.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A redis-server of the test's own, stopped when dropped.
pub struct RedisServer {
    child: Child,
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
}

impl RedisServer {
    /// The redis-server's process id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts redis-server on a free loopback port, or `None` (said on stderr) when it is not
/// installed and `FLUX_REQUIRE_REDIS` is unset.
pub fn redis_server() -> Option<RedisServer> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new("redis-server")
        .args([
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if std::env::var_os("FLUX_REQUIRE_REDIS").is_some() => {
            panic!("FLUX_REQUIRE_REDIS is set but redis-server cannot start: {e}")
        }
        Err(e) => {
            eprintln!("SKIPPED: redis-server is not installed ({e}); `apt-get install redis-server`, or set FLUX_REQUIRE_REDIS=1 to fail instead");
            return None;
        }
    };
    let server = RedisServer {
        child,
        url: format!("redis://127.0.0.1:{port}/0"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(server);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("redis-server did not listen on port {port} within 5 s");
}

/// The Pacific date of `t` nanoseconds after `start`, by the zone's own definition (the
/// brute-force checkers' calendar, independent of the ledger's arithmetic).
pub fn pacific_day(start: chrono::DateTime<chrono::FixedOffset>, t: u64) -> chrono::NaiveDate {
    (start + chrono::Duration::nanoseconds(t as i64))
        .with_timezone(&chrono_tz::America::Los_Angeles)
        .date_naive()
}

/// The first instant after `t` whose Pacific date differs, found by bisection on
/// [`pacific_day`].
pub fn next_pacific_day(start: chrono::DateTime<chrono::FixedOffset>, t: u64) -> u64 {
    let d = pacific_day(start, t);
    let (mut lo, mut hi) = (t, t + 26 * 3600 * 1_000_000_000);
    while lo + 1 < hi {
        let mid = lo + (hi - lo) / 2;
        if pacific_day(start, mid) == d {
            lo = mid
        } else {
            hi = mid
        }
    }
    hi
}
