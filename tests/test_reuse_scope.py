"""``reuse_scope``: a save is only ever handed an object stored for a name of its scope."""

from __future__ import annotations

import hashlib
import posixpath
import shutil
import tempfile
import uuid
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from typing import Any

import hypothesis.strategies as st
import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage
from django.test import override_settings
from hypothesis import HealthCheck, given, settings

from dedupstore import DedupStorage
from tests.contract import read_all
from tests.helpers import InnerCalls

Make = Callable[..., DedupStorage]

#: Not callable: a reuse_scope naming it is refused.
NOT_CALLABLE = 42


def tenant_of(name: str) -> str:
    """Scope ``tenants/<tenant>/...`` names by tenant; every other name is "public"."""
    parts = name.split("/")
    return parts[1] if len(parts) > 2 and parts[0] == "tenants" else "public"


def returns_none(name: str) -> Any:
    return None


class BucketScopedStorage(FileSystemStorage):
    """A file system storage whose first directory is a permission boundary (a bucket)."""

    def dedupstore_reuse_scope(self, name: str) -> str:
        return name.split("/", 1)[0] if "/" in name else ""


class ContentAddressedStorage(FileSystemStorage):
    """Like IPFS: an object's name is the sha256 of its content."""

    content_addressed = True

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        content.seek(0)
        data = content.read()
        cid = hashlib.sha256(data).hexdigest()
        if not self.exists(cid):
            super()._save(cid, ContentFile(data))
        return cid

    def _save(self, name: str, content: Any) -> str:
        return self.save(name, content)


class BadHookStorage(FileSystemStorage):
    def dedupstore_reuse_scope(self, name: str) -> Any:
        return 7


def make_storage(
    location: Path | str, index: str, backend: str = "FileSystemStorage", **options: Any
) -> DedupStorage:
    path = (
        f"django.core.files.storage.{backend}"
        if backend == "FileSystemStorage"
        else f"{__name__}.{backend}"
    )
    options.setdefault("namespace", f"scope-{uuid.uuid4().hex}")
    return DedupStorage(
        inner={"BACKEND": path, "OPTIONS": {"location": str(location)}}, index=index, **options
    )


# -- the default: extension ------------------------------------------------------------


def test_the_default_scope_is_the_extension(make_fs_dedup: Make) -> None:
    assert make_fs_dedup().reuse_scope == "extension"


def test_an_upload_is_never_handed_a_name_with_another_extension(
    tmp_path: Path, index_url: str
) -> None:
    storage = make_storage(tmp_path, index_url)
    text = storage.save("tests/multiple_files.txt", ContentFile(b"same bytes"))
    archive = storage.save("uploads/archive.tar.gz", ContentFile(b"same bytes"))
    assert archive == "uploads/archive.tar.gz"
    photo = storage.save("photo.jpg", ContentFile(b"same bytes"))
    document = storage.save("scan.pdf", ContentFile(b"same bytes"))
    assert (photo, document) == ("photo.jpg", "scan.pdf")
    for name in (text, archive, photo, document):
        assert storage.references(name) == 1
        assert read_all(storage, name) == b"same bytes"


def test_extensions_are_compared_case_insensitively(tmp_path: Path, index_url: str) -> None:
    storage = make_storage(tmp_path, index_url)
    first = storage.save("a.JPG", ContentFile(b"picture"))
    assert storage.save("other/b.jpg", ContentFile(b"picture")) == first
    assert storage.save("c.Jpg", ContentFile(b"picture")) == first
    assert storage.references(first) == 3


def test_every_suffix_is_part_of_the_extension(tmp_path: Path, index_url: str) -> None:
    # As Django's get_available_name keeps "a.tar.gz" -> "a_<random>.tar.gz".
    storage = make_storage(tmp_path, index_url)
    tarball = storage.save("a.tar.gz", ContentFile(b"packed"))
    assert storage.save("b.gz", ContentFile(b"packed")) == "b.gz"
    assert storage.save("c.TAR.GZ", ContentFile(b"packed")) == tarball


def test_names_without_an_extension_reuse_only_each_other(tmp_path: Path, index_url: str) -> None:
    storage = make_storage(tmp_path, index_url)
    bare = storage.save("README", ContentFile(b"plain"))
    assert storage.save("notes.txt", ContentFile(b"plain")) == "notes.txt"
    assert storage.save("docs/LICENSE", ContentFile(b"plain")) == bare
    assert storage.save(".hidden", ContentFile(b"plain")) == bare  # a dot file has no suffix


