-- compare_counts (after packed.lua): each record KEYS[i] against the rows' count of it; reply only what
-- differs, the most shared records and the batch's sums (ops compare 10^6 names so).
--
-- KEYS record keys   ARGV[1] shared_from (records with at least this many references
-- are "shared")   ARGV[1 + i] how many rows hold KEYS[i]
-- Reply: {matched, differences, shared, sums}
--   matched      how many of KEYS have a record (any state)
--   differences  flat {i, state, refs, size, ...} for each record that is missing (state
--                nil), not live, or live with a count other than the rows'
--   shared       flat {i, refs, size, ...} for each live record with >= shared_from refs
--   sums         {records, refs, size high, size low, logical high, logical low}: size
--                and refs * size summed as multiples of 2^32 and rests (Lua's numbers are
--                doubles: exact below 2^53)

-- Every record is read through this one function (the record layout lives here).
local function record_fields(key)
  return rec_hmget(key, 'state', 'refs', 'size')
end

local TWO32 = 4294967296
local shared_from = tonumber(ARGV[1])
local differences, shared = {}, {}
local matched, refs_sum, size_high, size_low, logical_high, logical_low = 0, 0, 0, 0, 0, 0
for i, key in ipairs(KEYS) do
  local f = record_fields(key)
  local state = f[1]
  local refs, size = tonumber(f[2]) or 0, tonumber(f[3]) or 0
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
  if state ~= 'live' or refs ~= tonumber(ARGV[i + 1]) then
    local n = #differences
    differences[n + 1], differences[n + 2] = i, state or false
    differences[n + 3], differences[n + 4] = refs, size
  end
  if state == 'live' and refs >= shared_from then
    local n = #shared
    shared[n + 1], shared[n + 2], shared[n + 3] = i, refs, size
  end
end
return {
  matched, differences, shared,
  {matched, refs_sum, size_high, size_low, logical_high, logical_low},
}
