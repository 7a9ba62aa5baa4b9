//! The Lua scripts. Each runs atomically on the server, so every multi-key change (a run and its
//! indexes, a signal and its announcement) is all-or-nothing and costs one round trip.
//!
//! Every script takes `ARGV[1]` = key prefix and `ARGV[2]` = TTL in milliseconds (`0` keeps
//! keys forever), and builds key names like `keys.rs` does. Scripts touch keys they compute
//! themselves (the indexes), so the store needs one Redis server (or a primary with replicas),
//! not Redis Cluster.
//!
//! Values travel as Lua strings, which are byte strings: nothing is parsed or re-encoded, so
//! JSON text comes back byte for byte. Timestamps are kept as the decimal text Rust wrote and
//! only handed to `ZADD` as scores.

use redis::Script;

/// Helpers shared by every script.
const PRELUDE: &str = r#"
local P = ARGV[1]
local TTL = ARGV[2]
local function enc(id) return #id .. ':' .. id end
local function key(kind, id) return P .. ':' .. kind .. ':' .. enc(id) end
local IDX_ALL = P .. ':index:all'
local IDX_OPEN = P .. ':index:unfinished'
local function idx_status(s) return P .. ':index:status:' .. s end
local function idx_wf(wf) return P .. ':index:workflow:' .. enc(wf) end
local function is_open(s) return s == 'running' or s == 'waiting' end
-- The per-queue structures (see keys.rs): `ready` (candidates, by `<rank><id>` with score 0,
-- so in byte order: priority, then age, then id), `enqueued` and `active` (by creation time),
-- `parked` (a set), `timers` (parked runs not yet due, by wake time), `claims` (claim times).
local function qkey(q, kind) return P .. ':queue:' .. enc(q) .. ':' .. kind end
local QUEUE_KINDS = {'ready', 'enqueued', 'active', 'parked', 'timers', 'claims'}
local function idx_queue(q) return P .. ':index:queue:' .. enc(q) end
local function idx_parent(p) return P .. ':index:parent:' .. enc(p) end
local function work_channel(q) return P .. ':work:' .. enc(q) end
-- How many candidates (or due timers) one claim looks at: a script blocks the server.
local SCAN = 256

local function expire(k)
  if TTL == '0' then redis.call('PERSIST', k) else redis.call('PEXPIRE', k, TTL) end
end
local function expire_queue(q)
  for _, kind in ipairs(QUEUE_KINDS) do expire(qkey(q, kind)) end
  expire(idx_queue(q))
end

local IDX_EXPIRY = P .. ':index:expiry'
-- The member of run `id` in the expiry index: `<n>:<workflow><id>`, and for a queued run
-- `Q<n>:<workflow><n>:<queue>` then `1<n>:<parent>` or `0`, then its 24-character rank and id,
-- so that `sweep` can take a run that expired out of its queue's structures.
local function exp_member(id, wf, q, parent, rank)
  if not q then return enc(wf) .. id end
  local p = '0'
  if parent then p = '1' .. enc(parent) end
  return 'Q' .. enc(wf) .. enc(q) .. p .. rank .. id
end
-- Reads the `<n>:<text>` at `pos` of `m`: the text and the position after it.
local function take(m, pos)
  local sep = string.find(m, ':', pos, true)
  local n = tonumber(string.sub(m, pos, sep - 1))
  return string.sub(m, sep + 1, sep + n), sep + n + 1
end
local function server_ms()
  local t = redis.call('TIME')
  return t[1] * 1000 + math.floor(t[2] / 1000)
end

-- Refreshes the TTL of the keys of run `id`. The indexes that list it are refreshed too, and
-- the time of the write noted in the expiry index (member `<n>:<workflow><id>`, from which
-- `sweep` finds the index entries of runs that expired), when `full` is set or the last such
-- refresh of this run (its `touched` field) is older than a sixteenth of the TTL: the hot
-- `save_step` then costs four calls, and an index never gets below 15/16 of its TTL while a
-- run it lists is being written.
local function touch(id, full)
  local rk = key('run', id)
  expire(rk)
  expire(key('steps', id))
  expire(key('signals', id))
  expire(key('events', id))
  expire(key('events-from', id))
  local f = redis.call('HMGET', rk, 'wf', 'status', 'touched', 'queue', 'parent', 'rank')
  if not f[1] then return end
  local now
  if not full and TTL ~= '0' and f[3] then
    now = server_ms()
    if now - tonumber(f[3]) < tonumber(TTL) / 16 then return end
  end
  expire(IDX_ALL)
  expire(idx_wf(f[1]))
  expire(idx_status(f[2]))
  if is_open(f[2]) then expire(IDX_OPEN) end
  if f[4] then expire_queue(f[4]) end
  if f[5] then expire(idx_parent(f[5])) end
  if TTL ~= '0' then
    now = now or server_ms()
    local stamp = string.format('%.0f', now)
    redis.call('ZADD', IDX_EXPIRY, stamp, exp_member(id, f[1], f[4], f[5], f[6]))
    expire(IDX_EXPIRY)
    redis.call('HSET', rk, 'touched', stamp)
  end
