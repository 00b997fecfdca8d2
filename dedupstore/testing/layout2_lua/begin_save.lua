-- begin_save (after close_tombstone.lua and quarantine.lua).
--
-- KEYS[1] content map of the digest     KEYS[2] claim on the digest
-- KEYS[3] record of the requested name  KEYS[4] delete counter
-- KEYS[5] tombstone of the requested name
-- KEYS[6] quarantine of the requested name   KEYS[7] statistics counters (tally.lua)
-- ARGV[1] reuse ('content', 'name' or 'never')   ARGV[2] digest   ARGV[3] token
-- ARGV[4] claim ttl (ms)   ARGV[5] max length (0: none)   ARGV[6] record key prefix
-- ARGV[7] requested name   ARGV[8] claim key prefix   ARGV[9] tombstone lifetime (ms)
-- ARGV[10] overwrite ('1': the save may replace the requested name, so begin_replace
--          takes a dead deletion over; else '0')
-- ARGV[11] quarantine lifetime (ms)
--
-- Replies: {'hit', name} (one more reference counted), {'claimed', deletes finished}
-- (write the content, pass the count to commit_save as since), {'wait', claim's PTTL}.
local reuse, digest, token = ARGV[1], ARGV[2], ARGV[3]
local ttl, maxlen, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local function usable(key)
  local f = redis.call('HMGET', key, 'state', 'digest', 'nlen')
  return f[1] == 'live' and f[2] == digest and (maxlen == 0 or tonumber(f[3]) <= maxlen)
end
if reuse == 'content' then
  local name = redis.call('GET', KEYS[1])
  if name and usable(prefix .. name) then
    redis.call('HINCRBY', prefix .. name, 'refs', 1)
    tally_hit(KEYS[7], prefix .. name)
    return {'hit', name}
  end
elseif reuse == 'name' then
  if usable(KEYS[3]) then
    redis.call('HINCRBY', KEYS[3], 'refs', 1)
    tally_hit(KEYS[7], KEYS[3])
    return {'hit', ARGV[7]}
  end
end
local holder = redis.call('GET', KEYS[2])
if not holder or holder == token then
  redis.call('SET', KEYS[2], token, 'PX', ttl)
  local r = redis.call('HMGET', KEYS[3], 'state', 'token', 'lease', 'digest')
  if ARGV[10] == '0' and r[1] == 'deleting'
      and (not r[2] or redis.call('GET', ARGV[8] .. (r[3] or r[4])) ~= r[2]) then
    -- An interrupted deletion of the requested name (its deleter died, or could not
    -- record its delete): it has no references left. Finish it rather than let our commit
    -- revive it, so the deleter's retry cannot delete what we store under the name.
    tally_gone(KEYS[7], KEYS[3])
    redis.call('DEL', KEYS[3])
    if redis.call('HGET', KEYS[5], 'state') ~= 'deleting' then
      close_tombstone(KEYS[5], KEYS[4], tonumber(ARGV[9]))
    end
    if r[2] then
      -- Its deleter was not seen to finish: it may still delete whatever the name holds.
      quarantine(KEYS[6], tonumber(ARGV[11]))
    end
  end
  -- How many deletes had finished: commit_save compares the name's tombstone.
  return {'claimed', redis.call('GET', KEYS[4]) or '0'}
end
return {'wait', tostring(redis.call('PTTL', KEYS[2]))}
