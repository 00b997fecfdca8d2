"""Test helpers: counting the calls that reach an inner storage (a spy, not a stand-in)."""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import InMemoryStorage, Storage
from django.core.files.storage.memory import InMemoryFileNode
from django.utils.timezone import now

from dedupstore import DedupStorage
from dedupstore.testing.calls import COUNTED_METHODS, InnerCalls  # noqa: F401 (re-exported)


class FailingInner:
    """Make one method of a real storage raise once (failure injection for a test)."""

    def __init__(self, storage: Storage, method: str, error: BaseException) -> None:
        self.storage = storage
        self.method = method
        self.error = error
        original = getattr(storage, method)

        def failing(*args: Any, **kwargs: Any) -> Any:
            storage.__dict__.pop(method, None)
            raise self.error

        setattr(storage, method, failing)
        self.original = original


#: A Lua script that keeps a Redis server busy for ARGV[1] milliseconds. Run from another
#: connection, commands sent meanwhile wait in their sockets and run afterwards, even if
#: their client gave up on the reply and closed the connection: a lost reply, for real.
BUSY_SCRIPT = """
local start = redis.call('TIME')
local t0 = start[1] * 1000000 + start[2]
while true do
  local now = redis.call('TIME')
  if now[1] * 1000000 + now[2] - t0 > tonumber(ARGV[1]) * 1000 then
    return 1
  end
end
"""


#: How long a test waits for a thread to reach a point it must reach (never hit when right).
PATIENCE = 10.0


class Paused:
    """Run a storage method for real, then block until released (forces an interleaving)."""

    def __init__(self, storage: Any, method: str) -> None:
        self.storage = storage
        self.method = method
        self.original = getattr(storage, method)
        self.reached = threading.Event()
        self.release = threading.Event()

        def paused(*args: Any, **kwargs: Any) -> Any:
            # Only the first call pauses: a second one (a re-write) goes straight through.
            storage.__dict__.pop(method, None)
            result = self.original(*args, **kwargs)
            self.reached.set()
            assert self.release.wait(PATIENCE), f"{method} was never released"
            return result

        setattr(storage, method, paused)

    def wait(self) -> None:
        assert self.reached.wait(PATIENCE), f"{self.method} was never reached"


class Background(threading.Thread):
    """Run ``call`` in a thread; ``result()`` returns its value or raises its error."""

    def __init__(self, call: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self._call = call
        self._value: Any = None
        self._error: BaseException | None = None
        self.start()

    def run(self) -> None:
        try:
            self._value = self._call()
        except BaseException as exc:  # handed to the test thread by result()
            self._error = exc

    def result(self) -> Any:
        self.join(PATIENCE)
        assert not self.is_alive(), "the call never finished"
        if self._error is not None:
            raise self._error
        return self._value


def make_untracked(storage: DedupStorage, name: str) -> None:
    """Save then delete ``name``: the index no longer knows it and the name is free."""
    assert storage.save(name, ContentFile(b"old")) == name
    storage.delete(name)
    assert storage.index.lookup(name) is None and not storage.exists(name)


class PausedBefore:
    """Block a storage method until released, then run it for real (an operation in flight).

    Unlike ``Paused`` (which pauses after the call ran), the call has not taken effect
    while paused: a slow upload, or a stalled process, about to write or delete.
    """

    def __init__(self, storage: Any, method: str) -> None:
        self.storage = storage
        self.method = method
        self.original = getattr(storage, method)
        self.reached = threading.Event()
        self.release = threading.Event()

        def paused(*args: Any, **kwargs: Any) -> Any:
            # Only the first call pauses: a second one goes straight through.
            storage.__dict__.pop(method, None)
            self.reached.set()
            assert self.release.wait(PATIENCE), f"{method} was never released"
            return self.original(*args, **kwargs)

        setattr(storage, method, paused)

    def wait(self) -> None:
        assert self.reached.wait(PATIENCE), f"{self.method} was never reached"


class ReplacingMemoryStorage(InMemoryStorage):
    """``InMemoryStorage`` whose write replaces what the name holds, whole, as an S3 PUT does.

    Django's own writes into an existing node without truncating it (its ``save`` never
    writes an existing name), so a shorter new content would keep the old one's tail.
    """

    def _save(self, name: str, content: Any) -> str:
        data = b"".join(content.chunks())  # the upload, then one switch of the content
        node = self._resolve(name, create_if_missing=True, leaf_cls=InMemoryFileNode)
        node.file, node._content_type = io.BytesIO(data), bytes
        node.modified_time = now()
        return str(self._relative_path(name)).replace("\\", "/")


def claim_digest(storage: DedupStorage, content: bytes, token: str, ttl: float) -> str:
    """Claim the digest of ``content`` in the index, as a saver does; return the digest."""
    digest = storage.digest(ContentFile(content))
    decision = storage.index.begin_save(
        digest=digest, reuse="content", name="x", max_length=None, token=token, claim_ttl=ttl
    )
    assert decision.action == "claimed"
    return digest


def wait_until_redis_answers(url: str) -> None:
    """Return once the Redis at ``url`` answers a PING again (after a busy script)."""
    import redis

    client = redis.Redis.from_url(url, socket_timeout=PATIENCE)
    deadline = time.monotonic() + PATIENCE
    try:
        while True:
            try:
                client.ping()
                return
            except (redis.ResponseError, redis.TimeoutError, redis.ConnectionError):
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.01)
    finally:
        client.close()
