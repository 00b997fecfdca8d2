"""``DedupStorage``: make any Django storage content-addressed and deduplicated."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import posixpath
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import IO, Any, Literal, TypeVar, cast

from blake3 import blake3
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.core.files.utils import validate_file_name
from django.utils.deconstruct import deconstructible
from django.utils.module_loading import import_string

from dedupstore.exceptions import ClaimTimeout, EmptyContentError, IndexUnavailable
from dedupstore.files import prepare_save
from dedupstore.hashing import DEFAULT_CHUNK_SIZE, ContentHasher, HashedContent, resolve_hash_key
from dedupstore.index import CommitDecision, Index, mask_url, open_index, validate_index_url
from dedupstore.index.base import ClaimKeeper

__all__ = ["DedupStorage"]

logger = logging.getLogger("dedupstore")

T = TypeVar("T")
Reuse = Literal["content", "name", "never"]
OnIndexError = Literal["raise", "bypass"]

REUSE_CHOICES = ("content", "name", "never")
#: The shortest claim lifetime accepted, in seconds.
MIN_CLAIM_TTL = 0.01
ON_INDEX_ERROR_CHOICES = ("raise", "bypass")
#: How many alternative names a save tries when the ones it finds free are reserved.
MAX_RESERVE_ATTEMPTS = 100
#: Option names whose values never belong in a migration file or a log line.
_SECRET_OPTION_WORDS = ("key", "secret", "password", "token", "auth", "credential")
_UNSET: Any = object()
#: What a save that fails after its inner write leaves behind.
_ORPHANED = (
    "The content was written to the inner storage but not recorded: no name was returned, "
    "and the written object is orphaned"
)
#: What a save whose commit was sent, with its reply lost, leaves behind.
_MAYBE_RECORDED = (
    "The content was written to the inner storage and its commit sent, but the reply was "
    "lost and the index could not be asked again in time: no name was returned; the "
    "commit may have been recorded (one reference counted that nobody holds, which only "
    "delays a deletion) or not (the written object is orphaned)"
)
_REPLACED_GONE = (
    "; the name it replaced (overwrite=True) holds this content now, and the index records "
    "nothing under it"
)


def _is_secret_option(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_OPTION_WORDS)


#: Inner OPTIONS that do not change where the bytes live, left out of the default namespace.
_NON_IDENTITY_OPTIONS = frozenset(
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


def _storage_identity(definition: Mapping[str, Any]) -> str:
    """Describe where an inner storage keeps its bytes: its backend and location options.

    Credentials and options such as timeouts or URLs are left out, so rotating an API key
    or tuning a timeout keeps the namespace, and with it every reference count.
    """
    options = {
        key: value
        for key, value in dict(definition.get("OPTIONS", {})).items()
        if not _is_secret_option(str(key)) and key not in _NON_IDENTITY_OPTIONS
    }
    return json.dumps(
        {"BACKEND": definition.get("BACKEND"), "OPTIONS": options}, sort_keys=True, default=repr
    )


def _redact(options: Mapping[str, Any], *, secret: bool = False) -> dict[str, Any]:
    """Return ``options`` with secret-looking values replaced, recursively.

    A string is secret under a secret-looking key (see ``_is_secret_option``), however deep
    in dicts, lists and tuples it sits below that key.
    """
    return {
        key: _redact_value(value, secret=secret or _is_secret_option(str(key)))
        for key, value in options.items()
    }


def _redact_value(value: Any, *, secret: bool) -> Any:
    if isinstance(value, Mapping):
        return _redact(value, secret=secret)
    if isinstance(value, list | tuple):
        items = [_redact_value(item, secret=secret) for item in value]
        if hasattr(value, "_make"):  # a namedtuple takes its fields one by one
            return value._make(items)
        return type(value)(items)
    if secret and isinstance(value, str | bytes):
        return "***"
    return value


def _rewritable(content: File) -> File:
    """Return ``content`` in a form the inner storage can write again.

    ``FileSystemStorage`` moves a ``TemporaryUploadedFile`` into place instead of copying
    it, so its path is gone after the first write. Its open descriptor still reads the
    same bytes, even when the moved object was deleted since (the descriptor keeps the
    file alive): a plain ``File`` over it is copied rather than moved.
    """
    temporary_file_path = getattr(content, "temporary_file_path", None)
    if temporary_file_path is None or os.path.exists(temporary_file_path()):
        return content
    descriptor = getattr(content, "file", None)
    if descriptor is None or descriptor.closed:
        raise FileNotFoundError(
            f"Cannot write {content.name!r} again: the inner storage moved its temporary "
            "file on the first write and the upload was closed since. Keep the upload open "
            "until save() returns."
        )
    descriptor.seek(0)
    return File(descriptor, name=content.name)


def _failed_inner_delete_note(name: str, *, tracked: bool) -> str:
    """Say what a failed inner delete left behind, and when calling delete() again is safe."""
    held = (
        f"the last reference to {name!r} was already dropped and the inner object is kept, "
        "marked as being deleted"
        if tracked
        else f"{name!r} had no counted reference; the inner object is kept"
    )
    return (
        f"dedupstore: {held}. Calling delete({name!r}) again retries the inner delete, but "
        "not if the name may have been saved again since: it would drop that save's reference."
    )


@deconstructible(path="dedupstore.DedupStorage")
class DedupStorage(Storage):
    """Wrap another storage so identical content is stored once and reference-counted.

    Every option is a keyword argument (so ``STORAGES[...]["OPTIONS"]`` works) with a
    ``DEDUPSTORE_<OPTION>`` setting as fallback. Only plain data is accepted: the inner
    storage and the index client are built on first use.
    """

    #: option name -> built-in default; the setting is ``DEDUPSTORE_<NAME>``.
    default_options: Mapping[str, Any] = {
        "inner": None,
        "index": "redis://localhost:6379/0",
        "namespace": None,
        "reuse": "content",
        "overwrite": False,
        "hash_key": None,
        "chunk_size": DEFAULT_CHUNK_SIZE,
        "on_index_error": "raise",
        "claim_ttl": 30.0,
        "wait_timeout": 60.0,
        "index_timeout": 5.0,
    }

    def __init__(
        self,
        *,
        inner: str | Mapping[str, Any] = _UNSET,
        index: str = _UNSET,
        namespace: str | None = _UNSET,
        reuse: Reuse = _UNSET,
        overwrite: bool = _UNSET,
        hash_key: str | bytes | bool | None = _UNSET,
        chunk_size: int = _UNSET,
        on_index_error: OnIndexError = _UNSET,
        claim_ttl: float = _UNSET,
        wait_timeout: float = _UNSET,
        index_timeout: float = _UNSET,
        **unknown: Any,
    ) -> None:
        if unknown:
            raise ImproperlyConfigured(
                f"{type(self).__name__} got unknown option(s) {', '.join(sorted(unknown))}; "
                f"valid options are: {', '.join(self.default_options)}"
            )
        given = {
            "inner": inner,
            "index": index,
            "namespace": namespace,
            "reuse": reuse,
            "overwrite": overwrite,
            "hash_key": hash_key,
            "chunk_size": chunk_size,
            "on_index_error": on_index_error,
            "claim_ttl": claim_ttl,
            "wait_timeout": wait_timeout,
            "index_timeout": index_timeout,
        }
        defaults = self.get_default_settings()
        options = {
            name: defaults[name] if value is _UNSET else value for name, value in given.items()
        }
        self._validate_options(options)
        self.inner_config: str | dict[str, Any] = (
            options["inner"] if isinstance(options["inner"], str) else dict(options["inner"])
        )
        self.index_url: str = options["index"]
        self._namespace: str | None = options["namespace"]
        self.reuse: Reuse = options["reuse"]
        self.overwrite: bool = options["overwrite"]
        self._hash_key_option: str | bytes | bool | None = options["hash_key"]
        self.chunk_size: int = options["chunk_size"]
        self.on_index_error: OnIndexError = options["on_index_error"]
        self.claim_ttl = float(options["claim_ttl"])
        self.wait_timeout = float(options["wait_timeout"])
        self.index_timeout = float(options["index_timeout"])
        self._inner_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._inner: Storage | None = None
        self._index: Index | None = None
        self._hasher: ContentHasher | None = None
        self._keeper: ClaimKeeper | None = None
        self._redact_constructor_args()

    # -- configuration -------------------------------------------------------------

    def get_default_settings(self) -> dict[str, Any]:
        """Return each option's default: its ``DEDUPSTORE_*`` setting, else the built-in."""
        return {
            name: getattr(settings, f"DEDUPSTORE_{name.upper()}", default)
            for name, default in self.default_options.items()
        }

    def _validate_options(self, options: dict[str, Any]) -> None:
        cls = type(self).__name__
        inner = options["inner"]
        if inner is None:
            raise ImproperlyConfigured(
                f"{cls} needs 'inner': a STORAGES alias such as 'blobs', or a dict "
                "{'BACKEND': 'dotted.path.Storage', 'OPTIONS': {...}} (or set DEDUPSTORE_INNER)"
            )
        if isinstance(inner, Storage):
            raise ImproperlyConfigured(
                f"{cls}: pass 'inner' as a STORAGES alias or a {{'BACKEND': ..., 'OPTIONS': ...}} "
                f"dict, not a {type(inner).__name__} instance: storages must deconstruct to "
                "plain data for migrations, and the inner storage is built on first use"
            )
        if isinstance(inner, Mapping):
            backend = inner.get("BACKEND")
            if not isinstance(backend, str) or not backend:
                raise ImproperlyConfigured(f"{cls}: the 'inner' dict needs a 'BACKEND' dotted path")
            extra = set(inner) - {"BACKEND", "OPTIONS"}
            if extra:
                raise ImproperlyConfigured(
                    f"{cls}: the 'inner' dict takes only BACKEND and OPTIONS, not {sorted(extra)}"
                )
            if not isinstance(inner.get("OPTIONS", {}), Mapping):
                raise ImproperlyConfigured(f"{cls}: the 'inner' OPTIONS must be a dict")
        elif not isinstance(inner, str) or not inner:
            raise ImproperlyConfigured(
                f"{cls}: 'inner' must be a STORAGES alias or a dict, not {inner!r}"
            )
        validate_index_url(options["index"])
        namespace = options["namespace"]
        if namespace is not None and (not isinstance(namespace, str) or not namespace):
            raise ImproperlyConfigured(f"{cls}: 'namespace' must be a non-empty string or None")
        if options["reuse"] not in REUSE_CHOICES:
            raise ImproperlyConfigured(
                f"{cls}: 'reuse' must be one of {', '.join(REUSE_CHOICES)}, "
                f"not {options['reuse']!r}"
            )
        if not isinstance(options["overwrite"], bool):
            raise ImproperlyConfigured(f"{cls}: 'overwrite' must be True or False")
        hash_key = options["hash_key"]
        if hash_key is True or not isinstance(hash_key, str | bytes | bool | type(None)):
            raise ImproperlyConfigured(
                f"{cls}: 'hash_key' must be a secret string, False (plain BLAKE3) or None "
                "(derive from SECRET_KEY)"
            )
        if isinstance(hash_key, str | bytes) and not hash_key:
            raise ImproperlyConfigured(f"{cls}: 'hash_key' must not be empty")
        chunk_size = options["chunk_size"]
        if not isinstance(chunk_size, int) or isinstance(chunk_size, bool) or chunk_size <= 0:
            raise ImproperlyConfigured(f"{cls}: 'chunk_size' must be a positive number of bytes")
        if options["on_index_error"] not in ON_INDEX_ERROR_CHOICES:
            raise ImproperlyConfigured(
                f"{cls}: 'on_index_error' must be 'raise' or 'bypass', "
                f"not {options['on_index_error']!r}"
            )
        for name in ("claim_ttl", "wait_timeout", "index_timeout"):
            value = options[name]
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ImproperlyConfigured(f"{cls}: '{name}' must be a positive number of seconds")
            if not math.isfinite(value):
                raise ImproperlyConfigured(
                    f"{cls}: '{name}' must be a finite number of seconds, not {value!r}"
                )
        if options["claim_ttl"] < MIN_CLAIM_TTL:
            raise ImproperlyConfigured(
                f"{cls}: 'claim_ttl' must be at least {MIN_CLAIM_TTL} seconds, not "
                f"{options['claim_ttl']!r}: Redis keeps claim lifetimes in whole milliseconds, "
                "and a live writer must renew its claim (every claim_ttl/3) before it lapses. "
                "Use seconds, such as the default 30"
            )

    def _redact_constructor_args(self) -> None:
        """Keep secrets out of ``deconstruct()``, and so out of migration files.

        ``@deconstructible`` records the constructor arguments before ``__init__`` runs and
        replaces any ``deconstruct`` defined in the class body, so the recorded arguments
        themselves are redacted. The result is stable: redacting it again changes nothing.
        """
        args, kwargs = getattr(self, "_constructor_args", ((), {}))
        kwargs = dict(kwargs)
        if isinstance(kwargs.get("hash_key"), str | bytes):
            del kwargs["hash_key"]
        if isinstance(kwargs.get("index"), str):
            kwargs["index"] = mask_url(kwargs["index"])
        if isinstance(kwargs.get("inner"), Mapping):
            kwargs["inner"] = _redact(kwargs["inner"])
        self._constructor_args = (args, kwargs)

    # -- lazily built collaborators ------------------------------------------------

    @property
    def inner(self) -> Storage:
        """Return the wrapped storage, building it on first use."""
        if self._inner is None:
            with self._inner_lock:
                if self._inner is None:
                    self._inner = self._build_inner()
        return self._inner

    def _inner_definition(self) -> dict[str, Any]:
        if isinstance(self.inner_config, dict):
            return self.inner_config
        alias = self.inner_config
        definition = getattr(settings, "STORAGES", {}).get(alias)
        if definition is None:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: inner storage alias {alias!r} is not in "
                f"settings.STORAGES (known aliases: {', '.join(sorted(settings.STORAGES))})"
            )
        return dict(definition)

    def _build_inner(self) -> Storage:
        definition = self._inner_definition()
        try:
            backend = import_string(definition["BACKEND"])
        except ImportError as exc:
            raise ImproperlyConfigured(
                f"{type(self).__name__}: cannot import inner BACKEND "
                f"{definition['BACKEND']!r}: {exc}"
            ) from exc
        if isinstance(backend, type) and issubclass(backend, DedupStorage):
            raise ImproperlyConfigured(
                f"{type(self).__name__}: the inner storage must not be another DedupStorage "
                f"({definition['BACKEND']}); wrap the storage that holds the bytes"
            )
        inner = backend(**definition.get("OPTIONS", {}))
        if not isinstance(inner, Storage):
            raise ImproperlyConfigured(
                f"{type(self).__name__}: inner BACKEND {definition['BACKEND']!r} built a "
                f"{type(inner).__name__}, not a django Storage"
            )
        return inner

    @property
    def namespace(self) -> str:
        """Return the prefix of this storage's index keys.

        The default is derived from where the inner storage keeps its bytes (its backend
        and location options, without credentials, timeouts or URLs), so two storages over
        the same inner storage share reference counts (they must, or one would delete
        objects the other still uses) and storages over different inner storages never
        share objects. Set ``namespace`` explicitly to keep it fixed whatever changes.
        """
        if self._namespace is None:
            identity = _storage_identity(self._inner_definition())
            self._namespace = "dedupstore:" + blake3(identity.encode()).hexdigest()[:16]
        return self._namespace

    @property
    def index(self) -> Index:
        """Return the index client, opening it on first use."""
        if self._index is None:
            # The namespace may build the inner storage (under its own lock): resolve it
            # before taking the index lock, so the two never nest.
            namespace = self.namespace
            with self._index_lock:
                if self._index is None:
                    self._index = open_index(
                        self.index_url,
                        namespace=namespace,
                        socket_timeout=self.index_timeout,
                        wait_timeout=self.wait_timeout,
                    )
                    self._keeper = ClaimKeeper(self._index, self.claim_ttl)
        return self._index

    @property
    def _claim_keeper(self) -> ClaimKeeper:
        self.index  # noqa: B018 - opening the index creates the keeper
        assert self._keeper is not None
        return self._keeper

    @property
    def hasher(self) -> ContentHasher:
        """Return the content hasher, deriving its key on first use."""
        if self._hasher is None:
            self._hasher = ContentHasher(key=self._hash_key(), chunk_size=self.chunk_size)
        return self._hasher

    def _hash_key(self) -> bytes | None:
        return resolve_hash_key(self._hash_key_option)

    # -- pickling and migrations ---------------------------------------------------

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        for client in ("_inner_lock", "_index_lock", "_inner", "_index", "_hasher", "_keeper"):
            state.pop(client, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._inner_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._inner = self._index = self._hasher = self._keeper = None

    # -- saving --------------------------------------------------------------------

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        """Store ``content`` once per distinct content and return the name to keep.

        Identical content returns the name of the object already stored (by the
        ``reuse`` policy) without any call to the inner storage.
        """
        name, content = prepare_save(name, content)
        self._validate_name(name)
        stored = self._save(name, content, max_length)
        validate_file_name(stored, allow_relative_path=True)
        return stored

    def _save(self, name: str, content: File, max_length: int | None = None) -> str:  # type: ignore[override]
        hashed = self.hasher.hash(content)
        try:
            if hashed.size == 0:
                raise EmptyContentError(name)
            return self._save_hashed(name, hashed, max_length)
        finally:
            if hashed.spooled:
                hashed.content.close()

    def _save_hashed(self, name: str, hashed: HashedContent, max_length: int | None) -> str:
        token = secrets.token_hex(16)
        asked = time.monotonic()
        try:
            decision = self._until_decided(
                lambda: self.index.begin_save(
                    digest=hashed.digest,
                    reuse=self.reuse,
                    name=name,
                    max_length=max_length,
                    token=token,
                    claim_ttl=self.claim_ttl,
                    overwrite=self.overwrite,
                ),
                f"content {hashed.digest[:16]}... (saving {name!r})",
            )
        except IndexUnavailable:
            if self.on_index_error == "bypass":
                return self._save_bypassing_index(name, hashed, max_length)
            raise
        if decision.action == "hit":
            return decision.name

        # We hold the claim on this digest: concurrent saves of the same content wait for
        # commit_save() and then reuse our object. The keeper extends the claim while a
        # slow inner write runs; if this process dies, the claim expires after claim_ttl.
        keeper = self._claim_keeper
        keeper.keep(hashed.digest, token)
        since = decision.since
        # Names reserved for our writes (see _reserve_free_name); the commit ends the
        # reservation of the name it records, the others are released at the end.
        reserved: list[str] = []
        stored = ""
        try:
            write = True
            while True:
                if write:
                    stored, replaced = self._write_inner(name, hashed, max_length, token, reserved)
                sent: list[float] = []
                try:
                    # If this raises, the inner object is orphaned (never returned, never
                    # counted); the claim expires and the next save of this content writes
                    # again. A replace commits only while we still hold the record: if we
                    # stalled past claim_ttl and another save took the name over, this
                    # raises ClaimLost instead of overwriting that save's record.
                    outcome = self._commit(hashed, token, stored, replaced, since, asked, sent)
                except IndexUnavailable as exc:
                    self._forget_replaced(replaced, token)
                    raise exc.with_outcome(
                        (_MAYBE_RECORDED if exc.sent else _ORPHANED)
                        + (_REPLACED_GONE if replaced else "")
                        + "."
                    ) from exc
                except BaseException:
                    self._forget_replaced(replaced, token)
                    raise
                if outcome.action == "committed":
                    break
                # The count of finished deletes in outcome.since was read after the commit
                # that answered was sent: the next commit's elapsed time counts from then.
                since, asked = outcome.since, sent[-1]
                if outcome.action == "verify":
                    # The write took so long that the tombstone of a delete of `stored` may
                    # have expired. Our object still exists now (for IPFS: the CID is
                    # pinned), so no delete that finished before the commit that answered
                    # removed it; one that finishes after it is numbered above `since`, and
                    # the next commit sees its tombstone (or waits for it). One exists()
                    # call, and only after a write longer than TOMBSTONE_TTL / 2.
                    write = not self.inner.exists(stored)
                    if not write:
                        continue
                # A delete of `stored` that the index did not track (stored before the
                # wrapper, deleted twice, or the index was lost) ran while we wrote: it may
                # have deleted (unpinned) our very object. Write it again: a
                # content-addressed inner storage pins the same CID again, a named one
                # picks a free name again (our first object, if it survived, is orphaned).
                # "relocate": the name is out of use, so the reservation skips it.
                write = True
                hashed = dataclasses.replace(hashed, content=_rewritable(hashed.content))
        except BaseException:
            self._quietly(lambda: self.index.release_claim(digest=hashed.digest, token=token))
            self._release_names(reserved, token)
            raise
        finally:
            keeper.release(token)
        self._release_names([n for n in reserved if n != stored], token)
        return stored

    def _release_names(self, names: list[str], token: str) -> None:
        """End our reservations of ``names``: our writes to them are over."""
        for reserved_name in names:

            def release(name: str = reserved_name) -> None:
                self.index.release_name(name=name, token=token)

            self._quietly(release)

    def _forget_replaced(self, replaced: str | None, token: str) -> None:
        """After a failed commit: the replaced object is deleted, so forget its name.

        Rather than leave the name locked in "replacing".
        """
        if replaced:
            self._quietly(
                lambda: self.index.abort_replace(name=replaced, token=token, inner_deleted=True)
            )

    def _commit(
        self,
        hashed: HashedContent,
        token: str,
        stored: str,
        replaced: str | None,
        since: int,
        asked: float,
        sent: list[float],
    ) -> CommitDecision:
        """Record ``stored``, waiting while an untracked delete of the name is under way.

        Appends to ``sent`` the time each ask was sent.
        """

        content_addressed = getattr(self.inner, "content_addressed", False)

        def ask() -> CommitDecision:
            sent.append(time.monotonic())
            decision = self.index.commit_save(
                digest=hashed.digest,
                token=token,
                name=stored,
                size=hashed.size,
                replacing=replaced == stored,
                since=since,
                elapsed=sent[-1] - asked,
            )
            if decision.action == "relocate" and content_addressed:
                # The name is out of use for a while and a CID cannot move: wait for it.
                return dataclasses.replace(decision, action="wait")
            return decision

        return self._until_decided(
            ask,
            f"{stored!r} (a delete or replace of it under way)",
            outcome=_ORPHANED[0].lower() + _ORPHANED[1:],
        )

    def _write_inner(
        self,
        name: str,
        hashed: HashedContent,
        max_length: int | None,
        token: str,
        reserved: list[str],
    ) -> tuple[str, str | None]:
        """Write a miss; return the stored name and the name replaced (overwrite), if any.

        A name written without replacing is reserved in the index first (appended to
        ``reserved``), so no other save writes it at the same time.
        """
        inner = self.inner
        if getattr(inner, "content_addressed", False):
            # The inner storage names objects by their content (an IPFS CID): there is no
            # name to choose, keep free or overwrite.
            return inner.save(name, hashed.content, max_length=max_length), None
        replaced = False
        fits = not max_length or len(name) <= max_length
        if self.overwrite and fits and inner.exists(name):
            decision = self._until_decided(
                lambda: self.index.begin_replace(name=name, token=token, digest=hashed.digest),
                repr(name),
            )
            # "shared": other references use this object, it must never change under them.
            # "quarantined": a holder of the name stalled at work on it: write elsewhere.
            # "absent": the index has no record of it, so it may be another save's object,
            # written but not yet committed (or one stored before the wrapper): never
            # replace what the index cannot vouch for. Our claim on hashed.digest, which the
            # keeper renews, is the lease of the "replacing" state: if we die, the record
            # keeps the name's one reference, and the name is out of use for others until
            # our worst case has passed (see docs/internals.md).
            replaced = decision == "replace"
        if not replaced:
            name = self._reserve_free_name(name, max_length, hashed.digest, token, reserved)
            return self._inner_save(name, hashed.content, max_length), None
        # Write the new content first and switch last: until the switch the old object
        # stays readable, and a failed write leaves it, and its count, as they were.
        old_deleted: list[bool] = []
        try:
            stored = self._inner_save(name, hashed.content, max_length)
            if stored != name:
                stored = self._switch_into(name, stored, hashed, max_length, old_deleted)
        except BaseException:
            self._quietly(
                lambda: self.index.abort_replace(
                    name=name, token=token, inner_deleted=bool(old_deleted)
                )
            )
            raise
        if stored != name:
            # The content landed elsewhere after all: the replaced name is simply gone.
            self._quietly(
                lambda: self.index.abort_replace(name=name, token=token, inner_deleted=True)
            )
            return stored, None
        return stored, name

    def _switch_into(
        self,
        name: str,
        written: str,
        hashed: HashedContent,
        max_length: int | None,
        old_deleted: list[bool],
    ) -> str:
        """Put the object ``written`` in place of ``name``; return the name it ends under.

        An inner storage that writes over an existing name (S3, GCS, Azure) made the switch
        with its write and never gets here. One that keeps existing names wrote elsewhere:
        a local one (``path()``) is switched with an atomic rename, so readers see the old
        object or the new, never none. One that can do neither (Appwrite) has the old
        object deleted and the content written again under ``name`` (``old_deleted`` says
        when the old one went): readers find no object meanwhile, and a failure of that
        second write loses the old content, as Django's own replace would.
        """
        inner = self.inner
        try:
            source, target = inner.path(written), inner.path(name)
        except NotImplementedError:
            source = target = ""
        try:
            if source:
                os.replace(source, target)
                return name
            inner.delete(name)
            old_deleted.append(True)
            content = _rewritable(hashed.content)
            with contextlib.suppress(AttributeError, OSError, ValueError):
                content.seek(0)
            stored = self._inner_save(name, content, max_length)
        except BaseException:
            self._quietly(lambda: inner.delete(written))  # would be an orphan
            raise
        self._quietly(lambda: inner.delete(written))  # the first copy, an orphan now
        return stored

    def _reserve_free_name(
        self,
        name: str,
        max_length: int | None,
        digest: str,
        token: str,
        reserved: list[str],
    ) -> str:
        """Return a free name for a miss, reserved in the index for our write.

        ``exists()`` alone cannot keep two saves apart: both see the name free, and on an
        inner storage whose write replaces what the name holds (S3, GCS, Azure,
        ``InMemoryStorage``) the later write wins under the earlier one's record. A name
        another save has reserved (or that has a record, or is out of use after a holder
        stalled) is skipped for an alternative, as ``get_available_name`` skips existing
        names. The reservation is leased by our claim on ``digest``.
        """
        candidate = self._free_name(name, max_length)
        for _attempt in range(MAX_RESERVE_ATTEMPTS):
            if self.index.reserve_name(name=candidate, token=token, digest=digest):
                reserved.append(candidate)
                return candidate
            directory, file_name = posixpath.split(name)
            root, ext = posixpath.splitext(file_name)
            alternative = posixpath.join(directory, self.inner.get_alternative_name(root, ext))
            candidate = self._free_name(alternative, max_length)
        raise SuspiciousFileOperation(
            f"dedupstore: no free name for {name!r} after {MAX_RESERVE_ATTEMPTS} attempts"
        )

    def _save_bypassing_index(
        self, name: str, hashed: HashedContent, max_length: int | None
    ) -> str:
        inner = self.inner
        if getattr(inner, "content_addressed", False):
            # A content-addressed name may already be shared by counted references, so
            # it cannot be handed out untracked.
            raise IndexUnavailable(
                self.index.display_url,
                RuntimeError(
                    "on_index_error='bypass' is impossible with a content-addressed inner storage"
                ),
            )
        logger.warning(
            "dedupstore index %s unavailable: storing %r without deduplication",
            self.index.display_url,
            name,
        )
        name = self._free_name(name, max_length)
        return self._inner_save(name, hashed.content, max_length)

    def _free_name(self, name: str, max_length: int | None) -> str:
        """Return a free name for a miss, in the inner storage's own scheme if it has one."""
        inner = self.inner
        if getattr(inner, "dedupstore_direct_save", False):
            # Such a storage maps names to its own form (Appwrite: <bucket>/<fileId>); its
            # get_available_name makes the one existence check and _save writes there.
            return inner.get_available_name(name, max_length=max_length)
        return self.get_available_name(name, max_length=max_length)

    def _inner_save(self, name: str, content: File, max_length: int | None) -> str:
        """Write ``content`` to the inner storage under ``name``, which is valid and free.

        An inner storage that keeps Django's own ``Storage.save`` would only validate the
        name and look for a free one again (one more ``exists()``: a HEAD request on a
        remote backend) before calling ``_save``, the hook storages implement. Storages
        that override ``save`` itself get ``save``, unless they declare with
        ``dedupstore_direct_save = True`` that their ``_save`` is enough for a free name.
        """
        inner = self.inner
        if type(inner).save is Storage.save or getattr(inner, "dedupstore_direct_save", False):
            return inner._save(name, content)
        return inner.save(name, content, max_length=max_length)

    def _until_decided(self, ask: Callable[[], T], subject: str, outcome: str | None = None) -> T:
        """Repeat ``ask`` while it answers "wait", up to ``wait_timeout`` seconds."""
        started = time.monotonic()
        pause = 0.002
        while True:
            decision = ask()
            action = getattr(decision, "action", decision)
            if action != "wait":
                return decision
            waited = time.monotonic() - started
            if waited >= self.wait_timeout:
                raise ClaimTimeout(subject, waited, outcome)
            retry_after = getattr(decision, "retry_after", pause) or pause
            time.sleep(min(pause, retry_after, self.wait_timeout - waited))
            pause = min(pause * 2, 0.05)

    @staticmethod
    def _quietly(call: Callable[[], object]) -> None:
        """Run a clean-up call whose failure must not hide the original error."""
        try:
            call()
        except Exception:
            logger.warning("dedupstore clean-up failed", exc_info=True)

    # -- deleting ------------------------------------------------------------------

    def delete(self, name: str) -> None:
        """Drop one reference to ``name``; delete the inner object with the last one."""
        self._validate_name(name)
        token = secrets.token_hex(16)
        decision = self._until_decided(
            lambda: self.index.begin_delete(name=name, token=token, claim_ttl=self.claim_ttl),
            repr(name),
        )
        if decision.action in ("kept", "done"):
            # "done": a run whose reply was lost dropped our reference, and the name was
            # taken over while its lease lapsed: the inner object is someone else's now.
            return
        # "delete": the last reference went, and we hold the content's claim. "unknown":
        # the index has no record of the name (stored before the wrapper, deleted already,
        # or the index was lost), so nobody holds a counted reference to it; we hold a
        # tombstone on the name, so a save that wrote this very name meanwhile does not
        # commit it but writes again. Either lease is kept alive while the inner delete runs.
        keeper = self._claim_keeper
        keeper.keep(decision.digest, token)
        try:
            try:
                with contextlib.suppress(FileNotFoundError):
                    self.inner.delete(name)
            except Exception as exc:
                # The inner error keeps its type (callers catch PermissionError, OSError,
                # ...); the note tells them what the index did, since a blind retry is not
                # always safe.
                exc.add_note(_failed_inner_delete_note(name, tracked=decision.action == "delete"))
                raise
            try:
                self.index.commit_delete(name=name, digest=decision.digest, token=token)
            except IndexUnavailable as exc:
                # commit_delete already retried within wait_timeout. Our reference was
                # dropped by begin_delete: a retried delete() would drop another one (a
                # save may take the free name meanwhile), so it must not be invited.
                raise exc.with_outcome(
                    "The inner object was deleted and the reference dropped, but the index "
                    "could not record the deletion: do not retry this delete (a retry would "
                    "drop a reference saved under the name meanwhile). The name stays marked "
                    "as being deleted, with no references, until the next save or delete() "
                    "of it completes that."
                ) from exc
        except BaseException:
            # The record stays in "deleting" with no references: no save reuses it; the
            # next delete() of the name retries the inner delete, and a save of the name
            # finishes the deletion instead of reviving the record. (An untracked name's
            # tombstone stays too, with its lease gone: a save of the name writes again
            # rather than trust its object, the next delete() takes it over.)
            # An inner delete that raised (a timeout, say) may still land: our lease lapses
            # unseen, so the next takeover of the name fences it (see docs/internals.md).
            self._quietly(lambda: self.index.release_claim(digest=decision.digest, token=token))
            raise
        finally:
            keeper.release(token)

    # -- reading: delegated, and independent of the index ------------------------

    @staticmethod
    def _validate_name(name: str) -> None:
        if not isinstance(name, str) or not name:
            raise SuspiciousFileOperation(f"Invalid file name: {name!r}")
        validate_file_name(name, allow_relative_path=True)
        # The index is keyed by name: an alias such as "a//b.txt" or "a/./b.txt" that the
        # inner storage resolves to "a/b.txt" would reach a counted object untracked.
        if posixpath.normpath(name) != name:
            raise SuspiciousFileOperation(
                f"File name {name!r} is not in normal form; use {posixpath.normpath(name)!r}"
            )

    def _open(self, name: str, mode: str = "rb") -> File:
        self._validate_name(name)
        return self.inner.open(name, mode)

    def exists(self, name: str) -> bool:
        self._validate_name(name)
        return self.inner.exists(name)

    def size(self, name: str) -> int:
        self._validate_name(name)
        return self.inner.size(name)

    def url(self, name: str | None) -> str:
        if name is not None:
            self._validate_name(name)
        return self.inner.url(name)

    def path(self, name: str) -> str:
        self._validate_name(name)
        return self.inner.path(name)

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        if path:
            # "dir/" names the directory "dir"; only "/" itself (absolute) strips to nothing.
            stripped = path.rstrip("/")
            if not stripped:
                raise SuspiciousFileOperation(f"Detected path traversal attempt in {path!r}")
            validate_file_name(stripped, allow_relative_path=True)
            path = stripped
        return self.inner.listdir(path)

    def get_accessed_time(self, name: str) -> datetime:
        self._validate_name(name)
        return self.inner.get_accessed_time(name)

    def get_created_time(self, name: str) -> datetime:
        self._validate_name(name)
        return self.inner.get_created_time(name)

    def get_modified_time(self, name: str) -> datetime:
        self._validate_name(name)
        return self.inner.get_modified_time(name)

    def get_valid_name(self, name: str) -> str:
        return self.inner.get_valid_name(name)

    def generate_filename(self, filename: str) -> str:
        return self.inner.generate_filename(filename)

    # -- introspection ---------------------------------------------------------------

    def references(self, name: str) -> int:
        """Return how many references the index counts for ``name`` (0 if unknown)."""
        record = self.index.lookup(name)
        # A 'replacing' record counts the one reference of the name being replaced (a dead
        # replacer's still does: a delete() drops it, a save of the name adds to it); a
        # 'deleting' one has none left.
        return record.refs if record else 0

    def digest(self, content: File | IO[bytes]) -> str:
        """Return the digest this storage computes for ``content``."""
        if not hasattr(content, "chunks"):
            content = File(content)
        return self.hasher.hash(cast(File, content)).digest
