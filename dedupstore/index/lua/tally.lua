-- Snippet: the namespace's statistics counters and each record's last change ('t').
-- Prepended to begin_save; every other script that changes a record runs inside the
-- wrapper of redis.py (_tallied), which compares the record (KEYS[1]) before and after.
--
-- The counters (a hash: objects, references, physical, logical) are the sum over every
-- record of 1, refs, size and refs * size. Only these scripts change records, so they
-- stay exact; records written before the counters existed are counted by the next
-- 'manage.py dedupstore reconcile', which sets them from a scan (set_stats).
local function tally_snapshot(record)
  local f = rec_hmget(record, 'state', 'refs', 'size')
  if not f[1] then
    return {0, 0, 0}
  end
  return {1, tonumber(f[2]) or 0, tonumber(f[3]) or 0}
end
local function tally_now()
  local now = redis.call('TIME')
  return now[1] .. '.' .. string.format('%06d', tonumber(now[2]))
end
local function tally_change(stats, record, before)
  local after = tally_snapshot(record)
  local objects, refs, size = after[1] - before[1], after[2] - before[2], after[3] - before[3]
  local changed = objects ~= 0 or refs ~= 0 or size ~= 0
  if changed then
    redis.call('HINCRBY', stats, 'objects', objects)
    redis.call('HINCRBY', stats, 'references', refs)
    redis.call('HINCRBY', stats, 'physical', size)
    redis.call('HINCRBY', stats, 'logical', after[2] * after[3] - before[2] * before[3])
  end
  -- A record rewritten whole (commit_save) lost its 't': it changed now.
  if after[1] == 1 and (changed or rec_hexists(record, 't') == 0) then
    rec_hset(record, 't', tally_now())
  end
end
-- A hit: one more reference to a live record, counted (refs + 1, its 't') in one write.
local function tally_hit(stats, record)
  redis.call('HINCRBY', stats, 'references', 1)
  redis.call('HINCRBY', stats, 'logical', tonumber(rec_hget(record, 'size')) or 0)
  rec_hset(record, 'refs', tonumber(rec_hget(record, 'refs')) + 1, 't', tally_now())
end
-- A record about to be deleted.
local function tally_gone(stats, record)
  -- 0 - x, not -x: Lua formats -0 as "-0", which HINCRBY refuses.
  local before = tally_snapshot(record)
  redis.call('HINCRBY', stats, 'objects', 0 - before[1])
  redis.call('HINCRBY', stats, 'references', 0 - before[2])
  redis.call('HINCRBY', stats, 'physical', 0 - before[3])
  redis.call('HINCRBY', stats, 'logical', 0 - before[2] * before[3])
end
