"""The Redis dedup index: every decision is one Lua script, so one round trip, atomically."""

from __future__ import annotations

import hashlib
import inspect
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Iterator
from importlib import resources
from typing import Any, TypeVar, cast

import redis
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from redis.backoff import NoBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.commands.core import AsyncScript, Script
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    RedisClusterException,
    SlotNotCoveredError,
    TryAgainError,
)
from redis.retry import Retry

from dedupstore.exceptions import ClaimLost, DeleteOutcomeUnknown, IndexUnavailable
from dedupstore.index.base import (
    QUARANTINE_TTL,
    TOMBSTONE_TTL,
    CommitDecision,
    CountCheck,
    DeleteDecision,
    Index,
    IndexStats,
    ObjectRecord,
    ReplaceDecision,
    Reuse,
    SaveDecision,
    ScannedRecord,
    SetReferences,
    untracked_delete_name,
)
from dedupstore.index.cluster import (
    CLUSTER_SCHEMES,
    parse_cluster_url,
    parse_wait_replicas,
    split_wait_replicas,
)
from dedupstore.index.functions import (
    NO_FUNCTIONS,
    HitFunction,
    function_missing,
    functions_unavailable,
)
from dedupstore.index.held_connection import HeldConnection

__all__ = [
    "ESCAPED_NAMESPACE_PREFIX",
    "LAYOUT_VERSION",
    "RedisIndex",
    "eviction_policy_problem",
    "key_prefix",
    "read_eviction_policy",
    "tagged_prefix",
]

T = TypeVar("T")

#: Replies of a server that is up but cannot take writes now: a read-only replica, one out
#: of memory (maxmemory with noeviction), a replica cut off from its master. redis-py maps
#: them by the reply's error code (READONLY, OOM, MASTERDOWN), which a script's own bugs
#: (WRONGTYPE, ERR ...) never carry, so those still surface as they are. Redis refuses a
#: script's write only while the script has written nothing yet (later writes are let
#: through to keep it atomic), so a refused script applied nothing.
#: A cluster answers CLUSTERDOWN (no primary serves the slot: a failover under way, or a
#: majority lost) and TRYAGAIN (the slot is being resharded) before it runs anything.
_REFUSALS: tuple[type[Exception], ...] = (
    *(
        getattr(redis.exceptions, name)
        for name in ("ReadOnlyError", "OutOfMemoryError", "MasterDownError")
        if hasattr(redis.exceptions, name)
    ),
    ClusterDownError,
    TryAgainError,
)
#: What _guard reports as IndexUnavailable (a name of its own: mypy reads no starred except).
#: SlotNotCoveredError: the cluster client knows no node for the slot (nothing was sent).
_UNAVAILABLE: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    SlotNotCoveredError,
    *_REFUSALS,
)


logger = logging.getLogger(__name__)


def _load_script(*parts: str, package: str = "dedupstore.index", folder: str = "lua") -> str:
    """Return the Lua script made of ``<package>/<folder>/<part>.lua``, in order.

    Shared snippets (``packed``, ``tally``, ``close_tombstone``, ``quarantine``,
    ``lease_held``) define local functions and come before the script that calls them.
    """
    where = resources.files(package).joinpath(folder)
    return "".join(where.joinpath(f"{part}.lua").read_text(encoding="utf-8") for part in parts)


def build_scripts(load: Callable[..., str], *, packed: bool = True) -> dict[str, str]:
    """Return every script's source by attribute name, its snippets prepended.

    ``load(*parts)`` reads the parts (``_load_script``); ``packed``: layout 3, whose
    scripts reach records and content maps through ``packed.lua`` (layout 2's scripts,
    kept under ``dedupstore/testing`` to fill an index of that layout, do not).
    """
    first = ("packed",) if packed else ()

    def tallied(*parts: str) -> str:
        # The script runs so that its change to the record KEYS[1] is counted: the record
        # is read before and after (tally.lua) and the counters, the last key, move by
        # the difference.
        return (
            load(*first, "tally")
            + "local function decide()\n"
            + load(*parts)
            + "\nend\nlocal tally_before = tally_snapshot(KEYS[1])\n"
            + "local reply = decide()\ntally_change(KEYS[#KEYS], KEYS[1], tally_before)\n"
            + "return reply\n"
        )

    scripts = {
        "_hit": load(*first, "hit") if packed else load("tally", "hit"),
        "_begin_save": load(*first, "tally", "close_tombstone", "quarantine", "begin_save"),
        "_commit_save": tallied("close_tombstone", "quarantine", "commit_save"),
        "_release_claim": load("release_claim"),
        "_refresh_claim": load("refresh_claim"),
        "_reserve_name": load(*first, "reserve_name"),
        "_release_name": load("release_name"),
        "_begin_replace": tallied("lease_held", "quarantine", "begin_replace"),
        "_abort_replace": tallied("abort_replace"),
        "_begin_delete": tallied("lease_held", "quarantine", "begin_delete"),
        "_commit_delete": tallied("close_tombstone", "commit_delete"),
        "_forget_content": load(*first, "forget_content"),
        "_cancel_delete": tallied("cancel_delete"),
        "_set_references": tallied("set_references"),
        "_add_record": tallied("add_record"),
        "_read_records_script": load(*first, "read_records"),
    }
    if packed:
        scripts["_read_maps"] = load("packed", "read_maps")
        scripts["_scan_buckets"] = load("packed", "scan_buckets")
        scripts["_migrate_layout3"] = load("packed", "migrate_layout3")
        scripts["_count_records"] = load("count_records")
        scripts["_compare_counts_script"] = load("packed", "compare_counts")
        scripts["_add_records_script"] = load("packed", "tally", "add_records")
    return scripts


# Each script's KEYS/ARGV layout and replies head its file.
SCRIPTS = build_scripts(_load_script)


_LOOKUP_FIELDS = ("digest", "refs", "state", "size")
#: Records read per call of read_records.lua (a call blocks the server ~1 µs a record).
READ_BATCH = 2000
#: Records added per call of add_records.lua (a call blocks the server ~20 µs a record).
ADD_BATCH = 250


#: What a save whose hit (or claim) was sent, with its reply lost, may have done.
_SAVE_MAYBE_COUNTED = (
    "The save was sent, but its reply was lost: it may have counted one reference to an "
    "object already stored (a hit) that nobody holds, which only delays a deletion. No name "
    "was returned and nothing was written."
)

