"""The routes that send a file's bytes: download, view and preview, with ``Range``."""

from __future__ import annotations

import re

from .base import _ServerBase
from .errors import AppwriteError
from .mime import _ONE_PIXEL_PNG, _VIEW_ALLOWED_TYPES
from .models import (
    _Bucket,
    _File,
    _format_date,
)
from .wire import _Request, _Response

#: An open-ended ``Range`` is cut to this many bytes, as the real server does.
MAX_OUTPUT_CHUNK_SIZE = 10 * 1024 * 1024
_RANGE_PATTERN = re.compile(r"^(\w+)=(\d+)-(\d*)$")


class _DownloadRoutes(_ServerBase):
    """``/download``, ``/view`` and ``/preview`` of a file, file tokens honoured."""

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
