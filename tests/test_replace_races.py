"""``overwrite=True`` writes the new content first and switches last.

A failed replace leaves the old content readable and counted; readers see the old content
until the switch; a slow replace racing an ordinary save of the same name never hands
the replaced name's holder the other save's bytes. Over ``FileSystemStorage`` (which
keeps existing names: the switch is an atomic rename) and an in-memory storage whose
write replaces what the name holds, as S3 does (the write is the switch), against a real
Redis and the locmem twin.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from tests.conftest import INDEX_KINDS_WITH_CLUSTER, index_url_of_kind
from tests.contract import read_all
from tests.helpers import PATIENCE, Background, PausedBefore

INNER_KINDS = ["filesystem", "in-memory"]


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
