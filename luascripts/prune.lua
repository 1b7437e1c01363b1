-- prune.lua: remove consumers that are long gone from an outbox's group.
-- Every syncer process joins under a new name, so without this the group
-- would list every syncer that ever ran. Check and delete happen in one
-- script: XGROUP DELCONSUMER drops the consumer's pending entries, so a
-- consumer that took entries after the check must never be deleted.
--
-- KEYS[1] the item's outbox stream
-- ARGV[1] consumer group
-- ARGV[2] this syncer's own consumer name (kept)
-- ARGV[3] idle time in ms after which a consumer without pending entries goes
--
-- Returns {"ok", consumers_deleted}
local group, self, gone = ARGV[1], ARGV[2], tonumber(ARGV[3])
if redis.call('EXISTS', KEYS[1]) == 0 then return { 'ok', 0 } end
local doomed = {}
for _, c in ipairs(redis.call('XINFO', 'CONSUMERS', KEYS[1], group)) do
  local f = {}
  for i = 1, #c, 2 do f[c[i]] = c[i + 1] end
  if f.name ~= self and tonumber(f.pending) == 0 and tonumber(f.idle) >= gone then
    doomed[#doomed + 1] = f.name
  end
end
-- Writes only from here on.
for _, name in ipairs(doomed) do redis.call('XGROUP', 'DELCONSUMER', KEYS[1], group, name) end
return { 'ok', #doomed }
