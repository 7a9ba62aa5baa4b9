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

local function expire(k)
  if TTL == '0' then redis.call('PERSIST', k) else redis.call('PEXPIRE', k, TTL) end
end

local IDX_EXPIRY = P .. ':index:expiry'
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
  local f = redis.call('HMGET', rk, 'wf', 'status', 'touched')
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
  if TTL ~= '0' then
    now = now or server_ms()
    local stamp = string.format('%.0f', now)
    redis.call('ZADD', IDX_EXPIRY, stamp, enc(f[1]) .. id)
    expire(IDX_EXPIRY)
    redis.call('HSET', rk, 'touched', stamp)
  end
end

-- Removes from every index up to 8 runs whose keys expired (their last write is older than
-- the TTL and their hash is gone), so that indexes do not grow with runs long gone.
local function sweep()
  if TTL == '0' then return end
  local horizon = string.format('%.0f', server_ms() - tonumber(TTL))
  local old = redis.call('ZRANGEBYSCORE', IDX_EXPIRY, '-inf', horizon, 'LIMIT', 0, 8)
  for _, m in ipairs(old) do
    local sep = string.find(m, ':', 1, true)
    local n = tonumber(string.sub(m, 1, sep - 1))
    local wf = string.sub(m, sep + 1, sep + n)
    local id = string.sub(m, sep + n + 1)
    local cur = redis.call('HGET', key('run', id), 'wf')
    if cur == wf then
      -- Still there (a store with a longer TTL wrote it): look again later.
      redis.call('ZADD', IDX_EXPIRY, server_ms(), m)
    else
      redis.call('ZREM', idx_wf(wf), id)
      if not cur then
        redis.call('ZREM', IDX_ALL, id)
        redis.call('ZREM', IDX_OPEN, id)
        for _, s in ipairs({'running', 'waiting', 'completed', 'failed', 'cancelled'}) do
          redis.call('ZREM', idx_status(s), id)
        end
      end
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
  if cur[1] == wf and (is_open(cur[2]) or cur[2] == 'failed') then
    redis.call('HSET', rk, 'status', 'running', 'updated', now)
    redis.call('HDEL', rk, 'error', 'waiting_on')
    index_status(id, cur[3], cur[2], 'running')
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
index_status(id, cur[2], cur[1], status)
touch(id, true)
return 1
"#;

/// ARGV[3..]: run id, signal name, `<delivered_at>:<payload>`. Returns 1 when delivered, 0 when
/// a signal of that name was already there. A delivery is announced on the run's channel.
const DELIVER_SIGNAL: &str = r#"
local id, name = ARGV[3], ARGV[4]
local delivered = redis.call('HSETNX', key('signals', id), name, ARGV[5])
touch(id, true)
if delivered == 1 then redis.call('PUBLISH', key('wake', id), name) end
return delivered
"#;

/// ARGV[3]: run id. Deletes the run, its steps, signals and lease, and its index entries.
/// Returns 1 if the run record existed.
const DELETE_RUN: &str = r#"
local id = ARGV[3]
local rk = key('run', id)
local f = redis.call('HMGET', rk, 'wf', 'status')
redis.call('DEL', rk, key('steps', id), key('signals', id), key('lease', id))
if not f[1] then return 0 end
redis.call('ZREM', IDX_ALL, id)
redis.call('ZREM', IDX_OPEN, id)
redis.call('ZREM', idx_wf(f[1]), id)
redis.call('ZREM', idx_status(f[2]), id)
redis.call('ZREM', IDX_EXPIRY, enc(f[1]) .. id)
return 1
"#;

/// ARGV[3..]: status (`''`: any), has workflow (`1`/`0`), workflow, limit (`-1`: none), has
/// run id prefix (`1`/`0`), prefix. Returns matching run hashes (flat), newest first. Index
/// entries of runs that expired are dropped on the way. A prefix is compared with each id of the
/// index walked before its run is read, so a family of runs costs one call, but a walk of the
/// index (the workflow's when one is given) on the server.
const LIST_RUNS: &str = r#"
local status, has_wf, wf, limit = ARGV[3], ARGV[4] == '1', ARGV[5], tonumber(ARGV[6])
local has_pfx, pfx = ARGV[7] == '1', ARGV[8]
local out = {}
if limit == 0 then return out end
local idx = IDX_ALL
if has_wf then idx = idx_wf(wf) elseif status ~= '' then idx = idx_status(status) end
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
      elseif (status == '' or field(rec, 'status') == status) and (not has_wf or field(rec, 'wf') == wf) then
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
/// not exist, oldest first.
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
    elseif is_open(field(rec, 'status')) and redis.call('EXISTS', key('lease', id)) == 0 then
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
        }
    }
}
