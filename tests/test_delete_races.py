"""Deletes racing saves: an untracked name deleted while a save writes it, a lost reply.

Dead deleters (their lease lapsed) block neither deletes nor overwrites; a tracked delete
during a save of the same content-addressed object (after a key rotation: two digests)
leaves the object the index counts; an untracked delete of a moved temporary upload
makes the save write it again.

Each interleaving is forced with a real inner storage whose save or delete blocks on a
``threading.Event`` (or by calling the index directly), against a real Redis and the
locmem twin; the IPFS case runs on a real isolated embedded node.
"""

from __future__ import annotations

import hashlib
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.core.files.uploadedfile import TemporaryUploadedFile

from dedupstore import DedupStorage
from dedupstore.index.base import TOMBSTONE_TTL
from tests.conftest import INDEX_KINDS_WITH_CLUSTER, index_url_of_kind
from tests.contract import read_all
from tests.helpers import Background, Paused, PausedBefore, make_untracked, wait_until_redis_answers

Make = Callable[..., DedupStorage]


@pytest.fixture(params=INDEX_KINDS_WITH_CLUSTER)
def index_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """A real Redis, the locmem twin, and (slow) a real Redis Cluster."""
    return index_url_of_kind(request, redis_url)


#: Claim lifetime of the crash tests: a dead holder's lease is gone after it.
SHORT_TTL = 0.05


def test_an_untracked_delete_during_a_save_does_not_lose_its_object(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url)
    make_untracked(storage, "a.txt")
    write = Paused(storage.inner, "_save")
    saver = Background(lambda: storage.save("a.txt", ContentFile(b"new")))
    write.wait()  # the saver wrote "a.txt" and has not committed yet
    storage.delete("a.txt")  # deleting twice is harmless... to the saver too
    write.release.set()
    name = saver.result()
    assert read_all(storage, name) == b"new" and storage.references(name) == 1


def test_a_save_commits_only_after_an_untracked_delete_under_way(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url)
    make_untracked(storage, "a.txt")
    write = Paused(storage.inner, "_save")
    saver = Background(lambda: storage.save("a.txt", ContentFile(b"new")))
    write.wait()
    remove = Paused(storage.inner, "delete")
    deleter = Background(lambda: storage.delete("a.txt"))
    remove.wait()  # the saver's object is gone; the deleter has not finished
    write.release.set()
    saver.join(0.3)
    assert saver.is_alive(), "the save committed a name whose object was just deleted"
    remove.release.set()
    deleter.result()
    name = saver.result()
    assert read_all(storage, name) == b"new" and storage.references(name) == 1


def _claimed(storage: DedupStorage, content: bytes, token: str) -> tuple[str, int]:
    """Claim ``content`` as a saver does before its inner write; return digest and since."""
    digest = storage.digest(ContentFile(content))
    decision = storage.index.begin_save(
        digest=digest, reuse="content", name="x", max_length=None, token=token, claim_ttl=10
    )
    assert decision.action == "claimed"
    return digest, decision.since


