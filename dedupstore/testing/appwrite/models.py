"""What the server stores: buckets, files, file tokens, and Appwrite's IDs and dates."""

from __future__ import annotations

import base64
import re
import secrets
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .errors import _invalid_param

ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,35}$")

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


def _now() -> str:
    """Return the current time the way Appwrite formats dates (``Y-m-d\\TH:i:s.vP``)."""
    now = datetime.now(UTC)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}+00:00"


def _unique_id() -> str:
    """Return an ID shaped like the server's ``ID::unique()``: 20 lower-case hex chars."""
    now = time.time()
    return f"{int(now):08x}{int(now * 1_000_000) % 1_000_000:05x}"[:13] + secrets.token_hex(4)[:7]


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
