-- freeze.lua: stop units leaving this bucket for a while (take.lua refuses
-- while frozen) and report what an exact count of the item's units needs:
-- the store freezes every bucket, finishes the transfers in flight, then
-- reads each bucket again; with nothing in flight and nothing able to start,
-- the buckets' stocks add up to what the item really holds (see
-- redisstore/reconcile.go).
--
-- KEYS: the bucket's eight keys (see lib.lua).
-- ARGV[1] freeze for this many ms from now; 0 only reports (and unfreezes
--         nothing), -1 unfreezes, -2 unfreezes and ends the count that a
--         rebuilt bucket owes (restore.lua's "recount", which give.lua obeys)
--
-- Returns one of:
--   {"ok", stock, transfers_out, frozen_for_ms, total}
--       frozen_for_ms: how long the freeze still holds (0: not frozen);
--       total: the item's total on the head, "" on the other buckets
--   {"item_not_found"}
local d = tonumber(ARGV[1])
local now = now_ms()

local f = redis.call('HMGET', K_ITEM, 'stock', 'frozen_until', 'total')
if not f[1] then return { 'item_not_found' } end
local until_ms = tonumber(f[2]) or 0

-- Writes only from here on.
if d > 0 then
  until_ms = math.max(until_ms, now + d)
  redis.call('HSET', K_ITEM, 'frozen_until', int(until_ms))
elseif d < 0 then
  until_ms = 0
  redis.call('HDEL', K_ITEM, 'frozen_until')
  if d == -2 then redis.call('HDEL', K_ITEM, 'recount') end
end
return { 'ok', tonumber(f[1]), redis.call('HLEN', K_XOUT), math.max(0, until_ms - now), f[3] or '' }
