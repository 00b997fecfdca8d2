"""``overwrite=True`` writes the new content first and switches last.

A failed replace leaves the old content readable and counted; readers see the old content
until the switch; a slow replace racing an ordinary save of the same name never hands
the replaced name's holder the other save's bytes. Over ``FileSystemStorage`` (which
keeps existing names: the switch is an atomic rename) and an in-memory storage whose
write replaces what the name holds, as S3 does (the write is the switch), against a real
Redis and the locmem twin.

Replacers that died (their lease lapsed) or stalled past their lease never lock the name
nor clobber the record a delete took over, and a plain save over a name being replaced
writes elsewhere at once and leaves the replaced reference counted. Those interleavings
are forced by calling the index directly, as a replacer would, or by an inner ``_save``
that runs the other party's calls before it writes.
"""

from __future__ import annotations

import secrets
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile, File

from dedupstore import ClaimLost, DedupStorage
from tests.conftest import INDEX_KINDS_WITH_CLUSTER, index_url_of_kind
from tests.contract import read_all
from tests.helpers import PATIENCE, Background, PausedBefore, claim_digest

Make = Callable[..., DedupStorage]

INNER_KINDS = ["filesystem", "in-memory"]

#: Claim lifetime of the crash tests: a dead holder's lease is gone after it.
SHORT_TTL = 0.05


@pytest.fixture(params=INDEX_KINDS_WITH_CLUSTER)
def index_url(request: pytest.FixtureRequest, redis_url: str) -> str:
    """A real Redis, the locmem twin, and (slow) a real Redis Cluster."""
    return index_url_of_kind(request, redis_url)


@pytest.fixture(params=INNER_KINDS)
def make_storage(
    request: pytest.FixtureRequest, index_url: str, tmp_path: Path
) -> Callable[..., DedupStorage]:
    """Return a factory of DedupStorage sharing one index namespace and one inner storage."""
    namespace = f"test-{uuid.uuid4().hex}"
    if request.param == "filesystem":
        inner: dict[str, Any] = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path / "media")},
        }
    else:
        inner = {"BACKEND": "tests.helpers.ReplacingMemoryStorage"}
    shared_inner: list[Any] = []

    def make(**options: Any) -> DedupStorage:
        storage = DedupStorage(inner=inner, index=index_url, namespace=namespace, **options)
        if shared_inner:  # InMemoryStorage keeps its files per instance: share one
            storage._inner = shared_inner[0]
        else:
            shared_inner.append(storage.inner)
        return storage

    return make


class UploadDropped(OSError):
    pass


def _fail_next_write(storage: DedupStorage) -> None:
    def failing(name: str, content: Any) -> str:
        storage.inner.__dict__.pop("_save")
        raise UploadDropped("the connection dropped during the upload")

    storage.inner._save = failing  # type: ignore[method-assign]


def test_a_failed_replace_leaves_the_old_content_readable_and_counted(
    make_storage: Callable[..., DedupStorage],
) -> None:
    storage = make_storage(overwrite=True)
    assert storage.save("r.bin", ContentFile(b"old version")) == "r.bin"
    _fail_next_write(storage)
    with pytest.raises(UploadDropped):
        storage.save("r.bin", ContentFile(b"new version"))
    assert read_all(storage, "r.bin") == b"old version"
    assert storage.references("r.bin") == 1
    # Still a hit for its content, and replaceable again.
    assert storage.save("copy.bin", ContentFile(b"old version")) == "r.bin"
    storage.delete("r.bin")
    assert storage.save("r.bin", ContentFile(b"new version")) == "r.bin"
    assert read_all(storage, "r.bin") == b"new version"


def test_readers_see_the_old_content_while_a_replace_uploads(
    make_storage: Callable[..., DedupStorage],
) -> None:
    storage = make_storage(overwrite=True)
    storage.save("r.bin", ContentFile(b"old version"))
    upload = PausedBefore(storage.inner, "_save")
    replacer = Background(lambda: storage.save("r.bin", ContentFile(b"new version")))
    upload.wait()
    assert read_all(storage, "r.bin") == b"old version"
    upload.release.set()
    assert replacer.result() == "r.bin"
    assert read_all(storage, "r.bin") == b"new version" and storage.references("r.bin") == 1
    assert storage.save("copy.bin", ContentFile(b"new version")) == "r.bin"


