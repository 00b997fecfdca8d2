-- scan_buckets (after packed.lua): the records of a range of record buckets.
--
-- KEYS[1] the buckets' growth state ({p}:l)   KEYS[2] the namespace's slot probe (see
-- read_records.lua)   ARGV[1] first bucket   ARGV[2] buckets
-- Replies: {bucket count, name, digest, refs, state, size, t, name, ...}: the count now
-- (linear hashing only ever adds buckets, at the end), then six values per record.
-- A record moved by a split between two calls may be seen twice, never missed: a split
-- moves entries from bucket s to s + 2^L, a later bucket.
local prefix = string.sub(KEYS[1], 1, -3)
local meta = packed_table(prefix, 'r')
local count = 2 ^ meta.level + meta.split
local reply = {packed_int(count)}
local first = tonumber(ARGV[1])
local last = math.min(count, first + tonumber(ARGV[2])) - 1
for b = first, last do
  local entries = redis.call('HGETALL', meta.bucket .. packed_int(b))
  for i = 1, #entries, 2 do
    local r = packed_decode(entries[i], entries[i + 1])
    reply[#reply + 1] = entries[i]
    reply[#reply + 1] = r.digest or ''
    reply[#reply + 1] = r.refs or '0'
    reply[#reply + 1] = r.state or ''
    reply[#reply + 1] = r.size or '0'
    reply[#reply + 1] = r.t or '0'
  end
end
return reply
