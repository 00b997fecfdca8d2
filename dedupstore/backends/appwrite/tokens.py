"""File-token links for ``AppwriteStorage.url()``: made once, cached for half their life."""

from __future__ import annotations

import contextlib
import hashlib
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, cast

if TYPE_CHECKING:
    from .storage import AppwriteStorage


def _token_cache_key(storage: AppwriteStorage, bucket: str, file_id: str) -> str:
    identity = "\n".join((storage.endpoint, storage.project_id or "", bucket, file_id))
    digest = hashlib.blake2b(identity.encode(), digest_size=16).hexdigest()
    return f"dedupstore:appwrite-token:{digest}"


def file_token(
    storage: AppwriteStorage, bucket: str, file_id: str, name: str, lifetime: int
) -> str:
    """Return a cached or new file token's secret; "" when the file is missing."""
    from appwrite.services.tokens import Tokens
    from django.core.cache import caches

    cache = caches[storage.url_cache]
    key = _token_cache_key(storage, bucket, file_id)
    cached = cache.get(key)
    if isinstance(cached, tuple) and len(cached) == 2 and cached[0] == lifetime:
        return cast(str, cached[1])
    expires = datetime.now(UTC) + timedelta(seconds=lifetime)
    try:
        token = storage._call(
            lambda _sdk: Tokens(storage.client).create_file_token(
                bucket, file_id, expire=_appwrite_date(expires)
            ),
            name,
            bucket=bucket,
        )
    except FileNotFoundError:
        return ""
    # Cached for half the token's life: a link taken from the cache still opens for
    # at least lifetime / 2 seconds. delete() drops it: a file saved again under the
    # same ID is another file, which the old token does not open.
    cache.set(key, (lifetime, token.secret), timeout=lifetime // 2)
    return cast(str, token.secret)


def forget_token(storage: AppwriteStorage, bucket: str, file_id: str) -> None:
    """Drop the cached token of a file (deleted: a new file under its ID is another)."""
    from django.core.cache import caches

    with contextlib.suppress(Exception):  # a cache outage must not fail a delete
        caches[storage.url_cache].delete(_token_cache_key(storage, bucket, file_id))


def _appwrite_date(moment: datetime) -> str:
    """Format a UTC datetime as Appwrite writes dates (``Y-m-d\\TH:i:s.vP``)."""
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+00:00"
