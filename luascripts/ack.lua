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
--   {"ok", entries_acknowledged}   for "ack"
--   {"counted", tries}             for "try", below the bound; a resend of
--                                  the attempt last counted counts nothing
--                                  and answers the count as it stands
--   {"dead"}                       for "try": parked, acknowledged, deleted
--   {"gone"}                       for "try": the entry was acknowledged
--                                  meanwhile (or parked, by the call a
--                                  resend repeats)
local group, mode = ARGV[1], ARGV[2]

if mode == 'ack' then
  local ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
  if #ids == 0 then return { 'ok', 0 } end
  local n = redis.call('XACK', KEYS[1], group, unpack(ids))
  redis.call('XDEL', KEYS[1], unpack(ids))
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
