"""One embedded node for every process that opens its repo.

Kubo locks a repo to one process, so a second process (a web worker, ``manage.py shell``,
a Celery worker) could not start the node of a repo another process runs. Instead, the
process whose node starts (the *owner*) serves the Kubo RPC API for it
(:class:`~.rpc_server.NodeRPCServer`) on ``127.0.0.1``, behind a random ``Authorization``
token, and writes where and how to reach it into ``<repo>/dedupstore-rpc.json`` (mode
0600, beside the repo's private key, so whoever may read the token may read the repo).
Every other process finds that file and uses the RPC transport. When the owner exits, or
dies (the kernel drops Kubo's repo lock with the process), the next call of a client that
cannot reach it starts the node itself and becomes the owner.

Nothing listens outside loopback, and the owner's node passed the isolation check as
every embedded node does; a client starts no node at all.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import logging
import os
import secrets
import threading
import time
from pathlib import Path
from typing import Any

from .embedded import EmbeddedNode, get_node
from .errors import (
    EmbeddedNodeError,
    IPFSConnectionError,
    IPFSRPCError,
    IPFSTimeoutError,
    NodeIsolationError,
)
from .rpc import KuboRPCClient
from .rpc_server import NodeRPCServer

__all__ = ["ENDPOINT_FILE", "SharedNode", "get_shared_node"]

logger = logging.getLogger("dedupstore.backends.ipfs")

#: The file, in the repo directory, where the owner says how to reach its node.
ENDPOINT_FILE = "dedupstore-rpc.json"
_POLL = 0.05


class SharedNode:
    """This process's view of a repo: the owner of its node, or an RPC client of the owner.

    :meth:`client` returns ``None`` while this process owns the node, else a client of the
    owner; :meth:`lost` is called with a client that could not reach the owner, so the
    next :meth:`client` call takes the repo over (or finds the new owner).
    """

    def __init__(self, node: EmbeddedNode, *, timeout: float) -> None:
        self.node = node
        self.timeout = timeout
        self._lock = threading.Lock()
        self._client: KuboRPCClient | None = None
        self._server: NodeRPCServer | None = None
        self._token: str | None = None

    @property
    def endpoint_path(self) -> Path:
        return self.node.repo / ENDPOINT_FILE

    @property
    def owner(self) -> bool:
        return self._server is not None

    def __repr__(self) -> str:
        role = "owner" if self.owner else ("client" if self._client else "unattached")
        return f"<SharedNode {self.node.repo} {role}>"

    def client(self) -> KuboRPCClient | None:
        """Return ``None`` if this process runs the node, else a client of its owner."""
        with self._lock:
            if self._server is not None:
                return None
            if self._client is not None:
                return self._client
            return self._attach()

    def lost(self, client: KuboRPCClient) -> None:
        """Forget ``client``: its owner is gone; the next call attaches again."""
        with self._lock:
            if self._client is client:
                self._client = None
                client.close()

    def _attach(self) -> KuboRPCClient | None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                self.node.start()
            except NodeIsolationError:
                raise
            except (EmbeddedNodeError, OSError):
                # Another process holds the repo (or is creating it): find its endpoint.
                client = self._owner_client()
                if client is not None:
                    self._client = client
                    logger.debug("using the embedded IPFS node of %s through its owner", self)
                    return client
            else:
                self._serve()
                return None
            if time.monotonic() >= deadline:
                raise EmbeddedNodeError(
                    f"the embedded IPFS node of {self.node.repo} is locked by another process "
                    f"that serves no reachable endpoint in {self.endpoint_path} (waited "
                    f"{self.timeout:g} s); is it a process of an older dedupstore?"
                )
            time.sleep(_POLL)

    def _owner_client(self) -> KuboRPCClient | None:
        try:
            endpoint = json.loads(self.endpoint_path.read_text())
            url, auth = str(endpoint["url"]), str(endpoint["auth"])
        except (OSError, ValueError, KeyError, TypeError):
            return None
        client = KuboRPCClient(url, auth=auth, timeout=self.timeout)
        try:
            client.id()
        except (IPFSConnectionError, IPFSTimeoutError, IPFSRPCError):
            client.close()  # a stale file: its owner died; the lock is about to be free
            return None
        return client

    def _serve(self) -> None:
        self._token = secrets.token_urlsafe(32)
        server = NodeRPCServer(self.node, auth=f"Bearer {self._token}").start()
        self._server = server
        payload = json.dumps(
            {"pid": os.getpid(), "url": server.url, "auth": f"Bearer {self._token}"}
        )
        temporary = self.endpoint_path.with_name(f".{ENDPOINT_FILE}.{os.getpid()}")
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(payload)
        os.replace(temporary, self.endpoint_path)
        logger.debug("serving the embedded IPFS node of %s to other processes", self.node.repo)

    def release(self) -> None:
        """Stop serving (owner): remove the endpoint if it is still ours, stop the node."""
        with self._lock:
            server, self._server = self._server, None
            if self._client is not None:
                self._client.close()
                self._client = None
        if server is None:
            return
        with contextlib.suppress(OSError, ValueError, KeyError):
            endpoint: dict[str, Any] = json.loads(self.endpoint_path.read_text())
            if endpoint.get("url") == server.url:
                self.endpoint_path.unlink()
        server.stop()
        self.node.stop()


_shared: dict[Path, SharedNode] = {}
_shared_lock = threading.Lock()


def get_shared_node(
    repo: str | os.PathLike[str], *, online: bool = False, timeout: float = 30.0
) -> SharedNode:
    """Return this process's :class:`SharedNode` for ``repo`` (one per real path)."""
    node = get_node(repo, online=online)
    with _shared_lock:
        shared = _shared.get(node.repo)
        if shared is None:
            shared = _shared[node.repo] = SharedNode(node, timeout=timeout)
        return shared


def release_all() -> None:
    """Hand every repo this process owns back (interpreter exit)."""
    with _shared_lock:
        shared = list(_shared.values())
    for item in shared:
        try:
            item.release()
        except Exception:  # Interpreter exit: report, keep releasing the others.
            logger.warning("could not release the IPFS node of %s", item.node.repo, exc_info=True)


atexit.register(release_all)
