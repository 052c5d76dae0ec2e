//! What several test files share: a redis-server (or valkey-server) of the test's own, alone
//! or as a 3-node cluster, a loopback listener and a `serve` in the test's process, a
//! self-signed certificate and a client that trusts it, and the Pacific calendar of the
//! brute-force checkers.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Which server a test starts: Redis, or Valkey (its fork, Debian 12 backports'
/// `valkey-server` 8). Both speak the same protocol and run the same scripts; each has its own
/// server and command-line programs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    Redis,
    Valkey,
}

impl Flavor {
    /// The server program.
    pub fn server(self) -> &'static str {
        match self {
            Flavor::Redis => "redis-server",
            Flavor::Valkey => "valkey-server",
        }
    }

    /// The command-line client (`--cluster create` included).
    pub fn cli(self) -> &'static str {
        match self {
            Flavor::Redis => "redis-cli",
            Flavor::Valkey => "valkey-cli",
        }
    }

    /// The Debian package that brings both.
    fn package(self) -> &'static str {
        match self {
            Flavor::Redis => "redis-server",
            Flavor::Valkey => "valkey-server (bookworm-backports on Debian 12)",
        }
    }
}

/// A redis-server (or valkey-server) of the test's own, stopped when dropped.
pub struct RedisServer {
    child: Child,
    port: u16,
    args: Vec<String>,
    flavor: Flavor,
    /// `redis://127.0.0.1:PORT/0`.
    pub url: String,
}

impl RedisServer {
    /// The redis-server's process id (to freeze it with SIGSTOP).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Its port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills it (SIGKILL: no chance to save anything) and waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Starts a fresh, empty redis-server on the same port with the same settings.
    pub fn start_again(&mut self) {
        self.child = spawn(self.flavor, &self.args).expect("the server started once already");
        wait_listening(self.port);
    }

