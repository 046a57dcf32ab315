-- The Lua side of tower-headroom's Redis quota store: one script, every operation atomic on the
-- server's clock. Its protocol (operations, arguments, replies) is documented in script.rs.
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
