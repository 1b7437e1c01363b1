-- freeze.lua: stop units leaving this bucket for a while (take.lua refuses
-- while frozen) and report what an exact count of the item's units needs:
-- the store freezes every bucket, voids the transfers in flight, then reads
-- each bucket again; with nothing in flight and nothing able to start, the
-- buckets' stocks add up to what the item really holds (see
-- redisstore/reconcile.go). A freeze belongs to one count: another count
-- cannot take it over or lift it, so two instances counting at once take
-- turns instead of cutting each other's freeze short.
--
-- KEYS: the bucket's ten keys (see lib.lua).
-- ARGV[1] freeze for this many ms from now; 0 only reports (and unfreezes
--         nothing), -1 unfreezes, -2 unfreezes and ends the count that a
--         rebuilt bucket owes (restore.lua's "recount", which give.lua obeys)
-- ARGV[2] the count's token: freezing and unfreezing act only on a freeze
--         of this token (or none, or one that ran out)
--
-- Returns one of:
--   {"ok", stock, transfers_out, frozen_for_ms, total}
--       frozen_for_ms: how long this count's freeze still holds (0: not
--       frozen by it); total: the item's total on the head, "" on the others
--   {"busy", frozen_for_ms}  another count holds the freeze; nothing changed
--   {"item_not_found"}
local d, token = tonumber(ARGV[1]), ARGV[2]
local now = now_ms()

local f = redis.call('HMGET', K_ITEM, 'stock', 'frozen_until', 'frozen_by', 'total')
if not f[1] then return { 'item_not_found' } end
local until_ms = tonumber(f[2]) or 0
local ours = f[3] == token or now >= until_ms
if d > 0 and not ours then return { 'busy', until_ms - now } end

-- Writes only from here on.
if d > 0 then
  until_ms = now + d
  redis.call('HSET', K_ITEM, 'frozen_until', int(until_ms), 'frozen_by', token)
elseif d < 0 and ours then
  until_ms = 0
  redis.call('HDEL', K_ITEM, 'frozen_until', 'frozen_by')
  if d == -2 then redis.call('HDEL', K_ITEM, 'recount') end
end
if not ours then until_ms = 0 end
return { 'ok', tonumber(f[1]), redis.call('HLEN', K_XOUT), math.max(0, until_ms - now), f[4] or '' }
