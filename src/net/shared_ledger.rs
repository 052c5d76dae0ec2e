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

/// The Lua function both scripts use to pre-admit one request (see [`PREFETCH`]): records a
/// reservation of `rtok` tokens as `member` (an RPM member, a TPM member, the day's counts), at
/// `now + life` so that it counts from now until at least a window after the latest instant
/// it may be used, if the budget stays at most half full in every dimension with it, no
/// state-loss hold is on, and its whole life is within the day. 1 if reserved. A macro, so
/// that `concat!` can put it in front of each script.
macro_rules! reserve_lua {
    () => {
        r#"
local function reserve(now, day, day_end, rpm, tpm, rpd, tpd, n, sum, r, t, hold, rtok, life, member, span)
  if now + life >= day_end or hold > now then return 0 end
  if rpm >= 0 and 2 * (n + 1) > rpm then return 0 end
  if tpm >= 0 and 2 * (sum + rtok) > tpm then return 0 end
  if rpd >= 0 and 2 * (r + 1) > rpd then return 0 end
  if tpd >= 0 and 2 * (t + rtok) > tpd then return 0 end
  local at = string.format('%.0f', now + life)
  local ttl = math.floor((span + life) / 1000) + 1000
  if rpm >= 0 then
    redis.call('ZADD', KEYS[1], at, member)
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  if tpm >= 0 then
    redis.call('ZADD', KEYS[2], at, member .. ':' .. string.format('%.0f', rtok))
    redis.call('SET', KEYS[3], string.format('%.0f', sum + rtok), 'PX', ttl)
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  if rpd >= 0 or tpd >= 0 then
    redis.call('HINCRBY', day, 'r', 1)
    redis.call('HINCRBY', day, 't', string.format('%.0f', rtok))
    redis.call('EXPIRE', day, 172800)
  end
  return 1
end
"#
    };
}

/// Lua's numbers are doubles, exact to 2⁵³: microseconds since 1970 (about 1.8 × 10¹⁵) are,
/// but Lua prints them with 14 digits, so every time goes back to Redis as a string formatted
/// `%.0f`.
///
/// KEYS: rpm set, tpm set, tpm sum, day hash A, day hash B, epoch hash. ARGV: now (Unix µs, or
/// empty: the ledger's `TIME`), tokens, rpm, tpm, rpd, tpd (-1: none), member, day A's end,
/// day B's end, window span (µs), the epoch the caller last saw (or empty), the requests the
/// call counts for (a batch of embeddings may count one per text: that many RPM members,
/// `member#1`…, and one TPM member with all the tokens), then for a pre-admission (see
/// [`PREFETCH`]): the tokens to reserve (or empty: none), the reservation's life (µs) and its
/// member; and how long after its life's end an unused reservation is given back at most (µs:
/// a refusal while reservations are out says to come back then, not a window later). Reply: admitted (1/0, or -1: the ledger's clock is past day B), four violated flags,
/// retry (Unix µs), the ledger's now, the budget's epoch, whether the caller's epoch was not
/// this one (state lost), whether a slot was reserved.
const ADMIT: &str = concat!(
    reserve_lua!(),
    r#"
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
  return {-1, 0, 0, 0, 0, '0', nows, '', 0, 0}
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
if v[1] + v[2] > 0 and v[3] + v[4] == 0 and hold <= now then
  -- Slots pre-admitted and not (yet) used are scored in the future: an unused one goes back
  -- at most a sweep after its life, so come back then rather than a window later.
  local k = KEYS[1]
  if rpm < 0 then k = KEYS[2] end
  local fut = redis.call('ZRANGEBYSCORE', k, '(' .. nows, '+inf', 'WITHSCORES', 'LIMIT', 0, 1)
  if #fut > 0 then
    retry = math.min(retry, tonumber(fut[2]) + tonumber(ARGV[16]))
  end
end
if v[1] + v[2] + v[3] + v[4] > 0 then
  return {0, v[1], v[2], v[3], v[4], string.format('%.0f', retry), nows, epoch, lost, 0}
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
local res = 0
if ARGV[13] ~= '' and lost == 0 then
  local n = 0
  if rpm >= 0 then n = redis.call('ZCARD', KEYS[1]) end
  res = reserve(now, day, day_end, rpm, tpm, rpd, tpd, n, sum + tokens, r + req, t + tokens, hold,
    tonumber(ARGV[13]), tonumber(ARGV[14]), ARGV[15], span)
end
return {1, 0, 0, 0, 0, '0', nows, epoch, lost, res}
"#
);