end

-- Takes run `id` out of queue `q`'s structures and the queue and parent indexes.
local function unqueue(id, q, parent, rank)
  redis.call('ZREM', qkey(q, 'ready'), rank .. id)
  redis.call('ZREM', qkey(q, 'enqueued'), id)
  redis.call('ZREM', qkey(q, 'active'), id)
  redis.call('SREM', qkey(q, 'parked'), id)
  redis.call('ZREM', qkey(q, 'timers'), id)
  redis.call('ZREM', idx_queue(q), id)
  if parent then redis.call('ZREM', idx_parent(parent), id) end
end

-- Removes from every index up to 8 runs whose keys expired (their last write is older than
-- the TTL and their hash is gone), so that indexes do not grow with runs long gone.
local function sweep()
  if TTL == '0' then return end
  local horizon = string.format('%.0f', server_ms() - tonumber(TTL))
  local old = redis.call('ZRANGEBYSCORE', IDX_EXPIRY, '-inf', horizon, 'LIMIT', 0, 8)
  for _, m in ipairs(old) do
    local queued = string.sub(m, 1, 1) == 'Q'
    local wf, pos, q, parent, rank
    if queued then
      wf, pos = take(m, 2)
      q, pos = take(m, pos)
      if string.sub(m, pos, pos) == '1' then parent, pos = take(m, pos + 1) else pos = pos + 1 end
      rank = string.sub(m, pos, pos + 23)
      pos = pos + 24
    else
      wf, pos = take(m, 1)
    end
    local id = string.sub(m, pos)
    local cur = redis.call('HMGET', key('run', id), 'wf', 'queue')
    if cur[1] == wf and (cur[2] or nil) == q then
      -- Still there (a store with a longer TTL wrote it): look again later.
      redis.call('ZADD', IDX_EXPIRY, server_ms(), m)
    else
      if cur[1] ~= wf then redis.call('ZREM', idx_wf(wf), id) end
      if not cur[1] then
        redis.call('ZREM', IDX_ALL, id)
        redis.call('ZREM', IDX_OPEN, id)
        for _, s in ipairs({'enqueued', 'running', 'waiting', 'completed', 'failed', 'cancelled'}) do
          redis.call('ZREM', idx_status(s), id)
        end
      end
      if queued then unqueue(id, q, parent, rank) end
      redis.call('ZREM', IDX_EXPIRY, m)
    end
  end
end

-- Moves run `id` (created at `created`) from the index of status `old` (false: none) to `new`.
local function index_status(id, created, old, new)
  if old and old ~= new then redis.call('ZREM', idx_status(old), id) end
  redis.call('ZADD', idx_status(new), created, id)
  if is_open(new) then
    redis.call('ZADD', IDX_OPEN, created, id)
  elseif old and is_open(old) then
    redis.call('ZREM', IDX_OPEN, id)
  end
end

-- Puts queued run `id` where its state calls for (nothing for a run outside a queue):
-- `enqueued` in `ready` and `enqueued`; `running`, or `waiting` without a wake time (its worker
-- waits in memory), in `active`; `waiting` with a wake time (parked) in `parked` and `timers`;
-- a finished or failed run nowhere. `claim` moves due timers and lapsed active runs to
-- `ready` without a change of state, and takes them from there. The caller then `touch`es the
-- run, which refreshes the TTL of the queue's keys.
local function place(id)
  local f = redis.call('HMGET', key('run', id), 'queue', 'status', 'wake_at', 'rank', 'created')
  local q, s = f[1], f[2]
  if not q then return end
  local where = 'none'
  if s == 'enqueued' then
    where = 'ready'
  elseif s == 'running' or (s == 'waiting' and not f[3]) then
    where = 'active'
  elseif s == 'waiting' then
    where = 'parked'
  end
  if where == 'ready' then
    redis.call('ZADD', qkey(q, 'ready'), 0, f[4] .. id)
    redis.call('ZADD', qkey(q, 'enqueued'), f[5], id)
  else
    redis.call('ZREM', qkey(q, 'ready'), f[4] .. id)
    redis.call('ZREM', qkey(q, 'enqueued'), id)
  end
  if where == 'active' then
    redis.call('ZADD', qkey(q, 'active'), f[5], id)
  else
    redis.call('ZREM', qkey(q, 'active'), id)
  end
  if where == 'parked' then
    redis.call('SADD', qkey(q, 'parked'), id)
    redis.call('ZADD', qkey(q, 'timers'), f[3], id)
  else
    redis.call('SREM', qkey(q, 'parked'), id)
    redis.call('ZREM', qkey(q, 'timers'), id)
  end
