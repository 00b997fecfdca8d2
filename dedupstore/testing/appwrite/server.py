"""``AppwriteTestServer``: lifecycle, helpers for tests, and routing."""

from __future__ import annotations

import re
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

from dedupstore.testing.service import LoopbackService

from .base import _Route
from .buckets import _BucketRoutes
from .downloads import _DownloadRoutes
from .errors import AppwriteError
from .files import _FileRoutes
from .httpd import _Handler, _HTTPServer
from .tokens import _TokenRoutes
from .wire import InjectedFault, RequestRecord, _Request, _Response


class AppwriteTestServer(
    _BucketRoutes, _FileRoutes, _TokenRoutes, _DownloadRoutes, LoopbackService
):
    """An Appwrite Storage server on 127.0.0.1, in a background thread.

    ``project_id`` and ``api_key`` are what clients must send (a random key by default).
    ``storage_limit`` is ``_APP_STORAGE_LIMIT``: the default and the largest allowed
    ``maximumFileSize`` of a bucket. ``upload_lock_timeout`` is how long a chunk waits for
    the file's upload lock before the server answers 429 "File upload is busy".
    """

    # -- lifecycle --------------------------------------------------------------------

    def start(self) -> AppwriteTestServer:
        """Bind a free port on 127.0.0.1 and serve in a daemon thread."""
        if self._httpd is not None:
            return self
        if self._data_dir_option is None:
            self._tempdir = tempfile.TemporaryDirectory(prefix="dedupstore-appwrite-")
            self._data_dir = Path(self._tempdir.name)
        else:
            self._data_dir = Path(self._data_dir_option)
            self._data_dir.mkdir(parents=True, exist_ok=True)
        self._httpd = _HTTPServer(("127.0.0.1", self._port_option), _Handler)
        self._httpd.app = self
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name=f"appwrite-test-server-{self.port}",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and remove the stored files."""
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._tempdir is not None:
            self._tempdir.cleanup()
            self._tempdir = None

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the Appwrite test server is not running")
        return int(self._httpd.server_address[1])

    @property
    def endpoint(self) -> str:
        """Return the API endpoint, ``http://127.0.0.1:<port>/v1`` (no trailing slash)."""
        return f"http://127.0.0.1:{self.port}/v1"

    # -- helpers for tests ------------------------------------------------------------

    def client(self, *, api_key: str | None = None, project_id: str | None = None) -> Any:
        """Return an ``appwrite.client.Client`` configured for this server."""
        from appwrite.client import Client

        client = Client()
        client.set_endpoint(self.endpoint)
        client.set_project(self.project_id if project_id is None else project_id)
        client.set_key(self.api_key if api_key is None else api_key)
        return client

    def storage_options(self, **extra: Any) -> dict[str, Any]:
        """Return ``AppwriteStorage`` OPTIONS that point at this server."""
        return {
            "endpoint": self.endpoint,
            "project_id": self.project_id,
            "api_key": self.api_key,
            **extra,
        }

    def reset(self) -> None:
        """Delete every bucket and file, and clear the request log and injected faults."""
        with self._state_lock:
            for bucket in self._buckets.values():
                for stored in bucket.files.values():
                    shutil.rmtree(stored.directory, ignore_errors=True)
            self._buckets.clear()
            self._tokens.clear()
        self.clear_log()
        with self._log_lock:
            self._faults.clear()

    def clear_log(self) -> None:
        """Forget the requests logged so far."""
        with self._log_lock:
            self.requests.clear()

    @property
    def request_count(self) -> int:
        return len(self.requests)

    @property
    def bytes_received(self) -> int:
        """Return the request body bytes received since the log was last cleared."""
        return sum(record.bytes_received for record in list(self.requests))

    @property
    def bytes_sent(self) -> int:
        """Return the response body bytes sent since the log was last cleared."""
        return sum(record.bytes_sent for record in list(self.requests))

    def inject(
        self,
        status: int,
        type: str,
        message: str | None = None,
        *,
        method: str | None = None,
        path: str | None = None,
        times: int = 1,
        headers: dict[str, str] | None = None,
        delay: float = 0.0,
        after: int = 0,
    ) -> InjectedFault:
        """Answer the next ``times`` matching requests with this error instead.

        ``path`` is a regular expression searched in the request path; ``after`` lets
        that many matching requests through first (to hit, say, the third chunk of an
        upload). ``delay`` sleeps before answering, to exercise client timeouts. Project
        and key checks still run first, as a real server's would.
        """
        fault = InjectedFault(
            status=status,
            type=type,
            message=message,
            method=method,
            path_pattern=re.compile(path) if path else None,
            times=times,
            headers=dict(headers or {}),
            delay=delay,
            after=after,
        )
        with self._log_lock:
            self._faults.append(fault)
        return fault

    def advance_time(self, seconds: float) -> None:
        """Move the server's clock forward, so tests see tokens expire without sleeping."""
        with self._state_lock:
            self._clock_offset += seconds

    def tokens(self) -> list[dict[str, Any]]:
        """Return every file token the server holds, as its API shows them."""
        with self._state_lock:
            return [token.to_json() for token in self._tokens.values()]

    def stored_bytes(self) -> int:
        """Return the bytes of every complete file held, as stored (``sizeActual``)."""
        with self._state_lock:
            return sum(
                stored.size
                for bucket in self._buckets.values()
                for stored in bucket.files.values()
                if stored.complete
            )

    def file_path(self, bucket_id: str, file_id: str) -> Path:
        """Return where the bytes of a complete file are stored on disk."""
        with self._state_lock:
            return self._buckets[bucket_id].files[file_id].data_path

    def bucket_ids(self) -> list[str]:
        with self._state_lock:
            return list(self._buckets)

    # -- request handling -------------------------------------------------------------

    def _record(self, request: _Request, response: _Response, sent: int) -> None:
        headers = {key.lower(): value for key, value in request.headers.items()}
        if not self.log_headers:
            headers = {}
        query = "&".join(f"{key}={value}" for key, value in request.query)
        record = RequestRecord(
            request.method, request.path, query, response.status, len(request.body), sent, headers
        )
        with self._log_lock:
            self.requests.append(record)

    def handle(self, request: _Request) -> _Response:
        """Route one request and turn errors into Appwrite error responses."""
        try:
            if not request.path.startswith("/v1/"):
                return self._html_not_found()
            subpath = request.path[len("/v1") :]
            for route in self._routes:
                match = route.pattern.match(subpath)
                if match and route.method == request.method:
                    return route.handler(request, **match.groupdict())
            return self._html_not_found()
        except AppwriteError as error:
            return _Response.error(error)
        except Exception:  # pragma: no cover - a bug in this server
            import traceback

            traceback.print_exc()
            return _Response.error(AppwriteError(500, "general_server_error"))

    @staticmethod
    def _html_not_found() -> _Response:
        # Unknown routes get an HTML page; the SDK then raises with type=None.
        body = b"<html><body><h1>404 Not Found</h1></body></html>"
        return _Response(404, {"Content-Type": "text/html; charset=UTF-8"}, body)

    def _build_routes(self) -> list[_Route]:
        bucket = r"/storage/buckets/(?P<bucket_id>[^/]+)"
        file = bucket + r"/files/(?P<file_id>[^/]+)"
        return [
            _Route("GET", r"/storage/buckets", self._list_buckets),
            _Route("POST", r"/storage/buckets", self._create_bucket),
            _Route("GET", bucket, self._get_bucket),
            _Route("PUT", bucket, self._update_bucket),
            _Route("DELETE", bucket, self._delete_bucket),
            _Route("GET", bucket + r"/files", self._list_files),
            _Route("POST", bucket + r"/files", self._create_file),
            _Route("GET", file, self._get_file),
            _Route("PUT", file, self._update_file),
            _Route("DELETE", file, self._delete_file),
            _Route("GET", file + r"/download", self._download),
            _Route("GET", file + r"/view", self._view),
            _Route("GET", file + r"/preview", self._preview),
            _Route(
                "POST",
                r"/tokens/buckets/(?P<bucket_id>[^/]+)/files/(?P<file_id>[^/]+)",
                self._create_token,
            ),
            _Route(
                "GET",
                r"/tokens/buckets/(?P<bucket_id>[^/]+)/files/(?P<file_id>[^/]+)",
                self._list_tokens,
            ),
            _Route("GET", r"/tokens/(?P<token_id>[^/]+)", self._get_token),
            _Route("PATCH", r"/tokens/(?P<token_id>[^/]+)", self._update_token),
            _Route("DELETE", r"/tokens/(?P<token_id>[^/]+)", self._delete_token),
        ]
