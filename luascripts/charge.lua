-- charge.lua: settle with rate budgets what an instance did without asking
-- (see redisstore/ratelocal.go): requests it admitted on its own, charged as
-- of when they came whatever the budget holds now (they were served), and
-- requests it leased ahead and never used, given back. It never refuses.
-- The budgets are ratelimit.lua's (a string: the TAT in microseconds since
-- the epoch, expiring a grace after the budget is full again), all of one
-- limit, so the limit travels once per call and not once per budget: a
-- charge for a one-off buyer is most of what the rate limits cost Redis, and
-- its arguments were a third of that.
--
-- KEYS[i]    budget i (a budget may come twice: a charge, then a refund)
-- ARGV[1]    the grace in milliseconds: how long a key outlives its TAT
-- ARGV[2]    interval_us, 1/rate, of every budget of the call
-- ARGV[1+2i], ARGV[2+2i], budget i's:
--   n        > 0: n requests admitted without asking, taken unconditionally;
--            < 0: -n leased requests not used, given back
--   age_us   microseconds since the n requests were admitted (0 for a refund)
--
-- Returns {"charged", reset_us_1, reset_us_2, ...}: microseconds until budget
-- i is full again after its entry, 0 when it is full now.
--
-- Nothing here is refused, so there is no check for a write to come before:
-- a charge reads and writes its budget in one SET ... NX GET (a one-off
-- buyer's budget is absent, and then that is the only command), and each
-- entry sees the ones before it.
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local grace = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])

-- The expiry goes as a string: a number reaches Redis printed as %.17g,
-- which cost more than the SET it rides on.
local function write(key, tat, nx)
  local px = string.format('%d', math.ceil((tat - now) / 1000) + grace)
  if nx then
    return redis.call('SET', key, string.format('%d', tat), 'PX', px, 'NX', 'GET')
  end
  return redis.call('SET', key, string.format('%d', tat), 'PX', px)
end

local out = { 'charged' }
for i = 1, #KEYS do
  local key = KEYS[i]
  local n, age = tonumber(ARGV[1 + 2 * i]), tonumber(ARGV[2 + 2 * i])
  local tat
  if n > 0 then
    -- Absent, the budget was full: the charge starts from when they came.
    tat = math.max(now - age + n * interval, now)
    local old = write(key, tat, true)
    if old then
      -- Another request spent from it meanwhile: add to what it holds.
      tat = math.max(math.max(tonumber(old), now - age) + n * interval, now)
      write(key, tat, false)
    end
  else
    -- A refund. An absent budget is full: nothing to give back.
    local old = tonumber(redis.call('GET', key) or '0')
    tat = math.max(old + n * interval, now)
    -- Written whenever it changed, even when full again: a charge that
    -- comes later, as of an earlier time, adds to it.
    if old > 0 and tat ~= old then write(key, tat, false) end
  end
  out[i + 1] = tat - now
end
return out
