-- begin_replace (after lease_held.lua and quarantine.lua).
--
-- KEYS[1] record of the name   KEYS[2] quarantine of the name
-- ARGV[1] token   ARGV[2] map key prefix   ARGV[3] name   ARGV[4] claim key prefix
-- ARGV[5] digest of the caller's claim (its lease)   ARGV[6] quarantine lifetime (ms)
--
-- Replies: 'absent', 'quarantined', 'shared', 'wait', 'replace' (the record is now
-- 'replacing', held by the token).
local f = rec_hmget(KEYS[1], 'state', 'refs', 'digest', 'token', 'lease')
if not f[1] then
  return 'absent'
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'quarantined'
end
if f[1] == 'live' then
  if tonumber(f[2]) > 1 then
    return 'shared'
  end
elseif f[4] ~= ARGV[1] then
  if lease_held(ARGV[4], f[4], f[5] or f[3]) then
    return 'wait'
  end
  if f[4] then
    -- Its replacer or deleter was not seen to finish: it may still write or delete the
    -- name. Keep the name out of use until its worst case has passed.
    quarantine(KEYS[2], tonumber(ARGV[6]))
    return 'quarantined'
  end
end
-- A live record with one reference, or one whose deleter gave up (seen to finish): ours.
rec_hset(KEYS[1], 'state', 'replacing', 'token', ARGV[1], 'lease', ARGV[5])
if map_get(ARGV[2] .. f[3]) == ARGV[3] then
  map_del(ARGV[2] .. f[3])
end
return 'replace'
