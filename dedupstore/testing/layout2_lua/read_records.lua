-- read_records: the fields ARGV of each record KEYS, in one call (ops read thousands).
--
-- KEYS[1] the slot probe (skipped: the current index's calling convention)
-- KEYS[2..] record keys   ARGV field names
-- Replies: one HMGET reply per key, in order (nil for a field the record lacks).
local replies = {}
for i = 2, #KEYS do
  replies[i - 1] = redis.call('HMGET', KEYS[i], unpack(ARGV))
end
return replies