    /// What `redis-cli` (`valkey-cli`) prints for `args` against it.
    pub fn cli(&self, args: &[&str]) -> String {
        flavor_cli(self.flavor, self.port, args)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// What `redis-cli -p PORT ARGS` prints.
pub fn redis_cli(port: u16, args: &[&str]) -> String {
    flavor_cli(Flavor::Redis, port, args)
}

/// What `redis-cli` or `valkey-cli` `-p PORT ARGS` prints.
pub fn flavor_cli(flavor: Flavor, port: u16, args: &[&str]) -> String {
    let out = Command::new(flavor.cli())
        .args(["-h", "127.0.0.1", "-p", &port.to_string()])
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{} comes with {}: {e}", flavor.cli(), flavor.server()));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A free loopback port; for a cluster node (`bus`), one whose cluster bus port (the port
/// + 10,000) is free too.
fn free_port(bus: bool) -> u16 {
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !bus || (port <= 55_535 && std::net::TcpListener::bind(("127.0.0.1", port + 10_000)).is_ok()) {
            return port;
        }
    }
}

fn spawn(flavor: Flavor, args: &[String]) -> std::io::Result<Child> {
    Command::new(flavor.server())
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
}

fn wait_listening(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the server did not listen on port {port} within 5 s");
}

/// Whether the server `child` listens on `port` within 5 s: false as soon as it exits (the
/// port, or a cluster node's bus port, taken by another test between the pick and the bind).
fn listening(child: &mut Child, port: u16) -> bool {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return true;
        }
        if matches!(child.try_wait(), Ok(Some(_))) {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Starts redis-server on a free loopback port, or `None` (said on stderr) when it is not
/// installed and `FLUX_REQUIRE_REDIS` is unset. No persistence; `DEBUG` allowed (for
/// `DEBUG SLEEP`, a real stall).
pub fn redis_server() -> Option<RedisServer> {
    redis_server_with(&[])
}

/// [`redis_server`] with more settings (`["--maxmemory", "10mb"]`).
pub fn redis_server_with(extra: &[&str]) -> Option<RedisServer> {
    server_with(Flavor::Redis, extra)
}

/// valkey-server on a free loopback port, as [`redis_server`]: `None` (said on stderr) when it
/// is not installed, unless `FLUX_REQUIRE_REDIS` is set (then Valkey must be there too).
pub fn valkey_server() -> Option<RedisServer> {
    server_with(Flavor::Valkey, &[])
}

/// A `flavor` server with the test settings and `extra`, on a free loopback port: another
/// port if the one picked was taken before the server bound it (tests run in parallel).
pub fn server_with(flavor: Flavor, extra: &[&str]) -> Option<RedisServer> {
    let bus = extra.contains(&"--cluster-enabled");
    for _ in 0..5 {
        let port = free_port(bus);
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--enable-debug-command",
            "local",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        let mut child = match spawn(flavor, &args) {
            Ok(c) => c,
            Err(e) if std::env::var_os("FLUX_REQUIRE_REDIS").is_some() => {
                panic!("FLUX_REQUIRE_REDIS is set but {} cannot start: {e}", flavor.server())
            }
            Err(e) => {
                eprintln!(
                    "SKIPPED: {} is not installed ({e}); `apt-get install {}`, or set FLUX_REQUIRE_REDIS=1 to fail instead",
                    flavor.server(),
                    flavor.package()
                );
                return None;
            }
        };
        if listening(&mut child, port) {
            return Some(RedisServer {
                child,
                port,
                args,
                flavor,
                url: format!("redis://127.0.0.1:{port}/0"),
            });
        }
        let _ = child.kill();
        let _ = child.wait();
    }
    panic!("{} did not listen on a free loopback port in 5 tries", flavor.server());
}

/// A Redis Cluster of the test's own: three masters, no replicas, stopped when dropped.
pub struct RedisCluster {
    nodes: Vec<RedisServer>,
    _dir: tempfile::TempDir,
    /// `redis+cluster://127.0.0.1:PORT` (its first node; the client finds the others).
    pub url: String,
}

impl RedisCluster {
    /// Its nodes' ports.
    pub fn ports(&self) -> Vec<u16> {
        self.nodes.iter().map(|n| n.port).collect()
    }

    /// What its command-line client prints for `args` against the node on `port`.
    pub fn cli(&self, port: u16, args: &[&str]) -> String {
        flavor_cli(self.nodes[0].flavor, port, args)
    }
}

/// Starts three `redis-server --cluster-enabled yes` on free loopback ports and joins them
/// with `redis-cli --cluster create`, or `None` as [`redis_server`].
pub fn redis_cluster() -> Option<RedisCluster> {
    cluster(Flavor::Redis)
}

/// [`redis_cluster`] of three `valkey-server`s joined by `valkey-cli --cluster create`.
pub fn valkey_cluster() -> Option<RedisCluster> {
    cluster(Flavor::Valkey)
}

fn cluster(flavor: Flavor) -> Option<RedisCluster> {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let conf = dir.path().join(format!("nodes-{}.conf", nodes.len()));
        let node = server_with(
            flavor,
            &[
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                conf.to_str().unwrap(),
                "--dir",
                dir.path().to_str().unwrap(),
            ],
        )?;
        nodes.push(node);
    }
    let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
    let out = Command::new(flavor.cli())
        .arg("--cluster")
        .arg("create")
        .args(&addrs)
        .args(["--cluster-replicas", "0", "--cluster-yes"])
        .output()
        .unwrap_or_else(|e| panic!("{} comes with {}: {e}", flavor.cli(), flavor.server()));
    assert!(
        out.status.success(),
        "{} --cluster create: {}",
        flavor.cli(),
        String::from_utf8_lossy(&out.stdout)
    );
    for _ in 0..200 {
        if nodes
            .iter()
            .all(|n| n.cli(&["CLUSTER", "INFO"]).contains("cluster_state:ok"))
        {
            let url = format!("redis+cluster://127.0.0.1:{}", nodes[0].port);
            return Some(RedisCluster { nodes, _dir: dir, url });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    panic!("the cluster on {addrs:?} did not become ready within 10 s");
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

/// A listener on a free loopback port and its base URL.
pub async fn listener() -> (tokio::net::TcpListener, String) {
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    (l, format!("http://{addr}"))
}

/// A serve for the scenario `text` on loopback, in this process: its base URL and its stop.
pub async fn serve(text: &str) -> (String, tokio::sync::oneshot::Sender<()>) {
    let s = flux_sim::scenario::Scenario::parse(text, std::path::Path::new("up.toml")).unwrap();
    let (l, url) = listener().await;
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(flux_sim::net::serve::serve(l, s, 1, async move {
        let _ = rx.await;
    }));
    (url, tx)
}

/// A self-signed certificate for 127.0.0.1 and localhost written as `cert.pem` and `key.pem`
/// in a temporary directory (kept while the first value lives): the directory, the server
/// configuration made from the two files as `--tls-cert/--tls-key` make it, and the
/// certificate's PEM text (for clients to trust).
pub fn self_signed_tls() -> (tempfile::TempDir, std::sync::Arc<rustls::ServerConfig>, String) {
    let (cert, key) = flux_sim::net::tls::self_signed().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (c, k) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&c, &cert).unwrap();
    std::fs::write(&k, &key).unwrap();
    let config = flux_sim::net::tls::server_config(&c, &k).unwrap();
    (dir, config, cert)
}

/// A WebSocket connector over TLS that trusts the PEM certificate `cert` alone.
pub fn trusting(cert: &str) -> tokio_tungstenite::Connector {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_slice(cert.as_bytes()).unwrap())
        .unwrap();
    let client =
        rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
    tokio_tungstenite::Connector::Rustls(std::sync::Arc::new(client))
}

/// The body of a GET of `url` as text (a metrics page).
pub async fn text_of(client: &reqwest::Client, url: &str) -> String {
    client.get(url).send().await.unwrap().text().await.unwrap()
}

/// A proxy's options for a test: forwarding to `upstream`, clients sending `token`, no shared
/// ledger and no margin.
pub fn proxy_options(
    upstream: &str,
    token: &str,
    deadline: Duration,
    queue: usize,
) -> flux_sim::net::proxy::ProxyOptions {
    flux_sim::net::proxy::ProxyOptions {
        upstream: upstream.to_string(),
        token: token.into(),
        deadline,
        queue,
        ledger: None,
        margin: 0,
        allow_eviction: false,
    }
}