def test_a_hit_keeps_the_same_content_per_scope_and_deleting_one_keeps_the_other(
    tmp_path: Path, index_url: str
) -> None:
    storage = make_storage(tmp_path, index_url)
    text = storage.save("a.txt", ContentFile(b"shared"))
    data = storage.save("a.csv", ContentFile(b"shared"))
    assert storage.save("b.txt", ContentFile(b"shared")) == text
    storage.delete(data)
    assert not storage.exists(data)
    assert read_all(storage, text) == b"shared" and storage.references(text) == 2


# -- the other scopes -------------------------------------------------------------------


def test_the_directory_scope_keeps_hits_in_the_requested_directory(
    tmp_path: Path, index_url: str
) -> None:
    storage = make_storage(tmp_path, index_url, reuse_scope="directory")
    first = storage.save("alice/report.pdf", ContentFile(b"content"))
    # The directory is the whole boundary: another extension in it is a hit.
    assert storage.save("alice/report.txt", ContentFile(b"content")) == first
    assert storage.save("bob/report.pdf", ContentFile(b"content")) == "bob/report.pdf"
    assert storage.save("alice/sub/report.pdf", ContentFile(b"content")) == "alice/sub/report.pdf"
    assert storage.references(first) == 2


def test_the_any_scope_reuses_across_names(tmp_path: Path, index_url: str) -> None:
    storage = make_storage(tmp_path, index_url, reuse_scope="any")
    first = storage.save("alice/report.pdf", ContentFile(b"content"))
    assert storage.save("bob/photo.jpg", ContentFile(b"content")) == first
    assert storage.references(first) == 2


def test_a_callable_scope_keeps_each_tenant_apart(tmp_path: Path, index_url: str) -> None:
    storage = make_storage(tmp_path, index_url, reuse_scope=f"{__name__}.tenant_of")
    alice = storage.save("tenants/alice/letter.pdf", ContentFile(b"PIN 1234"))
    bob = storage.save("tenants/bob/letter.pdf", ContentFile(b"PIN 1234"))
    assert bob == "tenants/bob/letter.pdf"
    # Within one tenant, any name and extension reuses.
    assert storage.save("tenants/alice/copy.txt", ContentFile(b"PIN 1234")) == alice
    assert storage.save("public.pdf", ContentFile(b"PIN 1234")) == "public.pdf"
    assert (storage.references(alice), storage.references(bob)) == (2, 1)


def test_a_callable_returning_a_non_string_is_refused_and_nothing_is_stored(
    tmp_path: Path, index_url: str
) -> None:
    storage = make_storage(tmp_path, index_url, reuse_scope=f"{__name__}.returns_none")
    with pytest.raises(ImproperlyConfigured, match="must return a str"):
        storage.save("a.txt", ContentFile(b"x"))
    assert not storage.exists("a.txt") and storage.references("a.txt") == 0


@pytest.mark.parametrize("scope", ["extension", "directory", "any", f"{__name__}.tenant_of"])
def test_the_inner_storage_scope_applies_on_top_of_every_reuse_scope(
    tmp_path: Path, index_url: str, scope: str
) -> None:
    storage = make_storage(tmp_path, index_url, "BucketScopedStorage", reuse_scope=scope)
    first = storage.save("b1/a.txt", ContentFile(b"bytes"))
    assert storage.save("b2/a.txt", ContentFile(b"bytes")) == "b2/a.txt"
    assert storage.save("b1/a.txt", ContentFile(b"bytes")) == first  # same bucket: a hit
    assert storage.references(first) == 2 and storage.references("b2/a.txt") == 1


def test_an_inner_scope_hook_returning_a_non_string_raises_type_error(
    tmp_path: Path, index_url: str
) -> None:
    storage = make_storage(tmp_path, index_url, "BadHookStorage")
    with pytest.raises(TypeError, match="dedupstore_reuse_scope"):
        storage.save("a.txt", ContentFile(b"x"))
    assert not storage.exists("a.txt")


