"""Serve a storage's objects in development, so the links ``url()`` gives resolve.

``serve`` is to a Django storage what ``django.views.static.serve`` is to a directory:
a view for ``DEBUG`` only, wired with :func:`dedupstore.urls.storage_urlpatterns`. It
streams (``FileResponse``, one block at a time), answers single ``Range`` requests (206,
416), conditional requests (``ETag``, ``Last-Modified``, 304) and never looks at the bytes
to pick a ``Content-Type``: the type comes from the name, or from ``?filename=`` for names
that have no extension (IPFS CIDs), as IPFS gateways do.
"""

from __future__ import annotations

import contextlib
import mimetypes
import posixpath
import re
from collections.abc import Callable
from datetime import datetime
from typing import IO, Any

from blake3 import blake3
from django.conf import settings
from django.core.exceptions import BadRequest, SuspiciousFileOperation
from django.core.files.storage import Storage, storages
from django.core.files.utils import validate_file_name
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.http.response import HttpResponseBase
from django.utils.cache import get_conditional_response
from django.utils.http import content_disposition_header, http_date, parse_http_date_safe

from dedupstore.exceptions import IndexUnavailable
from dedupstore.protocol import backend_of
from dedupstore.storage import DedupStorage

__all__ = ["StorageArgument", "serve"]

#: What ``serve`` accepts as its storage: an instance, a ``STORAGES`` alias, or a callable
#: returning a storage (as ``FileField(storage=...)`` takes).
StorageArgument = Storage | str | Callable[[], Storage]

#: Bytes read from the storage per block sent: large enough for few calls, small enough
#: that a multi-GiB file costs no more memory than this.
BLOCK_SIZE = 256 * 1024
#: Content-addressed names never change what they hold: a year, and ``immutable``.
IMMUTABLE_CACHE = "public, max-age=31536000, immutable"
#: Other names may be deleted and saved again with other content: always revalidate.
REVALIDATE_CACHE = "no-cache"
#: Types a browser would run as a document of the serving origin (scripts inside): they are
#: served under a sandbox, so an upload cannot act as the development site.
ACTIVE_TYPES = frozenset(
    {
        "text/html",
        "application/xhtml+xml",
        "image/svg+xml",
        "text/xml",
        "application/xml",
        "application/xslt+xml",
    }
)
#: What compressed encodings are served as, rather than as their inner type with a
#: ``Content-Encoding`` a browser would undo (the same mapping as ``FileResponse``).
ENCODED_TYPES = {
    "br": "application/x-brotli",
    "bzip2": "application/x-bzip",
    "compress": "application/x-compress",
    "gzip": "application/gzip",
    "xz": "application/x-xz",
}
_SINGLE_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_CONTROL_CHARACTERS = re.compile(r"[\x00-\x1f\x7f]")


def serve(
    request: HttpRequest,
    path: str,
    storage: StorageArgument = "default",
    *,
    insecure: bool = False,
) -> HttpResponseBase:
    """Return the object ``path`` of ``storage``: streamed, ranged, conditional.

    Only with ``DEBUG = True`` (or ``insecure=True``), like ``django.views.static.serve``:
    it is a development aid, not a way to serve user uploads in production.

    ``?filename=<name>`` gives the ``Content-Type`` (guessed from its extension) and a
    ``Content-Disposition: inline`` with that name; ``&download=true`` makes it an
    attachment. A path that is absolute, climbs with ``..``, holds a NUL byte or is not in
    normal form raises ``SuspiciousFileOperation`` (Django answers 400); a name the storage
    does not hold gives 404.
    """
    if not settings.DEBUG and not insecure:
        raise Http404("dedupstore.views.serve serves files only when DEBUG is on")
    if request.method not in ("GET", "HEAD"):
        return HttpResponseNotAllowed(["GET", "HEAD"])
    if not path:
        raise Http404("no file name given")
    _validate_path(path)
    backend = _resolve_storage(storage)
    download_name = _download_name(request)

    try:
        file = backend.open(path, "rb")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError) as exc:
        raise Http404(f"{path!r} is not in the storage") from exc
    except ValueError as exc:
        # A name the storage cannot hold at all (an IPFS name that is no CID, say) is
        # not found here either; SuspiciousFileOperation is not a ValueError and stays 400.
        raise Http404(f"{path!r} is not a name of this storage: {exc}") from exc
    try:
        return _respond(request, backend, path, file, download_name)
    except BaseException:
        file.close()
        raise


