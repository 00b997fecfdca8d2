"""The Redis dedup index: every decision is one Lua script, so one round trip, atomically."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.commands.core import AsyncScript, Script

from dedupstore.exceptions import ClaimLost, IndexUnavailable
from dedupstore.index.base import (
    DeleteDecision,
    Index,
    ObjectRecord,
    ReplaceDecision,
    Reuse,
    SaveDecision,
)

__all__ = ["RedisIndex"]

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

# KEYS: content map, claim, record of the requested name.
# ARGV: reuse, digest, token, claim ttl (ms), max length (0: none), record key prefix,
#       requested name.
_BEGIN_SAVE = """
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
  return {'claimed', ''}
end
return {'wait', tostring(redis.call('PTTL', KEYS[2]))}
"""

# KEYS: record of the stored name, content map, claim.
# ARGV: digest, token, size, name length, record key prefix, stored name, map key prefix,
#       replacing ('1': the save replaced the name after BEGIN_REPLACE, else '0').
_COMMIT_SAVE = """
local digest, token = ARGV[1], ARGV[2]
local f = redis.call('HMGET', KEYS[1], 'state', 'digest', 'refs', 'token')
local state, previous = f[1], f[2]
if ARGV[8] == '1' and (state ~= 'replacing' or f[4] ~= token) then
  -- We stalled past our lease and another process took the record over (and may have
  -- committed already): the name is theirs, record nothing.
  return -1
end
local refs = 1
if state == 'live' then
  -- Either the same content again (a content-addressed inner storage returns the same
  -- name) or an inner storage that overwrote a live object behind our back: keep every
  -- existing reference so nothing is deleted early.
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
return refs
"""

# KEYS: claim. ARGV: token.
_RELEASE_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

# KEYS: claim. ARGV: token, ttl (ms).
_REFRESH_CLAIM = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
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

# KEYS: record. ARGV: token, map key prefix, name, claim key prefix, digest of the
# caller's claim (its lease).
_BEGIN_REPLACE = (
    _LEASE_HELD
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'refs', 'digest', 'token', 'lease')
if not f[1] then
  return 'absent'
end
if f[1] == 'live' then
  if tonumber(f[2]) > 1 then
    return 'shared'
  end
elseif f[4] ~= ARGV[1] and lease_held(ARGV[4], f[4], f[5] or f[3]) then
  return 'wait'
end
-- A live record with one reference, or one whose replacer or deleter died: ours now.
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

# KEYS: record. ARGV: token, ttl (ms), map key prefix, claim key prefix, name.
_BEGIN_DELETE = (
    _LEASE_HELD
    + """
local f = redis.call('HMGET', KEYS[1], 'state', 'refs', 'digest', 'token', 'lease')
local state, digest = f[1], f[3]
if not state then
  return {'unknown', '', '0', '0'}
end
if state == 'replacing' and f[4] ~= ARGV[1] then
  local lease = f[5] or digest
  if lease_held(ARGV[4], f[4], lease) then
    return {'wait', digest, '0', tostring(redis.call('PTTL', ARGV[4] .. lease))}
  end
  -- The replacer died: the name still has its one reference, which this delete drops.
end
if state == 'live' and tonumber(f[2]) > 1 then
  return {'kept', digest, tostring(redis.call('HINCRBY', KEYS[1], 'refs', -1)), '0'}
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
return {'delete', digest, '0', '0'}
"""
)

# KEYS: record, claim. ARGV: token.
_COMMIT_DELETE = """
local f = redis.call('HMGET', KEYS[1], 'state', 'token')
if f[1] == 'deleting' and f[2] == ARGV[1] then
  redis.call('DEL', KEYS[1])
end
if redis.call('GET', KEYS[2]) == ARGV[1] then
  redis.call('DEL', KEYS[2])
