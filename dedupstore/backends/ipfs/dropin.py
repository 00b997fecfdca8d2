"""The options ``InterPlanetaryFileSystemStorage`` passes on to ``IPFSStorage``.

The class itself, django-ipfs-storage's name for a reference-counted ``DedupStorage`` over
:class:`~dedupstore.backends.ipfs.IPFSStorage`, lives with the other old-package names in
``dedupstore.backends.compat``; this module's path still imports it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .options import IPFS_STORAGE_OPTIONS

if TYPE_CHECKING:
    from dedupstore.backends.compat import InterPlanetaryFileSystemStorage

__all__ = ["IPFS_OPTIONS", "InterPlanetaryFileSystemStorage"]

#: The options of the raw ``IPFSStorage``; every other option is ``DedupStorage``'s.
IPFS_OPTIONS = frozenset(IPFS_STORAGE_OPTIONS.names)
RAW_BACKEND = "dedupstore.backends.ipfs.IPFSStorage"


def __getattr__(name: str) -> Any:
    # Imported on first use: dedupstore.backends.compat imports this module.
    if name == "InterPlanetaryFileSystemStorage":
        from dedupstore.backends.compat import InterPlanetaryFileSystemStorage

        return InterPlanetaryFileSystemStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
