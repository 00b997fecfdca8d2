"""The Redis dedup index: every decision is one Lua script, so one round trip, atomically."""

from __future__ import annotations

import inspect
import math
import re
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript, Script
from redis.retry import Retry

from dedupstore.exceptions import ClaimLost, DeleteOutcomeUnknown, IndexUnavailable
from dedupstore.index.base import (
    QUARANTINE_TTL,
    TOMBSTONE_TTL,
    CommitDecision,
    DeleteDecision,
    Index,
    ObjectRecord,
    ReplaceDecision,
    Reuse,
    SaveDecision,
    untracked_delete_name,
)

__all__ = [
    "ESCAPED_NAMESPACE_PREFIX",
    "RedisIndex",
    "eviction_policy_problem",
    "key_prefix",
    "read_eviction_policy",
]

T = TypeVar("T")

#: Replies of a server that is up but cannot take writes now: a read-only replica, one out
#: of memory (maxmemory with noeviction), a replica cut off from its master. redis-py maps
#: them by the reply's error code (READONLY, OOM, MASTERDOWN), which a script's own bugs
#: (WRONGTYPE, ERR ...) never carry, so those still surface as they are. Redis refuses a
#: script's write only while the script has written nothing yet (later writes are let
#: through to keep it atomic), so a refused script applied nothing.
_REFUSALS: tuple[type[Exception], ...] = tuple(
    getattr(redis.exceptions, name)
    for name in ("ReadOnlyError", "OutOfMemoryError", "MasterDownError")
    if hasattr(redis.exceptions, name)
)

# Mark the delete of a name finished (KEYS[n]: its tombstone) and number it after every
# save that began before (the delete counter): such a save's commit then writes again,
# since the delete may have removed (unpinned) the very object it wrote (see _COMMIT_SAVE).
_CLOSE_TOMBSTONE = """
local function close_tombstone(tombstone, counter, lifetime)
  local seq = redis.call('INCR', counter)
  redis.call('DEL', tombstone)
  redis.call('HSET', tombstone, 'state', 'deleted', 'seq', seq)
  redis.call('PEXPIRE', tombstone, lifetime)
  return seq
end
"""

# Keep a name out of use (KEYS[n]: its quarantine) for QUARANTINE_TTL after a holder's
# lease was seen to lapse: that holder (a writer, replacer or deleter that stalled, or
# whose renewals could not reach us) may still be at work on the name. Set once, at the
# first sight of the lapse, never extended.
_QUARANTINE = """
local function quarantine(key, lifetime)
  redis.call('SET', key, '1', 'PX', lifetime, 'NX')
end
"""

# KEYS: content map, claim, record of the requested name, delete counter, tombstone of
#       the requested name, quarantine of the requested name.
# ARGV: reuse, digest, token, claim ttl (ms), max length (0: none), record key prefix,
#       requested name, claim key prefix, tombstone lifetime (ms), overwrite ('1': the
#       save may replace the requested name, so begin_replace takes a dead deletion over),
#       quarantine lifetime (ms).
_BEGIN_SAVE = (
    _CLOSE_TOMBSTONE
    + _QUARANTINE
    + """
local reuse, digest, token = ARGV[1], ARGV[2], ARGV[3]
local ttl, maxlen, prefix = tonumber(ARGV[4]), tonumber(ARGV[5]), ARGV[6]
local function usable(key)
  local f = redis.call('HMGET', key, 'state', 'digest', 'nlen')
  return f[1] == 'live' and f[2] == digest and (maxlen == 0 or tonumber(f[3]) <= maxlen)
end
if reuse == 'content' then
  local name = redis.call('GET', KEYS[1])
  if name and usable(prefix .. name) then
    redis.call('HINCRBY', prefix .. name, 'refs', 1)
    return {'hit', name}
  end
elseif reuse == 'name' then
  if usable(KEYS[3]) then
    redis.call('HINCRBY', KEYS[3], 'refs', 1)
    return {'hit', ARGV[7]}
  end
end
local holder = redis.call('GET', KEYS[2])
if not holder or holder == token then
  redis.call('SET', KEYS[2], token, 'PX', ttl)
  local r = redis.call('HMGET', KEYS[3], 'state', 'token', 'lease', 'digest')
  if ARGV[10] == '0' and r[1] == 'deleting'
      and (not r[2] or redis.call('GET', ARGV[8] .. (r[3] or r[4])) ~= r[2]) then
    -- An interrupted deletion of the requested name (its deleter died, or could not
    -- record its delete): it has no references left. Finish it rather than let our commit
    -- revive it, so the deleter's retry cannot delete what we store under the name.
    redis.call('DEL', KEYS[3])
    if redis.call('HGET', KEYS[5], 'state') ~= 'deleting' then
      close_tombstone(KEYS[5], KEYS[4], tonumber(ARGV[9]))
    end
    if r[2] then
      -- Its deleter was not seen to finish: it may still delete whatever the name holds.
      quarantine(KEYS[6], tonumber(ARGV[11]))
    end
  end
  -- How many deletes had finished: commit_save compares the name's tombstone.
  return {'claimed', redis.call('GET', KEYS[4]) or '0'}
end
return {'wait', tostring(redis.call('PTTL', KEYS[2]))}
"""
)

