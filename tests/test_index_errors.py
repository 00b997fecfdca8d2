"""What an unreachable, busy or read-only index, or one whose reply is lost, tells the caller.

An index that refuses writes (out of memory, a read-only replica) or answers BUSY is
unavailable, not a raw error; a script error is not taken for one; a delete whose commit
failed says not to retry it, and a commit whose reply was lost does not say it was not
recorded. Against real redis-servers, some private ones the tests break on purpose.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.files.base import ContentFile

from dedupstore import DedupStorage, IndexUnavailable
from dedupstore.testing.redis import RedisServer, find_free_port
from tests.contract import read_all
from tests.helpers import Background, Paused, wait_until_redis_answers

Make = Callable[..., DedupStorage]


def test_a_hit_whose_reply_is_lost_after_it_counted_says_it_was_sent(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    name = storage.save("a.txt", ContentFile(b"shared"))
    client = storage.index.client  # type: ignore[attr-defined]
    real_parse = client.parse_response

    def reply_lost(connection: Any, command: str, **options: Any) -> Any:
        # The real server ran the script (and counted the hit); its reply never arrives.
        real_parse(connection, command, **options)
        raise redis.TimeoutError("Timeout reading from socket")

    client.parse_response = reply_lost
    try:
        with pytest.raises(IndexUnavailable) as caught:
            storage.save("b.txt", ContentFile(b"shared"))
    finally:
        del client.parse_response
    assert caught.value.sent is True
    assert "may have counted one reference" in str(caught.value)
    assert storage.references(name) == 2


def test_a_save_that_never_reached_the_index_says_it_was_not_sent(tmp_path: Any) -> None:
    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index=f"redis://127.0.0.1:{find_free_port()}/0",
        namespace="n",
        index_timeout=2,
    )
    with pytest.raises(IndexUnavailable) as caught:
        storage.save("a.txt", ContentFile(b"x"))
    assert caught.value.sent is False


def test_a_failing_references_says_what_failed() -> None:
    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index=f"redis://127.0.0.1:{find_free_port()}/0",
        namespace="n",
        index_timeout=2,
    )
    with pytest.raises(IndexUnavailable) as caught:
        storage.references("a.txt")
    message = str(caught.value)
    assert "Could not read the reference count of 'a.txt'" in message
    assert "Nothing was stored or deleted" not in message


def _out_of_memory(client: Any) -> None:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # every write that may grow memory is refused: OOM


def _read_only(client: Any) -> None:
    # A replica of a loopback port where nothing listens: it stays read-only.
    client.replicaof("127.0.0.1", find_free_port())


@pytest.mark.parametrize("break_index", [_out_of_memory, _read_only])
def test_an_index_that_refuses_writes_is_unavailable(
    private_redis: RedisServer, tmp_path: Path, break_index: Callable[[Any], None]
) -> None:
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path)},
    }
    storage = DedupStorage(inner=inner, index=private_redis.url, namespace="refusing")
    bypassing = DedupStorage(
        inner=inner, index=private_redis.url, namespace="refusing", on_index_error="bypass"
    )
    name = storage.save("a.txt", ContentFile(b"counted"))
    break_index(storage.index.client)  # type: ignore[attr-defined]
    with pytest.raises(IndexUnavailable):
        storage.save("b.txt", ContentFile(b"new"))
    with pytest.raises(IndexUnavailable):
        storage.save("c.txt", ContentFile(b"counted"))  # a hit must increment: a write
    bypassed = bypassing.save("a.txt", ContentFile(b"counted"))  # was OOM/ReadOnlyError
    assert bypassed != name and read_all(storage, bypassed) == b"counted"
    with pytest.raises(IndexUnavailable):
        storage.delete(name)
    assert read_all(storage, name) == b"counted" and storage.references(name) == 1


def test_a_script_error_is_not_taken_for_an_unavailable_index(
    make_fs_dedup: Make, redis_url: str
) -> None:
    import redis

    storage = make_fs_dedup(index=redis_url, reuse="name", on_index_error="bypass")
    client = storage.index.client  # type: ignore[attr-defined]
    # A record bucket that is not a hash: WRONGTYPE in the script.
    client.set(f"{{{storage.namespace}}}:b:0", "not a bucket")
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        storage.save("a.txt", ContentFile(b"C"))
    assert not storage.exists("a.txt")


def test_a_delete_whose_commit_failed_is_not_revived_nor_invited_to_be_retried(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    # Once begin_delete ran, the caller's reference is gone: a retried delete() would drop
    # the reference of whoever saves the (free) name next and delete that save's object.
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path)},
    }
    storage = DedupStorage(
        inner=inner, index=private_redis.url, namespace="retry", claim_ttl=0.1, wait_timeout=1
    )
    assert storage.save("a.txt", ContentFile(b"old")) == "a.txt"
    client = storage.index.client  # type: ignore[attr-defined]
    remove = Paused(storage.inner, "delete")
    deleter = Background(lambda: storage.delete("a.txt"))
    remove.wait()  # the inner object is gone; the index is about to be told
    client.replicaof("127.0.0.1", find_free_port())  # a failover: the index refuses writes
    remove.release.set()
    with pytest.raises(IndexUnavailable) as caught:
        deleter.result()  # after retrying the commit for wait_timeout
    message = str(caught.value)
    assert "safe to retry" not in message and "do not retry" in message
    client.replicaof("NO", "ONE")  # the index takes writes again
    time.sleep(0.2)  # the deleter could not release its claim: it lapses after claim_ttl
    record = storage.index.lookup("a.txt")
    assert record is not None and record.state == "deleting" and record.refs == 0
    # Another user saves new content under the name: the interrupted deletion is finished,
    # not revived. Its deleter was not seen to finish, so the name is out of use for now
    # and the save is recorded afresh, with 1 reference, under another name.
    name = storage.save("a.txt", ContentFile(b"new"))
    assert name != "a.txt" and storage.index.lookup("a.txt") is None
    record = storage.index.lookup(name)
    assert record is not None and record.state == "live" and record.refs == 1
    assert record.digest == storage.content_key(name, ContentFile(b"new"))
    assert read_all(storage, name) == b"new"


def test_a_commit_whose_reply_was_lost_does_not_say_not_recorded(
    make_fs_dedup: Make, redis_url: str, busy_redis: Callable[[int], None]
) -> None:
    storage = make_fs_dedup(index=redis_url, index_timeout=0.2, wait_timeout=0.3)
    write = Paused(storage.inner, "_save")
    saver = Background(lambda: storage.save("a.txt", ContentFile(b"content")))
    write.wait()
    busy_redis(1000)  # longer than the save asks again
    write.release.set()
    with pytest.raises(IndexUnavailable) as caught:
        saver.result()
    message = str(caught.value)
    assert "may have been recorded" in message and "but not recorded" not in message
    assert caught.value.sent
    wait_until_redis_answers(redis_url)  # what was sent meanwhile has run
    assert storage.references("a.txt") == 1  # it was recorded, as the message allows


def test_a_busy_server_is_unavailable_not_a_raw_error(
    make_fs_dedup: Make, slow_redis: tuple[RedisServer, Callable[[int], None]]
) -> None:
    server, busy = slow_redis
    storage = make_fs_dedup(index=server.url, wait_timeout=0.3)
    assert storage.save("a.txt", ContentFile(b"content")) == "a.txt"
    busy(1500)
    with pytest.raises(IndexUnavailable, match="Nothing was deleted"):
        storage.delete("a.txt")
    with pytest.raises(IndexUnavailable):
        storage.save("b.txt", ContentFile(b"other"))
    wait_until_redis_answers(server.url)
    assert storage.references("a.txt") == 1
