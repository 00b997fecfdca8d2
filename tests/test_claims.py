"""Claims: the keeper of a live holder stops renewing a claim it lost; the shortest works."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.index.base import ClaimKeeper
from tests.helpers import claim_digest

Make = Callable[..., DedupStorage]

#: Claim lifetime of the crash tests: a dead holder's lease is gone after it.
SHORT_TTL = 0.05


def test_the_keeper_stops_renewing_a_lost_claim(make_fs_dedup: Make, index_url: str) -> None:
    storage = make_fs_dedup(index=index_url)
    index = storage.index
    digest = claim_digest(storage, b"C", "mine", 10)
    keeper = ClaimKeeper(index, SHORT_TTL)
    keeper.keep(digest, "mine")
    index.release_claim(digest=digest, token="mine")
    claim_digest(storage, b"C", "thief", 10)
    deadline = time.monotonic() + 0.5
    while not keeper.lost("mine") and time.monotonic() < deadline:
        time.sleep(0.005)
    assert keeper.lost("mine")
    keeper.release("mine")
    assert not keeper.lost("mine")


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
