"""A reply lost on the way back, a busy server or a short failover: the call is asked again.

Each index script keeps a receipt of its decision, so a re-run after a lost reply is
answered from it: the decision is taken, and counted, once. Forced against a real
redis-server (the suite's, or a private one the test keeps busy or fails over), by
dropping a real reply or keeping the server busy with a script while a call is sent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.index import redis as redis_index
from dedupstore.testing.redis import RedisServer, find_free_port
from tests.contract import read_all
from tests.helpers import PATIENCE, Background, Paused

Make = Callable[..., DedupStorage]

#: Claim lifetime of the crash / stall tests.
SHORT_TTL = 0.05


def test_a_short_failover_during_a_deletes_commit_is_absorbed(
    private_redis: RedisServer, tmp_path: Path
) -> None:
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path)},
    }
    storage = DedupStorage(inner=inner, index=private_redis.url, namespace="retry", wait_timeout=10)
    assert storage.save("a.txt", ContentFile(b"old")) == "a.txt"
    client = storage.index.client  # type: ignore[attr-defined]
    remove = Paused(storage.inner, "delete")
    deleter = Background(lambda: storage.delete("a.txt"))
    remove.wait()
    client.replicaof("127.0.0.1", find_free_port())
    remove.release.set()
    time.sleep(0.3)  # the commit is refused, and retried
    client.replicaof("NO", "ONE")
    deleter.result()  # the retried commit_delete (token-checked) recorded the delete
    assert storage.index.lookup("a.txt") is None and not storage.exists("a.txt")


def test_a_delete_answered_from_its_receipt_after_its_lease_lapsed_deletes_a_live_object(
    make_fs_dedup: Make, redis_url: str
) -> None:
    storage = make_fs_dedup(index=redis_url, claim_ttl=SHORT_TTL, wait_timeout=5)
    overwriting = make_fs_dedup(
        index=redis_url, namespace=storage.namespace, overwrite=True, claim_ttl=10
    )
    assert storage.save("a.txt", ContentFile(b"old")) == "a.txt"
    index = storage.index
    original = index._run_once  # type: ignore[attr-defined]
    first_ran = threading.Event()
    network_back = threading.Event()

    def reply_lost_once(script: Any, keys: list[str], args: list[Any], **options: Any) -> Any:
        # The first begin_delete runs on the real server, then its reply is lost (as over a
        # partition that lasts a while); every later attempt goes through untouched.
        if script is index._begin_delete and not first_ran.is_set():  # type: ignore[attr-defined]
            original(script, keys, args, **options)
            first_ran.set()
            assert network_back.wait(PATIENCE)
            lost = redis.TimeoutError("reply lost")
            raise redis_index._ReplyLost(lost) from lost
        return original(script, keys, args, **options)

    index._run_once = reply_lost_once  # type: ignore[attr-defined]
    deleter = Background(lambda: storage.delete("a.txt"))
    assert first_ran.wait(PATIENCE)  # the last reference went: the record is "deleting"
    time.sleep(SHORT_TTL * 3)  # the delete's lease (nobody renews it yet) lapses
    # An overwrite=True save finds the apparently dead deleter's record: the deleter may
    # still delete the name, so the save goes elsewhere.
    new = overwriting.save("a.txt", ContentFile(b"new"))
    assert new != "a.txt" and overwriting.references(new) == 1
    network_back.set()  # the retry is answered from the receipt: "delete"
    deleter.result()
    assert storage.references(new) == 1
    assert storage.exists(new), "the index counts a reference to a deleted object"
    assert read_all(storage, new) == b"new"


def test_a_delete_answered_from_its_receipt_after_its_lease_lapsed_untouched_completes(
    make_fs_dedup: Make, redis_url: str
) -> None:
    # Nobody took the name over while the lease was lapsed: the re-run renews the lease
    # and the delete completes.
    storage = make_fs_dedup(index=redis_url, claim_ttl=SHORT_TTL, wait_timeout=5)
    assert storage.save("a.txt", ContentFile(b"old")) == "a.txt"
    index = storage.index
    original = index._run_once  # type: ignore[attr-defined]
    lost_once = threading.Event()

    def reply_lost_once(script: Any, keys: list[str], args: list[Any], **options: Any) -> Any:
        result = original(script, keys, args, **options)
        if script is index._begin_delete and not lost_once.is_set():  # type: ignore[attr-defined]
            lost_once.set()
            time.sleep(SHORT_TTL * 3)  # the lease lapses meanwhile
            lost = redis.TimeoutError("reply lost")
            raise redis_index._ReplyLost(lost) from lost
        return result

    index._run_once = reply_lost_once  # type: ignore[attr-defined]
    storage.delete("a.txt")
    assert lost_once.is_set()
    assert index.lookup("a.txt") is None and not storage.exists("a.txt")


def test_a_commit_whose_reply_was_lost_asks_again_and_counts_once(
    make_fs_dedup: Make, redis_url: str, busy_redis: Callable[[int], None]
) -> None:
    storage = make_fs_dedup(index=redis_url, index_timeout=0.2)
    write = Paused(storage.inner, "_save")
    saver = Background(lambda: storage.save("a.txt", ContentFile(b"content")))
    write.wait()
    busy_redis(700)  # the commit is sent now; its reply is lost, it runs afterwards
    write.release.set()
    # The commit is run again (queued re-runs too) until one answers: its receipt tells.
    assert saver.result() == "a.txt"
    assert storage.references("a.txt") == 1  # counted once
    assert read_all(storage, "a.txt") == b"content"


def test_a_busy_reply_after_a_lost_one_is_asked_again(
    make_fs_dedup: Make, slow_redis: tuple[RedisServer, Callable[[int], None]]
) -> None:
    server, busy = slow_redis
    storage = make_fs_dedup(index=server.url, wait_timeout=5)
    assert storage.save("a.txt", ContentFile(b"content")) == "a.txt"
    index = storage.index
    original = index._run_once  # type: ignore[attr-defined]
    lost_once = threading.Event()

    def reply_lost_once(script: Any, keys: list[str], args: list[Any], **options: Any) -> Any:
        if script is index._begin_delete and not lost_once.is_set():  # type: ignore[attr-defined]
            lost_once.set()
            busy(1000)  # the re-runs are answered BUSY for a while
            lost = redis.TimeoutError("reply lost")
            raise redis_index._ReplyLost(lost) from lost
        return original(script, keys, args, **options)

    index._run_once = reply_lost_once  # type: ignore[attr-defined]
    storage.delete("a.txt")  # the first run never happened; a later one decides
    assert lost_once.is_set()
    assert index.lookup("a.txt") is None and not storage.exists("a.txt")
