"""Reach an index's object records whatever its key layout, and fill a layout 2 index.

Tests that poke a record (raise its refs, read its fields) go through ``record_fields`` /
``set_record_fields`` rather than ``HGET``/``HSET`` on a key: in layout 3 a record is one
packed entry of a bucket (``dedupstore/index/lua/packed.lua``), read and written by the
same Lua functions the index's scripts use.

``Layout2RedisIndex`` is the Redis index as it was in key layout 2 (its scripts are kept
under ``dedupstore/testing/layout2_lua``): the migration tests fill an index with it, as a
deployment of that dedupstore did, then migrate it.
"""

from __future__ import annotations

from typing import Any

from dedupstore.index.redis import RedisIndex, _load_script, build_scripts

__all__ = ["Layout2RedisIndex", "record_fields", "set_record_fields"]

# no-writes: allowed on a cluster that is down, with cluster-allow-reads-when-down.
_READ = (
    "#!lua flags=no-writes\n"
    + _load_script("packed")
    + (
        "local r = rec_load(KEYS[1])\n"
        "if not r then return {} end\n"
        "local reply = {}\n"
        "local internal = {holder = true, raw = true, raw_of = true, t_ms = true, t_of = true}\n"
        "local _, _ = r.digest, r.t  -- made from the raw bytes on first use\n"
        "for field, value in pairs(r) do\n"
        "  if not internal[field] then reply[#reply + 1] = field; reply[#reply + 1] = value end\n"
        "end\n"
        "return reply\n"
    )
)
_WRITE = _load_script("packed") + "rec_hset(KEYS[1], unpack(ARGV))\nreturn 1\n"


def _run(client: Any, script: str, keys: list[str], args: list[Any]) -> Any:
    return client.eval(script, len(keys), *keys, *args)


def record_fields(index: RedisIndex, name: str, *, client: Any = None) -> dict[str, str]:
    """Return the fields of ``name``'s record (``{}``: none), as layout 2's hash held them.

    ``client``: ask this client (a cluster node, say) instead of the index's.
    """
    key = index._record_prefix + name
    client = client if client is not None else index.client
    if isinstance(index, Layout2RedisIndex):
        raw = client.hgetall(key)
        return {k.decode(): v.decode() for k, v in raw.items()}
    flat = _run(client, _READ, [key], [])
    return {flat[i].decode(): flat[i + 1].decode() for i in range(0, len(flat), 2)}


def set_record_fields(index: RedisIndex, name: str, **fields: Any) -> None:
    """Set fields of ``name``'s record (creating it), bypassing every check and counter."""
    key = index._record_prefix + name
    if isinstance(index, Layout2RedisIndex):
        index.client.hset(key, mapping=fields)
        return
    args: list[Any] = []
    for field, value in fields.items():
        args += [field, value]
    _run(index.client, _WRITE, [key], args)


_LAYOUT2_SCRIPTS = build_scripts(
    lambda *parts: _load_script(*parts, package="dedupstore.testing", folder="layout2_lua"),
    packed=False,
)


class Layout2RedisIndex(RedisIndex):
    """The Redis index in key layout 2: one hash per record, one string per content map.

    Its first use records layout 2 (as that dedupstore did) instead of checking the layout.
    Only the scripts' calls are layout 2's: read the records back through a current index
    after ``migrate_index``.
    """

    def _script_sources(self) -> dict[str, str]:
        return _LAYOUT2_SCRIPTS

    def _check_eviction_policy(self) -> None:
        client = self.client
        client.set(self._layout_key, "2", nx=True)
        self._policy_checked = True
