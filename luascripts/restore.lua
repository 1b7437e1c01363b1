-- restore.lua: rebuild an item that Redis lost (restart without persistence,
-- failover, FLUSHALL) from the durable record. The service calls it in
-- chunks: "records" calls first, then one "item" call. Until the item hash
-- exists buyers are told the item is recovering, and every call refuses to
-- touch an item that exists, so a rebuild can never overwrite live state, and
-- two instances rebuilding the same item at once write the same thing.
-- Nothing is appended to the outbox: the record already holds all of it.
--
-- KEYS: the ten keys of one bucket (see lib.lua).
-- ARGV[1] "records": then ARGV[2..] are triples (reservation id, record as
--         encode() writes it, idempotency field or "")
-- ARGV[1] "item": then ARGV[2..14] stock, per_user_limit, hold_ms, starts_ms
--         or "", ends_ms or "", name, created_ms, updated_ms, rev, reserved, sold,
--         total, buckets; reserved and sold are the sums the "records" calls
--         returned; stock is this bucket's share, total the item's (equal for
--         an item of one bucket). The store restores the head last: its
--         existence is what tells buyers the item is back.
--
-- Returns one of:
--   {"ok", records_written, pending_units, confirmed_units}   for "records"; a
--       record already present is kept, and the units count the kept records
--   {"restored", <item fields as item_reply>}   for "item"
--   {"exists"}   the item exists (restored by someone else, or never lost); nothing changed
if redis.call('EXISTS', K_ITEM) == 1 then return { 'exists' } end

if ARGV[1] == 'records' then
  -- Read phase: a record already present (an earlier, interrupted rebuild)
  -- is kept, and the sums below count what is kept, so the counters always
  -- match the records.
  local fresh, reserved, sold = {}, 0, 0
  for i = 2, #ARGV, 3 do
    local id, rec, idem = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local kept = redis.call('HGET', K_RES, id)
    local r = decode(id, kept or rec)
    if r.status == 'pending' then reserved = reserved + r.qty end
    if r.status == 'confirmed' then sold = sold + r.qty end
    if not kept then fresh[#fresh + 1] = { r = r, rec = rec, idem = idem } end
  end
  -- Writes only from here on.
  for _, f in ipairs(fresh) do
    local r = f.r
    redis.call('HSET', K_RES, r.id, f.rec)
    if r.status == 'pending' then redis.call('ZADD', K_HOLDS, r.expires, r.id) end
    if r.status == 'pending' or r.status == 'confirmed' then
      redis.call('HINCRBY', K_USERS, r.user, r.qty)
    end
    if f.idem ~= '' then redis.call('HSET', K_IDEM, f.idem, r.id, '#' .. r.id, f.idem) end
    -- Final and in the record already: it leaves again once its retention
    -- has passed since it settled.
    if r.status ~= 'pending' then settled(r, '', r.updated) end
  end
  return { 'ok', #fresh, reserved, sold }
end

local stock, reserved, sold = tonumber(ARGV[2]), tonumber(ARGV[11]), tonumber(ARGV[12])
local total = tonumber(ARGV[13]) -- nil on a bucket other than the head
-- A restock that Redis took but the record never saw can leave the recorded
-- stock below what is committed; the committed units win.
if stock < reserved + sold then
  if total then total = total + reserved + sold - stock end
  stock = reserved + sold
end
if total then redis.call('HSET', K_ITEM, 'total', total) end
-- A bucket of a split item comes back owing a count of the item's units:
-- until it is done, nothing may be given to it (see give.lua).
if tonumber(ARGV[14]) > 1 then redis.call('HSET', K_ITEM, 'recount', 1) end
redis.call('HSET', K_ITEM, 'stock', stock, 'buckets', ARGV[14], 'available', stock - reserved - sold,
           'reserved', reserved, 'sold', sold, 'per_user_limit', ARGV[3], 'hold_ms', ARGV[4],
           'name', ARGV[7], 'created_ms', ARGV[8], 'updated_ms', ARGV[9], 'rev', ARGV[10])
if ARGV[5] ~= '' then redis.call('HSET', K_ITEM, 'starts_ms', ARGV[5]) end
if ARGV[6] ~= '' then redis.call('HSET', K_ITEM, 'ends_ms', ARGV[6]) end
return item_reply('restored', now_ms())
