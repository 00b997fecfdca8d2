"""The class names of the packages dedupstore replaces, in one place.

- ``AppWriteStorage``: django-cloud-storages' ``cloud_storages.backends.appwrite`` class,
  here ``DedupAppwriteStorage`` with its policy read from the old package's settings.
- ``InterPlanetaryFileSystemStorage``: django-ipfs-storage's class, here a
  ``DedupStorage`` over ``IPFSStorage`` that counts the references to each CID.

Both keep the import paths of earlier dedupstore versions
(``dedupstore.backends.appwrite.AppWriteStorage``,
``dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage`` and
``dedupstore.backends.ipfs.dropin.InterPlanetaryFileSystemStorage``, which re-export from
here) and the ``deconstruct()`` paths existing migrations hold.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.utils.deconstruct import deconstructible

from dedupstore.backends.appwrite.dedup import DedupAppwriteStorage
from dedupstore.backends.ipfs.dropin import IPFS_OPTIONS, RAW_BACKEND
from dedupstore.exceptions import IndexUnavailable
from dedupstore.storage import DedupStorage

__all__ = ["AppWriteStorage", "InterPlanetaryFileSystemStorage"]


# -- django-cloud-storages -----------------------------------------------------------------


@deconstructible(path="dedupstore.backends.appwrite.AppWriteStorage")
class AppWriteStorage(DedupAppwriteStorage):
    """A drop-in for django-cloud-storages' ``AppWriteStorage``, deduplicated.

    A ``DedupAppwriteStorage``. Without arguments it reads the same settings as the old
    class: ``APPWRITE_API_KEY``, ``APPWRITE_PROJECT_ID``, ``APPWRITE_BUCKET_ID``,
    ``APPWRITE_API_ENDPOINT``, and its policy from ``OVERWRITE_FILE`` (default False) ->
    ``overwrite`` and ``CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT`` (default True) ->
    ``reuse="never"`` (every save stores a new file), or ``reuse="name"`` when False: a
    save whose bucket already holds a file under the name the save maps to, with the same
    content, returns that file's name and uploads nothing, as the old package did.

    Any ``AppwriteStorage`` option (``api_key``, ``bucket_id``...) and any
    ``DedupStorage`` option (``index``, ``reuse``, ``overwrite``...) may also be passed;
    ``reuse`` and ``overwrite`` beat the old settings.
    """

    def __init__(self, **options: Any) -> None:
        if "overwrite" not in options:
            options["overwrite"] = getattr(settings, "OVERWRITE_FILE", False)
        if "reuse" not in options:
            create_new = getattr(settings, "CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT", True)
            options["reuse"] = "never" if create_new else "name"
        super().__init__(**options)


# -- django-ipfs-storage -------------------------------------------------------------------

_INDEX_NOTE = (
    "InterPlanetaryFileSystemStorage counts the references to each CID in this index (a "
    "CID stays pinned until its last reference is deleted), so it cannot save or delete "
    "without it: run Redis there, or point DEDUPSTORE_INDEX (or index=) at one. Reading "
    "files and url() work without it."
)


@deconstructible(path="dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage")
class InterPlanetaryFileSystemStorage(DedupStorage):
    """A drop-in for django-ipfs-storage's ``InterPlanetaryFileSystemStorage``, counted.

    A ``DedupStorage`` around ``IPFSStorage``: ``FileField(storage=
    InterPlanetaryFileSystemStorage())`` keeps a CID pinned while any record uses it.
    Without arguments the node and gateway come from the old settings
    (``IPFS_STORAGE_API_URL``, ``IPFS_STORAGE_GATEWAY_API_URL``,
    ``IPFS_STORAGE_GATEWAY_URL``, ``IPFS_GATEWAY_API_URL``) and the ``IPFS_STORAGE_*``
    settings of ``IPFSStorage``.

    Any ``IPFSStorage`` option (``api_url``, ``embedded_repo``, ``gateway_url``...) and any
    ``DedupStorage`` option (``index``, ``namespace``...) may be passed as a keyword; the
    old class's two positional arguments, ``api_url`` and ``gateway_url``, work too. The
    reference counts live in the index: ``index`` / ``DEDUPSTORE_INDEX``, by default
    ``redis://localhost:6379/0`` (counts must be shared by every process and survive
    restarts, which no in-process index does). Without a reachable Redis, ``save()`` and
    ``delete()`` raise ``IndexUnavailable`` naming the URL; reading and ``url()`` need no
    index.
    """

    def __init__(
        self, api_url: str | None = None, gateway_url: str | None = None, /, **options: Any
    ) -> None:
        cls = type(self).__name__
        for name, value in (("api_url", api_url), ("gateway_url", gateway_url)):
            if value is None:
                continue
            if name in options:
                raise ImproperlyConfigured(f"{cls}: {name} given both by position and by name")
            options[name] = value
        ipfs_options = {name: options.pop(name) for name in list(options) if name in IPFS_OPTIONS}
        if "inner" in options and ipfs_options:
            raise ImproperlyConfigured(
                f"{cls}: pass either 'inner' or IPFS options "
                f"({', '.join(sorted(ipfs_options))}), not both"
            )
        self._default_inner = "inner" not in options
        options.setdefault("inner", {"BACKEND": RAW_BACKEND, "OPTIONS": ipfs_options})
        try:
            super().__init__(**options)
        except ImproperlyConfigured as exc:
            if "unknown option" in str(exc):
                raise ImproperlyConfigured(
                    f"{exc}; and the IPFS options: {', '.join(sorted(IPFS_OPTIONS))}"
                ) from None
            raise
        # The Authorization value must never reach a migration: the setting supplies it.
        args, kwargs = self._constructor_args
        self._constructor_args = (
            args,
            {k: v for k, v in kwargs.items() if k not in ("api_auth", "pinning_services")},
        )

    @contextlib.contextmanager
    def _explained(self) -> Iterator[None]:
        # django-ipfs-storage needed no Redis: say why this class does, where it fails.
        try:
            yield
        except IndexUnavailable as exc:
            exc.add_note(_INDEX_NOTE)
            raise

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        with self._explained():
            return super().save(name, content, max_length=max_length)

    def delete(self, name: str) -> None:
        with self._explained():
            super().delete(name)

    def references(self, name: str) -> int:
        with self._explained():
            return super().references(name)
