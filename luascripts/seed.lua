-- seed.lua: create an item or change its offer. stock is the total offered;
-- on update available moves by the difference, so buyers racing the admin
-- never see units appear or vanish twice. On an item split into buckets this
-- runs on the head: the difference lands in the head's share (the store
-- gathers units into the head first when the total shrinks), and the store
-- then copies the offer to the other buckets (bucket.lua).
--
-- KEYS: the head bucket's ten keys (see lib.lua).
-- ARGV[1] stock, >= 0
-- ARGV[2] per_user_limit, >= 1
-- ARGV[3] hold_ms, >= 1
-- ARGV[4] starts_ms, or "" for no start
-- ARGV[5] ends_ms, or "" for no end
-- ARGV[6] name
-- ARGV[7] how many due holds to settle first (expired holds are not committed)
-- ARGV[8] "1" when the durable record (SQL) already holds the item: then a
--         missing item was lost by Redis, and creating it afresh would sell its
--         held and sold units again; "0" otherwise
-- ARGV[9] buckets: 1..64 sets the count on creation and must equal it on an
--         update; 0 means 1 on creation, unchanged on an update
-- ARGV[10] seed id, unique per seed request: a retry of the same call (go-redis
--         resends a script after a read timeout) answers what the first run
--         did ("created" stays "created") and changes nothing more
--
-- Returns one of:
--   {"created" | "updated", <item fields as lib.lua's item_reply>}
--       (for a retry of a seed that ran: its answer, with the item as it is now)
--   {"stock_below_committed", reserved, sold, buckets}  the head's share would
--       fall below its reserved + sold (the head's counts); nothing changed
--   {"buckets_immutable", buckets}  ARGV[9] differs from the item's count; nothing changed
--   {"more_due"}  as in reserve.lua: more due holds than ARGV[7] and a refusal
--       without them; the ones read were settled, nothing else changed: call again
--   {"lost"}  ARGV[8] is "1" but the item is missing; nothing changed (recovery rebuilds it)
local stock, limit, hold = tonumber(ARGV[1]), ARGV[2], ARGV[3]
local starts, ends, name = ARGV[4], ARGV[5], ARGV[6]
local settle_limit = tonumber(ARGV[7])
local recorded = ARGV[8] == '1'
local want_buckets = tonumber(ARGV[9])
local seed_id = ARGV[10]
local now = now_ms()

local f = redis.call('HMGET', K_ITEM, 'reserved', 'sold', 'stock', 'total', 'buckets', 'seed_id', 'seed_code')
local exists = f[1] ~= false
if not exists and recorded then return { 'lost' } end
if exists and f[6] == seed_id then return item_reply(f[7], now) end
local buckets = tonumber(f[5]) or 1
if exists and want_buckets ~= 0 and want_buckets ~= buckets then return { 'buckets_immutable', buckets } end
if not exists then buckets = math.max(want_buckets, 1) end
local due, freed = due_holds(now, settle_limit)
local reserved = (tonumber(f[1]) or 0) - freed
local sold = tonumber(f[2]) or 0
-- The head's share moves by the change of the total; the other buckets'
-- shares are theirs and untouched.
local share = stock
if exists then share = tonumber(f[3]) + stock - (tonumber(f[4]) or tonumber(f[3])) end
if share < reserved + sold then
  if more_due(due, settle_limit, now) then
    expire_holds(due, freed, now)
    return { 'more_due' }
  end
  return { 'stock_below_committed', reserved, sold, buckets }
end

-- Writes only from here on.
expire_holds(due, freed, now)
local code = 'updated'
if not exists then
  code = 'created'
  redis.call('HSET', K_ITEM, 'reserved', 0, 'sold', 0, 'created_ms', now, 'buckets', buckets)
end
redis.call('HSET', K_ITEM, 'stock', share, 'total', stock, 'available', share - reserved - sold,
           'per_user_limit', limit, 'hold_ms', hold, 'name', name, 'updated_ms', now,
           'seed_id', seed_id, 'seed_code', code)
if starts == '' then redis.call('HDEL', K_ITEM, 'starts_ms') else redis.call('HSET', K_ITEM, 'starts_ms', starts) end
if ends == '' then redis.call('HDEL', K_ITEM, 'ends_ms') else redis.call('HSET', K_ITEM, 'ends_ms', ends) end
redis.call('HINCRBY', K_ITEM, 'rev', 1)
emit_item()
return item_reply(code, now)
