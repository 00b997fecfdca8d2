-- read_records (after packed.lua): the fields ARGV of each record, in one call (ops read
-- thousands).
--
-- KEYS[1] the namespace's slot probe (a key nothing writes: declared so that a cluster
-- refuses the call, TRYAGAIN, while the slot is being migrated and some buckets may have
-- left)   KEYS[2..] record keys   ARGV field names
-- Replies: one HMGET-like reply per record key, in order (nil for a field it lacks).
local replies = {}
for i = 2, #KEYS do
  replies[i - 1] = rec_hmget(KEYS[i], unpack(ARGV))
end
return replies
