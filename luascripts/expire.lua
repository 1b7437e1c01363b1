-- expire.lua: settle the item's due holds (units back to available) and
-- report the item. The sweeper calls it periodically; reads of an item call
-- it too, so a reader never sees units that are held by an expired hold.
--
-- KEYS: the item's six keys (see lib.lua).
-- ARGV[1] the most due holds to settle in this call (bounds the script's run time)
--
-- Returns one of:
--   {"ok", stock, available, reserved, sold, per_user_limit, hold_ms, starts_ms,
--    ends_ms, name, created_ms, updated_ms, now_ms, expired_count, more_due}
--       more_due is 1 when due holds remain beyond the limit, else 0
--   {"item_not_found"}
local limit = tonumber(ARGV[1])
local now = now_ms()

if redis.call('EXISTS', K_ITEM) == 0 then return { 'item_not_found' } end
local due, freed = due_holds(now, limit)
local more = 0
if more_due(due, limit, now) then more = 1 end

-- Writes only from here on.
expire_holds(due, freed, now)
local out = item_reply('ok', now)
out[#out + 1] = #due
out[#out + 1] = more
return out