def test_a_slow_replace_racing_an_ordinary_save_of_the_name_keeps_every_holder_right(
    make_storage: Callable[..., DedupStorage],
) -> None:
    plain = make_storage()
    replacing = make_storage(overwrite=True)
    assert plain.save("r.bin", ContentFile(b"H1's bytes")) == "r.bin"
    upload = PausedBefore(replacing.inner, "_save")
    replacer = Background(lambda: replacing.save("r.bin", ContentFile(b"R's bytes")))
    upload.wait()  # R's slow upload is under way
    committing = threading.Event()
    commit_save = plain.index.commit_save

    def spy(**kwargs: Any) -> Any:  # the real call; tells when P has written
        committing.set()
        return commit_save(**kwargs)

    plain.index.commit_save = spy  # type: ignore[method-assign]
    saver = Background(lambda: plain.save("r.bin", ContentFile(b"P's bytes")))
    assert committing.wait(PATIENCE), "P never wrote"
    upload.release.set()  # R's upload lands after P wrote
    r_name = replacer.result()
    p_name = saver.result()
    assert read_all(plain, p_name) == b"P's bytes"
    assert read_all(plain, r_name) == b"R's bytes"
    # H1 holds r.bin: it reads its own bytes, or R's if R replaced the name, never P's.
    assert read_all(plain, "r.bin") in (b"H1's bytes", b"R's bytes")
    assert p_name != "r.bin" and plain.references(p_name) == 1
    assert plain.references("r.bin") == 1
    # H1's delete removes only what r.bin holds; P's object stays.
    plain.delete("r.bin")
    assert read_all(plain, p_name) == b"P's bytes"


# -- an overwrite racing another, and replacers that died or lost their lease ----------


def test_concurrent_overwrite_of_an_uncommitted_name_keeps_content_right(
    make_fs_dedup: Make,
) -> None:
    a = make_fs_dedup(overwrite=True, namespace="race")
    b = make_fs_dedup(overwrite=True, namespace="race")
    original = a.inner._save

    def write_then_let_b_overwrite(name: str, content: Any) -> str:
        stored = original(name, content)  # A has written but not yet committed
        b.save("avatar.png", ContentFile(b"Y" * 10))
        return stored

    a.inner._save = write_then_let_b_overwrite
    first = a.save("avatar.png", ContentFile(b"X" * 10))
    a.inner._save = original
    assert read_all(a, first) == b"X" * 10
    hit = a.save("other.png", ContentFile(b"X" * 10))
    assert read_all(a, hit) == b"X" * 10


def _die_while_replacing(storage: DedupStorage, name: str, new: bytes) -> None:
    """Do what a saver does up to its inner write, then stop (its process died)."""
    digest = storage.digest(ContentFile(new))
    decision = storage.index.begin_save(
        digest=digest,
        reuse="content",
        name=name,
        max_length=None,
        token="dead",
        claim_ttl=SHORT_TTL,
    )
    assert decision.action == "claimed"
    assert storage.index.begin_replace(name=name, token="dead", digest=digest) == "replace"
    # While the holder's claim lives, nobody else may touch the record.
    assert storage.index.begin_replace(name=name, token="other", digest=digest) == "wait"
    assert storage.index.begin_delete(name=name, token="other", claim_ttl=1).action == "wait"
    time.sleep(SHORT_TTL * 2)  # nobody renews the dead holder's claim: it expires


