//! The server side: the Lua script that takes and gives back budget atomically on the
//! Redis server's clock, the key layout, and the script's replies.

use std::fmt;

use redis::Script;

use super::StoreError;

/// One key's shared budget, as the in-process cores keep it, restated in Lua on doubles (Lua
/// numbers): the token bucket that allows debt (`model` `b`) or the sliding window of time
/// slots (`model` `w`), per dimension (requests, units); a child bucket per tenant for shares;
/// the learned limit per dimension (`admission::learn`); and, for windows, the hold and probe
/// after an unpredicted throttle (`admission::window`). Times are microseconds on the
/// server's clock (`TIME`), or the caller's when it passes one (`now`, for tests).
///
/// - `take` grants `want` (per dimension) or answers how many microseconds until the budget
///   will hold it. Bucket: when the bucket holds `min(want, cap)`; a tenant whose child bucket
///   holds its part is *within share* and may take the parent one grant into debt, which
///   borrowers may not, so that a tenant's guaranteed share is not starved by borrowers
///   polling for the same refill. Window: when the trailing window's spend plus `want` fits
///   the learned limit, nothing holds the key back and no probe is out; the grant is recorded
///   in the current slot, and the answer carries its time (for `give`) and whether it is the
///   probe.
/// - `give` returns unused budget (or, negative, charges debt): to the bucket, capped at its
///   capacity; to the window, in the slot of the grant it came from (`at`), if that slot is
///   still in the window.
/// - `learn` reports how a call ended (`outcome` `s` success, `t` throttle of the dimensions
///   in `dims`), whether its budget was the probe's, when it was granted (`at`), and the
///   server's `Retry-After`, with the in-process cores' rules.
/// - `state` answers the learned limit and the window's spend per dimension (tests, stats).
/// - Long windows (`admission::long`, tokens per day): one ring of time slots per window and
///   dimension, checked before the primary window by `take` (the answer's third field names
///   the window that binds), charged on a grant, given back by `give` in the grant's slot; a
///   `learn` of a daily throttle (`outcome` `d`) spends the longest window or, without one,
///   holds the key (`dh`) until one grant probes (`dp`; probe bit 2).
///
/// A bucket whose key has no state starts at the limit's initial credit (at least one lease),
/// as the in-process core's does (`LimitBuilder::initial_credit`).
///
/// Every state lives in one hash per quota key, so the script touches one key (one cluster
/// slot); `PEXPIRE` forgets it once idle long enough that it is at rest again (a bucket
/// forgotten so restarts at its initial credit, as an evicted in-process key does: less than
/// the provider may hold, never more).
const LUA: &str = r#"
local key = KEYS[1]
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
local model = ARGV[16]
local nslots = tonumber(ARGV[17])
local max_cut, regain, floor_f = tonumber(ARGV[18]), tonumber(ARGV[19]), tonumber(ARGV[20])
local at = tonumber(ARGV[21])
local outcome, dims_mask, probe_bits = ARGV[22], tonumber(ARGV[23]), tonumber(ARGV[24]) or 0
-- The grant's probes: bit 1 the window's (after a throttle), bit 2 the daily hold's.
local probe_given = probe_bits % 2 == 1
local dprobe_given = math.floor(probe_bits / 2) % 2 == 1
local retry_after = tonumber(ARGV[25])
local now = tonumber(ARGV[26])
-- Long windows (tokens per day): window, slots, requests and units limits (0: none) each.
local nlong = tonumber(ARGV[27]) or 0
local longs = {}
for i = 1, nlong do
  local b = 27 + (i - 1) * 4
  longs[i] = {w = tonumber(ARGV[b + 1]), n = tonumber(ARGV[b + 2]),
    lim = {tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])}}
end
-- A daily throttle on a key without a long window holds it 15 minutes, then one grant probes;
-- while the probe is out, the others look again every 15 s.
-- The level a token bucket starts at when its key has no state (its initial credit), per
-- dimension, after the long windows.
local inits = {tonumber(ARGV[28 + nlong * 4]), tonumber(ARGV[29 + nlong * 4])}
local daily_hold, probe_recheck = 900000000, 15000000
if window == nil or window <= 0 or den == nil or den <= 0 or nslots == nil or nslots <= 0 then
  return redis.error_reply('ERR headroom: bad arguments')
