-- begin_delete (after lease_held.lua and quarantine.lua).
--
-- KEYS[1] record of the name   KEYS[2] tombstone of the name
-- KEYS[3] receipt of the token  KEYS[4] quarantine of the name
-- ARGV[1] token   ARGV[2] claim ttl (ms)   ARGV[3] map key prefix
-- ARGV[4] claim key prefix   ARGV[5] name   ARGV[6] receipt lifetime (ms)
-- ARGV[7] tombstone lifetime (ms)   ARGV[8] quarantine lifetime (ms)
--
-- Replies: {action, digest, refs, wait ms}, action one of 'unknown' (digest: the
-- untracked delete's lease), 'kept' (refs: those left), 'delete', 'wait', 'done'.
--
-- A decision that changed something leaves a receipt under the call's token, so running
-- the script again with the same token (its reply was lost) returns that decision instead
-- of dropping a second reference.
local receipt = redis.call('GET', KEYS[3])
if receipt then
  local reply = cjson.decode(receipt)
  if reply[1] == 'delete' or reply[1] == 'unknown' then
    -- The lease our first run took (the claim reply[2]) was renewed by nobody while its
    -- reply was lost: if it lapsed, a save or delete may have taken the name over, and
    -- the inner object now is theirs. Go on only while the record (or tombstone) is
    -- still ours and nobody else claims the lease; then renew it for the inner delete.
    local held = redis.call('HMGET', reply[1] == 'delete' and KEYS[1] or KEYS[2], 'state', 'token')
    local claim = redis.call('GET', ARGV[4] .. reply[2])
    if held[1] ~= 'deleting' or held[2] ~= ARGV[1] or (claim and claim ~= ARGV[1]) then
      return {'done', reply[2], '0', '0'}
    end
    redis.call('SET', ARGV[4] .. reply[2], ARGV[1], 'PX', tonumber(ARGV[2]))
    if reply[1] == 'unknown' then
      redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[7]))
    end
  end
  return reply
end
local function decided(reply)
  redis.call('SET', KEYS[3], cjson.encode(reply), 'PX', tonumber(ARGV[6]))
  return reply
end
local f = redis.call('HMGET', KEYS[1], 'state', 'refs', 'digest', 'token', 'lease')
local state, digest = f[1], f[3]
if not state then
  -- Untracked: stored before the wrapper, deleted already, or the index was lost. A save
  -- of this very name may have written its object and not committed yet: hold a tombstone
  -- on the name while the inner object is deleted, so that save learns of it (see
  -- commit_save.lua). Its lease is a claim of its own, named after the token and the name
  -- (a renewal of the lease renews the tombstone too: see refresh_claim.lua); a dead
  -- deleter's is taken over.
  local t = redis.call('HMGET', KEYS[2], 'state', 'token', 'lease')
  if t[1] == 'deleting' and t[2] ~= ARGV[1] then
    if lease_held(ARGV[4], t[2], t[3]) then
      return {'wait', '', '0', tostring(redis.call('PTTL', ARGV[4] .. t[3]))}
    end
    -- A dead (or stalled) deleter's: it may still delete whatever the name holds.
    quarantine(KEYS[4], tonumber(ARGV[8]))
  end
  local lease = 'untracked-delete:' .. ARGV[1] .. ':' .. ARGV[5]
  redis.call('SET', ARGV[4] .. lease, ARGV[1], 'PX', tonumber(ARGV[2]))
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'state', 'deleting', 'token', ARGV[1], 'lease', lease)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[7]))
  return decided({'unknown', lease, '0', '0'})
end
if state == 'replacing' and f[4] ~= ARGV[1] then
  local lease = f[5] or digest
  if lease_held(ARGV[4], f[4], lease) then
    return {'wait', digest, '0', tostring(redis.call('PTTL', ARGV[4] .. lease))}
  end
  -- The replacer died (or stalled: it may still write the name): the name still has its
  -- one reference, which this delete drops.
  quarantine(KEYS[4], tonumber(ARGV[8]))
end
if state == 'deleting' and f[4] and f[4] ~= ARGV[1]
    and not lease_held(ARGV[4], f[4], f[5] or digest) then
  -- An interrupted deletion whose deleter was not seen to finish: it may still delete
  -- whatever the name holds once it is saved again.
  quarantine(KEYS[4], tonumber(ARGV[8]))
end
if state == 'live' and tonumber(f[2]) > 1 then
  return decided({'kept', digest, tostring(redis.call('HINCRBY', KEYS[1], 'refs', -1)), '0'})
end
-- The last reference, or the retry of an interrupted deletion: hold the content's claim
-- while the inner object is deleted, so no save of the same content writes meanwhile
-- (a content-addressed inner storage would hand it the very object being deleted).
-- That claim is also this deletion's lease (see lease_held.lua).
local claim = ARGV[4] .. digest
local holder = redis.call('GET', claim)
if holder and holder ~= ARGV[1] then
  return {'wait', digest, '0', tostring(redis.call('PTTL', claim))}
end
redis.call('SET', claim, ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'state', 'deleting', 'refs', 0, 'token', ARGV[1], 'lease', digest)
if redis.call('GET', ARGV[3] .. digest) == ARGV[5] then
  redis.call('DEL', ARGV[3] .. digest)
end
return decided({'delete', digest, '0', '0'})
