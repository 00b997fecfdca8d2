-- hit (after packed.lua): the hit branch of begin_save alone, with the few keys and
-- arguments a hit needs. A save asks this first; on no reply it runs begin_save, which
-- checks again atomically.
--
-- KEYS[1] content map of the digest (reuse 'content') or record of the name (reuse 'name')
-- KEYS[2] statistics counters (tally.lua)
-- ARGV[1] reuse ('content' or 'name')   ARGV[2] digest   ARGV[3] max length (0: none)
-- ARGV[4] record key prefix (reuse 'content') or the requested name (reuse 'name')
-- ARGV[5] the digest's 32 raw bytes ('' unless it is 64 hex digits)
-- ARGV[6] its content-map field (packed.lua's packed_map_field, computed by the caller)
--
-- Replies: {'hit', name} (one more reference counted), or nil (no usable object).
local digest, maxlen = ARGV[2], tonumber(ARGV[3])
local prefix = packed_split_key(KEYS[1])
local name = ARGV[4]
if ARGV[1] == 'content' then
  name = packed_get(packed_table(prefix, 'm'), ARGV[6])
  if not name then return nil end
end
-- The record's bucket (computed, not declared: same prefix, same slot), read and
-- written once: packed_hit changes the value itself.
local bucket = packed_bucket(packed_table(prefix, 'r'), name)
local value = redis.call('HGET', bucket, name)
if not value then return nil end
local updated, size = packed_hit(name, value, digest, ARGV[5], maxlen)
if not updated then return nil end
redis.call('HSET', bucket, name, updated)
redis.call('HINCRBY', KEYS[2], 'references', 1)
redis.call('HINCRBY', KEYS[2], 'logical', size)
return {'hit', name}
