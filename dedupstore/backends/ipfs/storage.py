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

import io
import os
import threading
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.utils.deconstruct import deconstructible

from dedupstore.protocol import DedupBackend
from dedupstore.utils import prepare_save

from .cid import parse_name
from .embedded import EmbeddedNode
from .errors import (
    ReadOnlyContentError,
)
from .gateway import local_gateway_url
from .options import (
    GATEWAY_SETTINGS,
    IPFS_STORAGE_OPTIONS,
    gateway_base_url,
    rpc_location,
)
from .pinning import Replicator, parse_services
from .rpc import KuboRPCClient
from .shared import get_shared_node
from .transports import _EmbeddedTransport, _RPCTransport, _SharedTransport, _Transport

__all__ = ["IPFS_STORAGE_OPTIONS", "IPFSStorage", "gateway_base_url", "rpc_location"]


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