def test_a_content_addressed_object_counts_the_references_of_every_scope(
    tmp_path: Path, index_url: str
) -> None:
    # One content has one name (its CID) whatever the scope: saves in other scopes add to
    # that record's count, so no delete removes the object while any scope holds it.
    storage = make_storage(tmp_path, index_url, "ContentAddressedStorage")
    names = [storage.save(name, ContentFile(b"pinned")) for name in ("a.txt", "a.pdf", "b.txt")]
    assert len(set(names)) == 1 and storage.references(names[0]) == 3
    for remaining in (2, 1):
        storage.delete(names[0])
        assert storage.exists(names[0]) and storage.references(names[0]) == remaining
    storage.delete(names[0])
    assert not storage.exists(names[0]) and storage.references(names[0]) == 0


def test_over_a_content_addressed_storage_a_hit_ignores_the_own_scope(
    tmp_path: Path, index_url: str
) -> None:
    # The CID is derivable from the bytes: scoping would hide nothing, and every save in
    # another scope would add (write) the whole content again.
    storage = make_storage(tmp_path, index_url, "ContentAddressedStorage")
    storage.verify_hits = False
    first = storage.save("a.txt", ContentFile(b"pinned once"))
    calls = InnerCalls(storage.inner)
    try:
        assert storage.save("b.pdf", ContentFile(b"pinned once")) == first
        assert calls.total == 0, calls.counts
    finally:
        calls.undo()


# -- reuse="name" ---------------------------------------------------------------------


def test_reuse_by_name_never_crosses_a_scope(tmp_path: Path, index_url: str) -> None:
    namespace = f"scope-{uuid.uuid4().hex}"
    by_extension = make_storage(tmp_path, index_url, reuse="name", namespace=namespace)
    by_tenant = make_storage(
        tmp_path, index_url, reuse="name", namespace=namespace, reuse_scope=f"{__name__}.tenant_of"
    )
    assert by_extension.save("a.txt", ContentFile(b"same")) == "a.txt"
    assert by_extension.save("a.txt", ContentFile(b"same")) == "a.txt"  # same scope: a hit
    # One name, one index, same content, but another scope: not a hit.
    other = by_tenant.save("a.txt", ContentFile(b"same"))
    assert other != "a.txt"
    assert by_extension.references("a.txt") == 2 and by_tenant.references(other) == 1


# -- records written before reuse_scope existed ----------------------------------------


def test_records_written_without_a_scope_keep_their_references_and_a_scoped_save_stores_anew(
    tmp_path: Path, index_url: str
) -> None:
    # Before reuse_scope, the index keyed content by its bare digest, as reuse_scope="any"
    # over a storage without a scope of its own still does.
    namespace = f"scope-{uuid.uuid4().hex}"
    old = make_storage(tmp_path, index_url, reuse_scope="any", namespace=namespace)
    old_name = old.save("a.txt", ContentFile(b"legacy"))
    assert old.save("b.txt", ContentFile(b"legacy")) == old_name
    record = old.index.lookup(old_name)
    assert record is not None and record.digest == old.digest(ContentFile(b"legacy"))

    new = make_storage(tmp_path, index_url, namespace=namespace)  # reuse_scope="extension"
    copy = new.save("c.txt", ContentFile(b"legacy"))
    assert copy == "c.txt"  # the old content-map entry is not found: a new copy
    assert new.save("d.txt", ContentFile(b"legacy")) == copy
    assert new.references(old_name) == 2 and new.references(copy) == 2
    # The old record's references are deleted one by one, as before.
    new.delete(old_name)
    assert new.exists(old_name)
    new.delete(old_name)
    assert not new.exists(old_name)
    assert read_all(new, copy) == b"legacy" and new.references(copy) == 2


def test_the_content_key_is_the_digest_when_no_scope_applies(
    tmp_path: Path, index_url: str
) -> None:
    unscoped = make_storage(tmp_path, index_url, reuse_scope="any")
    digest = unscoped.digest(ContentFile(b"x"))
    assert unscoped.content_key("a.txt", ContentFile(b"x")) == digest
    scoped = make_storage(tmp_path, index_url)
    key = scoped.content_key("a.txt", ContentFile(b"x"))
    assert key.startswith(digest + "+") and key != digest
    assert scoped.content_key("b.TXT", ContentFile(b"x")) == key
    assert scoped.content_key("b.pdf", ContentFile(b"x")) != key
    name = scoped.save("a.txt", ContentFile(b"x"))
    record = scoped.index.lookup(name)
    assert record is not None and record.digest == key