end
if now == nil or now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local names = {'r', 'u'}
local learning_off = max_cut >= 1 and floor_f >= 1

local function num_field(f, default)
  local v = tonumber(redis.call('HGET', key, f))
  if v == nil then return default end
  return v
end

-- The learned limit of dimension d: cut on throttles, regained after a quiet window.
local function learner(d)
  local n = names[d]
  local max = limits[d]
  return {
    e = num_field(n .. 'e', max), b = num_field(n .. 'b', max),
    q = num_field(n .. 'q', now), c = num_field(n .. 'c', -1), k = num_field(n .. 'k', 0),
    max = max, floor = math.max(1, math.floor(max * floor_f)),
  }
end

local function effective_at(l, t)
  local quiet_end = l.q + window
  if l.b >= l.max or t <= quiet_end then
    return math.max(l.e, math.min(l.b, l.max))
  end
  local windows = (t - quiet_end) / window
  if windows >= 64 or regain >= 1 then return l.max end
  local gap = (l.max - l.b) * ((1 - regain) ^ windows)
  local eff = l.max - math.min(math.floor(gap + 0.5), l.max - l.b)
  return math.max(eff, l.e)
end

local function save_learner(d, l)
  local n = names[d]
  redis.call('HSET', key, n .. 'e', l.e, n .. 'b', l.b, n .. 'q', l.q, n .. 'c', l.c, n .. 'k', l.k)
end

local function share(n, ppm) return math.floor(n * ppm / 1000000) end

local function throttled(l, ours, new_run)
  if learning_off then return end
  l.e = effective_at(l, now)
  local may_cut = new_run and (l.c < 0 or now >= l.c + math.floor(window / 4))
  if may_cut then
    local again = l.c >= 0 and now < l.c + 2 * window
    if again then l.k = l.k + 1 else l.k = 0 end
    local ppm = 950000
    for _ = 1, math.min(l.k, 4) do ppm = share(ppm, 950000) end
    local kept = share(l.e, math.floor(max_cut * 1000000 + 0.5))
    local to = math.min(math.max(share(ours, ppm), kept, l.floor), l.e)
    l.e = to
    l.c = now
  end
  l.q = now
  l.b = l.e
end

-- The sliding window's (or, for a bucket, the spend's) ring of time slots.
local slot_len = math.max(1, math.floor(window / nslots))
local ring_len = math.ceil(window / slot_len) + 1

local function ring_of(n, sl, rl)
  local current = math.floor(now / sl)
  local head = num_field(n .. 'h', current)
  local sum = num_field(n .. 's', 0)
  if current > head then
    local steps = math.min(current - head, rl)
    for i = 1, steps do
      local f = n .. ':' .. ((head + i) % rl)
      local v = tonumber(redis.call('HGET', key, f))
      if v then
        sum = sum - v
        redis.call('HDEL', key, f)
      end
    end
    head = current
    -- The slots that left are gone: the head and the sum move with them, now.
    redis.call('HSET', key, n .. 'h', head, n .. 's', sum)
  end
  return {n = n, head = head, sum = sum, sl = sl, rl = rl}
end

local function ring(d, prefix)
  return ring_of(prefix .. names[d], slot_len, ring_len)
end

local function ring_save(r)
  redis.call('HSET', key, r.n .. 'h', r.head, r.n .. 's', r.sum)
end

local function ring_adjust(r, slot, delta)
  if slot > r.head or r.head - slot >= r.rl then return end
  local f = r.n .. ':' .. (slot % r.rl)
  local old = tonumber(redis.call('HGET', key, f)) or 0
  local new = math.max(0, old + delta)
  if new == 0 then redis.call('HDEL', key, f) else redis.call('HSET', key, f, new) end
  r.sum = r.sum - old + new
end

