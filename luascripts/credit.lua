-- credit.lua: add units to the head bucket that an exact count found
-- unaccounted for (a bucket Redis lost took its available units with it; see
-- redisstore/reconcile.go), provided the head is as the count read it: a
-- restock or another instance's credit in between makes the count stale.
--
-- KEYS: the head bucket's ten keys (see lib.lua).
-- ARGV[1] the head's stock as the count read it
-- ARGV[2] the item's total as the count read it
-- ARGV[3] units to add, >= 1
--
-- Returns one of:
--   {"credited"}
--   {"changed"}  the head moved since the count; nothing changed, count again
--   {"item_not_found"}
local f = redis.call('HMGET', K_ITEM, 'stock', 'total')
if not f[1] then return { 'item_not_found' } end
if f[1] ~= ARGV[1] or (f[2] or f[1]) ~= ARGV[2] then return { 'changed' } end

-- Writes only from here on.
redis.call('HINCRBY', K_ITEM, 'stock', ARGV[3])
redis.call('HINCRBY', K_ITEM, 'available', ARGV[3])
return { 'credited' }
