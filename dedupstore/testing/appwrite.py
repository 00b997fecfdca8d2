"""A faithful Appwrite Storage server for tests, demos and benchmarks.

No Appwrite server runs in a test suite, so this module implements the storage part of
Appwrite's REST API as the ``appwrite`` Python SDK 27 uses it (read in the SDK's source and
seen on its wire): buckets and files, API-key and project checks in Appwrite's
order, parallel and out-of-order chunked uploads with a per-file lock, the resume probe,
``Range`` downloads, ``queries[]`` lists with ``search`` and ``total``, and Appwrite's
exact error bodies and response ``Content-Type`` headers. File bytes live in a private
temporary directory, so a 1 GiB upload never sits in memory.

Use it as a context manager::

    with AppwriteTestServer() as server:
        client = server.client()            # an appwrite.client.Client pointed at it
        storage = AppwriteStorage(**server.storage_options(bucket_id="media"))

or, in pytest, with ``pytest_plugins = ["dedupstore.testing.appwrite"]`` and the
``appwrite_server`` fixture. ``server.requests`` logs every request (method, path,
status, bytes received and sent) so tests can count round trips.

Known approximations, chosen because no real server can be compared here:

* the MIME type of a stored file is sniffed from magic numbers, JSON and UTF-8 text,
  an approximation of the libmagic detection the real server does;
* ``search`` is a case-insensitive word-prefix match on the ID and name, where the real
  server runs a MariaDB full-text search;
* ``/preview`` returns the stored bytes of images and a fixed 1x1 PNG for anything else;
* encryption and compression are recorded on buckets but never applied, so
  ``sizeActual`` always equals ``sizeOriginal``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import http.server
import json
import math
import os
import re
import secrets
import shutil
import socketserver
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import Message
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

__all__ = [
    "CHUNK_SIZE",
    "DEFAULT_STORAGE_LIMIT",
    "AppwriteError",
    "AppwriteTestServer",
    "InjectedFault",
    "RequestRecord",
    "appwrite_server",
    "sniff_mime_type",
]

#: The SDK's upload chunk, which the server uses to number chunks (``Client._chunk_size``).
CHUNK_SIZE = 5 * 1024 * 1024
#: ``_APP_STORAGE_LIMIT`` of a self-hosted Appwrite ``.env``: the default bucket limit.
DEFAULT_STORAGE_LIMIT = 30_000_000
#: An open-ended ``Range`` is cut to this many bytes, as the real server does.
MAX_OUTPUT_CHUNK_SIZE = 10 * 1024 * 1024
#: At most this many files are counted for ``total`` (``APP_LIMIT_COUNT``).
LIMIT_COUNT = 5000
DEFAULT_PAGE_SIZE = 25
VERSION = "1.9.6"

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,35}$")
_PERMISSION_PATTERN = re.compile(r'^(read|create|update|delete|write)\("([^"]+)"\)$')
_CONTENT_RANGE_PATTERN = re.compile(r"^(\w+) (\d+)-(\d+)/(\d+)$")
_RANGE_PATTERN = re.compile(r"^(\w+)=(\d+)-(\d*)$")
_TOKEN_SPLIT = re.compile(r"[\s@+\-*()<>~\"._/]+")

#: Types that ``/view`` sends as they are; anything else is sent as ``text/plain``.
_VIEW_ALLOWED_TYPES = frozenset(
    {
        "image/jpeg",
        "image/jpg",
        "image/png",
        "image/gif",
        "image/webp",
        "image/avif",
        "image/heic",
        "image/bmp",
        "image/x-icon",
        "image/tiff",
        "application/pdf",
        "application/msword",
        "application/vnd.ms-excel",
        "application/vnd.ms-powerpoint",
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document",
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
        "application/vnd.openxmlformats-officedocument.presentationml.presentation",
    }
)

_FILE_ATTRIBUTES = frozenset(
    {
        "name",
        "folder",
        "signature",
        "mimeType",
        "sizeOriginal",
        "chunksTotal",
        "chunksUploaded",
        "$id",
        "$createdAt",
        "$updatedAt",
        "$sequence",
    }
)
_BUCKET_ATTRIBUTES = frozenset(
    {
        "enabled",
        "name",
        "fileSecurity",
        "maximumFileSize",
        "encryption",
        "antivirus",
        "transformations",
        "stripMetadata",
        "$id",
        "$createdAt",
        "$updatedAt",
        "$sequence",
    }
)

_ONE_PIXEL_PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c6360000002000005000157ed0c5a0000000049454e44ae426082"
)

# Error messages from Appwrite's app/config/errors.php (and the overrides seen in source).
_MESSAGES = {
    "storage_file_not_found": "The requested file could not be found.",
    "storage_bucket_not_found": "Storage bucket with the requested ID could not be found.",
    "storage_file_already_exists": "A storage file with the requested ID already exists.",
    "storage_bucket_already_exists": (
        "A storage bucket with the requested ID already exists. Try again with a different "
        "ID or use ID.unique() to generate a unique ID."
    ),
    "storage_invalid_appwrite_id": (
        "The value for x-appwrite-id header is invalid. Please check the value of the "
        "x-appwrite-id header is a valid id and not unique()."
    ),
    "storage_invalid_content_range": (
        "The content range is invalid. Please check the value of the Content-Range header."
    ),
    "storage_invalid_file_size": "File size not allowed",
    "storage_file_type_unsupported": "File extension not allowed",
    "storage_file_empty": "Empty file passed to the endpoint.",
    "storage_invalid_range": (
        "The requested range is not satisfiable. Please check the value of the Range header."
    ),
    "storage_bucket_transformations_disabled": (
        "Image transformations are disabled for the requested bucket."
    ),
    "user_unauthorized": "The current user is not authorized to perform the requested action.",
    "project_not_found": (
        "Project with the requested ID could not be found. Please check the value of the "
        "X-Appwrite-Project header to ensure the correct project ID is being used."
    ),
    "general_rate_limit_exceeded": "File upload is busy. Try again.",
    "token_not_found": "The requested token could not be found.",
    "general_server_error": "Server Error",
}
_CUSTOM_ID_DESCRIPTION = (
    "Parameter must contain at most 36 chars. Valid chars are a-z, A-Z, 0-9, period, "
    "hyphen, and underscore. Can't start with a special char"
)
_UID_DESCRIPTION = (
    "UID must contain at most 36 chars. Valid chars are a-z, A-Z, 0-9, and underscore. "
    "Can't start with a leading underscore"
)


class AppwriteError(Exception):
    """An Appwrite error response: HTTP status, error ``type`` and ``message``."""

    def __init__(
        self,
        status: int,
        type: str,
        message: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.status = status
        self.type = type
        self.message = message or _MESSAGES.get(type, "Server Error")
        self.headers = headers or {}
        super().__init__(f"{status} {type}: {self.message}")


def _invalid_param(param: str, description: str) -> AppwriteError:
    return AppwriteError(400, "general_argument_invalid", f"Invalid `{param}` param: {description}")


def _not_optional(param: str) -> AppwriteError:
    return AppwriteError(400, "general_argument_invalid", f'Param "{param}" is not optional.')


def _now() -> str:
    """Return the current time the way Appwrite formats dates (``Y-m-d\\TH:i:s.vP``)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+00:00"


