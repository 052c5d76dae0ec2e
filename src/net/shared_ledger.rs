//! Budgets shared by proxies on several machines, in Redis (`proxy --ledger redis://…`, or
//! `redis+cluster://…` for Redis Cluster and Valkey cluster): one Lua script checks and records
//! a request atomically in one round trip, with the in-process ledger's semantics for requests
//! and tokens per minute (sliding 60 s windows: an entry at `t` counts while `t + 60 s > now`;
//! the exact instant a request would fit) and per day (reset at the calendar's midnight).
//!
//! Time is the ledger's own clock (Redis `TIME`, read inside the script), so a request is
//! recorded at the instant it is admitted whatever the network or a stalled Redis did before;
//! every call is bounded by the time its request has left. Keys are per (project, model), all
//! under one hash tag (`flux:{project:model}:…`, one cluster slot): two sorted sets and a
//! running token sum for the minute windows (expiring a minute after their last write), a hash
//! per day named by the day's end (expiring after two days), and the budget's epoch (when its
//! state began in this Redis). A proxy remembers each budget's epoch: a different one means
//! Redis lost the budget's state (restarted empty, flushed, evicted), and the budget is then
//! held for one full window from the new epoch, since the upstream's windows still hold what
//! was sent before. The connection reconnects by itself (with backoff); whether the ledger
//! answers is tracked for `/flux/metrics` and the log. Concurrency limits are kept for Live
//! sessions only, as leases renewed while a session lasts (a sorted set per budget, same tag).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;

use crate::core::ledger::{Admission, Dimension, Dims, Limits};
use crate::core::time::{format_duration, Calendar, Nanos, HOUR};
use crate::core::topology::mask_secrets;

/// Longest wait for Redis to accept the proxy's connection at start.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// Longest wait for one connection attempt while reconnecting; attempts follow each other
/// with an exponential backoff of at most [`RECONNECT_MAX_DELAY`].
const RECONNECT_ATTEMPT_TIMEOUT: Duration = Duration::from_secs(2);
/// Longest pause between two reconnection attempts.
pub const RECONNECT_MAX_DELAY: Duration = Duration::from_millis(500);

/// When a request refused because the ledger did not answer should come back (its 503's
/// RetryInfo): by then the proxy has checked the ledger again (it does every 500 ms) and the
/// connection has made its next attempt (at most [`RECONNECT_MAX_DELAY`] apart).
pub const RETRY_AFTER_OUTAGE: Duration = Duration::from_secs(1);

/// A call that timed out with less time than this (a request's last milliseconds ran out)
/// does not mark the ledger down; a longer wait, a refused connection or a broken pipe does.
const JUDGE_AFTER: Duration = Duration::from_millis(250);

/// How far the ledger's clock may be behind this machine's before a day boundary is misplaced
/// (the script is given the ends of the day of `now - 1 h` and of the next day, and picks).
const CLOCK_SKEW: Nanos = HOUR;

/// Lua's numbers are doubles, exact to 2⁵³: microseconds since 1970 (about 1.8 × 10¹⁵) are,
/// but Lua prints them with 14 digits, so every time goes back to Redis as a string formatted
/// `%.0f`.
///
/// KEYS: rpm set, tpm set, tpm sum, day hash A, day hash B, epoch hash. ARGV: now (Unix µs, or
/// empty: the ledger's `TIME`), tokens, rpm, tpm, rpd, tpd (-1: none), member, day A's end,
/// day B's end, window span (µs), the epoch the caller last saw (or empty), the requests the
/// call counts for (a batch of embeddings may count one per text: that many RPM members,
/// `member#1`…, and one TPM member with all the tokens). Reply: admitted
/// (1/0, or -1: the ledger's clock is past day B), four violated flags, retry (Unix µs), the
/// ledger's now, the budget's epoch, whether the caller's epoch was not this one (state lost).
const ADMIT: &str = r#"
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local nows = string.format('%.0f', now)
local tokens = tonumber(ARGV[2])
local rpm, tpm, rpd, tpd = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local member = ARGV[7]
local req = tonumber(ARGV[12])
local day, day_end = KEYS[4], tonumber(ARGV[8])
if now >= day_end then
  day, day_end = KEYS[5], tonumber(ARGV[9])
