-- add_records (after packed.lua and tally.lua): add_record.lua for a batch of names in one
-- call (adopt records thousands), each recorded or refused on its own, counted at the end.
--
-- KEYS[1] the buckets' growth state ({p}:l)   KEYS[2] the namespace's slot probe (see
-- read_records.lua)   KEYS[3] the counters ({p}:s)
-- ARGV[1..4] the key prefixes of records, tombstones, reservations and quarantines
-- ({p}:o: {p}:t: {p}:n: {p}:q:; content maps live in buckets and need none)
-- then 5 values a record: name, digest, size, name length, references
-- Replies: one 1 (recorded, live) or 0 (known or busy, as add_record.lua) per record.
local records, tombstones, reservations, quarantines = ARGV[1], ARGV[2], ARGV[3], ARGV[4]
local prefix = string.sub(KEYS[1], 1, string.find(KEYS[1], '}', 1, true))
local record_table, map_table = packed_table(prefix, 'r'), packed_table(prefix, 'm')
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
-- Hex digit pairs to bytes, for string.gsub (in C: packed_unhex's loops, for a batch).
local byte_of_pair = {}
for b = 0, 255 do
  byte_of_pair[string.format('%02x', b)] = string.char(b)
end
local replies = {}
-- The counters' changes, written once; the logical bytes are written before a sum of
-- doubles could pass 2^53 (refs * size of one record stays below it, as in tally.lua).
local objects, refs_sum, physical, logical = 0, 0, 0, 0
local function flush_logical()
  if logical ~= 0 then
    redis.call('HINCRBY', KEYS[3], 'logical', packed_int(logical))
    logical = 0
  end
end
-- Add an entry to a table whose growth state is saved once, at the end.
local function put_new(meta, bucket, field, value)
  redis.call('HSET', bucket, field, value)
  meta.count = meta.count + 1
  packed_grow(meta)
end
for i = 5, #ARGV, 5 do
  local name, digest = ARGV[i], ARGV[i + 1]
  local size, nlen, refs = ARGV[i + 2], ARGV[i + 3], ARGV[i + 4]
  local bucket = packed_bucket_of_hash(record_table, packed_hash(name))
  local reply = 0
  if redis.call('HEXISTS', bucket, name) == 0 and redis.call('EXISTS', reservations .. name) == 0
      and redis.call('EXISTS', quarantines .. name) == 0
      and redis.call('HGET', tombstones .. name, 'state') ~= 'deleting' then
    -- packed_encode takes the raw bytes given for the digest they are of (raw_of).
    local raw = packed_is_hex_digest(digest) and string.gsub(digest, '..', byte_of_pair) or nil
    local r = {
      digest = digest, raw = raw, raw_of = raw and digest, refs = refs, state = 'live',
      size = size, nlen = nlen, t_ms = now_ms,
    }
    put_new(record_table, bucket, name, packed_encode(name, r))
    packed_cache[records .. name] = nil  -- read again from its bucket if asked
    -- Content reuse hands the name out unless a live record holds the digest already
    -- (the map field: packed_map_field's, the first 10 bytes of a hex digest).
    local field = raw and string.sub(raw, 1, 10) or digest
    local map_bucket = packed_bucket_of_hash(map_table, packed_hash(field))
    local canonical = redis.call('HGET', map_bucket, field)
    if not canonical then
      put_new(map_table, map_bucket, field, name)
    elseif rec_hget(records .. canonical, 'state') ~= 'live' then
      redis.call('HSET', map_bucket, field, name)
    end
    local r_refs, r_size = tonumber(refs), tonumber(size)
    objects, refs_sum, physical = objects + 1, refs_sum + r_refs, physical + r_size
    if logical + r_refs * r_size >= 2 ^ 52 then
      flush_logical()
    end
    logical = logical + r_refs * r_size
    reply = 1
  end
  replies[#replies + 1] = reply
end
if objects > 0 then
  packed_save_meta(record_table)
  packed_save_meta(map_table)
  redis.call('HINCRBY', KEYS[3], 'objects', objects)
  redis.call('HINCRBY', KEYS[3], 'references', refs_sum)
  redis.call('HINCRBY', KEYS[3], 'physical', packed_int(physical))
  flush_logical()
end
return replies
