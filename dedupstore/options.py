"""Storage options: one declaration each, one resolver, and the redaction of secrets.

Every storage of the project declares its options once, as an ``OptionTable`` of
``Option`` rows (name, Django settings, default, validator, secret?), and resolves them
the one way: the constructor keyword, else the first Django setting that is set, else the
default (as django-storages' ``BaseStorage`` and ``setting()`` do).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import Storage

from dedupstore.hashing import DEFAULT_CHUNK_SIZE
from dedupstore.index import mask_url, validate_index_url
from dedupstore.scopes import validate_reuse_scope

__all__ = [
    "DEDUP_OPTIONS",
    "UNSET",
    "Option",
    "OptionTable",
    "is_secret_option",
    "redact",
    "redact_text",
    "setting",
]

#: A keyword nobody passed (``None`` is a value for several options).
UNSET: Any = object()
#: The shortest claim lifetime accepted, in seconds.
MIN_CLAIM_TTL = 0.01
REUSE_CHOICES = ("content", "name", "never")
ON_INDEX_ERROR_CHOICES = ("raise", "bypass")

#: ``validate(value, owner, source)`` returns the value to keep or raises
#: ``ImproperlyConfigured``; ``owner`` is the storage's class name, ``source`` the keyword
#: or setting the value came from (``"the default"`` for the built-in one).
Validator = Callable[[Any, str, str], Any]


def setting(name: str, default: Any = None) -> Any:
    """Return the Django setting ``name``, or ``default`` when it is not set."""
    return getattr(settings, name, default)


@dataclass(frozen=True)
class Option:
    """One constructor keyword of a storage."""

    name: str
    #: Django settings it falls back to, first set wins.
    settings: tuple[str, ...]
    default: Any = None
    validate: Validator | None = None
    #: Kept out of ``deconstruct()`` (and so out of migration files) unless a bool.
    secret: bool = False
    #: Applied to the value ``deconstruct()`` records (a URL's password masked, say).
    redact: Callable[[Any], Any] | None = None


class OptionTable:
    """The options of one storage class, resolved keyword > setting > default."""

    def __init__(self, *options: Option, none_is_unset: bool = False) -> None:
        self._options = {option.name: option for option in options}
        #: ``None`` as a keyword or a setting means "not given" (the IPFS storage's scheme).
        self.none_is_unset = none_is_unset

    def __iter__(self) -> Iterator[Option]:
        return iter(self._options.values())

    def __contains__(self, name: object) -> bool:
        return name in self._options

    def __getitem__(self, name: str) -> Option:
        return self._options[name]

    @property
    def names(self) -> list[str]:
        return list(self._options)

    def given(self, keywords: Mapping[str, Any]) -> dict[str, Any]:
        """Return the keywords actually passed (neither ``UNSET`` nor, if so, ``None``)."""
        return {
            name: value
            for name, value in keywords.items()
            if value is not UNSET and not (self.none_is_unset and value is None)
        }

    def unknown(self, keywords: Mapping[str, Any]) -> list[str]:
        return sorted(name for name in keywords if name not in self._options)

    def fallback(self, option: Option) -> tuple[Any, str]:
        """Return the value ``option`` takes when no keyword gives it, and where it came from."""
        for name in option.settings:
            value = getattr(settings, name, UNSET)
            if value is UNSET or (self.none_is_unset and value is None):
                continue
            return value, name
        return option.default, "the default"

    def defaults(self) -> dict[str, Any]:
        """Return each option's value from its setting, else its built-in default."""
        return {option.name: self.fallback(option)[0] for option in self}

    def resolve(self, keywords: Mapping[str, Any], owner: str) -> dict[str, Any]:
        """Return every option's validated value: keyword, else setting, else default."""
        given = self.given(keywords)
        resolved: dict[str, Any] = {}
        for option in self:
            if option.name in given:
                value, source = given[option.name], option.name
            else:
                value, source = self.fallback(option)
            resolved[option.name] = (
                option.validate(value, owner, source) if option.validate else value
            )
        return resolved

    def redact_constructor_args(self, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        """Return constructor keywords fit for ``deconstruct()``: secrets out, URLs masked.

        Stable: redacting the result again changes nothing.
        """
        kept: dict[str, Any] = {}
        for name, value in kwargs.items():
            option = self._options.get(name)
            if option is None:
                kept[name] = value
            elif option.secret and not isinstance(value, bool):
                continue
            else:
                kept[name] = option.redact(value) if option.redact else value
        return kept


# -- redaction ----------------------------------------------------------------------------

#: Option names whose values never belong in a migration file or a log line.
_SECRET_OPTION_WORDS = (
    "key",
    "secret",
    "password",
    "passwd",
    "pwd",
    "token",
    "auth",
    "credential",
    "dsn",
    "connection_string",
    "sas",
)
#: ``name=value`` pairs inside a value (connection strings) whose value is a credential.
_SECRET_PAIR = re.compile(
    r"(?i)\b(account_?key|shared_?access_?key|shared_?access_?signature|sig|password|"
    r"passwd|pwd|secret|token|api_?key|access_?key)(\s*=\s*)([^;&\s]+)"
)
#: A URL with user info: its password (or token) is masked.
_URL_WITH_USERINFO = re.compile(
    r"^[A-Za-z][A-Za-z0-9+.-]*://[^/?#]*@|^[A-Za-z][A-Za-z0-9+.-]*://.*:.*@"
)


def is_secret_option(name: str) -> bool:
    """Tell whether an option called ``name`` looks like it holds a credential."""
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_OPTION_WORDS)


