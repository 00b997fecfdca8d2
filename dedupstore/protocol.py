"""What an inner storage tells ``DedupStorage``: the ``DedupBackend`` protocol class.

Any Django ``Storage`` works as an inner storage. A backend that knows more about itself
subclasses ``DedupBackend`` (before ``Storage``: ``class MyStorage(DedupBackend,
Storage)``) and overrides the members below; every member has a default that is right
for an ordinary named storage. ``DedupStorage`` talks to its inner storage only through
these members: to a ``DedupBackend`` directly, to any other storage through
``StorageAdapter``, which supplies the defaults (and honours the same members declared
as plain attributes, the way backends did before this class existed).
"""

from __future__ import annotations

from typing import Any, cast

from django.core.files.base import File
from django.core.files.storage import Storage

__all__ = ["DedupBackend", "StorageAdapter", "backend_of"]


class DedupBackend:
    """The members of an inner storage that ``DedupStorage`` uses, with their defaults."""

    #: Names derive from content (an IPFS CID): ``DedupStorage`` picks no name, keeps no
    #: name free and never overwrites; a hit crosses no ``reuse_scope``.
    content_addressed: bool = False

    #: ``get_available_name`` returns free names in the storage's own scheme (Appwrite:
    #: ``<bucket>/<fileId>``) and ``dedupstore_write`` writes exactly such a name, even
    #: though the storage overrides ``save()``.
    dedupstore_direct_save: bool = False

    def dedupstore_write(self, name: str, content: File, max_length: int | None) -> str:
        """Write ``content`` under ``name``, which ``DedupStorage`` found free; return the name.

        Default: the storage's ``_save`` hook when ``save()`` is Django's own (``save()``
        would only check the name again: one more ``exists()``, a HEAD request on a remote
        store) or ``dedupstore_direct_save`` says so, else its ``save()``. A
        content-addressed storage returns the name its content decides.
        """
        return _default_write(cast(Storage, self), self, name, content, max_length)

    def dedupstore_location(self) -> str | None:
        """Return a stable description of where this storage keeps its bytes, or None.

        It names the place only (endpoint, project, repository, bucket, key prefix): no
        credentials and nothing that changes only links or tuning. The default namespace of
        the index derives from it. None: derived for the storages ``DedupStorage`` knows;
        other storages need an explicit ``namespace``.
        """
        return None

    def dedupstore_reuse_scope(self, name: str) -> str:
        """Return the boundary a reused object for ``name`` must stay inside (``""``: none).

        A hit never crosses it (Appwrite: the bucket, a permission boundary); it applies on
        top of ``DedupStorage``'s own ``reuse_scope``.
        """
        return ""

    def dedupstore_stored_name(self, name: str) -> str:
        """Return the name ``name`` is stored under when free (``reuse="name"`` compares it)."""
        return name


def _default_write(
    storage: Storage, backend: DedupBackend, name: str, content: File, max_length: int | None
) -> str:
    if type(storage).save is Storage.save or backend.dedupstore_direct_save:
        # _save is the hook every concrete storage implements; Storage declares none.
        return str(storage._save(name, content))  # type: ignore[attr-defined]
    return storage.save(name, content, max_length=max_length)


class StorageAdapter(DedupBackend):
    """``DedupBackend`` for a storage that does not subclass it: the defaults, or its own."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        # Members declared as plain attributes (the protocol before this class) still count.
        self.content_addressed = bool(getattr(storage, "content_addressed", False))
        self.dedupstore_direct_save = bool(getattr(storage, "dedupstore_direct_save", False))

    def dedupstore_write(self, name: str, content: File, max_length: int | None) -> str:
        return _default_write(self.storage, self, name, content, max_length)

    def dedupstore_location(self) -> str | None:
        return _call_hook(self.storage, "dedupstore_location", None)

    def dedupstore_reuse_scope(self, name: str) -> str:
        return cast(str, _call_hook(self.storage, "dedupstore_reuse_scope", "", name))

    def dedupstore_stored_name(self, name: str) -> str:
        return cast(str, _call_hook(self.storage, "dedupstore_stored_name", name, name))


def _call_hook(storage: Storage, hook_name: str, default: Any, *args: Any) -> Any:
    hook = getattr(storage, hook_name, None)
    return hook(*args) if callable(hook) else default


def backend_of(storage: Storage) -> DedupBackend:
    """Return ``storage`` as a ``DedupBackend``: itself, or an adapter supplying the defaults."""
    return storage if isinstance(storage, DedupBackend) else StorageAdapter(storage)
