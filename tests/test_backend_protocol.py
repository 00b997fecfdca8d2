"""The protocol between DedupStorage and its inner storage (``dedupstore.protocol``).

A backend subclasses ``DedupBackend``; any other storage is reached through an adapter
that supplies the defaults and honours the members declared as plain attributes.
"""

from __future__ import annotations

import uuid

from django.core.files.base import ContentFile, File
from django.core.files.storage import InMemoryStorage

from dedupstore import DedupStorage
from dedupstore.index.base import ReplaceDecision
from dedupstore.protocol import DedupBackend, StorageAdapter, backend_of

HERE = __name__


class WritingBackend(DedupBackend, InMemoryStorage):
    """An in-memory backend that notes each write DedupStorage asks of it."""

    writes: list[str] = []

    def dedupstore_write(self, name: str, content: File, max_length: int | None) -> str:
        type(self).writes.append(name)
        return super().dedupstore_write(name, content, max_length)


class OldStyleContentAddressed(InMemoryStorage):
    """Declares the protocol the way backends did before ``DedupBackend``: attributes."""

    content_addressed = True
    dedupstore_direct_save = True

    def dedupstore_stored_name(self, name: str) -> str:
        return f"bucket/{name}"


def test_a_plain_storage_gets_every_default_through_an_adapter() -> None:
    backend = backend_of(InMemoryStorage())
    assert isinstance(backend, StorageAdapter)
    assert backend.content_addressed is False
    assert backend.dedupstore_direct_save is False
    assert backend.dedupstore_location() is None
    assert backend.dedupstore_reuse_scope("a/b.txt") == ""
    assert backend.dedupstore_stored_name("a/b.txt") == "a/b.txt"


def test_members_declared_as_plain_attributes_still_count() -> None:
    backend = backend_of(OldStyleContentAddressed())
    assert backend.content_addressed is True
    assert backend.dedupstore_direct_save is True
    assert backend.dedupstore_stored_name("a.txt") == "bucket/a.txt"


def test_a_backend_subclass_is_its_own_protocol_object() -> None:
    storage = WritingBackend()
    assert backend_of(storage) is storage


def test_a_miss_is_written_through_the_backends_dedupstore_write_and_a_hit_is_not() -> None:
    WritingBackend.writes = []
    storage = DedupStorage(
        inner={"BACKEND": f"{HERE}.WritingBackend"},
        index=f"locmem://{uuid.uuid4().hex}",
        namespace="protocol",
    )
    first = storage.save("a.txt", ContentFile(b"protocol"))
    assert WritingBackend.writes == [first]
    assert storage.save("b.txt", ContentFile(b"protocol")) == first
    assert WritingBackend.writes == [first]
    assert storage.inner.open(first).read() == b"protocol"


def test_a_replace_decision_reads_like_the_other_decisions() -> None:
    decision = ReplaceDecision("wait")
    assert decision == "wait"
    assert decision.action == "wait"