def redact(options: Mapping[str, Any], *, secret: bool = False) -> dict[str, Any]:
    """Return ``options`` with secret-looking values replaced, recursively.

    A string is secret under a secret-looking key (see ``is_secret_option``), however deep
    in dicts, lists and tuples it sits below that key.
    """
    return {
        key: _redact_value(value, secret=secret or is_secret_option(str(key)))
        for key, value in options.items()
    }


def _redact_value(value: Any, *, secret: bool) -> Any:
    if isinstance(value, Mapping):
        return redact(value, secret=secret)
    if isinstance(value, list | tuple):
        items = [_redact_value(item, secret=secret) for item in value]
        if hasattr(value, "_make"):  # a namedtuple takes its fields one by one
            return value._make(items)
        return type(value)(items)
    if secret and isinstance(value, str | bytes):
        return "***"
    if isinstance(value, str):
        return redact_text(value)
    return value


def redact_text(value: str) -> str:
    """Mask credentials inside a value: a URL's password, ``AccountKey=...`` pairs."""
    if "://" in value and "@" in value and _URL_WITH_USERINFO.search(value):
        value = mask_url(value)
    if "=" in value:
        value = _SECRET_PAIR.sub(lambda match: f"{match[1]}{match[2]}***", value)
    return value


# -- validators ---------------------------------------------------------------------------


def _boolean(name: str) -> Validator:
    def validate(value: Any, owner: str, source: str) -> bool:
        if not isinstance(value, bool):
            raise ImproperlyConfigured(f"{owner}: '{name}' must be True or False")
        return value

    return validate


def _seconds(name: str, *, minimum: float = 0.0) -> Validator:
    def validate(value: Any, owner: str, source: str) -> float:
        if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
            raise ImproperlyConfigured(f"{owner}: '{name}' must be a positive number of seconds")
        if not math.isfinite(value):
            raise ImproperlyConfigured(
                f"{owner}: '{name}' must be a finite number of seconds, not {value!r}"
            )
        if value < minimum:
            raise ImproperlyConfigured(
                f"{owner}: '{name}' must be at least {minimum} seconds, not {value!r} (claims "
                "are renewed every claim_ttl/3, in whole milliseconds); use seconds, such as "
                "the default 30"
            )
        return float(value)

    return validate


def _inner(value: Any, owner: str, source: str) -> str | dict[str, Any]:
    if value is None:
        raise ImproperlyConfigured(
            f"{owner} needs 'inner': a STORAGES alias such as 'blobs', or a dict "
            "{'BACKEND': 'dotted.path.Storage', 'OPTIONS': {...}} (or set DEDUPSTORE_INNER)"
        )
    if isinstance(value, Storage):
        raise ImproperlyConfigured(
            f"{owner}: pass 'inner' as a STORAGES alias or a {{'BACKEND': ..., 'OPTIONS': ...}} "
            f"dict, not a {type(value).__name__} instance: storages must deconstruct to "
            "plain data for migrations, and the inner storage is built on first use"
        )
    if isinstance(value, Mapping):
        backend = value.get("BACKEND")
        if not isinstance(backend, str) or not backend:
            raise ImproperlyConfigured(f"{owner}: the 'inner' dict needs a 'BACKEND' dotted path")
        extra = set(value) - {"BACKEND", "OPTIONS"}
        if extra:
            raise ImproperlyConfigured(
                f"{owner}: the 'inner' dict takes only BACKEND and OPTIONS, not {sorted(extra)}"
            )
        if not isinstance(value.get("OPTIONS", {}), Mapping):
            raise ImproperlyConfigured(f"{owner}: the 'inner' OPTIONS must be a dict")
        return dict(value)
    if not isinstance(value, str) or not value:
        raise ImproperlyConfigured(
            f"{owner}: 'inner' must be a STORAGES alias or a dict, not {value!r}"
        )
    return value


