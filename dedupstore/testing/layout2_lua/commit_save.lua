-- commit_save (after close_tombstone.lua and quarantine.lua).
--
-- KEYS[1] record of the stored name   KEYS[2] content map of the digest
-- KEYS[3] claim on the digest         KEYS[4] tombstone of the stored name
-- KEYS[5] delete counter              KEYS[6] receipt of the token
-- KEYS[7] reservation of the stored name
-- KEYS[8] quarantine of the stored name
-- ARGV[1] digest   ARGV[2] token   ARGV[3] size   ARGV[4] name length
-- ARGV[5] record key prefix   ARGV[6] stored name   ARGV[7] map key prefix
-- ARGV[8] replacing ('1': the save replaced the name after begin_replace, else '0')
-- ARGV[9] deletes finished at begin_save (since)   ARGV[10] ms since then (elapsed)
-- ARGV[11] tombstone lifetime (ms)   ARGV[12] claim key prefix
-- ARGV[13] receipt lifetime (ms)     ARGV[14] quarantine lifetime (ms)
--
-- Replies: {'committed', refs}; {'wait', lease's PTTL}; {'rewrite', deletes finished};
-- {'verify', deletes finished}; {'relocate', deletes finished, quarantine's PTTL};
-- {'lost', 'save' | 'delete' | 'none'} (the caller raises ClaimLost).
--
-- A commit leaves a receipt under the save's token, so running the script again with the
-- same token (its reply was lost) answers as the first run did instead of counting a
-- second reference.
local receipt = redis.call('GET', KEYS[6])
if receipt then
  return cjson.decode(receipt)
end
local digest, token = ARGV[1], ARGV[2]
local f = redis.call('HMGET', KEYS[1], 'state', 'digest', 'refs', 'token', 'lease')
local state, previous = f[1], f[2]
local reserver = redis.call('HGET', KEYS[7], 'token')
if reserver and reserver ~= token then
  -- Another save reserved the name: ours lapsed long ago, and our write may have landed
  -- over theirs. Record nothing under their name.
  return {'lost', 'save'}
end
if ARGV[8] == '1' then
  if state ~= 'replacing' or f[4] ~= token then
    -- We stalled past our lease and another process took the record over (and may have
    -- committed already): the name is theirs, record nothing. Say whose: a save's, a
    -- delete's under way, or nobody's (a delete removed it).
    if not state then
      return {'lost', 'none'}
    end
    return {'lost', state == 'deleting' and 'delete' or 'save'}
  end
  -- We held the record since before our write: no untracked delete could touch the name.
else
  if redis.call('EXISTS', KEYS[8]) == 1 then
    -- A holder of the name stalled or died at work on it (a delete, say): it may still
    -- delete what we wrote. Store it under another name (or wait, for a name we cannot
    -- choose).
    return {'relocate', redis.call('GET', KEYS[5]) or '0', tostring(redis.call('PTTL', KEYS[8]))}
  end
  -- Did a delete of this name that the index did not track overlap our inner write? It
  -- may have deleted (unpinned) the very object we wrote: never record a name whose
  -- object may be gone.
  local since = tonumber(ARGV[9])
  if state == 'replacing' and f[4] then
    -- A live replacer holds the name: it deleted the old object, which is why the name
    -- looked free to us, and writes its own now. Wait for it (it commits, or gives the
    -- name up when its write lands elsewhere) rather than take its record over.
    local lease = ARGV[12] .. (f[5] or previous)
    if redis.call('GET', lease) == f[4] then
      return {'wait', tostring(redis.call('PTTL', lease))}
    end
  end
  if state == 'deleting' then
    -- A tracked delete holds the name. Its claim on the record's digest does not keep us
    -- out when we claimed another digest for the same object (a content-addressed inner
    -- storage after a key rotation): wait for it like for an untracked delete's tombstone.
    local lease = ARGV[12] .. (f[5] or previous)
    if f[4] and redis.call('GET', lease) == f[4] then
      return {'wait', tostring(redis.call('PTTL', lease))}
    end
    -- Its deleter died (or could not record its delete): whether it deleted our object is
    -- unknown. Finish the deletion (no references are left) and write again.
    redis.call('DEL', KEYS[1])
    if f[4] then
      quarantine(KEYS[8], tonumber(ARGV[14]))
    end
    return {'rewrite', tostring(close_tombstone(KEYS[4], KEYS[5], tonumber(ARGV[11])))}
  end
  local t = redis.call('HMGET', KEYS[4], 'state', 'token', 'lease', 'seq')
  if t[1] == 'deleting' then
    local lease = ARGV[12] .. t[3]
    if redis.call('GET', lease) == t[2] then
      return {'wait', tostring(redis.call('PTTL', lease))}
    end
    -- Its deleter died: whether it deleted our object is unknown. Close its tombstone
    -- and write again (elsewhere: it may still delete what the name holds).
    quarantine(KEYS[8], tonumber(ARGV[14]))
    return {'rewrite', tostring(close_tombstone(KEYS[4], KEYS[5], tonumber(ARGV[11])))}
  end
  local finished = redis.call('GET', KEYS[5]) or '0'
  if t[1] == 'deleted' and tonumber(t[4]) > since then
    return {'rewrite', finished}
  end
  if 2 * tonumber(ARGV[10]) >= tonumber(ARGV[11]) then
    -- A write this long may have outlived the tombstone that would tell (a 'deleted' one,
    -- or the 'deleting' one of a deleter that died): record nothing yet. The saver checks
    -- that its object still exists, then commits again with since = the count now: a
    -- delete of the name that finishes after this reply is numbered above it.
    return {'verify', finished}
  end
end
local refs = 1
if state == 'live' or (state == 'replacing' and ARGV[8] ~= '1') then
  -- Either the same content again (a content-addressed inner storage returns the same
  -- name) or an inner storage that overwrote a live object behind our back: keep every
  -- existing reference so nothing is deleted early. A dead replacer's record still counts
  -- the reference of the name it was replacing (its holder still names it).
  refs = tonumber(f[3]) + 1
end
if previous and previous ~= digest and redis.call('GET', ARGV[7] .. previous) == ARGV[6] then
  redis.call('DEL', ARGV[7] .. previous)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'digest', digest, 'refs', refs, 'state', 'live',
           'size', ARGV[3], 'nlen', ARGV[4])
local canonical = redis.call('GET', KEYS[2])
if not canonical or redis.call('HGET', ARGV[5] .. canonical, 'state') ~= 'live' then
  redis.call('SET', KEYS[2], ARGV[6])
end
if redis.call('GET', KEYS[3]) == token then
  redis.call('DEL', KEYS[3])
end
if reserver then
  redis.call('DEL', KEYS[7])
end
redis.call('SET', KEYS[6], cjson.encode({'committed', tostring(refs)}), 'PX', tonumber(ARGV[13]))
return {'committed', tostring(refs)}
