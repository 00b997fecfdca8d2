"""``DedupAppwriteStorage``: a ``DedupStorage`` over ``AppwriteStorage``."""

from __future__ import annotations

import hashlib
import time
from typing import Any, cast

from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import File
from django.utils.deconstruct import deconstructible

from dedupstore.exceptions import IndexUnavailable
from dedupstore.storage import DedupStorage
from dedupstore.tokens import new_token
from dedupstore.utils import is_seekable

from .options import APPWRITE_OPTIONS
from .storage import AppwriteStorage


@deconstructible(path="dedupstore.backends.appwrite.DedupAppwriteStorage")
class DedupAppwriteStorage(DedupStorage):
    """A ``DedupStorage`` over ``AppwriteStorage``, configured in one place.

    Any ``AppwriteStorage`` option (``api_key``, ``bucket_id``...; the ``APPWRITE_*``
    settings otherwise) configures the inner storage, and any ``DedupStorage`` option
    (``index``, ``reuse``, ``overwrite``...; the ``DEDUPSTORE_*`` settings otherwise) the
    rest. With ``reuse="name"``, a save whose bucket already holds a file under the name
    the save maps to (``uploads/logo.png``), with the same content, returns that file's
    name and uploads nothing, including files the index does not know yet (uploaded
    before this storage): see ``_adopt_untracked``.

    ``dedupstore.backends.compat.AppWriteStorage``, django-cloud-storages' class name, is
    this class with its policy read from the old package's settings.
    """

    def __init__(self, **options: Any) -> None:
        appwrite_options = {
            name: options.pop(name) for name in list(options) if name in APPWRITE_OPTIONS
        }
        if "inner" in options and appwrite_options:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: pass either 'inner' or Appwrite options "
                f"({', '.join(sorted(appwrite_options))}), not both"
            )
        default_inner = "inner" not in options
        options.setdefault(
            "inner",
            {
                "BACKEND": "dedupstore.backends.appwrite.AppwriteStorage",
                "OPTIONS": appwrite_options,
            },
        )
        self._default_inner = default_inner
        super().__init__(**options)
        args, kwargs = self._constructor_args
        self._constructor_args = (args, {k: v for k, v in kwargs.items() if k != "api_key"})

    def _save_hashed(
        self, name: str, hashed: Any, max_length: int | None, reuse: Any = None
    ) -> str:
        inner = self.inner
        if (reuse or self.reuse) != "name" or not isinstance(inner, AppwriteStorage):
            return super()._save_hashed(name, hashed, max_length, reuse)
        try:
            try:
                adopted = self._adopt_untracked(name, hashed, max_length)
            except IndexUnavailable:
                adopted = None  # the save itself applies on_index_error
            if adopted is not None:
                return adopted
            return super()._save_hashed(name, hashed, max_length, reuse)
        finally:
            # The miss remembered by stored_file() serves this save's own name check only.
            inner._free_hint.name = None

    def _adopt_untracked(self, name: str, hashed: Any, max_length: int | None) -> str | None:
        """Record a same-content file the index does not know; return a name on a hit.

        django-cloud-storages compared the bucket's file under the name with the upload.
        Here a file that the index has no record of (uploaded before this storage, by the
        old package or by hand) and that holds the upload's content is recorded with the
        one reference its unknown holder has, so the save that follows is an ordinary
        ``reuse="name"`` hit (two references: the old row and the new one). The match is
        Appwrite's ``signature`` (the MD5 it keeps for every file) and size first, which
        costs one GET and nothing on a mismatch; then, since MD5 collisions can be made,
        the file's bytes are read once and their BLAKE3 digest compared, under the
        content's claim, between ``begin_save`` and ``commit_save``, as a write would be.
        Any race (a delete of the name meanwhile) gives up and saves normally.
        """
        inner = cast(AppwriteStorage, self.inner)
        stored = inner.dedupstore_stored_name(name)
        if max_length and len(stored) > max_length:
            return None
        if self.index.lookup(stored) is not None:
            return None  # tracked: the index decides
        remote = inner.stored_file(stored)
        if (
            remote is None
            or remote.chunksuploaded < remote.chunkstotal
            or int(remote.sizeoriginal) != hashed.size
            or remote.signature != _content_md5(hashed.content)
        ):
            return None
        token = new_token()
        asked = time.monotonic()
        decision = self._until_decided(
            lambda: self.index.begin_save(
                digest=hashed.digest,
                reuse="name",
                name=stored,
                max_length=max_length,
                token=token,
                claim_ttl=self.claim_ttl,
                overwrite=False,
            ),
            f"content {hashed.digest[:16]}... (matching {stored!r})",
        )
        if decision.action == "hit":
            # Another save recorded it meanwhile: an ordinary hit, confirmed like any other.
            return self._confirmed_hit(decision.name, name, hashed, max_length)
        keeper = self._claim_keeper
        keeper.keep(hashed.digest, token)
        try:
            try:
                with inner.open(stored) as remote_content:
                    # hashed.digest is the content key: the digest qualified by name's scope.
                    remote_digest = self.hasher.hash(remote_content).digest
                    matches = self._content_key(name, remote_digest) == hashed.digest
            except FileNotFoundError:
                matches = False
            committed = False
            if matches:
                outcome = self._until_decided(
                    lambda: self.index.commit_save(
                        digest=hashed.digest,
                        token=token,
                        name=stored,
                        size=hashed.size,
                        since=decision.since,
                        elapsed=time.monotonic() - asked,
                    ),
                    f"{stored!r} (a delete of it under way)",
                )
                committed = outcome.action == "committed"
            if not committed:
                self.index.release_claim(digest=hashed.digest, token=token)
        except BaseException:
            self._quietly(lambda: self.index.release_claim(digest=hashed.digest, token=token))
            raise
        finally:
            keeper.release(token)
        return None


def _content_md5(content: File) -> str:
    """Return the MD5 of the bytes an upload of ``content`` sends (text as UTF-8)."""
    digest = hashlib.md5(usedforsecurity=False)
    if is_seekable(content):
        content.seek(0)
    for piece in content.chunks(chunk_size=1024 * 1024):
        digest.update(piece.encode("utf-8") if isinstance(piece, str) else piece)
    if is_seekable(content):
        content.seek(0)
    return digest.hexdigest()