def _index(value: Any, owner: str, source: str) -> str:
    return validate_index_url(value)


def _namespace(value: Any, owner: str, source: str) -> str | None:
    if value is not None and (not isinstance(value, str) or not value):
        raise ImproperlyConfigured(f"{owner}: 'namespace' must be a non-empty string or None")
    return value


def _choice(name: str, choices: tuple[str, ...], wording: str) -> Validator:
    def validate(value: Any, owner: str, source: str) -> str:
        if value not in choices:
            raise ImproperlyConfigured(f"{owner}: '{name}' must be {wording}, not {value!r}")
        return str(value)

    return validate


def _reuse_scope(value: Any, owner: str, source: str) -> str:
    validate_reuse_scope(value, owner)
    return str(value)


def _hash_key(value: Any, owner: str, source: str) -> str | bytes | bool | None:
    if value is True or not isinstance(value, str | bytes | bool | type(None)):
        raise ImproperlyConfigured(
            f"{owner}: 'hash_key' must be a secret string, False (plain BLAKE3) or None "
            "(derive from SECRET_KEY)"
        )
    if isinstance(value, str | bytes) and not value:
        raise ImproperlyConfigured(f"{owner}: 'hash_key' must not be empty")
    return value


def _chunk_size(value: Any, owner: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise ImproperlyConfigured(f"{owner}: 'chunk_size' must be a positive number of bytes")
    return value


def _wait_replicas(value: Any, owner: str, source: str) -> int | None:
    if value is None:
        return None
    from dedupstore.index.cluster import parse_wait_replicas

    return parse_wait_replicas(value, f"{owner}: {source!r}")


def _dedup_option(name: str, default: Any, validate: Validator, **extra: Any) -> Option:
    return Option(name, (f"DEDUPSTORE_{name.upper()}",), default, validate, **extra)


def _redact_inner(value: Any) -> Any:
    return redact(value) if isinstance(value, Mapping) else value


def _mask_index(value: Any) -> Any:
    return mask_url(value) if isinstance(value, str) else value


#: ``DedupStorage``'s options; each falls back to the setting ``DEDUPSTORE_<NAME>``.
DEDUP_OPTIONS = OptionTable(
    _dedup_option("inner", None, _inner, redact=_redact_inner),
    _dedup_option("index", "redis://localhost:6379/0", _index, redact=_mask_index),
    _dedup_option("namespace", None, _namespace),
    _dedup_option(
        "reuse", "content", _choice("reuse", REUSE_CHOICES, "one of " + ", ".join(REUSE_CHOICES))
    ),
    _dedup_option("reuse_scope", "extension", _reuse_scope),
    _dedup_option("overwrite", False, _boolean("overwrite")),
    _dedup_option("hash_key", None, _hash_key, secret=True),
    _dedup_option("chunk_size", DEFAULT_CHUNK_SIZE, _chunk_size),
    _dedup_option(
        "on_index_error",
        "raise",
        _choice("on_index_error", ON_INDEX_ERROR_CHOICES, "'raise' or 'bypass'"),
    ),
    _dedup_option("claim_ttl", 30.0, _seconds("claim_ttl", minimum=MIN_CLAIM_TTL)),
    _dedup_option("wait_timeout", 60.0, _seconds("wait_timeout")),
    _dedup_option("index_timeout", 5.0, _seconds("index_timeout")),
    # None: the index URL's ``wait_replicas``, else DEDUPSTORE_INDEX_WAIT_REPLICAS (which
    # the index reads itself, so that a URL's option beats it), else 0.
    Option("index_wait_replicas", (), None, _wait_replicas),
    _dedup_option("verify_hits", True, _boolean("verify_hits")),
    _dedup_option("db_guard", True, _boolean("db_guard")),
)
