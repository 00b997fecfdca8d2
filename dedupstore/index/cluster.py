"""Index URLs that name a Redis Cluster: ``redis+cluster://`` and ``rediss+cluster://``.

``redis+cluster://[[user]:password@]host:port[,host:port...][/][?options]`` names the seed
nodes the client asks for the cluster's slot map (any reachable one is enough; list
several so that one node down does not stop a process from starting). ``rediss+cluster://``
speaks TLS to every node. Options (the query): ``wait_replicas`` (see
:class:`dedupstore.index.redis.RedisIndex`) and the TLS settings ``ssl_cert_reqs``,
``ssl_ca_certs``, ``ssl_certfile``, ``ssl_keyfile``, ``ssl_check_hostname``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import parse_qsl, unquote

from django.core.exceptions import ImproperlyConfigured

__all__ = [
    "CLUSTER_SCHEMES",
    "ClusterURL",
    "parse_cluster_url",
    "split_wait_replicas",
]

CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")

#: Query options passed on to every node's connection, as redis-py spells them.
_TLS_OPTIONS = ("ssl_cert_reqs", "ssl_ca_certs", "ssl_certfile", "ssl_keyfile")
_BOOLEAN_OPTIONS = ("ssl_check_hostname",)
#: Our own options, read by the index rather than by redis-py.
INDEX_OPTIONS = ("wait_replicas",)

_EXAMPLE = "redis+cluster://:password@10.0.0.1:6379,10.0.0.2:6379,10.0.0.3:6379"


@dataclass(frozen=True)
class ClusterURL:
    """A parsed cluster index URL: the seed nodes and what every connection needs."""

    nodes: tuple[tuple[str, int], ...]
    tls: bool
    username: str | None = None
    password: str | None = None
    #: redis-py connection keywords from the query (TLS settings).
    connection_options: dict[str, object] = field(default_factory=dict)
    wait_replicas: int | None = None


def _fail(display_url: str, problem: str) -> ImproperlyConfigured:
    return ImproperlyConfigured(
        f"dedupstore: index URL {display_url}: {problem}. A Redis Cluster index URL reads "
        f"redis+cluster://[:password@]host:port[,host:port...][/?options], e.g. {_EXAMPLE}"
    )


def parse_wait_replicas(value: object, where: str) -> int:
    """Return ``value`` as a count of replicas (0 or more), else raise ImproperlyConfigured."""
    try:
        count = int(str(value))
    except ValueError:
        count = -1
    if isinstance(value, bool) or count < 0:
        raise ImproperlyConfigured(
            f"dedupstore: {where} must be a whole number of replicas (0 to wait for none, "
            f"1 to wait until one replica has every write), not {value!r}"
        )
    return count


def _parse_node(text: str, display_url: str) -> tuple[str, int]:
    if text.startswith("["):  # [::1]:7000
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise _fail(display_url, f"seed node {text!r} needs a port after its IPv6 address")
        port_text = rest[1:]
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise _fail(display_url, f"seed node {text!r} has no port (host:port)")
    if not host:
        raise _fail(display_url, f"seed node {text!r} names no host")
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise _fail(display_url, f"seed node {text!r} has no valid port (1-65535)")
    return host, int(port_text)


def parse_cluster_url(url: str, display_url: str) -> ClusterURL:
    """Parse a ``redis+cluster://`` or ``rediss+cluster://`` URL, or raise ImproperlyConfigured.

    ``display_url`` is the masked URL the errors quote.
    """
    scheme, separator, rest = url.partition("://")
    if not separator or scheme not in CLUSTER_SCHEMES:
        raise _fail(display_url, f"the scheme must be one of {', '.join(CLUSTER_SCHEMES)}")
    rest, _, fragment = rest.partition("#")
    del fragment
    rest, _, query = rest.partition("?")
    # The user info ends at the last '@' (a password may hold '/'); the path follows it.
    userinfo, at, hostinfo = rest.rpartition("@")
    hostinfo, slash, path = hostinfo.partition("/")
    if path not in ("", "0"):
        raise _fail(
            display_url,
            f"a Redis Cluster has only database 0, so the URL can name no other ({path!r})",
        )
    del slash
    username = password = None
    if at:
        user, colon, secret = userinfo.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon else None
        if not colon:  # a token alone, as for rediss://token@host
            username, password = None, unquote(user)
    texts = [node.strip() for node in hostinfo.split(",")]
    if not hostinfo or any(not node for node in texts):
        raise _fail(display_url, "it names no seed node (or an empty one between commas)")
    nodes = tuple(_parse_node(node, display_url) for node in texts)
    options: dict[str, object] = {}
    wait_replicas = None
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key in _TLS_OPTIONS:
            options[key] = value
        elif key in _BOOLEAN_OPTIONS:
            if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise _fail(display_url, f"option {key} must be true or false, not {value!r}")
            options[key] = value.lower() in ("true", "1", "yes")
        elif key == "wait_replicas":
            wait_replicas = parse_wait_replicas(value, f"wait_replicas in {display_url}")
        else:
            known = ", ".join((*INDEX_OPTIONS, *_TLS_OPTIONS, *_BOOLEAN_OPTIONS))
            raise _fail(display_url, f"unknown option {key!r} (known: {known})")
    if options and scheme != "rediss+cluster":
        raise _fail(display_url, "TLS options need rediss+cluster://")
    return ClusterURL(
        nodes=nodes,
        tls=scheme == "rediss+cluster",
        username=username,
        password=password,
        connection_options=options,
        wait_replicas=wait_replicas,
    )


def split_wait_replicas(url: str, display_url: str) -> tuple[str, int | None]:
    """Return a single-node URL without its ``wait_replicas`` option, and that option.

    redis-py passes every query option on to its connections, which know no
    ``wait_replicas``.
    """
    base, question, query = url.partition("?")
    if not question:
        return url, None
    query, hash_sign, fragment = query.partition("#")
    kept, wait_replicas = [], None
    for part in query.split("&"):
        key, _, value = part.partition("=")
        if unquote(key) == "wait_replicas":
            wait_replicas = parse_wait_replicas(unquote(value), f"wait_replicas in {display_url}")
        elif part:
            kept.append(part)
    rebuilt = base + ("?" + "&".join(kept) if kept else "")
    return rebuilt + (hash_sign + fragment if hash_sign else ""), wait_replicas
