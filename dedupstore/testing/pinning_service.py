"""A *test* server of the IPFS Pinning Service API 1.0.0 that pins onto an embedded node.

No hosted pinning service can be reached from the machines this project is tested on, so
replicas are tested against this server, built from the specification's OpenAPI document
(``dedupstore/testing/specs/pinning-service-api-1.0.0.yaml``, CC0). It is the project's
own test server, not a pinning service. "pinned" means what it means on a real service:
the bytes are on another node. Each request is queued, then (``pinning``) the server's own
isolated embedded node connects to the request's loopback ``origins``, fetches the whole
DAG over bitswap and pins it (``pinned``), or reports ``failed`` with
``info.status_details``.

Endpoints: ``GET /pins`` (filters ``cid``, ``name``, ``match``, ``status``, ``before``,
``after``, ``limit``; without filters only pinned objects, as the specification says),
``POST /pins`` (202), ``GET /pins/{requestid}``, ``POST /pins/{requestid}`` (replace,
202), ``DELETE /pins/{requestid}`` (202). Every request needs ``Authorization: Bearer
<token>`` (else 401 ``UNAUTHORIZED``); errors are the specification's ``Failure``
objects. ``down = True`` makes every request answer 503, ``hold = True`` keeps new
requests ``queued`` until it is cleared. It listens on ``127.0.0.1`` only and never dials
an origin outside ``127.0.0.0/8``.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import os
import tempfile
import threading
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from dedupstore.backends.ipfs.cid import parse_cid
from dedupstore.backends.ipfs.embedded import EmbeddedNode
from dedupstore.backends.ipfs.errors import InvalidCIDError, IPFSStorageError

__all__ = ["SPEC_PATH", "PinningServiceTestServer"]

SPEC_PATH = Path(__file__).with_name("specs") / "pinning-service-api-1.0.0.yaml"
_STATUSES = ("queued", "pinning", "pinned", "failed")


@dataclass
class _PinRequest:
    requestid: str
    pin: dict[str, Any]
    created: datetime
    status: str = "queued"
    info: dict[str, str] = field(default_factory=dict)

    def as_json(self, delegates: list[str]) -> dict[str, Any]:
        return {
            "requestid": self.requestid,
            "status": self.status,
            "created": self.created.isoformat().replace("+00:00", "Z"),
            "pin": self.pin,
            "delegates": delegates,
            "info": self.info,
        }


class _Failure(Exception):
    def __init__(self, status: int, reason: str, details: str = "") -> None:
        super().__init__(details or reason)
        self.status, self.reason, self.details = status, reason, details


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, payload: Any) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if self.command == "POST":
            try:
                return json.loads(raw or b"null")
            except ValueError:
                raise _Failure(400, "BAD_REQUEST", "the body is not JSON") from None
        return None

    def _dispatch(self) -> None:
        owner = self.server.owner
        try:
            body = self._body()
            if owner.down:
                raise _Failure(503, "INTERNAL_SERVER_ERROR", "the service is down (test)")
            given = self.headers.get("Authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {owner.token}".encode()):
                raise _Failure(401, "UNAUTHORIZED", "a valid access token is required")
            parts = urlsplit(self.path)
            segments = [s for s in parts.path.split("/") if s]
            if segments == ["pins"]:
                if self.command == "GET":
                    self._send(200, owner.list(parse_qs(parts.query)))
                elif self.command == "POST":
                    self._send(202, owner.add(_pin_of(body)))
                else:
                    raise _Failure(405, "METHOD_NOT_ALLOWED")
            elif len(segments) == 2 and segments[0] == "pins":
                requestid = segments[1]
                if self.command == "GET":
                    self._send(200, owner.status(requestid))
                elif self.command == "POST":
                    self._send(202, owner.replace(requestid, _pin_of(body)))
                elif self.command == "DELETE":
                    owner.delete(requestid)
                    self.send_response(202)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    raise _Failure(405, "METHOD_NOT_ALLOWED")
            else:
                raise _Failure(404, "NOT_FOUND", f"no such endpoint: {parts.path}")
        except _Failure as failure:
            error = {"reason": failure.reason}
            if failure.details:
                error["details"] = failure.details
            self._send(failure.status, {"error": error})

    do_GET = do_POST = do_DELETE = do_PUT = _dispatch


def _pin_of(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict) or not isinstance(body.get("cid"), str):
        raise _Failure(400, "BAD_REQUEST", "a Pin object with a cid is required")
    try:
        parse_cid(body["cid"])
    except InvalidCIDError as exc:
        raise _Failure(400, "BAD_REQUEST", str(exc)) from None
    origins = body.get("origins", [])
    if not isinstance(origins, list) or len(origins) > 20:
        raise _Failure(400, "BAD_REQUEST", "origins must be a list of at most 20 multiaddrs")
    name = body.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 255):
        raise _Failure(400, "BAD_REQUEST", "name must be a string of at most 255 characters")
    pin = {"cid": body["cid"], "origins": origins}
    if name is not None:
        pin["name"] = name
    if isinstance(body.get("meta"), dict):
        pin["meta"] = body["meta"]
    return pin


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: PinningServiceTestServer


class PinningServiceTestServer:
    """Serve the Pinning Service API on ``127.0.0.1:<free port>``, pinning onto ``node``."""

    def __init__(self, node: EmbeddedNode, *, token: str, fetch_timeout: float = 60.0) -> None:
        self.node = node
        self.token = token
        self.fetch_timeout = fetch_timeout
        self.down = False
        self._hold = threading.Event()
        self._hold.set()
        self._lock = threading.Lock()
        self._pins: dict[str, _PinRequest] = {}
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.owner = self
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    @property
    def hold(self) -> bool:
        return not self._hold.is_set()

    @hold.setter
    def hold(self, value: bool) -> None:
        if value:
            self._hold.clear()
        else:
            self._hold.set()

    def delegates(self) -> list[str]:
        peer = self.node.peer_id()
        return [f"{address}/p2p/{peer}" for address in self.node.multiaddrs()][:20] or [
            f"/p2p/{peer}"
        ]

    # -- the API ------------------------------------------------------------------------

    def add(self, pin: dict[str, Any]) -> dict[str, Any]:
        request = _PinRequest(uuid.uuid4().hex, pin, datetime.now(UTC))
        with self._lock:
            self._pins[request.requestid] = request
        worker = threading.Thread(
            target=self._pin, args=(request,), name="pinning-test-worker", daemon=True
        )
        self._workers.append(worker)
        worker.start()
        return request.as_json(self.delegates())

    def status(self, requestid: str) -> dict[str, Any]:
        with self._lock:
            request = self._pins.get(requestid)
        if request is None:
            raise _Failure(404, "NOT_FOUND", f"no pin request {requestid}")
        return request.as_json(self.delegates())

    def replace(self, requestid: str, pin: dict[str, Any]) -> dict[str, Any]:
        status = self.add(pin)
        self.delete(requestid, keep_cid=pin["cid"])
        return status

    def delete(self, requestid: str, *, keep_cid: str | None = None) -> None:
        with self._lock:
            request = self._pins.pop(requestid, None)
            if request is None:
                raise _Failure(404, "NOT_FOUND", f"no pin request {requestid}")
            cid = request.pin["cid"]
            still_wanted = cid == keep_cid or any(
                other.pin["cid"] == cid for other in self._pins.values()
            )
        if not still_wanted and request.status == "pinned":
            self.node.unpin(cid)

    def list(self, query: dict[str, list[str]]) -> dict[str, Any]:
        def values(name: str) -> list[str]:
            return [v for item in query.get(name, []) for v in item.split(",") if v]

        cids = values("cid")
        statuses = values("status") or ["pinned"]
        if any(status not in _STATUSES for status in statuses):
            raise _Failure(400, "BAD_REQUEST", f"unknown status in {statuses}")
        names = query.get("name")
        name = names[-1] if names else None
        match = (query.get("match") or ["exact"])[-1]
        try:
            limit = int((query.get("limit") or ["10"])[-1])
        except ValueError:
            raise _Failure(400, "BAD_REQUEST", "limit must be an integer") from None
        if not 1 <= limit <= 1000:
            raise _Failure(400, "BAD_REQUEST", "limit must be between 1 and 1000")
        before = _when(query, "before")
        after = _when(query, "after")
        with self._lock:
            found = [
                request
                for request in self._pins.values()
                if request.status in statuses
                and (not cids or request.pin["cid"] in cids)
                and (name is None or _matches(request.pin.get("name", ""), name, match))
                and (before is None or request.created < before)
                and (after is None or request.created > after)
            ]
        found.sort(key=lambda request: request.created, reverse=True)
        delegates = self.delegates()
        return {"count": len(found), "results": [r.as_json(delegates) for r in found[:limit]]}

    # -- pinning onto the node -------------------------------------------------------------

    def _pin(self, request: _PinRequest) -> None:
        self._hold.wait()
        cid = request.pin["cid"]
        request.status = "pinning"
        try:
            for origin in request.pin.get("origins", []):
                # Never dial outside loopback, whatever a client sends.
                if isinstance(origin, str) and origin.startswith("/ip4/127.") and "/p2p/" in origin:
                    with contextlib.suppress(IPFSStorageError):
                        self.node.connect(origin)
            fd, dest = tempfile.mkstemp(prefix="pinning-test-")
            os.close(fd)
            try:
                self.node.download(cid, dest, timeout=self.fetch_timeout)
            finally:
                os.unlink(dest)
            self.node.pin(cid)
        except Exception as exc:
            request.status = "failed"
            request.info = {"status_details": f"{type(exc).__name__}: {exc}"[:500]}
            return
        with self._lock:
            wanted = request.requestid in self._pins
        request.status = "pinned"
        if not wanted:  # deleted while pinning
            self.node.unpin(cid)

    # -- life cycle --------------------------------------------------------------------------

    def start(self) -> PinningServiceTestServer:
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="pinning-test-server", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._hold.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
        self._server.server_close()
        for worker in self._workers:
            worker.join(self.fetch_timeout + 10)

    def __enter__(self) -> PinningServiceTestServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _when(query: dict[str, list[str]], name: str) -> datetime | None:
    given = query.get(name)
    if not given:
        return None
    text = given[-1]
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Failure(400, "BAD_REQUEST", f"{name} must be an RFC 3339 date-time") from None


def _matches(value: str, wanted: str, strategy: str) -> bool:
    if strategy == "iexact":
        return value.lower() == wanted.lower()
    if strategy == "partial":
        return wanted in value
    if strategy == "ipartial":
        return wanted.lower() in value.lower()
    return value == wanted
