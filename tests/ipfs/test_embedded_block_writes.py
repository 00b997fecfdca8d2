"""The embedded transport writes blocks so that a failure never leaves a wrong block.

Blocks become files under their keys only after their bytes are fsynced; an upload that
fails part-way leaves neither blocks nor temporary files behind.
"""

from __future__ import annotations

import hashlib
import io
import os
from collections.abc import Iterator

import pytest
from django.core.files.base import File

from dedupstore.backends.ipfs import IPFSStorage
from dedupstore.backends.ipfs.cid import CID, RAW
from dedupstore.backends.ipfs.embedded import EmbeddedNode
from dedupstore.backends.ipfs.importer import DEFAULT_CHUNK_SIZE
from dedupstore.backends.ipfs.unixfs import Blockstore


class FailingContent(File):
    """Content whose stream breaks after ``good`` chunks of fresh random bytes."""

    def __init__(self, chunks: list[bytes]) -> None:
        super().__init__(io.BytesIO(b"".join(chunks)), name="broken.bin")
        self._parts = chunks

    def chunks(self, chunk_size: int | None = None) -> Iterator[bytes]:
        yield from self._parts
        raise OSError("the upload connection broke")


def test_an_upload_that_fails_part_way_leaves_no_block_and_no_temporary_file(
    shared_node: EmbeddedNode,
) -> None:
    storage = IPFSStorage(embedded_repo=str(shared_node.repo))
    parts = [os.urandom(DEFAULT_CHUNK_SIZE) for _ in range(3)]
    with pytest.raises(OSError, match="connection broke"):
        storage.save("broken.bin", FailingContent(parts))
    store = Blockstore(shared_node.repo)
    for part in parts:
        leaf = CID(1, RAW, b"\x12\x20" + hashlib.sha256(part).digest())
        assert not store.has(leaf)
    assert not list(store.blocks.glob("*/put-*.tmp"))


def test_a_file_of_repeated_chunks_writes_each_block_once_and_reads_back(
    shared_node: EmbeddedNode,
) -> None:
    storage = IPFSStorage(embedded_repo=str(shared_node.repo))
    payload = bytes(5 * DEFAULT_CHUNK_SIZE + 3)  # five identical leaves
    from django.core.files.base import ContentFile

    name = storage.save("zeros.bin", ContentFile(payload))
    with storage.open(name) as handle:
        assert handle.read() == payload
    assert not list(Blockstore(shared_node.repo).blocks.glob("*/put-*.tmp"))