def test_a_dead_untracked_deleter_is_taken_over(make_fs_dedup: Make, index_url: str) -> None:
    storage = make_fs_dedup(index=index_url, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    index = storage.index
    digest, since = _claimed(storage, b"new", "saver")
    # A deleter of the untracked name holds its tombstone, then dies mid-delete.
    decision = index.begin_delete(name="a.txt", token="dead", claim_ttl=SHORT_TTL)
    assert decision.action == "unknown" and decision.digest
    assert index.begin_delete(name="a.txt", token="other", claim_ttl=1).action == "wait"
    commit = index.commit_save(digest=digest, token="saver", name="a.txt", size=3, since=since)
    assert commit.action == "wait"  # the deleter may be deleting the saver's object now
    time.sleep(SHORT_TTL * 2)  # nobody renews the dead deleter's lease: it expires
    # Whether the dead deleter deleted the saver's object is unknown: write again.
    commit = index.commit_save(digest=digest, token="saver", name="a.txt", size=3, since=since)
    assert commit.action == "rewrite" and commit.since > since
    # The dead deleter may yet delete whatever a.txt holds: the name is out of use, and
    # the saver writes under another one.
    again = index.commit_save(digest=digest, token="saver", name="a.txt", size=3, since=since)
    assert again.action == "relocate"
    commit = index.commit_save(
        digest=digest, token="saver", name="b.txt", size=3, since=commit.since
    )
    assert commit.action == "committed" and storage.references("b.txt") == 1
    assert storage.references("a.txt") == 0


def test_a_dead_untracked_deleter_does_not_lock_the_name_for_deletes(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    storage.inner.save("a.txt", ContentFile(b"stored before the wrapper"))
    storage.index.begin_delete(name="a.txt", token="dead", claim_ttl=SHORT_TTL)
    time.sleep(SHORT_TTL * 2)
    storage.delete("a.txt")  # takes the tombstone over
    assert not storage.exists("a.txt")
    # The dead deleter may yet delete whatever a.txt holds: a save goes elsewhere.
    name = storage.save("a.txt", ContentFile(b"new"))
    assert name != "a.txt" and read_all(storage, name) == b"new"


def test_a_save_longer_than_the_tombstones_is_verified_after_any_untracked_delete(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url)
    index = storage.index
    digest, since = _claimed(storage, b"new", "saver")
    storage.delete("elsewhere.txt")  # an untracked delete of another name finishes
    commit = index.commit_save(
        digest=digest, token="saver", name="a.txt", size=3, since=since, elapsed=0.1
    )
    assert commit.action == "committed"  # a short write: the tombstones tell, none of a.txt
    # Every save has a token of its own (a commit leaves a receipt under it).
    digest, since = _claimed(storage, b"newer", "second saver")
    storage.delete("elsewhere.txt")
    commit = index.commit_save(
        digest=digest,
        token="second saver",
        name="b.txt",
        size=5,
        since=since,
        elapsed=TOMBSTONE_TTL,
    )
    # b.txt's tombstone may have expired meanwhile: the saver checks its object first.
    assert commit.action == "verify" and commit.since >= since + 1
    commit = index.commit_save(
        digest=digest, token="second saver", name="b.txt", size=5, since=commit.since, elapsed=0.1
    )
    assert commit.action == "committed" and storage.references("b.txt") == 1


def test_plain_untracked_deletes_stay_cheap(make_fs_dedup: Make, index_url: str) -> None:
    storage = make_fs_dedup(index=index_url)
    storage.inner.save("a.txt", ContentFile(b"stored before the wrapper"))
    calls: list[str] = []
    for method in ("begin_delete", "commit_delete"):
        original = getattr(storage.index, method)

        def counted(*args: Any, _original: Any = original, _name: str = method, **kw: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kw)

        setattr(storage.index, method, counted)
    storage.delete("a.txt")
    storage.delete("a.txt")  # deleting twice is harmless
    assert calls == ["begin_delete", "commit_delete"] * 2  # two round trips each
    assert not storage.exists("a.txt")


IPFS_BACKEND = "dedupstore.backends.ipfs.IPFSStorage"


@pytest.fixture
def ipfs_repo(tmp_path: Path) -> Iterator[Path]:
    """Start an isolated embedded IPFS node of this test's own; stop it afterwards."""
    from dedupstore.backends.ipfs.embedded import get_node, stop_all_nodes

    node = get_node(tmp_path / "ipfs")
    node.start()
    yield node.repo
    stop_all_nodes([node])


def test_an_untracked_unpin_during_a_save_does_not_lose_the_pin(
    ipfs_repo: Path, index_url: str
) -> None:
    storage = DedupStorage(
        inner={"BACKEND": IPFS_BACKEND, "OPTIONS": {"embedded_repo": str(ipfs_repo)}},
        index=index_url,
        namespace=f"test-{uuid.uuid4().hex}",
    )
    payload = b"pinned by a save, unpinned by an untracked delete"
    cid = storage.inner.save("before.txt", ContentFile(payload))  # pinned before the wrapper
    pin = Paused(storage.inner, "save")
    saver = Background(lambda: storage.save("a.txt", ContentFile(payload)))
    pin.wait()  # the saver pinned the CID and has not committed yet
    storage.delete(cid)  # the index does not know the CID: it unpins at once
    pin.release.set()
    assert saver.result() == cid
    assert storage.references(cid) == 1
    assert storage.inner.exists(cid), "the index counts a reference to an unpinned CID"
    assert read_all(storage, cid) == payload


def test_a_delete_whose_reply_was_lost_drops_exactly_one_reference(
    make_fs_dedup: Make, redis_url: str, busy_redis: Callable[[int], None]
) -> None:
    storage = make_fs_dedup(index=redis_url, index_timeout=0.2, wait_timeout=5)
    name = storage.save("a.txt", ContentFile(b"shared"))
    for other in ("b.txt", "c.txt"):
        assert storage.save(other, ContentFile(b"shared")) == name
    busy_redis(700)
    # The delete's script runs after the client timed out: the reply is lost. The delete
    # learns what happened and finishes instead of raising "nothing was deleted" (a retry
    # by the application would then drop a second reference).
    storage.delete(name)
    assert storage.references(name) == 2 and read_all(storage, name) == b"shared"
    storage.delete(name)
    storage.delete(name)
    assert not storage.exists(name)


def test_a_delete_whose_outcome_cannot_be_known_says_so(
    make_fs_dedup: Make, redis_url: str, busy_redis: Callable[[int], None]
) -> None:
    from dedupstore import DeleteOutcomeUnknown, IndexUnavailable

    storage = make_fs_dedup(index=redis_url, index_timeout=0.1, wait_timeout=0.4)
    name = storage.save("a.txt", ContentFile(b"shared"))
    assert storage.save("b.txt", ContentFile(b"shared")) == name
    busy_redis(1500)
    with pytest.raises(DeleteOutcomeUnknown) as caught:
        storage.delete(name)
    assert isinstance(caught.value, IndexUnavailable)
    message = str(caught.value)
    assert "unknown" in message and "retry" in message and "Nothing was" not in message
    wait_until_redis_answers(redis_url)  # every attempt sent meanwhile has run
    # The delete and its attempts to learn the outcome ran once between them.
    assert storage.references(name) == 1 and read_all(storage, name) == b"shared"


def test_redis_py_never_retries_an_index_command(make_fs_dedup: Make, redis_url: str) -> None:
    storage = make_fs_dedup(index=redis_url)
    client = storage.index.client  # type: ignore[attr-defined]
    connection = client.connection_pool.make_connection()
    try:
        assert connection.retry.get_retries() == 0
    finally:
        connection.disconnect()


def test_a_delete_on_a_stopped_index_says_nothing_was_deleted(tmp_path: Path) -> None:
    from dedupstore import IndexUnavailable
    from dedupstore.testing.redis import RedisServer

    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path)},
    }
    with RedisServer() as private:
        storage = DedupStorage(inner=inner, index=private.url, index_timeout=0.5)
        name = storage.save("a.txt", ContentFile(b"counted"))
    started = time.monotonic()
    with pytest.raises(IndexUnavailable, match="Nothing was deleted") as caught:
        storage.delete(name)
    assert type(caught.value) is IndexUnavailable
    assert time.monotonic() - started < 5, "the script never reached the server: no waiting"
    assert storage.exists(name)


