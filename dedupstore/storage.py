"""``DedupStorage``: make any Django storage content-addressed and deduplicated."""

from __future__ import annotations

import inspect
import logging
import os
import posixpath
import threading
import time
import unicodedata
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import IO, Any, Literal, Protocol, TypeVar, cast

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import File
from django.core.files.storage import Storage
from django.core.files.utils import validate_file_name
from django.core.signals import setting_changed
from django.utils.deconstruct import deconstructible
from django.utils.module_loading import import_string

from dedupstore import naming
from dedupstore.deleting import DeleteAttempt
from dedupstore.exceptions import ClaimTimeout, IndexUnavailable
from dedupstore.hashing import ContentHasher, HashedContent, resolve_hash_key
from dedupstore.index import Index, open_index
from dedupstore.index.base import ClaimKeeper
from dedupstore.namespace import default_namespace
from dedupstore.options import (
    DEDUP_OPTIONS,
    UNSET,
    OptionTable,
    is_secret_option,
    redact,
    redact_text,
)
from dedupstore.protocol import DedupBackend, backend_of
from dedupstore.saving import SaveAttempt, confirmed_hit
from dedupstore.scopes import content_key, inner_reuse_scope, own_reuse_scope
from dedupstore.utils import prepare_save, refuse_write_mode

__all__ = ["DedupStorage"]

logger = logging.getLogger("dedupstore")


class _Decision(Protocol):
    """What every index decision has: an action (most have a ``retry_after`` too)."""

    @property
    def action(self) -> str: ...


T = TypeVar("T", bound=_Decision)
Reuse = Literal["content", "name", "never"]
OnIndexError = Literal["raise", "bypass"]

_UNSET: Any = UNSET
# The redaction helpers live in dedupstore.options; these names stay for old imports.
_redact = redact
_redact_text = redact_text
_is_secret_option = is_secret_option
#: Settings that can move where an inner storage keeps its bytes.
_LOCATION_SETTINGS = frozenset({"MEDIA_ROOT", "STORAGES"})
_LOCATION_PREFIXES = ("AWS_", "GS_", "AZURE_", "APPWRITE_", "IPFS_")


#: Attributes a pickle leaves out: clients, and what the options resolve to.
_UNPICKLED_ATTRIBUTES = (
    "_inner_lock",
    "_index_lock",
    "_inner",
    "_backend",
    "_index",
    "_hasher",
    "_keeper",
    "inner_config",
    "index_url",
    "_hash_key_option",
    "_namespace",
    "_namespace_option",
    "_derived_namespace",
    "_constructed",
)


def _configured_storage(alias: str) -> Storage:
    """Return the storage ``settings.STORAGES[alias]`` configures (unpickling)."""
    from django.core.files.storage import storages

    return storages[alias]


def _check_relative_name(name: str) -> None:
    """Raise ``SuspiciousFileOperation`` unless ``name`` is a relative name in normal form.

    What Django's ``validate_file_name(name, allow_relative_path=True)`` accepts, less the
    aliases ``posixpath.normpath`` would resolve; without building a ``PurePosixPath`` on
    the hit path.
    """
    if posixpath.normpath(name) == name and not (
        name.startswith(("/", "../")) or name in (".", "..")
    ):
        return
    validate_file_name(name, allow_relative_path=True)  # Django's own message first
    # The index is keyed by name: an alias such as "a//b.txt" or "a/./b.txt" that the
    # inner storage resolves to "a/b.txt" would reach a counted object untracked.
    raise SuspiciousFileOperation(
        f"File name {name!r} is not in normal form; use {posixpath.normpath(name)!r}"
    )


def _exposed(name: str) -> bool:
    """Tell whether an inner storage's attribute ``name`` may be read through the wrapper.

    Private names are not, nor the hooks of ``dedupstore.protocol``: they describe the
    inner storage to the wrapper, not the wrapper to its users.
    """
    return (
        not name.startswith("_")
        and name != "content_addressed"
        and not (name.startswith("dedupstore_"))
    )


def _inner_data_attribute(inner: Storage, name: str) -> bool:
    """Tell whether ``inner`` has ``name`` as a data attribute (not a method).

    Looked up statically, so a lazily computed value (a cached property) is not computed.
    """
    found = inspect.getattr_static(inner, name, _UNSET)
    return found is not _UNSET and not callable(found)


