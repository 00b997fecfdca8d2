"""One connection kept out of redis-py's pool for the index's scripts (the hit path)."""

from __future__ import annotations

import threading
from typing import Any

import redis

from dedupstore.tokens import fork_generation


class HeldConnection:
    """Lend one connection of ``pool``, kept between calls, to one caller at a time.

    redis-py's pool takes a lock and runs its bookkeeping and observability hooks on every
    get and release: about a tenth of a hit's time here. The index's scripts run on this
    connection whenever no other thread is using it, and on the pool otherwise, so threads
    never wait for one another. Like the pool, it makes sure before each use that the
    connection is open and has nothing unread (a reply left by an interrupted call, or
    the server's close), and a forked child never uses its parent's socket.
    """

    def __init__(self, pool: redis.ConnectionPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._connection: Any = None
        self._generation = fork_generation()

    def acquire(self) -> Any:
        """Return the connection, ready to send, or None while another caller has it.

        Raises what connecting raises (``redis.ConnectionError``, ``redis.TimeoutError``,
        ``redis.ResponseError`` such as ``BUSY`` during the handshake): nothing was sent.
        """
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._generation != fork_generation():
                # Forked: the socket is the parent's; leave it to the parent.
                self._connection, self._generation = None, fork_generation()
            if self._connection is None:
                self._connection = self._pool.make_connection()
            _make_ready(self._connection)
        except BaseException:
            self._lock.release()
            raise
        return self._connection

    def release(self) -> None:
        """Give the connection back for the next caller."""
        self._lock.release()

    def close(self) -> None:
        """Close the connection (the next ``acquire`` opens a new one)."""
        with self._lock:
            if self._connection is not None and self._generation == fork_generation():
                self._connection.disconnect()
            self._connection = None


def _make_ready(connection: Any) -> None:
    """Connect ``connection`` if it is not, as redis-py's pool does before lending it.

    Anything readable before a command is sent is a stale reply or the server's close:
    reconnect, so a late reply is never read as the answer to the next command.
    """
    try:
        # connect() runs redis-py's retry wrapper even when connected: skip it then.
        if getattr(connection, "_sock", None) is None:
            connection.connect()
        if connection.can_read():
            raise redis.ConnectionError("Connection has data")
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        connection.disconnect()
        connection.connect()
        if connection.can_read():
            raise redis.ConnectionError("Connection not ready") from None