#: What a name reservation whose reply was lost (or too few replicas acknowledged) did.
_RESERVATION_MAYBE_HELD = (
    "The name's reservation was sent, but its reply was lost or too few replicas "
    "acknowledged it: the name may stay reserved until the save's lease lapses. Nothing "
    "was written."
)
#: What a cancelled delete whose outcome is unknown left.
_CANCEL_MAYBE_LOST = (
    "Nothing was deleted, but the delete's cancellation (rows still hold the name) was "
    "not acknowledged by enough replicas: after a failover the name may still be marked "
    "as being deleted. Run 'manage.py dedupstore verify'."
)


def read_eviction_policy(client: redis.Redis) -> str | None:
    """Return the server's ``maxmemory-policy``, or None if it will not say.

    ``CONFIG GET`` first; where ``CONFIG`` is disabled or renamed (managed services, or
    ``rename-command CONFIG ""``), the ``maxmemory_policy`` field of ``INFO memory``.
    Connection errors propagate.
    """
    try:
        reply = client.config_get("maxmemory-policy")
    except redis.ResponseError:
        reply = {}
    value = reply.get("maxmemory-policy") if isinstance(reply, dict) else None
    if value is None:
        try:
            info = client.info("memory")
        except redis.ResponseError:
            return None
        value = info.get("maxmemory_policy")
    if isinstance(value, bytes):
        value = value.decode()
    return str(value) if value is not None else None


def eviction_policy_problem(policy: str | None, display_url: str) -> str | None:
    """Say why an index with this ``maxmemory-policy`` cannot run, or None if it can."""
    if policy == "noeviction":
        return None
    if policy is None:
        return (
            f"dedupstore: the Redis server of the index at {display_url} reports no "
            "maxmemory-policy (neither CONFIG GET nor INFO memory answered): the index must "
            "know that Redis never evicts its keys. Allow INFO (or CONFIG GET) for this user, "
            "and set maxmemory-policy noeviction."
        )
    return (
        f"dedupstore: the Redis server of the index at {display_url} has maxmemory-policy "
        f"{policy!r}: it may evict index keys (records, tombstones, receipts) when memory runs "
        "short, and a lost record makes a later delete remove an object other names still "
        "use. Set maxmemory-policy noeviction (CONFIG SET maxmemory-policy noeviction and "
        "in redis.conf, or the parameter group of a managed service), or give the index a "
        "Redis database of its own that never evicts."
    )


class _NotRun(Exception):
    """The script certainly did not run: no connection, or the server refused its write."""


class _ReplyLost(Exception):
    """The script was sent and no reply came: it may or may not have run."""


def _refused(exc: redis.ResponseError) -> bool:
    """Whether a reply refuses a command that therefore did nothing.

    A write refused (a redis-py without a class for its code), or ``BUSY``: the server runs
    another script past ``busy-reply-threshold`` and rejects every command meanwhile.
    """
    return str(exc).startswith(
        ("OOM ", "READONLY ", "MASTERDOWN ", "BUSY ", "CLUSTERDOWN ", "TRYAGAIN ")
    )


def _get_connection_args(pool: redis.ConnectionPool) -> tuple[str, ...]:
    """Return the arguments ``pool.get_connection`` needs.

    redis-py before 5.3 requires a command name (and ignores it); later versions take none
    and warn when given one.
    """
    parameter = inspect.signature(pool.get_connection).parameters.get("command_name")
    required = parameter is not None and parameter.default is inspect.Parameter.empty
    return ("EVALSHA",) if required else ()


#: Namespaces that could be confused with another are keyed under this prefix (and hex).
ESCAPED_NAMESPACE_PREFIX = "dedupstore-hex-"
#: A key is ``<namespace>:<kind letter>:<rest>``: a namespace containing ``:<letter>:`` or
#: ending in ``:<letter>`` could be read as a shorter namespace's key of some kind.
_CONFUSABLE = re.compile(r":[a-z](?::|$)")


def key_prefix(namespace: str) -> str:
    """Return the prefix of ``namespace``'s keys; no two namespaces share one.

    Every key reads ``<prefix>:<kind letter>:<name or digest>``, so the first
    ``:<letter>:`` of a key ends its prefix as long as no prefix contains ``:<letter>:``
    or ends in ``:<letter>``. Such a namespace (``media:o:avatars`` would otherwise reach
    ``media``'s record of ``avatars:o:pic.png``), or one that starts like an escaped
    prefix, is keyed under ``dedupstore-hex-`` and its UTF-8 in hex instead. Every
    other namespace, the default ones included, keeps its keys as they always were.
    """
    if _CONFUSABLE.search(namespace) or namespace.startswith(ESCAPED_NAMESPACE_PREFIX):
        return ESCAPED_NAMESPACE_PREFIX + namespace.encode("utf-8", "surrogatepass").hex()
    return namespace


#: The key layout this code reads and writes, recorded under ``<tagged prefix>:v``. 1 (never
#: recorded): ``<prefix>:<kind>:...``, before hash tags; 2: ``{<prefix>}:<kind>:...``; 3:
#: as 2, with records and content maps packed into buckets (``lua/packed.lua``).
LAYOUT_VERSION = 3


def tagged_prefix(namespace: str) -> str:
    """Return the prefix of ``namespace``'s keys in layout 2: ``{<key_prefix>}``.

    The braces make the whole prefix the key's hash tag: every key of a namespace lies in
    one cluster slot, so each script (which touches keys of one namespace only) runs on one
    node in one round trip. A prefix holding a brace (which would end the tag early or
    leave it empty), or an empty one, is replaced by the escaped (hex) form of the
    namespace; no other prefix can take that form (see ``key_prefix``).
    """
    prefix = key_prefix(namespace)
    if not prefix or "{" in prefix or "}" in prefix:
        prefix = ESCAPED_NAMESPACE_PREFIX + namespace.encode("utf-8", "surrogatepass").hex()
    return "{" + prefix + "}"


class _ClusterScript:
    """A Lua script for the cluster client: its source and SHA1 (loaded on demand)."""

    def __init__(self, script: str) -> None:
        self.script = script
        self.sha = hashlib.sha1(script.encode("utf-8")).hexdigest()


def _wait_replicas_setting() -> int:
    value = getattr(settings, "DEDUPSTORE_INDEX_WAIT_REPLICAS", 0) if settings.configured else 0
    return parse_wait_replicas(value, "DEDUPSTORE_INDEX_WAIT_REPLICAS")


#: How many MOVED/ASK redirections one call follows (a resharding moves a slot once).
_REDIRECTIONS = 5


