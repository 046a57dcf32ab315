//! The server side: the Lua script that takes and gives back budget atomically on the
//! Redis server's clock, the key layout, and the mapping of Redis errors to [`StoreError`].

use std::fmt;
use std::time::Duration;

use redis::{ErrorKind, RedisError, Script, ServerErrorKind};

/// One key's shared budget, as a token bucket that allows debt per dimension (requests,
/// units), plus a child bucket per tenant for shares: the in-process model of
/// `admission::bucket`, in floating-point units per microsecond (Lua numbers are doubles).
///
/// `take` grants `want` (per dimension) when the bucket holds `min(want, cap)`, or answers
/// how many microseconds until it will. A tenant whose child bucket holds its part is
/// *within share*: it may take the parent one grant into debt, which borrowers (other
/// tenants, or no tenant) may not, so that a tenant's guaranteed share is not starved by
/// borrowers polling for the same refill. `give` returns unused budget (or, negative, charges
/// debt), capped at the capacity.
///
/// Every state lives in one hash per quota key, so the script touches one key (one cluster
/// slot); `PEXPIRE` forgets it once idle long enough that its buckets are full again.
const LUA: &str = r#"
local key = KEYS[1]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local window = tonumber(ARGV[1])
local limits = {tonumber(ARGV[2]), tonumber(ARGV[3])}
local caps = {tonumber(ARGV[4]), tonumber(ARGV[5])}
local want = {tonumber(ARGV[6]), tonumber(ARGV[7])}
local tenant = tonumber(ARGV[8])
local num, den = tonumber(ARGV[9]), tonumber(ARGV[10])
local ccaps = {tonumber(ARGV[11]), tonumber(ARGV[12])}
local ttl = tonumber(ARGV[13])
local op = ARGV[14]
local within_given = ARGV[15] == '1'
local names = {'r', 'u'}
if window == nil or window <= 0 or den == nil or den <= 0 then
  return redis.error_reply('ERR headroom: bad arguments')
end

local function read(field, rate, cap)
  local v = redis.call('HMGET', key, field, field .. '@')
  local level, last = tonumber(v[1]), tonumber(v[2])
  if level == nil or last == nil then return cap end
  if now > last then level = level + (now - last) * rate end
  if level > cap then level = cap end
  return level
end

local levels, clevels, rates, crates = {}, {}, {}, {}
for d = 1, 2 do
  if limits[d] > 0 then
    rates[d] = limits[d] / window
    levels[d] = read(names[d], rates[d], caps[d])
    if tenant >= 0 then
      crates[d] = rates[d] * num / den
      clevels[d] = read('t' .. tenant .. names[d], crates[d], ccaps[d])
    end
  end
end

local function write(d, child)
  local f = names[d]
  redis.call('HSET', key, f, levels[d], f .. '@', now)
  if child then
    local cf = 't' .. tenant .. f
    redis.call('HSET', key, cf, clevels[d], cf .. '@', now)
  end
end

local function wait_for(level, need, rate)
  if level >= need then return 0 end
  return math.ceil((need - level) / rate)
end

if op == 'take' then
  -- Within share: every limited dimension of the tenant's child bucket holds its part.
  local within = tenant >= 0
  local child_wait = 0
  if tenant >= 0 then
    for d = 1, 2 do
      if limits[d] > 0 then
        local w = wait_for(clevels[d], math.min(want[d], ccaps[d]), crates[d])
        if w > 0 then within = false end
        if w > child_wait then child_wait = w end
      end
    end
  end
  local borrow_wait, share_wait = 0, 0
  for d = 1, 2 do
    if limits[d] > 0 then
      local need = math.min(want[d], caps[d])
      local w = wait_for(levels[d], need, rates[d])
      if w > borrow_wait then borrow_wait = w end
      w = wait_for(levels[d], need - want[d], rates[d])
      if w > share_wait then share_wait = w end
    end
  end
  local wait = borrow_wait
  if within then
    wait = share_wait
  elseif tenant >= 0 then
    wait = math.min(borrow_wait, math.max(child_wait, share_wait))
  end
  if wait > 0 then
    return {0, wait, 0}
  end
  for d = 1, 2 do
    if limits[d] > 0 then
      levels[d] = levels[d] - want[d]
      if within then clevels[d] = clevels[d] - want[d] end
      write(d, within)
    end
  end
  redis.call('PEXPIRE', key, ttl)
  if within then return {1, 0, 1} end
  return {1, 0, 0}
