-- reservation.lua: read one reservation; a pending hold past its expiry reads
-- as expired. Writes nothing.
--
-- KEYS: the ten keys of the reservation's bucket (see lib.lua).
-- ARGV[1] reservation id
--
-- Returns one of:
--   {"ok", id, status, quantity, user, created_ms, expires_ms, updated_ms}
--   {"reservation_not_found"}
local r = load(ARGV[1])
if not r then return { 'reservation_not_found' } end
return reply('ok', r, now_ms())