# KEYS: record of the stored name, content map, claim, tombstone of the stored name,
#       delete counter, receipt, reservation of the stored name, quarantine of the
#       stored name.
# ARGV: digest, token, size, name length, record key prefix, stored name, map key prefix,
#       replacing ('1': the save replaced the name after BEGIN_REPLACE, else '0'),
#       untracked deletes finished at BEGIN_SAVE, milliseconds since then, tombstone
#       lifetime (ms), claim key prefix, receipt lifetime (ms), quarantine lifetime (ms).
#
# A commit leaves a receipt under the save's token, so running the script again with the
# same token (its reply was lost) answers as the first run did instead of counting a
# second reference.
_COMMIT_SAVE = (
    _CLOSE_TOMBSTONE
    + _QUARANTINE
    + """
local receipt = redis.call('GET', KEYS[6])
if receipt then
  return cjson.decode(receipt)
end
local digest, token = ARGV[1], ARGV[2]
local f = redis.call('HMGET', KEYS[1], 'state', 'digest', 'refs', 'token', 'lease')
local state, previous = f[1], f[2]
local reserver = redis.call('HGET', KEYS[7], 'token')
if reserver and reserver ~= token then
  -- Another save reserved the name: ours lapsed long ago, and our write may have landed
  -- over theirs. Record nothing under their name.
  return {'lost', 'save'}
end
if ARGV[8] == '1' then
  if state ~= 'replacing' or f[4] ~= token then
    -- We stalled past our lease and another process took the record over (and may have
    -- committed already): the name is theirs, record nothing. Say whose: a save's, a
    -- delete's under way, or nobody's (a delete removed it).
    if not state then
      return {'lost', 'none'}
    end
    return {'lost', state == 'deleting' and 'delete' or 'save'}
  end
  -- We held the record since before our write: no untracked delete could touch the name.
else
  if redis.call('EXISTS', KEYS[8]) == 1 then
    -- A holder of the name stalled or died at work on it (a delete, say): it may still
    -- delete what we wrote. Store it under another name (or wait, for a name we cannot
    -- choose).
    return {'relocate', redis.call('GET', KEYS[5]) or '0', tostring(redis.call('PTTL', KEYS[8]))}
  end
  -- Did a delete of this name that the index did not track overlap our inner write? It
  -- may have deleted (unpinned) the very object we wrote: never record a name whose
  -- object may be gone.
  local since = tonumber(ARGV[9])
  if state == 'replacing' and f[4] then
    -- A live replacer holds the name: it deleted the old object, which is why the name
    -- looked free to us, and writes its own now. Wait for it (it commits, or gives the
    -- name up when its write lands elsewhere) rather than take its record over.
    local lease = ARGV[12] .. (f[5] or previous)
    if redis.call('GET', lease) == f[4] then
      return {'wait', tostring(redis.call('PTTL', lease))}
    end
  end
  if state == 'deleting' then
    -- A tracked delete holds the name. Its claim on the record's digest does not keep us
    -- out when we claimed another digest for the same object (a content-addressed inner
    -- storage after a key rotation): wait for it like for an untracked delete's tombstone.
    local lease = ARGV[12] .. (f[5] or previous)
    if f[4] and redis.call('GET', lease) == f[4] then
      return {'wait', tostring(redis.call('PTTL', lease))}
    end
    -- Its deleter died (or could not record its delete): whether it deleted our object is
    -- unknown. Finish the deletion (no references are left) and write again.
    redis.call('DEL', KEYS[1])
    if f[4] then
      quarantine(KEYS[8], tonumber(ARGV[14]))
    end
    return {'rewrite', tostring(close_tombstone(KEYS[4], KEYS[5], tonumber(ARGV[11])))}
  end
  local t = redis.call('HMGET', KEYS[4], 'state', 'token', 'lease', 'seq')
  if t[1] == 'deleting' then
    local lease = ARGV[12] .. t[3]
    if redis.call('GET', lease) == t[2] then
      return {'wait', tostring(redis.call('PTTL', lease))}
    end
    -- Its deleter died: whether it deleted our object is unknown. Close its tombstone
    -- and write again (elsewhere: it may still delete what the name holds).
    quarantine(KEYS[8], tonumber(ARGV[14]))
    return {'rewrite', tostring(close_tombstone(KEYS[4], KEYS[5], tonumber(ARGV[11])))}
  end
  local finished = redis.call('GET', KEYS[5]) or '0'
  if t[1] == 'deleted' and tonumber(t[4]) > since then
    return {'rewrite', finished}
  end
  if 2 * tonumber(ARGV[10]) >= tonumber(ARGV[11]) then
    -- A write this long may have outlived the tombstone that would tell (a 'deleted' one,
    -- or the 'deleting' one of a deleter that died): record nothing yet. The saver checks
    -- that its object still exists, then commits again with since = the count now: a
    -- delete of the name that finishes after this reply is numbered above it.
    return {'verify', finished}
  end
end
local refs = 1
if state == 'live' or (state == 'replacing' and ARGV[8] ~= '1') then
  -- Either the same content again (a content-addressed inner storage returns the same
  -- name) or an inner storage that overwrote a live object behind our back: keep every
  -- existing reference so nothing is deleted early. A dead replacer's record still counts
  -- the reference of the name it was replacing (its holder still names it).
  refs = tonumber(f[3]) + 1
end
if previous and previous ~= digest and redis.call('GET', ARGV[7] .. previous) == ARGV[6] then
  redis.call('DEL', ARGV[7] .. previous)
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'digest', digest, 'refs', refs, 'state', 'live',
           'size', ARGV[3], 'nlen', ARGV[4])
local canonical = redis.call('GET', KEYS[2])
if not canonical or redis.call('HGET', ARGV[5] .. canonical, 'state') ~= 'live' then
  redis.call('SET', KEYS[2], ARGV[6])
end
if redis.call('GET', KEYS[3]) == token then
  redis.call('DEL', KEYS[3])
end
if reserver then
  redis.call('DEL', KEYS[7])
end
redis.call('SET', KEYS[6], cjson.encode({'committed', tostring(refs)}), 'PX', tonumber(ARGV[13]))
return {'committed', tostring(refs)}
"""
)

