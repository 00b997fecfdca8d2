-- compare_counts (after packed.lua): each record named in ARGV against the rows' count of
-- it; reply only what differs, the most shared records and the batch's sums (ops compare
-- 10^6 names so). Records are read in place from their buckets (packed_counts).
--
-- KEYS[1] the buckets' growth state ({p}:l)   KEYS[2] the namespace's slot probe (see
-- read_records.lua)
-- ARGV[1] shared_from (records with at least this many references are "shared")
-- ARGV[2 .. n + 1] the n names   ARGV[n + 1 + i] how many rows hold the i-th name
-- Reply: {matched, differences, shared, sums}
--   matched      how many of the names have a record (any state)
--   differences  flat {i, state, refs, size, ...} for each record that is missing (state
--                nil), not live, or live with a count other than the rows'
--   shared       flat {i, refs, size, ...} for each live record with >= shared_from refs
--   sums         {records, refs, size high, size low, logical high, logical low}: size
--                and refs * size summed as multiples of 2^32 and rests (Lua's numbers are
--                doubles: exact below 2^53)

local TWO32 = 4294967296
local prefix = string.sub(KEYS[1], 1, string.find(KEYS[1], '}', 1, true))
local records = packed_table(prefix, 'r')
local shared_from = tonumber(ARGV[1])
local n = (#ARGV - 1) / 2
local differences, shared = {}, {}
local matched, refs_sum, size_high, size_low, logical_high, logical_low = 0, 0, 0, 0, 0, 0
for i = 1, n do
  local name = ARGV[i + 1]
  -- The bucket's address is not cached: each name of a batch is read once.
  local value = redis.call('HGET', packed_bucket_of_hash(records, packed_hash(name)), name)
  local state, refs, size = nil, 0, 0
  if value then
    state, refs, size = packed_counts(value)
  end
  if state then
    matched = matched + 1
    refs_sum = refs_sum + refs
    -- size = high * 2^32 + low, so refs * size = refs * high * 2^32 + refs * low: each
    -- product stays exact (below 2^53) for any size and up to 2^21 references.
    local high = math.floor(size / TWO32)
    local low = size - high * TWO32
    size_high, size_low = size_high + high, size_low + low
    local product = refs * low
    local carry = math.floor(product / TWO32)
    logical_high = logical_high + refs * high + carry
    logical_low = logical_low + (product - carry * TWO32)
  end
  if state ~= 'live' or refs ~= tonumber(ARGV[n + 1 + i]) then
    local k = #differences
    differences[k + 1], differences[k + 2] = i, state or false
    differences[k + 3], differences[k + 4] = refs, size
  end
  if state == 'live' and refs >= shared_from then
    local k = #shared
    shared[k + 1], shared[k + 2], shared[k + 3] = i, refs, size
  end
end
return {
  matched, differences, shared,
  {matched, refs_sum, size_high, size_low, logical_high, logical_low},
}
