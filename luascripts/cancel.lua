-- cancel.lua: give a pending hold up; its units return to available.
--
-- KEYS: the ten keys of the reservation's bucket (see lib.lua).
-- ARGV[1] reservation id
--
-- Returns one of:
--   {"cancelled", id, status, quantity, user, created_ms, expires_ms, updated_ms}
--       also when it was cancelled before (a repeat changes nothing)
--   {"reservation_not_found"}
--   {"reservation_expired",   <the reservation as above>}
--   {"reservation_confirmed", <the reservation as above>}

-- The units go back to available, and the user may hold them again.
return end_hold(ARGV[1], 'cancelled', 'confirmed', function(r)
  redis.call('HINCRBY', K_ITEM, 'available', int(r.qty))
  if redis.call('HINCRBY', K_USERS, r.user, int(-r.qty)) <= 0 then
    redis.call('HDEL', K_USERS, r.user)
  end
end)
