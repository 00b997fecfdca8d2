"""The HTTP side: a threading ``http.server`` that hands requests to the server object."""

from __future__ import annotations

import http.server
import socketserver
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from .wire import _Request, _Response

if TYPE_CHECKING:
    from .server import AppwriteTestServer


class _HTTPServer(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True
    # The SDK sends up to 8 chunks at once, and benchmarks add more clients.
    request_queue_size = 64
    app: AppwriteTestServer


class _Handler(http.server.BaseHTTPRequestHandler):
    # HTTP/1.1 keeps connections alive for clients that pool them (every response carries
    # a Content-Length, so bodies are delimited).
    protocol_version = "HTTP/1.1"
    # Headers and body go out in separate writes: with Nagle's algorithm on, a kept-alive
    # connection would wait for the client's delayed ACK (40 ms) between them.
    disable_nagle_algorithm = True
    server: _HTTPServer
    server_version = "AppwriteTestServer"
    sys_version = ""

    def log_message(self, format: str, *args: Any) -> None:
        """Stay quiet; ``AppwriteTestServer.requests`` keeps the log."""

    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            pieces = []
            while True:
                size_line = self.rfile.readline(65537)
                size = int(size_line.split(b";", 1)[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    break
                pieces.append(self.rfile.read(size))
                self.rfile.readline(65537)
            return b"".join(pieces)
        length = int(self.headers.get("Content-Length") or 0)
        # GET requests may carry a body too (the SDK's resume probe): always consume it so
        # the next request on this connection starts at the right byte.
        return self.rfile.read(length) if length else b""

    def _dispatch(self) -> None:
        parsed = urlsplit(self.path)
        body = self._read_body()
        request = _Request(
            method=self.command,
            path=unquote(parsed.path),
            query=parse_qsl(parsed.query, keep_blank_values=True),
            headers=self.headers,
            body=body,
        )
        app = self.server.app
        response = app.handle(request)
        length = response.file_region[2] if response.file_region else len(response.body)
        # Log before answering: a client that has its response must find it in the log.
        app._record(request, response, length)
        self._send(response, length)

    def _send(self, response: _Response, length: int) -> int:
        self.send_response(response.status)
        for key, value in response.headers.items():
            # Swoole writes header values as raw UTF-8 (a unicode file name in
            # Content-Disposition); http.server would insist on latin-1.
            self.send_header(key, value.encode("utf-8").decode("latin-1"))
        self.send_header("Content-Length", str(length))
        self.end_headers()
        if self.command == "HEAD":
            return 0
        path_region = response.file_region
        sent = 0
        try:
            if path_region is None:
                self.wfile.write(response.body)
                return length
            path, offset, remaining = path_region
            with open(path, "rb") as source:
                source.seek(offset)
                while remaining > 0:
                    block = source.read(min(remaining, 1024 * 1024))
                    if not block:
                        break
                    self.wfile.write(block)
                    sent += len(block)
                    remaining -= len(block)
        except (BrokenPipeError, ConnectionResetError):
            # The client stopped reading (a closed download, a timeout): not our error.
            self.close_connection = True
        return sent

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_HEAD = _dispatch
