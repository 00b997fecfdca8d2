"""What an inner storage may tell ``DedupStorage``: optional attributes and hooks.

Any Django ``Storage`` works as an inner storage. A backend that knows more about itself
declares it with the members below; ``DedupStorage`` looks each one up with ``getattr`` and
falls back to the behaviour described when it is missing. ``InnerStorageHooks`` is the
typed description of that protocol (the backends shipped here implement it).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = ["InnerStorageHooks"]


@runtime_checkable
class InnerStorageHooks(Protocol):
    """Optional members of an inner storage that ``DedupStorage`` uses when present."""

    #: Names derive from content (an IPFS CID): ``DedupStorage`` picks no name, keeps no
    #: name free and never overwrites. Missing: ``False``.
    content_addressed: bool

    #: ``_save(name, content)`` writes exactly ``name`` when it is free, so ``DedupStorage``
    #: calls it directly even though the storage overrides ``save()``. Missing: ``False``.
    dedupstore_direct_save: bool

    def dedupstore_location(self) -> str:
        """Return a stable description of where this storage keeps its bytes.

        It names the place only (endpoint, project, repository, bucket, key prefix): no
        credentials and nothing that changes only links or tuning. The default namespace of
        the index derives from it. Missing: the location is derived for the storages
        ``DedupStorage`` knows, and other storages need an explicit ``namespace``.
        """
        ...

    def dedupstore_reuse_scope(self, name: str) -> str:
        """Return the boundary a reused object for ``name`` must stay inside.

        A hit never crosses it (Appwrite: the bucket, a permission boundary). ``""`` means
        no boundary. It applies on top of ``DedupStorage``'s own ``reuse_scope``. Missing:
        no boundary.
        """
        ...

    def dedupstore_stored_name(self, name: str) -> str:
        """Return the name ``name`` is stored under when it is free (Appwrite:
        ``<bucketId>/<fileId>``). ``reuse="name"`` compares this name. Missing: ``name``.
        """
        ...
