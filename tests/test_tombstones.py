"""Tombstones of deletes: they live while their deleter does, lapse after, and are heeded.

An untracked delete leaves a tombstone ("deleting", then "deleted") that lives
``TOMBSTONE_TTL`` past its deleter's lease: renewed with the lease while the deleter
lives, gone by itself after a failed or dead one. A save whose write outlasts half a
tombstone's lifetime checks its object before committing, once, whatever else is deleted
meanwhile, and writes again only if its own name was deleted. Against a real Redis and the
locmem twin, with a short lifetime standing for the 600 s of ``TOMBSTONE_TTL``.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from tests.contract import read_all
from tests.helpers import PATIENCE, Background, Paused

Make = Callable[..., DedupStorage]

#: Claim lifetime of the crash tests.
SHORT_TTL = 0.05


#: Claim lifetime of a party that stays alive while a test waits: its keeper renews every
#: LIVE_TTL/3, which a busy machine's scheduling delays (tens of ms) never make late,
#: where SHORT_TTL's every 17 ms did.
LIVE_TTL = 1.5


def _short_tombstones(monkeypatch: pytest.MonkeyPatch, lifetime: float) -> None:
    """Let ``lifetime`` seconds stand for the 600 s of TOMBSTONE_TTL in both indexes."""
    from dedupstore.index import locmem as locmem_index
    from dedupstore.index import redis as redis_index

    monkeypatch.setattr(locmem_index, "TOMBSTONE_TTL", lifetime)
    monkeypatch.setattr(redis_index, "TOMBSTONE_TTL", lifetime)


def _tombstone_state(storage: DedupStorage, name: str) -> str | None:
    index = storage.index
    client = getattr(index, "client", None)
    if client is not None:
        state = client.hget(f"{{{storage.namespace}}}:t:{name}", "state")
        return None if state is None else state.decode()
    with index._store.lock:  # type: ignore[attr-defined]
        tombstone = index._tombstone(name)  # type: ignore[attr-defined]
        return None if tombstone is None else tombstone.state


def test_a_long_write_is_not_written_again_forever_while_other_names_are_deleted(
    make_fs_dedup: Make, index_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifetime = 0.4  # stands for the 600 s of TOMBSTONE_TTL
    _short_tombstones(monkeypatch, lifetime)
    storage = make_fs_dedup(index=index_url)
    original = storage.inner._save
    writes: list[str] = []

    def slow_write(name: str, content: object) -> str:
        # A write longer than half the tombstone lifetime, while another user deletes an
        # unrelated name (an untracked one: the index counts the delete all the same).
        writes.append(name)
        if len(writes) > 3:
            raise RuntimeError(f"still writing again after {len(writes) - 1} rewrites")
        storage.delete(f"unrelated-{len(writes)}.txt")
        time.sleep(lifetime * 0.6)
        return str(original(name, content))

    storage.inner._save = slow_write
    name = storage.save("big.bin", ContentFile(b"a large upload"))
    assert read_all(storage, name) == b"a large upload"
    # The object was still there: checked, not written again, and no orphan left.
    assert writes == ["big.bin"] and name == "big.bin"
    assert storage.listdir("")[1] == ["big.bin"]
    assert storage.references("big.bin") == 1


def test_a_long_write_whose_name_is_deleted_after_the_check_is_written_again(
    make_fs_dedup: Make, index_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifetime = 0.4
    _short_tombstones(monkeypatch, lifetime)
    storage = make_fs_dedup(index=index_url)
    inner = storage.inner
    original_save, original_exists = inner._save, inner.exists
    writes: list[str] = []
    checks: list[str] = []

    def slow_write(name: str, content: object) -> str:
        writes.append(name)
        time.sleep(lifetime * 0.6)
        return str(original_save(name, content))

    def exists(name: str) -> bool:
        found = bool(original_exists(name))
        if writes and not checks:
            # The saver's check after a long write: the object is there, and then an
            # untracked delete of the name runs to its end before the saver commits again.
            checks.append(name)
            storage.delete(name)
        return found

    inner._save = slow_write
    inner.exists = exists
    name = storage.save("big.bin", ContentFile(b"a large upload"))
    assert checks == ["big.bin"]
    assert len(writes) == 2, "the delete after the check was not seen"
    assert read_all(storage, name) == b"a large upload"
    assert storage.references(name) == 1


def test_the_tombstone_of_a_failed_untracked_delete_does_not_stay_forever(
    make_fs_dedup: Make, redis_url: str
) -> None:
    from dedupstore.index.base import TOMBSTONE_TTL
    from tests.helpers import FailingInner

    storage = make_fs_dedup(index=redis_url, claim_ttl=SHORT_TTL)
    FailingInner(storage.inner, "delete", PermissionError("inner storage refused"))
    with pytest.raises(PermissionError):
        storage.delete("never-saved.txt")
    time.sleep(SHORT_TTL * 3)  # the lease lapsed long ago; nobody touches the name again
    client = storage.index.client  # type: ignore[attr-defined]
    key = f"{{{storage.namespace}}}:t:never-saved.txt"
    assert client.hget(key, "state") == b"deleting"  # it is there, as it must be for a while
    # ... and goes by itself: TOMBSTONE_TTL after the lease could last be renewed.
    assert 0 < client.pttl(key) <= (SHORT_TTL + TOMBSTONE_TTL) * 1000
    assert client.pttl(key) > (TOMBSTONE_TTL - 1) * 1000


def test_a_dead_untracked_deletes_tombstone_lapses_and_an_overlapping_save_writes_again(
    make_fs_dedup: Make, index_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifetime = 0.3
    _short_tombstones(monkeypatch, lifetime)
    # The saver stays alive (its claim must hold while it waits); the deleter dies.
    storage = make_fs_dedup(index=index_url, claim_ttl=LIVE_TTL, wait_timeout=PATIENCE)
    write = Paused(storage.inner, "_save")
    saver = Background(lambda: storage.save("x.txt", ContentFile(b"the saved content")))
    write.wait()  # x.txt is written, not committed yet
    # A delete of the (untracked) name deletes the object and dies before recording it.
    decision = storage.index.begin_delete(name="x.txt", token="dead", claim_ttl=SHORT_TTL)
    assert decision.action == "unknown"
    storage.inner.delete("x.txt")
    assert _tombstone_state(storage, "x.txt") == "deleting"
    time.sleep(SHORT_TTL + lifetime + 0.1)
    assert _tombstone_state(storage, "x.txt") is None  # it lapsed: no key stays forever
    write.release.set()
    # The saver's commit finds no tombstone, but its write outlasted one: it checks, finds
    # its object gone, and writes it again instead of recording a name without an object.
    name = saver.result()
    assert read_all(storage, name) == b"the saved content"
    assert storage.references(name) == 1


def test_a_live_untracked_deletes_tombstone_is_renewed_with_its_lease(
    make_fs_dedup: Make, index_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lifetime = 0.1
    _short_tombstones(monkeypatch, lifetime)
    storage = make_fs_dedup(index=index_url, claim_ttl=LIVE_TTL, wait_timeout=PATIENCE)
    storage.inner.save("slow.txt", ContentFile(b"stored before the wrapper"))
    delete = Paused(storage.inner, "delete")
    deleter = Background(lambda: storage.delete("slow.txt"))
    delete.wait()
    time.sleep((LIVE_TTL + lifetime) * 2)  # far beyond its first lifetime
    assert _tombstone_state(storage, "slow.txt") == "deleting"
    delete.release.set()
    deleter.result()
    assert _tombstone_state(storage, "slow.txt") == "deleted"
