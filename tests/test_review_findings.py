"""Races and aliases found in review: each of these failed before its fix."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.exceptions import ImproperlyConfigured, SuspiciousFileOperation
from django.core.files.base import ContentFile

from dedupstore import ClaimLost, DedupStorage, IndexUnavailable
from dedupstore.checks import check_storages
from dedupstore.index.base import ClaimKeeper
from dedupstore.testing.redis import RedisServer, find_free_port
from tests.contract import read_all

Make = Callable[..., DedupStorage]

#: Claim lifetime of the crash tests: a dead holder's lease is gone after it.
SHORT_TTL = 0.05


class Boom(RuntimeError):
    pass


def fail_once(target: Any, method: str) -> None:
    def failing(*args: Any, **kwargs: Any) -> Any:
        target.__dict__.pop(method, None)
        raise Boom(method)

    setattr(target, method, failing)


def test_concurrent_overwrite_of_an_uncommitted_name_keeps_content_right(
    make_fs_dedup: Make,
) -> None:
    a = make_fs_dedup(overwrite=True, namespace="race")
    b = make_fs_dedup(overwrite=True, namespace="race")
    original = a.inner._save

    def write_then_let_b_overwrite(name: str, content: Any) -> str:
        stored = original(name, content)  # A has written but not yet committed
        b.save("avatar.png", ContentFile(b"Y" * 10))
        return stored

    a.inner._save = write_then_let_b_overwrite
    first = a.save("avatar.png", ContentFile(b"X" * 10))
    a.inner._save = original
    assert read_all(a, first) == b"X" * 10
    hit = a.save("other.png", ContentFile(b"X" * 10))
    assert read_all(a, hit) == b"X" * 10


@pytest.mark.parametrize("failing", ["inner._save", "index.commit_save"])
def test_a_failed_overwrite_does_not_lock_the_name(make_fs_dedup: Make, failing: str) -> None:
    storage = make_fs_dedup(overwrite=True, claim_ttl=0.3, wait_timeout=1)
    storage.save("a.txt", ContentFile(b"old"))
    owner, method = failing.split(".")
    fail_once(getattr(storage, owner), method)
    with pytest.raises(Boom):
        storage.save("a.txt", ContentFile(b"new"))
    time.sleep(0.4)
    storage.delete("a.txt")  # raised ClaimTimeout while the record stayed "replacing"
    assert storage.save("a.txt", ContentFile(b"again")) == "a.txt"


@pytest.mark.parametrize("alias", ["a//b.txt", "a/./b.txt", "a/b/../b.txt"])
def test_aliases_of_a_name_are_refused(make_fs_dedup: Make, alias: str) -> None:
    storage = make_fs_dedup(overwrite=True)
    name = storage.save("a/b.txt", ContentFile(b"shared"))
    assert storage.save("c.txt", ContentFile(b"shared")) == name
    with pytest.raises(SuspiciousFileOperation):
        storage.delete(alias)
    with pytest.raises(SuspiciousFileOperation):
        storage.save(alias, ContentFile(b"other"))
    assert read_all(storage, name) == b"shared" and storage.references(name) == 2


def test_a_password_in_the_url_query_stays_out_of_migrations() -> None:
    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index="redis://127.0.0.1:6379/0?password=hunter2&db=1",
    )
    assert "hunter2" not in repr(storage.deconstruct())


def test_inner_allow_overwrite_is_reported(settings: Any) -> None:
    settings.STORAGES = {
        **settings.STORAGES,
        "overwriting": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"allow_overwrite": True},
        },
        "deduped": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {"inner": "overwriting", "index": "locmem://w002"},
        },
    }
    import django

    if django.VERSION < (5, 1):
        pytest.skip("FileSystemStorage(allow_overwrite=...) arrived in Django 5.1")
    assert "dedupstore.W002" in [m.id for m in check_storages()]


def _die_while_replacing(storage: DedupStorage, name: str, new: bytes) -> None:
    """Do what a saver does up to its inner write, then stop (its process died)."""
    digest = storage.digest(ContentFile(new))
    decision = storage.index.begin_save(
        digest=digest,
        reuse="content",
        name=name,
        max_length=None,
        token="dead",
        claim_ttl=SHORT_TTL,
    )
    assert decision.action == "claimed"
    assert storage.index.begin_replace(name=name, token="dead", digest=digest) == "replace"
    # While the holder's claim lives, nobody else may touch the record.
    assert storage.index.begin_replace(name=name, token="other", digest=digest) == "wait"
    assert storage.index.begin_delete(name=name, token="other", claim_ttl=1).action == "wait"
    time.sleep(SHORT_TTL * 2)  # nobody renews the dead holder's claim: it expires


def test_a_dead_replacer_does_not_lock_the_name_for_saves(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    storage.save("a.txt", ContentFile(b"old"))
    _die_while_replacing(storage, "a.txt", b"new")
    # Was ClaimTimeout. The dead replacer may still write a.txt: the save goes elsewhere.
    name = storage.save("a.txt", ContentFile(b"newer"))
    assert name != "a.txt"
    assert read_all(storage, name) == b"newer" and storage.references(name) == 1
    assert storage.save("b.txt", ContentFile(b"newer")) == name


def test_a_dead_replacer_does_not_lock_the_name_for_deletes(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    storage.save("a.txt", ContentFile(b"old"))
    _die_while_replacing(storage, "a.txt", b"new")
    storage.delete("a.txt")  # was ClaimTimeout: the one reference goes, and the object
    assert not storage.exists("a.txt") and storage.index.lookup("a.txt") is None


def test_a_dead_deleter_does_not_block_overwrites(make_fs_dedup: Make, index_url: str) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    storage.save("a.txt", ContentFile(b"old"))
    # A deleter marks the record "deleting" and dies before deleting the inner object.
    decision = storage.index.begin_delete(name="a.txt", token="dead", claim_ttl=SHORT_TTL)
    assert decision.action == "delete"
    digest = storage.digest(ContentFile(b"new"))
    assert storage.index.begin_replace(name="a.txt", token="other", digest=digest) == "wait"
    time.sleep(SHORT_TTL * 2)
    # Was ClaimTimeout. The dead deleter may still delete a.txt: the save goes elsewhere.
    name = storage.save("a.txt", ContentFile(b"new"))
    assert name != "a.txt"
    assert read_all(storage, name) == b"new" and storage.references(name) == 1


def test_an_aborted_takeover_of_a_dead_deletion_leaves_it_to_the_next_delete(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL, wait_timeout=0.5)
    storage.save("a.txt", ContentFile(b"old"))
    storage.index.begin_delete(name="a.txt", token="dead", claim_ttl=SHORT_TTL)
    time.sleep(SHORT_TTL * 2)
    index = storage.index
    # The dead deleter may still delete the name: nobody replaces it meanwhile.
    assert index.begin_replace(name="a.txt", token="taker", digest="d" * 64) == "quarantined"
    index.abort_replace(name="a.txt", token="taker", inner_deleted=False)  # changes nothing
    # No reference was restored: the record is an interrupted deletion, never live.
    record = index.lookup("a.txt")
    assert record is not None and (record.state, record.refs) == ("deleting", 0)
    assert storage.references("a.txt") == 0
    storage.delete("a.txt")
    assert not storage.exists("a.txt") and index.lookup("a.txt") is None


def _claim(storage: DedupStorage, content: bytes, token: str, ttl: float) -> str:
    digest = storage.digest(ContentFile(content))
    decision = storage.index.begin_save(
        digest=digest, reuse="content", name="x", max_length=None, token=token, claim_ttl=ttl
    )
    assert decision.action == "claimed"
    return digest


def test_a_replacer_that_lost_its_lease_does_not_clobber_the_record(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True)
    storage.save("a.txt", ContentFile(b"old"))
    index = storage.index
    slow = _claim(storage, b"slow", "slow", SHORT_TTL)
    assert index.begin_replace(name="a.txt", token="slow", digest=slow) == "replace"
    time.sleep(SHORT_TTL * 2)  # the slow holder stalls past its claim: its lease is gone
    fast = _claim(storage, b"fast", "fast", 10)
    # Nobody replaces the name while the slow holder may still write it ...
    assert index.begin_replace(name="a.txt", token="fast", digest=fast) == "quarantined"
    # ... but a delete takes its record over, and removes it.
    decision = index.begin_delete(name="a.txt", token="deleter", claim_ttl=10)
    assert decision.action == "delete"
    index.commit_delete(name="a.txt", digest=decision.digest, token="deleter")
    with pytest.raises(ClaimLost, match="removed it from the index") as caught:
        index.commit_save(digest=slow, token="slow", name="a.txt", size=4, replacing=True)
    assert caught.value.taken_by == "none"
    assert index.lookup("a.txt") is None


def test_a_save_whose_replace_was_taken_over_raises_claim_lost(
    make_fs_dedup: Make, index_url: str
) -> None:
    storage = make_fs_dedup(index=index_url, overwrite=True, claim_ttl=SHORT_TTL)
    storage.save("a.txt", ContentFile(b"old"))
    index = storage.index
    held: dict[str, str] = {}
    begin_replace = index.begin_replace

    def spy(**kwargs: Any) -> Any:  # the real call; remembers the saver's token and lease
        held.update(kwargs)
        return begin_replace(**kwargs)

    index.begin_replace = spy  # type: ignore[method-assign]
    original = storage.inner._save

    def stall_then_lose_the_lease(name: str, content: Any) -> str:
        # The saver stalls past its claim (simulated: its claim is gone) during its upload,
        # and a delete() of the name takes the record over and deletes it.
        index.release_claim(digest=held["digest"], token=held["token"])
        other = _claim(storage, b"other", "other", 10)
        assert begin_replace(name="a.txt", token="other", digest=other) == "quarantined"
        decision = index.begin_delete(name="a.txt", token="deleter", claim_ttl=10)
        assert decision.action == "delete"
        storage.inner.delete("a.txt")
        index.commit_delete(name="a.txt", digest=decision.digest, token="deleter")
        return str(original(name, content))

    storage.inner._save = stall_then_lose_the_lease
    with pytest.raises(ClaimLost, match="removed it from the index") as caught:
        storage.save("a.txt", ContentFile(b"mine"))
    assert caught.value.taken_by == "none"
    assert index.lookup("a.txt") is None


def test_the_keeper_stops_renewing_a_lost_claim(make_fs_dedup: Make, index_url: str) -> None:
    storage = make_fs_dedup(index=index_url)
    index = storage.index
    digest = _claim(storage, b"C", "mine", 10)
    keeper = ClaimKeeper(index, SHORT_TTL)
    keeper.keep(digest, "mine")
    index.release_claim(digest=digest, token="mine")
    _claim(storage, b"C", "thief", 10)
    deadline = time.monotonic() + 0.5
    while not keeper.lost("mine") and time.monotonic() < deadline:
        time.sleep(0.005)
    assert keeper.lost("mine")
    keeper.release("mine")
    assert not keeper.lost("mine")


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("claim_ttl", 0.0005, r"'claim_ttl' must be at least 0\.01 seconds"),
        ("claim_ttl", 0.009, r"'claim_ttl' must be at least 0\.01 seconds"),
        ("claim_ttl", float("nan"), "'claim_ttl' must be a finite number"),
        ("claim_ttl", float("inf"), "'claim_ttl' must be a finite number"),
        ("wait_timeout", float("nan"), "'wait_timeout' must be a finite number"),
        ("index_timeout", float("inf"), "'index_timeout' must be a finite number"),
        ("index_timeout", 0, "'index_timeout' must be a positive"),
    ],
)
def test_unusable_durations_are_refused(option: str, value: float, message: str) -> None:
    with pytest.raises(ImproperlyConfigured, match=message):
        DedupStorage(
            inner={"BACKEND": "django.core.files.storage.InMemoryStorage"}, **{option: value}
        )


def test_the_shortest_claim_ttl_works(make_fs_dedup: Make, index_url: str) -> None:
    storage = make_fs_dedup(index=index_url, claim_ttl=0.01)
    assert storage.save("a.txt", ContentFile(b"C")) == "a.txt"
    # Called directly, the index rounds a sub-millisecond lifetime up instead of failing
    # (Redis refuses "PX 0").
    decision = storage.index.begin_save(
        digest="d" * 64, reuse="content", name="b", max_length=None, token="t", claim_ttl=0.0004
    )
    assert decision.action == "claimed"
    assert storage.index.refresh_claim(digest="d" * 64, token="t", claim_ttl=0.0004) in (
        True,
        False,
    )


@pytest.fixture
def private_redis() -> Iterator[RedisServer]:
    """Start a redis-server of this test's own: the test breaks it on purpose."""
    with RedisServer() as server:
        yield server


