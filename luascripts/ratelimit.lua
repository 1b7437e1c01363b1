-- ratelimit.lua: take one request from each of one or more rate budgets,
-- all or nothing, by GCRA (the generic cell rate algorithm): a budget is
-- one number, its theoretical arrival time (TAT). A request at `now` is
-- allowed when max(TAT, now) + interval - now <= burst * interval, and then
-- moves TAT there. Every instance shares the budgets, the clock is Redis's
-- TIME, and a key expires when its budget is full again, so an idle
-- client's budget costs no memory.
--
-- KEYS[i]     budget i: a string, its TAT in microseconds since the epoch
-- ARGV[2i-1]  budget i's emission interval in microseconds (1/rate)
-- ARGV[2i]    budget i's burst: requests it allows at once
--
-- Returns {code, retry_us, remaining_1, reset_us_1, remaining_2, ...}:
--   code        "allowed" (every budget took the request) or "limited"
--               (at least one is spent: none took it)
--   retry_us    "limited": microseconds until every budget allows one
--               request again; 0 when allowed
--   remaining_i requests budget i allows at once after this one
--   reset_us_i  microseconds until budget i is full again
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])

local n = #KEYS
local cur, nxt, intervals, bursts = {}, {}, {}, {}
local limited, retry = false, 0
-- Reads and checks first.
for i = 1, n do
  local interval, burst = tonumber(ARGV[2 * i - 1]), tonumber(ARGV[2 * i])
  local tat = tonumber(redis.call('GET', KEYS[i]) or '0')
  if tat < now then tat = now end
  cur[i], nxt[i], intervals[i], bursts[i] = tat, tat + interval, interval, burst
  if nxt[i] - now > burst * interval then
    limited = true
    -- Allowed again once nxt - later <= burst * interval.
    local wait = nxt[i] - now - burst * interval
    if wait > retry then retry = wait end
  end
end

local out = { limited and 'limited' or 'allowed', string.format('%d', retry) }
for i = 1, n do
  local tat = cur[i] -- limited: nothing is taken, each budget stands as it was
  if not limited then
    -- Writes last, and only when every budget allows the request.
    tat = nxt[i]
    redis.call('SET', KEYS[i], string.format('%d', tat), 'PX', math.ceil((tat - now) / 1000))
  end
  local remaining = math.floor((bursts[i] * intervals[i] - (tat - now)) / intervals[i])
  if remaining < 0 then remaining = 0 end
  out[#out + 1] = remaining
  out[#out + 1] = string.format('%d', tat - now)
end
return out
