"""Second review of the lease / tombstone / receipt state machine, and its fixes.

Every interleaving is forced deterministically (an inner storage method that blocks on a
``threading.Event`` after running for real, or index methods called directly), against a
real redis-server (the suite's fixtures, or a private one the test breaks on purpose) and,
where the twin shares the logic, the locmem index. Each test failed before its fix.
"""

from __future__ import annotations

import hashlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import TemporaryUploadedFile

from dedupstore import ClaimLost, DedupStorage, IndexUnavailable
from dedupstore.index import redis as redis_index
from dedupstore.testing.redis import RedisServer, find_free_port
from tests.contract import read_all
from tests.helpers import BUSY_SCRIPT, PATIENCE, Background, Paused, make_untracked

Make = Callable[..., DedupStorage]

#: Claim lifetime of the crash / stall tests.
SHORT_TTL = 0.05


class ContentAddressedStorage(FileSystemStorage):
    """A minimal content-addressed inner storage, like IPFS: the name is the content's hash.

    Saving content that is already stored is a no-op that returns the same name (IPFS
    pins an already pinned CID again); deleting removes it (an unpin).
    """

    content_addressed = True

    def save(self, name: Any, content: Any, max_length: int | None = None) -> str:
        content.seek(0)
        data = content.read()
        cid = "cid-" + hashlib.sha256(data).hexdigest()
        if not self.exists(cid):
            self._save(cid, ContentFile(data))
        return cid


def _cas_storage(index_url: str, tmp_path: Path, **options: Any) -> DedupStorage:
    return DedupStorage(
        inner={
            "BACKEND": f"{__name__}.ContentAddressedStorage",
            "OPTIONS": {"location": str(tmp_path / "cas")},
        },
        index=index_url,
        **options,
    )


# -- 1. data loss ------------------------------------------------------------------------


def test_a_tracked_delete_during_a_save_of_the_same_cid_after_key_rotation(
    index_url: str, tmp_path: Path
) -> None:
    namespace = f"test-{uuid.uuid4().hex}"
    before = _cas_storage(index_url, tmp_path, namespace=namespace, hash_key="old secret")
    after = _cas_storage(index_url, tmp_path, namespace=namespace, hash_key="new secret")
    payload = b"one object, two digests"
    cid = before.save("a.txt", ContentFile(payload))  # saved before the rotation
    assert before.references(cid) == 1
    # After the rotation: a save of the same content pins the CID (already pinned) ...
    pin = Paused(after.inner, "save")
    saver = Background(lambda: after.save("b.txt", ContentFile(payload)))
    pin.wait()
    # ... while the one reference saved before the rotation is deleted: its claim is on the
    # old digest, the saver's on the new one, so nothing makes either wait.
    after.delete(cid)
    pin.release.set()
    assert saver.result() == cid
    assert after.references(cid) == 1
    assert after.inner.exists(cid), "the index counts a reference to a deleted object"


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
    # Another user saves new content under the (free) name: the interrupted deletion is
    # finished, not revived; the name is recorded afresh with 1 reference.
    assert storage.save("a.txt", ContentFile(b"new")) == "a.txt"
    record = storage.index.lookup("a.txt")
    assert record is not None and record.state == "live" and record.refs == 1
    assert record.digest == storage.content_key("a.txt", ContentFile(b"new"))
    assert read_all(storage, "a.txt") == b"new"


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


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """Start a redis-server of this test's own: the test breaks it on purpose."""
    with RedisServer() as server:
        yield server


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

    def reply_lost_once(script: Any, keys: list[str], args: list[Any]) -> Any:
        # The first begin_delete runs on the real server, then its reply is lost (as over a
        # partition that lasts a while); every later attempt goes through untouched.
        if script is index._begin_delete and not first_ran.is_set():  # type: ignore[attr-defined]
            original(script, keys, args)
            first_ran.set()
            assert network_back.wait(PATIENCE)
            lost = redis.TimeoutError("reply lost")
            raise redis_index._ReplyLost(lost) from lost
        return original(script, keys, args)

    index._run_once = reply_lost_once  # type: ignore[attr-defined]
    deleter = Background(lambda: storage.delete("a.txt"))
    assert first_ran.wait(PATIENCE)  # the last reference went: the record is "deleting"
    time.sleep(SHORT_TTL * 3)  # the delete's lease (nobody renews it yet) lapses
    # An overwrite=True save takes the record of the apparently dead deleter over and
    # replaces the name: the index now counts its one reference.
    assert overwriting.save("a.txt", ContentFile(b"new")) == "a.txt"
    assert overwriting.references("a.txt") == 1
    network_back.set()  # the retry is answered from the receipt: "delete"
    deleter.result()
    assert storage.references("a.txt") == 1
    assert storage.exists("a.txt"), "the index counts a reference to a deleted object"


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

    def reply_lost_once(script: Any, keys: list[str], args: list[Any]) -> Any:
        result = original(script, keys, args)
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


