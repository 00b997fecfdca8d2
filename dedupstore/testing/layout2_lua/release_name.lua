-- release_name.
--
-- KEYS[1] reservation   ARGV[1] token
-- Replies: 1 if the token's reservation ended, else 0.
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
