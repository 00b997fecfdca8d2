"""Names: every method accepts, normalises or refuses a name the same way, with typed errors."""

from __future__ import annotations

import unicodedata
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.exceptions import SuspiciousFileOperation
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from tests.contract import read_all

Make = Callable[..., DedupStorage]

#: Every public method that takes a name, called with it.
NAME_METHODS: dict[str, Callable[[DedupStorage, object], object]] = {
    "save": lambda storage, name: storage.save(name, ContentFile(b"x")),
    "open": lambda storage, name: storage.open(name),
    "delete": lambda storage, name: storage.delete(name),
    "exists": lambda storage, name: storage.exists(name),
    "size": lambda storage, name: storage.size(name),
    "url": lambda storage, name: storage.url(name),
    "path": lambda storage, name: storage.path(name),
    "listdir": lambda storage, name: storage.listdir(name),
    "get_modified_time": lambda storage, name: storage.get_modified_time(name),
    "get_accessed_time": lambda storage, name: storage.get_accessed_time(name),
    "get_created_time": lambda storage, name: storage.get_created_time(name),
    "references": lambda storage, name: storage.references(name),
}


#: url() renders links for names read back from rows, as Django's storages do: a NUL is
#: percent-encoded there rather than refused (a template must not fail on an odd name).
NUL_REFUSING_METHODS = sorted(set(NAME_METHODS) - {"url"})


@pytest.mark.parametrize("method", NUL_REFUSING_METHODS)
def test_a_nul_byte_in_a_name_is_a_suspicious_file_operation_in_every_method(
    make_fs_dedup: Make, method: str
) -> None:
    storage = make_fs_dedup()
    with pytest.raises(SuspiciousFileOperation, match="NUL"):
        NAME_METHODS[method](storage, "bad\x00name.txt")


def test_url_percent_encodes_a_nul_byte_as_django_does(make_fs_dedup: Make) -> None:
    assert "%00" in make_fs_dedup().url("bad\x00name.txt")


def test_a_path_name_is_accepted_by_every_method_as_django_does(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    name = storage.save(Path("docs/p.txt"), ContentFile(b"pathlib"))
    assert name == "docs/p.txt"
    stored = Path(name)
    assert storage.exists(stored)
    assert storage.size(stored) == 7
    with storage.open(stored) as handle:
        assert handle.read() == b"pathlib"
    assert storage.url(stored).endswith("docs/p.txt")
    assert storage.path(stored).endswith("docs/p.txt")
    assert storage.get_modified_time(stored)
    assert storage.references(stored) == 1
    assert storage.listdir(Path("")) == (["docs"], [])
    assert storage.listdir(Path("docs")) == ([], ["p.txt"])
    storage.delete(stored)
    assert not storage.exists(name)
    assert storage.references(name) == 0


@pytest.mark.parametrize("name", [None, ""])
def test_delete_without_a_name_raises_djangos_value_error(make_fs_dedup: Make, name) -> None:
    storage = make_fs_dedup()
    with pytest.raises(ValueError, match=r"The name must be given to delete\(\)\."):
        storage.delete(name)


def test_a_backslash_reaches_the_same_object_in_every_method(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    keep = storage.save("a/b.txt", ContentFile(b"shared"))
    name = storage.save("a\\b.txt", ContentFile(b"shared"))
    assert name == keep == "a/b.txt"
    assert storage.references("a\\b.txt") == 2
    assert storage.exists("a\\b.txt")
    assert storage.size("a\\b.txt") == 6
    with storage.open("a\\b.txt") as handle:
        assert handle.read() == b"shared"
    assert storage.path("a\\b.txt") == storage.path("a/b.txt")
    assert storage.url("a\\b.txt") == storage.url("a/b.txt")
    # The delete drops one of the two references of a/b.txt, not another file's.
    storage.delete("a\\b.txt")
    assert storage.references("a/b.txt") == 1
    assert storage.exists("a/b.txt")
    with pytest.raises(SuspiciousFileOperation):
        storage.open("..\\escape.txt")


def test_a_name_that_is_not_nfc_reaches_the_nfc_object_in_every_method(
    make_fs_dedup: Make,
) -> None:
    storage = make_fs_dedup()
    composed = unicodedata.normalize("NFC", "café.txt")
    decomposed = unicodedata.normalize("NFD", "café.txt")
    assert composed != decomposed
    name = storage.save(decomposed, ContentFile(b"accent"))
    assert name == composed
    assert storage.exists(decomposed)
    assert storage.size(decomposed) == 6
    assert storage.references(decomposed) == 1
    with storage.open(decomposed) as handle:
        assert handle.read() == b"accent"
    storage.delete(decomposed)
    assert not storage.exists(composed)
    assert storage.references(composed) == 0


@pytest.mark.parametrize("alias", ["a//b.txt", "a/./b.txt", "a/b/../b.txt"])
def test_aliases_of_a_name_are_refused(make_fs_dedup: Make, alias: str) -> None:
    storage = make_fs_dedup(overwrite=True)
    name = storage.save("a/b.txt", ContentFile(b"shared"))
    assert storage.save("c.txt", ContentFile(b"shared")) == name
    with pytest.raises(SuspiciousFileOperation):
        storage.delete(alias)
    with pytest.raises(SuspiciousFileOperation):
        storage.save(alias, ContentFile(b"other"))
    assert read_all(storage, name) == b"shared" and storage.references(name) == 2


@pytest.mark.parametrize("path", ["dir/", "dir//", "dir/sub/"])
def test_listdir_takes_a_trailing_slash(make_fs_dedup: Make, path: str) -> None:
    storage = make_fs_dedup()
    storage.save("dir/sub/a.txt", ContentFile(b"A"))
    storage.save("dir/b.txt", ContentFile(b"B"))
    assert storage.listdir(path) == storage.listdir(path.rstrip("/"))  # raised before


@pytest.mark.parametrize("path", ["/", "/dir/", "../", "dir/../../"])
def test_listdir_still_refuses_paths_outside_the_storage(make_fs_dedup: Make, path: str) -> None:
    with pytest.raises(SuspiciousFileOperation):
        make_fs_dedup().listdir(path)