def _unique_id() -> str:
    """Return an ID shaped like the server's ``ID::unique()``: 20 lower-case hex chars."""
    now = time.time()
    return f"{int(now):08x}{int(now * 1_000_000) % 1_000_000:05x}"[:13] + secrets.token_hex(4)[:7]


def sniff_mime_type(head: bytes, *, whole: bytes | None = None) -> str:
    """Guess a MIME type from content, approximating libmagic as Appwrite uses it.

    ``head`` is the start of the file; ``whole`` is the whole content when it is small
    enough to check for JSON. The file name is ignored, as libmagic ignores it.
    """
    signatures = (
        (b"\x89PNG\r\n\x1a\n", "image/png"),
        (b"\xff\xd8\xff", "image/jpeg"),
        (b"GIF87a", "image/gif"),
        (b"GIF89a", "image/gif"),
        (b"%PDF-", "application/pdf"),
        (b"PK\x03\x04", "application/zip"),
        (b"\x1f\x8b", "application/gzip"),
        (b"BM", "image/bmp"),
        (b"\x28\xb5\x2f\xfd", "application/zstd"),
        (b"7z\xbc\xaf\x27\x1c", "application/x-7z-compressed"),
        (b"ID3", "audio/mpeg"),
        (b"OggS", "audio/ogg"),
        (b"fLaC", "audio/flac"),
    )
    if not head:
        return "application/x-empty"
    for magic, mime in signatures:
        if head.startswith(magic):
            return mime
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp"
    if head[:4] == b"RIFF" and head[8:12] == b"WAVE":
        return "audio/x-wav"
    if head[4:8] == b"ftyp":
        return "image/avif" if head[8:12] in (b"avif", b"avis") else "video/mp4"
    if b"\x00" in head:
        return "application/octet-stream"
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError as exc:
        # A multi-byte character cut at the end of ``head`` is still text.
        if exc.start < len(head) - 4:
            return "application/octet-stream"
        text = head[: exc.start].decode("utf-8")
    stripped = text.lstrip()
    if whole is not None and stripped[:1] in ("{", "["):
        with contextlib.suppress(ValueError):
            if isinstance(json.loads(whole), dict | list):
                return "application/json"
    lowered = stripped[:256].lower()
    if lowered.startswith(("<!doctype html", "<html")):
        return "text/html"
    if lowered.startswith("<?xml"):
        return "text/xml"
    return "text/plain"


# -- requests and responses ------------------------------------------------------------


@dataclass(slots=True)
class _Request:
    method: str
    path: str
    query: list[tuple[str, str]]
    headers: Message
    body: bytes

    def header(self, name: str) -> str | None:
        return self.headers.get(name)

    def query_value(self, name: str) -> str | None:
        for key, value in self.query:
            if key == name:
                return value
        return None

    def query_list(self, name: str) -> list[str]:
        """Return a PHP-style array parameter: ``name[0]=..&name[1]=..`` or ``name[]=..``."""
        indexed: list[tuple[int, str]] = []
        pattern = re.compile(re.escape(name) + r"\[(\d*)\]$")
        for position, (key, value) in enumerate(self.query):
            match = pattern.match(key)
            if match:
                number = int(match.group(1)) if match.group(1) else 1_000_000 + position
                indexed.append((number, value))
        return [value for _, value in sorted(indexed)]


