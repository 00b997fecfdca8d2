"""The same bytes get the same CID on the embedded node and over the Kubo RPC API.

Each transport writes onto a node of its own, so neither can find the other's blocks:
equal names mean both built the same DAG. ``cid_version=0`` keeps dedupstore 0.1's
CIDv0 on both, and names of either version keep being read, counted and deleted.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.backends.ipfs import IPFSStorage
from dedupstore.backends.ipfs.cid import parse_cid
from dedupstore.backends.ipfs.embedded import EmbeddedNode
from dedupstore.testing.kubo_rpc import KuboRPCTestServer

SIZES = [0, 1, 262_144, 262_145, 3 * 1024 * 1024 + 7]


@pytest.fixture
def other_server(make_node: Callable[[], EmbeddedNode]) -> Iterator[KuboRPCTestServer]:
    with KuboRPCTestServer(make_node()) as server:
        yield server


def read(storage: IPFSStorage, name: str) -> bytes:
    with storage.open(name) as handle:
        return handle.read()


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("wrap", [False, True])
def test_identical_content_gets_one_cid_through_the_embedded_node_and_through_rpc(
    shared_node: EmbeddedNode, other_server: KuboRPCTestServer, size: int, wrap: bool
) -> None:
    payload = os.urandom(size)
    embedded = IPFSStorage(embedded_repo=str(shared_node.repo), wrap_with_directory=wrap)
    rpc = IPFSStorage(api_url=other_server.url, wrap_with_directory=wrap)
    name = embedded.save("same.bin", ContentFile(payload))
    assert rpc.save("same.bin", ContentFile(payload)) == name
    assert parse_cid(name.split("/")[0]).version == 1
    assert read(embedded, name) == read(rpc, name) == payload


@pytest.mark.parametrize("size", [5, 600_000])
def test_cid_version_0_gives_the_old_cidv0_on_both_transports(
    shared_node: EmbeddedNode, other_server: KuboRPCTestServer, tmp_path: Path, size: int
) -> None:
    payload = os.urandom(size)
    (tmp_path / "old").write_bytes(payload)
    old_cid = shared_node.add(tmp_path / "old", only_hash=True)  # what 0.1 saved
    embedded = IPFSStorage(embedded_repo=str(shared_node.repo), cid_version=0)
    rpc = IPFSStorage(api_url=other_server.url, cid_version=0)
    assert embedded.save("a.bin", ContentFile(payload)) == old_cid
    assert rpc.save("a.bin", ContentFile(payload)) == old_cid


def test_the_cid_version_setting_is_the_fallback(settings, shared_node) -> None:  # type: ignore[no-untyped-def]
    settings.IPFS_STORAGE_CID_VERSION = 0
    storage = IPFSStorage(embedded_repo=str(shared_node.repo))
    assert storage.cid_version == 0
    assert storage.save("s.txt", ContentFile(b"setting")).startswith("Qm")
    assert IPFSStorage(embedded_repo=str(shared_node.repo), cid_version=1).cid_version == 1


@pytest.mark.parametrize("value", [2, "1", True, -1])
def test_a_cid_version_other_than_0_or_1_is_improperly_configured(value: object) -> None:
    with pytest.raises(ImproperlyConfigured, match="cid_version"):
        IPFSStorage(embedded_repo="/nonexistent", cid_version=value)  # type: ignore[arg-type]


def test_existing_cidv0_names_are_read_counted_and_deleted_after_the_switch(
    make_node: Callable[[], EmbeddedNode], redis_url: str
) -> None:
    node = make_node()
    namespace = f"test-{uuid.uuid4().hex}"

    def dedup(cid_version: int) -> DedupStorage:
        options = {"embedded_repo": str(node.repo), "cid_version": cid_version}
        return DedupStorage(
            inner={"BACKEND": "dedupstore.backends.ipfs.IPFSStorage", "OPTIONS": options},
            index=redis_url,
            namespace=namespace,
        )

    payload = os.urandom(400_000)
    old = dedup(0)
    old_name = old.save("a.bin", ContentFile(payload))
    assert old_name.startswith("Qm")

    new = dedup(1)  # the same deployment after upgrading
    assert new.exists(old_name)
    assert new.size(old_name) == len(payload)
    with new.open(old_name) as handle:
        assert handle.read() == payload
    # Identical content is a hit on the name the index already holds: no second copy.
    assert new.save("b.bin", ContentFile(payload)) == old_name
    assert new.references(old_name) == 2
    fresh = new.save("c.bin", ContentFile(b"new content"))
    assert parse_cid(fresh).version == 1
    new.delete(old_name)
    assert old_name in node.pins()
    new.delete(old_name)
    assert new.references(old_name) == 0
    assert old_name not in node.pins()


def test_the_first_save_to_a_repo_that_does_not_exist_yet_gets_a_cidv1(
    tmp_path: Path,
) -> None:
    from dedupstore.backends.ipfs.embedded import get_node, stop_all_nodes

    repo = tmp_path / "new-repo"
    storage = IPFSStorage(embedded_repo=str(repo))
    try:
        name = storage.save("first.txt", ContentFile(b"hello world\n"))
        assert name == "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"
        assert read(storage, name) == b"hello world\n"
    finally:
        stop_all_nodes([get_node(repo)])