end

local function field(rec, name)
  for i = 1, #rec, 2 do
    if rec[i] == name then return rec[i + 1] end
  end
  return false
end
"#;

/// ARGV[3..]: run id, workflow, now, has input (`1`/`0`), input.
/// Returns `{run hash (flat), step records, signals hash (flat)}`.
const OPEN_RUN: &str = r#"
local id, wf, now = ARGV[3], ARGV[4], ARGV[5]
local rk = key('run', id)
local cur = redis.call('HMGET', rk, 'wf', 'status', 'created')
if cur[1] then
  if cur[1] == wf and (is_open(cur[2]) or cur[2] == 'failed' or cur[2] == 'enqueued') then
    redis.call('HSET', rk, 'status', 'running', 'updated', now)
    redis.call('HDEL', rk, 'error', 'waiting_on', 'wake_at')
    index_status(id, cur[3], cur[2], 'running')
    place(id)
  end
else
  sweep()
  redis.call('HSET', rk, 'id', id, 'wf', wf, 'status', 'running', 'created', now, 'updated', now)
  if ARGV[6] == '1' then redis.call('HSET', rk, 'input', ARGV[7]) end
  redis.call('ZADD', IDX_ALL, now, id)
  redis.call('ZADD', idx_wf(wf), now, id)
  index_status(id, now, false, 'running')
end
touch(id, true)
return {redis.call('HGETALL', rk), redis.call('HVALS', key('steps', id)), redis.call('HGETALL', key('signals', id))}
"#;

/// ARGV[3..]: run id, step id, step record. Returns 1.
const SAVE_STEP: &str = r#"
redis.call('HSET', key('steps', ARGV[3]), ARGV[4], ARGV[5])
touch(ARGV[3], false)
return 1
"#;

/// ARGV[3..]: run id, status, now, then (flag, value) for output, error and waiting_on, then
/// `1` to leave a cancelled run alone. Returns 0 when the run does not exist, 2 when it is
/// cancelled and the guard is set (nothing written either way), 1 when updated.
const UPDATE_RUN: &str = r#"
local id, status, now = ARGV[3], ARGV[4], ARGV[5]
local rk = key('run', id)
local cur = redis.call('HMGET', rk, 'status', 'created')
if not cur[1] then return 0 end
if ARGV[12] == '1' and cur[1] == 'cancelled' then return 2 end
redis.call('HSET', rk, 'status', status, 'updated', now)
local fields = {'output', 'error', 'waiting_on'}
for i = 1, 3 do
  if ARGV[4 + 2 * i] == '1' then
    redis.call('HSET', rk, fields[i], ARGV[5 + 2 * i])
  else
    redis.call('HDEL', rk, fields[i])
  end
end
redis.call('HDEL', rk, 'wake_at')
index_status(id, cur[2], cur[1], status)
place(id)
touch(id, true)
return 1
"#;

/// ARGV[3..]: run id, signal name, `<delivered_at>:<payload>`, delivered_at. Returns 1 when
/// delivered, 0 when a signal of that name was already there. A delivery is announced on the
/// run's channel; one that a parked run awaits makes it due at the delivery time at the latest,
/// and is announced on its queue's channel.
const DELIVER_SIGNAL: &str = r#"
local id, name, at = ARGV[3], ARGV[4], ARGV[6]
local delivered = redis.call('HSETNX', key('signals', id), name, ARGV[5])
local unparked = false
if delivered == 1 then
  local rk = key('run', id)
  local f = redis.call('HMGET', rk, 'status', 'waiting_on', 'wake_at', 'queue')
  if f[1] == 'waiting' and f[2] == name and f[3] then
    local wake = f[3]
    if tonumber(at) < tonumber(wake) then
      wake = at
      redis.call('HSET', rk, 'wake_at', at)
    end
    unparked = f[4]
    -- Among the timers again even if a claim found it due before: a claim moves it at once.
    if unparked then
      redis.call('ZADD', qkey(unparked, 'timers'), wake, id)
      redis.call('SADD', qkey(unparked, 'parked'), id)
    end
  end
end
touch(id, true)
if delivered == 1 then redis.call('PUBLISH', key('wake', id), name) end
if unparked then redis.call('PUBLISH', work_channel(unparked), id) end
return delivered
"#;

/// ARGV[3]: run id. Deletes the run, its steps, signals, events and lease, its index entries
/// and its place in its queue. Returns 1 if the run record existed.
const DELETE_RUN: &str = r#"
local id = ARGV[3]
local rk = key('run', id)
local f = redis.call('HMGET', rk, 'wf', 'status', 'queue', 'parent', 'rank')
redis.call('DEL', rk, key('steps', id), key('signals', id), key('events', id), key('events-from', id),
  key('lease', id))
