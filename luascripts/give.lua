-- give.lua: the second half of a transfer (see take.lua): add the units to
-- this bucket, once however often the transfer is delivered.
--
-- KEYS: the receiving bucket's ten keys (see lib.lua).
-- ARGV[1] transfer id
-- ARGV[2] units, >= 1
--
-- Returns one of:
--   {"given"}  the units were added
--   {"duplicate"}  this transfer arrived before; nothing changed
--   {"item_not_found"}  the bucket is gone (Redis lost it); nothing changed, the
--       giving bucket keeps its record
--   {"recount"}  the bucket was rebuilt and the count of the item's units is
--       owed (restore.lua): a transfer that arrived before the loss would
--       arrive twice, its receipt lost with the bucket; nothing changed, the
--       count voids the transfer (redisstore/reconcile.go)
local id, n = ARGV[1], tonumber(ARGV[2])
-- A delivery is repeated only while the giver's record exists, which is
-- seconds; an hour of receipts is far more than any repeat can need.
local keep_ms = 3600 * 1000
local now = now_ms()

local f = redis.call('HMGET', K_ITEM, 'stock', 'recount')
if not f[1] then return { 'item_not_found' } end
if f[2] then return { 'recount' } end
if redis.call('ZSCORE', K_XIN, id) then return { 'duplicate' } end

-- Writes only from here on.
redis.call('ZREMRANGEBYSCORE', K_XIN, '-inf', int(now - keep_ms))
redis.call('ZADD', K_XIN, int(now), id)
redis.call('HINCRBY', K_ITEM, 'available', int(n))
redis.call('HINCRBY', K_ITEM, 'stock', int(n))
return { 'given' }
