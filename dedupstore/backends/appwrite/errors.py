"""Errors of the Appwrite storage, and how Appwrite's error answers are read."""

from __future__ import annotations

import contextlib
from typing import Any

import requests

from dedupstore.exceptions import DedupStoreError

_AUTH_ERROR_TYPES = frozenset(
    {"user_unauthorized", "general_unauthorized_scope", "project_key_expired", "project_not_found"}
)
_NOT_FOUND_TYPES = frozenset({"storage_file_not_found", "storage_bucket_not_found"})
_RETRY_STATUSES = frozenset({429, 503})


class AppwriteStorageError(DedupStoreError):
    """Appwrite answered with an error this storage cannot turn into a Python one.

    ``code`` is the HTTP status (0 when no response arrived) and ``type`` Appwrite's error
    type, such as ``storage_invalid_file_size``.
    """

    def __init__(
        self, message: str, *, code: int = 0, type: str | None = None, endpoint: str = ""
    ) -> None:
        self.code = code
        self.type = type
        self.endpoint = endpoint
        super().__init__(message)


class AppwriteAuthError(AppwriteStorageError, PermissionError):
    """Appwrite rejected the API key or the project: a configuration problem."""


class AppwriteUnavailable(AppwriteStorageError, ConnectionError):
    """Appwrite could not be reached, or did not answer within ``timeout``."""


class AppwriteConflict(AppwriteStorageError, FileExistsError):
    """Every file ID tried for a save was taken by concurrent writers."""


class _Failure(Exception):
    """An error shaped like ``AppwriteException``, for responses we read ourselves."""

    def __init__(self, message: Any, code: int, type: str | None) -> None:
        super().__init__(str(message))
        self.message = message
        self.code = code
        self.type = type


def _error_body(response: requests.Response) -> tuple[str | None, str]:
    if response.headers.get("Content-Type", "").startswith("application/json"):
        with contextlib.suppress(ValueError):
            body = response.json()
            return body.get("type"), str(body.get("message", ""))
    return None, response.text[:200]


def _cause(exc: Exception) -> Exception | None:
    # A connection error's message is the requests exception, which holds the request
    # and its x-appwrite-key header: do not chain it.
    return None if getattr(exc, "code", 0) == 0 else exc
