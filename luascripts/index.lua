-- index.lua: one shard of the indexes that tell the sweeper which buckets
-- have holds falling due and the syncer which have changes to copy, so idle
-- work follows the work there is instead of the size of the catalogue.
--
-- An index is a sorted set, bucket name -> when the bucket next needs a
-- visit (ms, Redis time), beside a hash, bucket name -> version: every hint
-- bumps the version, so whoever took a bucket never drops or postpones an
-- entry that was hinted after it looked (settle compares the version it was
-- given). A bucket's scripts touch one slot and an index spans many items,
-- so the service writes the index with this script, after the item's own
-- script; a hint lost on the way (an instance killed between the two) is
-- repaired by the sweeper's slow scan of the whole catalogue.
--
-- KEYS (all of one index shard, sharing its hash tag):
--   "hint":   KEYS[1] due zset, KEYS[2] its versions, KEYS[3] dirty zset, KEYS[4] its versions
--   "claim", "settle": KEYS[1] the zset, KEYS[2] its versions
-- ARGV[1] mode:
--   "hint":   ARGV[2] n, the number of due pairs; then n pairs (score, bucket)
--             for the due index, each lowering an entry's score or adding it
--             (ZADD LT); then pairs (score, bucket) for the dirty index, each
--             added only when absent (ZADD NX: the bucket's taker keeps it)
--   "claim":  ARGV[2] lease ms, ARGV[3] the most buckets to take: entries due
--             by now are moved to now + lease, so other instances leave them
--             alone until the lease runs out (their taker died or is slow)
--   "settle": ARGV[2..] triples (bucket, version, score): when the bucket's
--             version is still the one given, its entry gets score, or is
--             removed when score is "" (a score "+ms" is now + ms: a lease
--             renewed); otherwise someone hinted since, and the entry is
--             made due now (never later than it was)
--
-- Returns one of:
--   {"hinted", buckets_hinted}
--   {"claimed", now_ms, bucket, version, bucket, version, ...}  versions "0" when never hinted
--   {"settled", entries_settled_as_asked}

local mode = ARGV[1]

local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

if mode == 'hint' then
  local n = tonumber(ARGV[2])
  local last = 2 + 2 * n
  for i = 3, #ARGV, 2 do
    local zset, vers, flag = KEYS[1], KEYS[2], 'LT'
    if i > last then zset, vers, flag = KEYS[3], KEYS[4], 'NX' end
    redis.call('ZADD', zset, flag, ARGV[i], ARGV[i + 1])
    redis.call('HINCRBY', vers, ARGV[i + 1], 1)
  end
  return { 'hinted', (#ARGV - 2) / 2 }
end

if mode == 'claim' then
  local now = now_ms()
  local lease, max = tonumber(ARGV[2]), tonumber(ARGV[3])
  local members = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, max)
  local out = { 'claimed', now }
  if #members == 0 then return out end
  local vers = redis.call('HMGET', KEYS[2], unpack(members))
  -- Writes only from here on.
  local args = { 'XX' }
  local until_ms = string.format('%d', now + lease)
  for i, m in ipairs(members) do
    args[#args + 1] = until_ms
    args[#args + 1] = m
    out[#out + 1] = m
    out[#out + 1] = vers[i] or '0'
  end
  redis.call('ZADD', KEYS[1], unpack(args))
  return out
end

if mode == 'settle' then
  local members = {}
  for i = 2, #ARGV, 3 do members[#members + 1] = ARGV[i] end
  if #members == 0 then return { 'settled', 0 } end
  local vers = redis.call('HMGET', KEYS[2], unpack(members))
  local now = now_ms()
  -- Writes only from here on.
  local n = 0
  for j, m in ipairs(members) do
    local i = 2 + 3 * (j - 1)
    if (vers[j] or '0') == ARGV[i + 1] then
      n = n + 1
      local score = ARGV[i + 2]
      if score == '' then
        redis.call('ZREM', KEYS[1], m)
      else
        if string.sub(score, 1, 1) == '+' then score = string.format('%d', now + tonumber(string.sub(score, 2))) end
        redis.call('ZADD', KEYS[1], score, m)
      end
    else
      redis.call('ZADD', KEYS[1], 'LT', string.format('%d', now), m)
    end
  end
  return { 'settled', n }
end

return { 'unknown_mode' }
