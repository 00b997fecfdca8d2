-- hit (after tally.lua): the hit branch of begin_save alone, with the few keys and
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
local name, key = ARGV[4], KEYS[1]
if ARGV[1] == 'content' then
  name = packed_get(packed_table(packed_split_key(KEYS[1]), 'm'), ARGV[6])
  if not name then return nil end
  -- Computed, not declared: the map names it; both carry the namespace's one prefix.
  key = ARGV[4] .. name
end
local r = rec_load(key)
if r and r.state == 'live' and packed_same_digest(r, digest, ARGV[5])
    and (maxlen == 0 or tonumber(r.nlen) <= maxlen) then
  tally_hit(KEYS[2], key)
  return {'hit', name}
end
return nil
