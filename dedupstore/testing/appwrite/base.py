"""The server's state and the checks every route runs, in the order Appwrite runs them."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import _UID_DESCRIPTION, AppwriteError, _invalid_param
from .models import ID_PATTERN, _b64url_decode, _Bucket, _File, _Token
from .permissions import _grants
from .queries import _ListQueries
from .wire import InjectedFault, RequestRecord, _parse_multipart, _Request, _Response

if TYPE_CHECKING:
    from .httpd import _HTTPServer

#: ``_APP_STORAGE_LIMIT`` of a self-hosted Appwrite ``.env``: the default bucket limit.
DEFAULT_STORAGE_LIMIT = 30_000_000


class _Route:
    def __init__(self, method: str, pattern: str, handler: Callable[..., _Response]) -> None:
        self.method = method
        self.pattern = re.compile("^" + pattern + "$")
        self.handler = handler


class _ServerBase(_ListQueries):
    """The state of an ``AppwriteTestServer`` and the checks its routes share."""

    def __init__(
        self,
        *,
        project_id: str = "dedupstore-test",
        api_key: str | None = None,
        storage_limit: int = DEFAULT_STORAGE_LIMIT,
        upload_lock_timeout: float = 30.0,
        data_dir: str | os.PathLike[str] | None = None,
        log_headers: bool = False,
        port: int = 0,
    ) -> None:
        self.project_id = project_id
        self._port_option = port
        self.api_key = api_key or "test-key-" + secrets.token_hex(16)
        self.storage_limit = storage_limit
        self.upload_lock_timeout = upload_lock_timeout
        self.log_headers = log_headers
        self._data_dir_option = data_dir
        self._data_dir: Path | None = None
        self._tempdir: tempfile.TemporaryDirectory[str] | None = None
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._state_lock = threading.RLock()
        self._file_locks: dict[tuple[str, str], threading.Lock] = {}
        self._buckets: dict[str, _Bucket] = {}
        self._sequence = 0
        self._log_lock = threading.Lock()
        self.requests: list[RequestRecord] = []
        self._faults: list[InjectedFault] = []
        # File tokens: what the real server keeps in its resourceTokens collection, and
        # the key it signs their JWT secrets with (_APP_OPENSSL_KEY_V1).
        self._tokens: dict[str, _Token] = {}
        self._token_key = secrets.token_bytes(32)
        self._clock_offset = 0.0
        self._routes = self._build_routes()

    def _build_routes(self) -> list[_Route]:
        raise NotImplementedError

    def now(self) -> datetime:
        """Return the server's current time (the real clock plus ``advance_time``)."""
        return datetime.fromtimestamp(time.time() + self._clock_offset, UTC)

    def _take_fault(self, method: str, path: str) -> InjectedFault | None:
        with self._log_lock:
            for fault in self._faults:
                if fault.times > 0 and fault.matches(method, path):
                    if fault.after > 0:
                        fault.after -= 1
                        continue
                    fault.times -= 1
                    return fault
        return None

    # -- checks, in the order the real server runs them --------------------------------

    def _authorize(self, request: _Request, scope: str) -> bool:
        """Check the project, then the key and its scope; return True for a key caller.

        A missing key makes the caller a guest: guests have the ``files.*`` scopes but
        not ``buckets.*``, and then need permissions on the bucket or file.
        """
        # Browsers cannot send headers with an <img src>, so Appwrite also reads the
        # project from the query string (the ``?project=`` of view URLs).
        project = request.header("X-Appwrite-Project") or request.query_value("project") or ""
        if project != self.project_id:
            raise AppwriteError(404, "project_not_found")
        key = request.header("X-Appwrite-Key")
        if key:
            if not secrets.compare_digest(key.encode(), self.api_key.encode()):
                raise AppwriteError(401, "user_unauthorized")
            caller_is_key = True
        else:
            if scope.startswith(("buckets.", "tokens.")):
                raise AppwriteError(
                    401,
                    "general_unauthorized_scope",
                    f'User (role: guests) missing scopes (["{scope}"])',
                )
            caller_is_key = False
        fault = self._take_fault(request.method, request.path)
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            raise AppwriteError(fault.status, fault.type, fault.message, fault.headers)
        return caller_is_key

    @staticmethod
    def _check_uid(param: str, value: str) -> None:
        if not ID_PATTERN.match(value):
            raise _invalid_param(param, _UID_DESCRIPTION)

    def _bucket(self, bucket_id: str, *, caller_is_key: bool) -> _Bucket:
        with self._state_lock:
            bucket = self._buckets.get(bucket_id)
        if bucket is None or (not bucket.enabled and not caller_is_key):
            raise AppwriteError(404, "storage_bucket_not_found")
        return bucket

    @staticmethod
    def _check_permission(
        bucket: _Bucket, stored: _File | None, action: str, *, caller_is_key: bool
    ) -> None:
        """Apply bucket (and, with file security, file) permissions to a guest caller."""
        if caller_is_key:
            return
        roles = ("any", "guests")
        allowed = _grants(bucket.permissions, action, roles)
        if not allowed and bucket.file_security and stored is not None:
            allowed = _grants(stored.permissions, action, roles)
        if not allowed:
            raise AppwriteError(
                401,
                "user_unauthorized",
                f'Missing "{action}" permission for role "guests". Only "["any","guests"]" '
                f'scopes are allowed and "{json.dumps(bucket.permissions)}" was given.',
            )

    def _file(self, bucket: _Bucket, file_id: str) -> _File:
        with self._state_lock:
            stored = bucket.files.get(file_id)
        if stored is None:
            raise AppwriteError(404, "storage_file_not_found")
        return stored

    def _next_sequence(self) -> int:
        with self._state_lock:
            self._sequence += 1
            return self._sequence

    # -- JSON bodies ------------------------------------------------------------------

    @staticmethod
    def _json_body(request: _Request) -> dict[str, Any]:
        content_type = request.header("Content-Type") or ""
        if not request.body:
            return {}
        if content_type.startswith("multipart/form-data"):
            parts = _parse_multipart(content_type, request.body)
            return {name: part.data.decode("utf-8", "replace") for name, part in parts.items()}
        try:
            body = json.loads(request.body)
        except ValueError as exc:
            raise AppwriteError(400, "general_argument_invalid", "Invalid JSON body") from exc
        return body if isinstance(body, dict) else {}

    def _resource_token(self, request: _Request) -> _Token | None:
        """Return the live token that ``?token=`` names, or None (Appwrite's resourceToken)."""
        secret = request.query_value("token")
        if not secret:
            return None
        try:
            header, payload, signature = secret.split(".")
            expected = hmac.new(
                self._token_key, f"{header}.{payload}".encode(), hashlib.sha256
            ).digest()
            if not hmac.compare_digest(expected, _b64url_decode(signature)):
                return None
            claims = json.loads(_b64url_decode(payload))
        except (ValueError, TypeError):
            return None
        if not isinstance(claims, dict) or claims.get("exp", 0) < self.now().timestamp():
            return None
        with self._state_lock:
            token = self._tokens.get(str(claims.get("tokenId", "")))
        if token is None or (token.expire is not None and token.expire < self.now()):
            return None
        return token
