-- count_records: how many object records the namespace holds, read from the record
-- table's entry count (packed.lua keeps it exact: it changes with every record added or
-- removed), so nothing is scanned.
--
-- KEYS[1] the buckets' growth state ({p}:l)   KEYS[2] the namespace's slot probe (see
-- read_records.lua)
-- Replies: the number of records.
return tonumber(redis.call('HGET', KEYS[1], 'rn')) or 0