def _respond(
    request: HttpRequest, backend: Storage, path: str, file: Any, download_name: str | None
) -> HttpResponseBase:
    """Build the response for the open ``file``; close it unless a body streams it."""
    try:
        size = int(file.size)
    except (AttributeError, OSError, TypeError):
        size = backend.size(path)  # a stream that cannot tell its own size
    content_addressed = _is_content_addressed(backend)
    modified = _modified_time(backend, path)
    etag = _etag(backend, path, content_addressed, size, modified)
    last_modified = int(modified.timestamp()) if modified is not None else None

    headers = {
        "Content-Type": _content_type(download_name or path),
        "Accept-Ranges": "bytes",
        "Cache-Control": IMMUTABLE_CACHE if content_addressed else REVALIDATE_CACHE,
        "X-Content-Type-Options": "nosniff",
    }
    if etag:
        headers["ETag"] = etag
    if last_modified is not None:
        headers["Last-Modified"] = http_date(last_modified)
    if headers["Content-Type"] in ACTIVE_TYPES:
        headers["Content-Security-Policy"] = "sandbox"
    if download_name:
        as_attachment = request.GET.get("download", "").lower() in ("1", "true", "yes")
        disposition = content_disposition_header(as_attachment, download_name)
        if disposition:
            headers["Content-Disposition"] = disposition

    conditional = get_conditional_response(
        request, etag=etag, last_modified=last_modified, response=None
    )
    if conditional is not None:
        # 304 Not Modified or 412 Precondition Failed: no body.
        file.close()
        keep = ("ETag", "Last-Modified", "Cache-Control", "X-Content-Type-Options")
        for header in keep:
            if header in headers:
                conditional.headers[header] = headers[header]
        return conditional

    start, length, status = 0, size, 200
    wanted = _requested_range(request, size, etag, last_modified)
    if isinstance(wanted, str):  # "unsatisfiable"
        file.close()
        refused = HttpResponse(status=416)
        refused.headers["Content-Range"] = f"bytes */{size}"
        refused.headers["X-Content-Type-Options"] = "nosniff"
        return refused
    if wanted is not None:
        start, end = wanted
        length, status = end - start + 1, 206
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"

    response: HttpResponse | FileResponse
    if request.method == "HEAD":
        file.close()
        response = HttpResponse(status=status)
    else:
        body = _BoundedReader(file, start, length)
        streamed = FileResponse(body, status=status, content_type=headers["Content-Type"])
        streamed.block_size = BLOCK_SIZE
        response = streamed
    for header, value in headers.items():
        response.headers[header] = value
    response.headers["Content-Length"] = str(length)
    return response


def _validate_path(path: str) -> None:
    """Refuse names that leave the storage or alias another name."""
    if "\x00" in path:
        raise SuspiciousFileOperation(f"File name {path!r} holds a NUL byte")
    validate_file_name(path, allow_relative_path=True)
    # "a//b" and "a/./b" are other spellings of "a/b": serve names in one spelling only,
    # as DedupStorage keys its index by name.
    if posixpath.normpath(path) != path or path.startswith("/"):
        raise SuspiciousFileOperation(f"File name {path!r} is not in normal form")


def _resolve_storage(storage: StorageArgument) -> Storage:
    if isinstance(storage, Storage):
        return storage
    if isinstance(storage, str):
        return storages[storage]
    if callable(storage):
        built = storage()
        if isinstance(built, Storage):
            return built
    raise TypeError(
        "serve() needs a storage: a Storage instance, a STORAGES alias or a callable "
        f"returning a Storage, not {storage!r}"
    )


def _download_name(request: HttpRequest) -> str | None:
    """Return the file name ``?filename=`` asks for, reduced to a plain base name."""
    requested = request.GET.get("filename")
    if requested is None:
        return None
    name = posixpath.basename(requested.replace("\\", "/"))
    if not name or name in (".", "..") or _CONTROL_CHARACTERS.search(name):
        raise BadRequest(f"?filename={requested!r} is not a usable file name")
    return name


def _content_type(name: str) -> str:
    """Guess the type from the name's extension only; never from the bytes."""
    content_type, encoding = mimetypes.guess_type(posixpath.basename(name), strict=False)
    if encoding:
        return ENCODED_TYPES.get(encoding, "application/octet-stream")
    return content_type or "application/octet-stream"