def _out_of_memory(client: Any) -> None:
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", 1)  # every write that may grow memory is refused: OOM


def _read_only(client: Any) -> None:
    # A replica of a loopback port where nothing listens: it stays read-only.
    client.replicaof("127.0.0.1", find_free_port())


@pytest.mark.parametrize("break_index", [_out_of_memory, _read_only])
def test_an_index_that_refuses_writes_is_unavailable(
    private_redis: RedisServer, tmp_path: Path, break_index: Callable[[Any], None]
) -> None:
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path)},
    }
    storage = DedupStorage(inner=inner, index=private_redis.url, namespace="refusing")
    bypassing = DedupStorage(
        inner=inner, index=private_redis.url, namespace="refusing", on_index_error="bypass"
    )
    name = storage.save("a.txt", ContentFile(b"counted"))
    break_index(storage.index.client)  # type: ignore[attr-defined]
    with pytest.raises(IndexUnavailable):
        storage.save("b.txt", ContentFile(b"new"))
    with pytest.raises(IndexUnavailable):
        storage.save("c.txt", ContentFile(b"counted"))  # a hit must increment: a write
    bypassed = bypassing.save("a.txt", ContentFile(b"counted"))  # was OOM/ReadOnlyError
    assert bypassed != name and read_all(storage, bypassed) == b"counted"
    with pytest.raises(IndexUnavailable):
        storage.delete(name)
    assert read_all(storage, name) == b"counted" and storage.references(name) == 1


