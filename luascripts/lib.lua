-- lib.lua: helpers prepended to every script before it is loaded, so each
-- script stays one self-contained EVAL while the record format and the
-- settling of expired holds are written once.
--
-- Every script receives the same ten keys of one bucket, all sharing its
-- hash tag. An item is one bucket (tag = SKU) unless it was created with
-- buckets > 1: then its stock is spread over that many buckets, the first
-- (the head, tag = SKU) holding the offer and the item's total, the others
-- tagged "SKU~N" so they land on other slots. Each bucket keeps its own
-- available + reserved + sold == stock, and the buckets' stocks plus the
-- units in transit between them add up to the head's total.
--   KEYS[1] item   hash   stock (this bucket's share), available, reserved, sold,
--                         per_user_limit, hold_ms, starts_ms, ends_ms, name,
--                         created_ms, updated_ms, rev, buckets (absent: 1),
--                         total (head only; absent: stock), frozen_until and
--                         recount while the item's units are being counted
--                         (freeze.lua, restore.lua), seed_id and seed_code
--                         (head only: the last seed's, see seed.lua)
--   KEYS[2] holds  zset   reservation id -> expires_ms, pending holds only
--   KEYS[3] users  hash   user id -> units held or bought (pending + confirmed)
--   KEYS[4] res    hash   reservation id -> record (see encode)
--   KEYS[5] idem   hash   "<len(user)>:<user>:<key>" -> reservation id, and
--                         "#<reservation id>" -> that field, so the key can
--                         leave with its reservation (an idempotency field
--                         starts with a digit: the two never meet)
--   KEYS[6] outbox stream  every change, appended by the script that makes it
--                          (see emit_res, emit_item); the syncer copies it to SQL
--   KEYS[7] xout   hash   transfer id -> "to_bucket|units|created_ms": units taken
--                         out of this bucket and not yet known to have arrived
--   KEYS[8] xin    zset   transfer id -> received_ms: transfers already received,
--                         so a transfer delivered twice counts once
--   KEYS[9] xtaken zset   transfer id -> taken_ms: transfers this bucket gave
--                         units to, kept after xout forgets them, so a take
--                         retried after its transfer was finished takes nothing
--   KEYS[10] final zset   "<reservation id>|<outbox entry id>" -> settled_ms:
--                         reservations in a final state, with the entry that
--                         carried that state to the syncer ("" when restored
--                         from the record); expire.lua drops each from Redis
--                         once it has been settled for the retention and its
--                         entry is synced (see expire.lua)
--
-- Scripts read and check everything first and write last: Redis never rolls
-- a script back, so a check that fails after a write would leave half a change.

local K_ITEM, K_HOLDS, K_USERS, K_RES, K_IDEM, K_OUT = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6]
local K_XOUT, K_XIN, K_XTAKEN, K_FINAL = KEYS[7], KEYS[8], KEYS[9], KEYS[10]

-- Redis's clock is the only clock: every instance sees the same expiry.
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

-- Numbers go to redis.call and into strings through int(): Lua and Redis
-- would print them as floats (%.14g, %.17g), and that float formatting was
-- the largest single cost of the reserve script.
local function int(n)
  return string.format('%d', n)
end

-- A record is "status|quantity|created_ms|expires_ms|updated_ms|user".
-- The user id comes last because it is the only free-form field; it cannot
-- contain '|' (the service validates it), so the split is unambiguous.
-- encode_strings takes the numbers already written as strings (int()): the
-- reserve path writes its moment and expiry once per call, and a
-- concatenation costs a fraction of string.format's numbers.
local function encode_strings(status, qty, created, expires, updated, user)
  return status .. '|' .. qty .. '|' .. created .. '|' .. expires .. '|' .. updated .. '|' .. user
end

local function encode(r)
  return encode_strings(r.status, int(r.qty), int(r.created), int(r.expires), int(r.updated), r.user)
end

local function decode(id, s)
  local status, qty, created, expires, updated, user =
    string.match(s, '^(%a+)|(%d+)|(%d+)|(%d+)|(%d+)|(.*)$')
  return { id = id, status = status, qty = tonumber(qty), created = tonumber(created),
           expires = tonumber(expires), updated = tonumber(updated), user = user }
end

local function load(id)
  local s = redis.call('HGET', K_RES, id)
  if not s then return nil end
  return decode(id, s)
end

-- A pending hold whose time has come is expired whether or not anyone has
-- settled it yet; status() is what every reader reports.
local function status(r, now)
  if r.status == 'pending' and now >= r.expires then return 'expired' end
  return r.status
end

local function reply(code, r, now)
  return { code, r.id, status(r, now), r.qty, r.user, r.created, r.expires, r.updated }
end

-- Unset fields come back as "" so a reply never carries Lua false (nil to
-- the client, and a hole that would cut the array short).
-- {code, stock, available, reserved, sold, per_user_limit, hold_ms,
--  starts_ms, ends_ms, name, created_ms, updated_ms, now_ms, buckets, total}
-- stock is this bucket's share; total the item's (the head's total field,
-- else the share: an item of one bucket).
local function item_reply(code, now)
  local f = redis.call('HMGET', K_ITEM, 'stock', 'available', 'reserved', 'sold', 'per_user_limit',
                       'hold_ms', 'starts_ms', 'ends_ms', 'name', 'created_ms', 'updated_ms',
                       'buckets', 'total')
  local out = { code }
  for i = 1, 11 do out[i + 1] = f[i] or '' end
  out[13] = now
  out[14] = f[12] or '1'
  out[15] = f[13] or f[1] or ''
  return out
end

-- How long until the first pending hold after the skip due ones falls due
-- (its units may come back), -1 when none is pending.
local function next_due_in(skip, now)
  local h = redis.call('ZRANGE', K_HOLDS, int(skip), int(skip), 'WITHSCORES')
  if h[2] then return math.max(0, tonumber(h[2]) - now) end
  return -1
end

-- Read phase of settling: the pending holds that are due, decoded, and the
-- units they give back. Nothing is written here.
local function due_holds(now, limit)
  local ids = redis.call('ZRANGEBYSCORE', K_HOLDS, '-inf', int(now), 'LIMIT', 0, limit)
  local due, units, by_user = {}, 0, {}
  for _, id in ipairs(ids) do
    local r = load(id)
    if r and r.status == 'pending' then
      due[#due + 1] = r
      units = units + r.qty
      by_user[r.user] = (by_user[r.user] or 0) + r.qty
    else
      -- A hold without a pending record is stale index; write phase drops it.
      due[#due + 1] = { id = id, stale = true }
    end
  end
  return due, units, by_user
end

-- The outbox. An entry carries the whole new state, not a delta, so the
-- syncer can apply entries more than once and in any order: it keeps a row's
-- state unless the entry's status is further along (pending < any final).
-- "idem" travels only with the creation, the one change that knows it.
-- rec is the reservation's record, as encode writes it (every caller has
-- just written it to the record hash). It returns the entry's id.
local function emit_res(id, rec, idem)
  if idem and idem ~= '' then
    return redis.call('XADD', K_OUT, '*', 'k', 'res', 'id', id, 'rec', rec, 'idem', idem)
  end
  -- Without "idem" rather than with it empty: two values fewer for every
  -- hold to store, read and decode (a reader takes a missing field as "").
  return redis.call('XADD', K_OUT, '*', 'k', 'res', 'id', id, 'rec', rec)
end

-- A reservation reached a final state at now, carried to the syncer by
-- entry: it may leave Redis once the retention has passed and entry is
-- synced (expire.lua).
local function settled(r, entry, now)
  redis.call('ZADD', K_FINAL, int(now), r.id .. '|' .. entry)
end

-- Item entries (the head's only) carry the offer and its revision ("rev" grows by one per
-- seed); the syncer keeps the highest revision it has seen.
local function emit_item()
  local f = redis.call('HMGET', K_ITEM, 'rev', 'total', 'per_user_limit', 'hold_ms', 'starts_ms',
                       'ends_ms', 'name', 'created_ms', 'updated_ms', 'buckets')
  redis.call('XADD', K_OUT, '*', 'k', 'item', 'rev', f[1], 'stock', f[2], 'limit', f[3], 'hold', f[4],
             'starts', f[5] or '', 'ends', f[6] or '', 'name', f[7], 'created', f[8], 'updated', f[9],
             'buckets', f[10] or '1')
end

-- Whether due holds remain beyond the ones due_holds returned (it stopped
-- at limit). A refusal must not rest on them: the caller settles what it
-- has and answers "more_due", and the store calls again.
local function more_due(due, limit, now)
  return #due == limit and redis.call('ZCOUNT', K_HOLDS, '-inf', int(now)) > #due
end

-- Write phase of settling.
local function expire_holds(due, units, now)
  if #due == 0 then return end
  for _, r in ipairs(due) do
    redis.call('ZREM', K_HOLDS, r.id)
    if not r.stale then
      r.status, r.updated = 'expired', now
      local rec = encode(r)
      redis.call('HSET', K_RES, r.id, rec)
      settled(r, emit_res(r.id, rec), now)
      if redis.call('HINCRBY', K_USERS, r.user, int(-r.qty)) <= 0 then
        redis.call('HDEL', K_USERS, r.user)
      end
    end
  end
  if units > 0 then
    redis.call('HINCRBY', K_ITEM, 'available', int(units))
    redis.call('HINCRBY', K_ITEM, 'reserved', int(-units))
  end
end

-- confirm.lua and cancel.lua: end the pending hold id in the status final
-- ("confirmed" or "cancelled"). A hold already in final answers final again
-- (a repeat changes nothing); one in the other final status answers
-- "reservation_<other>"; a due one is settled as expired if nobody has yet,
-- so its units go back at once, and answers "reservation_expired".
-- move(r) writes the counters the two scripts move differently; the rest of
-- the change (reserved, the hold, the record, the outbox) is the same.
local function end_hold(id, final, other, move)
  local now = now_ms()
  local r = load(id)
  -- No item yet: a rebuild (restore.lua) has written the records but not the item.
  if not r or redis.call('EXISTS', K_ITEM) == 0 then return { 'reservation_not_found' } end
  local st = status(r, now)
  if st == final then return reply(final, r, now) end
  if st == other then return reply('reservation_' .. other, r, now) end
  if st == 'expired' then
    if r.status == 'pending' then
      expire_holds({ r }, r.qty, now)
    end
    return reply('reservation_expired', r, now)
  end

  -- Writes only from here on.
  redis.call('HINCRBY', K_ITEM, 'reserved', int(-r.qty))
  move(r)
  redis.call('ZREM', K_HOLDS, id)
  r.status, r.updated = final, now
  local rec = encode(r)
  redis.call('HSET', K_RES, id, rec)
  settled(r, emit_res(r.id, rec), now)
  return reply(final, r, now)
end