end
return 1
"""


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
    ) -> None:
        super().__init__(namespace)
        self.display_url = display_url
        self._client = redis.Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
        )
        self._record_prefix = f"{namespace}:o:"
        self._map_prefix = f"{namespace}:d:"
        self._claim_prefix = f"{namespace}:c:"
        register = self._client.register_script
        self._begin_save = register(_BEGIN_SAVE)
        self._commit_save = register(_COMMIT_SAVE)
        self._release_claim = register(_RELEASE_CLAIM)
        self._refresh_claim = register(_REFRESH_CLAIM)
        self._begin_replace = register(_BEGIN_REPLACE)
        self._abort_replace = register(_ABORT_REPLACE)
        self._begin_delete = register(_BEGIN_DELETE)
        self._commit_delete = register(_COMMIT_DELETE)

    @property
    def client(self) -> redis.Redis:
        """Return the underlying redis-py client."""
        return self._client

    def _run(self, script: Script | AsyncScript, keys: list[str], args: list[Any]) -> Any:
        return self._guard(lambda: script(keys=keys, args=args))

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            return call()
        except (redis.ConnectionError, redis.TimeoutError, *_REFUSALS) as exc:
            raise IndexUnavailable(self.display_url, exc) from exc
        except redis.ResponseError as exc:
            # A redis-py without a class for these codes leaves the code in the message.
            if str(exc).startswith(("OOM ", "READONLY ", "MASTERDOWN ")):
                raise IndexUnavailable(self.display_url, exc) from exc
            raise

    def begin_save(
        self,
        *,
        digest: str,
        reuse: Reuse,
        name: str,
        max_length: int | None,
        token: str,
        claim_ttl: float,
    ) -> SaveDecision:
        action, value = self._run(
            self._begin_save,
            [self._map_prefix + digest, self._claim_prefix + digest, self._record_prefix + name],
            [
                reuse,
                digest,
                token,
                _milliseconds(claim_ttl),
                max_length or 0,
                self._record_prefix,
                name,
            ],
        )
        action = action.decode()
        if action == "hit":
            return SaveDecision("hit", name=value.decode())
        if action == "claimed":
            return SaveDecision("claimed")
        return SaveDecision("wait", retry_after=max(int(value), 1) / 1000)

    def commit_save(
        self, *, digest: str, token: str, name: str, size: int, replacing: bool = False
    ) -> None:
        refs = self._run(
            self._commit_save,
            [self._record_prefix + name, self._map_prefix + digest, self._claim_prefix + digest],
            [
                digest,
                token,
                size,
                len(name),
                self._record_prefix,
                name,
                self._map_prefix,
                "1" if replacing else "0",
            ],
        )
        if refs == -1:
            raise ClaimLost(repr(name))

    def release_claim(self, *, digest: str, token: str) -> None:
        self._run(self._release_claim, [self._claim_prefix + digest], [token])

    def refresh_claim(self, *, digest: str, token: str, claim_ttl: float) -> bool:
        return bool(
            self._run(
                self._refresh_claim,
                [self._claim_prefix + digest],
                [token, _milliseconds(claim_ttl)],
            )
        )

    def begin_replace(self, *, name: str, token: str, digest: str) -> ReplaceDecision:
        result = self._run(
            self._begin_replace,
            [self._record_prefix + name],
            [token, self._map_prefix, name, self._claim_prefix, digest],
        )
        return result.decode()  # type: ignore[no-any-return]

    def abort_replace(self, *, name: str, token: str, inner_deleted: bool) -> None:
        self._run(
            self._abort_replace,
            [self._record_prefix + name],
            [token, "1" if inner_deleted else "0", self._map_prefix, name],
        )

    def begin_delete(self, *, name: str, token: str, claim_ttl: float) -> DeleteDecision:
        action, digest, refs, wait_ms = self._run(
            self._begin_delete,
            [self._record_prefix + name],
            [token, _milliseconds(claim_ttl), self._map_prefix, self._claim_prefix, name],
        )
        return DeleteDecision(
            action.decode(),
            digest=digest.decode(),
            refs=int(refs),
            retry_after=max(int(wait_ms), 1) / 1000,
        )

    def commit_delete(self, *, name: str, digest: str, token: str) -> None:
        self._run(
            self._commit_delete,
            [self._record_prefix + name, self._claim_prefix + digest],
            [token],
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

    def ping(self) -> None:
        self._guard(self._client.ping)

    def close(self) -> None:
        self._client.close()