local function ring_wait(r, free)
  if free <= 0 then return 0 end
  local freed = 0
  local oldest = math.max(0, r.head + 1 - r.rl)
  for slot = oldest, r.head do
    local leaves = (slot + r.rl) * r.sl
    if leaves > now then
      freed = freed + (tonumber(redis.call('HGET', key, r.n .. ':' .. (slot % r.rl))) or 0)
      if freed >= free then return leaves - now end
    end
  end
  return nil
end

local function read(field, rate, cap, init)
  local v = redis.call('HMGET', key, field, field .. '@')
  local level, last = tonumber(v[1]), tonumber(v[2])
  if level == nil or last == nil then return math.min(init or cap, cap) end
  if now > last then level = level + (now - last) * rate end
  if level > cap then level = cap end
  return level
end

local learners, rings, rates = {}, {}, {}
local levels, clevels, crates = {}, {}, {}
for d = 1, 2 do
  if limits[d] > 0 then
    learners[d] = learner(d)
    rates[d] = effective_at(learners[d], now) / window
    rings[d] = ring(d, model == 'w' and 'w' or 'p')
    if model == 'b' then levels[d] = read(names[d], rates[d], caps[d], inits[d]) end
    if tenant >= 0 then
      crates[d] = rates[d] * num / den
      clevels[d] = read('t' .. tenant .. names[d], crates[d], ccaps[d])
    end
  end
end

local function write(d, child)
  local f = names[d]
  if model == 'b' then redis.call('HSET', key, f, levels[d], f .. '@', now) end
  if child then
    local cf = 't' .. tenant .. f
    redis.call('HSET', key, cf, clevels[d], cf .. '@', now)
  end
end

-- The long windows' rings ('L<i>r', 'L<i>u'), as the in-process `admission::long`.
local lrings = {}
for i = 1, nlong do
  local L = longs[i]
  local sl = math.max(1, math.floor(L.w / L.n))
  local rl = math.ceil(L.w / sl) + 1
  lrings[i] = {}
  for d = 1, 2 do
    if L.lim[d] > 0 then lrings[i][d] = ring_of('L' .. i .. names[d], sl, rl) end
  end
end

-- The wait until every long window has room for `want` and a daily hold is over, and what
-- binds it: 0 nothing, i long window i, 255 the hold.
local function long_wait()
  local wait, bound = 0, 0
  local dh = num_field('dh', 0)
  if dh > 0 then
    if now < dh then
      wait, bound = dh - now, 255
    elseif num_field('dp', 0) == 1 then
      wait, bound = probe_recheck, 255
    end
  end
  for i = 1, nlong do
    for d = 1, 2 do
      local r = lrings[i][d]
      if r then
        local over = r.sum + want[d] - longs[i].lim[d]
        if over > 0 then
          local w = ring_wait(r, over)
          if w == nil then w = math.max(0, (r.head + r.rl) * r.sl - now) end
          w = math.max(w, 1)
          if w > wait then wait, bound = w, i end
        end
      end
    end
  end
  return wait, bound
end

-- A daily throttle: the longest window is spent for the rest of it, or the key is held.
local function daily()
  if nlong > 0 then
    for d = 1, 2 do
      local r = lrings[nlong][d]
      if r then
        local fill = longs[nlong].lim[d] - r.sum
        if fill > 0 then
          ring_adjust(r, r.head, fill)
          ring_save(r)
        end
      end
    end
    -- What was granted until now stays spent in the longest window (see `give`).
    redis.call('HSET', key, 'df', now)
  else
    redis.call('HSET', key, 'dh', math.max(1, now + daily_hold), 'dp', 0)
  end
end

local function wait_for(level, need, rate)
  if level >= need then return 0 end
  return math.ceil((need - level) / rate)
end

-- A daily hold outlives the key's usual expiry.
local hold_left = num_field('dh', 0) - now
if hold_left > 0 then ttl = math.max(ttl, math.ceil(hold_left / 1000) + 1000) end