end
if now >= day_end then
  return {-1, 0, 0, 0, 0, '0', nows, '', 0}
end
local span = tonumber(ARGV[10])
local ec = redis.call('HMGET', KEYS[6], 'e', 'c')
local epoch = ec[1]
local hold = tonumber(ec[2] or '0')
if not epoch then
  epoch = nows
  redis.call('HSET', KEYS[6], 'e', epoch)
end
local lost = 0
if ARGV[11] ~= '' and ARGV[11] ~= epoch then
  lost = 1
  local h = tonumber(epoch) + span
  if h > now and h > hold then
    hold = h
    redis.call('HSET', KEYS[6], 'c', string.format('%.0f', h))
  end
end
local cutoff = string.format('%.0f', now - span)
local sum = tonumber(redis.call('GET', KEYS[3]) or '0')
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)) do
  sum = sum - tonumber(string.match(m, ':(%d+)$'))
end
if redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff) > 0 then
  redis.call('SET', KEYS[3], string.format('%.0f', sum), 'KEEPTTL')
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local rt = redis.call('HMGET', day, 'r', 't')
local r = tonumber(rt[1] or '0')
local t = tonumber(rt[2] or '0')
local v = {0, 0, 0, 0}
local retry = now
if rpm >= 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n + req > rpm then
    v[1] = 1
    local e = redis.call('ZRANGE', KEYS[1], n + req - rpm - 1, n + req - rpm - 1, 'WITHSCORES')
    retry = math.max(retry, tonumber(e[2]) + span)
  end
end
if tpm >= 0 and sum + tokens > tpm then
  v[2] = 1
  local target = sum - (tpm - tokens)
  local acc = 0
  local e = redis.call('ZRANGE', KEYS[2], 0, -1, 'WITHSCORES')
  for i = 1, #e, 2 do
    acc = acc + tonumber(string.match(e[i], ':(%d+)$'))
    if acc >= target then
      retry = math.max(retry, tonumber(e[i + 1]) + span)
      break
    end
  end
end
if rpd >= 0 and r + req > rpd then
  v[3] = 1
  retry = math.max(retry, day_end)
end
if tpd >= 0 and t + tokens > tpd then
  v[4] = 1
  retry = math.max(retry, day_end)
end
if hold > now and (rpm >= 0 or tpm >= 0) then
  if rpm >= 0 then v[1] = 1 end
  if tpm >= 0 then v[2] = 1 end
  retry = math.max(retry, hold)
end
if v[1] + v[2] + v[3] + v[4] > 0 then
  return {0, v[1], v[2], v[3], v[4], string.format('%.0f', retry), nows, epoch, lost}
