-- lease.lua: renew a deployment-wide lease (the safety-net scan's, the
-- audit's) only while the caller still holds it. A GET then a PEXPIRE
-- could renew a lease that ran out in between and went to another instance.
--
-- KEYS[1] the lease key (a string: the holder's token, with a TTL)
-- ARGV[1] the caller's token
-- ARGV[2] the new TTL in ms
--
-- Returns one of:
--   {"renewed"}  the caller holds the lease for ARGV[2] ms from now
--   {"other"}    another holds it, or nobody (it ran out): nothing changed
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return { 'other' } end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return { 'renewed' }