def _every_cluster_node(client: RedisCluster) -> list[redis.Redis]:
    """Return a client of every reachable node, replicas included.

    The slot map lists a replica only once it has synchronised; ``CLUSTER NODES`` lists
    every node the cluster knows. Failed nodes are left out (nothing can be asked there).
    """
    servers = {node.name: client.get_redis_connection(node) for node in client.get_nodes()}
    primary = client.get_redis_connection(client.get_primaries()[0])
    known = primary.execute_command("CLUSTER NODES")
    for address, fields in known.items() if isinstance(known, dict) else ():
        name = address.decode() if isinstance(address, bytes) else str(address)
        flags = str(fields.get("flags", ""))
        host, _, port = name.rpartition(":")
        if name in servers or not host or any(f in flags for f in ("fail", "noaddr", "handshake")):
            continue
        servers[name] = client.get_redis_connection(ClusterNode(host, int(port), "replica"))
    return list(servers.values())


#: How many raw bytes of a hex digest key its content map (``packed_map_field``).
_MAP_FIELD_BYTES = 10
_HEX_DIGEST = re.compile(r"[0-9a-f]{64}")


def _raw_digest(digest: str) -> bytes:
    """Return a 64-digit hex digest's raw bytes, as layout 3 stores them; else ``b""``."""
    return bytes.fromhex(digest) if _HEX_DIGEST.fullmatch(digest) else b""


def _milliseconds(seconds: float) -> int:
    """Return a claim lifetime in whole milliseconds, at least 1: Redis refuses ``PX 0``."""
    return max(1, math.ceil(seconds * 1000))


