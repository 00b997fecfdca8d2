"""Reuse scopes: the boundary inside which a save may be handed an object already stored.

A save is a *hit* when the index already holds the same content: the caller is handed the
name of the object stored before, without a write. ``DedupStorage``'s ``reuse_scope``
option confines hits to names alike in one respect (``"extension"``, ``"directory"``, a
tenant computed by a callable, or ``"any"``), and an inner storage's
``dedupstore_reuse_scope(name)`` hook (see ``dedupstore.protocol``) adds its own boundary
on top (Appwrite: the bucket).

The index never sees a scope. It files content under a *content key*: the content's
digest when the combined scope is empty, else the digest, ``+`` and a 128-bit BLAKE3 hash
of the scope. Claims, object records and the content map all use that key, so content
saved in two scopes is two entries of the content map and two objects; a hit (with
``reuse="content"`` or ``reuse="name"``) needs an equal key, hence an equal scope.
"""

from __future__ import annotations

import functools
import posixpath
from collections.abc import Callable
from typing import Any, cast

from blake3 import blake3
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage
from django.utils.module_loading import import_string

from dedupstore.protocol import backend_of

__all__ = [
    "CONTENT_KEY_SEPARATOR",
    "REUSE_SCOPE_CHOICES",
    "content_key",
    "digest_of",
    "extension_of",
    "inner_reuse_scope",
    "own_reuse_scope",
    "validate_reuse_scope",
]

#: The named values of ``reuse_scope``; any other value is the dotted path of a callable.
REUSE_SCOPE_CHOICES = ("extension", "directory", "any")
#: Joins a digest and the hash of its scope in a content key. Digests are lowercase hex,
#: so a key splits unambiguously at it.
CONTENT_KEY_SEPARATOR = "+"
#: Hex digits of the scope hash: 128 bits, so no two scopes share a key by accident, and
#: finding a scope (an extension, a tenant) that collides with another is infeasible.
_SCOPE_HASH_HEX = 32


def validate_reuse_scope(value: Any, owner: str) -> None:
    """Raise ``ImproperlyConfigured`` unless ``value`` is a valid ``reuse_scope``."""
    if callable(value) and not isinstance(value, str):
        raise ImproperlyConfigured(
            f"{owner}: pass 'reuse_scope' as the dotted path of the callable "
            f"({getattr(value, '__module__', '?')}.{getattr(value, '__qualname__', '?')}), "
            "not the callable itself: storages must deconstruct to plain data for migrations"
        )
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(f"{owner}: {_expected('reuse_scope')}, not {value!r}")
    if value in REUSE_SCOPE_CHOICES:
        return
    if "." not in value.strip("."):
        raise ImproperlyConfigured(f"{owner}: {_expected('reuse_scope')}, not {value!r}")
    _scope_function(value, owner)


def _expected(option: str) -> str:
    return (
        f"'{option}' must be one of {', '.join(map(repr, REUSE_SCOPE_CHOICES))} or the dotted "
        "path of a callable that takes a name and returns its scope (a str)"
    )


def _scope_function(path: str, owner: str) -> Callable[[str], Any]:
    """Import the callable ``path`` names (``import_string`` caches the module lookup)."""
    try:
        function = import_string(path)
    except ImportError as exc:
        raise ImproperlyConfigured(
            f"{owner}: cannot import the 'reuse_scope' callable {path!r}: {exc}"
        ) from exc
    if not callable(function):
        raise ImproperlyConfigured(
            f"{owner}: 'reuse_scope' {path!r} is a {type(function).__name__}, not a callable"
        )
    return cast(Callable[[str], Any], function)


@functools.lru_cache(maxsize=4096)  # a pure function of the name, on every save's path
def extension_of(name: str) -> str:
    """Return the extension of ``name`` as Django's naming sees it, case-folded.

    That is every suffix of the file name (``.tar.gz``), as ``get_available_name`` keeps
    them when it picks an alternative name (``"".join(PurePosixPath(name).suffixes)``);
    ``""`` for none (``README``, ``.bashrc``, ``notes.``). String operations rather than
    ``PurePosixPath``: this runs on every save, hits included.
    """
    file_name = name.rpartition("/")[2]
    if file_name.endswith("."):
        return ""
    _stem, dot, suffixes = file_name.lstrip(".").partition(".")
    return (dot + suffixes).casefold()


def own_reuse_scope(option: str, name: str, owner: str) -> str:
    """Return the scope ``reuse_scope=option`` gives ``name``; ``""`` for none.

    Each kind is tagged, so two storages with different options over one index never
    share a scope by accident (a tenant called ``.pdf`` is not the extension ``.pdf``).
    """
    if option == "extension":
        return "extension:" + extension_of(name)
    if option == "directory":
        return "directory:" + posixpath.dirname(name)
    if option == "any":
        return ""
    value = _scope_function(option, owner)(name)
    if not isinstance(value, str):
        raise ImproperlyConfigured(
            f"{owner}: the 'reuse_scope' callable {option!r} returned {value!r} for "
            f"{name!r}; it must return a str"
        )
    # Even "" is a scope of its own here: a tenant function that returns "" for some
    # names must not open them to storages configured with reuse_scope="any".
    return "callable:" + value


def inner_reuse_scope(inner: object, name: str) -> str:
    """Return the inner storage's own boundary for ``name`` (its hook); ``""`` for none."""
    value = backend_of(cast(Storage, inner)).dedupstore_reuse_scope(name)
    if not isinstance(value, str):
        raise TypeError(
            f"{type(inner).__name__}.dedupstore_reuse_scope({name!r}) returned {value!r}; "
            "it must return a str ('' for no boundary)"
        )
    return value


def content_key(digest: str, scope: str, inner_scope: str) -> str:
    """Return the key under which the index files ``digest`` saved in the given scopes.

    With neither scope it is the digest itself, as records written before reuse scopes
    existed are keyed.
    """
    if not scope and not inner_scope:
        return digest
    return f"{digest}{CONTENT_KEY_SEPARATOR}{_scope_hash(scope, inner_scope)}"


@functools.lru_cache(maxsize=4096)
def _scope_hash(scope: str, inner_scope: str) -> str:
    # Length-prefixed, so no two pairs of scopes encode alike.
    encoded = f"{len(scope)}:{scope}{inner_scope}".encode("utf-8", "surrogatepass")
    return blake3(encoded).hexdigest()[:_SCOPE_HASH_HEX]


def digest_of(key: str) -> str:
    """Return the content digest a content key (or ``ObjectRecord.digest``) qualifies."""
    return key.partition(CONTENT_KEY_SEPARATOR)[0]
