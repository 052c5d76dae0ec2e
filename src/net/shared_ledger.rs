//! Budgets shared by proxies on several machines, in Redis (`proxy --ledger redis://…`): one
//! Lua script checks and records a request atomically in one round trip, with the in-process
//! ledger's semantics for requests and tokens per minute (sliding 60 s windows: an entry at
//! `t` counts while `t + 60 s > now`; the exact instant a request would fit) and per day
//! (reset at the calendar's midnight). Time is the Unix clock in microseconds, the one
//! machines share. Keys are per (project, model): two sorted sets and a running token sum for
//! the minute windows (expiring a minute after their last write) and a hash per day, named by
//! the day's end (expiring after two days). Concurrency limits are not kept here.

use redis::aio::MultiplexedConnection;

use crate::core::ledger::{Admission, Dimension, Dims, Limits};
use crate::core::topology::mask_secrets;

/// Longest wait for Redis to accept the proxy's connection at start.
pub const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
use crate::core::time::{Calendar, Nanos};

/// Lua's numbers are doubles, exact to 2⁵³: microseconds since 1970 (about 1.8 × 10¹⁵) are,
/// but Lua prints them with 14 digits, so every time goes back to Redis as a string formatted
/// `%.0f` (or as the argument it came in).
const ADMIT: &str = r#"
local now = tonumber(ARGV[1])
local tokens = tonumber(ARGV[2])
local rpm, tpm, rpd, tpd = tonumber(ARGV[3]), tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
local member, day_end = ARGV[7], tonumber(ARGV[8])
local span = tonumber(ARGV[9])
local cutoff = string.format('%.0f', now - span)
local sum = tonumber(redis.call('GET', KEYS[3]) or '0')
for _, m in ipairs(redis.call('ZRANGEBYSCORE', KEYS[2], '-inf', cutoff)) do
  sum = sum - tonumber(string.match(m, ':(%d+)$'))
end
if redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', cutoff) > 0 then
  redis.call('SET', KEYS[3], string.format('%.0f', sum), 'KEEPTTL')
end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', cutoff)
local r = tonumber(redis.call('HGET', KEYS[4], 'r') or '0')
local t = tonumber(redis.call('HGET', KEYS[4], 't') or '0')
local v = {0, 0, 0, 0}
local retry = now
if rpm >= 0 then
  local n = redis.call('ZCARD', KEYS[1])
  if n + 1 > rpm then
    v[1] = 1
    local e = redis.call('ZRANGE', KEYS[1], n - rpm, n - rpm, 'WITHSCORES')
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
if rpd >= 0 and r + 1 > rpd then
  v[3] = 1
  retry = math.max(retry, day_end)
end
if tpd >= 0 and t + tokens > tpd then
  v[4] = 1
  retry = math.max(retry, day_end)
end
if v[1] + v[2] + v[3] + v[4] > 0 then
  return {0, v[1], v[2], v[3], v[4], string.format('%.0f', retry)}
end
if rpm >= 0 then
  redis.call('ZADD', KEYS[1], ARGV[1], member)
  redis.call('PEXPIRE', KEYS[1], math.floor(span / 1000) + 1000)
end
if tpm >= 0 then
  redis.call('ZADD', KEYS[2], ARGV[1], member .. ':' .. ARGV[2])
  redis.call('SET', KEYS[3], string.format('%.0f', sum + tokens), 'PX', math.floor(span / 1000) + 1000)
  redis.call('PEXPIRE', KEYS[2], math.floor(span / 1000) + 1000)
end
if rpd >= 0 or tpd >= 0 then
  redis.call('HINCRBY', KEYS[4], 'r', 1)
  redis.call('HINCRBY', KEYS[4], 't', ARGV[2])
  redis.call('EXPIRE', KEYS[4], 172800)
end
return {1}
"#;

