-- commit_delete (after close_tombstone.lua).
--
-- KEYS[1] record of the name   KEYS[2] claim on the digest
-- KEYS[3] tombstone of the name   KEYS[4] delete counter
-- ARGV[1] token   ARGV[2] tombstone lifetime (ms)
-- Replies: 1. Running it twice is harmless: every change is checked against the token.
local f = rec_hmget(KEYS[1], 'state', 'token')
local t = redis.call('HMGET', KEYS[3], 'state', 'token')
if f[1] == 'deleting' and f[2] == ARGV[1] then
  -- A tracked delete leaves a numbered tombstone too: a save that wrote the same object
  -- under another digest (a content-addressed inner storage after a key rotation) and
  -- commits after us must write again (see commit_save.lua).
  rec_del(KEYS[1])
  if t[1] ~= 'deleting' then
    close_tombstone(KEYS[3], KEYS[4], tonumber(ARGV[2]))
  end
elseif t[1] == 'deleting' and t[2] == ARGV[1] then
  -- Number this delete after every save that began before it finished: such a save's
  -- commit then writes again (see commit_save.lua).
  close_tombstone(KEYS[3], KEYS[4], tonumber(ARGV[2]))
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
