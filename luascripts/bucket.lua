-- bucket.lua: create one of an item's other buckets (not the head) or copy
-- the head's offer to it. A new bucket starts with no stock: units reach it
-- only as transfers (take.lua, give.lua), so the item's total never moves
-- here. Nothing is appended to the outbox: the head's entry carries the offer.
--
-- A seed creates buckets only for an item it is creating. A bucket of an
-- existing item that is missing was lost by Redis with its holds, and
-- creating it afresh would make them vanish and the count credit its units
-- to the head a second time: rebuilding it is recovery's (restore.lua).
--
-- KEYS: the bucket's ten keys (see lib.lua).
-- ARGV[1] per_user_limit
-- ARGV[2] hold_ms
-- ARGV[3] starts_ms, or "" for no start
-- ARGV[4] ends_ms, or "" for no end
-- ARGV[5] name
-- ARGV[6] buckets, the item's count (>= 2)
-- ARGV[7] "create": the item is being created (its head does not exist yet):
--         create the bucket if missing; "update": the item exists: the
--         bucket must too
--
-- Returns one of:
--   {"created" | "updated", <item fields as lib.lua's item_reply>}
--   {"buckets_immutable", buckets}  the bucket exists with another count; nothing changed
--   {"lost"}  "update", and the bucket is missing; nothing changed
--   {"occupied"}  "create", and the bucket exists holding units or
--       transfers: it belongs to an item whose head is missing (lost), or
--       to one another seed created meanwhile; nothing changed
local create = ARGV[7] == 'create'
local now = now_ms()
local f = redis.call('HMGET', K_ITEM, 'buckets', 'stock', 'reserved', 'sold')
local cur = f[1]
if cur and cur ~= ARGV[6] then return { 'buckets_immutable', tonumber(cur) } end
if not cur and not create then return { 'lost' } end
if cur and create and (f[2] ~= '0' or f[3] ~= '0' or f[4] ~= '0' or redis.call('HLEN', K_XOUT) > 0) then
  return { 'occupied' }
end

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
