-- plain.lua: the plainest hold the benchmark compares the service with
-- (benchmark-only, never used by the service): DECRBY, INCRBY, INCR, HSET,
-- XADD; no expiry, idempotency, buckets, sale window or sync bookkeeping.
--
-- KEYS[1] the item's stock (a string counter)
-- KEYS[2] the user's units held on the item (a string counter)
-- KEYS[3] the item's count of holds taken (a string counter)
-- KEYS[4] the reservation (a hash)
-- KEYS[5] the item's outbox (a stream)
-- ARGV[1] reservation id
-- ARGV[2] user id
-- ARGV[3] quantity, >= 1
-- ARGV[4] per-user limit
--
-- Returns one of:
--   {"created", holds}      holds: the item's holds so far, this one included
--   {"sold_out", available} nothing was taken
--   {"limit_exceeded", held} nothing was taken
local qty = tonumber(ARGV[3])
local left = redis.call('DECRBY', KEYS[1], qty)
if left < 0 then
  redis.call('INCRBY', KEYS[1], qty)
  return { 'sold_out', left + qty }
end
local held = redis.call('INCRBY', KEYS[2], qty)
if held > tonumber(ARGV[4]) then
  redis.call('INCRBY', KEYS[1], qty)
  redis.call('DECRBY', KEYS[2], qty)
  return { 'limit_exceeded', held - qty }
end
local holds = redis.call('INCR', KEYS[3])
redis.call('HSET', KEYS[4], 'user', ARGV[2], 'qty', qty, 'status', 'pending')
redis.call('XADD', KEYS[5], '*', 'id', ARGV[1], 'user', ARGV[2], 'qty', qty)
return { 'created', holds }