# -- deleters that stall, or whose lease renewals cannot reach the index ------------------


def _stalled_deleter(make: Make, namespace: str, index_url: str, renewals: str) -> DedupStorage:
    """Return a storage whose deletes keep no lease: ``stopped`` (the process is stopped,
    nothing renews) or ``unreachable`` (the renewals run and fail: a network fault)."""
    storage = make(index=index_url, namespace=namespace, claim_ttl=SHORT_TTL)
    if renewals == "stopped":
        storage._claim_keeper.keep = lambda digest, token: None  # type: ignore[method-assign]
    else:
        from dedupstore import IndexUnavailable

        def unreachable(**kwargs: Any) -> bool:
            raise IndexUnavailable(storage.index.display_url, ConnectionError("dropped"))

        storage.index.refresh_claim = unreachable  # type: ignore[method-assign]
    return storage


@pytest.mark.parametrize("renewals", ["stopped", "unreachable"])
def test_a_deleter_past_its_lease_never_deletes_an_overwrite_committed_since(
    make_fs_dedup: Make, index_url: str, renewals: str
) -> None:
    storage = make_fs_dedup(index=index_url, claim_ttl=SHORT_TTL)
    deleter = _stalled_deleter(make_fs_dedup, storage.namespace, index_url, renewals)
    assert storage.save("a.txt", ContentFile(b"old")) == "a.txt"
    remove = PausedBefore(deleter.inner, "delete")
    deleting = Background(lambda: deleter.delete("a.txt"))
    remove.wait()  # begin_delete decided; the inner delete is stalled (or slow)
    time.sleep(SHORT_TTL * 3)  # nothing renewed its lease: it lapsed
    replacer = make_fs_dedup(index=index_url, namespace=storage.namespace, overwrite=True)
    new = replacer.save("a.txt", ContentFile(b"new"))
    remove.release.set()  # the deleter wakes and deletes what a.txt holds
    deleting.result()
    assert storage.exists(new), "the stalled deleter deleted an object committed after it"
    assert read_all(storage, new) == b"new" and storage.references(new) == 1