@dataclass(slots=True)
class _Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    #: Stream this file region instead of ``body``: (path, offset, length).
    file_region: tuple[Path, int, int] | None = None

    @classmethod
    def json(cls, status: int, payload: Any, headers: dict[str, str] | None = None) -> _Response:
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        return cls(
            status,
            {"Content-Type": "application/json; charset=UTF-8", **(headers or {})},
            body,
        )

    @classmethod
    def no_content(cls) -> _Response:
        # Real Appwrite sends Swoole's default type; the SDK then returns b''. A 204 that
        # claimed JSON would make the SDK fail to parse the empty body.
        return cls(204, {"Content-Type": "text/html; charset=UTF-8"})

    @classmethod
    def error(cls, error: AppwriteError) -> _Response:
        payload = {
            "message": error.message,
            "code": error.status,
            "type": error.type,
            "version": VERSION,
        }
        headers = {
            "Cache-Control": "no-cache, no-store, must-revalidate",
            "Expires": "0",
            "Pragma": "no-cache",
            **error.headers,
        }
        return cls.json(error.status, payload, headers)


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One request the server answered."""

    method: str
    path: str
    query: str
    status: int
    bytes_received: int
    bytes_sent: int
    headers: dict[str, str]


@dataclass(slots=True)
class InjectedFault:
    """An error the server returns instead of handling matching requests (see ``inject``)."""

    status: int
    type: str
    message: str | None
    method: str | None
    path_pattern: re.Pattern[str] | None
    times: int
    headers: dict[str, str]
    delay: float = 0.0
    #: Matching requests to let through before the fault starts.
    after: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.method and self.method.upper() != method:
            return False
        return not (self.path_pattern and not self.path_pattern.search(path))


# -- multipart -------------------------------------------------------------------------


@dataclass(slots=True)
class _Part:
    name: str
    filename: str | None
    data: bytes


def _parse_multipart(content_type: str, body: bytes) -> dict[str, _Part]:
    """Parse a ``multipart/form-data`` body, as requests builds it for the SDK."""
    message = Message()
    message["Content-Type"] = content_type
    boundary = message.get_param("boundary")
    if not boundary or not isinstance(boundary, str):
        return {}
    delimiter = b"--" + boundary.encode("latin-1")
    parts: dict[str, _Part] = {}
    for raw in body.split(delimiter)[1:]:
        if raw.startswith(b"--"):
            break
        raw = raw.removeprefix(b"\r\n").removesuffix(b"\r\n")
        head, separator, data = raw.partition(b"\r\n\r\n")
        if not separator:
            continue
        part_headers = Message()
        for line in head.decode("utf-8", "replace").split("\r\n"):
            key, _, value = line.partition(":")
            part_headers[key.strip()] = value.strip()
        disposition = part_headers.get("Content-Disposition", "")
        params = dict(_disposition_params(disposition))
        name = params.get("name")
        if name is None:
            continue
        parts[name] = _Part(name, params.get("filename"), data)
    return parts


def _disposition_params(value: str) -> Iterator[tuple[str, str]]:
    for match in re.finditer(r';\s*([\w*-]+)="((?:[^"\\]|\\.)*)"|;\s*([\w*-]+)=([^;]*)', value):
        if match.group(1):
            yield match.group(1).lower(), match.group(2).replace('\\"', '"')
        else:
            yield match.group(3).lower(), unquote(match.group(4).strip())


def _form_list(parts: dict[str, _Part], name: str) -> list[str] | None:
    """Return a PHP-style array form field (``name[0]``, ``name[1]``...), or None."""
    pattern = re.compile(re.escape(name) + r"\[(\d*)\]$")
    found = []
    for position, (key, part) in enumerate(parts.items()):
        match = pattern.match(key)
        if match:
            number = int(match.group(1)) if match.group(1) else 1_000_000 + position
            found.append((number, part.data.decode("utf-8", "replace")))
    if not found:
        return None
    return [value for _, value in sorted(found)]


# -- stored state ----------------------------------------------------------------------


@dataclass(slots=True)
class _Bucket:
    id: str
    sequence: int
    created_at: str
    updated_at: str
    permissions: list[str]
    file_security: bool
    name: str
    enabled: bool
    maximum_file_size: int
    allowed_file_extensions: list[str]
    compression: str
    encryption: bool
    antivirus: bool
    transformations: bool
    files: dict[str, _File] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "$id": self.id,
            "$createdAt": self.created_at,
            "$updatedAt": self.updated_at,
            "$permissions": list(self.permissions),
            "fileSecurity": self.file_security,
            "name": self.name,
            "enabled": self.enabled,
            "maximumFileSize": self.maximum_file_size,
            "allowedFileExtensions": list(self.allowed_file_extensions),
            "compression": self.compression,
            "encryption": self.encryption,
            "antivirus": self.antivirus,
            "transformations": self.transformations,
            # The server always reports 0 here on get and list.
            "totalSize": 0,
        }

    def attribute(self, name: str) -> Any:
        return {
            "$id": self.id,
            "$sequence": self.sequence,
            "$createdAt": self.created_at,
            "$updatedAt": self.updated_at,
            "name": self.name,
            "enabled": self.enabled,
            "fileSecurity": self.file_security,
            "maximumFileSize": self.maximum_file_size,
            "encryption": self.encryption,
            "antivirus": self.antivirus,
            "transformations": self.transformations,
            "stripMetadata": False,
        }[name]


@dataclass(slots=True)
class _File:
    id: str
    bucket_id: str
    sequence: int
    created_at: str
    updated_at: str
    permissions: list[str]
    name: str
    folder: str
    size: int
    chunks_total: int
    directory: Path
    chunks: set[int] = field(default_factory=set)
    signature: str = ""
    mime_type: str = ""

    @property
    def complete(self) -> bool:
        return len(self.chunks) >= self.chunks_total

    @property
    def data_path(self) -> Path:
        return self.directory / "data"

    def to_json(self) -> dict[str, Any]:
        return {
            "$id": self.id,
            "bucketId": self.bucket_id,
            "$createdAt": self.created_at,
            "$updatedAt": self.updated_at,
            "$permissions": list(self.permissions),
            "name": self.name,
            "folder": self.folder,
            "key": self.folder + self.name,
            "signature": self.signature,
            "mimeType": self.mime_type,
            "sizeOriginal": self.size,
            "sizeActual": self.size if self.complete else 0,
            "chunksTotal": self.chunks_total,
            "chunksUploaded": len(self.chunks),
            "encryption": False,
            "compression": "none",
        }

    def attribute(self, name: str) -> Any:
        return {
            "$id": self.id,
            "$sequence": self.sequence,
            "$createdAt": self.created_at,
            "$updatedAt": self.updated_at,
            "name": self.name,
            "folder": self.folder,
            "signature": self.signature,
            "mimeType": self.mime_type,
            "sizeOriginal": self.size,
            "chunksTotal": self.chunks_total,
            "chunksUploaded": len(self.chunks),
        }[name]


#: How long the JWT of a file token may live at most (``RESOURCE_TOKEN_MAX_AGE``: 10
#: years); the token's own ``expire`` is what normally ends it.
RESOURCE_TOKEN_MAX_AGE = 86400 * 365 * 10
_TOKEN_ATTRIBUTES = frozenset({"expire", "$id", "$createdAt", "$sequence"})


@dataclass(slots=True)
class _Token:
    """A file token (a document of Appwrite's ``resourceTokens`` collection)."""

    id: str
    sequence: int
    created_at: str
    bucket_id: str
    file_id: str
    bucket_sequence: int
    file_sequence: int
    expire: datetime | None
    secret: str
    accessed_at: str = ""

    @property
    def name(self) -> str:  # searched by the list route's ``search``
        return self.id

    def to_json(self) -> dict[str, Any]:
        return {
            "$id": self.id,
            "$createdAt": self.created_at,
            "resourceId": f"{self.bucket_id}:{self.file_id}",
            "resourceType": "files",
            # A token without expiry has none; the SDK model wants a string.
            "expire": _format_date(self.expire) if self.expire else "",
            "secret": self.secret,
            "accessedAt": self.accessed_at,
        }

    def attribute(self, name: str) -> Any:
        return {
            "$id": self.id,
            "$sequence": self.sequence,
            "$createdAt": self.created_at,
            "expire": _format_date(self.expire) if self.expire else None,
        }[name]


def _format_date(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _parse_date(value: Any, param: str) -> datetime:
    """Parse an ISO 8601 date as Appwrite's Datetime validator accepts it (UTC if naive)."""
    if not isinstance(value, str):
        raise _invalid_param(param, "Value must be valid date.")
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise _invalid_param(param, "Value must be valid date.") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


# -- permissions -----------------------------------------------------------------------


def _parse_permissions(
    values: list[str] | None, *, allowed: tuple[str, ...], write_expands_to: tuple[str, ...]
) -> list[str] | None:
    """Validate Appwrite permission strings and expand ``write``, as the server stores them."""
    if values is None:
        return None
    result: list[str] = []
    for value in values:
        match = _PERMISSION_PATTERN.match(value)
        if not match or (match.group(1) not in allowed and match.group(1) != "write"):
            raise _invalid_param(
                "permissions",
                f'Permission "{value}" is not allowed. Must be one of: {", ".join(allowed)}.',
            )
        action, role = match.groups()
        actions = write_expands_to if action == "write" else (action,)
        for expanded in actions:
            permission = f'{expanded}("{role}")'
            if permission not in result:
                result.append(permission)
    return result


def _grants(permissions: list[str], action: str, roles: tuple[str, ...]) -> bool:
    return any(f'{action}("{role}")' in permissions for role in roles)


# -- the application -------------------------------------------------------------------


class _Route:
    def __init__(self, method: str, pattern: str, handler: Callable[..., _Response]) -> None:
        self.method = method
        self.pattern = re.compile("^" + pattern + "$")
        self.handler = handler


class AppwriteTestServer:
    """An Appwrite Storage server on 127.0.0.1, in a background thread.

    ``project_id`` and ``api_key`` are what clients must send (a random key by default).
    ``storage_limit`` is ``_APP_STORAGE_LIMIT``: the default and the largest allowed
    ``maximumFileSize`` of a bucket. ``upload_lock_timeout`` is how long a chunk waits for
    the file's upload lock before the server answers 429 "File upload is busy".
    """

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

    def __enter__(self) -> AppwriteTestServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

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

    def now(self) -> datetime:
        """Return the server's current time (the real clock plus ``advance_time``)."""
        return datetime.fromtimestamp(time.time() + self._clock_offset, UTC)

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

    # -- buckets ----------------------------------------------------------------------

    def _list_buckets(self, request: _Request) -> _Response:
        self._authorize(request, "buckets.read")
        with self._state_lock:
            buckets = list(self._buckets.values())
        page, total = self._query(request, buckets, _BUCKET_ATTRIBUTES, "Bucket")
        return _Response.json(
            200, {"total": total, "buckets": [bucket.to_json() for bucket in page]}
        )

    def _bucket_fields(self, body: dict[str, Any], *, creating: bool) -> dict[str, Any]:
        name = body.get("name")
        if name is None:
            raise _not_optional("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise _invalid_param(
                "name",
                "Value must be a valid string and at least 1 chars and no longer than 128 chars",
            )
        fields: dict[str, Any] = {"name": name}
        permissions = body.get("permissions")
        if permissions is not None:
            if not isinstance(permissions, list) or not all(
                isinstance(p, str) for p in permissions
            ):
                raise _invalid_param("permissions", "Value must be a valid array")
            fields["permissions"] = _parse_permissions(
                permissions,
                allowed=("read", "create", "update", "delete"),
                write_expands_to=("create", "update", "delete"),
            )
        for flag in ("fileSecurity", "enabled", "encryption", "antivirus", "transformations"):
            if flag in body and body[flag] is not None:
                if not isinstance(body[flag], bool):
                    raise _invalid_param(flag, "Value must be a valid boolean")
                fields[flag] = body[flag]
        size = body.get("maximumFileSize")
        if size is not None:
            if (
                not isinstance(size, int)
                or isinstance(size, bool)
                or not 1 <= size <= self.storage_limit
            ):
                raise _invalid_param(
                    "maximumFileSize",
                    f"Value must be a valid range between 1 and {self.storage_limit:,}",
                )
            fields["maximumFileSize"] = size
        extensions = body.get("allowedFileExtensions")
        if extensions is not None:
            if (
                not isinstance(extensions, list)
                or len(extensions) > 100
                or not all(isinstance(e, str) and len(e) <= 64 for e in extensions)
            ):
                raise _invalid_param(
                    "allowedFileExtensions",
                    "Value must a valid array no longer than 100 items and Value must be a "
                    "valid string and at most 64 chars",
                )
            fields["allowedFileExtensions"] = list(extensions)
        compression = body.get("compression")
        if compression is not None:
            if compression not in ("none", "gzip", "zstd"):
                raise _invalid_param("compression", "Value must be one of (none, gzip, zstd)")
            fields["compression"] = compression
        return fields

    def _create_bucket(self, request: _Request) -> _Response:
        self._authorize(request, "buckets.write")
        body = self._json_body(request)
        bucket_id = body.get("bucketId")
        if bucket_id is None:
            raise _not_optional("bucketId")
        if not isinstance(bucket_id, str) or (
            bucket_id != "unique()" and not ID_PATTERN.match(bucket_id)
        ):
            raise _invalid_param("bucketId", _CUSTOM_ID_DESCRIPTION)
        fields = self._bucket_fields(body, creating=True)
        if bucket_id == "unique()":
            bucket_id = _unique_id()
        now = _now()
        bucket = _Bucket(
            id=bucket_id,
            sequence=self._next_sequence(),
            created_at=now,
            updated_at=now,
            permissions=fields.get("permissions") or [],
            file_security=fields.get("fileSecurity", False),
            name=fields["name"],
            enabled=fields.get("enabled", True),
            maximum_file_size=fields.get("maximumFileSize", self.storage_limit),
            allowed_file_extensions=fields.get("allowedFileExtensions", []),
            compression=fields.get("compression", "none"),
            encryption=fields.get("encryption", True),
            antivirus=fields.get("antivirus", True),
            transformations=fields.get("transformations", True),
        )
        with self._state_lock:
            if bucket_id in self._buckets:
                raise AppwriteError(409, "storage_bucket_already_exists")
            self._buckets[bucket_id] = bucket
        return _Response.json(201, bucket.to_json())

    def _get_bucket(self, request: _Request, bucket_id: str) -> _Response:
        caller_is_key = self._authorize(request, "buckets.read")
        self._check_uid("bucketId", bucket_id)
        return _Response.json(200, self._bucket(bucket_id, caller_is_key=caller_is_key).to_json())

    def _update_bucket(self, request: _Request, bucket_id: str) -> _Response:
        caller_is_key = self._authorize(request, "buckets.write")
        self._check_uid("bucketId", bucket_id)
        fields = self._bucket_fields(self._json_body(request), creating=False)
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        with self._state_lock:
            bucket.name = fields["name"]
            if "permissions" in fields:
                bucket.permissions = fields["permissions"] or []
            bucket.file_security = fields.get("fileSecurity", bucket.file_security)
            bucket.enabled = fields.get("enabled", bucket.enabled)
            bucket.maximum_file_size = fields.get("maximumFileSize", bucket.maximum_file_size)
            bucket.allowed_file_extensions = fields.get(
                "allowedFileExtensions", bucket.allowed_file_extensions
            )
            bucket.compression = fields.get("compression", bucket.compression)
            bucket.encryption = fields.get("encryption", bucket.encryption)
            bucket.antivirus = fields.get("antivirus", bucket.antivirus)
            bucket.transformations = fields.get("transformations", bucket.transformations)
            bucket.updated_at = _now()
        return _Response.json(200, bucket.to_json())

    def _delete_bucket(self, request: _Request, bucket_id: str) -> _Response:
        caller_is_key = self._authorize(request, "buckets.write")
        self._check_uid("bucketId", bucket_id)
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        with self._state_lock:
            self._buckets.pop(bucket_id, None)
        for stored in bucket.files.values():
            shutil.rmtree(stored.directory, ignore_errors=True)
        return _Response.no_content()

    # -- files ------------------------------------------------------------------------

    def _list_files(self, request: _Request, bucket_id: str) -> _Response:
        caller_is_key = self._authorize(request, "files.read")
        self._check_uid("bucketId", bucket_id)
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        with self._state_lock:
            files = list(bucket.files.values())
        if not caller_is_key and not _grants(bucket.permissions, "read", ("any", "guests")):
            # Guests see only the files their roles may read.
            files = [
                f
                for f in files
                if bucket.file_security and _grants(f.permissions, "read", ("any", "guests"))
            ]
        page, total = self._query(request, files, _FILE_ATTRIBUTES, "File")
        return _Response.json(200, {"total": total, "files": [f.to_json() for f in page]})

    def _get_file(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        caller_is_key = self._authorize(request, "files.read")
        self._check_uid("bucketId", bucket_id)
        self._check_uid("fileId", file_id)
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        stored = bucket.files.get(file_id)
        self._check_permission(bucket, stored, "read", caller_is_key=caller_is_key)
        return _Response.json(200, self._file(bucket, file_id).to_json())

    def _update_file(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        caller_is_key = self._authorize(request, "files.write")
        self._check_uid("bucketId", bucket_id)
        self._check_uid("fileId", file_id)
        body = self._json_body(request)
        name = body.get("name")
        if name is not None and (not isinstance(name, str) or len(name) > 255):
            raise _invalid_param("name", "Value must be a valid string and at most 255 chars")
        permissions = body.get("permissions")
        if permissions is not None and not isinstance(permissions, list):
            raise _invalid_param("permissions", "Value must be a valid array")
        parsed = _parse_permissions(
            permissions,
            allowed=("read", "update", "delete"),
            write_expands_to=("update", "delete"),
        )
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        stored = bucket.files.get(file_id)
        self._check_permission(bucket, stored, "update", caller_is_key=caller_is_key)
        stored = self._file(bucket, file_id)
        with self._state_lock:
            if name is not None:
                stored.name = name
            if parsed is not None:
                stored.permissions = parsed
            stored.updated_at = _now()
        return _Response.json(200, stored.to_json())

    def _delete_file(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        caller_is_key = self._authorize(request, "files.write")
        self._check_uid("bucketId", bucket_id)
        self._check_uid("fileId", file_id)
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        stored = bucket.files.get(file_id)
        self._check_permission(bucket, stored, "delete", caller_is_key=caller_is_key)
        with self._upload_lock(bucket_id, file_id):
            with self._state_lock:
                stored = bucket.files.pop(file_id, None)
            if stored is None:
                raise AppwriteError(404, "storage_file_not_found")
        # Deleting an incomplete upload aborts it: its chunks go too.
        shutil.rmtree(stored.directory, ignore_errors=True)
        return _Response.no_content()

    @contextlib.contextmanager
    def _upload_lock(self, bucket_id: str, file_id: str) -> Iterator[None]:
        with self._state_lock:
            lock = self._file_locks.setdefault((bucket_id, file_id), threading.Lock())
        if not lock.acquire(timeout=self.upload_lock_timeout):
            raise AppwriteError(429, "general_rate_limit_exceeded", headers={"Retry-After": "5"})
        try:
            yield
        finally:
            lock.release()

    def _create_file(self, request: _Request, bucket_id: str) -> _Response:
        caller_is_key = self._authorize(request, "files.write")
        self._check_uid("bucketId", bucket_id)
        content_type = request.header("Content-Type") or ""
        parts = (
            _parse_multipart(content_type, request.body)
            if content_type.startswith("multipart/form-data")
            else {}
        )
        form_id_part = parts.get("fileId")
        if form_id_part is None:
            raise _not_optional("fileId")
        form_id = form_id_part.data.decode("utf-8", "replace")
        if form_id != "unique()" and not ID_PATTERN.match(form_id):
            raise _invalid_param("fileId", _CUSTOM_ID_DESCRIPTION)
        permissions = _parse_permissions(
            _form_list(parts, "permissions"),
            allowed=("read", "update", "delete"),
            write_expands_to=("update", "delete"),
        )
        folder_part = parts.get("folder")
        folder = folder_part.data.decode("utf-8", "replace") if folder_part else ""
        if folder and not folder.endswith("/"):
            folder += "/"

        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        self._check_permission(bucket, None, "create", caller_is_key=caller_is_key)
        upload = parts.get("file")
        if upload is None or upload.filename is None:
            raise AppwriteError(400, "storage_file_empty")
        filename = upload.filename

        content_range = request.header("Content-Range")
        if content_range:
            match = _CONTENT_RANGE_PATTERN.match(content_range.strip())
            if not match:
                raise AppwriteError(400, "storage_invalid_content_range")
            start, end, size = (int(match.group(i)) for i in (2, 3, 4))
            if start > end or end > size:
                raise AppwriteError(400, "storage_invalid_content_range")
            file_id = request.header("X-Appwrite-Id") or form_id
            if not ID_PATTERN.match(file_id):
                raise AppwriteError(400, "storage_invalid_appwrite_id")
            chunks_total = max(1, math.ceil(size / CHUNK_SIZE))
            chunk = start // CHUNK_SIZE + 1
        else:
            file_id = _unique_id() if form_id == "unique()" else form_id
            size = len(upload.data)
            chunks_total = chunk = 1

        extension = filename.rsplit(".", 1)[-1].lower() if "." in filename else ""
        allowed = [e.lower() for e in bucket.allowed_file_extensions]
        if allowed and extension not in allowed:
            raise AppwriteError(400, "storage_file_type_unsupported")
        if size > bucket.maximum_file_size:
            raise AppwriteError(400, "storage_invalid_file_size")

        assert self._data_dir is not None
        directory = self._data_dir / bucket_id / file_id
        # Write the chunk outside the file's lock, so parallel chunks of one file do not
        # queue behind each other's disk writes; the lock only guards the bookkeeping.
        directory.mkdir(parents=True, exist_ok=True)
        incoming = directory / f"incoming-{secrets.token_hex(8)}"
        incoming.write_bytes(upload.data)
        try:
            with self._upload_lock(bucket_id, file_id):
                return self._store_chunk(
                    bucket,
                    file_id,
                    incoming,
                    chunk=chunk,
                    chunks_total=chunks_total,
                    size=size,
                    chunked=bool(content_range),
                    name=filename,
                    folder=folder,
                    permissions=permissions or [],
                    directory=directory,
                )
        finally:
            incoming.unlink(missing_ok=True)

    def _store_chunk(
        self,
        bucket: _Bucket,
        file_id: str,
        incoming: Path,
        *,
        chunk: int,
        chunks_total: int,
        size: int,
        chunked: bool,
        name: str,
        folder: str,
        permissions: list[str],
        directory: Path,
    ) -> _Response:
        with self._state_lock:
            stored = bucket.files.get(file_id)
        if stored is not None and stored.complete:
            if not chunked:
                raise AppwriteError(409, "storage_file_already_exists")
            return _Response.json(200, stored.to_json())
        if stored is None:
            now = _now()
            stored = _File(
                id=file_id,
                bucket_id=bucket.id,
                sequence=self._next_sequence(),
                created_at=now,
                updated_at=now,
                permissions=permissions,
                name=name,
                folder=folder,
                size=size,
                chunks_total=chunks_total,
                directory=directory,
            )
            with self._state_lock:
                if self._buckets.get(bucket.id) is not bucket:
                    raise AppwriteError(404, "storage_bucket_not_found")
                bucket.files[file_id] = stored
        elif not chunked:
            raise AppwriteError(409, "storage_file_already_exists")
        if chunk not in stored.chunks and 1 <= chunk <= stored.chunks_total:
            # Chunks are idempotent: a chunk number already stored is not written again.
            os.replace(incoming, directory / f"chunk-{chunk:06d}")
            stored.chunks.add(chunk)
        if stored.complete:
            self._assemble(stored)
        stored.updated_at = _now()
        return _Response.json(201, stored.to_json())

    @staticmethod
    def _assemble(stored: _File) -> None:
        """Join the chunks, then record the md5 signature and the sniffed MIME type."""
        digest = hashlib.md5(usedforsecurity=False)
        chunk_paths = sorted(stored.directory.glob("chunk-*"))
        head = b""
        with open(stored.data_path, "wb") as out:
            for chunk_path in chunk_paths:
                with open(chunk_path, "rb") as source:
                    while block := source.read(1024 * 1024):
                        if len(head) < 8192:
                            head += block[: 8192 - len(head)]
                        digest.update(block)
                        out.write(block)
                chunk_path.unlink()
        size = stored.data_path.stat().st_size
        whole = stored.data_path.read_bytes() if 0 < size <= 1024 * 1024 else None
        stored.size = size
        stored.signature = digest.hexdigest()
        stored.mime_type = sniff_mime_type(head, whole=whole)

    def _readable_file(
        self, request: _Request, bucket_id: str, file_id: str
    ) -> tuple[_Bucket, _File]:
        """Check access to a file's bytes, as view/download/preview do, file tokens included.

        A valid ``token`` for a file of this bucket stands in for the read permission;
        any token that is not valid for this very file is then refused (401), key or not.
        A malformed, unknown or expired token counts as no token at all.
        """
        caller_is_key = self._authorize(request, "files.read")
        self._check_uid("bucketId", bucket_id)
        self._check_uid("fileId", file_id)
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        resource = self._resource_token(request)
        is_token = resource is not None and resource.bucket_sequence == bucket.sequence
        stored = bucket.files.get(file_id)
        if not is_token:
            self._check_permission(bucket, stored, "read", caller_is_key=caller_is_key)
        if resource is not None and (stored is None or resource.file_sequence != stored.sequence):
            raise AppwriteError(401, "user_unauthorized")
        stored = self._file(bucket, file_id)
        if not stored.complete or not stored.data_path.exists():
            raise AppwriteError(
                404, "storage_file_not_found", f"File not found in {stored.data_path}"
            )
        if resource is not None:
            with self._state_lock:
                resource.accessed_at = _format_date(self.now())
        return bucket, stored

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

    # -- file tokens ------------------------------------------------------------------

    def _create_token(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        caller_is_key = self._authorize(request, "tokens.write")
        self._check_uid("bucketId", bucket_id)
        self._check_uid("fileId", file_id)
        body = self._json_body(request)
        expire = body.get("expire")
        moment = None
        if expire is not None:
            moment = _parse_date(expire, "expire")
            if moment <= self.now():
                raise _invalid_param("expire", "Value must be valid date in the future.")
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        stored = self._file(bucket, file_id)
        token_id = _unique_id()
        issued = int(self.now().timestamp())
        header = _b64url(json.dumps({"typ": "JWT", "alg": "HS256"}).encode())
        claims = {
            "tokenId": token_id,
            "resourceId": f"{bucket_id}:{file_id}",
            "resourceType": "files",
            "resourceInternalId": f"{bucket.sequence}:{stored.sequence}",
            "iat": issued,
            "exp": issued + RESOURCE_TOKEN_MAX_AGE,
        }
        payload = _b64url(json.dumps(claims, separators=(",", ":")).encode())
        signature = hmac.new(self._token_key, f"{header}.{payload}".encode(), hashlib.sha256)
        token = _Token(
            id=token_id,
            sequence=self._next_sequence(),
            created_at=_format_date(self.now()),
            bucket_id=bucket_id,
            file_id=file_id,
            bucket_sequence=bucket.sequence,
            file_sequence=stored.sequence,
            expire=moment,
            secret=f"{header}.{payload}.{_b64url(signature.digest())}",
        )
        with self._state_lock:
            self._tokens[token_id] = token
        return _Response.json(201, token.to_json())

    def _list_tokens(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        caller_is_key = self._authorize(request, "tokens.read")
        self._check_uid("bucketId", bucket_id)
        self._check_uid("fileId", file_id)
        bucket = self._bucket(bucket_id, caller_is_key=caller_is_key)
        self._file(bucket, file_id)
        with self._state_lock:
            tokens = [
                t for t in self._tokens.values() if (t.bucket_id, t.file_id) == (bucket_id, file_id)
            ]
        page, total = self._query(request, tokens, _TOKEN_ATTRIBUTES, "Token")
        return _Response.json(200, {"total": total, "tokens": [t.to_json() for t in page]})

    def _token(self, token_id: str) -> _Token:
        self._check_uid("tokenId", token_id)
        with self._state_lock:
            token = self._tokens.get(token_id)
        if token is None:
            raise AppwriteError(404, "token_not_found")
        return token

    def _get_token(self, request: _Request, token_id: str) -> _Response:
        self._authorize(request, "tokens.read")
        return _Response.json(200, self._token(token_id).to_json())

    def _update_token(self, request: _Request, token_id: str) -> _Response:
        self._authorize(request, "tokens.write")
        body = self._json_body(request)
        token = self._token(token_id)
        expire = body.get("expire")
        moment = None if expire is None else _parse_date(expire, "expire")
        if moment is not None and moment <= self.now():
            raise _invalid_param("expire", "Value must be valid date in the future.")
        with self._state_lock:
            token.expire = moment
        return _Response.json(200, token.to_json())

    def _delete_token(self, request: _Request, token_id: str) -> _Response:
        self._authorize(request, "tokens.write")
        token = self._token(token_id)
        with self._state_lock:
            self._tokens.pop(token.id, None)
        return _Response.no_content()

    def _serve(
        self, request: _Request, stored: _File, content_type: str, headers: dict[str, str]
    ) -> _Response:
        """Answer with the file's bytes, honouring ``Range`` exactly as Appwrite does."""
        size = stored.size
        headers = {"Content-Type": content_type, **headers}
        range_header = request.header("Range")
        if range_header:
            match = _RANGE_PATTERN.match(range_header.strip())
            if not match:
                raise AppwriteError(416, "storage_invalid_range")
            unit, start_text, end_text = match.groups()
            start = int(start_text)
            # Appwrite cuts an open range to MAX_OUTPUT_CHUNK_SIZE, and (unlike RFC 9110)
            # rejects a one-byte range and an end past the last byte.
            end = int(end_text) if end_text else min(start + MAX_OUTPUT_CHUNK_SIZE - 1, size - 1)
            if unit != "bytes" or start >= end or end >= size:
                raise AppwriteError(416, "storage_invalid_range")
            headers.update(
                {"Accept-Ranges": "bytes", "Content-Range": f"bytes {start}-{end}/{size}"}
            )
            return _Response(206, headers, file_region=(stored.data_path, start, end - start + 1))
        return _Response(200, headers, file_region=(stored.data_path, 0, size))

    def _download(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        _bucket, stored = self._readable_file(request, bucket_id, file_id)
        headers = {
            "Content-Disposition": f'attachment; filename="{stored.name}"',
            "Cache-Control": "private, max-age=3888000",
        }
        return self._serve(request, stored, stored.mime_type, headers)

    def _view(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        _bucket, stored = self._readable_file(request, bucket_id, file_id)
        content_type = (
            stored.mime_type
            if stored.mime_type in _VIEW_ALLOWED_TYPES
            or stored.mime_type.startswith(("video/", "audio/"))
            else "text/plain"
        )
        headers = {
            "Content-Disposition": f'inline; filename="{stored.name}"',
            "Cache-Control": "private, max-age=3888000",
            "X-Content-Type-Options": "nosniff",
            "Content-Security-Policy": "script-src none;",
        }
        return self._serve(request, stored, content_type, headers)

    def _preview(self, request: _Request, bucket_id: str, file_id: str) -> _Response:
        bucket, stored = self._readable_file(request, bucket_id, file_id)
        if not bucket.transformations:
            raise AppwriteError(403, "storage_bucket_transformations_disabled")
        if stored.mime_type.startswith("image/"):
            return _Response(
                200,
                {"Content-Type": stored.mime_type},
                file_region=(stored.data_path, 0, stored.size),
            )
        return _Response(200, {"Content-Type": "image/png"}, _ONE_PIXEL_PNG)

    # -- queries ----------------------------------------------------------------------

    def _query(
        self, request: _Request, items: list[Any], attributes: frozenset[str], kind: str
    ) -> tuple[list[Any], int]:
        """Apply ``queries[]``, ``search`` and ``total`` as Appwrite's list routes do."""
        raw_queries = request.query_list("queries")
        if len(raw_queries) > 100:
            raise _invalid_param("queries", "Value must a valid array no longer than 100 items")
        search = request.query_value("search")
        if search is not None and len(search) > 256:
            raise _invalid_param("search", "Value must be a valid string and at most 256 chars")
        total_flag = request.query_value("total")
        if total_flag not in (None, "true", "false", "1", "0"):
            raise _invalid_param("total", "Value must be a valid boolean")
        filters: list[dict[str, Any]] = []
        orders: list[tuple[str, bool]] = []
        limit: int | None = None
        offset: int | None = None
        cursor: tuple[str, str] | None = None
        for raw in raw_queries:
            query = self._parse_query(raw, attributes)
            method = query["method"]
            if method == "limit":
                if limit is None:
                    limit = self._int_value(query, "limit", 0, LIMIT_COUNT)
            elif method == "offset":
                if offset is None:
                    offset = self._int_value(query, "offset", 0, LIMIT_COUNT)
            elif method in ("cursorAfter", "cursorBefore"):
                values = query.get("values") or []
                if cursor is None and values:
                    cursor = (method, str(values[0]))
            elif method in ("orderAsc", "orderDesc"):
                orders.append((query.get("attribute") or "$sequence", method == "orderDesc"))
            elif method == "select":
                continue
            else:
                filters.append(query)

        selected = [item for item in items if all(self._matches(item, q) for q in filters)]
        if search:
            words = [w for w in re.split(r"[\s@+\-*()<>~\"]+", search.lower()) if w]
            if words:
                selected = [
                    item
                    for item in selected
                    if any(
                        token.startswith(word)
                        for word in words
                        for token in re.split(
                            r"[\s@+\-*()<>~\"._/]+", f"{item.id} {item.name}".lower()
                        )
                    )
                ]
        total = min(len(selected), LIMIT_COUNT) if total_flag not in ("false", "0") else 0

        def sort_key(item: Any) -> tuple[Any, ...]:
            parts = [
                _Descending(item.attribute(attr)) if descending else item.attribute(attr)
                for attr, descending in orders
            ]
            return (*parts, item.sequence)

        selected.sort(key=sort_key)
        if cursor is not None:
            direction, cursor_id = cursor
            anchor = next((item for item in items if item.id == cursor_id), None)
            if anchor is None:
                raise AppwriteError(
                    400,
                    "general_cursor_not_found",
                    f"{kind} '{cursor_id}' for the 'cursor' value not found.",
                )
            anchor_key = sort_key(anchor)
            if direction == "cursorAfter":
                selected = [item for item in selected if sort_key(item) > anchor_key]
            else:
                selected = [item for item in selected if sort_key(item) < anchor_key]
                page_size = DEFAULT_PAGE_SIZE if limit is None else limit
                selected = selected[max(0, len(selected) - page_size - (offset or 0)) :]
        start = offset or 0
        page_size = DEFAULT_PAGE_SIZE if limit is None else limit
        return selected[start : start + page_size], total

    @staticmethod
    def _parse_query(raw: str, attributes: frozenset[str]) -> dict[str, Any]:
        if len(raw) > 4096:
            raise _invalid_param("queries", "Invalid query: Query too long")
        try:
            query = json.loads(raw)
        except ValueError:
            query = None
        if not isinstance(query, dict) or not isinstance(query.get("method"), str):
            raise _invalid_param("queries", f"Invalid query: {raw}")
        method = query["method"]
        known = {
            "equal", "notEqual", "lessThan", "lessThanEqual", "greaterThan",
            "greaterThanEqual", "between", "notBetween", "isNull", "isNotNull", "contains",
            "notContains", "startsWith", "notStartsWith", "endsWith", "notEndsWith",
            "search", "notSearch", "select", "orderAsc", "orderDesc", "orderRandom",
            "cursorAfter", "cursorBefore", "limit", "offset", "and", "or",
        }  # fmt: skip
        if method not in known:
            raise _invalid_param("queries", f"Invalid query: Invalid query method: {method}")
        if method in ("and", "or"):
            for nested in query.get("values") or []:
                AppwriteTestServer._parse_query(json.dumps(nested), attributes)
            return query
        attribute = query.get("attribute")
        needs_attribute = method not in ("limit", "offset", "cursorAfter", "cursorBefore", "select")
        if needs_attribute and attribute is None and method in ("orderAsc", "orderDesc"):
            needs_attribute = False
        if needs_attribute and method != "orderRandom" and attribute not in attributes:
            raise _invalid_param(
                "queries", f"Invalid query: Attribute not found in schema: {attribute}"
            )
        values = query.get("values")
        if values is not None and not isinstance(values, list):
            raise _invalid_param("queries", "Invalid query: Values must be an array")
        return query

    @staticmethod
    def _int_value(query: dict[str, Any], what: str, low: int, high: int) -> int:
        values = query.get("values") or []
        value = values[0] if values else None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise _invalid_param(
                "queries",
                f"Invalid query: Invalid {what}: Value must be a valid range between "
                f"{low:,} and {high:,}",
            )
        return value

    def _matches(self, item: Any, query: dict[str, Any]) -> bool:
        method = query["method"]
        values = query.get("values") or []
        if method in ("and", "or"):
            results = (self._matches(item, nested) for nested in values)
            return all(results) if method == "and" else any(results)
        value = item.attribute(query["attribute"])
        text = str(value)
        checks: dict[str, Callable[[], bool]] = {
            "equal": lambda: value in values,
            "notEqual": lambda: value not in values,
            "lessThan": lambda: _compare(value, values, lambda a, b: a < b),
            "lessThanEqual": lambda: _compare(value, values, lambda a, b: a <= b),
            "greaterThan": lambda: _compare(value, values, lambda a, b: a > b),
            "greaterThanEqual": lambda: _compare(value, values, lambda a, b: a >= b),
            "between": lambda: len(values) == 2 and values[0] <= value <= values[1],
            "notBetween": lambda: len(values) == 2 and not values[0] <= value <= values[1],
            "isNull": lambda: value is None,
            "isNotNull": lambda: value is not None,
            "contains": lambda: any(str(v) in text for v in values),
            "notContains": lambda: not any(str(v) in text for v in values),
            "startsWith": lambda: any(text.startswith(str(v)) for v in values),
            "notStartsWith": lambda: not any(text.startswith(str(v)) for v in values),
            "endsWith": lambda: any(text.endswith(str(v)) for v in values),
            "notEndsWith": lambda: not any(text.endswith(str(v)) for v in values),
            "search": lambda: any(str(v).lower() in text.lower() for v in values),
            "notSearch": lambda: not any(str(v).lower() in text.lower() for v in values),
        }
        return checks[method]()


def _compare(value: Any, values: list[Any], op: Callable[[Any, Any], bool]) -> bool:
    try:
        return bool(values) and op(value, values[0])
    except TypeError:
        return False


class _Descending:
    """Invert the ordering of one sort-key component."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Descending) -> bool:
        return bool(other.value < self.value)

    def __gt__(self, other: _Descending) -> bool:
        return bool(other.value > self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and other.value == self.value

    def __hash__(self) -> int:
        return hash(self.value)


# -- HTTP transport ----------------------------------------------------------------------


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


# -- pytest ------------------------------------------------------------------------------

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def appwrite_server() -> Iterator[AppwriteTestServer]:
        """Yield a fresh Appwrite test server, stopped after the test."""
        with AppwriteTestServer() as server:
            yield server

else:  # pragma: no cover

    def appwrite_server() -> Iterator[AppwriteTestServer]:
        raise RuntimeError("the appwrite_server fixture needs pytest")


# -- standalone ----------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    """Run the test server in the foreground until Ctrl-C or SIGTERM.

    For a development server or a front end: it prints the settings that point a Django
    project at it. State lives in memory and a temporary directory, gone when it stops.
    """
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(
        prog="python -m dedupstore.testing.appwrite",
        description=(
            "Run dedupstore's own Appwrite Storage test server on 127.0.0.1 (an emulation "
            "for tests and development, not Appwrite)."
        ),
    )
    parser.add_argument("--port", type=int, default=8765, help="port on 127.0.0.1 (0: any)")
    parser.add_argument("--project-id", default="dedupstore-test")
    parser.add_argument("--api-key", default=None, help="default: a random key, printed")
    args = parser.parse_args(argv)

    stopping = threading.Event()

    def stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server = AppwriteTestServer(
            project_id=args.project_id, api_key=args.api_key, port=args.port
        ).start()
    except OSError as exc:
        print(f"cannot listen on 127.0.0.1:{args.port}: {exc}", file=sys.stderr)
        return 1
    try:
        print("dedupstore's Appwrite test server (an emulation, not Appwrite) is running:")
        print(f"APPWRITE_API_ENDPOINT = {server.endpoint!r}")
        print(f"APPWRITE_PROJECT_ID = {server.project_id!r}")
        print(f"APPWRITE_API_KEY = {server.api_key!r}")
        print("Press Ctrl-C to stop.", flush=True)
        while not stopping.wait(0.5):
            pass
    finally:
        server.stop()
    print("stopped", flush=True)
    return 0


if __name__ == "__main__":  # pragma: no cover - exercised through a subprocess
    raise SystemExit(main())
