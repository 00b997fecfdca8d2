-- read_maps (after packed.lua): the names the content maps KEYS hand out, in one call.
--
-- KEYS[1] the namespace's slot probe (see read_records.lua)
-- KEYS[2..] content maps ({p}:d:<digest>)   ARGV[1] record key prefix
-- Replies: one name (or nil) per key, in order. A name whose record holds another digest
-- sharing the map field (a truncation collision: that digest's entry) is nil.
local replies = {}
for i = 2, #KEYS do
  local key = KEYS[i]
  local name = map_get(key)
  if name then
    local _, _, digest = packed_split_key(key)
    local held = rec_hget(ARGV[1] .. name, 'digest')
    if held and held ~= digest and packed_map_field(held) == packed_map_field(digest) then
      name = false
    end
  end
  replies[i - 1] = name
end
return replies