def test_a_script_error_is_not_taken_for_an_unavailable_index(
    make_fs_dedup: Make, redis_url: str
) -> None:
    import redis

    storage = make_fs_dedup(index=redis_url, reuse="name", on_index_error="bypass")
    client = storage.index.client  # type: ignore[attr-defined]
    client.set(f"{{{storage.namespace}}}:o:a.txt", "not a record")  # WRONGTYPE in the script
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        storage.save("a.txt", ContentFile(b"C"))
    assert not storage.exists("a.txt")


@pytest.mark.parametrize("path", ["dir/", "dir//", "dir/sub/"])
def test_listdir_takes_a_trailing_slash(make_fs_dedup: Make, path: str) -> None:
    storage = make_fs_dedup()
    storage.save("dir/sub/a.txt", ContentFile(b"A"))
    storage.save("dir/b.txt", ContentFile(b"B"))
    assert storage.listdir(path) == storage.listdir(path.rstrip("/"))  # raised before


@pytest.mark.parametrize("path", ["/", "/dir/", "../", "dir/../../"])
def test_listdir_still_refuses_paths_outside_the_storage(make_fs_dedup: Make, path: str) -> None:
    with pytest.raises(SuspiciousFileOperation):
        make_fs_dedup().listdir(path)


def test_secrets_inside_lists_stay_out_of_migrations() -> None:
    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.InMemoryStorage",
            "OPTIONS": {
                "servers": [{"host": "a", "password": "hunter2"}, ("b", {"token": "t0ken"})],
                "api_keys": ["k3y-one", "k3y-two"],
                "credentials": {"user": "alice", "secret": "s3cr3t"},
                "location": ["kept", 1],
            },
        },
        index="locmem://redact",
    )
    _path, _args, kwargs = storage.deconstruct()
    text = repr(kwargs)
    for secret in ("hunter2", "t0ken", "k3y-one", "k3y-two", "s3cr3t"):
        assert secret not in text
    options = kwargs["inner"]["OPTIONS"]
    assert options["servers"][0] == {"host": "a", "password": "***"}
    assert options["servers"][1] == ("b", {"token": "***"})
    assert options["api_keys"] == ["***", "***"]
    assert options["credentials"] == {"user": "***", "secret": "***"}  # all under a secret
    assert options["location"] == ["kept", 1]
    # Redacting is stable: deconstructing the deconstructed storage changes nothing.
    assert DedupStorage(**kwargs).deconstruct()[2] == kwargs
