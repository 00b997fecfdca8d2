-- add_record (inside the tally wrapper of redis.py: the last key is the counters).
--
-- KEYS[1] record of the name   KEYS[2] content map of the digest
-- KEYS[3] tombstone of the name   KEYS[4] reservation of the name
-- KEYS[5] quarantine of the name
-- ARGV[1] digest   ARGV[2] size   ARGV[3] name length   ARGV[4] references
-- ARGV[5] name     ARGV[6] record key prefix
--
-- Replies: 1 (recorded, live), 0 (the name is known or busy: a record, a delete, a save's
-- reservation or a quarantine; nothing changed).
if rec_exists(KEYS[1]) == 1 or redis.call('EXISTS', KEYS[4]) == 1
    or redis.call('EXISTS', KEYS[5]) == 1
    or redis.call('HGET', KEYS[3], 'state') == 'deleting' then
  return 0
end
rec_hset(KEYS[1], 'digest', ARGV[1], 'refs', ARGV[4], 'state', 'live',
           'size', ARGV[2], 'nlen', ARGV[3])
local canonical = map_get(KEYS[2])
if not canonical or rec_hget(ARGV[6] .. canonical, 'state') ~= 'live' then
  map_set(KEYS[2], ARGV[5])
end
return 1
