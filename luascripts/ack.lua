-- ack.lua: the syncer's end of an outbox entry: acknowledge and delete it
-- once its change is committed to SQL, or count a failed attempt and, at the
-- bound, park it in the dead-letter stream. The outbox then holds exactly
-- the entries not yet synced, and trimming can never drop one that is not
-- acknowledged.
--
-- KEYS[1] the item's outbox stream
-- KEYS[2] the item's tries hash: entry id -> failed attempts
-- KEYS[3] the item's dead-letter stream
-- ARGV[1] consumer group
-- ARGV[2] mode:
--   "ack":  ARGV[3..] entry ids
--   "try":  ARGV[3] entry id, ARGV[4] reason, ARGV[5] max tries
--
-- Returns one of:
--   {"ok", entries_acknowledged}   for "ack"
--   {"counted", tries}             for "try", below the bound
--   {"dead"}                       for "try": parked, acknowledged, deleted
--   {"gone"}                       for "try": the entry was acknowledged meanwhile
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

local id, reason, max_tries = ARGV[3], ARGV[4], tonumber(ARGV[5])
local e = redis.call('XRANGE', KEYS[1], id, id)
local tries = tonumber(redis.call('HGET', KEYS[2], id) or '0') + 1
-- Writes only from here on.
if not e[1] then
  -- Another syncer synced it between our read and this call.
  redis.call('HDEL', KEYS[2], id)
  return { 'gone' }
end
if tries < max_tries then
  redis.call('HSET', KEYS[2], id, tries)
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
