-- ack.lua: the syncer's end of an outbox entry: acknowledge and delete it
-- once its change is committed to SQL, or count a failed attempt and, at the
-- bound, park it in the dead-letter stream. The outbox then holds exactly
-- the entries not yet synced, and trimming can never drop one that is not
-- acknowledged.
--
-- KEYS[1] the item's outbox stream
-- KEYS[2] the item's tries hash: entry id -> "tries|token", the failed
--         attempts and the token of the last one counted (a bare "tries",
--         written before tokens, reads as no token)
-- KEYS[3] the item's dead-letter stream
-- ARGV[1] consumer group
-- ARGV[2] mode:
--   "ack":  ARGV[3..] entry ids
--   "try":  ARGV[3] entry id, ARGV[4] reason, ARGV[5] max tries,
--           ARGV[6] attempt token: unique per failed attempt, the same when
--           the client resends the call (go-redis does after a read
--           timeout, though the first call may have run)
--
-- Returns one of:
--   {"ok", entries_acknowledged}   for "ack"; an error, before any
--                                  write, when an argument is not an entry id
--   {"counted", tries}             for "try", below the bound; a resend of
--                                  the attempt last counted counts nothing
--                                  and answers the count as it stands
--   {"dead"}                       for "try": parked, acknowledged, deleted
--   {"gone"}                       for "try": the entry was acknowledged
--                                  meanwhile (or parked, by the call a
--                                  resend repeats)
local group, mode = ARGV[1], ARGV[2]

-- Whether entry id a comes before b. Redis writes ids "ms-seq" in digits
-- without leading zeros, so fewer digits are smaller and between equal
-- widths the bytes decide: no numbers are made (tonumber per id was most of
-- this script's cost).
local function before(a, b)
  local da, db = string.find(a, '-', 1, true), string.find(b, '-', 1, true)
  if not da or not db then return false end -- "ms" alone: not as Redis writes ids, deleted by name
  if da ~= db then return da < db end
  if #a == #b then return a < b end
  local ma, mb = string.sub(a, 1, da), string.sub(b, 1, db)
  if ma ~= mb then return ma < mb end
  return #a < #b
end

-- The id right after id ("ms-seq"), nil when it is not one or has no
-- exact successor in a Lua number.
local function after(id)
  local ms, seq = string.match(id, '^(%d+)-(%d+)$')
  if not ms or tonumber(seq) + 1 >= 2 ^ 53 then return nil end
  return ms .. '-' .. string.format('%d', tonumber(seq) + 1)
end

-- The lowest id the stream must keep: below it every entry was delivered
-- to the group and is no longer pending, so it was acknowledged. That is
-- the oldest entry still pending, else the one after the group's last
-- delivered. nil when the stream or its group is missing.
local function keep_from(group)
  local groups = redis.pcall('XINFO', 'GROUPS', KEYS[1])
  if groups.err then return nil end
  local last
  for _, g in ipairs(groups) do
    local f = {}
    for i = 1, #g, 2 do f[g[i]] = g[i + 1] end
    if f.name == group then last = f['last-delivered-id'] end
  end
  if not last then return nil end
  local oldest = redis.call('XPENDING', KEYS[1], group, '-', '+', 1)[1]
  if oldest then return oldest[1] end
  return after(last)
end

if mode == 'ack' then
  local ids = {}
  for i = 3, #ARGV do
    local id = ARGV[i]
    if not (string.find(id, '^%d+%-%d+$') or string.find(id, '^%d+$')) then
      return redis.error_reply('ack.lua: not an entry id: ' .. id)
    end
    ids[#ids + 1] = id
  end
  if #ids == 0 then return { 'ok', 0 } end
  local n = redis.call('XACK', KEYS[1], group, unpack(ids))
  -- Removing the acknowledged entries. XDEL finds each one by walking its
  -- node of the stream from the start, which was most of the syncer's cost
  -- to Redis; XTRIM MINID drops whole nodes from the head, and is safe below
  -- keep_from: the group reads in order (">") and is the stream's only one,
  -- and its consumers leave only without pending entries (prune.lua). What
  -- was acknowledged at or above that floor, out of order, is deleted one by
  -- one.
  local floor = keep_from(group)
  local above = ids
  if floor then
    redis.call('XTRIM', KEYS[1], 'MINID', floor)
    above = {}
    for _, id in ipairs(ids) do
      if not before(id, floor) then above[#above + 1] = id end
    end
  end
  if #above > 0 then redis.call('XDEL', KEYS[1], unpack(above)) end
  redis.call('HDEL', KEYS[2], unpack(ids))
  return { 'ok', n }
end

local id, reason, max_tries, token = ARGV[3], ARGV[4], tonumber(ARGV[5]), ARGV[6] or ''
local e = redis.call('XRANGE', KEYS[1], id, id)
local tries, last = 0, nil
local stored = redis.call('HGET', KEYS[2], id)
if stored then
  local n, t = string.match(stored, '^(%d+)|?(.*)$')
  tries, last = tonumber(n) or 0, t
end
-- Writes only from here on.
if not e[1] then
  -- Another syncer synced it between our read and this call.
  redis.call('HDEL', KEYS[2], id)
  return { 'gone' }
end
if token ~= '' and token == last then
  -- This attempt was counted by the call this one resends.
  return { 'counted', tries }
end
tries = tries + 1
if tries < max_tries then
  redis.call('HSET', KEYS[2], id, tries .. '|' .. token)
  return { 'counted', tries }
end
local fields = { 'entry', id, 'reason', reason }
for _, v in ipairs(e[1][2]) do fields[#fields + 1] = v end
-- The parked copy first, so the entry is never lost on the way.
redis.call('XADD', KEYS[3], '*', unpack(fields))
redis.call('XACK', KEYS[1], group, id)
redis.call('XDEL', KEYS[1], id)
redis.call('HDEL', KEYS[2], id)
return { 'dead' }