end
if rpm >= 0 then
  if req == 1 then
    redis.call('ZADD', KEYS[1], nows, member)
  else
    local z = {}
    for i = 1, req do
      z[#z + 1] = nows
      z[#z + 1] = member .. '#' .. i
    end
    redis.call('ZADD', KEYS[1], unpack(z))
  end
  redis.call('PEXPIRE', KEYS[1], math.floor(span / 1000) + 1000)
end
if tpm >= 0 then
  redis.call('ZADD', KEYS[2], nows, member .. ':' .. ARGV[2])
  redis.call('SET', KEYS[3], string.format('%.0f', sum + tokens), 'PX', math.floor(span / 1000) + 1000)
  redis.call('PEXPIRE', KEYS[2], math.floor(span / 1000) + 1000)
end
if rpd >= 0 or tpd >= 0 then
  redis.call('HINCRBY', day, 'r', req)
  redis.call('HINCRBY', day, 't', ARGV[2])
  redis.call('EXPIRE', day, 172800)
end
return {1, 0, 0, 0, 0, '0', nows, epoch, lost}
"#;

/// Live sessions' concurrency slots, leased: KEYS: the budget's `live` sorted set (members:
/// sessions, scores: lease ends in Unix ms by the ledger's clock). ARGV: limit (-1: release
/// `member`), member, lease (ms). A member already there is renewed; a new one is admitted if
/// fewer than `limit` unexpired leases remain. Reply: {1, 0} held, or {0, ms until the earliest
/// lease ends}. A proxy that dies stops renewing: its slots come back when their leases end.
const LEASE: &str = r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local limit, member, lease = tonumber(ARGV[1]), ARGV[2], tonumber(ARGV[3])
if limit < 0 then
  redis.call('ZREM', KEYS[1], member)
  return {1, 0}
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now))
if redis.call('ZSCORE', KEYS[1], member) or redis.call('ZCARD', KEYS[1]) < limit then
  redis.call('ZADD', KEYS[1], string.format('%.0f', now + lease), member)
  redis.call('PEXPIRE', KEYS[1], lease * 2)
  return {1, 0}
end
local e = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
return {0, string.format('%.0f', tonumber(e[2]) - now)}
"#;

/// How long a Live session's concurrency slot is leased in the shared ledger; the proxy
/// renews it every third of that while the session lasts, so a killed proxy's slots come
/// back at most this long after its last renewal.
pub const LEASE_TIME: Duration = Duration::from_secs(15);

/// The connection: one Redis (or Valkey), or a cluster; both reconnect by themselves.
#[derive(Clone)]
enum Con {
    One(ConnectionManager),
    Cluster(ClusterConnection),
}

impl Con {
    async fn invoke(&self, inv: &redis::ScriptInvocation<'_>) -> redis::RedisResult<Vec<redis::Value>> {
        match self {
            Con::One(c) => inv.invoke_async(&mut c.clone()).await,
            Con::Cluster(c) => inv.invoke_async(&mut c.clone()).await,
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> redis::RedisResult<T> {
        match self {
            Con::One(c) => cmd.query_async(&mut c.clone()).await,
            Con::Cluster(c) => cmd.query_async(&mut c.clone()).await,
        }
    }
}

/// Whether the ledger answers, as this proxy last saw it.
#[derive(Default)]
struct Health {
    /// Since when it has not answered, and why (none: it answers).
    down: Mutex<Option<(Instant, String)>>,
    /// Times it stopped answering.
    outages: AtomicU64,
    /// Calls it did not answer (in time).
    errors: AtomicU64,
    /// Budgets found to have lost their state.
    losses: AtomicU64,
    /// Calls answered, and their total time in microseconds.
    answered: AtomicU64,
    answer_micros: AtomicU64,
}

/// What [`RedisLedger::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LedgerStatus {
    /// Whether the last call was answered.
    pub up: bool,
    /// How long it has not answered, if it does not.
    pub down_for: Option<Duration>,
    /// Times it stopped answering.
    pub outages: u64,
    /// Calls not answered (in time).
    pub errors: u64,
    /// Budgets whose state the ledger lost (seen by this proxy).
    pub losses: u64,
    /// Calls answered, and their total time in microseconds.
    pub answered: u64,
    /// Total time of the answered calls, in microseconds.
    pub answer_micros: u64,
}

impl Health {
    /// Notes a call's result; a failure marks the ledger down unless not `judged`.
    fn saw<T>(&self, result: &Result<T, String>, took: Duration, judged: bool) {
        let mut down = self.down.lock().expect("no panic holds it");
        match result {
            Ok(_) => {
                self.answered.fetch_add(1, Ordering::Relaxed);
                self.answer_micros
                    .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Ordering::Relaxed);
                if let Some((since, _)) = down.take() {
                    eprintln!(
                        "flux-sim proxy: the shared ledger (Redis) answers again, after {} down",
                        format_duration(since.elapsed().as_nanos().min(u64::MAX as u128) as u64)
                    );
                }
            }
            Err(e) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
                // A request with little time left that timed out says little about Redis: it
                // is an error, not an outage (the watch, with its own time, decides).
                if down.is_none() && judged {
                    self.outages.fetch_add(1, Ordering::Relaxed);
                    eprintln!("flux-sim proxy: shared ledger down ({e}); sending nothing until it answers");
                    *down = Some((Instant::now(), e.clone()));
                }
            }
        }
    }
}

