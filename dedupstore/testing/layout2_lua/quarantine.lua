-- Snippet: quarantine(key, lifetime). Prepended to begin_save, commit_save,
-- begin_replace and begin_delete.
--
-- Keep a name out of use (key: its quarantine) for QUARANTINE_TTL (lifetime, ms) after a
-- holder's lease was seen to lapse: that holder (a writer, replacer or deleter that
-- stalled, or whose renewals could not reach us) may still be at work on the name. Set
-- once, at the first sight of the lapse, never extended. Returns nothing.
local function quarantine(key, lifetime)
  redis.call('SET', key, '1', 'PX', lifetime, 'NX')
end