def test_a_dead_replacer_does_not_lock_the_name_for_saves(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    storage.save("a.txt", ContentFile(b"old"))
    _die_while_replacing(storage, "a.txt", b"new")
    # Was ClaimTimeout. The dead replacer may still write a.txt: the save goes elsewhere.
    name = storage.save("a.txt", ContentFile(b"newer"))
    assert name != "a.txt"
    assert read_all(storage, name) == b"newer" and storage.references(name) == 1
    assert storage.save("b.txt", ContentFile(b"newer")) == name


def test_a_dead_replacer_does_not_lock_the_name_for_deletes(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    storage.save("a.txt", ContentFile(b"old"))
    _die_while_replacing(storage, "a.txt", b"new")
    storage.delete("a.txt")  # was ClaimTimeout: the one reference goes, and the object
    assert not storage.exists("a.txt") and storage.index.lookup("a.txt") is None


def test_a_replacer_that_lost_its_lease_does_not_clobber_the_record(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True)
    storage.save("a.txt", ContentFile(b"old"))
    index = storage.index
    slow = claim_digest(storage, b"slow", "slow", SHORT_TTL)
    assert index.begin_replace(name="a.txt", token="slow", digest=slow) == "replace"
    time.sleep(SHORT_TTL * 2)  # the slow holder stalls past its claim: its lease is gone
    fast = claim_digest(storage, b"fast", "fast", 10)
    # Nobody replaces the name while the slow holder may still write it ...
    assert index.begin_replace(name="a.txt", token="fast", digest=fast) == "quarantined"
    # ... but a delete takes its record over, and removes it.
    decision = index.begin_delete(name="a.txt", token="deleter", claim_ttl=10)
    assert decision.action == "delete"
    index.commit_delete(name="a.txt", digest=decision.digest, token="deleter")
    with pytest.raises(ClaimLost, match="removed it from the index") as caught:
        index.commit_save(digest=slow, token="slow", name="a.txt", size=4, replacing=True)
    assert caught.value.taken_by == "none"
    assert index.lookup("a.txt") is None


def test_a_save_whose_replace_was_taken_over_raises_claim_lost(
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
        # The saver stalls past its claim (simulated: its claim is gone) during its upload,
        # and a delete() of the name takes the record over and deletes it.
        index.release_claim(digest=held["digest"], token=held["token"])
        other = claim_digest(storage, b"other", "other", 10)
        assert begin_replace(name="a.txt", token="other", digest=other) == "quarantined"
        decision = index.begin_delete(name="a.txt", token="deleter", claim_ttl=10)
        assert decision.action == "delete"
        storage.inner.delete("a.txt")
        index.commit_delete(name="a.txt", digest=decision.digest, token="deleter")
        return str(original(name, content))

    storage.inner._save = stall_then_lose_the_lease
    with pytest.raises(ClaimLost, match="removed it from the index") as caught:
        storage.save("a.txt", ContentFile(b"mine"))
    assert caught.value.taken_by == "none"
    assert index.lookup("a.txt") is None


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


# -- a plain save over a name being replaced --------------------------------------------


def _start_replace(storage: DedupStorage, name: str, data: bytes, claim_ttl: float) -> str:
    """Play an overwrite=True save of ``name`` up to its upload; return its token.

    Exactly what ``DedupStorage`` does: claim the digest, take the record. The old object
    stays until the new one is switched in (the write comes first). The caller then lets
    the replacer die (its claim lapses) or finish.
    """
    token = secrets.token_hex(16)
    digest = storage.digest(ContentFile(data))
    index = storage.index
    decision = index.begin_save(
        digest=digest,
        reuse="content",
        name=name,
        max_length=None,
        token=token,
        claim_ttl=claim_ttl,
        overwrite=True,
    )
    assert decision.action == "claimed"
    assert index.begin_replace(name=name, token=token, digest=digest) == "replace"
    return token


def test_a_save_over_a_dead_replacers_name_keeps_the_replaced_reference(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url)
    assert storage.save("a.txt", ContentFile(b"old")) == "a.txt"  # user A's one reference
    # A's own overwrite=True save of the name dies during its upload: the record stays
    # "replacing", with A's one reference.
    _start_replace(storage, "a.txt", b"new", SHORT_TTL)
    time.sleep(SHORT_TTL * 3)  # its claim (the lease) lapses
    # User S saves other content under the name: it is A's, S gets another.
    other = storage.save("a.txt", ContentFile(b"other"))
    assert other != "a.txt" and read_all(storage, other) == b"other"
    # A's row still names a.txt: its reference is counted, and A's delete takes only it.
    assert storage.references("a.txt") == 1
    storage.delete("a.txt")
    assert storage.references(other) == 1 and read_all(storage, other) == b"other"


def test_a_save_over_a_name_being_replaced_writes_elsewhere_at_once(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, wait_timeout=PATIENCE)
    assert storage.save("a.txt", ContentFile(b"old")) == "a.txt"
    # A live replacer (its claim held for long) is uploading ...
    token = _start_replace(storage, "a.txt", b"new", claim_ttl=PATIENCE)
    # ... and S saves the name meanwhile: it neither waits nor touches the name.
    saver = Background(lambda: storage.save("a.txt", ContentFile(b"other")))
    other = saver.result()
    assert other != "a.txt" and read_all(storage, other) == b"other"
    # The replacer switches its upload in and commits.
    index = storage.index
    digest = storage.digest(ContentFile(b"new"))
    Path(storage.inner.path("a.txt")).write_bytes(b"new")
    decision = index.commit_save(digest=digest, token=token, name="a.txt", size=3, replacing=True)
    assert decision.action == "committed"
    assert storage.references("a.txt") == 1 and storage.references(other) == 1
    assert read_all(storage, "a.txt") == b"new" and read_all(storage, other) == b"other"


def test_references_count_the_reference_a_dead_replacers_record_keeps(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url)
    assert storage.save("a.txt", ContentFile(b"old")) == "a.txt"  # A's one reference
    _start_replace(storage, "a.txt", b"new", SHORT_TTL)
    time.sleep(SHORT_TTL * 3)  # the replacer died: its record stays 'replacing'
    # The index still counts A's reference (README: a dead replacer's record still counts
    # the one reference of the name it was replacing): references() must say so ...
    record = storage.index.lookup("a.txt")
    assert record is not None and (record.state, record.refs) == ("replacing", 1)
    assert storage.references("a.txt") == 1
    # ... as a save of the name leaves it (it writes elsewhere), and A's delete() drops it.
    other = storage.save("a.txt", ContentFile(b"other"))
    assert other != "a.txt" and storage.references("a.txt") == 1
    storage.delete("a.txt")
    assert storage.references("a.txt") == 0 and storage.references(other) == 1
