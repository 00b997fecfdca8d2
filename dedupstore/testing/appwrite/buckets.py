"""The bucket routes: list, create, get, update and delete buckets."""

from __future__ import annotations

import shutil
from typing import Any

from .base import _ServerBase
from .errors import _CUSTOM_ID_DESCRIPTION, AppwriteError, _invalid_param, _not_optional
from .models import (
    _BUCKET_ATTRIBUTES,
    ID_PATTERN,
    _Bucket,
    _now,
    _unique_id,
)
from .permissions import _parse_permissions
from .wire import _Request, _Response


class _BucketRoutes(_ServerBase):
    """``/storage/buckets`` and ``/storage/buckets/{bucketId}``."""

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