class RedisIndex(Index):
    """A dedup index in Redis (``redis://``, ``rediss://``, ``unix://``) or a Redis Cluster.

    ``redis+cluster://`` and ``rediss+cluster://`` URLs (see ``dedupstore.index.cluster``)
    open redis-py's ``RedisCluster``. Every key of the namespace carries the hash tag
    ``{<prefix>}`` (see ``tagged_prefix``), so each script runs on the one node that owns
    the namespace's slot.

    ``wait_replicas``: after each script that counts, drops or reserves (a save's first
    call, name reservation and commit, a delete's decision, commit and cancellation), send
    Redis ``WAIT`` for that many replicas on the same connection (a retry writes a mark
    first, see ``_wait_for_replicas``); fewer acknowledgements in time are reported like a
    lost reply (the write may not survive a failover). None: the URL's ``wait_replicas``
    option, else the ``DEDUPSTORE_INDEX_WAIT_REPLICAS`` setting, else 0 (no WAIT).
    """

    # The registered scripts (``build_scripts``' names), set in ``__init__``.
    _hit: Any
    _begin_save: Any
    _commit_save: Any
    _release_claim: Any
    _refresh_claim: Any
    _reserve_name: Any
    _release_name: Any
    _begin_replace: Any
    _abort_replace: Any
    _begin_delete: Any
    _commit_delete: Any
    _forget_content: Any
    _cancel_delete: Any
    _set_references: Any
    _add_record: Any
    _read_records_script: Any
    _read_maps: Any
    _scan_buckets: Any
    _migrate_layout3: Any
    _count_records: Any
    _compare_counts_script: Any
    _add_records_script: Any

    def __init__(
        self,
        url: str,
        *,
        namespace: str,
        display_url: str,
        socket_timeout: float = 5.0,
        wait_timeout: float = 60.0,
        wait_replicas: int | None = None,
    ) -> None:
        super().__init__(namespace)
        self.display_url = display_url
        #: How long a delete whose reply was lost keeps asking what became of it.
        self.wait_timeout = wait_timeout
        #: How long a receipt stays: well beyond the retries of the call that left it.
        self._receipt_ttl = max(60.0, 2 * wait_timeout)
        self.is_cluster = url.partition("://")[0] in CLUSTER_SCHEMES
        self._socket_timeout = socket_timeout
        self._cluster_lock = threading.Lock()
        #: Set after a connection error or redirection: re-read the slot map before sending.
        self._topology_stale = False
        self._cluster_client: RedisCluster | None = None
        if self.is_cluster:
            self._cluster_url = parse_cluster_url(url, display_url)
            url_wait = self._cluster_url.wait_replicas
            self._get_connection_args = _get_connection_args(redis.ConnectionPool())
            #: One node's pool per primary: each call takes a connection of its node's.
            self._held: HeldConnection | None = None
        else:
            url, url_wait = split_wait_replicas(url, display_url)
            self._client = redis.Redis.from_url(
                url,
                socket_timeout=socket_timeout,
                socket_connect_timeout=socket_timeout,
                health_check_interval=30,
                # Never resend a command whose reply was lost (redis-py's from_url does not
                # retry today; a Redis() built without a pool retries 3 times): a resent
                # save counts a second reference, a resent delete drops one.
                retry=Retry(NoBackoff(), 0),
            )
            self._get_connection_args = _get_connection_args(self._client.connection_pool)
            self._held = HeldConnection(self._client.connection_pool)
        if wait_replicas is None:
            wait_replicas = url_wait if url_wait is not None else _wait_replicas_setting()
        #: Replicas a counting script waits for (Redis WAIT); 0: none.
        self.wait_replicas = parse_wait_replicas(wait_replicas, "wait_replicas")
        #: How long WAIT may block (ms): well within the socket timeout, so its reply comes.
        self._wait_ms = max(1, int(socket_timeout * 1000 / 2))
        prefix = tagged_prefix(namespace)
        self._record_prefix = f"{prefix}:o:"
        self._map_prefix = f"{prefix}:d:"
        self._claim_prefix = f"{prefix}:c:"
        self._tombstone_prefix = f"{prefix}:t:"
        self._untracked_deletes = f"{prefix}:u"
        self._receipt_prefix = f"{prefix}:r:"
        self._reservation_prefix = f"{prefix}:n:"
        self._quarantine_prefix = f"{prefix}:q:"
        self._initialised_key = f"{prefix}:i"
        #: The statistics counters (tally.lua).
        self._stats_key = f"{prefix}:s"
        self._layout_key = f"{prefix}:v"
        #: The growth state of layout 3's record and map buckets (packed.lua).
        self._bucket_state_key = f"{prefix}:l"
        #: Written before a retry's WAIT (see ``_wait_for_replicas``).
        self._wait_mark_key = f"{prefix}:w"
        #: A key in the namespace's slot that nothing writes (see ``_probe_slot``).
        self._slot_probe_key = f"{prefix}:slot-probe"
        #: Whether the server was seen to run with maxmemory-policy noeviction (and the
        #: index's key layout was checked).
        self._policy_checked = False
        register: Callable[[str], Any] = (
            _ClusterScript if self.is_cluster else self._client.register_script
        )
        for attribute, source in self._script_sources().items():
            setattr(self, attribute, register(source))
        #: Hits as a Redis Function where the server has them (None: scripts only).
        self._hit_function: HitFunction | None = (
            HitFunction(_load_script("packed"), _load_script("hit"))
            if self._script_sources() is SCRIPTS
            else None
        )

    def _script_sources(self) -> dict[str, str]:
        """Return the scripts this index runs (the layout 2 fixture's differ)."""
        return SCRIPTS

    def _cluster(self) -> RedisCluster:
        """Return the cluster client, asking a seed node for the slot map the first time.

        Raises ``redis.ConnectionError`` when no seed node answers (nothing was sent).
        """
        with self._cluster_lock:
            if self._cluster_client is None:
                parsed = self._cluster_url
                try:
                    self._cluster_client = RedisCluster(
                        startup_nodes=[ClusterNode(host, port) for host, port in parsed.nodes],
                        username=parsed.username,
                        password=parsed.password,
                        ssl=parsed.tls,
                        socket_timeout=self._socket_timeout,
                        socket_connect_timeout=self._socket_timeout,
                        health_check_interval=30,
                        # Never resend after a timeout or a lost connection (a resent script
                        # could count twice); MOVED/ASK redirections are still followed.
                        retry=Retry(NoBackoff(), 0),
                        **parsed.connection_options,  # type: ignore[arg-type]
                    )
                except RedisClusterException as exc:
                    raise redis.ConnectionError(str(exc)) from exc
                self._topology_stale = False
            elif self._topology_stale:
                self._topology_stale = False
                try:
                    self._cluster_client.nodes_manager.initialize()
                except RedisClusterException as exc:
                    self._topology_stale = True
                    raise redis.ConnectionError(str(exc)) from exc
            return self._cluster_client

    @property
    def client(self) -> Any:
        """Return the underlying redis-py client (``RedisCluster`` for a cluster URL)."""
        return self._cluster() if self.is_cluster else self._client

    def _run(self, script: Any, keys: list[str], args: list[Any]) -> Any:
        if self.is_cluster:
            return self._guard(lambda: self._run_on_cluster(script, keys, args))
        return self._guard(lambda: script(keys=keys, args=args))

    def _run_on_cluster(self, script: _ClusterScript, keys: list[str], args: list[Any]) -> Any:
        """Run ``script`` through the cluster client (it follows MOVED/ASK, retries nothing)."""
        client = self._cluster()
        try:
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            # A new primary (a failover) or a flushed one: nothing ran; load, send again.
            client.script_load(script.script)
            return client.evalsha(script.sha, len(keys), *keys, *args)
        except (redis.ConnectionError, redis.TimeoutError):
            self._topology_stale = True
            raise

    def _check_eviction_policy(self) -> None:
        """Refuse a server that may evict keys (``ImproperlyConfigured``), once per index.

        On a cluster every node is asked, replicas included (one may become a primary).
        Then check the key layout (see ``dedupstore.index.migrate``).
        """
        from dedupstore.index.migrate import check_layout

        client: Any
        if self.is_cluster:
            client = self._cluster()
            servers = _every_cluster_node(client)
        else:
            client = self._client
            servers = [self._client]
        for server in servers:
            problem = eviction_policy_problem(read_eviction_policy(server), self.display_url)
            if problem:
                raise ImproperlyConfigured(problem)
        check_layout(client, self.namespace, self.display_url, cluster=self.is_cluster)
        self._policy_checked = True

    def _guard(self, call: Callable[[], T]) -> T:
        try:
            if not self._policy_checked:
                self._check_eviction_policy()
            return call()
        except _UNAVAILABLE as exc:
            raise IndexUnavailable(self.display_url, exc) from exc
        except redis.ResponseError as exc:
            if _refused(exc):
                raise IndexUnavailable(self.display_url, exc) from exc
            raise

    def _run_once(
        self, script: Any, keys: list[str], args: list[Any], *, retry: bool = False
    ) -> Any:
        """Run ``script`` on one connection, telling "did not run" from "reply lost".

        ``retry``: an earlier attempt of the same call may have run on another connection
        (see ``_wait_for_replicas``).
        """
        if not self._policy_checked:
            try:
                self._check_eviction_policy()
            except _UNAVAILABLE as exc:
                raise _NotRun(exc) from exc
            except redis.ResponseError as exc:
                if _refused(exc):
                    raise _NotRun(exc) from exc
                raise
        if self.is_cluster:
            return self._run_once_on_cluster(script, keys, args, retry=retry)
        return self._run_on_connection(self._client, script, keys, args, retry=retry)

    def _run_once_on_cluster(
        self, script: Any, keys: list[str], args: list[Any], *, retry: bool = False
    ) -> Any:
        """Run ``script`` once on the primary owning its slot, following redirections.

        A MOVED or ASK reply ran nothing: send again to the node it names. A connection
        error, or CLUSTERDOWN, marks the slot map stale: the next call re-reads it (a
        replica may have been promoted meanwhile).
        """
        try:
            client = self._cluster()
            slot = client.keyslot(keys[0])
            node = client.nodes_manager.get_node_from_slot(slot)
        except _UNAVAILABLE as exc:
            self._topology_stale = True
            raise _NotRun(exc) from exc
        asking = False
        for _ in range(_REDIRECTIONS):
            server = client.get_redis_connection(node)
            try:
                return self._run_on_connection(
                    server, script, keys, args, asking=asking, retry=retry
                )
            except MovedError as exc:
                client.nodes_manager.move_slot(exc)
                node, asking = client.nodes_manager.get_node_from_slot(slot), False
            except AskError as exc:
                node = client.nodes_manager.get_node(host=exc.host, port=exc.port) or ClusterNode(
                    exc.host, exc.port
                )
                asking = True
            except (_NotRun, _ReplyLost) as exc:
                if isinstance(
                    exc.__cause__, (redis.ConnectionError, redis.TimeoutError, ClusterDownError)
                ):
                    self._topology_stale = True
                raise
        self._topology_stale = True
        raise _NotRun(RedisClusterException(f"more than {_REDIRECTIONS} redirections"))

    def _run_on_connection(
        self,
        server: redis.Redis,
        script: Any,
        keys: list[str],
        args: list[Any],
        *,
        asking: bool = False,
        retry: bool = False,
    ) -> Any:
        """Run ``script`` on one connection of ``server``'s pool (then ``WAIT``, if asked)."""
        pool = server.connection_pool
        held = self._held if self._held is not None and server is self._client else None
        connection = None
        try:
            # Connects (or reconnects a connection the server closed) before sending.
            if held is not None:
                connection = held.acquire()
            if connection is None:
                held = None  # another thread has it: take one from the pool
                connection = pool.get_connection(*self._get_connection_args)
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            raise _NotRun(exc) from exc
        except redis.ResponseError as exc:
            if _refused(exc):  # BUSY while the connection was set up
                raise _NotRun(exc) from exc
            raise
        try:
            try:
                reply = self._evalsha(server, connection, script, keys, args, asking)
            except redis.exceptions.NoScriptError:
                # A restarted or flushed server, or a replica just promoted: the script did
                # not run; load it on this very node and send it again.
                connection.send_command("SCRIPT", "LOAD", script.script)
                server.parse_response(connection, "SCRIPT LOAD")
                reply = self._evalsha(server, connection, script, keys, args, asking)
            if self.wait_replicas:
                self._wait_for_replicas(server, connection, mark=retry)
            return reply
        except redis.BusyLoadingError as exc:
            # The server is still loading its data set: it ran nothing.
            raise _NotRun(exc) from exc
        except (redis.ConnectionError, redis.TimeoutError) as exc:
            connection.disconnect()  # a late reply must never be read as another's
            raise _ReplyLost(exc) from exc
        except redis.ResponseError as exc:
            # A refused script applied nothing (see _REFUSALS), nor did one answered BUSY,
            # CLUSTERDOWN or TRYAGAIN.
            if isinstance(exc, _REFUSALS) or _refused(exc):
                raise _NotRun(exc) from exc
            raise
        finally:
            if held is not None:
                held.release()
            else:
                pool.release(connection)

    def _wait_for_replicas(self, server: redis.Redis, connection: Any, *, mark: bool) -> None:
        """Send ``WAIT`` after a script; too few acknowledgements count as a lost reply.

        The script ran, but a failover before its write reached a replica would undo it:
        the caller must treat it as a call whose outcome is unknown.

        ``WAIT`` waits for the writes of its own connection only. A retry after a lost
        reply runs on a new connection, and a script answered from its receipt writes
        nothing: ``WAIT`` would return at once, though the first attempt's write (on the
        old connection) may not have reached a replica yet. With ``mark``, a write of our
        own first (``SET <prefix>:w``, gone a minute later) moves this connection's offset
        past everything the server did before, the first attempt included.
        """
        if mark:
            connection.send_command("SET", self._wait_mark_key, b"1", "PX", 60_000)
            try:
                server.parse_response(connection, "SET")
            except redis.ResponseError as exc:
                # The script ran (a full Redis refuses only the mark): its replication is
                # what remains unknown.
                raise _ReplyLost(exc) from exc
        connection.send_command("WAIT", self.wait_replicas, self._wait_ms)
        acknowledged = int(server.parse_response(connection, "WAIT"))
        if acknowledged < self.wait_replicas:
            cause = redis.TimeoutError(
                f"WAIT {self.wait_replicas}: {acknowledged} replica(s) acknowledged the "
                f"write within {self._wait_ms} ms"
            )
            raise _ReplyLost(cause) from cause

    def _evalsha(
        self,
        server: redis.Redis,
        connection: Any,
        script: Any,
        keys: list[str],
        args: list[Any],
        asking: bool = False,
    ) -> Any:
        if asking:
            connection.send_command("ASKING")
            server.parse_response(connection, "ASKING")
        function = self._hit_function
        if function is not None and script is self._hit:
            reply = self._fcall(server, connection, function, keys, args)
            if reply is not NO_FUNCTIONS:
                return reply
            self._hit_function = None  # this server has no functions: scripts from now on
        connection.send_command("EVALSHA", script.sha, len(keys), *keys, *args)
        return server.parse_response(connection, "EVALSHA")

    def _fcall(
        self,
        server: redis.Redis,
        connection: Any,
        function: HitFunction,
        keys: list[str],
        args: list[Any],
    ) -> Any:
        """``FCALL`` the hit, loading its library on this node first if it lacks it.

        Returns ``NO_FUNCTIONS`` (nothing ran) where functions cannot be used: a Redis
        before 7, or an ACL that denies ``FUNCTION LOAD``.
        """
        connection.send_command("FCALL", function.name, len(keys), *keys, *args)
        try:
            return server.parse_response(connection, "FCALL")
        except redis.ResponseError as exc:
            if functions_unavailable(exc):
                return NO_FUNCTIONS
            if not function_missing(exc):
                raise
        # Not on this node (new, restarted without persistence, FUNCTION FLUSH): load it
        # (replicated to its replicas, kept in its RDB/AOF) and call again.
        connection.send_command("FUNCTION", "LOAD", "REPLACE", function.library)
        try:
            server.parse_response(connection, "FUNCTION")
        except redis.ResponseError as exc:
            if _refused(exc) or isinstance(exc, _REFUSALS):
                raise
            logger.info("dedupstore: hits run as scripts (FUNCTION LOAD: %s)", exc)
            return NO_FUNCTIONS
        connection.send_command("FCALL", function.name, len(keys), *keys, *args)
        return server.parse_response(connection, "FCALL")

    def _run_reporting_sent(
        self,
        script: Script | AsyncScript,
        keys: list[str],
        args: list[Any],
        outcome: str = _SAVE_MAYBE_COUNTED,
    ) -> Any:
        """Run ``script`` once; a lost reply raises ``IndexUnavailable`` with ``sent=True``.

        For a save's first call (a hit counts a reference in the script, so a reply lost
        after it ran must not be reported as a call that did nothing) and its name
        reservation; ``WAIT`` follows, with ``wait_replicas``.
        """
        try:
            return self._run_once(script, keys, args)
        except _NotRun as exc:
            raise IndexUnavailable(self.display_url, exc.__cause__) from exc.__cause__
        except _ReplyLost as exc:
            raise IndexUnavailable(
                self.display_url, exc.__cause__, outcome, sent=True
            ) from exc.__cause__

    def _run_retrying(
        self,
        script: Script | AsyncScript,
        keys: list[str],
        args: list[Any],
        unknown: Callable[[BaseException], IndexUnavailable],
        not_run: Callable[[BaseException | None], IndexUnavailable] | None = None,
    ) -> Any:
        """Run an idempotent script; after a lost reply, run it again until it answers.

        Only for scripts that running twice cannot harm (a receipt, or a token check, makes
        a second run a no-op that answers like the first). A first attempt that certainly
        did not run raises ``not_run(cause)`` at once, or, without ``not_run``, is retried
        like a lost reply. Gives up after ``wait_timeout`` with ``unknown(first error)``
        if any reply was lost, else with ``IndexUnavailable``.
        """
        lost: BaseException | None = None
        refused: BaseException | None = None
        try:
            return self._run_once(script, keys, args)
        except _NotRun as exc:
            if not_run is not None:
                raise not_run(exc.__cause__) from exc.__cause__
            refused = exc.__cause__
        except _ReplyLost as exc:
            lost = exc.__cause__
        deadline = time.monotonic() + self.wait_timeout
        pause = 0.01
        while (left := deadline - time.monotonic()) > 0:
            time.sleep(min(pause, left))
            pause = min(pause * 2, 0.5)
            try:
                return self._run_once(script, keys, args, retry=True)
            except _NotRun as exc:
                refused = exc.__cause__
            except _ReplyLost as exc:
                lost = lost or exc.__cause__
        if lost is not None:
            raise unknown(lost) from lost
        raise IndexUnavailable(self.display_url, refused) from refused

    def begin_save(
        self,
        *,
        digest: str,
        reuse: Reuse,
        name: str,
        max_length: int | None,
        token: str,
        claim_ttl: float,
        overwrite: bool = False,
    ) -> SaveDecision:
        if reuse != "never":
            # A hit needs one key and four arguments: ask with those first (a hit is the
            # common case, and a miss pays for its write anyway).
            if reuse == "content":
                keys, last = [self._map_prefix + digest, self._stats_key], self._record_prefix
            else:
                keys, last = [self._record_prefix + name, self._stats_key], name
            raw = _raw_digest(digest)
            field: bytes | str = raw[:_MAP_FIELD_BYTES] if raw else digest
            hit = self._run_reporting_sent(
                self._hit, keys, [reuse, digest, max_length or 0, last, raw, field]
            )
            if hit is not None:
                return SaveDecision("hit", name=hit[1].decode())
        action, value = self._run_reporting_sent(
            self._begin_save,
            [
                self._map_prefix + digest,
                self._claim_prefix + digest,
                self._record_prefix + name,
                self._untracked_deletes,
                self._tombstone_prefix + name,
                self._quarantine_prefix + name,
                self._stats_key,
            ],
            [
                reuse,
                digest,
                token,
                _milliseconds(claim_ttl),
                max_length or 0,
                self._record_prefix,
                name,
                self._claim_prefix,
                _milliseconds(TOMBSTONE_TTL),
                "1" if overwrite else "0",
                _milliseconds(QUARANTINE_TTL),
            ],
        )
        action = action.decode()
        if action == "hit":
            return SaveDecision("hit", name=value.decode())
        if action == "claimed":
            return SaveDecision("claimed", since=int(value))
        return SaveDecision("wait", retry_after=max(int(value), 1) / 1000)

    def commit_save(
        self,
        *,
        digest: str,
        token: str,
        name: str,
        size: int,
        replacing: bool = False,
        since: int = 0,
        elapsed: float = 0.0,
    ) -> CommitDecision:
        action, value, *rest = self._run_retrying(
            self._commit_save,
            [
                self._record_prefix + name,
                self._map_prefix + digest,
                self._claim_prefix + digest,
                self._tombstone_prefix + name,
                self._untracked_deletes,
                self._receipt_prefix + token,
                self._reservation_prefix + name,
                self._quarantine_prefix + name,
                self._stats_key,
            ],
            [
                digest,
                token,
                size,
                len(name),
                self._record_prefix,
                name,
                self._map_prefix,
                "1" if replacing else "0",
                since,
                _milliseconds(elapsed),
                _milliseconds(TOMBSTONE_TTL),
                self._claim_prefix,
                _milliseconds(self._receipt_ttl),
                _milliseconds(QUARANTINE_TTL),
            ],
            # After a lost reply the commit runs again with the same token: its receipt
            # (or, before it committed, the same checks) answers as the first run did.
            lambda lost: IndexUnavailable(self.display_url, lost, sent=True),
            lambda cause: IndexUnavailable(self.display_url, cause),
        )
        action = action.decode()
        if action == "lost":
            raise ClaimLost(repr(name), value.decode())
        if action == "wait":
            return CommitDecision("wait", retry_after=max(int(value), 1) / 1000)
        if action in ("rewrite", "verify"):
            return CommitDecision(action, since=int(value))
        if action == "relocate":
            return CommitDecision(
                "relocate", since=int(value), retry_after=max(int(rest[0]), 1) / 1000
            )
        return CommitDecision("committed")

    def release_claim(self, *, digest: str, token: str) -> None:
        self._run(self._release_claim, [self._claim_prefix + digest], [token])

    def refresh_claim(self, *, digest: str, token: str, claim_ttl: float) -> bool:
        keys, args = [self._claim_prefix + digest], [token, _milliseconds(claim_ttl)]
        name = untracked_delete_name(digest, token)
        if name is not None:
            # The lease of an untracked delete: its tombstone lives as long as it does.
            keys.append(self._tombstone_prefix + name)
            args.append(_milliseconds(claim_ttl) + _milliseconds(TOMBSTONE_TTL))
        return bool(self._run(self._refresh_claim, keys, args))

    def reserve_name(self, *, name: str, token: str, digest: str) -> bool:
        # WAITed for: a reservation lost in a failover would let another save write the
        # same inner name.
        return bool(
            self._run_reporting_sent(
                self._reserve_name,
                [
                    self._reservation_prefix + name,
                    self._record_prefix + name,
                    self._quarantine_prefix + name,
                ],
                [token, digest, self._claim_prefix, _milliseconds(QUARANTINE_TTL)],
                _RESERVATION_MAYBE_HELD,
            )
        )

    def release_name(self, *, name: str, token: str) -> None:
        self._run(self._release_name, [self._reservation_prefix + name], [token])

    def begin_replace(self, *, name: str, token: str, digest: str) -> ReplaceDecision:
        result = self._run(
            self._begin_replace,
            [self._record_prefix + name, self._quarantine_prefix + name, self._stats_key],
            [
                token,
                self._map_prefix,
                name,
                self._claim_prefix,
                digest,
                _milliseconds(QUARANTINE_TTL),
            ],
        )
        return ReplaceDecision(result.decode())

    def abort_replace(self, *, name: str, token: str, inner_deleted: bool) -> None:
        self._run(
            self._abort_replace,
            [self._record_prefix + name, self._stats_key],
            [token, "1" if inner_deleted else "0", self._map_prefix, name],
        )

    def begin_delete(
        self, *, name: str, token: str, claim_ttl: float, unreferenced_only: bool = False
    ) -> DeleteDecision:
        # If the reply is lost, the script runs again with the same token: its receipt
        # (kept well beyond the retries) answers as the first run did, or the first run
        # never happened and this one decides.
        action, digest, refs, wait_ms = self._run_retrying(
            self._begin_delete,
            [
                self._record_prefix + name,
                self._tombstone_prefix + name,
                self._receipt_prefix + token,
                self._quarantine_prefix + name,
                self._stats_key,
            ],
            [
                token,
                _milliseconds(claim_ttl),
                self._map_prefix,
                self._claim_prefix,
                name,
                _milliseconds(self._receipt_ttl),
                _milliseconds(TOMBSTONE_TTL),
                _milliseconds(QUARANTINE_TTL),
                "1" if unreferenced_only else "0",
            ],
            lambda lost: DeleteOutcomeUnknown(self.display_url, lost, name),
            lambda cause: IndexUnavailable(self.display_url, cause, "Nothing was deleted."),
        )
        return DeleteDecision(
            action.decode(),
            digest=digest.decode(),
            refs=int(refs),
            retry_after=max(int(wait_ms), 1) / 1000,
        )

    def commit_delete(self, *, name: str, digest: str, token: str) -> None:
        # Running it twice is harmless: everything it changes is checked against the token.
        # The inner object is gone already, so a refused write (a failover) is retried too
        # within wait_timeout: an unrecorded delete leaves the name "deleting".
        self._run_retrying(
            self._commit_delete,
            [
                self._record_prefix + name,
                self._claim_prefix + digest,
                self._tombstone_prefix + name,
                self._untracked_deletes,
                self._stats_key,
            ],
            [token, _milliseconds(TOMBSTONE_TTL)],
            lambda lost: IndexUnavailable(self.display_url, lost),
        )

    def cancel_delete(
        self, *, name: str, token: str, digest: str, refs: int, size: int, lease: str
    ) -> bool:
        map_digest = digest or lease
        # It gives references back, so it is WAITed for like a delete's commit, and retried
        # like one: a second run finds the token gone and changes nothing (it answers 0,
        # which only leaves "repaired" out of the caller's log line).
        return bool(
            self._run_retrying(
                self._cancel_delete,
                [
                    self._record_prefix + name,
                    self._claim_prefix + lease,
                    self._tombstone_prefix + name,
                    self._map_prefix + map_digest,
                    self._stats_key,
                ],
                [token, refs, name, digest, size],
                # A refused write (a failover) is retried too: the name would stay
                # "deleting" until a later call takes it over.
                lambda lost: IndexUnavailable(
                    self.display_url, lost, _CANCEL_MAYBE_LOST, sent=True
                ),
            )
        )

    def lookup(self, name: str) -> ObjectRecord | None:
        return self.lookup_many([name])[0]

    def _namespace_server(self) -> redis.Redis:
        """Return a client of the server that holds the namespace's keys.

        On a cluster, the primary that owns the namespace's slot (every key of a namespace
        carries one hash tag), as the cluster client's slot map has it.
        """
        if not self.is_cluster:
            return self._client
        client = self._cluster()
        return client.get_redis_connection(client.get_node_from_key(self._stats_key))

    def _on_namespace_server(self, call: Callable[[redis.Redis], T]) -> T:
        """Run ``call`` (reads, or a write safe to send twice) on the namespace's server.

        Under ``_guard``'s error handling. On a cluster, ``MOVED`` (the slot has a new
        owner; nothing ran) updates the slot map and sends again; ``ASK`` (the slot is
        being migrated, some keys already on the other node) is refused like ``TRYAGAIN``:
        a batch split over two nodes would read half of it from each at different times.
        """

        def attempt() -> T:
            for _ in range(_REDIRECTIONS):
                server = self._namespace_server()
                try:
                    return call(server)
                except MovedError as exc:
                    self._cluster().nodes_manager.move_slot(exc)
                except AskError as exc:
                    raise TryAgainError(
                        f"the namespace's slot is being migrated ({exc}); try again once "
                        "the resharding is done"
                    ) from exc
                except (redis.ConnectionError, redis.TimeoutError):
                    if self.is_cluster:
                        self._topology_stale = True  # a replica may have been promoted
                    raise
            self._topology_stale = True
            raise TryAgainError(f"more than {_REDIRECTIONS} redirections")

        return self._guard(attempt)

    def _probe_slot(self, server: redis.Redis) -> None:
        """Check that ``server`` owns the namespace's slot and is not migrating it.

        ``EXISTS`` of a key no namespace ever writes: the owner answers 0, any other
        node ``MOVED``, an owner migrating the slot ``ASK`` (the key is not there). A
        keyless command such as ``SCAN`` gets no redirection, so this is how a scan knows
        that it saw every key of the namespace.
        """
        server.exists(self._slot_probe_key)

    def lookup_many(self, names: list[str]) -> list[ObjectRecord | None]:
        records: list[ObjectRecord | None] = []
        prefix = self._record_prefix
        for start in range(0, len(names), READ_BATCH):
            chunk = names[start : start + READ_BATCH]
            replies = self._read_fields([prefix + name for name in chunk], _LOOKUP_FIELDS)
            for name, (digest, refs, state, size) in zip(chunk, replies, strict=True):
                records.append(
                    None
                    if state is None
                    else ObjectRecord(
                        name, digest.decode(), int(refs), state.decode(), int(size or 0)
                    )
                )
        return records

    def _read_fields(self, keys: list[str] | list[bytes], fields: tuple[str, ...]) -> list[Any]:
        """Return ``HMGET key *fields`` for each of ``keys``: one script call, not a pipeline.

        Every key of a namespace lies in one slot (its hash tag), so one call serves a
        cluster too; a pipeline would pay redis-py's per-command cost on each record.
        """
        if not keys:
            return []
        # The slot probe first: a cluster refuses the call while the slot migrates.
        probe: list[Any] = [self._slot_probe_key]
        records = self._run(self._read_records_script, probe + list(keys), list(fields))
        return cast(list[Any], records)

    def compare_counts(
        self, names: list[str], counts: list[int], *, shared_from: int = 2
    ) -> CountCheck:
        # One script call per READ_BATCH names; only the differences come back.
        differences: list[tuple[int, str | None, int, int]] = []
        shared: list[tuple[int, int, int]] = []
        totals = [0] * 6
        # The names go as arguments (their records live in buckets the script finds).
        keys = [self._bucket_state_key, self._slot_probe_key]
        for start in range(0, len(names), READ_BATCH):
            end = start + READ_BATCH
            args = [shared_from, *names[start:end], *counts[start:end]]
            _, found, heavy, sums = self._run(self._compare_counts_script, keys, args)
            # Lua counts from 1; the flat lists hold 4 (3) values per record.
            for position, state, refs, size in zip(*[iter(found)] * 4, strict=True):
                differences.append(
                    (start + position - 1, state.decode() if state else None, refs, size)
                )
            for position, refs, size in zip(*[iter(heavy)] * 3, strict=True):
                shared.append((start + position - 1, refs, size))
            totals = [total + value for total, value in zip(totals, sums, strict=True)]
        records, references, size_high, size_low, logical_high, logical_low = totals
        stats = IndexStats(
            records,
            references,
            (size_high << 32) + size_low,
            (logical_high << 32) + logical_low,
        )
        return CountCheck(records, differences, shared, stats)

    def count_records(self) -> int:
        # Layout 3 keeps the number of records beside the buckets: nothing is read.
        return int(
            self._run(self._count_records, [self._bucket_state_key, self._slot_probe_key], [])
        )

    def content_names(self, digests: list[str]) -> list[str | None]:
        names: list[str | None] = []
        for start in range(0, len(digests), READ_BATCH):
            keys = [self._map_prefix + digest for digest in digests[start : start + READ_BATCH]]
            values = self._run(
                self._read_maps, [self._slot_probe_key, *keys], [self._record_prefix]
            )
            names.extend(value.decode() if value is not None else None for value in values)
        return names

    def forget_content(self, *, digest: str, name: str) -> None:
        self._run(self._forget_content, [self._map_prefix + digest], [name])

    def scan_records(self, *, batch_size: int = READ_BATCH) -> Iterator[ScannedRecord]:
        # Walk the record buckets in order, a few per script call (each call atomic; every
        # key in the namespace's slot, so a cluster routes it like any script). Buckets
        # are only ever added, at the end, and a split moves records to a later bucket: a
        # record present throughout is seen at least once, one moved meanwhile maybe twice
        # (as SCAN may return a key twice).
        per_call = max(1, batch_size // 32)

        def owner(server: redis.Redis) -> redis.Redis:
            if self.is_cluster:
                self._probe_slot(server)
            return server

        # The buckets are undeclared keys: a slot being migrated could hide some of them
        # from a call. Check before and after that the slot stayed on one unmigrating owner.
        server = self._on_namespace_server(owner)
        first = 0
        while True:
            reply = self._run(
                self._scan_buckets,
                [self._bucket_state_key, self._slot_probe_key],
                [first, per_call],
            )
            count, values = int(reply[0]), reply[1:]
            for at in range(0, len(values), 6):
                name, digest, refs, state, size, touched = values[at : at + 6]
                yield ScannedRecord(
                    ObjectRecord(
                        name=name.decode(),
                        digest=digest.decode(),
                        refs=int(refs),
                        state=state.decode(),
                        size=int(size or 0),
                    ),
                    touched=float(touched or 0),
                )
            first += per_call
            if first >= count:
                break
        if self.is_cluster:
            # Still the owner, and not migrating: no record left this server unseen.
            self._guard_scan_server(server)

    def _guard_scan_server(self, server: redis.Redis) -> None:
        try:
            self._guard(lambda: self._probe_slot(server))
        except (MovedError, AskError) as exc:
            self._topology_stale = True
            cause = TryAgainError(f"the namespace's slot moved during the scan ({exc})")
            raise IndexUnavailable(
                self.display_url, cause, "The scan saw only part of the records; run again."
            ) from exc

    def stats(self) -> IndexStats:
        values = self._on_namespace_server(
            lambda server: server.hmget(
                self._stats_key, "objects", "references", "physical", "logical"
            )
        )
        return IndexStats(*(int(value or 0) for value in values))

    def set_stats(self, stats: IndexStats) -> None:
        mapping: Any = {
            "objects": stats.objects,
            "references": stats.references,
            "physical": stats.physical_bytes,
            "logical": stats.logical_bytes,
        }
        # Overwriting with the same figures twice is harmless: a MOVED reply is sent again.
        self._on_namespace_server(lambda server: server.hset(self._stats_key, mapping=mapping))

    def set_references(self, name: str, refs: int, *, grace: float) -> SetReferences:
        reply = self._run(
            self._set_references,
            [self._record_prefix + name, self._stats_key],
            [refs, repr(float(grace))],
        )
        return cast(SetReferences, reply.decode())

    def add_record(self, *, name: str, digest: str, size: int, refs: int) -> bool:
        return bool(self._run(self._add_record, *self._add_record_call(name, digest, size, refs)))

    def _add_record_call(
        self, name: str, digest: str, size: int, refs: int
    ) -> tuple[list[str], list[Any]]:
        """Return the KEYS and ARGV of add_record.lua for one record."""
        keys = [
            self._record_prefix + name,
            self._map_prefix + digest,
            self._tombstone_prefix + name,
            self._reservation_prefix + name,
            self._quarantine_prefix + name,
            self._stats_key,
        ]
        return keys, [digest, size, len(name), refs, name, self._record_prefix]

    def add_records(self, records: list[tuple[str, str, int, int]]) -> list[bool]:
        # ADD_BATCH records a call (add_records.lua; each added or refused on its own):
        # a call blocks the server about 20 µs a record.
        keys = [self._bucket_state_key, self._slot_probe_key, self._stats_key]
        prefixes = [
            self._record_prefix,
            self._tombstone_prefix,
            self._reservation_prefix,
            self._quarantine_prefix,
        ]
        replies: list[bool] = []
        for start in range(0, len(records), ADD_BATCH):
            args: list[Any] = list(prefixes)
            for name, digest, size, refs in records[start : start + ADD_BATCH]:
                args += (name, digest, size, len(name), refs)
            replies.extend(bool(reply) for reply in self._run(self._add_records_script, keys, args))
        return replies

    def is_initialised(self) -> bool:
        return bool(self._guard(lambda: self.client.exists(self._initialised_key)))

    def mark_initialised(self) -> None:
        self._guard(lambda: self.client.set(self._initialised_key, b"1"))

    def ping(self) -> None:
        self._guard(lambda: self.client.ping())

    def close(self) -> None:
        if self.is_cluster:
            with self._cluster_lock:
                if self._cluster_client is not None:
                    self._cluster_client.close()
                    self._cluster_client = None
        else:
            if self._held is not None:
                self._held.close()
            self._client.close()