if op == 'take' then
  -- Long windows first, as the in-process core: a call they cannot hold is not booked.
  if nlong > 0 or num_field('dh', 0) > 0 then
    local lw, lb = long_wait()
    if lw > 0 then
      return {0, math.ceil(lw), lb, 0, now}
    end
  end
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
  local wait = 0
  if model == 'w' then
    wait = math.max(0, num_field('bu', 0) - now)
    if num_field('pr', 0) == 1 then wait = math.max(wait, slot_len) end
    for d = 1, 2 do
      if limits[d] > 0 then
        local limit = effective_at(learners[d], now)
        local total = rings[d].sum + math.min(want[d], limit)
        if total > limit then
          local w = ring_wait(rings[d], total - limit)
          if w == nil then
            local beyond = total - limit - rings[d].sum
            local empties = (rings[d].head + ring_len) * slot_len
            w = math.max(0, empties - now) + math.ceil(beyond * window / math.max(limit, 1))
          end
          wait = math.max(wait, math.max(w, 1))
        end
      end
    end
  else
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
    wait = borrow_wait
    if within then
      wait = share_wait
    elseif tenant >= 0 then
      wait = math.min(borrow_wait, math.max(child_wait, share_wait))
    end
  end
  if wait > 0 then
    for d = 1, 2 do if rings[d] then ring_save(rings[d]) end end
    return {0, math.ceil(wait), 0, 0, now}
  end
  for d = 1, 2 do
    if limits[d] > 0 then
      if model == 'b' then levels[d] = levels[d] - want[d] end
      ring_adjust(rings[d], rings[d].head, want[d])
      ring_save(rings[d])
      if within then clevels[d] = clevels[d] - want[d] end
      write(d, within)
    end
  end
  for i = 1, nlong do
    for d = 1, 2 do
      local r = lrings[i][d]
      if r then
        ring_adjust(r, r.head, want[d])
        ring_save(r)
      end
    end
  end
  local probe = 0
  if model == 'w' and num_field('st', 0) > 0 and num_field('pr', 0) ~= 1 then
    redis.call('HSET', key, 'pr', 1)
    probe = 1
  end
  local dh = num_field('dh', 0)
  if dh > 0 and now >= dh and num_field('dp', 0) ~= 1 then
    redis.call('HSET', key, 'dp', 1)
    probe = probe + 2
  end
  redis.call('PEXPIRE', key, ttl)
  return {1, 0, within and 1 or 0, probe, now}
elseif op == 'give' then
  local child = within_given and tenant >= 0
  local slot = math.floor(at / slot_len)
  for d = 1, 2 do
    if limits[d] > 0 and want[d] ~= 0 then
      if model == 'b' then levels[d] = math.min(caps[d], levels[d] + want[d]) end
      ring_adjust(rings[d], slot, -want[d])
      ring_save(rings[d])
      if child then clevels[d] = math.min(ccaps[d], clevels[d] + want[d]) end
      write(d, child)
    end
  end
  -- A grant made at or before the last daily fill gives nothing back to the longest window:
  -- the fill counted it, and the day it was in is spent.
  local df = num_field('df', -1)
  for i = 1, nlong do
    for d = 1, 2 do
      local r = lrings[i][d]
      local spent_day = i == nlong and want[d] > 0 and df >= 0 and at <= df
      if r and want[d] ~= 0 and not spent_day then
        ring_adjust(r, math.floor(at / r.sl), -want[d])
        ring_save(r)
      end
    end
  end
  redis.call('PEXPIRE', key, ttl)
  return {1, 0, 0, 0, now}