if not f[1] then return 0 end
redis.call('ZREM', IDX_ALL, id)
redis.call('ZREM', IDX_OPEN, id)
redis.call('ZREM', idx_wf(f[1]), id)
redis.call('ZREM', idx_status(f[2]), id)
redis.call('ZREM', IDX_EXPIRY, exp_member(id, f[1], f[3], f[4], f[5]))
if f[3] then unqueue(id, f[3], f[4], f[5]) end
return 1
"#;

/// ARGV[3..]: status (`''`: any), then (flag, value) for workflow, queue and parent, then limit
/// (`-1`: none), then (flag, value) for a run id prefix. Returns matching run hashes (flat),
/// newest first, walking the narrowest index. Index entries of runs that expired are dropped
/// on the way. A prefix is compared with each id of the index walked before its run is read,
/// so a family of runs costs one call, but a walk of that index on the server.
const LIST_RUNS: &str = r#"
local status, has_wf, wf, limit = ARGV[3], ARGV[4] == '1', ARGV[5], tonumber(ARGV[10])
local has_q, q, has_parent, parent = ARGV[6] == '1', ARGV[7], ARGV[8] == '1', ARGV[9]
local has_pfx, pfx = ARGV[11] == '1', ARGV[12]
local out = {}
if limit == 0 then return out end
local idx = IDX_ALL
if has_parent then
  idx = idx_parent(parent)
elseif has_q then
  idx = idx_queue(q)
elseif has_wf then
  idx = idx_wf(wf)
elseif status ~= '' then
  idx = idx_status(status)