/// Pre-admission: a proxy keeps, per budget, at most one request slot admitted in advance (a
/// reservation, recorded by [`ADMIT`] or by this script), so that its next request that fits
/// goes at once, without a round trip to Redis on its path; the call that confirms it follows
/// off the path. This script confirms (or gives back) a reservation and may reserve the next.
///
/// KEYS: as [`ADMIT`]'s, then the day hash the reservation was counted in. ARGV: now (empty:
/// the ledger's `TIME`), rpm, tpm, rpd, tpd (-1: none), day A's end, day B's end, window span
/// (µs), the epoch the caller last saw, the reservation's member, its tokens, the tokens the
/// request sent on it really counts (empty: it was not used, give it back), the tokens to
/// reserve next (empty: none), the reservation's life (µs), the next reservation's member.
///
/// A confirmation moves the entry to the ledger's now (it was sent before: the windows still
/// hold it a full span from then) with its real tokens, refunding the rest; if the entry is
/// gone (the epoch changed: Redis lost its state), it is recorded again at now, since it was
/// really sent. Reply: 1 (or -1: the ledger's clock is past day B), the ledger's now, the
/// epoch (empty if none), whether the caller's epoch was not this one, whether the next slot
/// was reserved.
const PREFETCH: &str = concat!(
    reserve_lua!(),
    r#"
local now
if ARGV[1] == '' then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
else
  now = tonumber(ARGV[1])
end
local nows = string.format('%.0f', now)
local rpm, tpm, rpd, tpd = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5])
local day, day_end = KEYS[4], tonumber(ARGV[6])
if now >= day_end then
  day, day_end = KEYS[5], tonumber(ARGV[7])
end
if now >= day_end then
  return {-1, nows, '', 0, 0}
end
local span = tonumber(ARGV[8])
local life = tonumber(ARGV[14])
local ttl = math.floor((span + life) / 1000) + 1000
local ec = redis.call('HMGET', KEYS[6], 'e', 'c')
local epoch = ec[1]
local hold = tonumber(ec[2] or '0')
local lost = 0
if (not epoch) or epoch ~= ARGV[9] then lost = 1 end
local cutoff = string.format('%.0f', now - span)
local sum = tonumber(redis.call('GET', KEYS[3]) or '0')
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)) do
  sum = sum - tonumber(string.match(m, ':(%d+)$'))
end
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local old, otok = ARGV[10], tonumber(ARGV[11])
local oldt = old .. ':' .. ARGV[11]
local present = lost == 0
if present and rpm >= 0 then
  present = redis.call('ZSCORE', KEYS[1], old) ~= false
elseif present and tpm >= 0 then
  present = redis.call('ZSCORE', KEYS[2], oldt) ~= false
end
if ARGV[12] ~= '' then
  local real = tonumber(ARGV[12])
  if not epoch then
    epoch = nows
    redis.call('HSET', KEYS[6], 'e', epoch)
  end
  if rpm >= 0 then
    redis.call('ZADD', KEYS[1], nows, old)
    redis.call('PEXPIRE', KEYS[1], ttl)
  end
  if tpm >= 0 then
    if present then
      redis.call('ZREM', KEYS[2], oldt)
      sum = sum - otok
    end
    redis.call('ZADD', KEYS[2], nows, old .. ':' .. ARGV[12])
    sum = sum + real
    redis.call('PEXPIRE', KEYS[2], ttl)
  end
  if rpd >= 0 or tpd >= 0 then
    if present then
      redis.call('HINCRBY', KEYS[7], 't', string.format('%.0f', real - otok))
    else
      redis.call('HINCRBY', day, 'r', 1)
      redis.call('HINCRBY', day, 't', ARGV[12])
      redis.call('EXPIRE', day, 172800)
    end
  end
