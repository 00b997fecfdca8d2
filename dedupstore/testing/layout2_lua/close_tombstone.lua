-- Snippet: close_tombstone(tombstone, counter, lifetime). Prepended to begin_save,
-- commit_save and commit_delete.
--
-- Mark the delete of a name finished (tombstone: its tombstone key) and number it after
-- every save that began before (counter: the delete counter): such a save's commit then
-- writes again, since the delete may have removed (unpinned) the very object it wrote
-- (see commit_save.lua). lifetime: of the 'deleted' tombstone (ms).
-- Returns: the tombstone's sequence number.
local function close_tombstone(tombstone, counter, lifetime)
  local seq = redis.call('INCR', counter)
  redis.call('DEL', tombstone)
  redis.call('HSET', tombstone, 'state', 'deleted', 'seq', seq)
  redis.call('PEXPIRE', tombstone, lifetime)
  return seq
end