# KEYS: claim. ARGV: token.
_RELEASE_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: reservation, record, quarantine of the name. ARGV: token, digest of the caller's
# claim (the reservation's lease), claim key prefix, quarantine lifetime (ms).
#
# A reservation keeps a free name for one save's inner write: no other save writes the
# name meanwhile (an inner storage such as S3 would let the later write replace the
# earlier). One whose holder's lease lapsed is never taken over (the holder may still be
# writing): it is marked lapsed and lives QUARANTINE_TTL more, unless its holder commits.
_RESERVE_NAME = """
if redis.call('EXISTS', KEYS[2]) == 1 or redis.call('EXISTS', KEYS[3]) == 1 then
  return 0
end
local r = redis.call('HMGET', KEYS[1], 'token', 'lease', 'lapsed')
if r[1] and r[1] ~= ARGV[1] then
  if not r[3] and redis.call('GET', ARGV[3] .. r[2]) ~= r[1] then
    redis.call('HSET', KEYS[1], 'lapsed', '1')
    redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[4]))
  end
  return 0
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'token', ARGV[1], 'lease', ARGV[2])
return 1
"""

# KEYS: reservation. ARGV: token.
_RELEASE_NAME = """
if redis.call('HGET', KEYS[1], 'token') == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: claim [, tombstone of the name an untracked delete holds with that claim].
# ARGV: token, ttl (ms) [, tombstone lifetime (ms)].
#
# The 'deleting' tombstone of an untracked delete lives as long as its lease plus the
# lifetime of a 'deleted' one: renewed with the lease, it outlasts a dead deleter's last
# possible inner delete by TOMBSTONE_TTL, like the tombstone of a finished delete.
_REFRESH_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  if KEYS[2] then
    local t = redis.call('HMGET', KEYS[2], 'state', 'token')
    if t[1] == 'deleting' and t[2] == ARGV[1] then
      redis.call('PEXPIRE', KEYS[2], ARGV[3])
    end
  end
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

# A record in state "replacing" or "deleting" names its holder (token) and the digest whose
# claim that holder keeps alive (lease; the record's own digest when absent). The state
# counts only while that claim is still the holder's: a holder that died lets its claim
# expire after claim_ttl, and the next replace or delete of the name takes the record over.
_LEASE_HELD = """
local function lease_held(claim_prefix, holder, lease)
  return holder and redis.call('GET', claim_prefix .. lease) == holder
end
"""

# KEYS: record, quarantine. ARGV: token, map key prefix, name, claim key prefix, digest
# of the caller's claim (its lease), quarantine lifetime (ms).
_BEGIN_REPLACE = (
    _LEASE_HELD
    + _QUARANTINE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'refs', 'digest', 'token', 'lease')
if not f[1] then
  return 'absent'
end
if redis.call('EXISTS', KEYS[2]) == 1 then
  return 'quarantined'
end
if f[1] == 'live' then
  if tonumber(f[2]) > 1 then
    return 'shared'
  end
elseif f[4] ~= ARGV[1] then
  if lease_held(ARGV[4], f[4], f[5] or f[3]) then
    return 'wait'
  end
  if f[4] then
    -- Its replacer or deleter was not seen to finish: it may still write or delete the
    -- name. Keep the name out of use until its worst case has passed.
    quarantine(KEYS[2], tonumber(ARGV[6]))
    return 'quarantined'
  end
end
-- A live record with one reference, or one whose deleter gave up (seen to finish): ours.
redis.call('HSET', KEYS[1], 'state', 'replacing', 'token', ARGV[1], 'lease', ARGV[5])
if redis.call('GET', ARGV[2] .. f[3]) == ARGV[3] then
  redis.call('DEL', ARGV[2] .. f[3])
end
return 'replace'
"""
)

# KEYS: record. ARGV: token, inner deleted ('1' or '0'), map key prefix, name.
_ABORT_REPLACE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'token', 'digest', 'refs')
if f[1] ~= 'replacing' or f[2] ~= ARGV[1] then
  return 0
end
if ARGV[2] == '1' then
  redis.call('DEL', KEYS[1])
elseif f[4] == '0' then
  -- We had taken over a dead deleter's record: no reference comes back, it is an
  -- interrupted deletion again, which the next delete() of the name completes.
  redis.call('HSET', KEYS[1], 'state', 'deleting')
  redis.call('HDEL', KEYS[1], 'token', 'lease')
else
  redis.call('HSET', KEYS[1], 'state', 'live')
  redis.call('HDEL', KEYS[1], 'token', 'lease')
  redis.call('SET', ARGV[3] .. f[3], ARGV[4], 'NX')
