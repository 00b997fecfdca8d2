-- Snippet: lease_held(claim_prefix, holder, lease). Prepended to begin_replace and
-- begin_delete.
--
-- A record in state 'replacing' or 'deleting' names its holder (token) and the digest
-- whose claim that holder keeps alive (lease; the record's own digest when absent). The
-- state counts only while that claim is still the holder's: a holder that died lets its
-- claim expire after claim_ttl, and the next replace or delete of the name takes the
-- record over. Returns: true while the claim claim_prefix .. lease is holder's.
local function lease_held(claim_prefix, holder, lease)
  return holder and redis.call('GET', claim_prefix .. lease) == holder
end
