"""Saves of different content under one free name never write that name at once.

The inner storage is Django's ``InMemoryStorage``, whose write replaces whatever the name
holds (as S3, GCS and Azure do): ``exists()`` alone lets two saves both find the name free
and both write it. The interleaving is forced with a write held in flight, against a real
Redis and the locmem twin.
"""

from __future__ import annotations

import re
import uuid

from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from tests.contract import read_all
from tests.helpers import Background, PausedBefore

IN_MEMORY = {"BACKEND": "django.core.files.storage.InMemoryStorage"}


def _in_memory(index_url: str, **options: object) -> DedupStorage:
    return DedupStorage(
        inner=IN_MEMORY, index=index_url, namespace=f"test-{uuid.uuid4().hex}", **options
    )


def test_two_saves_of_one_free_name_on_an_overwriting_storage_keep_both_contents(
    index_url: str,
) -> None:
    storage = _in_memory(index_url)
    write = PausedBefore(storage.inner, "_save")
    first = Background(lambda: storage.save("doc.pdf", ContentFile(b"A" * 100)))
    write.wait()  # A found the name free and is uploading
    second = storage.save("doc.pdf", ContentFile(b"B" * 100))
    write.release.set()
    first_name = first.result()
    assert first_name != second
    assert read_all(storage, first_name) == b"A" * 100
    assert read_all(storage, second) == b"B" * 100
    # A later upload of either content is handed a name that holds exactly that content.
    assert read_all(storage, storage.save("again-a.pdf", ContentFile(b"A" * 100))) == b"A" * 100
    assert read_all(storage, storage.save("again-b.pdf", ContentFile(b"B" * 100))) == b"B" * 100
    assert storage.references(first_name) == 2 and storage.references(second) == 2


def test_a_late_write_never_lands_on_a_name_that_became_shared(index_url: str) -> None:
    storage = _in_memory(index_url)
    write = PausedBefore(storage.inner, "_save")
    late = Background(lambda: storage.save("doc.pdf", ContentFile(b"late" * 10)))
    write.wait()
    shared = storage.save("doc.pdf", ContentFile(b"first" * 10))
    assert storage.save("copy.pdf", ContentFile(b"first" * 10)) == shared  # a hit: refs 2
    write.release.set()
    late_name = late.result()
    assert read_all(storage, shared) == b"first" * 10 and storage.references(shared) == 2
    assert read_all(storage, late_name) == b"late" * 10 and storage.references(late_name) == 1


def test_a_reservation_ends_with_its_save(index_url: str) -> None:
    storage = _in_memory(index_url)
    name = storage.save("a.txt", ContentFile(b"one"))
    storage.delete(name)
    # The committed save's reservation is gone: the freed name can be reserved again.
    assert storage.save("a.txt", ContentFile(b"two")) == "a.txt"


def test_a_failed_write_releases_its_reservation(index_url: str) -> None:
    storage = _in_memory(index_url)
    original = storage.inner._save

    def failing(name: str, content: object) -> str:
        storage.inner.__dict__.pop("_save")
        raise OSError("upload dropped")

    storage.inner._save = failing  # type: ignore[method-assign]
    try:
        storage.save("a.txt", ContentFile(b"lost"))
    except OSError:
        pass
    else:
        raise AssertionError("the failed upload did not raise")
    assert storage.inner._save == original
    assert storage.save("a.txt", ContentFile(b"kept")) == "a.txt"


def test_a_reservation_whose_holder_lapsed_is_not_taken_over(index_url: str) -> None:
    storage = _in_memory(index_url)
    index = storage.index
    digest = storage.digest(ContentFile(b"stalled"))
    assert index.reserve_name(name="a.txt", token="stalled", digest=digest)
    # The stalled holder holds no claim on its lease: it may still be writing.
    assert not index.reserve_name(name="a.txt", token="other", digest=digest)
    assert not index.reserve_name(name="a.txt", token="other", digest=digest)
    assert index.reserve_name(name="a.txt", token="stalled", digest=digest)
    name = storage.save("a.txt", ContentFile(b"other"))
    assert name != "a.txt" and read_all(storage, name) == b"other"


def test_a_reserved_name_gets_an_alternative_that_keeps_every_suffix(index_url: str) -> None:
    storage = _in_memory(index_url)
    # Another save holds the free name "backup.tar.gz" for its write, with a live lease.
    storage.index.begin_save(
        digest="other",
        reuse="never",
        name="backup.tar.gz",
        max_length=None,
        token="other-save",
        claim_ttl=60.0,
    )
    assert storage.index.reserve_name(name="backup.tar.gz", token="other-save", digest="other")
    stored = storage.save("backup.tar.gz", ContentFile(b"archive"))
    # As Django's get_available_name names it: backup_<7 chars>.tar.gz.
    assert re.fullmatch(r"backup_[A-Za-z0-9]{7}\.tar\.gz", stored), stored