# -- 2. a save that must write again cannot ------------------------------------------------


def _upload(data: bytes) -> TemporaryUploadedFile:
    upload = TemporaryUploadedFile("a.txt", "text/plain", len(data), "utf-8")
    upload.write(data)
    upload.flush()
    upload.seek(0)
    return upload


def test_a_temporary_upload_that_must_be_written_again_is_written_again(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url)
    make_untracked(storage, "a.txt")
    write = Paused(storage.inner, "_save")
    upload = _upload(b"uploaded")
    saver = Background(lambda: storage.save("a.txt", upload))
    write.wait()  # the upload was moved to a.txt; the save has not committed yet
    assert not Path(upload.temporary_file_path()).exists()  # moved, not copied
    storage.delete("a.txt")  # an untracked delete of the name (a second delete, say)
    write.release.set()
    try:
        name = saver.result()
    finally:
        upload.close()
    assert read_all(storage, name) == b"uploaded" and storage.references(name) == 1


# -- 3. messages that claim something false ------------------------------------------------


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
    time.sleep(1.0)  # the server answers again; what was sent meanwhile has run
    assert storage.references("a.txt") == 1  # it was recorded, as the message allows


@pytest.fixture
def slow_redis() -> Iterator[tuple[RedisServer, Callable[[int], None]]]:
    """Start a private Redis that answers BUSY once a script runs for 100 ms."""
    with RedisServer() as server:
        admin = redis.Redis.from_url(server.url)
        admin.config_set("lua-time-limit", 100)
        threads: list[threading.Thread] = []

        def busy(milliseconds: int) -> None:
            thread = threading.Thread(target=admin.eval, args=(BUSY_SCRIPT, 0, milliseconds))
            thread.start()
            threads.append(thread)
            time.sleep(0.3)  # past the threshold: other clients now get BUSY

        yield server, busy
        for thread in threads:
            thread.join(PATIENCE)
        admin.close()


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
    time.sleep(1.5)
    assert storage.references("a.txt") == 1


def test_a_busy_reply_after_a_lost_one_is_asked_again(
    make_fs_dedup: Make, slow_redis: tuple[RedisServer, Callable[[int], None]]
) -> None:
    server, busy = slow_redis
    storage = make_fs_dedup(index=server.url, wait_timeout=5)
    assert storage.save("a.txt", ContentFile(b"content")) == "a.txt"
    index = storage.index
    original = index._run_once  # type: ignore[attr-defined]
    lost_once = threading.Event()

    def reply_lost_once(script: Any, keys: list[str], args: list[Any]) -> Any:
        if script is index._begin_delete and not lost_once.is_set():  # type: ignore[attr-defined]
            lost_once.set()
            busy(1000)  # the re-runs are answered BUSY for a while
            lost = redis.TimeoutError("reply lost")
            raise redis_index._ReplyLost(lost) from lost
        return original(script, keys, args)

    index._run_once = reply_lost_once  # type: ignore[attr-defined]
    storage.delete("a.txt")  # the first run never happened; a later one decides
    assert lost_once.is_set()
    assert index.lookup("a.txt") is None and not storage.exists("a.txt")


def test_claim_lost_to_a_delete_does_not_say_another_save_owns_the_name(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL)
    storage.save("a.txt", ContentFile(b"old"))
    index = storage.index
    held: dict[str, str] = {}
    begin_replace = index.begin_replace

    def spy(**kwargs: Any) -> Any:  # the real call; remembers the saver's token and lease
        held.update(kwargs)
        return begin_replace(**kwargs)

    index.begin_replace = spy  # type: ignore[method-assign]
    original = storage.inner._save

    def stall_then_lose_the_lease(name: str, content: Any) -> str:
        # The saver stalls past its claim (simulated: its claim is gone); a delete() of the
        # name takes the apparently dead replacer's record over and deletes the name.
        index.release_claim(digest=held["digest"], token=held["token"])
        storage.delete("a.txt")
        assert index.lookup("a.txt") is None
        return str(original(name, content))

    storage.inner._save = stall_then_lose_the_lease
    with pytest.raises(ClaimLost) as caught:
        storage.save("a.txt", File(ContentFile(b"mine")))
    assert index.lookup("a.txt") is None  # nobody owns the name
    assert "belongs to the other save" not in str(caught.value)
    assert caught.value.taken_by == "none" and "removed it from the index" in str(caught.value)
