-- bucket.lua: create one of an item's other buckets (not the head) or copy
-- the head's offer to it. A new bucket starts with no stock: units reach it
-- only as transfers (take.lua, give.lua), so the item's total never moves
-- here. Nothing is appended to the outbox: the head's entry carries the offer.
--
-- KEYS: the bucket's eight keys (see lib.lua).
-- ARGV[1] per_user_limit
-- ARGV[2] hold_ms
-- ARGV[3] starts_ms, or "" for no start
-- ARGV[4] ends_ms, or "" for no end
-- ARGV[5] name
-- ARGV[6] buckets, the item's count (>= 2)
--
-- Returns:
--   {"created" | "updated", <item fields as lib.lua's item_reply>}
--   {"buckets_immutable", buckets}  the bucket exists with another count; nothing changed
local now = now_ms()
local cur = redis.call('HGET', K_ITEM, 'buckets')
if cur and cur ~= ARGV[6] then return { 'buckets_immutable', tonumber(cur) } end

-- Writes only from here on.
local code = 'updated'
if not cur then
  code = 'created'
  redis.call('HSET', K_ITEM, 'stock', 0, 'available', 0, 'reserved', 0, 'sold', 0,
             'created_ms', now, 'buckets', ARGV[6])
end
redis.call('HSET', K_ITEM, 'per_user_limit', ARGV[1], 'hold_ms', ARGV[2], 'name', ARGV[5], 'updated_ms', now)
if ARGV[3] == '' then redis.call('HDEL', K_ITEM, 'starts_ms') else redis.call('HSET', K_ITEM, 'starts_ms', ARGV[3]) end
if ARGV[4] == '' then redis.call('HDEL', K_ITEM, 'ends_ms') else redis.call('HSET', K_ITEM, 'ends_ms', ARGV[4]) end
return item_reply(code, now)