elseif present then
  if rpm >= 0 then redis.call('ZREM', KEYS[1], old) end
  if tpm >= 0 then
    redis.call('ZREM', KEYS[2], oldt)
    sum = sum - otok
  end
  if rpd >= 0 or tpd >= 0 then
    redis.call('HINCRBY', KEYS[7], 'r', -1)
    redis.call('HINCRBY', KEYS[7], 't', string.format('%.0f', -otok))
  end
end
if tpm >= 0 then
  redis.call('SET', KEYS[3], string.format('%.0f', sum), 'PX', ttl)
end
local res = 0
if ARGV[13] ~= '' and lost == 0 then
  local n = 0
  if rpm >= 0 then n = redis.call('ZCARD', KEYS[1]) end
  local rt = redis.call('HMGET', day, 'r', 't')
  res = reserve(now, day, day_end, rpm, tpm, rpd, tpd, n, sum, tonumber(rt[1] or '0'), tonumber(rt[2] or '0'),
    hold, tonumber(ARGV[13]), life, ARGV[15], span)
end
return {1, nows, epoch or '', lost, res}
"#
);

/// How long a reservation (`PREFETCH`) may be used after the proxy asked for it; one unused
/// that long is given back (within [`crate::net::proxy::LEDGER_WATCH`] more). The ledger
/// records it at its own now plus this, so that it counts until a window after the latest
/// instant it may be used, whatever happens to the confirmation (a proxy that dies or a
/// confirmation that fails leaves it counting for one window: safe). At most 1 s: each
/// admission extends the window keys' expiry to a span and 1 s from its own now.
pub const PREFETCH_LIFE: Duration = Duration::from_secs(1);

/// How long after its life an unused reservation is given back at most: the proxy's sweep
/// runs with its ledger check, every [`crate::net::proxy::LEDGER_WATCH`], and takes a round
/// trip.
pub const RELEASED_WITHIN: Duration = Duration::from_millis(600);

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
                    eprintln!("flux-sim proxy: {e}; the ledger counts as down, nothing is sent until it answers");
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
    prefetch_script: redis::Script,
    lease_script: redis::Script,
    prefix: String,
    calendar: Calendar,
    /// How long a minute window holds an entry, in microseconds: 60 s plus a margin.
    span: u64,
    /// Whether times come from the caller (tests) rather than the ledger's clock.
    caller_clock: bool,
    /// Each budget's epoch as last seen.
    epochs: Arc<Mutex<HashMap<String, String>>>,
    /// Each budget's pre-admitted slot, if it has one or a call that may bring one is on
    /// its way (`PREFETCH`).
    slots: Arc<Mutex<HashMap<String, Slot>>>,
    /// Names reservations (with the proxy's instance in `member`s, unique).
    reservations: Arc<AtomicU64>,
    /// Signalled when a call that may have reserved a slot is over.
    slot_changed: Arc<tokio::sync::Notify>,
    health: Arc<Health>,
}

/// A request slot the ledger admitted in advance for a budget (`PREFETCH`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reservation {
    /// Its member in the ledger's windows.
    member: String,
    /// The tokens reserved: a request of at most this many may use it.
    pub tokens: u64,
    /// The day hash it was counted in.
    day_key: String,
    /// When the call that reserved it was made: it may be used for [`PREFETCH_LIFE`] from then.
    asked: Instant,
    /// The budget's limits (which windows it was counted in).
    limits: Limits,
}

/// A budget's pre-admission state.
enum Slot {
    /// A call that may reserve a slot (or confirms one) is on its way: no other may. `waited`:
    /// a request waits for what it brings ([`RedisLedger::take_or_wait`]).
    Asking {
        waited: bool,
    },
    Ready(Reservation),
}

/// The limits as the scripts take them: -1 for none.
fn lua_limit(l: Option<u64>) -> i64 {
    l.map_or(-1, |v| v.min(i64::MAX as u64) as i64)
}

