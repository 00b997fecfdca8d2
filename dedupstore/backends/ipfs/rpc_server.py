"""A Kubo RPC API server over an embedded node: how processes share one node.

Kubo locks a repo to one process. The process that owns an embedded repo serves this
subset of ``/api/v0`` on ``127.0.0.1`` with a random ``Authorization`` token, and the
other processes that open the repo use it through the RPC transport (see :mod:`.shared`).
The test suite serves it too, as :class:`dedupstore.testing.kubo_rpc.KuboRPCTestServer`,
because no Kubo daemon installs where this project is tested (none installs offline).
It is not Kubo. It implements the commands the RPC client uses, with Kubo's wire
conventions:

* every command is ``POST`` (``GET`` answers 405, like Kubo since 0.5);
* ``add`` takes one multipart file part (Content-Length or chunked) and answers
  newline-delimited JSON with Kubo's ``Name``/``Hash``/``Size`` (``Size`` is the DAG
  size, as in Kubo). It honours ``cid-version`` (0 by default, as in Kubo), ``raw-leaves``
  (default on with CIDv1), ``chunker`` (``size-N``; Kubo's errors for bad values),
  ``pin`` (default true), ``wrap-with-directory``, ``only-hash`` and ``progress``, building
  the DAG with :mod:`dedupstore.backends.ipfs.importer` (Kubo's balanced layout, checked
  against libkubo's own CIDs) and writing its blocks into the node's blockstore. Options it
  cannot honour (rabin/buzhash chunkers, ``trickle``, ``inline``, ``nocopy``, ``fscache``,
  a hash other than sha2-256) are refused with Kubo's error shape, never ignored;
* ``cat`` (``offset``/``length``, streamed from the local blockstore), ``files/stat``,
  ``pin/ls``, ``pin/add``, ``pin/rm``, ``ls``, ``id``, ``version``;
* errors are HTTP 500 with ``{"Message", "Code", "Type": "error"}``; with ``offline=true``
  content that is not local is "not found locally" and never fetched;
* ``auth``: every request must carry that ``Authorization`` value, else 401 (Kubo's
  ``API.Authorizations``), compared in constant time;
* ``delay`` (tests): seconds to stall before answering, to exercise client timeouts;
  ``record`` (tests): keep every request in :attr:`NodeRPCServer.requests`.

It listens on ``127.0.0.1`` on a free port and is stopped by :meth:`stop` (or the
context manager). ``stop()`` returns only once every request handler has ended: a handler
stalled in ``delay`` abandons its command, and idle keep-alive connections are closed, so
no request reaches the node after ``stop()`` (the node usually outlives the server).
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from dedupstore.backends.ipfs.cid import CID, IPFSPath, parse_cid, parse_name
from dedupstore.backends.ipfs.embedded import EmbeddedNode
from dedupstore.backends.ipfs.errors import InvalidCIDError
from dedupstore.backends.ipfs.importer import (
    ImportOptions,
    import_file,
    parse_chunker,
    wrap_in_directory,
)
from dedupstore.backends.ipfs.unixfs import Blockstore, IncompleteDAGError, UnixFSReader, resolve

__all__ = ["NodeRPCServer", "RecordedRequest"]

_CHUNK = 256 * 1024
#: How long stop() waits for request handlers to end (they end promptly once their
#: connections are shut down; this only bounds a pathological case).
_STOP_DEADLINE = 60.0


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    command: str
    params: dict[str, list[str]]
    headers: dict[str, str] = field(repr=False)


class _Error(Exception):
    """A Kubo error answer: 500/Code 0 for a failed command, 400/Code 1 for a bad request."""

    def __init__(self, message: str, status: int = 500, code: int = 0) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


_TRUE = {"1", "t", "T", "TRUE", "true", "True"}
_FALSE = {"0", "f", "F", "FALSE", "false", "False"}
#: ``add`` flags that change the DAG in ways the importer does not implement.
_UNSUPPORTED_ADD_FLAGS = ("trickle", "inline", "nocopy", "fscache")


def _discard(cid: CID, block: bytes) -> None:
    """The block sink of ``only-hash``: nothing is stored."""


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # Tests stay quiet.

    # -- plumbing ------------------------------------------------------------------

    def _send_json(self, payload: Any, status: int = 200) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _send_error(self, message: str, status: int = 500, code: int = 0) -> None:
        self._send_json({"Message": message, "Code": code, "Type": "error"}, status)

    def _drain(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        while length > 0:
            length -= len(self.rfile.read(min(length, _CHUNK)))

    def _body_chunks(self) -> Iterator[bytes]:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return
                remaining = size
                while remaining:
                    data = self.rfile.read(min(remaining, _CHUNK))
                    if not data:
                        raise _Error("truncated chunked body", 400)
                    remaining -= len(data)
                    yield data
                self.rfile.readline()
        else:
            remaining = int(self.headers.get("Content-Length") or 0)
            while remaining:
                data = self.rfile.read(min(remaining, _CHUNK))
                if not data:
                    raise _Error("truncated body", 400)
                remaining -= len(data)
                yield data

    def do_GET(self) -> None:
        self._drain()
        self._send_error("405 - Method Not Allowed", 405)

    do_PUT = do_DELETE = do_GET

    def do_POST(self) -> None:
        parts = urlsplit(self.path)
        params = parse_qs(parts.query)
        command = parts.path.removeprefix("/api/v0/")
        if self.server.record:
            self.server.requests.append(
                RecordedRequest("POST", command, params, {k: v for k, v in self.headers.items()})
            )
        given = self.headers.get("Authorization") or ""
        if self.server.auth is not None and not hmac.compare_digest(
            given.encode(), self.server.auth.encode()
        ):
            self._drain()
            body = b"401 - Unauthorized\n"
            self.send_response(401)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return
        # Stalled on purpose: a stop() meanwhile cancels the command, which never runs.
        if self.server.stopping.wait(self.server.delay) or self.server.stopping.is_set():
            self.close_connection = True
            return
        handler = getattr(self, "cmd_" + command.replace("/", "_"), None)
        if not parts.path.startswith("/api/v0/") or handler is None:
            self._drain()
            self._send_error(f"404 page not found: {parts.path}", 404)
            return
        try:
            handler({k: v[-1] for k, v in params.items()})
        except _Error as exc:
            self._drain()
            self._send_error(str(exc), exc.status, exc.code)
        except (BrokenPipeError, ConnectionResetError):
            pass

    # -- helpers -------------------------------------------------------------------

    @property
    def node(self) -> EmbeddedNode:
        return self.server.node

    @property
    def store(self) -> Blockstore:
        return self.server.blockstore

    def _path(self, params: dict[str, str]) -> IPFSPath:
        arg = params.get("arg")
        if not arg:
            raise _Error('argument "ipfs-path" is required', 400)
        text = arg.removeprefix("/ipfs/")
        try:
            return parse_name(text)
        except (InvalidCIDError, ValueError) as exc:
            raise _Error(f"invalid path {arg!r}: {exc}") from None

    def _local_cid(self, params: dict[str, str]) -> tuple[IPFSPath, CID]:
        path = self._path(params)
        try:
            return path, resolve(self.store, path)
        except IncompleteDAGError:
            if params.get("offline") == "true":
                raise _Error(f"block was not found locally (offline): {path.root}") from None
            raise _Error(f"could not find {path.name} (this server never fetches)") from None
        except FileNotFoundError as exc:
            raise _Error(f"no link named {path.segments[-1]!r}: {exc}") from None

    def _pin_types(self) -> dict[str, str]:
        pins = self.node.pins()
        children: set[bytes] = set()
        for text in pins:
            cid = parse_cid(text)
            try:
                if cid.codec == 0x70 and self.store.path(cid).stat().st_size < 128 * 1024:
                    children.update(link.cid.multihash for link in self.store.node(cid).links)
            except (OSError, IncompleteDAGError):
                continue
        return {
            text: ("indirect" if parse_cid(text).multihash in children else "recursive")
            for text in pins
        }

    # -- commands --------------------------------------------------------------------

    def cmd_version(self, params: dict[str, str]) -> None:
        self._drain()
        self._send_json({"Version": "0.22.0", "System": "dedupstore-node-rpc-server"})

    def cmd_id(self, params: dict[str, str]) -> None:
        self._drain()
        peer = self.node.peer_id()
        # As Kubo: each address carries /p2p/<peer id>, ready to dial.
        addresses = [f"{address}/p2p/{peer}" for address in self.node.multiaddrs()]
        self._send_json({"ID": peer, "Addresses": addresses})

    def _bool(self, params: dict[str, str], name: str, default: bool) -> bool:
        # go-ipfs-cmds parses booleans with strconv.ParseBool and answers 400 otherwise.
        text = params.get(name)
        if text is None or text == "":
            return default
        if text in _TRUE:
            return True
        if text in _FALSE:
            return False
        raise _Error(
            f'Could not convert value "{text}" to type "bool" (for option "-{name}")', 400, 1
        )

    def _add_options(self, params: dict[str, str]) -> tuple[ImportOptions, bool, bool, bool, bool]:
        """Parse ``add``'s options as Kubo does; refuse, in Kubo's error shape, any it
        gives a meaning this server does not implement."""
        text = params.get("cid-version", "")
        try:
            cid_version = int(text) if text else 0
        except ValueError:
            raise _Error(
                f'Could not convert value "{text}" to type "int" (for option "-cid-version")',
                400,
                1,
            ) from None
        if cid_version not in (0, 1):
            raise _Error(f"unknown CID version: {cid_version}")
        raw_leaves = self._bool(params, "raw-leaves", cid_version == 1)
        for name in _UNSUPPORTED_ADD_FLAGS:
            if self._bool(params, name, False):
                raise _Error(f"add option {name}=true is not implemented by this server")
        hash_name = params.get("hash", "sha2-256") or "sha2-256"
        if hash_name != "sha2-256":
            raise _Error(f"add option hash={hash_name} is not implemented by this server")
        try:
            chunk_size = parse_chunker(params.get("chunker"))
        except ValueError as exc:
            raise _Error(str(exc)) from None
        options = ImportOptions(cid_version, raw_leaves, chunk_size)
        return (
            options,
            self._bool(params, "pin", True),
            self._bool(params, "wrap-with-directory", False),
            self._bool(params, "only-hash", False),
            self._bool(params, "progress", False),
        )

    def cmd_add(self, params: dict[str, str]) -> None:
        options, pin, wrap, only_hash, progress = self._add_options(params)
        content_type = self.headers.get("Content-Type", "")
        if "boundary=" not in content_type:
            raise _Error("add needs a multipart/form-data body", 400)
        boundary = content_type.split("boundary=", 1)[1].split(";")[0].strip().strip('"')
        workdir = tempfile.mkdtemp(prefix="dedupstore-ipfs-rpc-")
        writer = self.store.writer()
        try:
            filename, data_path = self._receive_file(boundary.encode(), workdir)
            sink = _discard if only_hash else writer
            with open(data_path, "rb") as stream:
                file = import_file(stream, sink, options)
            lines: list[dict[str, Any]] = []
            if progress:
                # Kubo reports bytes read so far, a chunk at a time, then the results.
                done = 0
                while done < file.filesize:
                    done = min(file.filesize, done + options.chunk_size)
                    lines.append({"Name": filename, "Bytes": done})
            lines.append({"Name": filename, "Hash": str(file.cid), "Size": str(file.tsize)})
            root = file
            if wrap:
                root = wrap_in_directory(filename, file, sink, options)
                lines.append({"Name": "", "Hash": str(root.cid), "Size": str(root.tsize)})
            if not only_hash:
                writer.sync()
                if pin:
                    self.node.pin(str(root.cid))
        finally:
            writer.discard()
            shutil.rmtree(workdir, ignore_errors=True)
        body = "".join(json.dumps(line) + "\n" for line in lines).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("X-Chunked-Output", "1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _receive_file(self, boundary: bytes, workdir: str) -> tuple[str, str]:
        """Stream the single file part of a multipart body to ``workdir``."""
        delimiter = b"\r\n--" + boundary
        buffer = b""
        chunks = self._body_chunks()
        for chunk in chunks:  # Headers first.
            buffer += chunk
            if b"\r\n\r\n" in buffer:
                break
        head, _, buffer = buffer.partition(b"\r\n\r\n")
        if not head.startswith(b"--" + boundary):
            raise _Error("malformed multipart body", 400)
        filename = "file"
        for line in head.split(b"\r\n")[1:]:
            if line.lower().startswith(b"content-disposition") and b'filename="' in line:
                raw = line.split(b'filename="', 1)[1].rsplit(b'"', 1)[0]
                filename = unquote(raw.decode("utf-8", "replace")) or "file"
        filename = os.path.basename(filename) or "file"
        data_path = os.path.join(workdir, "data")
        found = False
        with open(data_path, "wb") as out:
            for chunk in chunks:
                buffer += chunk
                index = buffer.find(delimiter)
                if index >= 0:
                    out.write(buffer[:index])
                    found = True
                    break
                keep = len(delimiter)
                out.write(buffer[:-keep])
                buffer = buffer[-keep:]
            else:
                index = buffer.find(delimiter)
                if index < 0:
                    raise _Error("multipart body has no closing boundary", 400)
                out.write(buffer[:index])
                found = True
        for _ in chunks:  # Drain the epilogue.
            pass
        if not found:
            raise _Error("multipart body has no closing boundary", 400)
        return filename, data_path

    def cmd_cat(self, params: dict[str, str]) -> None:
        self._drain()
        _, cid = self._local_cid(params)
        try:
            reader = UnixFSReader(self.store, cid)
        except IsADirectoryError:
            raise _Error("this dag node is a directory") from None
        with reader:
            offset = min(int(params.get("offset", 0) or 0), reader.size)
            remaining = reader.size - offset
            if "length" in params:
                remaining = min(remaining, int(params["length"]))
            reader.seek(offset)
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("X-Stream-Output", "1")
            self.send_header("X-Content-Length", str(reader.size))
            self.send_header("Content-Length", str(remaining))
            self.end_headers()
            buffer = bytearray(_CHUNK)
            while remaining:
                count = reader.readinto(memoryview(buffer)[: min(remaining, _CHUNK)])
                if not count:
                    break
                self.wfile.write(memoryview(buffer)[:count])
                remaining -= count

    def cmd_files_stat(self, params: dict[str, str]) -> None:
        self._drain()
        _, cid = self._local_cid(params)
        try:
            node = self.store.node(cid)
        except IncompleteDAGError:
            raise _Error(f"block was not found locally (offline): {cid}") from None
        kind = "directory" if node.is_directory else "file"
        self._send_json(
            {
                "Hash": str(cid),
                "Size": 0 if node.is_directory else node.size(),
                "CumulativeSize": self.store.path(cid).stat().st_size + node.size(),
                "Blocks": len(node.links),
                "Type": kind,
            }
        )

    def cmd_ls(self, params: dict[str, str]) -> None:
        self._drain()
        _, cid = self._local_cid(params)
        node = self.store.node(cid)
        links = []
        for link in node.links:
            is_dir = False
            with contextlib.suppress(IncompleteDAGError, OSError, ValueError):
                is_dir = link.cid.codec == 0x70 and self.store.node(link.cid).is_directory
            links.append(
                {
                    "Name": link.name,
                    "Hash": str(link.cid),
                    "Size": link.tsize,
                    "Type": 1 if is_dir else 2,
                }
            )
        self._send_json({"Objects": [{"Hash": str(cid), "Links": links}]})

    def cmd_pin_ls(self, params: dict[str, str]) -> None:
        self._drain()
        wanted = params.get("type", "all")
        types = self._pin_types()
        if "arg" in params:
            path = self._path(params)
            if path.segments:
                # A path inside a pinned root is pinned indirectly through it.
                root_type = next(
                    (t for c, t in types.items() if parse_cid(c).multihash == path.root.multihash),
                    None,
                )
                _, cid = self._local_cid(params)
                if root_type is None or wanted not in ("all", "indirect"):
                    raise _Error(f"path '{params['arg']}' is not pinned")
                self._send_json({"Keys": {str(cid): {"Type": f"indirect through {path.root}"}}})
                return
            for text, kind in types.items():
                if parse_cid(text).multihash == path.root.multihash and wanted in ("all", kind):
                    self._send_json({"Keys": {text: {"Type": kind}}})
                    return
            raise _Error(f"path '{params['arg']}' is not pinned")
        keys = {c: {"Type": t} for c, t in types.items() if wanted in ("all", t)}
        self._send_json({"Keys": keys})

    def cmd_pin_add(self, params: dict[str, str]) -> None:
        self._drain()
        path = self._path(params)
        self.node.pin(path.root_text)
        self._send_json({"Pins": [path.root_text]})

    def cmd_pin_rm(self, params: dict[str, str]) -> None:
        self._drain()
        path = self._path(params)
        if not self.node.unpin(path.root_text):
            raise _Error("not pinned or pinned indirectly")
        self._send_json({"Pins": [path.root_text]})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    node: EmbeddedNode
    blockstore: Blockstore
    auth: str | None
    delay: float
    record: bool
    requests: list[RecordedRequest]

    def __init__(self, address: tuple[str, int], handler: type[_Handler]) -> None:
        super().__init__(address, handler)
        self.stopping = threading.Event()
        self._handlers_lock = threading.Lock()
        # Open connection -> the thread handling it, so stop() can end and join them all.
        self.handlers: dict[socket.socket, threading.Thread] = {}

    def process_request(self, request: Any, client_address: Any) -> None:
        thread = threading.Thread(
            target=self._handle,
            args=(request, client_address),
            name="ipfs-rpc-handler",
            daemon=True,
        )
        with self._handlers_lock:
            if self.stopping.is_set():
                self.shutdown_request(request)
                return
            self.handlers[request] = thread
        thread.start()

    def _handle(self, request: Any, client_address: Any) -> None:
        try:
            self.process_request_thread(request, client_address)
        finally:
            with self._handlers_lock:
                self.handlers.pop(request, None)

    def end_handlers(self, deadline: float) -> list[threading.Thread]:
        """Shut every open connection down and join its handler; return any still alive."""
        with self._handlers_lock:
            handlers = list(self.handlers.items())
        for connection, _ in handlers:
            # Wakes a handler blocked reading the next keep-alive request or a body.
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        for _, thread in handlers:
            thread.join(max(0.0, deadline - time.monotonic()))
        return [thread for _, thread in handlers if thread.is_alive()]

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (its timeout) closes the connection: expected in tests, as
        # is a connection shut down by stop().
        error = sys.exc_info()[1]
        if isinstance(error, ConnectionError) or (
            self.stopping.is_set() and isinstance(error, OSError)
        ):
            return
        super().handle_error(request, client_address)


class NodeRPCServer:
    """Serve a subset of the Kubo RPC API for ``node`` on ``127.0.0.1:<free port>``."""

    def __init__(
        self,
        node: EmbeddedNode,
        *,
        auth: str | None = None,
        delay: float = 0.0,
        record: bool = False,
    ) -> None:
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.record = record
        self._server.node = node
        self._server.blockstore = Blockstore(node.repo)
        self._server.auth = auth
        self._server.delay = delay
        self._server.requests = []
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def multiaddr(self) -> str:
        return f"/ip4/127.0.0.1/tcp/{self.port}"

    @property
    def requests(self) -> list[RecordedRequest]:
        """Every request received, in order (to assert what a client sent)."""
        return self._server.requests

    @property
    def delay(self) -> float:
        return self._server.delay

    @delay.setter
    def delay(self, seconds: float) -> None:
        self._server.delay = seconds

    def start(self) -> NodeRPCServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="ipfs-rpc-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving; return once no request handler runs any more.

        Raises ``RuntimeError`` if a handler is still running after a long deadline.
        """
        deadline = time.monotonic() + _STOP_DEADLINE
        self._server.stopping.set()
        if self._thread is not None:
            self._server.shutdown()  # serve_forever() has returned: nothing new is accepted
            self._thread.join(max(0.0, deadline - time.monotonic()))
        alive = self._server.end_handlers(deadline)
        self._server.server_close()
        if alive:
            raise RuntimeError(
                f"the Kubo RPC server on port {self.port}: {len(alive)} request "
                f"handler(s) still running {_STOP_DEADLINE:g} s after stop()"
            )

    def __enter__(self) -> NodeRPCServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