class _DedupStorageType(type):
    """Mark a storage as constructed once every ``__init__`` in its class chain returned.

    From then on, setting an attribute that only the inner storage has sets it there.
    """

    def __call__(cls, *args: Any, **kwargs: Any) -> Any:
        storage = super().__call__(*args, **kwargs)
        object.__setattr__(storage, "_constructed", True)
        return storage


@deconstructible(path="dedupstore.DedupStorage")
class DedupStorage(Storage, metaclass=_DedupStorageType):
    """Wrap another storage so identical content is stored once and reference-counted.

    Every option is a keyword argument (so ``STORAGES[...]["OPTIONS"]`` works) with a
    ``DEDUPSTORE_<OPTION>`` setting as fallback. Only plain data is accepted: the inner
    storage and the index client are built on first use.

    The inner storage's public data attributes (``location``, ``base_url``,
    ``file_permissions_mode``...) read, and once built set, through the wrapper.
    """

    #: The options: name, setting (``DEDUPSTORE_<NAME>``), default, validator, secret?
    options_table: OptionTable = DEDUP_OPTIONS
    #: option name -> built-in default.
    default_options: Mapping[str, Any] = {option.name: option.default for option in DEDUP_OPTIONS}

    def __init__(self, **options: Any) -> None:
        unknown = self.options_table.unknown(options)
        if unknown:
            raise ImproperlyConfigured(
                f"{type(self).__name__} got unknown option(s) {', '.join(unknown)}; "
                f"valid options are: {', '.join(self.options_table.names)}"
            )
        #: The options passed explicitly: a pickle keeps these, the rest is read again.
        self._given_options = self.options_table.given(options)
        options = self.options_table.resolve(self._given_options, type(self).__name__)
        self.inner_config: str | dict[str, Any] = options["inner"]
        self.index_url: str = options["index"]
        #: The explicit namespace (a subclass may set one too), else None: derived.
        self._namespace: str | None = options["namespace"]
        self._namespace_option: str | None = options["namespace"]
        self._derived_namespace: str | None = None
        self.reuse: Reuse = options["reuse"]
        #: "extension", "directory", "any" or the dotted path of a callable name -> str.
        self.reuse_scope: str = options["reuse_scope"]
        self.overwrite: bool = options["overwrite"]
        self._hash_key_option: str | bytes | bool | None = options["hash_key"]
        self.chunk_size: int = options["chunk_size"]
        self.on_index_error: OnIndexError = options["on_index_error"]
        self.claim_ttl: float = options["claim_ttl"]
        self.wait_timeout: float = options["wait_timeout"]
        self.index_timeout: float = options["index_timeout"]
        self.index_wait_replicas: int | None = options["index_wait_replicas"]
        self.verify_hits: bool = options["verify_hits"]
        #: Ask the database before an inner object goes (see dedupstore.liveset).
        self.db_guard: bool = options["db_guard"]
        self._inner_lock = threading.Lock()
        self._index_lock = threading.Lock()
        self._inner: Storage | None = None
        self._backend: tuple[Storage, DedupBackend] | None = None
        self._index: Index | None = None
        self._hasher: ContentHasher | None = None
        self._keeper: ClaimKeeper | None = None
        self._redact_constructor_args()
        # A derived namespace follows the settings the inner location depends on
        # (override_settings(MEDIA_ROOT=...) in tests); the receiver is held weakly.
        setting_changed.connect(self._location_setting_changed)

    # -- configuration -------------------------------------------------------------

    def get_default_settings(self) -> dict[str, Any]:
        """Return each option's default: its ``DEDUPSTORE_*`` setting, else the built-in."""
        return self.options_table.defaults()

    def _redact_constructor_args(self) -> None:
        """Keep secrets out of ``deconstruct()``, and so out of migration files.

        ``@deconstructible`` records the constructor arguments before ``__init__`` runs and
        replaces any ``deconstruct`` defined in the class body, so the recorded arguments
        themselves are redacted.
        """
        args, kwargs = getattr(self, "_constructor_args", ((), {}))
        self._constructor_args = (args, self.options_table.redact_constructor_args(kwargs))

    # -- lazily built collaborators ------------------------------------------------

    @property
    def inner(self) -> Storage:
        """Return the wrapped storage, building it on first use."""
        if self._inner is None:
            with self._inner_lock:
                if self._inner is None:
                    self._inner = self._build_inner()
        return self._inner

    @property
    def backend(self) -> DedupBackend:
        """Return the inner storage as a ``DedupBackend`` (``dedupstore.protocol``)."""
        inner = self.inner
        cached = self._backend
        if cached is None or cached[0] is not inner:
            cached = self._backend = (inner, backend_of(inner))
        return cached[1]

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

        Derived by default from where the inner storage keeps its bytes (never from
        credentials, URLs or tuning), so storages over the same bytes share reference
        counts and others never share objects; see ``dedupstore.namespace``.
        """
        if self._namespace is not None:
            return self._namespace
        derived = self._derived_namespace
        if derived is None:
            derived = default_namespace(self.inner, owner=type(self).__name__)
            self._derived_namespace = derived
        return derived

    def _location_setting_changed(self, *, setting: str, **kwargs: Any) -> None:
        """Derive the namespace (and open the index) again after a location setting changed.

        Django's storages re-read such settings themselves (``FileSystemStorage`` its
        ``location``), so the index must not keep counting under the old location.
        """
        if setting not in _LOCATION_SETTINGS and not setting.startswith(_LOCATION_PREFIXES):
            return
        if setting == "STORAGES" and isinstance(self.inner_config, str):
            with self._inner_lock:
                self._inner = None
        if self._namespace is None:
            with self._index_lock:
                self._derived_namespace = None
                self._index = None
                self._keeper = None

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
                        wait_replicas=self.index_wait_replicas,
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

    def __reduce_ex__(self, protocol: Any) -> Any:
        """Pickle a storage of ``settings.STORAGES`` as its alias, so it holds no option.

        Unpickled, it is that alias's storage in the unpickling process. Any other storage
        pickles its explicitly passed options (``__getstate__``).
        """
        from django.core.files.storage import storages

        for alias, storage in list(getattr(storages, "_storages", {}).items()):
            if storage is self:
                return (_configured_storage, (alias,))
        return super().__reduce_ex__(protocol)

    def __getstate__(self) -> dict[str, Any]:
        """Keep only the options passed explicitly: those from settings are read again.

        The clients, the inner storage and every value resolved from ``DEDUPSTORE_*``
        settings (the index URL with its password, ``hash_key``) stay out of the pickle.
        """
        state = self.__dict__.copy()
        for derived in _UNPICKLED_ATTRIBUTES:
            state.pop(derived, None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        # Resolve the options again, from the explicit ones and this process's settings.
        DedupStorage.__init__(self, **state.get("_given_options", {}))
        object.__setattr__(self, "_constructed", True)

    # -- the inner storage's attributes ----------------------------------------------

    def __getattr__(self, name: str) -> Any:
        """Read a public data attribute of the inner storage (``location``, ``base_url``...).

        Only names the wrapper lacks get here. Methods are not exposed (an inner method
        that writes would bypass the index): call them on ``inner``.
        """
        # Nothing is forwarded before __init__ has set the configuration (unpickling,
        # copying): the inner storage could not be built yet.
        if _exposed(name) and "inner_config" in self.__dict__:
            inner = self.inner
            if _inner_data_attribute(inner, name):
                return getattr(inner, name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        """Set an attribute that only the inner storage has on the inner storage.

        The wrapper's own attributes, and every attribute set while it is constructed,
        stay the wrapper's.
        """
        if (
            self.__dict__.get("_constructed")
            and _exposed(name)
            and name not in self.__dict__
            and not hasattr(type(self), name)
            and _inner_data_attribute(self.inner, name)
        ):
            setattr(self.inner, name, value)
            return
        super().__setattr__(name, value)

    # -- saving --------------------------------------------------------------------

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        """Store ``content`` once per distinct content and return the name to keep.

        Identical content returns the name of the object already stored (by the
        ``reuse`` policy) without any call to the inner storage.
        """
        name, content = prepare_save(name, content, validate_name=False)
        name = self._validate_name(name)
        stored = self._save(name, content, max_length)
        _check_relative_name(stored)
        return stored

    def _save(self, name: str, content: File, max_length: int | None = None) -> str:
        if self.overwrite and not self.backend.content_addressed:
            # As FileSystemStorage(allow_overwrite=True) does: a name too long for the
            # field is shortened, and then replaced like any other.
            name = naming.truncate_to_fit(name, max_length)
        # Empty content is stored like any other: all empty files share one object.
        hashed = self.hasher.hash(content)
        try:
            # The index sees the content key, not the bare digest: claims, the record and
            # the content-map entry of this save all belong to the name's scope. A miss
            # checks its write against the plain digest (see saving.checked_content).
            keyed = hashed.keyed(self._content_key(name, hashed.digest))
            return self._save_hashed(name, keyed, max_length)
        finally:
            if hashed.spooled:
                hashed.content.close()

    def _save_hashed(
        self, name: str, hashed: HashedContent, max_length: int | None, reuse: Reuse | None = None
    ) -> str:
        """Save ``hashed``, whose ``digest`` is already the content key of ``name``."""
        return SaveAttempt(self, name, hashed, max_length, reuse).run()

    def _confirmed_hit(
        self, stored: str, name: str, hashed: HashedContent, max_length: int | None
    ) -> str:
        """Return ``stored``, a hit, once the inner storage confirms its object exists."""
        return confirmed_hit(self, stored, name, hashed, max_length)

    # -- naming: the inner storage's hooks, never to overwrite -------------------------

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        """Return a name that is free in the inner storage, chosen by its own hooks.

        The inner ``get_available_name`` answers, unless it may hand out a taken name
        (``allow_overwrite=True``, ``file_overwrite=True``, ``OS_OPEN_FLAGS`` without
        ``O_EXCL``) or its answer is taken: then Django's algorithm runs with this
        storage's ``is_name_available`` and ``get_alternative_name``, which never give a
        taken name. A new object never replaces one that other references share.
        """
        name = os.fspath(name)
        inner = self.inner
        if not naming.inner_may_overwrite(inner):
            candidate = inner.get_available_name(name, max_length=max_length)
            if naming.inner_names_are_free(inner) or self._is_free(candidate, max_length):
                return candidate
        return super().get_available_name(name, max_length=max_length)

    def get_alternative_name(self, file_root: str, file_ext: str) -> str:
        """Return the inner storage's alternative name, unless it is the same name."""
        alternative = self.inner.get_alternative_name(file_root, file_ext)
        if alternative == f"{file_root}{file_ext}":
            # FileSystemStorage(allow_overwrite=True) gives the name itself, to overwrite.
            return super().get_alternative_name(file_root, file_ext)
        return alternative

    def is_name_available(self, name: str, max_length: int | None = None) -> bool:
        """Tell whether ``name`` fits and is free, by the inner storage's test if it has one.

        An inner storage that overwrites calls taken names available: for it, a name is
        available only when nothing is stored under it.
        """
        inner = self.inner
        inner_test = getattr(inner, "is_name_available", None)
        if inner_test is None or naming.inner_may_overwrite(inner):
            return self._is_free(name, max_length)
        return bool(inner_test(name, max_length=max_length))

    def _is_free(self, name: str, max_length: int | None) -> bool:
        return not (max_length and len(name) > max_length) and not self.inner.exists(name)

    def _until_decided(self, ask: Callable[[], T], subject: str, outcome: str | None = None) -> T:
        """Repeat ``ask`` while it answers "wait", up to ``wait_timeout`` seconds."""
        started = time.monotonic()
        pause = 0.002
        while True:
            decision = ask()
            if decision.action != "wait":
                return decision
            waited = time.monotonic() - started
            if waited >= self.wait_timeout:
                raise ClaimTimeout(subject, waited, outcome)
            # How soon the index expects the wait to end, where it can tell (not replaces).
            retry_after = getattr(decision, "retry_after", 0.0) or pause
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
        if not name:
            raise ValueError("The name must be given to delete().")
        DeleteAttempt(self, self._validate_name(name)).run()

    # -- reading: delegated, and independent of the index ------------------------

    @staticmethod
    def _validate_name(name: Any) -> str:
        """Return ``name`` in the one form every method uses, or raise ``SuspiciousFileOperation``.

        A ``pathlib.Path`` is accepted as Django does; backslashes become slashes (as in
        Django's ``get_available_name``) and the name is put in Unicode NFC, in every
        method alike, so no spelling of a name reaches another object than ``save()``
        recorded.
        """
        if isinstance(name, os.PathLike):
            name = os.fspath(name)
        if not isinstance(name, str) or not name:
            raise SuspiciousFileOperation(f"Invalid file name: {name!r}")
        if "\x00" in name:
            raise SuspiciousFileOperation(f"File name {name!r} contains a NUL byte")
        if "\\" in name:
            name = name.replace("\\", "/")
        if not name.isascii():
            name = unicodedata.normalize("NFC", name)
        _check_relative_name(name)
        return name

    def open(self, name: str, mode: str = "rb") -> File:
        """Open ``name`` for reading; write modes are refused (stored objects are shared)."""
        name = self._validate_name(name)
        refuse_write_mode(name, mode, type(self).__name__)
        return self._open(name, mode)

    def _open(self, name: str, mode: str = "rb") -> File:
        name = self._validate_name(name)
        refuse_write_mode(name, mode, type(self).__name__)
        return self.inner.open(name, mode)

    def exists(self, name: str) -> bool:
        return self.inner.exists(self._validate_name(name))

    def size(self, name: str) -> int:
        return self.inner.size(self._validate_name(name))

    def url(self, name: str | None, *args: Any, **kwargs: Any) -> str:
        """Return the inner storage's URL for ``name``, with its extra arguments.

        Leading slashes are dropped as Django's ``FileSystemStorage`` drops them, so an
        old name such as ``/logo.png`` still renders; ``..`` is refused. Extra arguments
        (django-storages' ``parameters``, ``expire``, ``http_method``) go to the inner
        ``url()``.
        """
        if name is not None:
            name = naming.url_name(name)
            # The spelling save() recorded (NFC), but no refusal of what a link may hold:
            # Django percent-encodes a NUL, and "" (or "/") is the base URL.
            if not name.isascii():
                name = unicodedata.normalize("NFC", name)
        return self.inner.url(name, *args, **kwargs)

    def path(self, name: str) -> str:
        return self.inner.path(self._validate_name(name))

    def listdir(self, path: str) -> tuple[list[str], list[str]]:
        if isinstance(path, os.PathLike):
            path = os.fspath(path)
        if path and path != ".":
            # "dir/" names the directory "dir"; only "/" itself (absolute) strips to nothing.
            stripped = path.rstrip("/")
            if not stripped:
                raise SuspiciousFileOperation(f"Detected path traversal attempt in {path!r}")
            path = self._validate_name(stripped)
        else:
            path = ""
        return self.inner.listdir(path)

    def get_accessed_time(self, name: str) -> datetime:
        return self.inner.get_accessed_time(self._validate_name(name))

    def get_created_time(self, name: str) -> datetime:
        return self.inner.get_created_time(self._validate_name(name))

    def get_modified_time(self, name: str) -> datetime:
        return self.inner.get_modified_time(self._validate_name(name))

    def get_valid_name(self, name: str) -> str:
        return self.inner.get_valid_name(name)

    def generate_filename(self, filename: str | os.PathLike[str]) -> str:
        return self.inner.generate_filename(filename)

    # -- introspection ---------------------------------------------------------------

    def references(self, name: str) -> int:
        """Return how many references the index counts for ``name`` (0 if unknown)."""
        name = self._validate_name(name)
        try:
            record = self.index.lookup(name)
        except IndexUnavailable as exc:
            raise exc.with_outcome(
                f"Could not read the reference count of {name!r} from the index; nothing "
                "was changed."
            ) from exc
        # A 'replacing' record counts the one reference of the name being replaced (a dead
        # replacer's still does: a delete() drops it, a save of the name adds to it); a
        # 'deleting' one has none left.
        return record.refs if record else 0

    def digest(self, content: File | IO[bytes]) -> str:
        """Return the digest this storage computes for ``content``."""
        if not hasattr(content, "chunks"):
            content = File(content)
        return self.hasher.hash(cast(File, content)).digest

    def content_key(self, name: str, content: File | IO[bytes]) -> str:
        """Return the key the index files ``content`` under when it is saved as ``name``.

        It is the digest qualified by the reuse scope of ``name`` (``reuse_scope`` and the
        inner storage's own boundary), and the digest itself when both are empty. Claims,
        the content map and ``ObjectRecord.digest`` hold this key.
        """
        return self._content_key(name, self.digest(content))

    def _content_key_of_stored(self, name: str) -> tuple[str, int]:
        """Hash the stored object of ``name``; return its content key and size (or '', 0)."""
        try:
            with self.inner.open(name, "rb") as stored:
                hashed = self.hasher.hash(stored)
        except FileNotFoundError:
            return "", 0
        try:
            return self._content_key(name, hashed.digest), hashed.size
        finally:
            if hashed.spooled:
                hashed.content.close()

    def _content_key(self, name: str, digest: str) -> str:
        inner = self.inner
        # Over a content-addressed storage the name is the content (a CID anyone can
        # compute): a scope would hide nothing and turn every cross-scope hit into a write.
        scope = (
            ""
            if self.backend.content_addressed
            else own_reuse_scope(self.reuse_scope, name, type(self).__name__)
        )
        return content_key(digest, scope, inner_reuse_scope(inner, name))