elseif op == 'give' then
  local child = within_given and tenant >= 0
  for d = 1, 2 do
    if limits[d] > 0 and want[d] ~= 0 then
      levels[d] = math.min(caps[d], levels[d] + want[d])
      if child then clevels[d] = math.min(ccaps[d], clevels[d] + want[d]) end
      write(d, child)
    end
  end
  redis.call('PEXPIRE', key, ttl)
  return {1, 0, 0}
end
return redis.error_reply('ERR headroom: unknown operation')
"#;

/// The script, hashed once: `redis::Script` sends `EVALSHA` and falls back to loading it on
/// `NOSCRIPT` (a restarted server, a failover).
pub(crate) fn script() -> Script {
    Script::new(LUA)
}

/// The Redis key of one quota key: `headroom:{<quota name>:<key>}`. The braces are a cluster
/// hash tag, so everything stored for one quota key lives in one slot; the quota's buckets and
/// its tenants' are fields of this one hash.
///
/// ```
/// use tower_headroom::admission::redis::redis_key;
///
/// assert_eq!(redis_key("bedrock", &"claude/us-east-1"), "headroom:{bedrock:claude/us-east-1}");
/// ```
pub fn redis_key(quota: &str, key: &dyn fmt::Display) -> String {
    format!("headroom:{{{quota}:{key}}}")
}

/// What the script answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// Granted; `within` when charged to the tenant's share.
    Granted { within: bool },
    /// Not yet: the budget will hold it in this many microseconds.
    Wait(u64),
}

/// The script's arguments for one key (all but the operation and the amounts).
#[derive(Clone, Debug)]
pub(crate) struct Args {
    pub(crate) window_us: u64,
    pub(crate) limits: [u64; 2],
    pub(crate) caps: [u64; 2],
    pub(crate) shares: Option<(std::sync::Arc<[u64]>, u64)>,
    pub(crate) child_caps_us: u64,
    pub(crate) ttl_ms: u64,
}

impl Args {
    pub(crate) fn invoke<'a>(
        &self,
        script: &'a Script,
        key: &str,
        op: &str,
        amount: [i64; 2],
        tenant: Option<u16>,
        within: bool,
    ) -> redis::ScriptInvocation<'a> {
        let (tenant, num, den) = match (&self.shares, tenant) {
            (Some((weights, total)), Some(t)) if usize::from(t) < weights.len() => {
                (i64::from(t), weights[usize::from(t)], *total)
            }
            _ => (-1, 1, 1),
        };
        // A child's capacity is its share of the rate times the share burst.
        let ccap = |d: usize| {
            let rate = self.limits[d] as f64 * num as f64 / den as f64 / self.window_us as f64;
            (rate * self.child_caps_us as f64).ceil() as u64
        };
        let mut inv = script.key(key);
        inv.arg(self.window_us)
            .arg(self.limits[0])
            .arg(self.limits[1])
            .arg(self.caps[0])
            .arg(self.caps[1])
            .arg(amount[0])
            .arg(amount[1])
            .arg(tenant)
            .arg(num)
            .arg(den)
            .arg(ccap(0))
            .arg(ccap(1))
            .arg(self.ttl_ms)
            .arg(op)
            .arg(if within { "1" } else { "0" });
        inv
    }
}

pub(crate) fn answer(reply: &[i64]) -> Result<Answer, StoreError> {
    match reply {
        [1, _, within] => Ok(Answer::Granted {
            within: *within == 1,
        }),
        [0, wait, _] => Ok(Answer::Wait(u64::try_from(*wait).unwrap_or(0).max(1))),
        _ => Err(StoreError::Reply),
    }
}

/// An error from the Redis store. Messages say what failed and what to check; they never
/// contain the URL (it may carry a password), a key's data or a reply's text beyond the
/// server's error code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StoreError {
    /// The builder was given a value it cannot use.
    Config(crate::ConfigError),
    /// The Redis URL could not be parsed.
    InvalidUrl,
    /// No connection to the server within the connect timeout (refused, unreachable, or the
    /// name did not resolve).
    Unreachable,
    /// The server refused the credentials (wrong password or user, or none given).
    Auth,
    /// A Redis call took longer than the operation timeout.
    Timeout(Duration),
    /// The connection failed during a call.
    Connection,
    /// The server refused the script; `code` is the server's error code (e.g. `WRONGTYPE`
    /// when the quota's key holds something else, `NOPERM`, `ERR`).
    Script {
        /// The server's error code.
        code: String,
    },
    /// The server's reply was not what the script returns.
    Reply,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StoreError::Config(e) => write!(f, "redis quota store: {e}"),
            StoreError::InvalidUrl => f.write_str(
                "redis quota store: the Redis URL does not parse (expected redis://[user:password@]host:port[/db])",
            ),
            StoreError::Unreachable => f.write_str(
                "redis quota store: cannot connect to Redis (check the host, the port and that the server runs)",
            ),
            StoreError::Auth => f.write_str(
                "redis quota store: Redis refused the credentials (check the password and user in the URL)",
            ),
            StoreError::Timeout(t) => write!(f, "redis quota store: a Redis call took longer than {t:?}"),
            StoreError::Connection => f.write_str("redis quota store: the connection to Redis failed"),
            StoreError::Script { code } => write!(
                f,
                "redis quota store: Redis refused the quota script ({code}); check that nothing else writes the quota's keys"
            ),
            StoreError::Reply => f.write_str("redis quota store: unexpected reply from Redis"),
        }
    }
}

