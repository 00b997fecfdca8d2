"""``AppwriteStorage``: the raw Django storage over Appwrite Storage buckets."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import threading
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import IO, Any, TypeVar
from urllib.parse import quote, urlencode, urlsplit

import requests
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.core.files.utils import validate_file_name
from django.utils import timezone
from django.utils.deconstruct import deconstructible

from dedupstore.protocol import DedupBackend
from dedupstore.utils import prepare_save

from .calls import call_sdk, pause, translate_error
from .errors import (
    _RETRY_STATUSES,
    AppwriteConflict,
    AppwriteStorageError,
    _cause,
    _error_body,
    _Failure,
)
from .ids import ID_MAX_LENGTH, bucket_id_for, file_id_for
from .options import APPWRITE_OPTIONS
from .reader import READ_BUFFER_SIZE, AppwriteFile, _RangedReader
from .tokens import file_token, forget_token
from .transport import _client_with_transport, _Transport
from .upload import _UploadSource, upload_chunks

T = TypeVar("T")


#: Stands in a pickle for an API key read from the APPWRITE_API_KEY setting.
_KEY_FROM_SETTINGS = "<APPWRITE_API_KEY>"


@deconstructible(path="dedupstore.backends.appwrite.AppwriteStorage")
class AppwriteStorage(DedupBackend, Storage):
    """Store files in Appwrite Storage buckets.

    Every option is a keyword argument (so ``STORAGES[...]["OPTIONS"]`` works) with a
    setting as fallback: ``api_key`` (``APPWRITE_API_KEY``), ``project_id``
    (``APPWRITE_PROJECT_ID``), ``bucket_id`` (``APPWRITE_BUCKET_ID``), ``endpoint``
    (``APPWRITE_API_ENDPOINT``), ``timeout`` (``APPWRITE_TIMEOUT``, seconds per request),
    ``bucket_permissions`` and ``file_permissions`` (``APPWRITE_BUCKET_PERMISSIONS``,
    ``APPWRITE_FILE_PERMISSIONS``: Appwrite permission strings such as
    ``'read("any")'``), ``public_url`` (``APPWRITE_PUBLIC_URL``, the base of
    ``url()`` when files are served from a custom domain), ``url_tokens``
    (``APPWRITE_URL_TOKENS``, default True: ``url()`` carries an Appwrite file token, so
    links to files in private buckets open; False gives plain links for public buckets),
    ``url_expire`` (``APPWRITE_URL_EXPIRE``, seconds a token lives, default 3600) and
    ``url_cache`` (``APPWRITE_URL_CACHE``, the Django cache alias that keeps tokens
    between renders, default ``"default"``).
    """

    #: The options, each with its setting and default (see ``.options``).
    options = APPWRITE_OPTIONS
    #: How often a 429 "busy" or 503 answer, or a taken file ID, is retried.
    retry_attempts = 6
    #: First backoff pause in seconds; it doubles per attempt, up to ``max_retry_wait``.
    retry_backoff = 0.25
    max_retry_wait = 5.0
    #: Chunks of one large file in flight at once (the SDK sends 8), 5 MiB of memory each.
    upload_workers = 8

    def __init__(self, **options: Any) -> None:
        cls = type(self).__name__
        unknown = APPWRITE_OPTIONS.unknown(options)
        if unknown:
            raise ImproperlyConfigured(
                f"{cls} got unknown option(s) {', '.join(unknown)}; "
                f"valid options are: {', '.join(APPWRITE_OPTIONS.names)}"
            )
        resolved = APPWRITE_OPTIONS.resolve(options, cls)
        self.api_key: str | None = resolved["api_key"]
        self.project_id: str | None = resolved["project_id"]
        self.bucket_id: str | None = resolved["bucket_id"]
        self.endpoint: str = resolved["endpoint"]
        self.timeout: float | None = resolved["timeout"]
        self.bucket_permissions: list[str] | None = resolved["bucket_permissions"]
        self.file_permissions: list[str] | None = resolved["file_permissions"]
        self.public_url: str | None = resolved["public_url"]
        self.url_tokens: bool = resolved["url_tokens"]
        self.url_expire: int = resolved["url_expire"]
        self.url_cache: str = resolved["url_cache"]
        self._lock = threading.Lock()
        # Buckets a lookup found missing: the next upload creates them before sending.
        self._missing_buckets: set[str] = set()
        self._free_hint = threading.local()
        self._client: Any = None
        self._session: requests.Session | None = None
        self._client_pid = 0
        self._id_locks: dict[tuple[str, str], list[Any]] = {}
        # deconstruct() feeds migrations: the key must never be written into one.
        args, kwargs = getattr(self, "_constructor_args", ((), {}))
        self._constructor_args = (args, APPWRITE_OPTIONS.redact_constructor_args(kwargs))

    # -- the SDK client ------------------------------------------------------------

    @property
    def client(self) -> Any:
        """Return the SDK client, building it on first use (and again after a fork)."""
        pid = os.getpid()
        if self._client is None or self._client_pid != pid:
            with self._lock:
                if self._client is None or self._client_pid != pid:
                    self._client = self._build_client()
                    self._client_pid = pid
        return self._client

    def _build_client(self) -> Any:
        cls = type(self).__name__
        missing = [
            f"{option} ({APPWRITE_OPTIONS[option].settings[0]})"
            for option in ("api_key", "project_id")
            if not getattr(self, option)
        ]
        if missing:
            raise ImproperlyConfigured(f"{cls}: set {' and '.join(missing)} to use Appwrite")
        session = requests.Session()
        # One pooled connection per SDK upload worker (it runs 8) plus a few readers.
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=16)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._session = session
        client = _client_with_transport(_Transport(session, self.timeout))
        client.set_endpoint(self.endpoint)
        client.set_project(self.project_id)
        client.set_key(self.api_key)
        return client

    @property
    def sdk(self) -> Any:
        """Return the SDK's ``Storage`` service over our client."""
        from appwrite.services.storage import Storage as SDKStorage

        return SDKStorage(self.client)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for transient in (
            "_lock",
            "_client",
            "_session",
            "_id_locks",
            "_missing_buckets",
            "_free_hint",
        ):
            state.pop(transient, None)
        # An API key that APPWRITE_API_KEY holds is read again on unpickling, not pickled.
        from_settings = getattr(settings, "APPWRITE_API_KEY", None)
        if isinstance(from_settings, str) and self.api_key == from_settings.strip():
            state["api_key"] = _KEY_FROM_SETTINGS
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        if state.get("api_key") == _KEY_FROM_SETTINGS:
            state = dict(state, api_key=str(getattr(settings, "APPWRITE_API_KEY", "")).strip())
        self.__dict__.update(state)
        self._lock = threading.Lock()
        self._client = None
        self._session = None
        self._client_pid = 0
        self._id_locks = {}
        self._missing_buckets = set()
        self._free_hint = threading.local()

    # -- errors --------------------------------------------------------------------

    def _translate(self, exc: Exception, name: str, *, bucket: str | None = None) -> Exception:
        """Turn an ``AppwriteException`` into the exception a Django caller expects."""
        return translate_error(self, exc, name, bucket=bucket)

    def _pause(self, attempt: int) -> None:
        pause(self, attempt)

    def _call(self, operation: Callable[[Any], T], name: str, *, bucket: str | None = None) -> T:
        """Run one SDK call, retrying 429 "busy" and 503 answers with backoff."""
        return call_sdk(self, operation, name, bucket=bucket)

    # -- names ---------------------------------------------------------------------

    def _validate_name(self, name: str) -> None:
        if not isinstance(name, str) or not name:
            raise SuspiciousFileOperation(f"Invalid file name: {name!r}")
        validate_file_name(name, allow_relative_path=True)
        if name.endswith("/") or "\x00" in name:
            raise SuspiciousFileOperation(f"Invalid file name: {name!r}")

    def locate(self, name: str) -> tuple[str, str]:
        """Return the ``(bucket ID, file ID)`` that a Django name maps to."""
        self._validate_name(name)
        directory, _, file_name = name.replace("\\", "/").rpartition("/")
        folder = directory.rstrip("/").rpartition("/")[2]
        if folder:
            bucket = bucket_id_for(folder)
        elif self.bucket_id:
            bucket = self.bucket_id
        else:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: {name!r} has no directory to name its bucket; set "
                "bucket_id (APPWRITE_BUCKET_ID) for such names"
            )
        return bucket, file_id_for(file_name)

    def _stored_name(self, bucket: str, file_id: str) -> str:
        return f"{bucket}/{file_id}"

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        """Return a free ``<bucket>/<fileId>`` name for ``name``, within ``max_length``."""
        bucket, file_id = self.locate(name)
        limit = len(bucket) + 1 + ID_MAX_LENGTH
        return super().get_available_name(
            self._stored_name(bucket, file_id),
            max_length=limit if max_length is None else min(max_length, limit),
        )

    # -- what DedupStorage asks (dedupstore.protocol) -------------------------------

    def dedupstore_stored_name(self, name: str) -> str:
        """Return ``<bucketId>/<fileId>``, the name ``name`` is stored under when free."""
        return self._stored_name(*self.locate(name))

    def dedupstore_reuse_scope(self, name: str) -> str:
        """Return the bucket ``name`` maps to: a reused file never comes from another.

        Buckets are Appwrite's permission boundary, so content reuse stays inside one.
        """
        return self.locate(name)[0]

    def dedupstore_location(self) -> str:
        """Return the normalised endpoint and the project: where the files live.

        No key, and no default bucket: every stored name carries its bucket, so storages
        with different ``bucket_id`` over one project share one index namespace.
        """
        parts = urlsplit(self.endpoint)
        host = (parts.hostname or "").lower()
        if ":" in host:
            host = f"[{host}]"
        default_port = {"http": 80, "https": 443}.get(parts.scheme.lower())
        port = f":{parts.port}" if parts.port and parts.port != default_port else ""
        path = parts.path.rstrip("/")
        return (
            f"appwrite:{parts.scheme.lower()}://{host}{port}{path}#project={self.project_id or ''}"
        )

    def stored_file(self, name: str) -> Any | None:
        """Return the SDK ``File`` model of ``name`` (signature, size...), None if missing.

        A miss is remembered for the next ``exists()`` of the same name in this thread,
        which then answers False without asking again: a save that looked first
        (``DedupAppwriteStorage`` matching untracked files) checks the name once, not twice.
        Nothing relies on that answer staying true: an upload to an ID taken meanwhile
        gets Appwrite's 409 and moves to another name.
        """
        self._free_hint.name = None
        try:
            return self._get_file(name)
        except FileNotFoundError:
            self._free_hint.name = self._stored_name(*self.locate(name))
            return None

    # -- reading -------------------------------------------------------------------

    def _get_file(self, name: str) -> Any:
        bucket, file_id = self.locate(name)
        return self._call(lambda sdk: sdk.get_file(bucket, file_id), name, bucket=bucket)

    def exists(self, name: str) -> bool:
        hinted, self._free_hint.name = getattr(self._free_hint, "name", None), None
        if hinted is not None and hinted == self._stored_name(*self.locate(name)):
            return False
        try:
            self._get_file(name)
        except FileNotFoundError:
            return False
        return True

    def size(self, name: str) -> int:
        return int(self._get_file(name).sizeoriginal)

    def _datetime(self, value: str) -> datetime:
        moment = datetime.fromisoformat(value)
        if settings.USE_TZ:
            return moment
        return timezone.make_naive(moment)

    def get_created_time(self, name: str) -> datetime:
        return self._datetime(self._get_file(name).createdat)

    def get_modified_time(self, name: str) -> datetime:
        return self._datetime(self._get_file(name).updatedat)

    def get_accessed_time(self, name: str) -> datetime:
        # Appwrite does not record reads; the last change is the closest it knows.
        return self.get_modified_time(name)

    def url(self, name: str | None, expire: int | None = None) -> str:
        """Return the file's ``/view`` link.

        With ``url_tokens`` (the default) the link carries a file token, so it opens even
        though buckets are private: the token lives ``expire`` seconds (default
        ``url_expire``) and is kept in the ``url_cache`` cache for half of that, so
        rendering a page of links asks Appwrite once per file, and every link handed out
        stays valid for at least ``expire / 2`` seconds. A missing file gets a plain link.
        """
        if name is None:
            raise ValueError("url() needs a file name")
        if expire is not None and (
            isinstance(expire, bool) or not isinstance(expire, int) or expire < 2
        ):
            raise ValueError(
                f"expire must be a whole number of seconds, at least 2, not {expire!r}"
            )
        bucket, file_id = self.locate(name)
        base = self.public_url or self.endpoint
        query = {"project": self.project_id or ""}
        if self.url_tokens:
            secret = self._file_token(bucket, file_id, name, expire or self.url_expire)
            if secret:
                query["token"] = secret
        return (
            f"{base}/storage/buckets/{quote(bucket, safe='')}/files/"
            f"{quote(file_id, safe='')}/view?{urlencode(query)}"
        )

    def _file_token(self, bucket: str, file_id: str, name: str, lifetime: int) -> str:
        """Return a cached or new file token's secret; "" when the file is missing."""
        return file_token(self, bucket, file_id, name, lifetime)

    def _forget_token(self, bucket: str, file_id: str) -> None:
        forget_token(self, bucket, file_id)

    def _open(self, name: str, mode: str = "rb") -> File:
        if set(mode) - {"r", "b"} or "r" not in mode:
            raise ValueError(f"{type(self).__name__} files are read-only; mode {mode!r}")
        bucket, file_id = self.locate(name)
        stored = self._call(lambda sdk: sdk.get_file(bucket, file_id), name, bucket=bucket)
        if stored.chunksuploaded < stored.chunkstotal:
            raise FileNotFoundError(
                errno.ENOENT, "An incomplete upload (no complete file yet) in Appwrite", name
            )
        size = int(stored.sizeoriginal)
        download = (
            f"{self.endpoint}/storage/buckets/{quote(bucket, safe='')}/files/"
            f"{quote(file_id, safe='')}/download"
        )
        reader: IO[Any] = io.BufferedReader(
            _RangedReader(self, download, size, name), buffer_size=READ_BUFFER_SIZE
        )
        if "b" not in mode:
            reader = io.TextIOWrapper(reader, encoding="utf-8")
        return AppwriteFile(reader, name, size, mode)

    def _download(self, url: str, range_header: str | None, *, name: str) -> requests.Response:
        """GET (part of) a file's bytes with the SDK client's headers, streamed."""
        client = self.client
        assert self._session is not None
        headers = client.get_headers()
        headers.pop("content-type", None)
        headers["X-Appwrite-Project"] = self.project_id
        # The exact stored bytes: no transfer compression, whatever the content type.
        headers["Accept-Encoding"] = "identity"
        if range_header:
            headers["Range"] = range_header
        attempt = 0
        while True:
            try:
                response = self._session.get(
                    url, headers=headers, stream=True, timeout=self.timeout
                )
            except requests.RequestException as exc:
                raise self._translate(_Failure(exc, 0, None), name) from None
            if response.status_code in (200, 206):
                return response
            error_type, message = _error_body(response)
            response.close()
            if response.status_code in _RETRY_STATUSES and attempt < self.retry_attempts:
                self._pause(attempt)
                attempt += 1
                continue
            raise self._translate(_Failure(message, response.status_code, error_type), name)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        """List a bucket's file IDs; at the top level, also every bucket as a directory."""
        path = (path or "").strip("/")
        if path:
            validate_file_name(path, allow_relative_path=True)
            bucket: str | None = bucket_id_for(path.rpartition("/")[2])
        else:
            bucket = self.bucket_id
        directories: list[str] = []
        if not path:
            directories = [b.id for b in self._all_pages("buckets", None) if b.id != bucket]
        try:
            files = [f.id for f in self._all_pages("files", bucket)] if bucket else []
        except FileNotFoundError:
            if path:
                raise
            files = []  # the top level exists even before its bucket does
        return directories, files

    def _all_pages(self, kind: str, bucket: str | None) -> Iterator[Any]:
        from appwrite.query import Query

        def page_of(queries: list[str]) -> list[Any]:
            # A function of its own: its lambdas see these queries, not the loop's next.
            if kind == "files":
                return self._call(
                    lambda sdk: sdk.list_files(bucket, queries=queries, total=False),
                    bucket or "",
                    bucket=bucket,
                ).files
            return self._call(
                lambda sdk: sdk.list_buckets(queries=queries, total=False), ""
            ).buckets

        page_size = 100
        cursor: str | None = None
        while True:
            queries = [Query.limit(page_size)]
            if cursor:
                queries.append(Query.cursor_after(cursor))
            page = page_of(queries)
            yield from page
            if len(page) < page_size:
                return
            cursor = page[-1].id

    # -- deleting ------------------------------------------------------------------

    def delete(self, name: str) -> None:
        """Delete the file; deleting a missing file is not an error."""
        bucket, file_id = self.locate(name)
        with contextlib.suppress(FileNotFoundError):
            self._call(lambda sdk: sdk.delete_file(bucket, file_id), name, bucket=bucket)
        if self.url_tokens:
            self._forget_token(bucket, file_id)

    # -- saving --------------------------------------------------------------------

    #: ``save()`` does nothing for a name that ``get_available_name()`` returned beyond
    #: what ``_save()`` does, so ``DedupStorage`` may call ``_save()`` directly and skip
    #: the second existence check (a GET) that ``save()`` would make.
    dedupstore_direct_save = True

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        """Upload ``content`` and return its ``<bucket>/<fileId>`` name.

        Content up to 5 MiB goes in one request through the SDK (``InputFile.from_bytes``).
        Larger content is sent in Appwrite's 5 MiB chunks, streamed from a file path: the
        path of a ``TemporaryUploadedFile`` or a file on disk, else a private temporary
        copy, so memory stays bounded. A taken ID (a concurrent writer) gets another name.
        """
        name, content = prepare_save(name, content)
        self._validate_name(name)
        stored = self.get_available_name(name, max_length=max_length)
        return self._upload_as(name, stored, content, max_length=max_length)

    def _save(self, name: str, content: File) -> str:
        """Upload ``content`` under ``name``, a name ``get_available_name()`` returned.

        Django's hook: the name is not checked for availability again. Should a
        concurrent writer take its ID first, another one is picked as in ``save()``.
        """
        name, content = prepare_save(name, content)
        stored = self._stored_name(*self.locate(name))
        return self._upload_as(name, stored, content, max_length=None)

    def _upload_as(
        self, requested: str, stored: str, content: File, *, max_length: int | None
    ) -> str:
        """Upload under ``stored`` (retrying alternatives); ``requested`` names the file."""
        directory, _, original = requested.replace("\\", "/").rpartition("/")
        bucket, _file_id = self.locate(requested)
        # A new bucket is named after the directory as written (any characters).
        bucket_name = directory.rpartition("/")[2] or bucket
        with _UploadSource(content) as source:
            for _attempt in range(self.retry_attempts + 1):
                _bucket, file_id = self.locate(stored)
                with self._id_lock(bucket, file_id, source.chunked):
                    uploaded = self._upload(bucket, file_id, original, source, stored, bucket_name)
                if uploaded:
                    validate_file_name(stored, allow_relative_path=True)
                    return stored
                # Another writer took this ID between our check and our upload: move on
                # to an alternative even if the taken ID does not show up yet.
                root, extension = os.path.splitext(file_id)
                alternative = self.get_alternative_name(root, extension)
                stored = self.get_available_name(
                    self._stored_name(bucket, alternative), max_length=max_length
                )
        raise AppwriteConflict(
            f"Could not find a free file ID for {requested!r} in bucket {bucket!r} after "
            f"{self.retry_attempts + 1} attempts",
            code=409,
            type="storage_file_already_exists",
            endpoint=self.endpoint,
        )

    def _upload(
        self,
        bucket: str,
        file_id: str,
        original: str,
        source: _UploadSource,
        name: str,
        bucket_name: str,
    ) -> bool:
        """Upload under ``file_id``; return False if the ID turned out to be taken."""
        from appwrite.exception import AppwriteException

        attempt = 0
        created_bucket = False
        if bucket in self._missing_buckets:
            # The name check just found the bucket missing: create it before the content
            # goes out, rather than send the content, get a 404 and send it again.
            self._create_bucket(bucket, bucket_name, name)
            self._missing_buckets.discard(bucket)
            created_bucket = True
        while True:
            try:
                if source.chunked:
                    return upload_chunks(self, bucket, file_id, original, source, name)
                self.sdk.create_file(
                    bucket,
                    file_id,
                    source.input_file(original),
                    permissions=self.file_permissions,
                )
                return True
            except (AppwriteException, _Failure) as exc:
                if exc.code == 409 and exc.type == "storage_file_already_exists":
                    return False
                if exc.type == "storage_bucket_not_found" and not created_bucket:
                    self._create_bucket(bucket, bucket_name, name)
                    self._missing_buckets.discard(bucket)
                    created_bucket = True
                    continue
                if exc.code in _RETRY_STATUSES and attempt < self.retry_attempts:
                    self._pause(attempt)
                    attempt += 1
                    continue
                raise self._translate(exc, name, bucket=bucket) from _cause(exc)

    @contextlib.contextmanager
    def _id_lock(self, bucket: str, file_id: str, exclusive: bool) -> Iterator[None]:
        """Serialise chunked uploads of one file ID within this process.

        Chunks of two writers under one ID would merge into one file (the server counts
        chunks, not writers). Single-request uploads need no lock: the server answers
        409 to the second.
        """
        if not exclusive:
            yield
            return
        key = (bucket, file_id)
        with self._lock:
            entry = self._id_locks.setdefault(key, [threading.Lock(), 0])
            entry[1] += 1
        try:
            with entry[0]:
                yield
        finally:
            with self._lock:
                entry[1] -= 1
                if not entry[1]:
                    self._id_locks.pop(key, None)

    def _create_bucket(self, bucket: str, bucket_name: str, name: str) -> None:
        """Create a missing bucket: private unless ``bucket_permissions`` says otherwise."""
        from appwrite.exception import AppwriteException

        try:
            self._call(
                lambda sdk: sdk.create_bucket(
                    bucket,
                    bucket_name[:128],
                    permissions=self.bucket_permissions or [],
                    # File permissions only apply in buckets with file security on.
                    file_security=bool(self.file_permissions),
                ),
                name,
                bucket=bucket,
            )
        except AppwriteStorageError as exc:
            if exc.type != "storage_bucket_already_exists":  # a concurrent creator won
                raise
        except AppwriteException:  # pragma: no cover - _call translates
            raise