end
local start = 0
while true do
  local ids = redis.call('ZREVRANGE', idx, start, start + 199)
  if #ids == 0 then break end
  local removed = 0
  for _, id in ipairs(ids) do
    if not has_pfx or string.sub(id, 1, #pfx) == pfx then
      local rec = redis.call('HGETALL', key('run', id))
      if #rec == 0 then
        redis.call('ZREM', idx, id)
        removed = removed + 1
      elseif (status == '' or field(rec, 'status') == status) and (not has_wf or field(rec, 'wf') == wf)
        and (not has_q or field(rec, 'queue') == q) and (not has_parent or field(rec, 'parent') == parent) then
        out[#out + 1] = rec
        if limit > 0 and #out >= limit then return out end
      end
    end
  end
  start = start + #ids - removed
end
return out
"#;

/// ARGV[3]: limit. Returns the hashes (flat) of running and waiting runs whose lease key does
/// not exist, oldest first, leaving out parked runs (a claim resumes those).
const RECOVERABLE_RUNS: &str = r#"
local limit = tonumber(ARGV[3])
local out = {}
if limit == 0 then return out end
local start = 0
while true do
  local ids = redis.call('ZRANGE', IDX_OPEN, start, start + 199)
  if #ids == 0 then break end
  local removed = 0
  for _, id in ipairs(ids) do
    local rec = redis.call('HGETALL', key('run', id))
    if #rec == 0 then
      redis.call('ZREM', IDX_OPEN, id)
      removed = removed + 1
    elseif is_open(field(rec, 'status')) and not field(rec, 'wake_at') and not field(rec, 'queue')
      and redis.call('EXISTS', key('lease', id)) == 0 then
      out[#out + 1] = rec
      if #out >= limit then return out end
    end
  end
  start = start + #ids - removed
end
return out
"#;

/// ARGV[3..]: run id, owner, TTL in milliseconds. Times come from the server's clock.
/// Returns `{1}` when the owner holds the lease now, `{0, owner, expires_at}` when another
/// owner holds a live one.
const ACQUIRE_LEASE: &str = r#"
local lk = key('lease', ARGV[3])
local owner = ARGV[4]
local t = redis.call('TIME')
local expires = string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[5]))
local cur = redis.call('GET', lk)
if cur then
  local sep = string.find(cur, ':', 1, true)
  local holder = string.sub(cur, sep + 1)
  if holder ~= owner then return {0, holder, string.sub(cur, 1, sep - 1)} end
end
redis.call('SET', lk, expires .. ':' .. owner, 'PXAT', expires)
return {1}
"#;

/// ARGV[3..]: run id, owner. Deletes the lease only when `owner` holds it. Returns 1 if it did.
const RELEASE_LEASE: &str = r#"
local lk = key('lease', ARGV[3])
local cur = redis.call('GET', lk)
if cur then
  local sep = string.find(cur, ':', 1, true)
  if string.sub(cur, sep + 1) == ARGV[4] then
    redis.call('DEL', lk)
    return 1
  end
end
return 0
"#;

/// ARGV[3..]: owner, TTL in milliseconds, then run ids. Extends each lease the owner holds (by
/// the server's clock); never takes one. Returns `{id, '1', holder}` for each id whose lease
/// another owner holds, `{id, '0', ''}` for each one nobody holds.
const RENEW_LEASES: &str = r#"
local owner = ARGV[3]
local t = redis.call('TIME')
local expires = string.format('%.0f', t[1] * 1000 + math.floor(t[2] / 1000) + tonumber(ARGV[4]))
local lost = {}
for i = 5, #ARGV do
  local lk = key('lease', ARGV[i])
  local cur = redis.call('GET', lk)
  local holder = nil
  if cur then
    local sep = string.find(cur, ':', 1, true)
    holder = string.sub(cur, sep + 1)
  end
  if holder == owner then
    redis.call('SET', lk, expires .. ':' .. owner, 'PXAT', expires)
  elseif holder then
    lost[#lost + 1] = ARGV[i]; lost[#lost + 1] = '1'; lost[#lost + 1] = holder
  else
    lost[#lost + 1] = ARGV[i]; lost[#lost + 1] = '0'; lost[#lost + 1] = ''
  end
end
return lost
"#;

/// ARGV[3..]: run ids. Returns those whose run is `cancelled`.
const CANCELLED_RUNS: &str = r#"
local out = {}
for i = 3, #ARGV do
  if redis.call('HGET', key('run', ARGV[i]), 'status') == 'cancelled' then
    out[#out + 1] = ARGV[i]
  end
end
return out
"#;

/// ARGV[3..]: run id, workflow, (flag, input), queue, priority, (flag, key), (flag, parent),
/// rank, now. Creates the run `enqueued` unless it exists. Returns `{1 if created else 0, run
/// hash (flat)}`; a creation is announced on the queue's channel.
const ENQUEUE: &str = r#"
local id, wf, q, now = ARGV[3], ARGV[4], ARGV[7], ARGV[14]
local rk = key('run', id)
if redis.call('EXISTS', rk) == 1 then return {0, redis.call('HGETALL', rk)} end
sweep()
redis.call('HSET', rk, 'id', id, 'wf', wf, 'status', 'enqueued', 'created', now, 'updated', now,
  'queue', q, 'priority', ARGV[8], 'rank', ARGV[13])
if ARGV[5] == '1' then redis.call('HSET', rk, 'input', ARGV[6]) end
if ARGV[9] == '1' then redis.call('HSET', rk, 'key', ARGV[10]) end
if ARGV[11] == '1' then
  redis.call('HSET', rk, 'parent', ARGV[12])
  redis.call('ZADD', idx_parent(ARGV[12]), now, id)
end
if ARGV[15] == '1' then redis.call('HSET', rk, 'version', ARGV[16]) end
redis.call('ZADD', IDX_ALL, now, id)
redis.call('ZADD', idx_wf(wf), now, id)
redis.call('ZADD', idx_queue(q), now, id)
index_status(id, now, false, 'enqueued')
place(id)
touch(id, true)
redis.call('PUBLISH', work_channel(q), id)
return {1, redis.call('HGETALL', rk)}
"#;

/// ARGV[3..]: queue, owner, lease TTL in milliseconds, now, max, then the limits: concurrency,
/// per key, rate starts, rate period (each `''` when unset), then the worker's version (`''`:
/// none). Returns the claimed run hashes (flat), in claim order.
///
/// Leases and the rate window are on the server's clock, like `ACQUIRE_LEASE`; wake times are
/// the engine's times and are compared with `now`. Executing runs are those of `active` whose
/// lease key exists (it expires by itself); `active` runs whose lease lapsed, and parked runs
/// that are due, become candidates first. Then candidates are taken from `ready` in order, at
/// most `SCAN` looked at, skipping those whose key is at its limit and, for a versioned worker,
/// those bound to another version or started without one (rule 26 of docs/design.md). A claimed
/// run records its claim time (the rate window's, on the server's clock) and, without a version,
/// the worker's.
const CLAIM_RUNS: &str = r#"
local q, owner, ttl, now, max = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6], tonumber(ARGV[7])
local ver = ARGV[12]
local conc, per_key, starts, period = tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11])
local READY, ACTIVE, TIMERS, CLAIMS = qkey(q, 'ready'), qkey(q, 'active'), qkey(q, 'timers'), qkey(q, 'claims')
local srv = server_ms()
local now_n = tonumber(now)

for _, id in ipairs(redis.call('ZRANGEBYSCORE', TIMERS, '-inf', now, 'LIMIT', 0, SCAN)) do
  redis.call('ZREM', TIMERS, id)
  local rank = redis.call('HGET', key('run', id), 'rank')
  if rank then
    redis.call('ZADD', READY, 0, rank .. id)
  else
    redis.call('SREM', qkey(q, 'parked'), id)
  end
end

local executing, by_key = 0, {}
for _, id in ipairs(redis.call('ZRANGE', ACTIVE, 0, -1)) do
  local f = redis.call('HMGET', key('run', id), 'status', 'wake_at', 'key', 'rank', 'queue')
  if f[5] ~= q or not (f[1] == 'running' or (f[1] == 'waiting' and not f[2])) then
    redis.call('ZREM', ACTIVE, id)
  elseif redis.call('EXISTS', key('lease', id)) == 1 then
    executing = executing + 1
    if f[3] then by_key[f[3]] = (by_key[f[3]] or 0) + 1 end
  else
    -- Its worker died: the lease lapsed.
    redis.call('ZREM', ACTIVE, id)
    redis.call('ZADD', READY, 0, f[4] .. id)
  end
end

local window = 0
if starts then
  redis.call('ZREMRANGEBYSCORE', CLAIMS, '-inf', string.format('%.0f', srv - period))
  window = redis.call('ZCARD', CLAIMS)
else
  redis.call('DEL', CLAIMS)
end

local expires = string.format('%.0f', srv + ttl)
local out = {}
for _, m in ipairs(redis.call('ZRANGE', READY, 0, SCAN - 1)) do
  if #out >= max or (conc and executing >= conc) or (starts and window >= starts) then break end
  local id = string.sub(m, 25)
  local rk = key('run', id)
  local f = redis.call('HMGET', rk, 'status', 'wake_at', 'key', 'queue', 'created', 'version')
  local s = f[1]
  local runnable = f[4] == q and (s == 'enqueued' or s == 'running'
    or (s == 'waiting' and (not f[2] or tonumber(f[2]) <= now_n)))
  local mine = ver == '' or f[6] == ver or (not f[6] and s == 'enqueued')
  if not runnable then
    redis.call('ZREM', READY, m)
    if not s then redis.call('ZREM', qkey(q, 'enqueued'), id) end
  elseif mine and redis.call('EXISTS', key('lease', id)) == 0
    and not (per_key and f[3] and (by_key[f[3]] or 0) >= per_key) then
    redis.call('HSET', rk, 'status', 'running', 'updated', now, 'claimed', string.format('%.0f', srv))
    if ver ~= '' and not f[6] then redis.call('HSET', rk, 'version', ver) end
    redis.call('HDEL', rk, 'waiting_on', 'wake_at')
    index_status(id, f[5], s, 'running')
    redis.call('SET', key('lease', id), expires .. ':' .. owner, 'PXAT', expires)
    if starts then
      redis.call('ZADD', CLAIMS, srv, srv .. ':' .. id)
      window = window + 1
    end
    place(id)
    touch(id, true)
    executing = executing + 1
    if f[3] then by_key[f[3]] = (by_key[f[3]] or 0) + 1 end
    out[#out + 1] = redis.call('HGETALL', rk)
  end
end
expire_queue(q)
return out
"#;

/// ARGV[3..]: run id, owner, awaited signal, wake time (`''`: none), now. Returns 0 when the
/// run does not exist, 2 when it is cancelled (nothing written either way), 1 when parked.
const PARK_RUN: &str = r#"
local id, owner, name, now = ARGV[3], ARGV[4], ARGV[5], ARGV[7]
local rk = key('run', id)
local cur = redis.call('HMGET', rk, 'status', 'created', 'queue')
if not cur[1] then return 0 end
if cur[1] == 'cancelled' then return 2 end
local delivered = redis.call('HEXISTS', key('signals', id), name) == 1
local wake = ARGV[6]
if delivered then wake = now elseif wake == '' then wake = '9223372036854775807' end
redis.call('HSET', rk, 'status', 'waiting', 'waiting_on', name, 'wake_at', wake, 'updated', now)
index_status(id, cur[2], cur[1], 'waiting')
local lk = key('lease', id)
local lease = redis.call('GET', lk)
if lease and string.sub(lease, string.find(lease, ':', 1, true) + 1) == owner then
  redis.call('DEL', lk)
end
place(id)
touch(id, true)
if delivered and cur[3] then redis.call('PUBLISH', work_channel(cur[3]), id) end
return 1
"#;

/// ARGV[3]: queue. Returns `{enqueued, executing, parked, oldest enqueued time or ''}`.
const QUEUE_STATS: &str = r#"
local q = ARGV[3]
local executing = 0
for _, id in ipairs(redis.call('ZRANGE', qkey(q, 'active'), 0, -1)) do
  local f = redis.call('HMGET', key('run', id), 'status', 'wake_at', 'queue')
  if f[3] == q and (f[1] == 'running' or (f[1] == 'waiting' and not f[2]))
    and redis.call('EXISTS', key('lease', id)) == 1 then
    executing = executing + 1
  end
end
local oldest = redis.call('ZRANGE', qkey(q, 'enqueued'), 0, 0, 'WITHSCORES')
local at = ''
if oldest[2] then at = string.format('%.0f', tonumber(oldest[2])) end
return {redis.call('ZCARD', qkey(q, 'enqueued')), executing, redis.call('SCARD', qkey(q, 'parked')), at}
"#;

/// ARGV[3..]: now, then queues. Returns 1 when one of them has a candidate or a due timer:
/// work a claim may take.
const HAS_WORK: &str = r#"
for i = 4, #ARGV do
  if redis.call('ZCARD', qkey(ARGV[i], 'ready')) > 0 then return 1 end
  if #redis.call('ZRANGEBYSCORE', qkey(ARGV[i], 'timers'), '-inf', ARGV[3], 'LIMIT', 0, 1) > 0 then return 1 end
end
return 0
"#;

/// ARGV[3..]: run id, how many events the log keeps (at least 1), then encoded events.
/// Appends them to the run's list, drops the oldest beyond the number kept (the offset of the
/// list's first element, 0 until events were dropped, is in `events-from`), and announces them
/// on the run's events channel. Returns the first offset.
const APPEND_EVENTS: &str = r#"
local id = ARGV[3]
local keep = tonumber(ARGV[4])
local ek = key('events', id)
local fk = key('events-from', id)
local base = tonumber(redis.call('GET', fk) or '0')
local n = #ARGV - 4
local len = redis.call('LLEN', ek)
for i = 5, #ARGV do len = redis.call('RPUSH', ek, ARGV[i]) end
local first = base + len - n
if len > keep then
  redis.call('LTRIM', ek, len - keep, -1)
  base = base + len - keep
  len = keep
  redis.call('SET', fk, string.format('%.0f', base))
end
touch(id, false)
if n > 0 then redis.call('PUBLISH', key('appended', id), string.format('%.0f', base + len)) end
return first
"#;

/// ARGV[3..5]: run id, first offset, how many events. The events of the log from that offset
/// (from its oldest kept, if that one is later), as `{offset of the first, events}`.
const READ_EVENTS: &str = r#"
local id = ARGV[3]
local base = tonumber(redis.call('GET', key('events-from', id)) or '0')
local start = tonumber(ARGV[4]) - base
if start < 0 then start = 0 end
local stop = start + tonumber(ARGV[5]) - 1
local events = redis.call('LRANGE', key('events', id), string.format('%.0f', start), string.format('%.0f', stop))
return {base + start, events}
"#;

/// ARGV[3]: run id. The offset after the log's last event.
const EVENTS_END: &str = r#"
local id = ARGV[3]
local base = tonumber(redis.call('GET', key('events-from', id)) or '0')
return base + redis.call('LLEN', key('events', id))
"#;

/// Sets the expiry of rate key `k`'s three keys: the later of a period after `now` (every grant
/// counts from `now` at the latest) and the end of its block.
const RATE_PRELUDE: &str = r#"
local function rate_keys(k) return key('rate', k), key('rate_grants', k), key('rate_costs', k) end
local function rate_keep(k, now)
  local M, G, C = rate_keys(k)
  local period = tonumber(redis.call('HGET', M, 'period') or '3600000')
  local until_ms = math.max(now + period, tonumber(redis.call('HGET', M, 'blocked') or '0'))
  local at = string.format('%.0f', until_ms)
  for _, rk in ipairs({M, G, C}) do redis.call('PEXPIREAT', rk, at) end
end
"#;

/// ARGV[3..]: key, grant id, requests per period (`''`: none), tokens per period (`''`: none),
/// period, the cost's requests and tokens. Returns `{1}` when granted, `{0, retry_at, now}`
/// when refused.
///
/// On the server's clock, like `CLAIM_RUNS`' rate window. A key is three keys: `rate` (a hash
/// of its `period` and the end of its block, `blocked`), `rate_grants` (grant ids by the time
/// they count from) and `rate_costs` (grant id → `<requests>:<tokens>`). Grants that fell out
/// of the window are removed first; the rest are summed, oldest first, to find when the cost
/// fits if it does not now.
const ACQUIRE_RATE: &str = r#"
local k, id = ARGV[3], ARGV[4]
local max_r, max_t, period = tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7])
local cost_r, cost_t = tonumber(ARGV[8]), tonumber(ARGV[9])
local M, G, C = rate_keys(k)
local now = server_ms()
if redis.call('ZSCORE', G, id) then return {1} end
local edge = string.format('%.0f', now - period)
for _, old in ipairs(redis.call('ZRANGEBYSCORE', G, '-inf', edge)) do redis.call('HDEL', C, old) end
redis.call('ZREMRANGEBYSCORE', G, '-inf', edge)
redis.call('HSET', M, 'period', string.format('%.0f', period))
local blocked = tonumber(redis.call('HGET', M, 'blocked') or '0')
if blocked > now then
  rate_keep(k, now)
  return {0, blocked, now}
