-- migrate_layout3 (after packed.lua): move layout 2 records and content maps into layout 3.
--
-- KEYS layout 2 keys of one namespace: records {p}:o:<name> (hashes) and content maps
-- {p}:d:<digest> (strings)
-- Replies: how many keys were moved. Each key is read, deleted and written packed in this
-- one script: a run interrupted between two calls leaves every key in one layout or the
-- other, and is simply run again.
local moved = 0
for _, key in ipairs(KEYS) do
  local _, kind = packed_split_key(key)
  if kind == 'o' and redis.call('TYPE', key).ok == 'hash' then
    local fields = redis.call('HGETALL', key)
    redis.call('DEL', key)
    local r = {}
    for i = 1, #fields, 2 do
      r[fields[i]] = fields[i + 1]
    end
    rec_store(key, r)
    moved = moved + 1
  elseif kind == 'd' and redis.call('TYPE', key).ok == 'string' then
    local name = redis.call('GET', key)
    redis.call('DEL', key)
    map_set(key, name)
    moved = moved + 1
  end
end
return moved