/// A reply's element as an integer.
fn int_of(v: &redis::Value) -> Option<i64> {
    match v {
        redis::Value::Int(i) => Some(*i),
        redis::Value::BulkString(b) => std::str::from_utf8(b).ok()?.parse().ok(),
        redis::Value::SimpleString(s) => s.parse().ok(),
        _ => None,
    }
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
            prefetch_script: redis::Script::new(PREFETCH),
            lease_script: redis::Script::new(LEASE),
            prefix: prefix.to_string(),
            calendar,
            span: (crate::core::time::MINUTE + margin) / 1000,
            caller_clock: false,
            epochs: Arc::new(Mutex::new(HashMap::new())),
            slots: Arc::new(Mutex::new(HashMap::new())),
            reservations: Arc::new(AtomicU64::new(0)),
            slot_changed: Arc::new(tokio::sync::Notify::new()),
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
            Ok(Err(e)) => Err(mask_secrets(&format!("the shared ledger (Redis) did not answer: {e}"))),
            Err(_) => Err(format!(
                "the shared ledger (Redis) did not answer within {}",
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
        self.admit_reserving(now, budget, limits, requests, tokens, member, within, None)
            .await
    }

    /// As [`admit`](Self::admit); with `reserve`, a single request, and no slot of the budget
    /// held or asked for, the same call also pre-admits a slot of `reserve` tokens if the
    /// budget stays at most half full in every dimension with it (`PREFETCH`): the next
    /// request that fits then [`take`](Self::take)s it.
    #[allow(clippy::too_many_arguments)]
    pub async fn admit_reserving(
        &self,
        now: Nanos,
        budget: &str,
        limits: Limits,
        requests: u64,
        tokens: u64,
        member: &str,
        within: Duration,
        reserve: Option<u64>,
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
        let asking = reserve.filter(|_| requests <= 1 && self.claim(budget));
        let mut judged = true;
        let call = self.call(now, budget, limits, requests, tokens, member, asking.map(|r| (r, t)));
        let r = match tokio::time::timeout(within, call).await {
            Ok(r) => r,
            Err(_) => Err({
                judged = within >= JUDGE_AFTER;
                format!(
                    "the shared ledger (Redis) did not answer within {} (what was left of the request's deadline)",
                    format_duration(within.as_nanos().min(u64::MAX as u128) as u64)
                )
            }),
        };
        if r.is_err() {
            // No answer: whatever slot it may have reserved counts for a window (safe); the
            // budget asks the ledger until a call succeeds.
            self.forget(budget, asking.is_some());
        }
        self.health.saw(&r, t.elapsed(), judged);
        r
    }

    /// Marks `budget` as asking for a slot, if it holds none and asks for none.
    fn claim(&self, budget: &str) -> bool {
        let mut slots = self.slots.lock().expect("no panic holds it");
        if slots.contains_key(budget) {
            return false;
        }
        slots.insert(budget.to_string(), Slot::Asking { waited: false });
        true
    }

    /// Drops `budget`'s slot if it is ready (a reservation is left to count for its window),
    /// or if `asking` (the caller's own call is over).
    fn forget(&self, budget: &str, asking: bool) {
        let mut slots = self.slots.lock().expect("no panic holds it");
        if asking || matches!(slots.get(budget), Some(Slot::Ready(_))) {
            slots.remove(budget);
        }
        drop(slots);
        self.slot_changed.notify_waiters();
    }

    /// Takes `budget`'s pre-admitted slot for a call of `requests` requests and `tokens`
    /// tokens, if it holds one that fits (one request, at most the tokens reserved, used
    /// within [`PREFETCH_LIFE`] of when it was asked for): the call may be sent at once; the
    /// caller then [`confirm`](Self::confirm)s it, with its real tokens (no other slot is
    /// reserved for the budget until then).
    pub fn take(&self, budget: &str, requests: u64, tokens: u64) -> Option<Reservation> {
        let mut slots = self.slots.lock().expect("no panic holds it");
        match slots.get(budget) {
            Some(Slot::Ready(r)) if requests == 1 && tokens <= r.tokens && r.asked.elapsed() < PREFETCH_LIFE => {}
            _ => return None,
        }
        match slots.insert(budget.to_string(), Slot::Asking { waited: false }) {
            Some(Slot::Ready(r)) => Some(r),
            _ => None,
        }
    }

    /// As [`take`](Self::take), but if a call that may bring `budget` a slot is on its way
    /// (a confirmation: the budget's previous request went on a slot) and no other request
    /// waits for it, waits for it, at most `within`, and takes what it brought: a client
    /// sending back to back then waits for the rest of that call rather than for a call of
    /// its own. `None`: ask the ledger.
    pub async fn take_or_wait(
        &self,
        budget: &str,
        requests: u64,
        tokens: u64,
        within: Duration,
    ) -> Option<Reservation> {
        if requests != 1 {
            return None;
        }
        let changed = self.slot_changed.notified();
        tokio::pin!(changed);
        changed.as_mut().enable();
        {
            let mut slots = self.slots.lock().expect("no panic holds it");
            match slots.get_mut(budget) {
                Some(Slot::Asking { waited }) if !*waited => *waited = true,
                _ => {
                    drop(slots);
                    return self.take(budget, requests, tokens);
                }
            }
        }
        let _ = tokio::time::timeout(within, changed).await;
        if let Some(Slot::Asking { waited }) = self.slots.lock().expect("no panic holds it").get_mut(budget) {
            *waited = false;
        }
        self.take(budget, requests, tokens)
    }

    /// Confirms a slot [`take`](Self::take)n for a request of `tokens` tokens sent on it: its
    /// entry moves to the ledger's now with those tokens (or is recorded again if Redis lost
    /// it); and reserves the next slot of `reserve` tokens if the budget stays at most half
    /// full. `Ok(true)` if a next slot was reserved. An `Err` leaves the reservation counting
    /// for its window (it covers the send).
    #[allow(clippy::too_many_arguments)]
    pub async fn confirm(
        &self,
        now: Nanos,
        budget: &str,
        limits: Limits,
        taken: Reservation,
        tokens: u64,
        reserve: Option<u64>,
        within: Duration,
    ) -> Result<bool, String> {
        let t = Instant::now();
        let call = self.prefetch(now, budget, limits, &taken, Some(tokens), reserve.map(|r| (r, t)));
        let r = match tokio::time::timeout(within, call).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "the shared ledger (Redis) did not answer within {}",
                format_duration(within.as_nanos().min(u64::MAX as u128) as u64)
            )),
        };
        let mut slots = self.slots.lock().expect("no panic holds it");
        let reserved = match &r {
            Ok(Some(next)) => {
                slots.insert(budget.to_string(), Slot::Ready(next.clone()));
                true
            }
            _ => {
                slots.remove(budget);
                false
            }
        };
        drop(slots);
        self.slot_changed.notify_waiters();
        self.health.saw(&r, t.elapsed(), within >= JUDGE_AFTER);
        r.map(|_| reserved)
    }

    /// Gives back the slots not used within [`PREFETCH_LIFE`] (every slot with `all`: when the
    /// proxy stops), each call bounded by `within`; the slots given back.
    pub async fn release(&self, now: Nanos, all: bool, within: Duration) -> usize {
        let stale: Vec<(String, Reservation)> = {
            let mut slots = self.slots.lock().expect("no panic holds it");
            let names: Vec<String> = slots
                .iter()
                .filter(|(_, s)| matches!(s, Slot::Ready(r) if all || r.asked.elapsed() >= PREFETCH_LIFE))
                .map(|(b, _)| b.clone())
                .collect();
            names
                .into_iter()
                .filter_map(|b| match slots.remove(&b) {
                    Some(Slot::Ready(r)) => Some((b, r)),
                    _ => None,
                })
                .collect()
        };
        let mut given = 0;
        for (budget, r) in stale {
            let t = Instant::now();
            let call = self.prefetch(now, &budget, r.limits, &r, None, None);
            let res = match tokio::time::timeout(within, call).await {
                Ok(res) => res,
                Err(_) => Err("the shared ledger (Redis) did not answer in time".to_string()),
            };
            given += usize::from(res.is_ok());
            self.health.saw(&res, t.elapsed(), within >= JUDGE_AFTER);
        }
        given
    }

    /// Whether `budget` holds a pre-admitted slot now (for tests).
    pub fn holds_slot(&self, budget: &str) -> bool {
        matches!(
            self.slots.lock().expect("no panic holds it").get(budget),
            Some(Slot::Ready(_))
        )
    }

    /// The keys' common start for `budget`, and the ends (Unix µs) of the two days a call
    /// at `now` may fall in.
    fn places(&self, now: Nanos, budget: &str) -> (String, i64, i64) {
        let cal = &self.calendar;
        let day_a = cal.next_day_start(if self.caller_clock {
            now
        } else {
            now.saturating_sub(CLOCK_SKEW)
        });
        let day_b = cal.next_day_start(day_a);
        // One hash tag for all of a budget's keys: one slot in a cluster.
        (
            format!("{}{{{budget}}}", self.prefix),
            cal.unix_micros(day_a),
            cal.unix_micros(day_b),
        )
    }

    fn seen_epoch(&self, budget: &str) -> String {
        self.epochs
            .lock()
            .expect("no panic holds it")
            .get(budget)
            .cloned()
            .unwrap_or_default()
    }

    fn given_now(&self, now: Nanos) -> String {
        if self.caller_clock {
            self.calendar.unix_micros(now).to_string()
        } else {
            String::new()
        }
    }

    /// A new reservation's member: `member_hint` (a request's member, unique to its proxy, or
    /// an earlier reservation's) up to its first `~`, then `~r` and a count.
    fn reservation_member(&self, member_hint: &str) -> String {
        let stem = member_hint.split('~').next().unwrap_or_default();
        format!("{stem}~r{}", self.reservations.fetch_add(1, Ordering::Relaxed))
    }

    /// One [`PREFETCH`] call: confirms `old` with `real` tokens (or gives it back), and
    /// reserves a slot of `next`'s tokens (asked at its instant) if the budget allows.
    async fn prefetch(
        &self,
        now: Nanos,
        budget: &str,
        limits: Limits,
        old: &Reservation,
        real: Option<u64>,
        next: Option<(u64, Instant)>,
    ) -> Result<Option<Reservation>, String> {
        let (base, day_a, day_b) = self.places(now, budget);
        let seen = self.seen_epoch(budget);
        let member = self.reservation_member(&old.member);
        let mut inv = self.prefetch_script.prepare_invoke();
        inv.key(format!("{base}:rpm"))
            .key(format!("{base}:tpm"))
            .key(format!("{base}:tpm_sum"))
            .key(format!("{base}:day:{day_a}"))
            .key(format!("{base}:day:{day_b}"))
            .key(format!("{base}:epoch"))
            .key(old.day_key.as_str())
            .arg(self.given_now(now))
            .arg(lua_limit(limits.rpm))
            .arg(lua_limit(limits.tpm))
            .arg(lua_limit(limits.rpd))
            .arg(lua_limit(limits.tpd))
            .arg(day_a)
            .arg(day_b)
            .arg(self.span)
            .arg(seen.as_str())
            .arg(old.member.as_str())
            .arg(old.tokens)
            .arg(real.map(|r| r.to_string()).unwrap_or_default())
            .arg(next.map(|(n, _)| n.to_string()).unwrap_or_default())
            .arg(PREFETCH_LIFE.as_micros() as u64)
            .arg(member.as_str());
        let reply = self
            .con
            .invoke(&inv)
            .await
            .map_err(|e| mask_secrets(&format!("the shared ledger (Redis) did not answer: {e}")))?;
        let bad = || format!("the shared ledger (Redis) answered {reply:?}");
        if reply.len() != 5 {
            return Err(bad());
        }
        match int_of(&reply[0]) {
            Some(1) => {}
            Some(-1) => {
                return Err(format!(
                    "the shared ledger's clock (Redis TIME, {} µs since 1970) is more than a day from this machine's ({} µs): synchronise the clocks (NTP)",
                    int_of(&reply[1]).unwrap_or_default(),
                    self.calendar.unix_micros(now)
                ))
            }
            _ => return Err(bad()),
        }
        // A lost state is noted by the next admission (which holds the budget), not here.
        if int_of(&reply[3]) == Some(1) || int_of(&reply[4]) != Some(1) {
            return Ok(None);
        }
        let (tokens, asked) = next.ok_or_else(bad)?;
        let ledger_now = int_of(&reply[1]).ok_or_else(bad)?;
        // The day the script counted it in: the one the ledger's now falls in.
        let day = if ledger_now < day_a { day_a } else { day_b };
        Ok(Some(Reservation {
            member,
            tokens,
            day_key: format!("{base}:day:{day}"),
            asked,
            limits,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    async fn call(
        &self,
        now: Nanos,
        budget: &str,
        limits: Limits,
        requests: u64,
        tokens: u64,
        member: &str,
        reserve: Option<(u64, Instant)>,
    ) -> Result<Admission, String> {
        let (base, day_a, day_b) = self.places(now, budget);
        let seen = self.seen_epoch(budget);
        let next_member = reserve.map(|_| self.reservation_member(member)).unwrap_or_default();
        let mut inv = self.script.prepare_invoke();
        inv.key(format!("{base}:rpm"))
            .key(format!("{base}:tpm"))
            .key(format!("{base}:tpm_sum"))
            .key(format!("{base}:day:{day_a}"))
            .key(format!("{base}:day:{day_b}"))
            .key(format!("{base}:epoch"))
            .arg(self.given_now(now))
            .arg(tokens)
            .arg(lua_limit(limits.rpm))
            .arg(lua_limit(limits.tpm))
            .arg(lua_limit(limits.rpd))
            .arg(lua_limit(limits.tpd))
            .arg(member)
            .arg(day_a)
            .arg(day_b)
            .arg(self.span)
            .arg(seen.as_str())
            .arg(requests.max(1))
            .arg(reserve.map(|(r, _)| r.to_string()).unwrap_or_default())
            .arg(PREFETCH_LIFE.as_micros() as u64)
            .arg(next_member.as_str())
            .arg(RELEASED_WITHIN.as_micros() as u64);
        let reply = self.con.invoke(&inv).await;
        let result = self.read_admission(now, budget, &seen, reply);
        if reserve.is_some() {
            let mut slots = self.slots.lock().expect("no panic holds it");
            match (&result, reserve) {
                (Ok((_, true, ledger_now)), Some((tokens, asked))) => {
                    let day = if *ledger_now < day_a { day_a } else { day_b };
                    slots.insert(
                        budget.to_string(),
                        Slot::Ready(Reservation {
                            member: next_member,
                            tokens,
                            day_key: format!("{base}:day:{day}"),
                            asked,
                            limits,
                        }),
                    );
                }
                _ => {
                    slots.remove(budget);
                }
            }
            drop(slots);
            self.slot_changed.notify_waiters();
        }
        result.map(|(a, _, _)| a)
    }

    /// An [`ADMIT`] reply: the decision, whether a slot was reserved, the ledger's now.
    fn read_admission(
        &self,
        now: Nanos,
        budget: &str,
        seen: &str,
        reply: redis::RedisResult<Vec<redis::Value>>,
    ) -> Result<(Admission, bool, i64), String> {
        let cal = &self.calendar;
        let reply = reply.map_err(|e| mask_secrets(&format!("the shared ledger (Redis) did not answer: {e}")))?;
        let int = int_of;
        let bad = || format!("the shared ledger (Redis) answered {reply:?}");
        if reply.len() != 10 {
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
            // A slot reserved before the loss is gone from the ledger: not used.
            self.forget(budget, false);
        }
        if epoch != seen {
            self.epochs
                .lock()
                .expect("no panic holds it")
                .insert(budget.to_string(), epoch);
        }
        let reserved = int(&reply[9]) == Some(1);
        if int(&reply[0]) == Some(1) {
            return Ok((Admission::Admitted, reserved, ledger_now));
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
        Ok((Admission::Rejected { violated, retry_at }, reserved, ledger_now))
    }
}