/// A ledger in Redis.
#[derive(Clone)]
pub struct RedisLedger {
    con: MultiplexedConnection,
    script: redis::Script,
    prefix: String,
    calendar: Calendar,
    /// How long a minute window holds an entry, in microseconds: 60 s plus a margin.
    span: u64,
}

impl RedisLedger {
    /// Connects to `url` (`redis://host:port/db`); days end at midnight in `calendar`'s zone and
    /// its instants map to the Unix clock. Keys start with `prefix`. Minute windows hold each
    /// entry `margin` longer than 60 s (as [`Ledger::with_margin`](crate::core::ledger::Ledger::with_margin)),
    /// so that sends reaching the server up to that much later than admitted still fit.
    pub async fn connect(url: &str, calendar: Calendar, prefix: &str, margin: Nanos) -> Result<Self, String> {
        let shown = mask_secrets(url);
        let client = redis::Client::open(url).map_err(|e| mask_secrets(&format!("--ledger {shown:?}: {e}")))?;
        let con = match tokio::time::timeout(CONNECT_TIMEOUT, client.get_multiplexed_async_connection()).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => return Err(mask_secrets(&format!("--ledger {shown:?}: cannot reach Redis: {e}"))),
            Err(_) => {
                return Err(format!(
                    "--ledger {shown:?}: Redis did not answer within {} s",
                    CONNECT_TIMEOUT.as_secs()
                ))
            }
        };
        Ok(RedisLedger {
            con,
            script: redis::Script::new(ADMIT),
            prefix: prefix.to_string(),
            calendar,
            span: (crate::core::time::MINUTE + margin) / 1000,
        })
    }

    /// Decides on a request costing `tokens` against the budget named `budget` with `limits`
    /// at `now` (nanoseconds since the calendar's start, whole microseconds count) and records
    /// it if admitted; `member` names the record (unique per request). An `Err` says Redis
    /// did not answer: the caller must not send (fail closed).
    pub async fn admit(
        &self,
        now: Nanos,
        budget: &str,
        limits: Limits,
        tokens: u64,
        member: &str,
    ) -> Result<Admission, String> {
        let impossible = Limits {
            concurrent: None,
            ..limits
        }
        .unservable(tokens);
        if !impossible.is_empty() {
            return Ok(Admission::Unservable { violated: impossible });
        }
        let cal = &self.calendar;
        let day_end = cal.next_day_start(now);
        let limit = |l: Option<u64>| l.map_or(-1, |v| v.min(i64::MAX as u64) as i64);
        let base = format!("{}{budget}", self.prefix);
        let mut con = self.con.clone();
        let reply: Vec<redis::Value> = self
            .script
            .key(format!("{base}:rpm"))
            .key(format!("{base}:tpm"))
            .key(format!("{base}:tpm_sum"))
            .key(format!("{base}:day:{}", cal.unix_micros(day_end)))
            .arg(cal.unix_micros(now))
            .arg(tokens)
            .arg(limit(limits.rpm))
            .arg(limit(limits.tpm))
            .arg(limit(limits.rpd))
            .arg(limit(limits.tpd))
            .arg(member)
            .arg(cal.unix_micros(day_end))
            .arg(self.span)
            .invoke_async(&mut con)
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
        match reply.first().and_then(int) {
            Some(1) => Ok(Admission::Admitted),
            Some(0) if reply.len() == 6 => {
                let mut violated = Dims::EMPTY;
                let dims = [Dimension::Rpm, Dimension::Tpm, Dimension::Rpd, Dimension::Tpd];
                for (i, d) in dims.into_iter().enumerate() {
                    if int(&reply[i + 1]) == Some(1) {
                        violated.insert(d);
                    }
                }
                let retry = int(&reply[5]).ok_or_else(bad)?;
                Ok(Admission::Rejected {
                    violated,
                    retry_at: cal.from_unix_micros(retry).max(now),
                })
            }
            _ => Err(bad()),
        }
    }
}
