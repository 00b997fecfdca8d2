"""The index's scripts run on one held connection: reopened when closed, never shared."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.tokens import new_token

Make = Callable[..., DedupStorage]


def _client_id(connection: Any) -> int:
    connection.send_command("CLIENT", "ID")
    return int(connection.read_response())


def test_hits_reuse_one_connection_without_the_pool(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    name = storage.save("a.bin", ContentFile(b"shared"))
    index: Any = storage.index
    pool = index.client.connection_pool
    connection = index._held._connection
    for _ in range(5):
        assert storage.save("a.bin", ContentFile(b"shared")) == name
    assert index._held._connection is connection
    assert storage.references(name) == 6
    # The pool lent nothing for the scripts (references() is a plain command: one).
    assert len(pool._in_use_connections) == 0


def test_a_connection_the_server_closed_is_reopened_before_the_next_hit(
    make_fs_dedup: Make, redis_url: str
) -> None:
    storage = make_fs_dedup()
    name = storage.save("a.bin", ContentFile(b"shared"))
    index: Any = storage.index
    held = index._held.acquire()
    old_id = _client_id(held)
    index._held.release()
    admin = redis.Redis.from_url(redis_url)
    assert admin.client_kill_filter(_id=old_id) == 1
    # Not a lost reply: the closed socket is seen before anything is sent.
    assert storage.save("a.bin", ContentFile(b"shared")) == name
    assert storage.references(name) == 2
    held = index._held.acquire()
    try:
        assert _client_id(held) != old_id
    finally:
        index._held.release()


def test_a_stale_reply_left_on_the_connection_is_never_read_as_an_answer(
    make_fs_dedup: Make,
) -> None:
    storage = make_fs_dedup()
    name = storage.save("a.bin", ContentFile(b"shared"))
    index: Any = storage.index
    held = index._held.acquire()
    held.send_command("ECHO", "stale")  # as a call interrupted before its reply was read
    # (redis-py itself disconnects a call interrupted while reading; this is the rest.)
    deadline = time.monotonic() + 60
    while not held.can_read(timeout=1) and time.monotonic() < deadline:
        pass  # the reply has to have arrived for anyone to see it
    index._held.release()
    # The hit's reply must be its own, not "stale".
    assert storage.save("a.bin", ContentFile(b"shared")) == name
    assert storage.references(name) == 2


def test_a_thread_finding_the_connection_in_use_takes_one_from_the_pool(
    make_fs_dedup: Make,
) -> None:
    storage = make_fs_dedup()
    name = storage.save("a.bin", ContentFile(b"shared"))
    index: Any = storage.index
    assert index._held.acquire() is not None  # this thread keeps it
    try:
        results: list[str] = []
        worker = threading.Thread(
            target=lambda: results.append(storage.save("a.bin", ContentFile(b"shared")))
        )
        worker.start()
        worker.join(timeout=60)
        assert results == [name]
        assert index._held.acquire() is None  # not reentrant: the worker could not have it
    finally:
        index._held.release()
    assert storage.references(name) == 2


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_its_own_connection_and_draws_new_tokens(
    make_fs_dedup: Make,
) -> None:
    storage = make_fs_dedup()
    name = storage.save("a.bin", ContentFile(b"shared"))
    index: Any = storage.index
    held = index._held.acquire()
    parent_id = _client_id(held)
    index._held.release()
    parent_tokens = {new_token() for _ in range(1000)}
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its connection's id, a save's result, its tokens
        try:
            os.close(read_end)
            saved = storage.save("a.bin", ContentFile(b"shared"))
            child = index._held.acquire()
            report = f"{_client_id(child)} {saved} " + " ".join(new_token() for _ in range(1000))
            os.write(write_end, report.encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        child_id, saved, *child_tokens = pipe.read().decode().split()
    os.waitpid(pid, 0)
    assert saved == name
    assert int(child_id) != parent_id
    assert not parent_tokens & set(child_tokens)
    assert not {new_token() for _ in range(1000)} & set(child_tokens)
    # The parent's own connection still answers its own calls.
    assert storage.save("a.bin", ContentFile(b"shared")) == name
    assert storage.references(name) == 3


def test_tokens_are_unique_across_threads() -> None:
    found: list[list[str]] = [[] for _ in range(4)]

    def draw(into: list[str]) -> None:
        into.extend(new_token() for _ in range(5000))

    threads = [threading.Thread(target=draw, args=(into,)) for into in found]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [token for tokens in found for token in tokens]
    assert len(set(every)) == len(every) == 20_000
