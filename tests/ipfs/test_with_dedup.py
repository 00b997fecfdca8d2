"""DedupStorage over the IPFS storage: the shared contract, zero node calls on a hit, pins kept."""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable

import pytest
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.backends.ipfs import IPFSStorage
from dedupstore.backends.ipfs.embedded import EmbeddedNode
from tests.contract import DedupContract

from .conftest import NodeCalls

BACKEND = "dedupstore.backends.ipfs.IPFSStorage"


def _dedup(node: EmbeddedNode, redis_url: str, **options: object) -> DedupStorage:
    return DedupStorage(
        inner={"BACKEND": BACKEND, "OPTIONS": {"embedded_repo": str(node.repo), **options}},
        index=redis_url,
        namespace=f"test-{uuid.uuid4().hex}",
    )


def _pinned(node: EmbeddedNode, name: str) -> bool:
    return name.split("/")[0] in node.pins()


class TestContractOverEmbeddedIPFS(DedupContract):
    #: A well-formed CID ("hello world\n") that these nodes never hold.
    missing_name = "QmT78zSuBmuS4z925WZfrqQ1qHaJ56DQaTfyMUF7F8ff5o"

    @pytest.fixture
    def storage(self, make_node: Callable[[], EmbeddedNode], redis_url: str) -> DedupStorage:
        # A node per test: pins are per node, reference counts per index namespace.
        return _dedup(make_node(), redis_url)


class TestContractOverWrappedIPFS(TestContractOverEmbeddedIPFS):
    @pytest.fixture
    def storage(self, make_node: Callable[[], EmbeddedNode], redis_url: str) -> DedupStorage:
        return _dedup(make_node(), redis_url, wrap_with_directory=True)


def test_a_hit_makes_zero_node_calls(make_node: Callable[[], EmbeddedNode], redis_url: str) -> None:
    node = make_node()
    storage = _dedup(node, redis_url)
    storage.verify_hits = False  # the default confirms each hit with one pin check
    payload = os.urandom(300_000)
    calls = NodeCalls(node)
    try:
        first = storage.save("a/first.bin", ContentFile(payload))
        assert calls.calls == ["PinCID"]
        calls.calls.clear()
        for index in range(5):
            assert storage.save(f"b/{index}.bin", ContentFile(payload)) == first
        assert calls.calls == []
    finally:
        calls.undo()
    assert storage.references(first) == 6


def test_a_cid_stays_pinned_while_any_reference_remains(
    make_node: Callable[[], EmbeddedNode], redis_url: str
) -> None:
    node = make_node()
    storage = _dedup(node, redis_url)
    cid = storage.save("one.txt", ContentFile(b"shared by three records"))
    assert storage.save("two.txt", ContentFile(b"shared by three records")) == cid
    assert storage.save("three.txt", ContentFile(b"shared by three records")) == cid
    assert isinstance(storage.inner, IPFSStorage)
    for remaining in (2, 1):
        storage.delete(cid)
        assert storage.references(cid) == remaining
        assert _pinned(node, cid), "unpinned while references remain"
        assert storage.open(cid).read() == b"shared by three records"
    storage.delete(cid)
    assert not _pinned(node, cid)
    assert not storage.exists(cid)
    # Saved again after the last delete: pinned again.
    assert storage.save("again.txt", ContentFile(b"shared by three records")) == cid
    assert _pinned(node, cid)


def test_two_storages_over_one_node_share_counts(
    make_node: Callable[[], EmbeddedNode], redis_url: str
) -> None:
    node = make_node()
    inner = {"BACKEND": BACKEND, "OPTIONS": {"embedded_repo": str(node.repo)}}
    # The default namespace derives from the inner definition: same node, same counts.
    first = DedupStorage(inner=inner, index=redis_url)
    second = DedupStorage(inner=inner, index=redis_url)
    cid = first.save("a.txt", ContentFile(b"counted once per node"))
    assert second.save("b.txt", ContentFile(b"counted once per node")) == cid
    first.delete(cid)
    assert _pinned(node, cid)
    second.delete(cid)
    assert not _pinned(node, cid)
