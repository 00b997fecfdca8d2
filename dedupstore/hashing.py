"""Hash upload content once, streaming, with BLAKE3.

Each kind of content takes its fastest path that never reads the whole file into a new
buffer (fresh buffers per chunk cap hashing at 1.3-3 GB/s; see ``benchmarks/bench_core.py``):

* a file on disk (a ``TemporaryUploadedFile``, a ``File`` over a real file) is memory
  mapped, 32 MiB at a time so RSS stays bounded, and hashed by BLAKE3's threads;
* in-memory content (``ContentFile``, ``InMemoryUploadedFile``) is hashed through a
  ``memoryview`` of its buffer, without a copy;
* other seekable streams are read into one reused buffer;
* non-seekable streams (pipes, generator-backed readers) are hashed while they are spooled,
  to memory up to ``spool_max_size`` and then to a ``TemporaryUploadedFile``, so they are
  read exactly once and an inner ``FileSystemStorage`` can still move the spooled file.
"""

from __future__ import annotations

import contextlib
import io
import mmap
import os
import stat
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any, cast

from blake3 import blake3
from django.core.files.base import ContentFile, File
from django.core.files.uploadedfile import InMemoryUploadedFile, TemporaryUploadedFile

from dedupstore.utils import innermost_file, is_seekable, temporary_file_path

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "DEFAULT_SPOOL_MAX_SIZE",
    "HASH_KEY_CONTEXT",
    "PRECOMPUTED_ATTRIBUTE",
    "ContentHasher",
    "HashedContent",
    "PrecomputedDigest",
    "derive_hash_key",
    "resolve_hash_key",
]

#: Read size of the streaming paths. 1 MiB sits on the plateau measured by
#: ``benchmarks/bench_core.py`` (64 KiB .. 16 MiB all stream at about 3 GB/s here) while
#: keeping the per-save buffer small.
DEFAULT_CHUNK_SIZE = 1024 * 1024
#: Non-seekable content is spooled in memory up to this size, then to a temporary file.
DEFAULT_SPOOL_MAX_SIZE = 8 * 1024 * 1024
#: ``derive_key`` context: changing it changes every digest, so it is fixed forever.
HASH_KEY_CONTEXT = "dedupstore 2026-11-21 content digest key v1"
#: Below this size a single BLAKE3 thread beats spinning up the thread pool.
_MULTITHREAD_MIN_SIZE = 256 * 1024
#: Files are mapped this much at a time: mapped pages count in the process's RSS, so a
#: whole-file mapping of a 1 GiB upload would grow RSS by 1 GiB. 32 MiB windows keep 97 %
#: of the whole-file speed here (8.3 vs 8.6 GB/s, ``benchmarks/bench_core.py``).
MMAP_WINDOW = 32 * 1024 * 1024


#: The attribute under which ``dedupstore.uploadhandler`` leaves a digest on an upload.
PRECOMPUTED_ATTRIBUTE = "dedupstore_digest"


def derive_hash_key(secret: str | bytes) -> bytes:
    """Derive the 32-byte BLAKE3 key used for content digests from ``secret``."""
    material = secret.encode() if isinstance(secret, str) else secret
    return blake3(material, derive_key_context=HASH_KEY_CONTEXT).digest()


def resolve_hash_key(option: str | bytes | bool | None) -> bytes | None:
    """Return the key a ``hash_key`` option means: ``None`` takes ``SECRET_KEY``."""
    from django.conf import settings
    from django.core.exceptions import ImproperlyConfigured

    if option is False:
        return None
    if option is None:
        secret = getattr(settings, "SECRET_KEY", "")
        if not secret:
            raise ImproperlyConfigured(
                "dedupstore: digests are keyed by SECRET_KEY by default, but SECRET_KEY is "
                "empty; set it, set hash_key, or hash_key=False"
            )
        return derive_hash_key(secret)
    if option is True:
        raise ImproperlyConfigured("dedupstore: hash_key must be a secret, False or None")
    return derive_hash_key(option)