def _is_content_addressed(storage: Storage) -> bool:
    """Whether names are derived from the content (IPFS), directly or under a wrapper."""
    if isinstance(storage, DedupStorage):
        return storage.backend.content_addressed
    return backend_of(storage).content_addressed


def _etag(
    storage: Storage, name: str, content_addressed: bool, size: int, modified: datetime | None
) -> str | None:
    """Return a strong ETag when the content is known by identity, else a weak one.

    A content-addressed name is its content's identity. A name a DedupStorage counts has
    the digest its index recorded: the ETag derives from it (not the digest itself, which
    stays inside the index). Otherwise the size and modification time stand in.
    """
    identity = "name:" + name if content_addressed else _recorded_digest(storage, name)
    if identity is not None:
        return '"' + blake3(("dedupstore etag\n" + identity).encode()).hexdigest()[:32] + '"'
    if modified is None:
        return None
    return f'W/"{size:x}-{int(modified.timestamp() * 1_000_000):x}"'


def _recorded_digest(storage: Storage, name: str) -> str | None:
    if not isinstance(storage, DedupStorage):
        return None
    try:
        record = storage.index.lookup(name)
    except IndexUnavailable:
        # Reads work while the index is down: fall back to a weak ETag.
        return None
    if record is None or record.state != "live":
        return None
    return "digest:" + str(record.digest)


def _modified_time(storage: Storage, name: str) -> datetime | None:
    with contextlib.suppress(NotImplementedError, OSError, AttributeError):
        return storage.get_modified_time(name)
    return None


def _requested_range(
    request: HttpRequest, size: int, etag: str | None, last_modified: int | None
) -> tuple[int, int] | str | None:
    """Return ``(first, last)`` of a satisfiable single range, "unsatisfiable", or None.

    None means "send the whole file": no ``Range``, a malformed one, several ranges (the
    server may ignore ``Range``; one full answer beats a multipart body nobody needs
    here), or an ``If-Range`` that no longer matches.
    """
    header = request.headers.get("Range")
    if not header or request.method not in ("GET", "HEAD"):
        return None
    if_range = request.headers.get("If-Range")
    if if_range is not None and not _if_range_matches(if_range, etag, last_modified):
        return None
    match = _SINGLE_RANGE.match(header.strip().replace(" ", ""))
    if match is None:
        return None
    first_text, last_text = match.groups()
    if not first_text and not last_text:
        return None
    if not first_text:
        # bytes=-N: the last N bytes.
        suffix = int(last_text)
        if suffix == 0 or size == 0:
            return "unsatisfiable"
        return max(size - suffix, 0), size - 1
    first = int(first_text)
    last = int(last_text) if last_text else size - 1
    if last < first:
        return None
    if first >= size:
        return "unsatisfiable"
    return first, min(last, size - 1)


def _if_range_matches(if_range: str, etag: str | None, last_modified: int | None) -> bool:
    value = if_range.strip()
    if value.startswith(('"', "W/")):
        # A weak ETag never matches If-Range (RFC 9110 13.1.5).
        return etag is not None and not etag.startswith("W/") and value == etag
    date = parse_http_date_safe(value)
    return date is not None and last_modified is not None and date == last_modified


class _BoundedReader:
    """Read ``length`` bytes of ``file`` from ``start``, one block at a time.

    ``FileResponse`` (and a WSGI server's ``wsgi.file_wrapper``) call ``read(block)`` until
    it returns nothing, so at most one block is in memory. A stream that cannot seek is
    read up to ``start`` and the bytes dropped.
    """

    def __init__(self, file: IO[bytes], start: int, length: int) -> None:
        self._file = file
        self._remaining = length
        if start:
            seekable = getattr(file, "seekable", None)
            if seekable is not None and seekable():
                file.seek(start)
            else:
                skip = start
                while skip:
                    dropped = file.read(min(skip, BLOCK_SIZE))
                    if not dropped:
                        break
                    skip -= len(dropped)
        elif getattr(file, "seekable", lambda: False)():
            file.seek(0)

    def read(self, size: int = -1) -> bytes:
        if self._remaining <= 0:
            return b""
        wanted = self._remaining if size is None or size < 0 else min(size, self._remaining)
        data = self._file.read(wanted)
        self._remaining -= len(data)
        return data

    def close(self) -> None:
        self._file.close()
