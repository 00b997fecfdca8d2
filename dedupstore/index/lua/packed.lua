-- Snippet: layout 3's packed records and content maps (see docs/internals.md, "Layout 3").
-- Prepended to every script that touches an object record or a content map.
--
-- The scripts still name a record by its logical key {p}:o:<name> and a content map by
-- {p}:d:<digest> (declared in KEYS: same hash tag, same slot), but neither key is ever
-- created. rec_* and map_* map them onto many entries packed into small hashes (listpack
-- encoded below hash-max-listpack-entries/-value), found by linear hashing:
--   {p}:b:<i>  record buckets: field <name>, value the packed record (packed_encode)
--   {p}:m:<i>  map buckets: field the digest's first 10 bytes raw (hex digests; another
--              digest as it is), value the name. Every reader checks the full digest in
--              the record the map names, so a truncation collision costs a missed
--              deduplication, never a wrong hit.
--   {p}:h:<name>  a replacing or deleting record's holder: token, lease (a hash; short-lived)
--   {p}:l      the buckets' growth: per table ('r' records, 'm' maps) level, split
--              pointer and entry count.
-- A bucket address is h mod 2^(L+1) if h mod 2^L < s, else h mod 2^L (h: the first 32
-- bits of the field's SHA1). An entry added past PACKED_LOAD entries a bucket splits
-- bucket s (about half its entries move to bucket s + 2^L): amortised O(1) a write.
local PACKED_LOAD = 32
local packed_state_code = {live = 1, replacing = 2, deleting = 3}
local packed_state_name = {'live', 'replacing', 'deleting'}
local packed_cache = {}
local packed_meta = {}

local function packed_int(x)
  return string.format('%d', x)
end

-- {p}, kind letter, rest of a logical key {p}:<kind>:<rest> (a prefix holds no brace).
local function packed_split_key(key)
  local close = string.find(key, '}', 1, true)
  return string.sub(key, 1, close), string.sub(key, close + 2, close + 2),
      string.sub(key, close + 4)
end

local function packed_hash(field)
  return tonumber(string.sub(redis.sha1hex(field), 1, 8), 16)
end

-- Hex to raw bytes and back, in a few C calls each (a hit decodes and encodes one record).
local function packed_unhex(hex)
  local bytes, n = {}, 0
  for at = 1, string.len(hex), 8 do
    local chunk = string.sub(hex, at, at + 7)
    local word, count = tonumber(chunk, 16), string.len(chunk) / 2
    for i = count, 1, -1 do
      bytes[n + i] = word % 256
      word = math.floor(word / 256)
    end
    n = n + count
  end
  return string.char(unpack(bytes))
end

local function packed_hex(raw)
  return string.format(string.rep('%02x', string.len(raw)), string.byte(raw, 1, -1))
end

local function packed_is_hex_digest(digest)
  return string.len(digest) == 64 and not string.find(digest, '[^0-9a-f]')
end

-- The growth state of a table ('r' or 'm') of namespace prefix: both tables' read at once,
-- once per script.
local function packed_table(prefix, table_letter)
  local id = prefix .. table_letter
  local meta = packed_meta[id]
  if not meta then
    local f = redis.call('HMGET', prefix .. ':l', 'rl', 'rs', 'rn', 'ml', 'ms', 'mn')
    for i, letter in ipairs({'r', 'm'}) do
      local base = 3 * (i - 1)
      packed_meta[prefix .. letter] = {
        state_key = prefix .. ':l', letter = letter, addresses = {},
        bucket = prefix .. (letter == 'r' and ':b:' or ':m:'),
        level = tonumber(f[base + 1]) or 0, split = tonumber(f[base + 2]) or 0,
        count = tonumber(f[base + 3]) or 0,
      }
    end
    meta = packed_meta[id]
  end
  return meta
end

local function packed_bucket_of_hash(meta, h)
  local size = 2 ^ meta.level
  local b = h % size
  if b < meta.split then
    b = h % (2 * size)
  end
  return meta.bucket .. packed_int(b)
end

local function packed_bucket(meta, field)
  local bucket = meta.addresses[field]
  if not bucket then
    bucket = packed_bucket_of_hash(meta, packed_hash(field))
    meta.addresses[field] = bucket
  end
  return bucket
end

local function packed_save_meta(meta)
  local l = meta.letter
  redis.call('HSET', meta.state_key, l .. 'l', meta.level, l .. 's', meta.split, l .. 'n',
             meta.count)
end

-- Linear hashing: split bucket s once the table holds more than PACKED_LOAD entries a
-- bucket; the entries whose address is now s + 2^L move there.
local function packed_grow(meta)
  local size = 2 ^ meta.level
  if meta.count <= PACKED_LOAD * (size + meta.split) then
    return
  end
  local from = meta.bucket .. packed_int(meta.split)
  local target = meta.split + size
  local to = meta.bucket .. packed_int(target)
  local entries = redis.call('HGETALL', from)
  local moved, gone = {}, {}
  for i = 1, #entries, 2 do
    if packed_hash(entries[i]) % (2 * size) == target then
      moved[#moved + 1] = entries[i]
      moved[#moved + 1] = entries[i + 1]
      gone[#gone + 1] = entries[i]
    end
  end
  if #gone > 0 then
    redis.call('HSET', to, unpack(moved))
    redis.call('HDEL', from, unpack(gone))
  end
  meta.split = meta.split + 1
  meta.addresses = {}  -- some fields have moved
  if meta.split == size then
    meta.level, meta.split = meta.level + 1, 0
  end
end

local function packed_get(meta, field)
  return redis.call('HGET', packed_bucket(meta, field), field)
end

local function packed_put(meta, field, value)
  if redis.call('HSET', packed_bucket(meta, field), field, value) == 1 then
    meta.count = meta.count + 1
    packed_grow(meta)
    packed_save_meta(meta)
  end
end

local function packed_remove(meta, field)
  local removed = redis.call('HDEL', packed_bucket(meta, field), field)
  if removed == 1 then
    meta.count = meta.count - 1
    packed_save_meta(meta)
  end
  return removed
end

local function packed_number(value)
  local n = tonumber(value)
  if n and n == math.floor(n) then
    return n
  end
  return value
end

-- The packed value of record r (fields as strings, like the layout 2 hash) of name: a
-- flags byte, the digest's 32 raw bytes (a hex digest), t in milliseconds as 6 bytes
-- big-endian (when known; struct.pack '>I6'), then cmsgpack {size, refs, nlen, digest, state}, trailing
-- nils left out. Flags: bits 0-1 the state (1 live, 2 replacing, 3 deleting; 0: its text
-- is in the array), bit 2 refs = 1 (left out of the array), bit 3 a hex digest (raw
-- before the array; else its text is in the array), bit 4 a holder ({p}:h:<name>), bit
-- 5 t is there.
local function packed_encode(name, r)
  local digest = rawget(r, 'digest')
  local flags = packed_state_code[r.state] or 0
  local raw, text_digest = '', digest or ''
  if (digest == nil and r.raw) or (digest ~= nil and digest == r.raw_of) then
    -- Unchanged since it was decoded: its raw bytes are known.
    flags = flags + 8
    raw, text_digest = r.raw, false
  elseif packed_is_hex_digest(text_digest) then
    flags = flags + 8
    raw, text_digest = packed_unhex(text_digest), false
  end
  local refs = r.refs and packed_number(r.refs) or false
  if refs == 1 then
    flags, refs = flags + 4, false
  end
  if r.token or r.lease then
    flags = flags + 16
  end
  local nlen = false
  if r.nlen and tonumber(r.nlen) ~= string.len(name) then
    nlen = packed_number(r.nlen)
  end
  local t = ''
  local text_t = rawget(r, 't')
  if text_t ~= nil and text_t ~= r.t_of then
    flags = flags + 32
    t = struct.pack('>I6', math.floor(tonumber(text_t) * 1000))
  elseif r.t_ms then
    -- Unchanged since it was decoded.
    flags = flags + 32
    t = struct.pack('>I6', r.t_ms)
  end
  local a = {
    r.size and packed_number(r.size) or false, refs, nlen, text_digest,
    (flags % 4 == 0 and r.state) or false,
  }
  local n = #a
  while n > 0 and a[n] == false do
    a[n] = nil
    n = n - 1
  end
  return string.char(flags) .. raw .. t .. cmsgpack.pack(a)
end

local function packed_text(value)
  if type(value) == 'number' then
    return packed_int(value)
  end
  return value
end

-- A decoded record's hex digest and its text 't' are made from the raw bytes and the
-- milliseconds on first use (a hit compares the raw digest and rewrites 't' alone).
local packed_lazy = {
  __index = function(r, field)
    if field == 'digest' then
      local raw = rawget(r, 'raw')
      if raw then
        local digest = packed_hex(raw)
        rawset(r, 'digest', digest)
        rawset(r, 'raw_of', digest)
        return digest
      end
    elseif field == 't' then
      local ms = rawget(r, 't_ms')
      if ms then
        local t = string.format('%d.%03d', math.floor(ms / 1000), ms % 1000)
        rawset(r, 't', t)
        rawset(r, 't_of', t)
        return t
      end
    end
    return nil
  end,
}

local function packed_decode(name, value)
  local flags = string.byte(value, 1)
  local r, rest = setmetatable({}, packed_lazy), 2
  local hex, timed = flags % 16 >= 8, flags % 64 >= 32
  if hex and timed then
    r.raw, r.t_ms, rest = struct.unpack('>c32I6', value, 2)
  elseif hex then
    r.raw, rest = string.sub(value, 2, 33), 34
  elseif timed then
    r.t_ms, rest = struct.unpack('>I6', value, 2)
  end
  local a = cmsgpack.unpack(string.sub(value, rest))
  if a[1] then r.size = packed_text(a[1]) end
  if flags % 8 >= 4 then
    r.refs = '1'
  elseif a[2] then
    r.refs = packed_text(a[2])
  end
  r.nlen = a[3] and packed_text(a[3]) or packed_int(string.len(name))
  if a[4] then r.digest = a[4] end
  local code = flags % 4
  r.state = code > 0 and packed_state_name[code] or a[5] or nil
  if flags % 32 >= 16 then
    r.holder = true
  end
  return r
end

-- The record of logical key {p}:o:<name> as a table of strings, or nil.
local function rec_load(key)
  local cached = packed_cache[key]
  if cached ~= nil then
    return cached or nil
  end
  local prefix, _, name = packed_split_key(key)
  local value = packed_get(packed_table(prefix, 'r'), name)
  local r = false
  if value then
    r = packed_decode(name, value)
    if r.holder then
      local h = redis.call('HMGET', prefix .. ':h:' .. name, 'token', 'lease')
      r.token, r.lease = h[1] or nil, h[2] or nil
    end
  end
  packed_cache[key] = r
  return r or nil
end

local function rec_store(key, r)
  local prefix, _, name = packed_split_key(key)
  local holder_key = prefix .. ':h:' .. name
  if r.holder then
    redis.call('DEL', holder_key)
    r.holder = nil
  end
  if r.token or r.lease then
    local h = {}
    if r.token then h[#h + 1] = 'token'; h[#h + 1] = r.token end
    if r.lease then h[#h + 1] = 'lease'; h[#h + 1] = r.lease end
    redis.call('HSET', holder_key, unpack(h))
    r.holder = true
  end
  packed_put(packed_table(prefix, 'r'), name, packed_encode(name, r))
  packed_cache[key] = r
end

local function rec_exists(key)
  return rec_load(key) and 1 or 0
end

local function rec_hget(key, field)
  local r = rec_load(key)
  return r and r[field] or false
end

local function rec_hexists(key, field)
  local r = rec_load(key)
  return (r and r[field]) and 1 or 0
end

local function rec_hmget(key, ...)
  local r = rec_load(key)
  local reply = {}
  for i, field in ipairs({...}) do
    reply[i] = r and r[field] or false
  end
  return reply
end

local function rec_hset(key, ...)
  local r = rec_load(key) or {}
  local args = {...}
  for i = 1, #args, 2 do
    r[args[i]] = packed_text(args[i + 1])
  end
  rec_store(key, r)
end

local function rec_hdel(key, ...)
  local r = rec_load(key)
  if r then
    for _, field in ipairs({...}) do
      r[field] = nil
    end
    rec_store(key, r)
  end
end

local function rec_hincrby(key, field, by)
  local r = rec_load(key) or {}
  local value = (tonumber(r[field]) or 0) + by
  r[field] = packed_int(value)
  rec_store(key, r)
  return value
end

local function rec_del(key)
  local r = rec_load(key)
  if not r then
    return 0
  end
  local prefix, _, name = packed_split_key(key)
  packed_remove(packed_table(prefix, 'r'), name)
  if r.holder then
    redis.call('DEL', prefix .. ':h:' .. name)
  end
  packed_cache[key] = false
  return 1
end

-- The state, references and size of a packed record value, read in place (packed_encode's
-- layout) without decoding it to a table: what verify and reconcile compare, 10^6 a run.
local function packed_counts(value)
  local flags = string.byte(value, 1)
  local rest = 2
  if flags % 16 >= 8 then
    rest = 34
  end
  if flags % 64 >= 32 then
    rest = rest + 6
  end
  local a = cmsgpack.unpack(string.sub(value, rest))
  local code = flags % 4
  local state = code > 0 and packed_state_name[code] or a[5] or nil
  local refs = flags % 8 >= 4 and 1 or tonumber(a[2]) or 0
  return state, refs, tonumber(a[1]) or 0
end

-- A hit on the packed record value of name, read from its bucket: the value with one
-- more reference and 't' now, and the record's size; nil unless the record is live, has no
-- holder, holds the digest (hex, or its raw bytes raw) and its name fits maxlen (0: any).
-- The value is changed in place (packed_encode's layout), not decoded to a table and
-- encoded again: the one change a hit makes, on the path every duplicate upload takes.
local function packed_hit(name, value, hex, raw, maxlen)
  local flags = string.byte(value, 1)
  if flags % 4 ~= 1 or flags % 32 >= 16 then
    return nil
  end
  local hexed, timed = flags % 16 >= 8, flags % 64 >= 32
  local digest_raw, rest = '', 2
  if hexed then
    digest_raw, rest = string.sub(value, 2, 33), 34
  end
  if timed then
    rest = rest + 6
  end
  local a = cmsgpack.unpack(string.sub(value, rest))
  if (hexed and digest_raw ~= raw) or (not hexed and a[4] ~= hex) then
    return nil
  end
  if maxlen ~= 0 and (tonumber(a[3]) or string.len(name)) > maxlen then
    return nil
  end
  local refs
  if flags % 8 >= 4 then
    refs, flags = 1, flags - 4  -- refs = 1 was the flag; 2 goes into the array
  else
    refs = tonumber(a[2])
  end
  if a[1] == nil then
    a[1] = false
  end
  a[2] = refs + 1
  if not timed then
    flags = flags + 32
  end
  local now = redis.call('TIME')
  local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
  return string.char(flags) .. digest_raw .. struct.pack('>I6', ms) .. cmsgpack.pack(a),
      tonumber(a[1]) or 0
end

-- Whether record r holds the digest whose hex is hex and whose raw bytes are raw ('' for
-- a digest that is not 64 hex digits), without turning its raw bytes into hex.
local function packed_same_digest(r, hex, raw)
  local digest = rawget(r, 'digest')
  if digest == nil and r.raw then
    return r.raw == raw
  end
  return digest == hex
end

-- The map field of a digest: a hex digest's first 10 bytes (80 bits), raw; another
-- digest as it is. Among 10^9 digests some two share them with a chance of 4e-7.
local function packed_map_field(digest)
  if packed_is_hex_digest(digest) then
    return packed_unhex(string.sub(digest, 1, 20))
  end
  return digest
end

-- The name the content map {p}:d:<digest> holds, or false. It may belong to another
-- digest of the same first 10 bytes: callers check the digest of the record it names.
local function map_get(key)
  local prefix, _, digest = packed_split_key(key)
  return packed_get(packed_table(prefix, 'm'), packed_map_field(digest))
end

-- Set the map to name; with only_new, only where it holds nothing. Returns 1 if set.
local function map_set(key, name, only_new)
  local prefix, _, digest = packed_split_key(key)
  local meta, field = packed_table(prefix, 'm'), packed_map_field(digest)
  if only_new and packed_get(meta, field) then
    return 0
  end
  packed_put(meta, field, name)
  return 1
end

local function map_del(key)
  local prefix, _, digest = packed_split_key(key)
  return packed_remove(packed_table(prefix, 'm'), packed_map_field(digest))
end