/// A ledger in Redis.
#[derive(Clone)]
pub struct RedisLedger {
    con: Con,
    script: redis::Script,
    lease_script: redis::Script,
    prefix: String,
    calendar: Calendar,
    /// How long a minute window holds an entry, in microseconds: 60 s plus a margin.
    span: u64,
    /// Whether times come from the caller (tests) rather than the ledger's clock.
    caller_clock: bool,
    /// Each budget's epoch as last seen.
    epochs: Arc<Mutex<HashMap<String, String>>>,
    health: Arc<Health>,
}

/// The ledger's sockets: `TCP_NODELAY`, so that a call written while an earlier one's reply is
/// still on its way (several requests at once share the connection) leaves at once instead of
/// waiting for an ACK (Nagle's algorithm; redis-rs leaves it on unless built with its
/// `tcp_nodelay` feature).
fn tcp_settings() -> redis::io::tcp::TcpSettings {
    redis::io::tcp::TcpSettings::default().set_nodelay(true)
}

/// `redis+cluster://…` (or `rediss+cluster://…`) as the `redis://` URL of one of its nodes, or
/// `None` for a single Redis.
fn cluster_seed(url: &str) -> Option<String> {
    for (scheme, plain) in [("redis+cluster://", "redis://"), ("rediss+cluster://", "rediss://")] {
        if url.len() >= scheme.len() && url[..scheme.len()].eq_ignore_ascii_case(scheme) {
            return Some(format!("{plain}{}", &url[scheme.len()..]));
        }
    }
    None
}

