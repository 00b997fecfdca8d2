"""The reuse x overwrite decision table of the README, row by row, over FileSystemStorage."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from tests.contract import read_all

Make = Callable[..., DedupStorage]


@pytest.mark.parametrize("overwrite", [False, True])
def test_content_reuse_returns_the_object_stored_under_any_name(
    make_fs_dedup: Make, overwrite: bool
) -> None:
    storage = make_fs_dedup(reuse="content", overwrite=overwrite)
    first = storage.save("a.txt", ContentFile(b"C"))
    assert storage.save("elsewhere/b.txt", ContentFile(b"C")) == first
    assert storage.references(first) == 2


@pytest.mark.parametrize("overwrite", [False, True])
def test_name_reuse_only_when_the_requested_name_holds_it(
    make_fs_dedup: Make, overwrite: bool
) -> None:
    storage = make_fs_dedup(reuse="name", overwrite=overwrite)
    first = storage.save("a.txt", ContentFile(b"C"))
    assert storage.save("a.txt", ContentFile(b"C")) == "a.txt"
    assert storage.references("a.txt") == 2
    other = storage.save("b.txt", ContentFile(b"C"))
    assert other == "b.txt" and first == "a.txt"
    assert storage.references("b.txt") == 1


def test_never_reuse_stores_a_new_object_and_records_it(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup(reuse="never")
    first = storage.save("a.txt", ContentFile(b"C"))
    second = storage.save("a.txt", ContentFile(b"C"))
    assert first == "a.txt" and second != first and second.startswith("a_")
    assert storage.references(first) == storage.references(second) == 1
    assert storage.index.lookup(second) is not None


def test_taken_name_gets_an_alternative_name_without_overwrite(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup(overwrite=False)
    storage.save("a.txt", ContentFile(b"old"))
    new = storage.save("a.txt", ContentFile(b"new"))
    assert new != "a.txt"
    assert read_all(storage, "a.txt") == b"old"
    assert read_all(storage, new) == b"new"


def test_overwrite_replaces_an_object_with_one_reference(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup(overwrite=True)
    storage.save("a.txt", ContentFile(b"old"))
    assert storage.save("a.txt", ContentFile(b"new")) == "a.txt"
    assert read_all(storage, "a.txt") == b"new"
    assert storage.references("a.txt") == 1
    # The old content is no longer reachable by content either.
    assert storage.save("b.txt", ContentFile(b"old")) == "b.txt"


def test_overwrite_never_modifies_a_shared_object(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup(overwrite=True)
    storage.save("a.txt", ContentFile(b"shared"))
    storage.save("b.txt", ContentFile(b"shared"))  # -> a.txt, 2 references
    new = storage.save("a.txt", ContentFile(b"new"))
    assert new != "a.txt"
    assert read_all(storage, "a.txt") == b"shared"
    assert storage.references("a.txt") == 2


def test_overwrite_never_replaces_a_file_the_index_cannot_vouch_for(make_fs_dedup: Make) -> None:
    # It may be another save's object, written but not yet committed.
    storage = make_fs_dedup(overwrite=True)
    storage.inner.save("legacy.txt", ContentFile(b"before the wrapper"))
    new = storage.save("legacy.txt", ContentFile(b"after"))
    assert new != "legacy.txt" and read_all(storage, new) == b"after"
    assert read_all(storage, "legacy.txt") == b"before the wrapper"


def test_overwrite_with_never_reuse_replaces_same_content(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup(reuse="never", overwrite=True)
    storage.save("a.txt", ContentFile(b"same"))
    assert storage.save("a.txt", ContentFile(b"same")) == "a.txt"
    assert storage.references("a.txt") == 1


def test_untracked_name_without_overwrite_is_kept(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    storage.inner.save("legacy.txt", ContentFile(b"before the wrapper"))
    new = storage.save("legacy.txt", ContentFile(b"new"))
    assert new != "legacy.txt"
    assert read_all(storage, "legacy.txt") == b"before the wrapper"


def test_hit_respects_max_length(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    long_name = "a-rather-long-directory-name/with-a-long-file-name.txt"
    first = storage.save(long_name, ContentFile(b"C"))
    second = storage.save("short.txt", ContentFile(b"C"), max_length=20)
    assert second != first and len(second) <= 20
    assert storage.save("short2.txt", ContentFile(b"C"), max_length=200) == first


def test_namespaces_never_share_objects(make_fs_dedup: Make) -> None:
    left = make_fs_dedup(namespace="left")
    right = make_fs_dedup(namespace="right")
    first = left.save("a.txt", ContentFile(b"C"))
    second = right.save("a.txt", ContentFile(b"C"))
    assert first != second
    assert left.references(first) == 1 and right.references(second) == 1


def test_default_namespace_follows_the_inner_definition(redis_url: str, tmp_path) -> None:
    def make(location: str, reuse: str = "content") -> DedupStorage:
        inner = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        }
        return DedupStorage(inner=inner, index=redis_url, reuse=reuse)

    one, same, other = (
        make(str(tmp_path / "a")),
        make(str(tmp_path / "a"), "name"),
        make(str(tmp_path / "b")),
    )
    assert one.namespace == same.namespace  # same objects: must share reference counts
    assert one.namespace != other.namespace


def test_refcounts_through_a_save_delete_sequence(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    names = [storage.save(f"n{i}.txt", ContentFile(b"C")) for i in range(5)]
    assert len(set(names)) == 1
    name = names[0]
    for remaining in (4, 3, 2, 1):
        storage.delete(name)
        assert storage.references(name) == remaining
        assert storage.exists(name)
    storage.delete(name)
    assert storage.references(name) == 0 and not storage.exists(name)


@pytest.mark.parametrize("hash_key", [None, "another secret", False])
def test_hash_key_changes_digests(make_fs_dedup: Make, hash_key: object) -> None:
    base = make_fs_dedup()
    storage = make_fs_dedup(hash_key=hash_key)
    same = base.digest(ContentFile(b"C")) == storage.digest(ContentFile(b"C"))
    assert same is (hash_key is None)
    if hash_key is False:
        from blake3 import blake3

        assert storage.digest(ContentFile(b"C")) == blake3(b"C").hexdigest()
