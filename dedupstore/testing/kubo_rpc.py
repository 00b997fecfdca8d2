"""A *test* server speaking the Kubo RPC protocol over an embedded IPFS node.

No Kubo binary installs on the machines this project is tested on (none in PyPI, Debian
or npm installs offline), so the RPC client in :mod:`dedupstore.backends.ipfs.rpc` is
tested against this server: the project's own
:class:`~dedupstore.backends.ipfs.rpc_server.NodeRPCServer` (the server through which
processes share one embedded node), recording every request it receives. It is not Kubo;
see that module for the commands, the ``add`` options it honours or refuses as Kubo does,
``auth``, ``delay`` and ``stop()``.
"""

from __future__ import annotations

from dedupstore.backends.ipfs.embedded import EmbeddedNode
from dedupstore.backends.ipfs.rpc_server import NodeRPCServer, RecordedRequest

__all__ = ["KuboRPCTestServer", "RecordedRequest"]


class KuboRPCTestServer(NodeRPCServer):
    """Serve the Kubo RPC subset for ``node`` on ``127.0.0.1:<free port>``, recording
    every request (:attr:`requests`) so tests can assert what a client sent."""

    def __init__(self, node: EmbeddedNode, *, auth: str | None = None, delay: float = 0.0) -> None:
        super().__init__(node, auth=auth, delay=delay, record=True)

    def start(self) -> KuboRPCTestServer:
        super().start()
        return self

    def __enter__(self) -> KuboRPCTestServer:
        return self.start()