end
return 1
"""

# KEYS: record, tombstone, receipt, quarantine. ARGV: token, ttl (ms), map key prefix,
# claim key prefix, name, receipt lifetime (ms), tombstone lifetime (ms), quarantine
# lifetime (ms).
#
# A decision that changed something leaves a receipt under the call's token, so running
# the script again with the same token (its reply was lost) returns that decision instead
# of dropping a second reference.
_BEGIN_DELETE = (
    _LEASE_HELD
    + _QUARANTINE
    + """
local receipt = redis.call('GET', KEYS[3])
if receipt then
  local reply = cjson.decode(receipt)
  if reply[1] == 'delete' or reply[1] == 'unknown' then
    -- The lease our first run took (the claim reply[2]) was renewed by nobody while its
    -- reply was lost: if it lapsed, a save or delete may have taken the name over, and
    -- the inner object now is theirs. Go on only while the record (or tombstone) is
    -- still ours and nobody else claims the lease; then renew it for the inner delete.
    local held = redis.call('HMGET', reply[1] == 'delete' and KEYS[1] or KEYS[2], 'state', 'token')
    local claim = redis.call('GET', ARGV[4] .. reply[2])
    if held[1] ~= 'deleting' or held[2] ~= ARGV[1] or (claim and claim ~= ARGV[1]) then
      return {'done', reply[2], '0', '0'}
    end
    redis.call('SET', ARGV[4] .. reply[2], ARGV[1], 'PX', tonumber(ARGV[2]))
    if reply[1] == 'unknown' then
      redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[7]))
    end
  end
  return reply
end
local function decided(reply)
  redis.call('SET', KEYS[3], cjson.encode(reply), 'PX', tonumber(ARGV[6]))
  return reply
end
local f = redis.call('HMGET', KEYS[1], 'state', 'refs', 'digest', 'token', 'lease')
local state, digest = f[1], f[3]
if not state then
  -- Untracked: stored before the wrapper, deleted already, or the index was lost. A save
  -- of this very name may have written its object and not committed yet: hold a tombstone
  -- on the name while the inner object is deleted, so that save learns of it (see
  -- _COMMIT_SAVE). Its lease is a claim of its own, named after the token and the name
  -- (a renewal of the lease renews the tombstone too: see _REFRESH_CLAIM); a dead
  -- deleter's is taken over.
  local t = redis.call('HMGET', KEYS[2], 'state', 'token', 'lease')
  if t[1] == 'deleting' and t[2] ~= ARGV[1] then
    if lease_held(ARGV[4], t[2], t[3]) then
      return {'wait', '', '0', tostring(redis.call('PTTL', ARGV[4] .. t[3]))}
    end
    -- A dead (or stalled) deleter's: it may still delete whatever the name holds.
    quarantine(KEYS[4], tonumber(ARGV[8]))
  end
  local lease = 'untracked-delete:' .. ARGV[1] .. ':' .. ARGV[5]
  redis.call('SET', ARGV[4] .. lease, ARGV[1], 'PX', tonumber(ARGV[2]))
  redis.call('DEL', KEYS[2])
  redis.call('HSET', KEYS[2], 'state', 'deleting', 'token', ARGV[1], 'lease', lease)
  redis.call('PEXPIRE', KEYS[2], tonumber(ARGV[2]) + tonumber(ARGV[7]))
  return decided({'unknown', lease, '0', '0'})
end
if state == 'replacing' and f[4] ~= ARGV[1] then
  local lease = f[5] or digest
  if lease_held(ARGV[4], f[4], lease) then
    return {'wait', digest, '0', tostring(redis.call('PTTL', ARGV[4] .. lease))}
  end
  -- The replacer died (or stalled: it may still write the name): the name still has its
  -- one reference, which this delete drops.
  quarantine(KEYS[4], tonumber(ARGV[8]))
end
if state == 'deleting' and f[4] and f[4] ~= ARGV[1]
    and not lease_held(ARGV[4], f[4], f[5] or digest) then
  -- An interrupted deletion whose deleter was not seen to finish: it may still delete
  -- whatever the name holds once it is saved again.
  quarantine(KEYS[4], tonumber(ARGV[8]))
end
if state == 'live' and tonumber(f[2]) > 1 then
  return decided({'kept', digest, tostring(redis.call('HINCRBY', KEYS[1], 'refs', -1)), '0'})
end
-- The last reference, or the retry of an interrupted deletion: hold the content's claim
-- while the inner object is deleted, so no save of the same content writes meanwhile
-- (a content-addressed inner storage would hand it the very object being deleted).
-- That claim is also this deletion's lease (see _LEASE_HELD).
local claim = ARGV[4] .. digest
local holder = redis.call('GET', claim)
if holder and holder ~= ARGV[1] then
  return {'wait', digest, '0', tostring(redis.call('PTTL', claim))}
end
redis.call('SET', claim, ARGV[1], 'PX', tonumber(ARGV[2]))
redis.call('HSET', KEYS[1], 'state', 'deleting', 'refs', 0, 'token', ARGV[1], 'lease', digest)
if redis.call('GET', ARGV[3] .. digest) == ARGV[5] then
  redis.call('DEL', ARGV[3] .. digest)
