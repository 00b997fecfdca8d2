"""The file routes: list, get, update and delete files, and (chunked) uploads."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

from .base import _ServerBase
from .errors import _CUSTOM_ID_DESCRIPTION, AppwriteError, _invalid_param, _not_optional
from .mime import sniff_mime_type
from .models import (
    _FILE_ATTRIBUTES,
    ID_PATTERN,
    _Bucket,
    _File,
    _now,
    _unique_id,
)
from .permissions import _grants, _parse_permissions
from .wire import _form_list, _parse_multipart, _Request, _Response

#: The SDK's upload chunk, which the server uses to number chunks (``Client._chunk_size``).
CHUNK_SIZE = 5 * 1024 * 1024
_CONTENT_RANGE_PATTERN = re.compile(r"^(\w+) (\d+)-(\d+)/(\d+)$")


class _FileRoutes(_ServerBase):
    """``/storage/buckets/{bucketId}/files[/{fileId}]``, chunked uploads included."""

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