@pytest.mark.parametrize("renewals", ["stopped", "unreachable"])
def test_a_deleter_past_its_lease_never_deletes_a_save_committed_after_a_takeover(
    make_fs_dedup: Make, index_url: str, renewals: str
) -> None:
    storage = make_fs_dedup(index=index_url, claim_ttl=SHORT_TTL)
    deleter = _stalled_deleter(make_fs_dedup, storage.namespace, index_url, renewals)
    assert storage.save("a.txt", ContentFile(b"old")) == "a.txt"
    remove = PausedBefore(deleter.inner, "delete")
    deleting = Background(lambda: deleter.delete("a.txt"))
    remove.wait()
    time.sleep(SHORT_TTL * 3)
    storage.delete("a.txt")  # takes the interrupted deletion over and finishes it
    assert storage.index.lookup("a.txt") is None
    new = storage.save("a.txt", ContentFile(b"new"))
    remove.release.set()
    deleting.result()
    assert storage.exists(new), "the stalled deleter deleted an object committed after it"
    assert read_all(storage, new) == b"new" and storage.references(new) == 1


def test_an_untracked_deleter_past_its_lease_never_deletes_a_save_committed_since(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, claim_ttl=SHORT_TTL)
    deleter = _stalled_deleter(make_fs_dedup, storage.namespace, index_url, "stopped")
    storage.inner.save("a.txt", ContentFile(b"stored before the wrapper"))
    remove = PausedBefore(deleter.inner, "delete")
    deleting = Background(lambda: deleter.delete("a.txt"))
    remove.wait()
    time.sleep(SHORT_TTL * 3)
    storage.delete("a.txt")  # takes the dead deleter's tombstone over
    new = storage.save("a.txt", ContentFile(b"new"))
    remove.release.set()
    deleting.result()
    assert storage.exists(new) and read_all(storage, new) == b"new"
    assert storage.references(new) == 1


# -- dead deleters ----------------------------------------------------------------------


def test_a_dead_deleter_does_not_block_overwrites(make_fs_dedup: Make, index_url: str) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    storage.save("a.txt", ContentFile(b"old"))
    # A deleter marks the record "deleting" and dies before deleting the inner object.
    decision = storage.index.begin_delete(name="a.txt", token="dead", claim_ttl=SHORT_TTL)
    assert decision.action == "delete"
    digest = storage.digest(ContentFile(b"new"))
    assert storage.index.begin_replace(name="a.txt", token="other", digest=digest) == "wait"
    time.sleep(SHORT_TTL * 2)
    # Was ClaimTimeout. The dead deleter may still delete a.txt: the save goes elsewhere.
    name = storage.save("a.txt", ContentFile(b"new"))
    assert name != "a.txt"
    assert read_all(storage, name) == b"new" and storage.references(name) == 1


def test_an_aborted_takeover_of_a_dead_deletion_leaves_it_to_the_next_delete(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    storage.save("a.txt", ContentFile(b"old"))
    storage.index.begin_delete(name="a.txt", token="dead", claim_ttl=SHORT_TTL)
    time.sleep(SHORT_TTL * 2)
    index = storage.index
    # The dead deleter may still delete the name: nobody replaces it meanwhile.
    assert index.begin_replace(name="a.txt", token="taker", digest="d" * 64) == "quarantined"
    index.abort_replace(name="a.txt", token="taker", inner_deleted=False)  # changes nothing
    # No reference was restored: the record is an interrupted deletion, never live.
    record = index.lookup("a.txt")
    assert record is not None and (record.state, record.refs) == ("deleting", 0)
    assert storage.references("a.txt") == 0
    storage.delete("a.txt")
    assert not storage.exists("a.txt") and index.lookup("a.txt") is None


# -- a tracked delete during a save of the same content-addressed object -----------------


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


# -- an untracked delete of a temporary upload being saved ------------------------------


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


@pytest.mark.django_db
def test_gc_keeps_an_object_that_a_hit_by_name_references_during_its_delete(
    index_url: str, tmp_path: Path
) -> None:
    """gc looks a last time, then deletes: a hit by name in between must keep the object."""
    from dedupstore.ops.base import Report
    from dedupstore.ops.gc import _delete_unreferenced

    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        },
        index=index_url,
        namespace=f"test-{uuid.uuid4().hex}",
        reuse="name",
    )
    name = storage.save("unreferenced.bin", ContentFile(b"nobody holds me yet"))
    digest = storage.index.lookup(name).digest  # type: ignore[union-attr]
    storage.index.set_references(name, 0, grace=0)  # gc's candidate: refs 0, no row
    index: Any = storage.index
    look = index.lookup

    def lookup_then_a_hit(looked_up: str) -> Any:
        record = look(looked_up)
        # The hit by name lands after gc's last look and before its delete.
        assert storage.save(name, ContentFile(b"nobody holds me yet")) == name
        return record

    index.lookup = lookup_then_a_hit
    try:
        _delete_unreferenced(storage, Report("gc", "test", storage.namespace), name, digest)
    finally:
        index.lookup = look
    assert storage.exists(name)
    assert storage.references(name) == 1
    assert read_all(storage, name) == b"nobody holds me yet"
