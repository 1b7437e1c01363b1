-- cancel.lua: give a pending hold up; its units return to available.
--
-- KEYS: the nine keys of the reservation's bucket (see lib.lua).
-- ARGV[1] reservation id
--
-- Returns one of:
--   {"cancelled", id, status, quantity, user, created_ms, expires_ms, updated_ms}
--       also when it was cancelled before (a repeat changes nothing)
--   {"reservation_not_found"}
--   {"reservation_expired",   <the reservation as above>}
--   {"reservation_confirmed", <the reservation as above>}
local id = ARGV[1]
local now = now_ms()

local r = load(id)
-- No item yet: a rebuild (restore.lua) has written the records but not the item.
if not r or redis.call('EXISTS', K_ITEM) == 0 then return { 'reservation_not_found' } end
local st = status(r, now)
if st == 'cancelled' then return reply('cancelled', r, now) end
if st == 'confirmed' then return reply('reservation_confirmed', r, now) end
if st == 'expired' then
  if r.status == 'pending' then
    expire_holds({ r }, r.qty, now)
  end
  return reply('reservation_expired', r, now)
end

-- Writes only from here on.
redis.call('HINCRBY', K_ITEM, 'reserved', int(-r.qty))
redis.call('HINCRBY', K_ITEM, 'available', int(r.qty))
if redis.call('HINCRBY', K_USERS, r.user, int(-r.qty)) <= 0 then
  redis.call('HDEL', K_USERS, r.user)
end
redis.call('ZREM', K_HOLDS, id)
r.status, r.updated = 'cancelled', now
local rec = encode(r)
redis.call('HSET', K_RES, id, rec)
emit_res(r, nil, rec)
return reply('cancelled', r, now)