elseif op == 'learn' then
  if probe_given then redis.call('HSET', key, 'pr', 0) end
  if dprobe_given then
    redis.call('HSET', key, 'dp', 0)
    if outcome ~= 'd' then redis.call('HSET', key, 'dh', 0) end
  end
  if outcome == 'd' then
    -- A daily quota is spent: the per-window limit learns nothing.
    daily()
    redis.call('PEXPIRE', key, math.max(ttl, daily_hold / 1000 + 1000))
    return {1, 0, 0, 0, now}
  end
  local streak = num_field('st', 0)
  if outcome == 's' then
    if probe_given and streak > 0 then redis.call('HSET', key, 'st', 0) end
    redis.call('PEXPIRE', key, ttl)
    return {1, 0, 0, 0, now}
  end
  local new_run = model ~= 'w' or (streak == 0 and at >= num_field('ha', 0))
  local hit = {dims_mask % 2 == 1, math.floor(dims_mask / 2) % 2 == 1}
  for d = 1, 2 do
    if limits[d] > 0 and hit[d] then
      local l = learners[d]
      local nr = new_run
      if model == 'b' then nr = l.c < 0 or now >= l.c + window end
      throttled(l, rings[d].sum, nr)
      save_learner(d, l)
      ring_save(rings[d])
      if model == 'b' and retry_after > 0 then
        levels[d] = math.min(levels[d], -retry_after * (l.e / window))
        write(d, false)
      end
    end
  end
  if model == 'w' then
    if probe_given or new_run then
      local hold = math.floor(window / 32) * (2 ^ math.min(streak, 5))
      redis.call('HSET', key, 'bu', math.max(num_field('bu', 0), now + hold), 'ha', now,
        'st', streak + 1)
    end
    if retry_after > 0 then
      redis.call('HSET', key, 'bu', math.max(num_field('bu', 0), now + retry_after))
    end
  end
  redis.call('PEXPIRE', key, ttl)
  return {1, 0, 0, 0, now}
elseif op == 'state' then
  local out = {2}
  for d = 1, 2 do
    if limits[d] > 0 then
      table.insert(out, effective_at(learners[d], now))
      table.insert(out, rings[d].sum)
      ring_save(rings[d])
    else
      table.insert(out, -1)
      table.insert(out, -1)
    end
  end
  return out
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
    /// Granted (or done, for `give` and `learn`), at the server's time `at` (microseconds);
    /// `within` when charged to the tenant's share; `probe` when the grant probes a window
    /// held back after a throttle.
    /// `probe` bits: 1 the window's probe after a throttle, 2 the daily hold's.
    Granted { within: bool, probe: u8, at: u64 },
    /// Not yet: the budget will hold it in this many microseconds; `bound` names what binds
    /// (0 the window, `i` long window `i` (from 1), 255 a daily hold).
    Wait { us: u64, bound: u8 },
}

/// What one script call does, beyond the key's arguments.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Op {
    pub(crate) name: &'static str,
    pub(crate) amount: [i64; 2],
    pub(crate) tenant: Option<u16>,
    pub(crate) within: bool,
    /// `give`: when the budget given back was granted; `learn`: when the call's was.
    pub(crate) at: u64,
    /// `learn`: `s` success, `t` throttle, `d` daily throttle.
    pub(crate) outcome: &'static str,
    /// `learn`: the dimensions a throttle named (bit 1 requests, bit 2 units).
    pub(crate) dims: u8,
    /// `learn`: the grant's probe bits (see [`Answer::Granted`]).
    pub(crate) probe: u8,
    pub(crate) retry_after_us: u64,
    /// The time to use instead of the server's (tests); `None`: the server's `TIME`.
    pub(crate) now: Option<u64>,
}

impl Op {
    /// A `take` of `amount`.
    pub(crate) fn take(amount: [i64; 2], tenant: Option<u16>) -> Self {
        Op {
            name: "take",
            amount,
            tenant,
            within: false,
            at: 0,
            outcome: "s",
            dims: 0,
            probe: 0,
            retry_after_us: 0,
            now: None,
        }
    }

    /// A `give` of `amount`, granted at `at`.
    pub(crate) fn give(amount: [i64; 2], tenant: Option<u16>, within: bool, at: u64) -> Self {
        Op {
            name: "give",
            within,
            at,
            ..Op::take(amount, tenant)
        }
    }

    /// A `learn` of how a call granted at `at` ended.
    pub(crate) fn learn(outcome: &crate::Outcome, limited: [bool; 2], probe: u8, at: u64) -> Self {
        let (name, dims) = match crate::admission::state::named_dims(outcome, limited) {
            _ if crate::admission::state::is_daily(outcome) => ("d", 0),
            Some(named) => ("t", u8::from(named[0]) | (u8::from(named[1]) << 1)),
            None => ("s", 0),
        };
        Op {
            name: "learn",
            at,
            outcome: name,
            dims,
            probe,
            retry_after_us: outcome
                .retry_after
                .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX)),
            ..Op::take([0, 0], None)
        }
    }
}

