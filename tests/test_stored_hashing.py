"""How the ops commands hash stored objects (``ops.base.StoredHasher``).

A plain ``FileSystemStorage``'s files are hashed by their paths; any storage that could
change the bytes on their way out (a subclass with its own ``_open``) is read through
``open``. Either way the content key is the one a save gives the same content.
"""

from __future__ import annotations

import gzip
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile, File
from django.core.files.storage import FileSystemStorage

from dedupstore import DedupStorage
from dedupstore.ops.base import StoredHasher


class GzipFileSystemStorage(FileSystemStorage):
    """Keeps files gzipped on disk and hands them out decompressed."""

    def _open(self, name: str, mode: str = "rb") -> File:
        with open(self.path(name), "rb") as raw:
            return ContentFile(gzip.decompress(raw.read()), name=name)

    def _save(self, name: str, content: Any) -> str:
        return super()._save(name, ContentFile(gzip.compress(content.read())))


@pytest.mark.parametrize("size", [0, 5, 3 * 1024 * 1024])
def test_a_plain_file_hashes_to_the_content_key_its_save_recorded(
    make_fs_dedup: Callable[..., DedupStorage], size: int
) -> None:
    storage = make_fs_dedup()
    name = storage.save("clips/a.bin", ContentFile(b"x" * size))
    record = storage.index.lookup(name)
    assert record is not None

    assert StoredHasher(storage)(name) == (record.digest, size)


def test_a_storage_that_decompresses_in_open_is_hashed_through_open(
    redis_url: str, tmp_path: Path
) -> None:
    inner = {
        "BACKEND": f"{__name__}.GzipFileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "media")},
    }
    storage = DedupStorage(inner=inner, index=redis_url, namespace="gzip-hashing")
    name = storage.save("clips/a.txt", ContentFile(b"the same words " * 100))
    record = storage.index.lookup(name)
    assert record is not None

    assert StoredHasher(storage)(name) == (record.digest, 1500)


def test_a_missing_file_is_none_and_a_bad_name_raises(
    make_fs_dedup: Callable[..., DedupStorage],
) -> None:
    hasher = StoredHasher(make_fs_dedup())

    assert hasher("clips/gone.bin") is None
    with pytest.raises(SuspiciousFileOperation):
        hasher("../outside.bin")
