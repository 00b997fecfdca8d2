"""``AppwriteStorage``'s options: one declaration each, resolved like every other storage's.

Keyword, else the ``APPWRITE_*`` setting, else the default (``dedupstore.options``).
"""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ImproperlyConfigured

from dedupstore.options import Option, OptionTable, Validator

from .ids import ID_PATTERN

__all__ = ["APPWRITE_OPTIONS"]


def _text(name: str) -> Validator:
    def validate(value: Any, owner: str, source: str) -> str | None:
        if value is None:
            return None
        if not isinstance(value, str) or not value.strip():
            raise ImproperlyConfigured(f"{owner}: '{name}' must be a non-empty string or None")
        return value.strip()

    return validate


def _bucket_id(value: Any, owner: str, source: str) -> str | None:
    bucket = _text("bucket_id")(value, owner, source)
    if bucket is not None and not ID_PATTERN.match(bucket):
        raise ImproperlyConfigured(
            f"{owner}: bucket_id {bucket!r} is not a valid Appwrite ID (1-36 of "
            "a-z, A-Z, 0-9, '.', '-', '_', not starting with a special char)"
        )
    return bucket


def _endpoint(value: Any, owner: str, source: str) -> str:
    if not isinstance(value, str) or not value.startswith(("http://", "https://")):
        raise ImproperlyConfigured(
            f"{owner}: endpoint must be an http:// or https:// URL such as "
            f"'https://cloud.appwrite.io/v1', not {value!r}"
        )
    if value.endswith("/"):
        # The SDK appends '/storage/...': a trailing slash makes '//storage/...', unrouted.
        raise ImproperlyConfigured(
            f"{owner}: endpoint {value!r} ends with '/'; remove the trailing slash "
            f"(APPWRITE_API_ENDPOINT = {value.rstrip('/')!r})"
        )
    return value


def _timeout(value: Any, owner: str, source: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ImproperlyConfigured(f"{owner}: timeout must be a positive number of seconds or None")
    return float(value)


def _permissions(name: str) -> Validator:
    def validate(value: Any, owner: str, source: str) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str) or not all(isinstance(item, str) for item in value):
            raise ImproperlyConfigured(
                f"{owner}: {name} must be a list of Appwrite permission strings "
                "such as ['read(\"any\")'], or None"
            )
        return list(value)

    return validate


def _public_url(value: Any, owner: str, source: str) -> str | None:
    public = _text("public_url")(value, owner, source)
    if public is not None and not public.startswith(("http://", "https://")):
        raise ImproperlyConfigured(f"{owner}: public_url must start with http:// or https://")
    return public.rstrip("/") if public else None


def _url_tokens(value: Any, owner: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"{owner}: url_tokens must be True or False")
    return value


def _url_expire(value: Any, owner: str, source: str) -> int:
    # Appwrite dates have second precision; a token must outlive the page that shows it.
    if isinstance(value, bool) or not isinstance(value, int) or value < 2:
        raise ImproperlyConfigured(
            f"{owner}: url_expire must be a whole number of seconds, at least 2"
        )
    return value


def _url_cache(value: Any, owner: str, source: str) -> str:
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(f"{owner}: url_cache must be the alias of a Django cache")
    return value


APPWRITE_OPTIONS = OptionTable(
    # Never in deconstruct(): a migrated field falls back to settings.APPWRITE_API_KEY.
    Option("api_key", ("APPWRITE_API_KEY",), None, _text("api_key"), secret=True),
    Option("project_id", ("APPWRITE_PROJECT_ID",), None, _text("project_id")),
    Option("bucket_id", ("APPWRITE_BUCKET_ID",), None, _bucket_id),
    Option("endpoint", ("APPWRITE_API_ENDPOINT",), "https://cloud.appwrite.io/v1", _endpoint),
    Option("timeout", ("APPWRITE_TIMEOUT",), 60.0, _timeout),
    Option(
        "bucket_permissions",
        ("APPWRITE_BUCKET_PERMISSIONS",),
        None,
        _permissions("bucket_permissions"),
    ),
    Option(
        "file_permissions", ("APPWRITE_FILE_PERMISSIONS",), None, _permissions("file_permissions")
    ),
    Option("public_url", ("APPWRITE_PUBLIC_URL",), None, _public_url),
    Option("url_tokens", ("APPWRITE_URL_TOKENS",), True, _url_tokens),
    Option("url_expire", ("APPWRITE_URL_EXPIRE",), 3600, _url_expire),
    Option("url_cache", ("APPWRITE_URL_CACHE",), "default", _url_cache),
)
