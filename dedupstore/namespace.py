"""Where an inner storage keeps its bytes, and the default index namespace derived from it.

Two ``DedupStorage`` over the same bytes must share reference counts (or one deletes
objects the other still uses), and storages over different bytes must never share
objects. So the default namespace is derived from the inner storage's resolved location
only: for ``FileSystemStorage`` its absolute real path (after settings such as
``MEDIA_ROOT`` are applied); for django-storages' S3, Google Cloud and Azure storages the
normalised endpoint, bucket (container) and key prefix; for any storage that implements
``dedupstore_location()`` (the Appwrite and IPFS backends) what that returns. Nothing else
counts: not credentials, URLs, timeouts, client objects or their reprs. A storage it
cannot place needs an explicit ``namespace``.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import uuid
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from blake3 import blake3
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage

from dedupstore.protocol import backend_of

__all__ = [
    "NAMESPACE_PREFIX",
    "NamespaceUnknown",
    "default_namespace",
    "legacy_namespace",
    "storage_location",
]

#: Every derived namespace starts with this.
NAMESPACE_PREFIX = "dedupstore:"


class NamespaceUnknown(ImproperlyConfigured):
    """No default namespace can be derived: the inner storage's location cannot be told."""


_LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "ip6-localhost"})
_DEFAULT_PORTS = {"http": 80, "https": 443}


def normalise_endpoint(url: str) -> str:
    """Return ``url`` as ``host:port/path``: lower case, default port and trailing ``/`` made
    explicit or dropped, loopback spelled ``localhost``, credentials and query dropped."""
    parts = urlsplit(url.strip() if "//" in url else f"https://{url.strip()}")
    scheme = (parts.scheme or "https").lower()
    host = (parts.hostname or "").lower().rstrip(".")
    if host in _LOOPBACK_HOSTS or re.fullmatch(r"127(\.\d{1,3}){3}", host):
        host = "localhost"
    try:
        port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    except ValueError:
        port = 0
    path = re.sub("/{2,}", "/", parts.path).rstrip("/")
    return f"{host}:{port}{path}"


def _prefix(value: object) -> str:
    """A key prefix (``location``) without leading, trailing or doubled slashes."""
    return re.sub("/{2,}", "/", str(value or "")).strip("/")


def _filesystem(storage: Any) -> str:
    # ``location`` resolves MEDIA_ROOT (and follows override_settings); realpath removes
    # "..", trailing slashes and symlinks, so every spelling of one directory agrees.
    return "file:" + os.path.realpath(os.path.abspath(os.fspath(storage.location)))


def _in_memory(storage: Any) -> str:
    # Each InMemoryStorage instance holds its own bytes, in this process only.
    identity = storage.__dict__.get("_dedupstore_memory_id")
    if identity is None:
        identity = storage.__dict__.setdefault("_dedupstore_memory_id", uuid.uuid4().hex)
    return f"memory:{identity}"


def _s3(storage: Any) -> str:
    endpoint = getattr(storage, "endpoint_url", None)
    # Without an endpoint, AWS: bucket names are global there, the region adds nothing.
    where = normalise_endpoint(endpoint) if endpoint else "aws"
    return f"s3:{where}/{storage.bucket_name}/{_prefix(getattr(storage, 'location', ''))}"


def _gcs(storage: Any) -> str:
    return f"gcs:{storage.bucket_name}/{_prefix(getattr(storage, 'location', ''))}"


def _connection_string_field(connection_string: str | None, field: str) -> str | None:
    for pair in (connection_string or "").split(";"):
        key, _, value = pair.partition("=")
        if key.strip().lower() == field.lower() and value:
            return value.strip()
    return None


def _azure(storage: Any) -> str:
    connection_string = getattr(storage, "connection_string", None)
    account = getattr(storage, "account_name", None) or _connection_string_field(
        connection_string, "AccountName"
    )
    endpoint = _connection_string_field(connection_string, "BlobEndpoint")
    if endpoint:
        where = normalise_endpoint(endpoint)
    else:
        suffix = getattr(storage, "endpoint_suffix", None) or "core.windows.net"
        where = normalise_endpoint(f"https://{account}.blob.{suffix}")
    container = getattr(storage, "azure_container", None)
    return f"azure:{where}/{container}/{_prefix(getattr(storage, 'location', ''))}"


def _appwrite(storage: Any) -> str:
    # Until the backend says it itself (dedupstore_location): one project's files.
    return f"appwrite:{normalise_endpoint(storage.endpoint)}/{storage.project_id}"


