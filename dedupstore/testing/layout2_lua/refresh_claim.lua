-- refresh_claim.
--
-- KEYS[1] claim   KEYS[2] (optional) tombstone of the name an untracked delete holds
--                 with that claim
-- ARGV[1] token   ARGV[2] claim ttl (ms)   ARGV[3] (with KEYS[2]) tombstone lifetime (ms)
-- Replies: 1 if the token still held the claim (now renewed), else 0.
--
-- The 'deleting' tombstone of an untracked delete lives as long as its lease plus the
-- lifetime of a 'deleted' one: renewed with the lease, it outlasts a dead deleter's last
-- possible inner delete by TOMBSTONE_TTL, like the tombstone of a finished delete.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if KEYS[2] then
    local t = redis.call('HMGET', KEYS[2], 'state', 'token')
    if t[1] == 'deleting' and t[2] == ARGV[1] then
      redis.call('PEXPIRE', KEYS[2], ARGV[3])
    end
  end
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
