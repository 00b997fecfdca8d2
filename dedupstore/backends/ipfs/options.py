"""``IPFSStorage``'s options: each a keyword with its Django setting, declared once."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from django.core.exceptions import ImproperlyConfigured

from dedupstore.options import Option, OptionTable

from .rpc import DEFAULT_API_URL, api_base_url, multiaddr_origin

DEFAULT_GATEWAY_URL = "https://ipfs.io/ipfs/"
DEFAULT_TIMEOUT = 30.0
#: CIDv1 with raw leaves and 256 KiB chunks, on both transports (what ``ipfs add
#: --cid-version=1`` gives). ``cid_version=0`` keeps the CIDv0 of dedupstore 0.1's node.
DEFAULT_CID_VERSION = 1
_GATEWAY_STYLES = ("path", "subdomain")


#: The settings ``gateway_url`` falls back to, first found wins. django-ipfs-storage built
#: its links from ``IPFS_STORAGE_GATEWAY_API_URL`` (``<it>/ipfs/<cid>``);
#: ``IPFS_STORAGE_GATEWAY_URL`` was the *listen* address of the node's gateway (a multiaddr
#: such as ``/ip4/0.0.0.0/tcp/8080``) and ``IPFS_GATEWAY_API_URL`` its README's name for
#: the same. So the link base comes first: behind a proxy it is the only public one.
GATEWAY_SETTINGS = (
    "IPFS_STORAGE_GATEWAY_API_URL",
    "IPFS_STORAGE_GATEWAY_URL",
    "IPFS_GATEWAY_API_URL",
)
#: Old spellings whose bare ``http://host:port`` meant ``http://host:port/ipfs/``.
_GATEWAY_ORIGIN_SETTINGS = frozenset({"IPFS_STORAGE_GATEWAY_API_URL", "IPFS_GATEWAY_API_URL"})


def gateway_base_url(value: str, *, bare_origin_means_ipfs: bool = False) -> str:
    """Return the gateway base URL for ``value``: an ``http(s)://`` URL or a multiaddr.

    A multiaddr (``/ip4|ip6|dns4|dns6/<host>/tcp/<port>[/https]``) names a gateway's
    address: it becomes ``http(s)://host:port/ipfs/``. With ``bare_origin_means_ipfs`` (the
    old ``*_GATEWAY_API_URL`` settings), a URL without a path gets ``/ipfs/`` appended, as
    django-ipfs-storage's ``url()`` did. Raises ``ValueError`` for anything else.
    """
    if not isinstance(value, str):
        raise ValueError(f"a gateway address must be a string, not {type(value).__name__}")
    origin = multiaddr_origin(value)
    if origin is not None:
        return f"{origin}/ipfs/"
    if value.strip().startswith("/"):
        raise ValueError(
            f"{value!r} is not a gateway multiaddr (/ip4/<host>/tcp/<port>[/https]) "
            "nor an http(s) URL"
        )
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{value!r} is not an http(s) URL nor a gateway multiaddr")
    if bare_origin_means_ipfs and parts.path in ("", "/"):
        return urlunsplit((parts.scheme, parts.netloc, "/ipfs/", "", ""))
    return value.strip()


#: Hosts that reach the same local daemon, so they name one location.
_LOOPBACK_ALIASES = {"localhost": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}


def rpc_location(api_url: str) -> str:
    """Return the normalised Kubo RPC API URL: scheme and host in lower case, the port
    explicit, no credentials, the ``/api/v0`` path; local aliases of loopback folded.
    """
    parts = urlsplit(api_base_url(api_url))
    host = (parts.hostname or "").lower()
    host = _LOOPBACK_ALIASES.get(host, host)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    shown = f"[{host}]" if ":" in host else host
    path = "/" + "/".join(segment for segment in parts.path.split("/") if segment)
    return f"{parts.scheme.lower()}://{shown}:{port}{path}"


def _boolean(value: Any, owner: str, source: str) -> bool:
    if not isinstance(value, bool):
        raise ImproperlyConfigured(f"IPFS storage option {source} must be True or False")
    return value


def _embedded_repo(value: Any, owner: str, source: str) -> str | os.PathLike[str] | None:
    if value is not None and not isinstance(value, str | os.PathLike):
        raise ImproperlyConfigured("embedded_repo must be a directory path")
    return value or None


def _api_url(value: Any, owner: str, source: str) -> str:
    try:
        api_base_url(str(value))
    except ValueError as exc:
        raise ImproperlyConfigured(f"IPFS storage api_url: {exc}") from None
    return value


def _api_auth(value: Any, owner: str, source: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise ImproperlyConfigured("api_auth must be a string (an Authorization header value)")
    return value


def _gateway_url(value: Any, owner: str, source: str) -> str:
    try:
        return gateway_base_url(value, bare_origin_means_ipfs=source in _GATEWAY_ORIGIN_SETTINGS)
    except ValueError as exc:
        raise ImproperlyConfigured(f"IPFS storage gateway ({source}): {exc}") from None


def _gateway_style(value: Any, owner: str, source: str) -> str:
    if value not in _GATEWAY_STYLES:
        raise ImproperlyConfigured(f"gateway_style must be one of {_GATEWAY_STYLES}, not {value!r}")
    return str(value)


def _timeout(value: Any, owner: str, source: str) -> float:
    try:
        timeout = float(value)
    except (TypeError, ValueError):
        raise ImproperlyConfigured(f"timeout must be a number, not {value!r}") from None
    if not timeout > 0:
        raise ImproperlyConfigured("timeout must be a positive number of seconds")
    return timeout


#: ``IPFSStorage``'s options. ``None`` (as a keyword or a setting) means "not given".
def _cid_version(value: Any, owner: str, source: str) -> int:
    if value not in (0, 1) or isinstance(value, bool):
        raise ImproperlyConfigured(
            f"cid_version must be 0 or 1 (IPFS_STORAGE_CID_VERSION), not {value!r}"
        )
    return int(value)


def _optional_boolean(value: Any, owner: str, source: str) -> bool | None:
    return None if value is None else _boolean(value, owner, source)


def _port(value: Any, owner: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < 65536:
        raise ImproperlyConfigured(
            "local_gateway_port (IPFS_STORAGE_LOCAL_GATEWAY_PORT) must be a port number "
            f"0-65535, not {value!r}"
        )
    return value


def _replicas(value: Any, owner: str, source: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ImproperlyConfigured(
            f"replicas (IPFS_STORAGE_REPLICAS) must be a whole number >= 0, not {value!r}"
        )
    return value


IPFS_STORAGE_OPTIONS = OptionTable(
    Option("api_url", ("IPFS_STORAGE_API_URL",), DEFAULT_API_URL, _api_url),
    Option("api_auth", ("IPFS_STORAGE_API_AUTH",), None, _api_auth, secret=True),
    Option("embedded_repo", ("IPFS_STORAGE_EMBEDDED_REPO",), None, _embedded_repo),
    Option("embedded_online", ("IPFS_STORAGE_EMBEDDED_ONLINE",), False, _boolean),
    Option("gateway_url", GATEWAY_SETTINGS, DEFAULT_GATEWAY_URL, _gateway_url),
    Option("gateway_style", ("IPFS_STORAGE_GATEWAY_STYLE",), "path", _gateway_style),
    Option("url_filename", ("IPFS_STORAGE_URL_FILENAME",), False, _boolean),
    Option("wrap_with_directory", ("IPFS_STORAGE_WRAP_WITH_DIRECTORY",), False, _boolean),
    Option("timeout", ("IPFS_STORAGE_TIMEOUT",), DEFAULT_TIMEOUT, _timeout),
    Option("cid_version", ("IPFS_STORAGE_CID_VERSION",), DEFAULT_CID_VERSION, _cid_version),
    Option("local_gateway", ("IPFS_STORAGE_LOCAL_GATEWAY",), None, _optional_boolean),
    Option("local_gateway_port", ("IPFS_STORAGE_LOCAL_GATEWAY_PORT",), 0, _port),
    Option("pinning_services", ("IPFS_STORAGE_PINNING_SERVICES",), None, secret=True),
    Option("replicas", ("IPFS_STORAGE_REPLICAS",), 0, _replicas),
    none_is_unset=True,
)