def _key_id(key: bytes | None) -> str:
    """Name a key without revealing it, so digests made with other keys are not mixed up."""
    return blake3(b"plain" if key is None else b"keyed:" + key).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class PrecomputedDigest:
    """A digest computed while an upload was received, and what it was computed over.

    It is only trusted while the content provably has not changed since: a temporary
    file must keep its inode, size and modification and change times; an in-memory
    upload must still hold the very buffer that was hashed.
    """

    key_id: str
    digest: str
    size: int
    file_stat: tuple[int, ...] | None = None
    buffer: bytes | None = None

    @classmethod
    def for_upload(cls, upload: File, *, key_id: str, digest: str, size: int) -> PrecomputedDigest:
        """Describe ``upload`` as it is now (called when the upload is complete)."""
        path = temporary_file_path(upload)
        if path is not None:
            # Buffered writes must reach the file before its identity is taken.
            if upload.file is not None:
                upload.file.flush()
            return cls(key_id, digest, size, file_stat=_stat_identity(path))
        raw = innermost_file(upload)
        if isinstance(raw, io.BytesIO):
            return cls(key_id, digest, size, buffer=raw.getvalue())
        raise TypeError(f"cannot describe an upload held in {type(raw).__name__}")

    def describes(self, content: File) -> bool:
        """Return True if ``content`` still holds exactly the bytes that were hashed."""
        if self.file_stat is not None:
            path = temporary_file_path(content)
            return path is not None and _stat_identity(path) == self.file_stat
        raw = innermost_file(content)
        return (
            self.buffer is not None
            and isinstance(raw, io.BytesIO)
            # A BytesIO shares its buffer until written to: any write makes a new one.
            and raw.getvalue() is self.buffer
        )


def _stat_identity(path: str) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


@dataclass(frozen=True, slots=True)
class HashedContent:
    """The digest of some content, and the object to hand to the inner storage."""

    digest: str
    size: int
    #: The original content object, rewound; or, for non-seekable content, the spooled
    #: copy (which the caller must ``close()`` after the inner write).
    content: File
    spooled: bool = False
    #: (size, mtime in ns) of the file on disk that was hashed, taken before it was read;
    #: None for content not read from a file on disk (or spooled: our own copy).
    identity: tuple[int, int] | None = None
    #: The plain digest an inner write must reproduce, when ``digest`` is a content key.
    plain_digest: str = ""

    def keyed(self, content_key: str) -> HashedContent:
        """Return this content under ``content_key``, keeping its plain digest to check."""
        # Positional, not dataclasses.replace(): a hit's path, and replace() costs 3x.
        return HashedContent(
            content_key, self.size, self.content, self.spooled, self.identity, self.digest
        )


