"""The chunked-upload engine: content as bytes or a file path, chunks from reused buffers."""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import requests
from django.core.files.base import File

from dedupstore.utils import disk_path, is_seekable

from .errors import _RETRY_STATUSES, _error_body, _Failure

if TYPE_CHECKING:
    from .storage import AppwriteStorage

#: The SDK uploads anything larger in chunks of this size (``Client._chunk_size``).
SDK_CHUNK_SIZE = 5 * 1024 * 1024


class _ChunkBody:
    """A multipart body around one chunk, read in slices without copying the chunk.

    It has ``read`` and ``__len__``, so requests sends it with a Content-Length and
    http.client streams it in blocks.
    """

    def __init__(self, head: bytes, data: memoryview, tail: bytes) -> None:
        self._parts = [memoryview(head), data, memoryview(tail)]
        self._length = sum(len(part) for part in self._parts)

    def __len__(self) -> int:
        return self._length

    def read(self, size: int = -1) -> memoryview | bytes:
        while self._parts and not len(self._parts[0]):
            self._parts.pop(0)
        if not self._parts:
            return b""
        part = self._parts[0]
        count = len(part) if size is None or size < 0 else min(size, len(part))
        self._parts[0] = part[count:]
        return part[:count]


class _ChunkUploader:
    """Send the chunks of one file, each from a reused 5 MiB buffer."""

    def __init__(
        self,
        storage: AppwriteStorage,
        bucket: str,
        file_id: str,
        filename: str,
        path: str,
        size: int,
        name: str,
    ) -> None:
        self.storage = storage
        self.path = path
        self.size = size
        self.name = name
        self.file_id = file_id
        self.url = f"{storage.endpoint}/storage/buckets/{quote(bucket, safe='')}/files"
        headers = storage.client.get_headers()
        headers.pop("content-type", None)
        headers["X-Appwrite-Project"] = storage.project_id or ""
        self.boundary = secrets.token_hex(16)
        headers["Content-Type"] = f"multipart/form-data; boundary={self.boundary}"
        self.headers = headers
        # The same form fields the SDK sends with every chunk.
        fields = [("fileId", file_id)] + [
            (f"permissions[{i}]", permission)
            for i, permission in enumerate(storage.file_permissions or [])
        ]
        head = "".join(
            f'--{self.boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'
            for key, value in fields
        )
        # Encode the filename as urllib3 2 does for the SDK's uploads (HTML5 form style).
        escaped = filename.translate({10: "%0A", 13: "%0D", 34: "%22"})
        disposition = f'filename="{escaped}"'
        head += (
            f"--{self.boundary}\r\nContent-Disposition: form-data; "
            f'name="file"; {disposition}\r\n\r\n'
        )
        self.head = head.encode("utf-8")
        self.tail = f"\r\n--{self.boundary}--\r\n".encode()
        self._buffers: list[bytearray] = []
        self._buffers_lock = threading.Lock()

    def _buffer(self) -> bytearray:
        with self._buffers_lock:
            return self._buffers.pop() if self._buffers else bytearray(SDK_CHUNK_SIZE)

    def _release(self, buffer: bytearray) -> None:
        with self._buffers_lock:
            self._buffers.append(buffer)

    def close(self) -> None:
        with self._buffers_lock:
            self._buffers.clear()

    def send(self, index: int) -> dict[str, Any]:
        """POST chunk ``index``; retry it on 429/503 and dropped connections."""
        storage = self.storage
        start = index * SDK_CHUNK_SIZE
        end = min(start + SDK_CHUNK_SIZE, self.size)
        buffer = self._buffer()
        try:
            view = memoryview(buffer)[: end - start]
            with open(self.path, "rb", buffering=0) as source:
                source.seek(start)
                filled = 0
                while filled < len(view):
                    count = source.readinto(view[filled:])
                    if not count:
                        raise OSError(f"{self.path} shrank while it was being uploaded")
                    filled += count
            headers = {
                **self.headers,
                "content-range": f"bytes {start}-{end - 1}/{self.size}",
                "x-appwrite-id": self.file_id,
            }
            session = storage._session
            assert session is not None
            attempt = 0
            while True:
                body = _ChunkBody(self.head, view, self.tail)
                try:
                    # The stubs want read() -> bytes; http.client sends the memoryviews
                    # as they are, which is the point (no copy of the chunk).
                    response = session.post(
                        self.url,
                        data=body,  # type: ignore[arg-type]
                        headers=headers,
                        timeout=storage.timeout,
                    )
                except requests.ConnectionError as exc:
                    if attempt < storage.retry_attempts and not isinstance(exc, requests.Timeout):
                        storage._pause(attempt)
                        attempt += 1
                        continue
                    raise _Failure(exc, 0, None) from None
                except requests.RequestException as exc:
                    raise _Failure(exc, 0, None) from None
                if response.status_code in (200, 201):
                    return cast(dict[str, Any], response.json())
                error_type, message = _error_body(response)
                if response.status_code in _RETRY_STATUSES and attempt < storage.retry_attempts:
                    storage._pause(attempt)
                    attempt += 1
                    continue
                raise _Failure(message, response.status_code, error_type)
        finally:
            self._release(buffer)