impl RedisLedger {
    /// Connects to `url` (`redis://host:port/db` for one Redis or Valkey,
    /// `redis+cluster://host:port` for a cluster, given any one of its nodes); days end at
    /// midnight in `calendar`'s zone and its instants map to the Unix clock. Keys start with
    /// `prefix`. Minute windows hold each entry `margin` longer than 60 s (as
    /// [`Ledger::with_margin`](crate::core::ledger::Ledger::with_margin)), so that sends
    /// reaching the server up to that much later than admitted still fit. Errors name the
    /// Redis URL (masked), not a flag.
    pub async fn connect(url: &str, calendar: Calendar, prefix: &str, margin: Nanos) -> Result<Self, String> {
        let shown = mask_secrets(url);
        let fail = |e: &dyn std::fmt::Display| mask_secrets(&format!("Redis URL {shown:?}: cannot reach Redis: {e}"));
        let connecting = async {
            match cluster_seed(url) {
                Some(seed) => {
                    let client = redis::cluster::ClusterClient::builder(vec![seed.as_str()])
                        .tcp_settings(tcp_settings())
                        .connection_timeout(RECONNECT_ATTEMPT_TIMEOUT)
                        .retries(2)
                        .min_retry_wait(50)
                        .max_retry_wait(RECONNECT_MAX_DELAY.as_millis() as u64)
                        .build()
                        .map_err(|e| mask_secrets(&format!("Redis URL {shown:?}: {e}")))?;
                    client
                        .get_async_connection()
                        .await
                        .map(Con::Cluster)
                        .map_err(|e| fail(&e))
                }
                None => {
                    let client =
                        redis::Client::open(url).map_err(|e| mask_secrets(&format!("Redis URL {shown:?}: {e}")))?;
                    let config = ConnectionManagerConfig::new()
                        .set_tcp_settings(tcp_settings())
                        .set_connection_timeout(RECONNECT_ATTEMPT_TIMEOUT)
                        .set_factor(2)
                        .set_max_delay(RECONNECT_MAX_DELAY.as_millis() as u64)
                        .set_number_of_retries(2);
                    ConnectionManager::new_with_config(client, config)
                        .await
                        .map(Con::One)
                        .map_err(|e| fail(&e))
                }
            }
        };
        let con = match tokio::time::timeout(CONNECT_TIMEOUT, connecting).await {
            Ok(c) => c?,
            Err(_) => {
                return Err(format!(
                    "Redis URL {shown:?}: Redis did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            }
        };
        Ok(RedisLedger {
            con,
            script: redis::Script::new(ADMIT),
            lease_script: redis::Script::new(LEASE),
            prefix: prefix.to_string(),
            calendar,
            span: (crate::core::time::MINUTE + margin) / 1000,
            caller_clock: false,
            epochs: Arc::new(Mutex::new(HashMap::new())),
            health: Arc::new(Health::default()),
        })
    }

    /// This ledger taking the times its callers give rather than its own clock: for tests
    /// that compare it with the in-process ledger at chosen instants.
    pub fn with_caller_clock(mut self) -> Self {
        self.caller_clock = true;
        self
    }

    /// Why Redis may drop the ledger's keys to make room, if it may: a `maxmemory` with a
    /// policy other than `noeviction` (the `volatile-*` policies evict the ledger's keys too,
    /// since they expire). `Err` when the setting cannot be read (managed services often
    /// refuse `CONFIG`).
    pub async fn eviction_risk(&self) -> Result<Option<String>, String> {
        let read = |name: &'static str| async move {
            let reply: Vec<String> = tokio::time::timeout(
                CONNECT_TIMEOUT,
                self.con.query(redis::cmd("CONFIG").arg("GET").arg(name)),
            )
            .await
            .map_err(|_| format!("Redis did not answer CONFIG GET {name}"))?
            .map_err(|e| format!("CONFIG GET {name}: {e}"))?;
            reply
                .get(1)
                .cloned()
                .ok_or_else(|| format!("CONFIG GET {name}: answered {reply:?}"))
        };
        let policy = read("maxmemory-policy").await?;
        let max: u64 = read("maxmemory").await?.parse().unwrap_or(0);
        Ok((max > 0 && policy != "noeviction").then(|| {
            format!(
                "Redis may evict the ledger's keys (maxmemory {max} bytes, maxmemory-policy {policy}): the fleet would then forget what it sent and over-send; set maxmemory-policy noeviction (or maxmemory 0)"
            )
        }))
    }

    /// Whether the ledger answers within `within` (an error says why not), noted as calls are.
    pub async fn ping(&self, within: Duration) -> Result<(), String> {
        let t = Instant::now();
        let r = match tokio::time::timeout(within, self.con.query::<String>(&redis::cmd("PING"))).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(mask_secrets(&format!("Redis did not answer: {e}"))),
            Err(_) => Err(format!(
                "Redis did not answer within {}",
                format_duration(within.as_nanos() as u64)
            )),
        };
        self.health.saw(&r, t.elapsed(), true);
        r
    }

    /// Whether the ledger answers, how long it has not, and its counts.
    pub fn status(&self) -> LedgerStatus {
        let down = self.health.down.lock().expect("no panic holds it");
        LedgerStatus {
            up: down.is_none(),
            down_for: down.as_ref().map(|(since, _)| since.elapsed()),
            outages: self.health.outages.load(Ordering::Relaxed),
            errors: self.health.errors.load(Ordering::Relaxed),
            losses: self.health.losses.load(Ordering::Relaxed),
            answered: self.health.answered.load(Ordering::Relaxed),
            answer_micros: self.health.answer_micros.load(Ordering::Relaxed),
        }
    }

    /// Takes (or renews) one of `limit` concurrency slots of the budget named `budget` for
    /// session `member`, leased for [`LEASE_TIME`]: `Ok(None)` held, `Ok(Some(wait))` all
    /// slots taken, the earliest lease ending in `wait` (a lower bound: leases are renewed),
    /// `Err` when the ledger did not answer within `within` (fail closed). `limit` `None`:
    /// gives the slot back.
    pub async fn lease(
        &self,
        budget: &str,
        limit: Option<u64>,
        member: &str,
        within: Duration,
    ) -> Result<Option<Duration>, String> {
        let mut inv = self.lease_script.prepare_invoke();
        inv.key(format!("{}{{{budget}}}:live", self.prefix))
            .arg(limit.map_or(-1, |l| l.min(i64::MAX as u64) as i64))
            .arg(member)
            .arg(LEASE_TIME.as_millis() as u64);
        let t = Instant::now();
        let r = match tokio::time::timeout(within, self.con.invoke(&inv)).await {
            Ok(Ok(reply)) => match reply.as_slice() {
                [redis::Value::Int(1), _] => Ok(None),
                [redis::Value::Int(0), wait] => {
                    let ms = match wait {
                        redis::Value::BulkString(b) => std::str::from_utf8(b).ok().and_then(|s| s.parse::<u64>().ok()),
                        redis::Value::Int(i) => u64::try_from(*i).ok(),
                        _ => None,
                    };
                    Ok(Some(Duration::from_millis(ms.unwrap_or(0))))
                }
                other => Err(format!("the shared ledger (Redis) answered {other:?}")),
            },
            Ok(Err(e)) => Err(mask_secrets(&format!("the shared ledger (Redis) did not answer: {e}"))),
            Err(_) => Err(format!(
                "the shared ledger (Redis) did not answer within {}",
                format_duration(within.as_nanos().min(u64::MAX as u128) as u64)
            )),
        };
        self.health.saw(&r, t.elapsed(), within >= JUDGE_AFTER);
        r
    }

    /// Decides on a call counting `requests` requests (1 but for a batch of embeddings) of
    /// `tokens` tokens in all against the budget named `budget` with `limits`, and records it
    /// if admitted, at the ledger's clock (or at `now` with
    /// [`with_caller_clock`](Self::with_caller_clock)); `now` is the caller's time
    /// (nanoseconds since the calendar's start): the retry instant is returned on it, and it
    /// places the day's end. `member` names the record (unique per request). An `Err` says
    /// Redis did not answer within `within` (or answered nonsense): the caller must not send
    /// (fail closed).
    #[allow(clippy::too_many_arguments)]
    pub async fn admit(
        &self,
        now: Nanos,
        budget: &str,
        limits: Limits,
        requests: u64,
        tokens: u64,
        member: &str,
        within: Duration,
    ) -> Result<Admission, String> {
        let mut impossible = Limits {
            concurrent: None,
            ..limits
        }
        .unservable(tokens);
        for (d, limit) in [(Dimension::Rpm, limits.rpm), (Dimension::Rpd, limits.rpd)] {
            if limit.is_some_and(|l| requests > l) {
                impossible.insert(d);
            }
        }
        if !impossible.is_empty() {
            return Ok(Admission::Unservable { violated: impossible });
        }
        let t = Instant::now();
        let mut judged = true;
        let r = match tokio::time::timeout(within, self.call(now, budget, limits, requests, tokens, member)).await {
            Ok(r) => r,
            Err(_) => Err({
                judged = within >= JUDGE_AFTER;
                format!(
                    "the shared ledger (Redis) did not answer within {} (what was left of the request's deadline)",
                    format_duration(within.as_nanos().min(u64::MAX as u128) as u64)
                )
            }),
        };
        self.health.saw(&r, t.elapsed(), judged);
        r
    }

    async fn call(
        &self,
        now: Nanos,
        budget: &str,
        limits: Limits,
        requests: u64,
        tokens: u64,
        member: &str,
    ) -> Result<Admission, String> {
        let cal = &self.calendar;
        let day_a = cal.next_day_start(if self.caller_clock {
            now
        } else {
            now.saturating_sub(CLOCK_SKEW)
        });
        let day_b = cal.next_day_start(day_a);
        let limit = |l: Option<u64>| l.map_or(-1, |v| v.min(i64::MAX as u64) as i64);
        // One hash tag for all of a budget's keys: one slot in a cluster.
        let base = format!("{}{{{budget}}}", self.prefix);
        let seen = self
            .epochs
            .lock()
            .expect("no panic holds it")
            .get(budget)
            .cloned()
            .unwrap_or_default();
        let given = if self.caller_clock {
            cal.unix_micros(now).to_string()
        } else {
            String::new()
        };
        let mut inv = self.script.prepare_invoke();
        inv.key(format!("{base}:rpm"))
            .key(format!("{base}:tpm"))
            .key(format!("{base}:tpm_sum"))
            .key(format!("{base}:day:{}", cal.unix_micros(day_a)))
            .key(format!("{base}:day:{}", cal.unix_micros(day_b)))
            .key(format!("{base}:epoch"))
            .arg(given)
            .arg(tokens)
            .arg(limit(limits.rpm))
            .arg(limit(limits.tpm))
            .arg(limit(limits.rpd))
            .arg(limit(limits.tpd))
            .arg(member)
            .arg(cal.unix_micros(day_a))
            .arg(cal.unix_micros(day_b))
            .arg(self.span)
            .arg(seen.as_str())
            .arg(requests.max(1));
        let reply = self
            .con
            .invoke(&inv)
            .await
            .map_err(|e| mask_secrets(&format!("the shared ledger (Redis) did not answer: {e}")))?;
        let int = |v: &redis::Value| -> Option<i64> {
            match v {
                redis::Value::Int(i) => Some(*i),
                redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
                redis::Value::SimpleString(s) => s.parse().ok(),
                _ => None,
            }
        };
        let bad = || format!("the shared ledger (Redis) answered {reply:?}");
        if reply.len() != 9 {
            return Err(bad());
        }
        let ledger_now = int(&reply[6]).ok_or_else(bad)?;
        match int(&reply[0]) {
            Some(-1) => {
                return Err(format!(
                    "the shared ledger's clock (Redis TIME, {ledger_now} µs since 1970) is more than a day from this machine's ({} µs): synchronise the clocks (NTP)",
                    cal.unix_micros(now)
                ))
            }
            Some(0 | 1) => {}
            _ => return Err(bad()),
        }
        let epoch = match &reply[7] {
            redis::Value::BulkString(b) => String::from_utf8_lossy(b).into_owned(),
            _ => return Err(bad()),
        };
        if int(&reply[8]) == Some(1) {
            self.health.losses.fetch_add(1, Ordering::Relaxed);
            eprintln!(
                "flux-sim proxy: the shared ledger (Redis) lost the state of budget {budget:?} (epoch {seen} is now {epoch}); it is held for one window from then"
            );
        }
        if epoch != seen {
            self.epochs
                .lock()
                .expect("no panic holds it")
                .insert(budget.to_string(), epoch);
        }
        if int(&reply[0]) == Some(1) {
            return Ok(Admission::Admitted);
        }
        let mut violated = Dims::EMPTY;
        let dims = [Dimension::Rpm, Dimension::Tpm, Dimension::Rpd, Dimension::Tpd];
        for (i, d) in dims.into_iter().enumerate() {
            if int(&reply[i + 1]) == Some(1) {
                violated.insert(d);
            }
        }
        let retry = int(&reply[5]).ok_or_else(bad)?;
        let retry_at = if self.caller_clock {
            cal.from_unix_micros(retry).max(now)
        } else {
            // The wait the ledger's clock says, from the caller's now.
            now.saturating_add((retry.saturating_sub(ledger_now).max(0) as u64).saturating_mul(1000))
        };
        Ok(Admission::Rejected { violated, retry_at })
    }
}