class ContentHasher:
    """Compute keyed (or plain) BLAKE3 digests of Django ``File`` content."""

    def __init__(
        self,
        *,
        key: bytes | None,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        spool_max_size: int = DEFAULT_SPOOL_MAX_SIZE,
    ) -> None:
        if key is not None and len(key) != 32:
            raise ValueError("a BLAKE3 key must be exactly 32 bytes")
        if chunk_size <= 0:
            raise ValueError("chunk_size must be a positive number of bytes")
        self._key = key
        self.key_id = _key_id(key)
        self.chunk_size = chunk_size
        self.spool_max_size = spool_max_size

    def new(self, *, size_hint: int = 0) -> blake3:
        """Return a fresh hasher, multithreaded when ``size_hint`` makes it worthwhile."""
        threads = blake3.AUTO if size_hint >= _MULTITHREAD_MIN_SIZE else 1
        if self._key is None:
            return blake3(max_threads=threads)
        return blake3(key=self._key, max_threads=threads)

    def hash_bytes(self, data: bytes | bytearray | memoryview) -> str:
        """Return the hex digest of ``data``."""
        return self.new(size_hint=len(data)).update(data).hexdigest()

    def hash(self, content: File) -> HashedContent:
        """Hash ``content`` from its first byte and return it rewound for the inner write.

        An upload received through ``dedupstore.uploadhandler`` was hashed as it arrived:
        its digest is used as is while the upload provably holds the same bytes.
        """
        precomputed = getattr(content, PRECOMPUTED_ATTRIBUTE, None)
        if (
            isinstance(precomputed, PrecomputedDigest)
            and precomputed.key_id == self.key_id
            and precomputed.describes(content)
        ):
            stat = precomputed.file_stat
            identity = (stat[2], stat[3]) if stat is not None else None
            return self._rewound(content, precomputed.digest, precomputed.size, identity)

        chunks = getattr(content, "chunks", None)
        if getattr(chunks, "__func__", chunks) not in _STANDARD_CHUNKS and callable(chunks):
            # A chunks() of its own (a File subclass, or one set on the object) may
            # transform or check the data: what it yields is what Django's storages write,
            # so that is what is hashed and written. Called as they call it, with no size.
            return self._hash_while_spooling(content, chunks())

        path = temporary_file_path(content)
        if path is not None:
            # Writes still in the upload's buffer must reach the file we read by path.
            with contextlib.suppress(AttributeError, OSError, ValueError):
                if content.file is not None:
                    content.file.flush()
            with open(path, "rb") as handle:
                return self._rewound(content, *self._hash_fileno(handle, handle.fileno()))

        raw = innermost_file(content)
        if isinstance(raw, io.BytesIO):
            # getvalue() hands back the BytesIO's own buffer without copying it; a
            # getbuffer() view would first un-share the bytes a ContentFile was built
            # from, a full copy into fresh pages (27 ms for 64 MiB here).
            data = raw.getvalue()
            return self._rewound(content, self.hash_bytes(data), len(data))
        if isinstance(raw, io.StringIO):
            # Text (ContentFile("...")): the inner storage would encode it its own way (a
            # FileSystemStorage in the locale's encoding), so it is handed the very UTF-8
            # bytes that are hashed.
            data = raw.getvalue().encode()
            as_bytes = ContentFile(data, name=getattr(content, "name", None))
            return HashedContent(self.hash_bytes(data), len(data), as_bytes)

        if not is_seekable(raw):
            return self._hash_while_spooling(content, _read_chunks(raw, self.chunk_size))

        fileno = _regular_fileno(raw)
        if fileno is not None:
            return self._rewound(content, *self._hash_fileno(raw, fileno))
        return self._rewound(content, *self._hash_stream(raw))

    def _hash_fileno(self, raw: IO[Any], fileno: int) -> tuple[str, int, tuple[int, int] | None]:
        # Buffered writes must reach the file before it is mapped.
        if getattr(raw, "writable", lambda: False)():
            raw.flush()
        status = os.fstat(fileno)
        size = status.st_size
        hasher = self.new(size_hint=size)
        for offset in range(0, size, MMAP_WINDOW):
            length = min(MMAP_WINDOW, size - offset)
            with mmap.mmap(fileno, length, offset=offset, access=mmap.ACCESS_READ) as window:
                hasher.update(window)
        return hasher.hexdigest(), size, (size, status.st_mtime_ns)

    def _hash_stream(self, raw: IO[Any]) -> tuple[str, int]:
        raw.seek(0)
        hasher = self.new()
        size = 0
        for chunk in _read_chunks(raw, self.chunk_size):
            hasher.update(chunk)
            size += len(chunk)
        return hasher.hexdigest(), size

    def _hash_while_spooling(self, content: File, chunks: Iterable[object]) -> HashedContent:
        name = os.path.basename(getattr(content, "name", None) or "upload")
        hasher = self.new()
        memory = io.BytesIO()
        spool: IO[bytes] = memory
        upload: TemporaryUploadedFile | None = None
        size = 0
        try:
            for chunk in chunks:
                if not isinstance(chunk, bytes | bytearray | memoryview):
                    raise TypeError(
                        f"{type(content).__name__}.chunks() yielded {type(chunk).__name__}; "
                        "save() takes content whose chunks are bytes"
                    )
                if upload is None and size + len(chunk) > self.spool_max_size:
                    # Roll over to a TemporaryUploadedFile: an inner FileSystemStorage
                    # then moves it into place instead of copying it a second time.
                    upload = TemporaryUploadedFile(name, None, 0, None)
                    # Its file is the NamedTemporaryFile it always opens.
                    spool = cast(IO[bytes], upload.file)
                    spool.write(memory.getbuffer())
                    memory = io.BytesIO()
                hasher.update(chunk)
                spool.write(chunk)
                size += len(chunk)
        except BaseException:
            if upload is not None:
                upload.close()
            raise
        if upload is None:
            spooled: File = File(memory, name=name)
        else:
            spool.flush()
            upload.size = size
            spooled = upload
        spooled.seek(0)
        return HashedContent(hasher.hexdigest(), size, spooled, spooled=True)

    @staticmethod
    def _rewound(
        content: File, digest: str, size: int, identity: tuple[int, int] | None = None
    ) -> HashedContent:
        if is_seekable(content):
            content.seek(0)
        return HashedContent(digest, size, content, identity=identity)


#: ``chunks()`` methods that read the file as it is: content with another one is read
#: through its own.
_STANDARD_CHUNKS = frozenset({File.chunks, InMemoryUploadedFile.chunks})


def _regular_fileno(raw: object) -> int | None:
    fileno = getattr(raw, "fileno", None)
    if not callable(fileno):
        return None
    try:
        fd = fileno()
        return fd if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except (OSError, ValueError, io.UnsupportedOperation):
        return None


def _read_chunks(raw: IO[Any], chunk_size: int) -> Iterator[bytes | memoryview]:
    """Yield the rest of ``raw`` in chunks, reusing one buffer when ``readinto`` exists.

    A yielded memoryview is only valid until the next iteration.
    """
    readinto = getattr(raw, "readinto", None)
    if callable(readinto):
        buffer = bytearray(chunk_size)
        view = memoryview(buffer)
        while True:
            count = readinto(view)
            if not count:
                return
            yield view[:count]
    while True:
        chunk = raw.read(chunk_size)
        if not chunk:
            return
        if isinstance(chunk, str):
            raise TypeError(
                f"{type(raw).__name__} reads text, not bytes: what is hashed must be exactly "
                "what is written, so pass binary content (a file opened with 'rb', or "
                "ContentFile(text.encode()))"
            )
        yield chunk