def _ipfs(storage: Any) -> str:
    # Until the backend says it itself (dedupstore_location): the node's repository, or
    # the RPC API it talks to.
    if storage.embedded_repo is not None:
        return "ipfs-repo:" + os.path.realpath(os.fspath(storage.embedded_repo))
    return "ipfs-api:" + normalise_endpoint(str(storage.api_url))


#: Storages known by class path (any subclass too), so none of them is imported here.
_KNOWN: Mapping[str, Callable[[Any], str]] = {
    "django.core.files.storage.filesystem.FileSystemStorage": _filesystem,
    "django.core.files.storage.memory.InMemoryStorage": _in_memory,
    "storages.backends.s3.S3Storage": _s3,
    "storages.backends.s3boto3.S3Boto3Storage": _s3,
    "storages.backends.gcloud.GoogleCloudStorage": _gcs,
    "storages.backends.azure_storage.AzureStorage": _azure,
    "dedupstore.backends.appwrite.storage.AppwriteStorage": _appwrite,
    "dedupstore.backends.ipfs.storage.IPFSStorage": _ipfs,
}


def storage_location(storage: Storage) -> str | None:
    """Describe where ``storage`` keeps its bytes, or return None if it cannot be told.

    The storage's own ``dedupstore_location()`` comes first, then the storages known by
    class (their subclasses too).
    """
    told = backend_of(storage).dedupstore_location()
    if told is not None:
        return str(told)
    for cls in type(storage).__mro__:
        describe = _KNOWN.get(f"{cls.__module__}.{cls.__qualname__}")
        if describe is not None:
            return describe(storage)
    return None


def default_namespace(storage: Storage, *, owner: str = "DedupStorage") -> str:
    """Return the namespace derived from where ``storage`` keeps its bytes.

    Raise ``ImproperlyConfigured`` for a storage whose location cannot be told.
    """
    location = storage_location(storage)
    if location is None:
        backend = f"{type(storage).__module__}.{type(storage).__qualname__}"
        raise NamespaceUnknown(
            f"{owner}: cannot tell where the inner storage {backend} keeps its bytes, so no "
            "default namespace can be derived for its index keys. Set one explicitly, the "
            "same in every process that uses these bytes: OPTIONS {'namespace': 'media'} "
            "(or DEDUPSTORE_NAMESPACE), or implement dedupstore_location() on the storage "
            "(see dedupstore.protocol)."
        )
    return NAMESPACE_PREFIX + blake3(location.encode()).hexdigest()[:16]


# -- the namespaces of dedupstore 0.1, for pinning them ------------------------------------

#: Options the 0.1 default namespace left out.
_LEGACY_NON_IDENTITY_OPTIONS = frozenset(
    {
        "timeout",
        "base_url",
        "public_url",
        "gateway_url",
        "gateway_style",
        "url_filename",
        "file_permissions",
        "bucket_permissions",
        "file_permissions_mode",
        "directory_permissions_mode",
        "allow_overwrite",
        "file_overwrite",
    }
)
_LEGACY_SECRET_WORDS = ("key", "secret", "password", "token", "auth", "credential")


def legacy_namespace(storage: Any) -> str | None:
    """Return the default namespace dedupstore 0.1 derived for ``storage``, or None.

    0.1 hashed the inner STORAGES definition (backend and options); options holding
    objects hashed their repr, which differs between processes: such a namespace cannot
    be reproduced, and None is returned. Pin the result with ``namespace=...`` to keep
    the reference counts an existing deployment built.
    """
    if getattr(storage, "_namespace_option", None):
        return str(storage._namespace_option)
    if getattr(storage, "_default_inner", False) and hasattr(storage.inner, "project_id"):
        # AppWriteStorage over its own default inner storage.
        inner = storage.inner
        identity = "\n".join((inner.endpoint, inner.project_id or "", inner.bucket_id or ""))
        digest = hashlib.blake2b(identity.encode(), digest_size=8).hexdigest()
        return f"dedupstore:appwrite:{digest}"
    definition = storage._inner_definition()
    options = {
        key: value
        for key, value in dict(definition.get("OPTIONS", {})).items()
        if not any(word in str(key).lower() for word in _LEGACY_SECRET_WORDS)
        and key not in _LEGACY_NON_IDENTITY_OPTIONS
    }
    unstable: list[object] = []

    def default(value: object) -> str:
        text = repr(value)
        if " at 0x" in text:
            unstable.append(value)
        return text

    identity = json.dumps(
        {"BACKEND": definition.get("BACKEND"), "OPTIONS": options}, sort_keys=True, default=default
    )
    if unstable:
        return None
    return NAMESPACE_PREFIX + blake3(identity.encode()).hexdigest()[:16]
