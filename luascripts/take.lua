-- take.lua: the first half of moving units between two buckets of one item:
-- take available units out of this bucket and record the transfer, until
-- give.lua has added them to the other bucket and the store deletes the record.
-- A record that stays (the mover died) is finished by the sweeper, so units
-- in transit are never lost, only unsellable for that long.
--
-- KEYS: the giving bucket's ten keys (see lib.lua).
-- ARGV[1] transfer id, unique: a retry with the same id takes nothing more,
--         for as long as it can be retried (its receipt in xtaken is kept an
--         hour, as give.lua keeps its own), also after the transfer finished
-- ARGV[2] the receiving bucket's name
-- ARGV[3] want: units wanted, >= 1
-- ARGV[4] "1": take at least half of what is available while that is more
--         than two units per bucket (a bucket that ran dry pulls enough not
--         to come back at once), "0": at most want
-- ARGV[5] how many due holds to settle first
-- ARGV[6] the item's bucket count as the caller knows it
--
-- Returns one of:
--   {"taken", units}  units > 0 left this bucket (for a retry while the transfer
--       is in flight: the units taken the first time)
--   {"finished"}  a retry of a transfer that was taken and has since been
--       delivered or voided (its record is gone, its receipt stays); nothing
--       was taken now, and there is nothing left to deliver
--   {"empty", next_due_in_ms, recount}  nothing available; next_due_in_ms as in
--       reserve.lua; recount is 1 while this bucket, rebuilt after a loss,
--       waits for the count of its item's units (restore.lua), else 0
--   {"more_due"}  as in reserve.lua: call again
--   {"layout", buckets}  as in reserve.lua
--   {"frozen"}  an exact count of the item's units is under way (freeze.lua);
--       nothing was taken
--   {"item_not_found"}
local id, to, want, half = ARGV[1], ARGV[2], tonumber(ARGV[3]), ARGV[4] == '1'
local settle_limit = tonumber(ARGV[5])
local now = now_ms()

-- A take that was retried (go-redis resends a script after a read timeout)
-- keeps the units of its first run: a receipt outlives the record so that
-- a retry after the sweeper finished the transfer cannot take again.
local keep_ms = 3600 * 1000

local f = redis.call('HMGET', K_ITEM, 'available', 'buckets', 'frozen_until', 'recount')
if not f[1] then return { 'item_not_found' } end
local buckets = tonumber(f[2]) or 1
if buckets ~= tonumber(ARGV[6]) then return { 'layout', buckets } end
local prev = redis.call('HGET', K_XOUT, id)
if prev then return { 'taken', tonumber(string.match(prev, '^[^|]*|(%d+)|')) } end
if redis.call('ZSCORE', K_XTAKEN, id) then return { 'finished' } end
if now < (tonumber(f[3]) or 0) then return { 'frozen' } end

local due, freed = due_holds(now, settle_limit)
local available = tonumber(f[1]) + freed
local n = want
-- Half only while there is plenty: near the end it would scatter the last
-- units over the buckets of buyers who need fewer, where the next buyer's
-- pull may miss them in transit.
if half and available > 2 * buckets then n = math.max(n, math.ceil(available / 2)) end
n = math.min(n, available)
if n < want and more_due(due, settle_limit, now) then
  expire_holds(due, freed, now)
  return { 'more_due' }
end
if n <= 0 then
  local due_in = next_due_in(#due, now)
  expire_holds(due, freed, now)
  local recount = 0
  if f[4] then recount = 1 end
  return { 'empty', due_in, recount }
end

-- Writes only from here on.
expire_holds(due, freed, now)
redis.call('HINCRBY', K_ITEM, 'available', int(-n))
redis.call('HINCRBY', K_ITEM, 'stock', int(-n))
redis.call('HSET', K_XOUT, id, to .. '|' .. int(n) .. '|' .. int(now))
redis.call('ZREMRANGEBYSCORE', K_XTAKEN, '-inf', int(now - keep_ms))
redis.call('ZADD', K_XTAKEN, int(now), id)
return { 'taken', n }
