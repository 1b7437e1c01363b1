-- expire.lua: settle the item's due holds (units back to available) and
-- report the item. The sweeper calls it periodically; reads of an item call
-- it too, so a reader never sees units that are held by an expired hold.
--
-- KEYS: the ten keys of one bucket (see lib.lua).
-- ARGV[1] the most due holds to settle in this call (bounds the script's run
--         time), and the most final reservations to drop
-- ARGV[2] retention in ms: a reservation settled (confirmed, cancelled,
--         expired) at least this long ago leaves Redis, with its idempotency
--         key, once the outbox entry of its final state is synced (acknowledged
--         and deleted by the syncer: the record has it, and reads answer from
--         there). Absent or 0: none leaves.
--
-- Returns one of:
--   {"ok", <item fields as lib.lua's item_reply>, expired_count, more_due, transfers_out, recount, dropped,
--    next_ms, outbox_len}
--       more_due is 1 when due holds remain beyond the limit, or the call
--       dropped as many final reservations as the limit lets it, else 0;
--       transfers_out counts this bucket's transfers not yet known to have
--       arrived (the sweeper finishes the ones that stay too long);
--       recount is 1 when the bucket was rebuilt and the count of the item's
--       units is still owed (the sweeper runs it), else 0;
--       dropped counts the final reservations this call removed;
--       next_ms is when the bucket next needs this script (Redis time): its
--       earliest pending hold's expiry, or when its earliest final
--       reservation passes the retention (a second from now when that one
--       waits for the syncer), now when more_due; -1 when nothing is pending
--       (the sweeper's due index keeps it until then, see index.lua);
--       outbox_len counts the changes not yet synced (the dirty index)
--   {"item_not_found"}
local limit, retention = tonumber(ARGV[1]), tonumber(ARGV[2] or '0')
local now = now_ms()

if redis.call('EXISTS', K_ITEM) == 0 then return { 'item_not_found' } end
local due, freed = due_holds(now, limit)
local more = 0
if more_due(due, limit, now) then more = 1 end

-- Final reservations past the retention whose final entry the syncer has
-- acknowledged (it deletes what it acknowledges, so an entry still in the
-- stream is not yet in the record). Only units live in the counters, never
-- in records, so dropping a record changes no count.
local drop = {}
if retention > 0 then
  local members = redis.call('ZRANGEBYSCORE', K_FINAL, '-inf', int(now - retention), 'LIMIT', 0, limit)
  for _, m in ipairs(members) do
    local id, entry = string.match(m, '^([^|]+)|(.*)$')
    if entry == '' or #redis.call('XRANGE', K_OUT, entry, entry) == 0 then
      drop[#drop + 1] = { member = m, id = id, idem = redis.call('HGET', K_IDEM, '#' .. id) }
    end
  end
  -- A hot item settles thousands a second: the sweeper goes round again
  -- while a call drops all it may, so dropping keeps up with settling.
  if #drop == limit then more = 1 end
end

-- Writes only from here on.
expire_holds(due, freed, now)
for _, d in ipairs(drop) do
  redis.call('HDEL', K_RES, d.id)
  if d.idem then redis.call('HDEL', K_IDEM, d.idem, '#' .. d.id) end
  redis.call('ZREM', K_FINAL, d.member)
end
local out = item_reply('ok', now)
out[#out + 1] = #due
out[#out + 1] = more
out[#out + 1] = redis.call('HLEN', K_XOUT)
out[#out + 1] = redis.call('HEXISTS', K_ITEM, 'recount')
out[#out + 1] = #drop

local next_ms = -1
local h = redis.call('ZRANGE', K_HOLDS, 0, 0, 'WITHSCORES')
if h[2] then next_ms = tonumber(h[2]) end
if retention > 0 then
  local f = redis.call('ZRANGE', K_FINAL, 0, 0, 'WITHSCORES')
  if f[2] then
    local at = tonumber(f[2]) + retention
    -- Past the retention and still here: its entry waits for the syncer.
    if at <= now then at = now + 1000 end
    if next_ms < 0 or at < next_ms then next_ms = at end
  end
end
if more == 1 then next_ms = now end
out[#out + 1] = next_ms
out[#out + 1] = redis.call('XLEN', K_OUT)
return out