class _Md5Job:
    """Compute a file's md5 in a thread while the SDK uploads it."""

    def __init__(self, path: str) -> None:
        self._path = path
        self._cancelled = False
        self._value: str | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="appwrite-md5", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            digest = hashlib.md5(usedforsecurity=False)
            buffer = bytearray(1024 * 1024)
            view = memoryview(buffer)
            with open(self._path, "rb", buffering=0) as source:
                while not self._cancelled and (count := source.readinto(buffer)):
                    digest.update(view[:count])
            self._value = digest.hexdigest()
        except BaseException as exc:  # pragma: no cover - reported by result()
            self._error = exc

    def cancel(self) -> None:
        self._cancelled = True
        self._thread.join()

    def result(self) -> str:
        self._thread.join()
        if self._error is not None:  # pragma: no cover
            raise self._error
        assert self._value is not None
        return self._value


class _UploadSource:
    """Present Django content for upload: small content as bytes, large as a file path.

    A ``TemporaryUploadedFile`` or a regular file on disk open only for reading is uploaded
    from its path (``dedupstore.utils.disk_path``); other large content is copied to a
    private temporary file first, in bounded pieces, so memory stays flat.
    """

    def __init__(self, content: File) -> None:
        self.content = content
        self.data: bytes | None = None
        self.path: str | None = None
        self._tempdir: str | None = None
        self.chunked = False

    def __enter__(self) -> _UploadSource:
        path = disk_path(self.content)
        if path is not None:
            size = os.stat(path).st_size
            if size > SDK_CHUNK_SIZE:
                self.path, self.chunked = path, True
            else:
                with open(path, "rb") as source:
                    self.data = source.read()
            return self
        if is_seekable(self.content):
            self.content.seek(0)
        head = bytearray()
        pieces = self.content.chunks(chunk_size=1024 * 1024)
        for piece in pieces:
            head += piece
            if len(head) > SDK_CHUNK_SIZE:
                self._spool(bytes(head), pieces)
                return self
        self.data = bytes(head)
        return self

    def _spool(self, head: bytes, rest: Iterator[bytes]) -> None:
        self._tempdir = tempfile.mkdtemp(prefix="dedupstore-appwrite-")
        self.path = os.path.join(self._tempdir, "upload")
        with open(self.path, "wb") as target:
            target.write(head)
            for piece in rest:
                target.write(piece)
        self.chunked = True

    def input_file(self, filename: str) -> Any:
        """Return the SDK ``InputFile`` of small content; its filename becomes ``name``."""
        from appwrite.input_file import InputFile

        assert self.data is not None
        return InputFile.from_bytes(self.data, filename)

    def __exit__(self, *exc_info: object) -> None:
        if self._tempdir is not None:
            shutil.rmtree(self._tempdir, ignore_errors=True)


def upload_chunks(
    storage: AppwriteStorage,
    bucket: str,
    file_id: str,
    original: str,
    source: _UploadSource,
    name: str,
) -> bool:
    """Upload a file over 5 MiB in Appwrite's chunk protocol; False if the ID is taken.

    The wire protocol is the SDK's ``Client.chunked_upload``: 5 MiB chunks, the first
    alone, the rest in parallel, each a multipart POST with ``content-range`` and
    ``x-appwrite-id``, with the SDK client's headers. The loop is ours because the
    SDK's builds two or three fresh 5 MiB buffers per chunk in 8 threads (glibc keeps
    them: +162 MiB RSS for 1 GiB, measured), cannot retry one failed chunk, and
    resumes wrongly after a parallel upload stopped half-way. Here each worker
    streams from one reused buffer, and a refused chunk is sent again (chunks are
    idempotent on the server).
    """
    from appwrite.exception import AppwriteException

    assert source.path is not None
    size = os.stat(source.path).st_size
    # The SDK's resume probe, used here only to see whether the ID is free. A missing
    # bucket or a busy answer goes up to _upload, which handles both.
    try:
        storage.sdk.get_file(bucket, file_id)
    except AppwriteException as exc:
        if exc.type != "storage_file_not_found":
            raise
    else:
        return False  # taken, complete or not, by another writer
    chunks = math.ceil(size / SDK_CHUNK_SIZE)
    uploader = _ChunkUploader(storage, bucket, file_id, original, source.path, size, name)
    checker = _Md5Job(source.path)
    created = False
    try:
        first = uploader.send(0)
        if int(first.get("chunksUploaded", 0)) != 1:
            # Another writer's chunks were there first: the ID is theirs.
            checker.cancel()
            return False
        created = True
        results = [first]
        if chunks > 1:
            with ThreadPoolExecutor(
                max_workers=storage.upload_workers, thread_name_prefix="appwrite-chunk"
            ) as pool:
                results += list(pool.map(uploader.send, range(1, chunks)))
    except BaseException:
        checker.cancel()
        if created:
            _discard(storage, bucket, file_id, name)
        raise
    finally:
        uploader.close()
    expected = checker.result()
    final = max(results, key=lambda r: int(r.get("chunksUploaded", 0)))
    if int(final.get("chunksUploaded", 0)) >= chunks and final.get("signature") == expected:
        return True
    # Another writer's chunks met ours under this ID: the file is nobody's.
    _discard(storage, bucket, file_id, name)
    return False


def _discard(storage: AppwriteStorage, bucket: str, file_id: str, name: str) -> None:
    """Delete a partial upload we started; never a complete file (it may be theirs).

    Between the check and the delete a concurrent writer in another process could
    complete the file: that needs two processes uploading the same new name at once,
    over 5 MiB, and a failure; within one process ``AppwriteStorage._id_lock`` rules it out.
    """
    with contextlib.suppress(Exception):
        stored = storage._call(lambda sdk: sdk.get_file(bucket, file_id), name, bucket=bucket)
        if stored.chunksuploaded < stored.chunkstotal:
            storage._call(lambda sdk: sdk.delete_file(bucket, file_id), name, bucket=bucket)
