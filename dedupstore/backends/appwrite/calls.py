"""How ``AppwriteStorage`` calls the SDK: Appwrite errors as Django's, and retries."""

from __future__ import annotations

import errno
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

import requests

from .errors import (
    _AUTH_ERROR_TYPES,
    _NOT_FOUND_TYPES,
    _RETRY_STATUSES,
    AppwriteAuthError,
    AppwriteStorageError,
    AppwriteUnavailable,
    _cause,
)

if TYPE_CHECKING:
    from .storage import AppwriteStorage

T = TypeVar("T")


def translate_error(
    storage: AppwriteStorage, exc: Exception, name: str, *, bucket: str | None = None
) -> Exception:
    """Turn an ``AppwriteException`` into the exception a Django caller expects.

    Errors are told apart by ``code`` and ``type`` only, never by message text.
    """
    code = int(getattr(exc, "code", 0) or 0)
    error_type = getattr(exc, "type", None)
    message = getattr(exc, "message", exc)
    where = f"Appwrite at {storage.endpoint} (project {storage.project_id!r})"
    if code == 0:
        # ``message`` may be a requests exception holding the request, and so the
        # key: keep only its text.
        if isinstance(message, requests.Timeout):
            detail = f"no answer within {storage.timeout}s"
        else:
            detail = str(message)
        return AppwriteUnavailable(
            f"{where} is unreachable while handling {name!r}: {detail}",
            endpoint=storage.endpoint,
        )
    if code in (401, 403, 404) and error_type in _AUTH_ERROR_TYPES:
        return AppwriteAuthError(
            f"{where} rejected this storage's credentials ({error_type}: {message}). "
            "Check APPWRITE_PROJECT_ID and that APPWRITE_API_KEY is a key of that project "
            "with the files.read, files.write, buckets.read and buckets.write scopes (and "
            "tokens.write for url() links with file tokens).",
            code=code,
            type=error_type,
            endpoint=storage.endpoint,
        )
    if code == 404 and error_type in _NOT_FOUND_TYPES:
        if error_type == "storage_bucket_not_found":
            if bucket:
                storage._missing_buckets.add(bucket)
            detail = f"no bucket {bucket!r}" if bucket else "no such bucket"
        else:
            detail = f"no such file in bucket {bucket!r}" if bucket else "no such file"
        return FileNotFoundError(errno.ENOENT, f"No such file in {where} ({detail})", name)
    if code == 404 and error_type is None:
        return AppwriteStorageError(
            f"{where} has no such route (HTTP 404 without an Appwrite error body): "
            "is the endpoint right? It normally ends with '/v1'.",
            code=code,
            endpoint=storage.endpoint,
        )
    return AppwriteStorageError(
        f"{where} failed on {name!r}: {code} {error_type}: {message}",
        code=code,
        type=error_type,
        endpoint=storage.endpoint,
    )


def pause(storage: AppwriteStorage, attempt: int) -> None:
    """Wait before retry ``attempt`` (exponential backoff, capped at ``max_retry_wait``)."""
    time.sleep(min(storage.retry_backoff * (2**attempt), storage.max_retry_wait))


def call_sdk(
    storage: AppwriteStorage, operation: Callable[[Any], T], name: str, *, bucket: str | None = None
) -> T:
    """Run one SDK call, retrying 429 "busy" and 503 answers with backoff."""
    from appwrite.exception import AppwriteException

    attempt = 0
    while True:
        try:
            return operation(storage.sdk)
        except AppwriteException as exc:
            if exc.code in _RETRY_STATUSES and attempt < storage.retry_attempts:
                pause(storage, attempt)
                attempt += 1
                continue
            raise translate_error(storage, exc, name, bucket=bucket) from _cause(exc)
