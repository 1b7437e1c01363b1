-- confirm.lua: turn a pending hold into a sale (payment succeeded). Final.
--
-- KEYS: the nine keys of the reservation's bucket (see lib.lua).
-- ARGV[1] reservation id
--
-- Returns one of:
--   {"confirmed", id, status, quantity, user, created_ms, expires_ms, updated_ms}
--       also when it was confirmed before (a repeat changes nothing)
--   {"reservation_not_found"}
--   {"reservation_expired",   <the reservation as above>}  its expires_at has passed
--   {"reservation_cancelled", <the reservation as above>}
local id = ARGV[1]
local now = now_ms()

local r = load(id)
-- No item yet: a rebuild (restore.lua) has written the records but not the item.
if not r or redis.call('EXISTS', K_ITEM) == 0 then return { 'reservation_not_found' } end
local st = status(r, now)
if st == 'confirmed' then return reply('confirmed', r, now) end
if st == 'cancelled' then return reply('reservation_cancelled', r, now) end
if st == 'expired' then
  if r.status == 'pending' then
    -- Due but not swept yet: settle it now so its units go back at once.
    expire_holds({ r }, r.qty, now)
  end
  return reply('reservation_expired', r, now)
end

-- Writes only from here on. The units move from reserved to sold; the user's
-- allowance keeps counting them.
redis.call('HINCRBY', K_ITEM, 'reserved', int(-r.qty))
redis.call('HINCRBY', K_ITEM, 'sold', int(r.qty))
redis.call('ZREM', K_HOLDS, id)
r.status, r.updated = 'confirmed', now
local rec = encode(r)
redis.call('HSET', K_RES, id, rec)
emit_res(r, nil, rec)
return reply('confirmed', r, now)