end
return decided({'delete', digest, '0', '0'})
"""
)

# KEYS: record, claim, tombstone, delete counter. ARGV: token, tombstone lifetime (ms).
_COMMIT_DELETE = (
    _CLOSE_TOMBSTONE
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'token')
local t = redis.call('HMGET', KEYS[3], 'state', 'token')
if f[1] == 'deleting' and f[2] == ARGV[1] then
  -- A tracked delete leaves a numbered tombstone too: a save that wrote the same object
  -- under another digest (a content-addressed inner storage after a key rotation) and
  -- commits after us must write again (see _COMMIT_SAVE).
  redis.call('DEL', KEYS[1])
  if t[1] ~= 'deleting' then
    close_tombstone(KEYS[3], KEYS[4], tonumber(ARGV[2]))
  end
elseif t[1] == 'deleting' and t[2] == ARGV[1] then
  -- Number this delete after every save that began before it finished: such a save's
  -- commit then writes again (see _COMMIT_SAVE).
  close_tombstone(KEYS[3], KEYS[4], tonumber(ARGV[2]))
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""
)


# KEYS: record, claim (the decision's lease), tombstone, content map of the digest.
# ARGV: token, refs, name, digest ('' for none), size.
# Replies 1 when the delete was cancelled, 0 when the token no longer holds the name.
_CANCEL_DELETE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'token')
if f[1] == 'deleting' and f[2] == ARGV[1] then
  redis.call('HSET', KEYS[1], 'state', 'live', 'refs', ARGV[2])
  redis.call('HDEL', KEYS[1], 'token', 'lease')
  redis.call('SET', KEYS[4], ARGV[3], 'NX')
elseif not f[1] then
  local t = redis.call('HMGET', KEYS[3], 'state', 'token')
  if t[1] ~= 'deleting' or t[2] ~= ARGV[1] then
    return 0
  end
  redis.call('DEL', KEYS[3])
  if ARGV[4] ~= '' then
    redis.call('HSET', KEYS[1], 'digest', ARGV[4], 'refs', ARGV[2], 'state', 'live',
               'size', ARGV[5], 'nlen', string.len(ARGV[3]))
    redis.call('SET', KEYS[4], ARGV[3], 'NX')
  end
else
  return 0
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""

#: What a save whose hit (or claim) was sent, with its reply lost, may have done.
_SAVE_MAYBE_COUNTED = (
    "The save was sent, but its reply was lost: it may have counted one reference to an "
    "object already stored (a hit) that nobody holds, which only delays a deletion. No name "
    "was returned and nothing was written."
)


def read_eviction_policy(client: redis.Redis) -> str | None:
    """Return the server's ``maxmemory-policy``, or None if it will not say.

    ``CONFIG GET`` first; where ``CONFIG`` is disabled or renamed (managed services, or
    ``rename-command CONFIG ""``), the ``maxmemory_policy`` field of ``INFO memory``.
    Connection errors propagate.
    """
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.ResponseError:
        reply = {}
    value = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
    if value is None:
        try:
            info = client.info("memory")
        except redis.ResponseError:
            return None
        value = info.get("maxmemory_policy")
    if isinstance(value, bytes):
        value = value.decode()
    return str(value) if value is not None else None


def eviction_policy_problem(policy: str | None, display_url: str) -> str | None:
    """Say why an index with this ``maxmemory-policy`` cannot run, or None if it can."""
    if policy == "noeviction":
        return None
    if policy is None:
        return (
            f"dedupstore: the Redis server of the index at {display_url} reports no "
            "maxmemory-policy (neither CONFIG GET nor INFO memory answered): the index must "
            "know that Redis never evicts its keys. Allow INFO (or CONFIG GET) for this user, "
            "and set maxmemory-policy noeviction."
        )
    return (
        f"dedupstore: the Redis server of the index at {display_url} has maxmemory-policy "
        f"{policy!r}: it may evict index keys (records, tombstones, receipts) when memory runs "
        "short, and a lost record makes a later delete remove an object other names still "
        "use. Set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction and "
        "in redis.conf, or the parameter group of a managed service), or give the index a "
        "Redis database of its own that never evicts."
    )


# KEYS: content map of the digest. ARGV: name whose object is gone.
_FORGET_CONTENT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class _NotRun(Exception):
    """The script certainly did not run: no connection, or the server refused its write."""


class _ReplyLost(Exception):
    """The script was sent and no reply came: it may or may not have run."""


def _refused(exc: redis.ResponseError) -> bool:
    """Whether a reply refuses a command that therefore did nothing.

    A write refused (a redis-py without a class for its code), or ``BUSY``: the server runs
    another script past ``busy-reply-threshold`` and rejects every command meanwhile.
    """
    return str(exc).startswith(("OOM ", "READONLY ", "MASTERDOWN ", "BUSY "))


def _get_connection_args(pool: redis.ConnectionPool) -> tuple[str, ...]:
    """Return the arguments ``pool.get_connection`` needs.

    redis-py before 5.3 requires a command name (and ignores it); later versions take none
    and warn when given one.
    """
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    required = parameter is not None and parameter.default is inspect.Parameter.empty
    return ("EVALSHA",) if required else ()


#: Namespaces that could be confused with another are keyed under this prefix (and hex).
ESCAPED_NAMESPACE_PREFIX = "dedupstore-hex-"
#: A key is ``<namespace>:<kind letter>:<rest>``: a namespace containing ``:<letter>:`` or
#: ending in ``:<letter>`` could be read as a shorter namespace's key of some kind.
_CONFUSABLE = re.compile(r":[a-z](?::|$)")


def key_prefix(namespace: str) -> str:
    """Return the prefix of ``namespace``'s keys; no two namespaces share one.

    Every key reads ``<prefix>:<kind letter>:<name or digest>``, so the first
    ``:<letter>:`` of a key ends its prefix as long as no prefix contains ``:<letter>:``
    or ends in ``:<letter>``. Such a namespace (``media:o:avatars`` would otherwise reach
    ``media``'s record of ``avatars:o:pic.png``), or one that starts like an escaped
    prefix, is keyed under ``dedupstore-hex-`` and its UTF-8 in hex instead. Every
    other namespace, the default ones included, keeps its keys as they always were.
    """
    if _CONFUSABLE.search(namespace) or namespace.startswith(ESCAPED_NAMESPACE_PREFIX):
        return ESCAPED_NAMESPACE_PREFIX + namespace.encode("utf-8", "surrogatepass").hex()
    return namespace


def _milliseconds(seconds: float) -> int:
    """Return a claim lifetime in whole milliseconds, at least 1: Redis refuses ``PX 0``."""
    return max(1, math.ceil(seconds * 1000))


class RedisIndex(Index):
    """A dedup index in Redis (``redis://``, ``rediss://`` or ``unix://``)."""

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        display_url: str,
        socket_timeout: float = 5.0,
        wait_timeout: float = 60.0,
    ) -> None:
        super().__init__(namespace)
        self.display_url = display_url
        #: How long a delete whose reply was lost keeps asking what became of it.
        self.wait_timeout = wait_timeout
        #: How long a receipt stays: well beyond the retries of the call that left it.
        self._receipt_ttl = max(60.0, 2 * wait_timeout)
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
            # Never resend a command whose reply was lost (redis-py's from_url does not
            # retry today; a Redis() built without a pool retries 3 times): a resent save
            # counts a second reference, a resent delete drops one.
            retry=Retry(NoBackoff(), 0),
        )
        prefix = key_prefix(namespace)
        self._record_prefix = f"{prefix}:o:"
        self._map_prefix = f"{prefix}:d:"
        self._claim_prefix = f"{prefix}:c:"
        self._tombstone_prefix = f"{prefix}:t:"
        self._untracked_deletes = f"{prefix}:u"
        self._receipt_prefix = f"{prefix}:r:"
        self._reservation_prefix = f"{prefix}:n:"
        self._quarantine_prefix = f"{prefix}:q:"
        self._initialised_key = f"{prefix}:i"
        self._get_connection_args = _get_connection_args(self._client.connection_pool)
        #: Whether the server was seen to run with maxmemory-policy noeviction.
        self._policy_checked = False
        register = self._client.register_script
        self._begin_save = register(_BEGIN_SAVE)
        self._commit_save = register(_COMMIT_SAVE)
        self._release_claim = register(_RELEASE_CLAIM)
        self._refresh_claim = register(_REFRESH_CLAIM)
        self._reserve_name = register(_RESERVE_NAME)
        self._release_name = register(_RELEASE_NAME)
        self._begin_replace = register(_BEGIN_REPLACE)
        self._abort_replace = register(_ABORT_REPLACE)
        self._begin_delete = register(_BEGIN_DELETE)
        self._commit_delete = register(_COMMIT_DELETE)
        self._forget_content = register(_FORGET_CONTENT)
        self._cancel_delete = register(_CANCEL_DELETE)

    @property
    def client(self) -> redis.Redis:
        """Return the underlying redis-py client."""
        return self._client

    def _run(self, script: Script | AsyncScript, keys: list[str], args: list[Any]) -> Any:
        return self._guard(lambda: script(keys=keys, args=args))

    def _check_eviction_policy(self) -> None:
        """Refuse a server that may evict keys (``ImproperlyConfigured``), once per index."""
        problem = eviction_policy_problem(read_eviction_policy(self._client), self.display_url)
        if problem:
            raise ImproperlyConfigured(problem)
        self._policy_checked = True

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            if not self._policy_checked:
                self._check_eviction_policy()
            return call()
        except (redis.ConnectionError, redis.TimeoutError, *_REFUSALS) as exc:
            raise IndexUnavailable(self.display_url, exc) from exc
        except redis.ResponseError as exc:
            if _refused(exc):
                raise IndexUnavailable(self.display_url, exc) from exc
            raise

    def _run_once(self, script: Script | AsyncScript, keys: list[str], args: list[Any]) -> Any:
        """Run ``script`` on one connection, telling "did not run" from "reply lost"."""
        if not self._policy_checked:
            try:
                self._check_eviction_policy()
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                raise _NotRun(exc) from exc
        pool = self._client.connection_pool
        try:
            # Connects (or reconnects a connection the server closed) before sending.
            connection = pool.get_connection(*self._get_connection_args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _NotRun(exc) from exc
        except redis.ResponseError as exc:
            if _refused(exc):  # BUSY while the connection was set up
                raise _NotRun(exc) from exc
            raise
        try:
            try:
                return self._evalsha(connection, script, keys, args)
            except redis.exceptions.NoScriptError:
                # A restarted or flushed server: the script did not run; load it.
                self._client.script_load(script.script)
                return self._evalsha(connection, script, keys, args)
        except redis.BusyLoadingError as exc:
            # The server is still loading its data set: it ran nothing.
            raise _NotRun(exc) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            connection.disconnect()  # a late reply must never be read as another's
            raise _ReplyLost(exc) from exc
        except redis.ResponseError as exc:
            # A refused script applied nothing (see _REFUSALS), nor did one answered BUSY.
            if isinstance(exc, _REFUSALS) or _refused(exc):
                raise _NotRun(exc) from exc
            raise
        finally:
            pool.release(connection)

    def _evalsha(self, connection: Any, script: Any, keys: list[str], args: list[Any]) -> Any:
        connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return self._client.parse_response(connection, "EVALSHA")

    def _run_reporting_sent(
        self, script: Script | AsyncScript, keys: list[str], args: list[Any]
    ) -> Any:
        """Run ``script`` once; a lost reply raises ``IndexUnavailable`` with ``sent=True``.

        For a save's first call: a hit counts a reference in the script, so a reply lost
        after it ran must not be reported as a call that did nothing.
        """
        try:
            return self._run_once(script, keys, args)
        except _NotRun as exc:
            raise IndexUnavailable(self.display_url, exc.__cause__) from exc.__cause__
        except _ReplyLost as exc:
            raise IndexUnavailable(
                self.display_url, exc.__cause__, _SAVE_MAYBE_COUNTED, sent=True
            ) from exc.__cause__

    def _run_retrying(
        self,
        script: Script | AsyncScript,
        keys: list[str],
        args: list[Any],
        unknown: Callable[[BaseException], IndexUnavailable],
        not_run: Callable[[BaseException | None], IndexUnavailable] | None = None,
    ) -> Any:
        """Run an idempotent script; after a lost reply, run it again until it answers.

        Only for scripts that running twice cannot harm (a receipt, or a token check, makes
        a second run a no-op that answers like the first). A first attempt that certainly
        did not run raises ``not_run(cause)`` at once, or, without ``not_run``, is retried
        like a lost reply. Gives up after ``wait_timeout`` with ``unknown(first error)``
        if any reply was lost, else with ``IndexUnavailable``.
        """
        lost: BaseException | None = None
        refused: BaseException | None = None
        try:
            return self._run_once(script, keys, args)
        except _NotRun as exc:
            if not_run is not None:
                raise not_run(exc.__cause__) from exc.__cause__
            refused = exc.__cause__
        except _ReplyLost as exc:
            lost = exc.__cause__
        deadline = time.monotonic() + self.wait_timeout
        pause = 0.01
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)
            try:
                return self._run_once(script, keys, args)
            except _NotRun as exc:
                refused = exc.__cause__
            except _ReplyLost as exc:
                lost = lost or exc.__cause__
        if lost is not None:
            raise unknown(lost) from lost
        raise IndexUnavailable(self.display_url, refused) from refused

    def begin_save(
        self,
        *,
        digest: str,
        reuse: Reuse,
        name: str,
        max_length: int | None,
        token: str,
        claim_ttl: float,
        overwrite: bool = False,
    ) -> SaveDecision:
        action, value = self._run_reporting_sent(
            self._begin_save,
            [
                self._map_prefix + digest,
                self._claim_prefix + digest,
                self._record_prefix + name,
                self._untracked_deletes,
                self._tombstone_prefix + name,
                self._quarantine_prefix + name,
            ],
            [
                reuse,
                digest,
                token,
                _milliseconds(claim_ttl),
                max_length or 0,
                self._record_prefix,
                name,
                self._claim_prefix,
                _milliseconds(TOMBSTONE_TTL),
                "1" if overwrite else "0",
                _milliseconds(QUARANTINE_TTL),
            ],
        )
        action = action.decode()
        if action == "hit":
            return SaveDecision("hit", name=value.decode())
        if action == "claimed":
            return SaveDecision("claimed", since=int(value))
        return SaveDecision("wait", retry_after=max(int(value), 1) / 1000)

    def commit_save(
        self,
        *,
        digest: str,
        token: str,
        name: str,
        size: int,
        replacing: bool = False,
        since: int = 0,
        elapsed: float = 0.0,
    ) -> CommitDecision:
        action, value, *rest = self._run_retrying(
            self._commit_save,
            [
                self._record_prefix + name,
                self._map_prefix + digest,
                self._claim_prefix + digest,
                self._tombstone_prefix + name,
                self._untracked_deletes,
                self._receipt_prefix + token,
                self._reservation_prefix + name,
                self._quarantine_prefix + name,
            ],
            [
                digest,
                token,
                size,
                len(name),
                self._record_prefix,
                name,
                self._map_prefix,
                "1" if replacing else "0",
                since,
                _milliseconds(elapsed),
                _milliseconds(TOMBSTONE_TTL),
                self._claim_prefix,
                _milliseconds(self._receipt_ttl),
                _milliseconds(QUARANTINE_TTL),
            ],
            # After a lost reply the commit runs again with the same token: its receipt
            # (or, before it committed, the same checks) answers as the first run did.
            lambda lost: IndexUnavailable(self.display_url, lost, sent=True),
            lambda cause: IndexUnavailable(self.display_url, cause),
        )
        action = action.decode()
        if action == "lost":
            raise ClaimLost(repr(name), value.decode())
        if action == "wait":
            return CommitDecision("wait", retry_after=max(int(value), 1) / 1000)
        if action in ("rewrite", "verify"):
            return CommitDecision(action, since=int(value))
        if action == "relocate":
            return CommitDecision(
                "relocate", since=int(value), retry_after=max(int(rest[0]), 1) / 1000
            )
        return CommitDecision("committed")

    def release_claim(self, *, digest: str, token: str) -> None:
        self._run(self._release_claim, [self._claim_prefix + digest], [token])

    def refresh_claim(self, *, digest: str, token: str, claim_ttl: float) -> bool:
        keys, args = [self._claim_prefix + digest], [token, _milliseconds(claim_ttl)]
        name = untracked_delete_name(digest, token)
        if name is not None:
            # The lease of an untracked delete: its tombstone lives as long as it does.
            keys.append(self._tombstone_prefix + name)
            args.append(_milliseconds(claim_ttl) + _milliseconds(TOMBSTONE_TTL))
        return bool(self._run(self._refresh_claim, keys, args))

    def reserve_name(self, *, name: str, token: str, digest: str) -> bool:
        return bool(
            self._run(
                self._reserve_name,
                [
                    self._reservation_prefix + name,
                    self._record_prefix + name,
                    self._quarantine_prefix + name,
                ],
                [token, digest, self._claim_prefix, _milliseconds(QUARANTINE_TTL)],
            )
        )

    def release_name(self, *, name: str, token: str) -> None:
        self._run(self._release_name, [self._reservation_prefix + name], [token])

    def begin_replace(self, *, name: str, token: str, digest: str) -> ReplaceDecision:
        result = self._run(
            self._begin_replace,
            [self._record_prefix + name, self._quarantine_prefix + name],
            [
                token,
                self._map_prefix,
                name,
                self._claim_prefix,
                digest,
                _milliseconds(QUARANTINE_TTL),
            ],
        )
        return result.decode()  # type: ignore[no-any-return]

    def abort_replace(self, *, name: str, token: str, inner_deleted: bool) -> None:
        self._run(
            self._abort_replace,
            [self._record_prefix + name],
            [token, "1" if inner_deleted else "0", self._map_prefix, name],
        )

    def begin_delete(self, *, name: str, token: str, claim_ttl: float) -> DeleteDecision:
        # If the reply is lost, the script runs again with the same token: its receipt
        # (kept well beyond the retries) answers as the first run did, or the first run
        # never happened and this one decides.
        action, digest, refs, wait_ms = self._run_retrying(
            self._begin_delete,
            [
                self._record_prefix + name,
                self._tombstone_prefix + name,
                self._receipt_prefix + token,
                self._quarantine_prefix + name,
            ],
            [
                token,
                _milliseconds(claim_ttl),
                self._map_prefix,
                self._claim_prefix,
                name,
                _milliseconds(self._receipt_ttl),
                _milliseconds(TOMBSTONE_TTL),
                _milliseconds(QUARANTINE_TTL),
            ],
            lambda lost: DeleteOutcomeUnknown(self.display_url, lost, name),
            lambda cause: IndexUnavailable(self.display_url, cause, "Nothing was deleted."),
        )
        return DeleteDecision(
            action.decode(),
            digest=digest.decode(),
            refs=int(refs),
            retry_after=max(int(wait_ms), 1) / 1000,
        )

    def commit_delete(self, *, name: str, digest: str, token: str) -> None:
        # Running it twice is harmless: everything it changes is checked against the token.
        # The inner object is gone already, so a refused write (a failover) is retried too
        # within wait_timeout: an unrecorded delete leaves the name "deleting".
        self._run_retrying(
            self._commit_delete,
            [
                self._record_prefix + name,
                self._claim_prefix + digest,
                self._tombstone_prefix + name,
                self._untracked_deletes,
            ],
            [token, _milliseconds(TOMBSTONE_TTL)],
            lambda lost: IndexUnavailable(self.display_url, lost),
        )

    def cancel_delete(
        self, *, name: str, token: str, digest: str, refs: int, size: int, lease: str
    ) -> bool:
        map_digest = digest or lease
        return bool(
            self._run(
                self._cancel_delete,
                [
                    self._record_prefix + name,
                    self._claim_prefix + lease,
                    self._tombstone_prefix + name,
                    self._map_prefix + map_digest,
                ],
                [token, refs, name, digest, size],
            )
        )

    def lookup(self, name: str) -> ObjectRecord | None:
        fields = self._guard(lambda: self._client.hgetall(self._record_prefix + name))
        if not fields:
            return None
        decoded = {key.decode(): value.decode() for key, value in fields.items()}
        return ObjectRecord(
            name=name,
            digest=decoded["digest"],
            refs=int(decoded["refs"]),
            state=decoded["state"],
            size=int(decoded.get("size", 0)),
        )

    def forget_content(self, *, digest: str, name: str) -> None:
        self._run(self._forget_content, [self._map_prefix + digest], [name])

    def is_initialised(self) -> bool:
        return bool(self._guard(lambda: self._client.exists(self._initialised_key)))

    def mark_initialised(self) -> None:
        self._guard(lambda: self._client.set(self._initialised_key, b"1"))

    def ping(self) -> None:
        self._guard(self._client.ping)

    def close(self) -> None:
        self._client.close()
