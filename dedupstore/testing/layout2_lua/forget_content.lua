-- forget_content.
--
-- KEYS[1] content map of the digest   ARGV[1] name whose object is gone
-- Replies: 1 if the map named it (and no longer does), else 0.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
