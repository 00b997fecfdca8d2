-- hit (after tally.lua): the hit branch of begin_save alone, with the few keys and
-- arguments a hit needs. A save asks this first; on no reply it runs begin_save, which
-- checks again atomically.
--
-- KEYS[1] content map of the digest (reuse 'content') or record of the name (reuse 'name')
-- KEYS[2] statistics counters (tally.lua)
-- ARGV[1] reuse ('content' or 'name')   ARGV[2] digest   ARGV[3] max length (0: none)
-- ARGV[4] record key prefix (reuse 'content') or the requested name (reuse 'name')
--
-- Replies: {'hit', name} (one more reference counted), or nil (no usable object).
local digest, maxlen = ARGV[2], tonumber(ARGV[3])
local name, key = ARGV[4], KEYS[1]
if ARGV[1] == 'content' then
  name = redis.call('GET', KEYS[1])
  if not name then return nil end
  -- Computed, not declared: the map names it; both carry the namespace's one prefix.
  key = ARGV[4] .. name
end
local f = redis.call('HMGET', key, 'state', 'digest', 'nlen')
if f[1] == 'live' and f[2] == digest and (maxlen == 0 or tonumber(f[3]) <= maxlen) then
  redis.call('HINCRBY', key, 'refs', 1)
  tally_hit(KEYS[2], key)
  return {'hit', name}
end
return nil
