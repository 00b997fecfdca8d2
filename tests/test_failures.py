"""Failures at every step leave at worst an orphaned inner object, never a bad name or count."""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.files.base import ContentFile

from dedupstore import DedupStorage, IndexUnavailable
from dedupstore.testing.redis import RedisServer, find_free_port
from tests.contract import read_all
from tests.helpers import FailingInner

Make = Callable[..., DedupStorage]


class Boom(RuntimeError):
    pass


def test_inner_write_failure_stores_nothing_and_releases_the_claim(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup(wait_timeout=2)
    FailingInner(storage.inner, "_save", Boom("disk full"))
    with pytest.raises(Boom):
        storage.save("a.txt", ContentFile(b"C"))
    assert storage.index.lookup("a.txt") is None
    # The claim was released: the next save writes at once instead of waiting.
    name = storage.save("a.txt", ContentFile(b"C"))
    assert read_all(storage, name) == b"C" and storage.references(name) == 1


def test_index_failure_after_the_inner_write_returns_no_name(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    index = storage.index
    original = index.commit_save

    def failing_commit(**kwargs: object) -> None:
        index.commit_save = original  # type: ignore[method-assign]
        raise IndexUnavailable(index.display_url, ConnectionError("lost"))

    index.commit_save = failing_commit  # type: ignore[method-assign]
    with pytest.raises(IndexUnavailable):
        storage.save("a.txt", ContentFile(b"C"))
    # The inner object is an orphan: present, but never counted or returned.
    assert storage.inner.exists("a.txt")
    assert storage.index.lookup("a.txt") is None
    name = storage.save("b.txt", ContentFile(b"C"))
    assert name != "a.txt" and read_all(storage, name) == b"C"


def test_inner_delete_failure_keeps_the_object_and_retries(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup(wait_timeout=2)
    name = storage.save("a.txt", ContentFile(b"C"))
    FailingInner(storage.inner, "delete", Boom("permission denied"))
    with pytest.raises(Boom) as caught:
        storage.delete(name)
    # The inner error keeps its type and says what the index did, and when to retry.
    (note,) = caught.value.__notes__
    assert "last reference to 'a.txt' was already dropped" in note
    assert "not if the name may have been saved again since" in note
    assert storage.exists(name)
    # No save may reuse an object whose deletion is under way or failed.
    again = storage.save("b.txt", ContentFile(b"C"))
    assert again != name
    storage.delete(name)  # the retry completes the deletion
    assert not storage.exists(name)
    assert read_all(storage, again) == b"C"


def test_a_failed_inner_delete_of_an_untracked_name_says_nothing_was_counted(
    make_fs_dedup: Make,
) -> None:
    storage = make_fs_dedup(wait_timeout=2)
    storage.inner.save("legacy.txt", ContentFile(b"stored before the wrapper"))
    FailingInner(storage.inner, "delete", Boom("permission denied"))
    with pytest.raises(Boom) as caught:
        storage.delete("legacy.txt")
    (note,) = caught.value.__notes__
    assert "'legacy.txt' had no counted reference" in note
    assert storage.exists("legacy.txt")
    storage.delete("legacy.txt")  # nothing saved it since: the retry deletes it
    assert not storage.exists("legacy.txt")


def test_overwrite_write_failure_keeps_the_replaced_object(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup(overwrite=True)
    storage.save("a.txt", ContentFile(b"old"))
    FailingInner(storage.inner, "_save", Boom("disk full"))
    with pytest.raises(Boom):
        storage.save("a.txt", ContentFile(b"new"))
    # overwrite=True writes first: the old object and its count are as they were.
    record = storage.index.lookup("a.txt")
    assert record is not None and (record.state, record.refs) == ("live", 1)
    assert storage.save("c.txt", ContentFile(b"old")) == "a.txt"


@pytest.mark.parametrize("failing", ["inner._save", "index.commit_save"])
def test_a_failed_overwrite_does_not_lock_the_name(make_fs_dedup: Make, failing: str) -> None:
    storage = make_fs_dedup(overwrite=True, claim_ttl=0.3, wait_timeout=1)
    storage.save("a.txt", ContentFile(b"old"))
    owner, method = failing.split(".")
    FailingInner(getattr(storage, owner), method, Boom(method))
    with pytest.raises(Boom):
        storage.save("a.txt", ContentFile(b"new"))
    time.sleep(0.4)
    storage.delete("a.txt")  # raised ClaimTimeout while the record stayed "replacing"
    assert storage.save("a.txt", ContentFile(b"again")) == "a.txt"


def test_a_crashed_claimant_blocks_only_until_its_claim_expires(
    redis_url: str, tmp_path: Path
) -> None:
    """Kill a process while it holds the claim mid-write; the next save takes over."""
    location = tmp_path / "media"
    script = textwrap.dedent(
        f"""
        import os, sys, time, django
        from django.conf import settings
        settings.configure(SECRET_KEY="s")
        django.setup()
        from django.core.files.base import ContentFile
        from dedupstore import DedupStorage
        storage = DedupStorage(
            inner={{"BACKEND": "django.core.files.storage.FileSystemStorage",
                   "OPTIONS": {{"location": {str(location)!r}}}}},
            index={redis_url!r}, namespace="crash", claim_ttl=1.0)
        original = storage.inner._save
        def stuck(*args, **kwargs):
            print("claimed", flush=True)
            time.sleep(60)
        storage.inner._save = stuck
        storage.save("a.txt", ContentFile(b"crash"))
        """
    )
    child = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, cwd=os.getcwd()
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == b"claimed"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location)},
    }
    storage = DedupStorage(inner=inner, index=redis_url, namespace="crash", wait_timeout=10)
    name = storage.save("a.txt", ContentFile(b"crash"))
    assert read_all(storage, name) == b"crash" and storage.references(name) == 1


@pytest.fixture
def dead_index_url() -> str:
    """Return a Redis URL where nothing listens."""
    return f"redis://:hunter2@127.0.0.1:{find_free_port()}/0"


def test_index_down_save_raises_a_clear_error_without_the_password(
    make_fs_dedup: Make, dead_index_url: str
) -> None:
    storage = make_fs_dedup(index=dead_index_url, index_timeout=0.5)
    with pytest.raises(IndexUnavailable) as caught:
        storage.save("a.txt", ContentFile(b"C"))
    message = str(caught.value)
    assert "127.0.0.1" in message and "hunter2" not in message and "***" in message
    assert not storage.inner.exists("a.txt")


def test_index_down_bypass_stores_without_sharing(
    make_fs_dedup: Make, dead_index_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    storage = make_fs_dedup(index=dead_index_url, on_index_error="bypass", index_timeout=0.5)
    storage.inner.save("a.txt", ContentFile(b"existing"))
    with caplog.at_level(logging.WARNING, logger="dedupstore"):
        first = storage.save("a.txt", ContentFile(b"C"))
        second = storage.save("a.txt", ContentFile(b"C"))
    assert len({first, second, "a.txt"}) == 3
    assert read_all(storage, first) == b"C" and read_all(storage, "a.txt") == b"existing"
    assert "without deduplication" in caplog.text and "hunter2" not in caplog.text


def test_index_down_reads_still_work(redis_url: str, tmp_path: Path) -> None:
    with RedisServer() as private:
        inner = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        }
        storage = DedupStorage(inner=inner, index=private.url, index_timeout=0.5)
        name = storage.save("dir/a.txt", ContentFile(b"readable"))
    # The private server is stopped now.
    assert read_all(storage, name) == b"readable"
    assert storage.exists(name) and storage.size(name) == 8
    assert storage.url(name).endswith("dir/a.txt")
    assert storage.listdir("dir") == ([], ["a.txt"])
    assert storage.get_modified_time(name) is not None
    with pytest.raises(IndexUnavailable):
        storage.delete(name)  # never delete what might be shared
    assert storage.exists(name)


def test_a_save_waiting_too_long_raises_claim_timeout(make_fs_dedup: Make) -> None:
    from dedupstore import ClaimTimeout

    storage = make_fs_dedup(wait_timeout=0.3)
    digest = storage.content_key("a.txt", ContentFile(b"held"))
    # Another process holds the claim on this content and never finishes in time.
    storage.index.begin_save(
        digest=digest, reuse="content", name="x", max_length=None, token="other", claim_ttl=30
    )
    with pytest.raises(ClaimTimeout, match="waiting for another process"):
        storage.save("a.txt", ContentFile(b"held"))
    assert not storage.inner.exists("a.txt")


def test_index_down_bypass_on_an_overwriting_store_never_writes_the_requested_free_name(
    dead_index_url: str,
) -> None:
    # Another process, whose index is up, may hold "report.pdf" reserved while it uploads;
    # this store's write would replace that object, so a bypassed save takes another name.
    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index=dead_index_url,
        namespace=f"bypass-{uuid.uuid4().hex}",
        on_index_error="bypass",
        index_timeout=0.5,
    )
    stored = storage.save("docs/report.tar.gz", ContentFile(b"untracked"))
    assert re.fullmatch(r"docs/report_[A-Za-z0-9]{7}\.tar\.gz", stored), stored
    assert storage.open(stored).read() == b"untracked"
