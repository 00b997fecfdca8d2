-- forget_content.
--
-- KEYS[1] content map of the digest   ARGV[1] name whose object is gone
-- Replies: 1 if the map named it (and no longer does), else 0.
if map_get(KEYS[1]) == ARGV[1] then
  return map_del(KEYS[1])
end
return 0