impl std::error::Error for StoreError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            StoreError::Config(e) => Some(e),
            _ => None,
        }
    }
}

impl From<crate::ConfigError> for StoreError {
    fn from(e: crate::ConfigError) -> Self {
        StoreError::Config(e)
    }
}

impl StoreError {
    /// Maps a `redis` error, keeping only its kind and the server's error code.
    pub(crate) fn from_redis(e: &RedisError) -> Self {
        let code = e.code().unwrap_or_default();
        if e.kind() == ErrorKind::AuthenticationFailed || matches!(code, "WRONGPASS" | "NOAUTH") {
            return StoreError::Auth;
        }
        if e.kind() == ErrorKind::InvalidClientConfig {
            return StoreError::InvalidUrl;
        }
        if e.is_timeout() {
            return StoreError::Timeout(Duration::ZERO);
        }
        if e.is_connection_refusal() {
            return StoreError::Unreachable;
        }
        if e.is_io_error() || e.is_connection_dropped() {
            return StoreError::Connection;
        }
        match e.kind() {
            ErrorKind::Server(ServerErrorKind::NoScript) => StoreError::Script {
                code: "NOSCRIPT".into(),
            },
            ErrorKind::Server(_) | ErrorKind::Extension => StoreError::Script {
                code: sanitize(code),
            },
            ErrorKind::UnexpectedReturnType | ErrorKind::Parse => StoreError::Reply,
            _ => StoreError::Connection,
        }
    }

    /// Whether the store should be treated as unavailable (fail open or closed) rather than
    /// misconfigured: every error is, since a call must not wait on a store that cannot
    /// answer; the distinction is for the operator's log.
    pub(crate) fn label(&self) -> &'static str {
        match self {
            StoreError::Config(_) => "config",
            StoreError::InvalidUrl => "invalid_url",
            StoreError::Unreachable => "unreachable",
            StoreError::Auth => "auth",
            StoreError::Timeout(_) => "timeout",
            StoreError::Connection => "connection",
            StoreError::Script { .. } => "script",
            StoreError::Reply => "reply",
        }
    }
}

/// A server error code is one upper-case word; anything else is not repeated.
fn sanitize(code: &str) -> String {
    if !code.is_empty()
        && code.len() <= 32
        && code.bytes().all(|b| b.is_ascii_uppercase() || b == b'_')
    {
        code.to_owned()
    } else {
        "ERR".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_one_quota_key_share_a_cluster_slot() {
        let key = redis_key("bedrock", &"claude/us-east-1");
        let tag = redis::cluster_routing::Slot::for_key("{bedrock:claude/us-east-1}");
        assert_eq!(redis::cluster_routing::Slot::for_key(&key), tag);
        // Another key of the same quota hashes by its own tag.
        let other = redis_key("bedrock", &"titan/eu-west-1");
        assert_eq!(
            redis::cluster_routing::Slot::for_key(&other),
            redis::cluster_routing::Slot::for_key("{bedrock:titan/eu-west-1}")
        );
    }

    #[test]
    fn answers_and_errors() {
        assert_eq!(answer(&[1, 0, 1]), Ok(Answer::Granted { within: true }));
        assert_eq!(answer(&[0, 250, 0]), Ok(Answer::Wait(250)));
        assert_eq!(answer(&[0, -3, 0]), Ok(Answer::Wait(1)));
        assert_eq!(answer(&[7]), Err(StoreError::Reply));
        assert_eq!(sanitize("WRONGTYPE"), "WRONGTYPE");
        assert_eq!(sanitize("wrongtype secret"), "ERR");
        let e = StoreError::Script {
            code: "WRONGTYPE".into(),
        };
        assert!(e.to_string().contains("WRONGTYPE"), "{e}");
    }
}
