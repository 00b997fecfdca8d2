"""The Kubo RPC test server stops for good: no request it took runs on the node afterwards.

Its node is the session's shared node, so a handler still stalled in ``delay`` when a test
ends would run its command (``pin/ls``, ``add``) in the middle of a later test, which then
counts node calls or pins that it never made.
"""

from __future__ import annotations

import threading

import pytest
from django.core.files.base import ContentFile

from dedupstore.backends.ipfs import IPFSStorage, IPFSTimeoutError
from dedupstore.backends.ipfs.embedded import EmbeddedNode
from dedupstore.testing.kubo_rpc import KuboRPCTestServer

from .conftest import NodeCalls

ABSENT = "bafkreigh2akiscaildcqabsyg3dfr6chu3fgpregiymsck7e7aqa4s52zy"


def _handler_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Return the request-handler threads started since ``before`` was taken."""
    return [
        thread
        for thread in threading.enumerate()
        if thread not in before
        and ("process_request" in thread.name or thread.name.startswith("kubo-rpc-test-handler"))
    ]


def test_stop_leaves_no_handler_running_and_a_stalled_command_never_reaches_the_node(
    shared_node: EmbeddedNode,
) -> None:
    before = set(threading.enumerate())
    calls = NodeCalls(shared_node)
    try:
        # The handlers stall far longer than this test takes; the client gives up at once.
        server = KuboRPCTestServer(shared_node, delay=600.0).start()
        storage = IPFSStorage(api_url=server.url, timeout=0.3)
        with pytest.raises(IPFSTimeoutError):
            storage.exists(ABSENT)
        with pytest.raises(IPFSTimeoutError):
            storage.save("stalled.txt", ContentFile(b"never added"))
        server.stop()
        still_running = [thread for thread in _handler_threads(before) if thread.is_alive()]
        assert still_running == [], "a request handler outlived stop()"
        assert calls.calls == [], "a stalled command ran on the node"
    finally:
        calls.undo()


def test_stop_closes_idle_keep_alive_connections(shared_node: EmbeddedNode) -> None:
    before = set(threading.enumerate())
    server = KuboRPCTestServer(shared_node).start()
    storage = IPFSStorage(api_url=server.url, timeout=30)
    assert not storage.exists(ABSENT)  # leaves a pooled keep-alive connection open
    server.stop()
    assert [thread for thread in _handler_threads(before) if thread.is_alive()] == []
    assert server.requests[-1].command == "pin/ls"