/// The script's arguments for one key (all but the operation's).
#[derive(Clone, Debug)]
pub(crate) struct Args {
    pub(crate) window_us: u64,
    pub(crate) limits: [u64; 2],
    pub(crate) caps: [u64; 2],
    /// The level a bucket starts at when its key has no state (its initial credit), per
    /// dimension.
    pub(crate) initial: [u64; 2],
    pub(crate) shares: Option<(std::sync::Arc<[u64]>, u64)>,
    pub(crate) child_caps_us: u64,
    pub(crate) ttl_ms: u64,
    /// `w`: sliding window; `b`: token bucket.
    pub(crate) model: &'static str,
    /// Time slots per window (the window's ring, or the bucket's spend ring for learning).
    pub(crate) slots: u64,
    /// Learning: the least share one cut keeps, the share of the gap a window regains, the
    /// floor.
    pub(crate) learning: [f64; 3],
    /// Long windows: window (µs), slots, requests and units limits (0: none).
    pub(crate) long: Vec<[u64; 4]>,
}

impl Args {
    pub(crate) fn invoke<'a>(
        &self,
        script: &'a Script,
        key: &str,
        op: &Op,
    ) -> redis::ScriptInvocation<'a> {
        let (tenant, num, den) = match (&self.shares, op.tenant) {
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
            .arg(op.amount[0])
            .arg(op.amount[1])
            .arg(tenant)
            .arg(num)
            .arg(den)
            .arg(ccap(0))
            .arg(ccap(1))
            .arg(self.ttl_ms)
            .arg(op.name)
            .arg(if op.within { "1" } else { "0" })
            .arg(self.model)
            .arg(self.slots)
            .arg(self.learning[0])
            .arg(self.learning[1])
            .arg(self.learning[2])
            .arg(op.at)
            .arg(op.outcome)
            .arg(op.dims)
            .arg(op.probe)
            .arg(op.retry_after_us)
            .arg(op.now.map_or(-1, |n| i64::try_from(n).unwrap_or(i64::MAX)))
            .arg(self.long.len());
        for w in &self.long {
            inv.arg(w[0]).arg(w[1]).arg(w[2]).arg(w[3]);
        }
        inv.arg(self.initial[0]).arg(self.initial[1]);
        inv
    }
}

pub(crate) fn answer(reply: &[i64]) -> Result<Answer, StoreError> {
    match reply {
        [1, _, within, probe, at] => Ok(Answer::Granted {
            within: *within == 1,
            probe: u8::try_from(*probe).unwrap_or(0),
            at: u64::try_from(*at).unwrap_or(0),
        }),
        [0, wait, bound, ..] => Ok(Answer::Wait {
            us: u64::try_from(*wait).unwrap_or(0).max(1),
            bound: u8::try_from(*bound).unwrap_or(0),
        }),
        _ => Err(StoreError::Reply),
    }
}

/// The answer of `state`: per dimension, the learned limit and the window's spend (`None`
/// for a dimension the limit does not have).
pub(crate) fn state(reply: &[i64]) -> Result<[Option<(u64, u64)>; 2], StoreError> {
    match reply {
        [2, e0, s0, e1, s1] => {
            let dim = |e: i64, s: i64| {
                (e >= 0).then(|| (u64::try_from(e).unwrap_or(0), u64::try_from(s).unwrap_or(0)))
            };
            Ok([dim(*e0, *s0), dim(*e1, *s1)])
        }
        _ => Err(StoreError::Reply),
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
        assert_eq!(
            answer(&[1, 0, 1, 0, 77]),
            Ok(Answer::Granted {
                within: true,
                probe: 0,
                at: 77
            })
        );
        assert_eq!(
            answer(&[0, 250, 0, 0, 1]),
            Ok(Answer::Wait { us: 250, bound: 0 })
        );
        assert_eq!(
            answer(&[0, -3, 1, 0, 1]),
            Ok(Answer::Wait { us: 1, bound: 1 })
        );
        assert_eq!(state(&[2, 10, 3, -1, -1]), Ok([Some((10, 3)), None]));
        assert_eq!(answer(&[7]), Err(StoreError::Reply));
    }
}