# -- the option -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("extensions", "must be one of"),
        ("", "must be one of"),
        (5, "must be one of"),
        (None, "must be one of"),
        (tenant_of, "dotted path of the callable"),
        ("tests.no_such_module.scope", "cannot import"),
        (f"{__name__}.no_such_function", "cannot import"),
        (f"{__name__}.NOT_CALLABLE", "not a callable"),
    ],
)
def test_a_bad_reuse_scope_is_improperly_configured(
    make_fs_dedup: Make, value: object, message: str
) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        make_fs_dedup(reuse_scope=value)


def test_the_setting_gives_the_default_and_is_validated(make_fs_dedup: Make) -> None:
    with override_settings(DEDUPSTORE_REUSE_SCOPE="directory"):
        assert make_fs_dedup().reuse_scope == "directory"
        assert make_fs_dedup(reuse_scope="any").reuse_scope == "any"
    with (
        override_settings(DEDUPSTORE_REUSE_SCOPE="tests.no_such_module.scope"),
        pytest.raises(ImproperlyConfigured, match="cannot import"),
    ):
        make_fs_dedup()


def test_the_reuse_scope_is_kept_by_deconstruct(make_fs_dedup: Make) -> None:
    path = f"{__name__}.tenant_of"
    _path, _args, kwargs = make_fs_dedup(reuse_scope=path).deconstruct()
    assert kwargs["reuse_scope"] == path
    assert DedupStorage(**kwargs).reuse_scope == path


# -- the property: no hit ever crosses a scope -------------------------------------------

DIRECTORIES = ["", "b1/", "b2/", "b1/sub/", "tenants/t1/", "tenants/t2/"]
STEMS = ["a", "b"]
EXTENSIONS = ["", ".txt", ".TXT", ".tar.gz", ".gz", ".pdf"]
CONTENTS = [b"one", b"two", b"three"]
SCOPES = ["extension", "directory", "any", f"{__name__}.tenant_of"]

names = st.builds(
    lambda directory, stem, extension: directory + stem + extension,
    st.sampled_from(DIRECTORIES),
    st.sampled_from(STEMS),
    st.sampled_from(EXTENSIONS),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("save"), names, st.sampled_from(CONTENTS)),
        st.tuples(st.just("delete"), st.integers(min_value=0, max_value=50), st.just(b"")),
    ),
    min_size=1,
    max_size=25,
)


def expected_scope(scope: str, bucketed: bool, name: str) -> tuple[str, str]:
    """Compute, independently of dedupstore, the boundary a hit for ``name`` must keep."""
    if scope == "extension":
        own = "".join(PurePosixPath(name).suffixes).lower()
    elif scope == "directory":
        own = posixpath.dirname(name)
    elif scope == "any":
        own = ""
    else:
        own = tenant_of(name)
    bucket = name.split("/", 1)[0] if bucketed and "/" in name else ""
    return own, bucket


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    reuse=st.sampled_from(["content", "name"]),
    scope=st.sampled_from(SCOPES),
    bucketed=st.booleans(),
    steps=operations,
)
def test_no_hit_ever_crosses_a_scope(
    index_url: str, reuse: str, scope: str, bucketed: bool, steps: list[tuple[str, Any, bytes]]
) -> None:
    location = tempfile.mkdtemp(prefix="dedupstore-scope-")
    try:
        backend = "BucketScopedStorage" if bucketed else "FileSystemStorage"
        storage = make_storage(location, index_url, backend, reuse=reuse, reuse_scope=scope)
        held: list[tuple[str, bytes]] = []  # every reference returned and not deleted
        origin: dict[str, tuple[str, str]] = {}  # stored name -> scope it was written for
        for action, argument, content in steps:
            if action == "delete":
                if held:
                    name, _content = held.pop(argument % len(held))
                    storage.delete(name)
                continue
            wanted = expected_scope(scope, bucketed, argument)
            live = {name for name, _content in held}
            stored = storage.save(argument, ContentFile(content))
            if stored in live:
                # A hit: the object was written for a name of the very same scope.
                assert origin[stored] == wanted, (argument, stored)
                if scope == "extension":
                    suffixes = [PurePosixPath(n).suffixes for n in (stored, argument)]
                    assert ["".join(s).lower() for s in suffixes] == [wanted[0]] * 2
            else:
                origin[stored] = wanted
            held.append((stored, content))
            assert read_all(storage, stored) == content
        for name, content in held:
            assert read_all(storage, name) == content
    finally:
        shutil.rmtree(location, ignore_errors=True)
