-- release_claim.
--
-- KEYS[1] claim   ARGV[1] token
-- Replies: 1 if the token's claim was dropped, else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
