"""Open a dedup index from its URL, validate such URLs, and mask their secrets."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from dedupstore.index.base import Index

__all__ = ["REDIS_SCHEMES", "mask_url", "open_index", "validate_index_url"]

REDIS_SCHEMES = ("redis", "rediss", "unix")
#: Schemes of a Redis Cluster index (see ``dedupstore.index.cluster``).
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


_SECRET_QUERY_WORDS = ("pass", "pwd", "secret", "token", "key", "auth", "sig", "credential")


def mask_url(url: str) -> str:
    """Return ``url`` with any password (in the user info or the query) replaced by ``***``.

    The user info ends at the last ``@`` of the authority, wherever it is: a password
    holding ``/``, ``#`` or ``?`` unencoded (which URL parsers read as the start of the
    path, fragment or query) is masked too.
    """
    if not isinstance(url, str):
        return "<not a URL>"
    scheme, separator, rest = url.partition("://")
    if separator and "@" in rest:
        userinfo, _, hostinfo = rest.rpartition("@")
        user = userinfo.split(":", 1)[0] if ":" in userinfo else None
        if user is not None:
            url = f"{scheme}://{user}:***@{hostinfo}"
        elif "/" in userinfo or "?" in userinfo or "#" in userinfo:
            # Not user info at all ("a/b@c" in a path): leave it to the parser below.
            pass
        else:  # a token alone as user name (rediss://token@host)
            url = f"{scheme}://***@{hostinfo}"
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    if parts.query:
        query = [
            (key, "***" if any(word in key.lower() for word in _SECRET_QUERY_WORDS) else value)
            for key, value in parse_qsl(parts.query, keep_blank_values=True)
        ]
        parts = parts._replace(query=urlencode(query, safe="*"))
    if parts.fragment:
        parts = parts._replace(fragment="")
    return urlunsplit(parts)


def validate_index_url(url: object) -> str:
    """Return ``url`` if it names a supported index, else raise ``ImproperlyConfigured``."""
    if not isinstance(url, str) or not url:
        raise ImproperlyConfigured(
            f"dedupstore: 'index' must be a URL string such as 'redis://localhost:6379/0' "
            f"or 'locmem://', not {url!r}"
        )
    if url.partition("://")[0] in CLUSTER_SCHEMES:
        from dedupstore.index.cluster import parse_cluster_url

        parse_cluster_url(url, mask_url(url))
        return url
    try:
        parts = urlsplit(url)
        port = parts.port  # raises ValueError for a non-numeric port
    except ValueError as exc:
        raise ImproperlyConfigured(
            f"dedupstore: malformed index URL {mask_url(url)}: {exc}"
        ) from exc
    if parts.scheme == "locmem":
        return url
    if parts.scheme not in REDIS_SCHEMES:
        raise ImproperlyConfigured(
            f"dedupstore: unsupported index URL scheme {parts.scheme!r} in {mask_url(url)}; "
            "use redis://, rediss://, unix://, redis+cluster://, rediss+cluster:// or locmem://"
        )
    if parts.scheme == "unix":
        if not parts.path:
            raise ImproperlyConfigured(
                f"dedupstore: index URL {mask_url(url)} names no socket path "
                "(unix:///run/redis/redis.sock?db=0)"
            )
        return url
    if not parts.hostname:
        raise ImproperlyConfigured(f"dedupstore: index URL {mask_url(url)} names no host")
    db = parts.path.lstrip("/")
    if db and not db.isdigit():
        raise ImproperlyConfigured(
            f"dedupstore: the database in index URL {mask_url(url)} must be a number, not {db!r}"
        )
    del port
    from dedupstore.index.cluster import split_wait_replicas

    split_wait_replicas(url, mask_url(url))
    return url


def open_index(
    url: str,
    *,
    namespace: str,
    socket_timeout: float,
    wait_timeout: float = 60.0,
    wait_replicas: int | None = None,
) -> Index:
    """Return the index that ``url`` names (validated with ``validate_index_url``).

    ``wait_replicas``: see ``RedisIndex``; None leaves it to the URL's ``wait_replicas``
    option, then to the ``DEDUPSTORE_INDEX_WAIT_REPLICAS`` setting.
    """
    validate_index_url(url)
    scheme = urlsplit(url).scheme
    if scheme == "locmem":
        from dedupstore.index.locmem import get_locmem_index

        return get_locmem_index(url.removeprefix("locmem://"), namespace=namespace)
    from dedupstore.index.redis import RedisIndex

    return RedisIndex(
        url,
        namespace=namespace,
        display_url=mask_url(url),
        socket_timeout=socket_timeout,
        wait_timeout=wait_timeout,
        wait_replicas=wait_replicas,
    )
