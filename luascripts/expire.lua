-- expire.lua: settle the item's due holds (units back to available) and
-- report the item. The sweeper calls it periodically; reads of an item call
-- it too, so a reader never sees units that are held by an expired hold.
--
-- KEYS: the nine keys of one bucket (see lib.lua).
-- ARGV[1] the most due holds to settle in this call (bounds the script's run time)
--
-- Returns one of:
--   {"ok", <item fields as lib.lua's item_reply>, expired_count, more_due, transfers_out, recount}
--       more_due is 1 when due holds remain beyond the limit, else 0;
--       transfers_out counts this bucket's transfers not yet known to have
--       arrived (the sweeper finishes the ones that stay too long);
--       recount is 1 when the bucket was rebuilt and the count of the item's
--       units is still owed (the sweeper runs it), else 0
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
out[#out + 1] = redis.call('HLEN', K_XOUT)
out[#out + 1] = redis.call('HEXISTS', K_ITEM, 'recount')
return out
