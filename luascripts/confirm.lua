-- confirm.lua: turn a pending hold into a sale (payment succeeded). Final.
--
-- KEYS: the ten keys of the reservation's bucket (see lib.lua).
-- ARGV[1] reservation id
--
-- Returns one of:
--   {"confirmed", id, status, quantity, user, created_ms, expires_ms, updated_ms}
--       also when it was confirmed before (a repeat changes nothing)
--   {"reservation_not_found"}
--   {"reservation_expired",   <the reservation as above>}  its expires_at has passed
--   {"reservation_cancelled", <the reservation as above>}

-- The units move from reserved to sold; the user's allowance keeps counting them.
return end_hold(ARGV[1], 'confirmed', 'cancelled', function(r)
  redis.call('HINCRBY', K_ITEM, 'sold', int(r.qty))
end)
