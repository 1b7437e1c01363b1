-- ratelimit.lua: spend from one or more rate budgets by GCRA (the generic
-- cell rate algorithm): a budget is one number, its theoretical arrival time
-- (TAT). A request at `now` is allowed when max(TAT, now) + interval - now <=
-- burst * interval, and then moves TAT there. Every instance shares the
-- budgets, the clock is Redis's TIME, and a key expires a grace after its
-- budget is full again, so an idle client's budget costs no memory. (The
-- grace is for charges that come late, as of an earlier time: they must
-- still find the TAT they add to.)
--
-- Besides the request, an instance sends here what it owes the budgets (see
-- redisstore/ratelocal.go): requests it admitted on its own, charged as of
-- when they came whatever the budget holds now (they were served), and
-- requests it leased ahead and never used, given back. Owed requests it has
-- no request to carry with go to charge.lua.
--
-- KEYS[i]  budget i: a string, its TAT in microseconds since the epoch
-- ARGV[1]  the grace in milliseconds: how long a key outlives its TAT
-- ARGV[2+6(i-1)] .. ARGV[7+6(i-1)], budget i's:
--   interval_us  1/rate
--   burst        requests it allows at once
--   charge       requests admitted without asking, taken unconditionally
--   charge_age   microseconds since they were admitted
--   refund       leased requests not used: given back
--   lease        requests wanted beyond the one, granted only from a budget
--                that keeps three quarters of its room after them
--
-- Returns {code, retry_us, remaining_1, reset_us_1, leased_1, remaining_2, ...}:
--   code        "allowed" (every budget took the request) or "limited" (at
--               least one is spent: none took it; charges and refunds are
--               applied all the same)
--   retry_us    "limited": microseconds until every budget allows one
--               request again; 0 otherwise
--   remaining_i requests budget i allows at once now
--   reset_us_i  microseconds until budget i is full again
--   leased_i    requests granted beyond the one, already taken from the budget
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local grace = tonumber(ARGV[1])

local n = #KEYS
local old, tats, intervals, bursts, wants = {}, {}, {}, {}, {}
local limited, retry = false, 0
-- Reads and checks first.
for i = 1, n do
  local a = 2 + 6 * (i - 1)
  local interval, burst = tonumber(ARGV[a]), tonumber(ARGV[a + 1])
  local charge, age, refund = tonumber(ARGV[a + 2]), tonumber(ARGV[a + 3]), tonumber(ARGV[a + 4])
  old[i] = tonumber(redis.call('GET', KEYS[i]) or '0')
  local tat = old[i]
  if charge > 0 then tat = math.max(tat, now - age) + charge * interval end
  if refund > 0 then tat = tat - refund * interval end
  if tat < now then tat = now end
  tats[i], intervals[i], bursts[i], wants[i] = tat, interval, burst, tonumber(ARGV[a + 5])
  if tat + interval - now > burst * interval then
    limited = true
    -- Allowed again once tat + interval - later <= burst * interval.
    local wait = tat + interval - now - burst * interval
    if wait > retry then retry = wait end
  end
end

-- Writes last.
local out = { limited and 'limited' or 'allowed', string.format('%d', retry) }
for i = 1, n do
  local tat, interval, burst = tats[i], intervals[i], bursts[i]
  local leased = 0
  if not limited then
    tat = tat + interval
    local room = math.floor((burst * interval - (tat - now)) / interval)
    leased = math.min(wants[i], math.floor(room / 4))
    if leased > 0 then tat = tat + leased * interval end
  end
  -- Written whenever it changed, even when full again: a charge that comes
  -- later, as of an earlier time, adds to it.
  if tat ~= old[i] then
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', string.format('%d', math.ceil((tat - now) / 1000) + grace))
  end
  local remaining = math.floor((burst * interval - (tat - now)) / interval)
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = tat - now
  out[#out + 1] = leased
end
return out
