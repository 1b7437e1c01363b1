-- ack.lua: the syncer's end of an outbox entry, once its change is committed
-- to SQL (or parked in the dead-letter stream): acknowledge it and delete it,
-- so the outbox holds exactly the entries not yet synced and trimming can
-- never drop one that is not acknowledged.
--
-- KEYS[1] the item's outbox stream
-- KEYS[2] the item's tries hash: entry id -> failed attempts
-- KEYS[3] the item's dead-letter stream
-- ARGV[1] consumer group
-- ARGV[2] "ack" or "dead"
-- ARGV[3..] entry ids; with "dead", (entry id, reason) pairs
--
-- Returns {"ok", entries_acknowledged}
local group, mode = ARGV[1], ARGV[2]
local ids, parked = {}, {}
if mode == 'dead' then
  for i = 3, #ARGV, 2 do
    local id = ARGV[i]
    local fields = { 'entry', id, 'reason', ARGV[i + 1] }
    local e = redis.call('XRANGE', KEYS[1], id, id)
    if e[1] then
      for _, v in ipairs(e[1][2]) do fields[#fields + 1] = v end
    end
    ids[#ids + 1] = id
    parked[#parked + 1] = fields
  end
else
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end
if #ids == 0 then return { 'ok', 0 } end
-- Writes only from here on; parked copies first, so none is lost on the way.
for _, fields in ipairs(parked) do redis.call('XADD', KEYS[3], '*', unpack(fields)) end
local n = redis.call('XACK', KEYS[1], group, unpack(ids))
redis.call('XDEL', KEYS[1], unpack(ids))
redis.call('HDEL', KEYS[2], unpack(ids))
return { 'ok', n }
