"""A hit is one round trip to Redis: one small script, whatever the reuse mode."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.core.files.base import ContentFile

from dedupstore import DedupStorage

Make = Callable[..., DedupStorage]


def _scripts_run(client: redis.Redis) -> int:
    stats = client.info("commandstats")
    return sum(
        stats.get(f"cmdstat_{name}", {}).get("calls", 0) for name in ("evalsha", "eval", "fcall")
    )


@pytest.mark.parametrize("reuse", ["content", "name"])
@pytest.mark.parametrize("verify_hits", [True, False])
def test_a_hit_runs_one_script_and_counts_one_reference(
    make_fs_dedup: Make, redis_url: str, reuse: str, verify_hits: bool
) -> None:
    storage = make_fs_dedup(reuse=reuse, verify_hits=verify_hits)
    name = storage.save("a.bin", ContentFile(b"shared bytes"))
    client = redis.Redis.from_url(redis_url)
    before = _scripts_run(client)
    assert storage.save("a.bin", ContentFile(b"shared bytes")) == name
    assert _scripts_run(client) - before == 1
    assert storage.references(name) == 2


def _script_names(storage: DedupStorage) -> list[str]:
    """Record the name of every script the storage's index runs from now on."""
    index: Any = storage.index
    by_sha = {script.sha: attr for attr, script in vars(index).items() if hasattr(script, "sha")}
    ran: list[str] = []
    for method in ("_run", "_run_once"):
        original = getattr(index, method)

        def recorded(script: Any, keys: Any, args: Any, _original: Any = original) -> Any:
            ran.append(by_sha[script.sha].lstrip("_"))
            return _original(script, keys, args)

        setattr(index, method, recorded)
    return ran


def test_a_miss_asks_for_a_hit_then_claims(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    ran = _script_names(storage)
    name = storage.save("a.bin", ContentFile(b"new bytes"))
    assert ran[:2] == ["hit", "begin_save"] and ran[-1] == "commit_save"
    assert ran.count("hit") == 1
    assert storage.references(name) == 1
    # A saver that reuses nothing never asks for a hit.
    never = make_fs_dedup(reuse="never")
    ran = _script_names(never)
    never.save("b.bin", ContentFile(b"other bytes"))
    assert ran[0] == "begin_save" and "hit" not in ran


def test_a_hit_on_a_name_too_long_for_the_field_stores_a_new_object(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    long_name = storage.save("a-rather-long-directory/with-a-long-file-name.bin", ContentFile(b"x"))
    short = storage.save("b.bin", ContentFile(b"x"), max_length=10)
    assert short != long_name and len(short) <= 10
    assert storage.references(long_name) == 1 and storage.references(short) == 1


def test_a_hit_loads_its_function_again_on_a_server_that_lost_it(
    make_fs_dedup: Make, redis_url: str
) -> None:
    storage = make_fs_dedup()
    name = storage.save("a.bin", ContentFile(b"shared bytes"))
    client = redis.Redis.from_url(redis_url)
    assert client.function_list()  # the first hit's call loaded the library
    client.function_flush()  # as a restart without persistence would
    assert storage.save("b.bin", ContentFile(b"shared bytes")) == name
    assert storage.references(name) == 2
    assert client.function_list()
    assert client.info("commandstats").get("cmdstat_fcall", {}).get("calls", 0) >= 2


@pytest.mark.parametrize("denied", ["-function", "-fcall"])
def test_hits_run_as_scripts_where_an_acl_denies_functions(
    make_fs_dedup: Make, redis_url: str, denied: str
) -> None:
    client = redis.Redis.from_url(redis_url)
    client.function_flush()
    user = f"nofunctions{denied.strip('-')}"
    client.acl_setuser(
        user,
        enabled=True,
        passwords=["+pw"],
        keys=["*"],
        channels=["*"],
        commands=["+@all", denied],
    )
    try:
        host_port = redis_url.split("://", 1)[1]
        storage = make_fs_dedup(index=f"redis://{user}:pw@{host_port}")
        name = storage.save("a.bin", ContentFile(b"shared bytes"))
        assert storage.save("b.bin", ContentFile(b"shared bytes")) == name
        assert storage.save("c.bin", ContentFile(b"shared bytes")) == name
        assert storage.references(name) == 3
        assert storage.index._hit_function is None  # type: ignore[attr-defined]
    finally:
        client.acl_deluser(user)
