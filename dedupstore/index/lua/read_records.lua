-- read_records: the fields ARGV of each record KEYS, in one call (ops read thousands).
--
-- KEYS record keys   ARGV field names
-- Replies: one HMGET reply per key, in order (nil for a field the record lacks).
local replies = {}
for i, key in ipairs(KEYS) do
  replies[i] = redis.call('HMGET', key, unpack(ARGV))
end
return replies