end
local log = redis.call('ZRANGE', G, 0, -1, 'WITHSCORES')
local grants, used_r, used_t = {}, 0, 0
for i = 1, #log, 2 do
  local c = redis.call('HGET', C, log[i]) or '0:0'
  local sep = string.find(c, ':', 1, true)
  local r, t = tonumber(string.sub(c, 1, sep - 1)), tonumber(string.sub(c, sep + 1))
  grants[#grants + 1] = {tonumber(log[i + 1]), r, t}
  used_r, used_t = used_r + r, used_t + t
end
local function fits(r, t)
  return (not max_r or r + cost_r <= max_r) and (not max_t or t + cost_t <= max_t)
end
if fits(used_r, used_t) then
  redis.call('ZADD', G, string.format('%.0f', now), id)
  redis.call('HSET', C, id, ARGV[8] .. ':' .. ARGV[9])
  rate_keep(k, now)
  return {1}
end
rate_keep(k, now)
for _, g in ipairs(grants) do
  used_r, used_t = used_r - g[2], used_t - g[3]
  if fits(used_r, used_t) then return {0, g[1] + period, now} end
end
return {0, now + period, now}
"#;

/// ARGV[3..]: key, grant id, requests, tokens. The grant counts them from the end of the
/// current millisecond (server clock).
const SETTLE_RATE: &str = r#"
local k, id = ARGV[3], ARGV[4]
local M, G, C = rate_keys(k)
local now = server_ms() + 1
redis.call('ZADD', G, string.format('%.0f', now), id)
redis.call('HSET', C, id, ARGV[5] .. ':' .. ARGV[6])
rate_keep(k, now)
return 1
"#;

/// ARGV[3..]: key, the block's length in milliseconds. Its end is by the server's clock; a
/// block ending earlier than the one in place changes nothing.
const BLOCK_RATE: &str = r#"
local k = ARGV[3]
local M = rate_keys(k)
local now = server_ms()
local until_ms = now + tonumber(ARGV[4])
if until_ms > tonumber(redis.call('HGET', M, 'blocked') or '0') then
  redis.call('HSET', M, 'blocked', string.format('%.0f', until_ms))
end
rate_keep(k, now)
return 1
"#;

/// The compiled scripts of a store (each knows its SHA-1, so calls are `EVALSHA`, with the
/// script loaded again on `NOSCRIPT`, for instance after the server restarted).
#[derive(Debug)]
pub(crate) struct Scripts {
    pub(crate) open_run: Script,
    pub(crate) save_step: Script,
    pub(crate) update_run: Script,
    pub(crate) deliver_signal: Script,
    pub(crate) list_runs: Script,
    pub(crate) recoverable_runs: Script,
    pub(crate) acquire_lease: Script,
    pub(crate) release_lease: Script,
    pub(crate) renew_leases: Script,
    pub(crate) cancelled_runs: Script,
    pub(crate) delete_run: Script,
    pub(crate) enqueue: Script,
    pub(crate) claim_runs: Script,
    pub(crate) park_run: Script,
    pub(crate) queue_stats: Script,
    pub(crate) has_work: Script,
    pub(crate) append_events: Script,
    pub(crate) read_events: Script,
    pub(crate) events_end: Script,
    pub(crate) acquire_rate: Script,
    pub(crate) settle_rate: Script,
    pub(crate) block_rate: Script,
}

impl Scripts {
    pub(crate) fn new() -> Self {
        let s = |body: &str| Script::new(&format!("{PRELUDE}{body}"));
        Scripts {
            open_run: s(OPEN_RUN),
            save_step: s(SAVE_STEP),
            update_run: s(UPDATE_RUN),
            deliver_signal: s(DELIVER_SIGNAL),
            list_runs: s(LIST_RUNS),
            recoverable_runs: s(RECOVERABLE_RUNS),
            acquire_lease: s(ACQUIRE_LEASE),
            release_lease: s(RELEASE_LEASE),
            renew_leases: s(RENEW_LEASES),
            cancelled_runs: s(CANCELLED_RUNS),
            delete_run: s(DELETE_RUN),
            enqueue: s(ENQUEUE),
            claim_runs: s(CLAIM_RUNS),
            park_run: s(PARK_RUN),
            queue_stats: s(QUEUE_STATS),
            has_work: s(HAS_WORK),
            append_events: s(APPEND_EVENTS),
            read_events: s(READ_EVENTS),
            events_end: s(EVENTS_END),
            acquire_rate: s(&format!("{RATE_PRELUDE}{ACQUIRE_RATE}")),
            settle_rate: s(&format!("{RATE_PRELUDE}{SETTLE_RATE}")),
            block_rate: s(&format!("{RATE_PRELUDE}{BLOCK_RATE}")),
        }
    }
}
