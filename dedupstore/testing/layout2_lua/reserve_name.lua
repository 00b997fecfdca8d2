-- reserve_name.
--
-- KEYS[1] reservation of the name   KEYS[2] record of the name
-- KEYS[3] quarantine of the name
-- ARGV[1] token   ARGV[2] digest of the caller's claim (the reservation's lease)
-- ARGV[3] claim key prefix   ARGV[4] quarantine lifetime (ms)
--
-- Replies: 1 (reserved for the token), 0 (taken: a record, a quarantine, or another
-- save's reservation).
--
-- A reservation keeps a free name for one save's inner write: no other save writes the
-- name meanwhile (an inner storage such as S3 would let the later write replace the
-- earlier). One whose holder's lease lapsed is never taken over (the holder may still be
-- writing): it is marked lapsed and lives QUARANTINE_TTL more, unless its holder commits.
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local r = redis.call('HMGET', KEYS[1], 'token', 'lease', 'lapsed')
if r[1] and r[1] ~= ARGV[1] then
  if not r[3] and redis.call('GET', ARGV[3] .. r[2]) ~= r[1] then
    redis.call('HSET', KEYS[1], 'lapsed', '1')
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
  end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'lease', ARGV[2])
return 1
