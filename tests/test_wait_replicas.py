"""``wait_replicas``: every script that counts, drops or reserves is followed by ``WAIT``.

A single redis-server has no replica, so ``WAIT 1`` never succeeds there: each call that
must wait reports that its write may not survive a failover (``sent=True``), and a call
that need not wait answers as usual. A second index on the same namespace, without
``wait_replicas``, sets the scene.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from dedupstore import IndexUnavailable
from dedupstore.index.redis import RedisIndex
from tests.index.test_index_contract import D1, TTL, claim, save


@pytest.fixture
def indexes(redis_url: str) -> Iterator[tuple[RedisIndex, RedisIndex]]:
    """Return (an index that waits for 1 replica, one that does not), one namespace."""
    namespace = f"wait-{uuid.uuid4().hex}"
    waiting = RedisIndex(
        redis_url,
        namespace=namespace,
        display_url=redis_url,
        socket_timeout=0.5,
        wait_timeout=1.0,
        wait_replicas=1,
    )
    plain = RedisIndex(redis_url, namespace=namespace, display_url=redis_url)
    yield waiting, plain
    waiting.close()
    plain.close()


def test_a_name_reservation_waits_for_the_replicas(
    indexes: tuple[RedisIndex, RedisIndex],
) -> None:
    waiting, plain = indexes
    claim(plain, D1, "writer", "a.txt")
    with pytest.raises(IndexUnavailable, match="WAIT 1: 0 replica") as caught:
        waiting.reserve_name(name="a.txt", token="writer", digest=D1)
    assert caught.value.sent is True
    assert "reservation" in caught.value.outcome
    # It did run on the primary: the name is held for the writer.
    assert not plain.reserve_name(name="a.txt", token="other", digest=D1)


def test_a_cancelled_delete_waits_for_the_replicas(
    indexes: tuple[RedisIndex, RedisIndex],
) -> None:
    waiting, plain = indexes
    save(plain, "a.txt")
    decision = plain.begin_delete(name="a.txt", token="guarded", claim_ttl=TTL)
    assert decision.action == "delete"
    with pytest.raises(IndexUnavailable, match="WAIT 1: 0 replica") as caught:
        waiting.cancel_delete(
            name="a.txt", token="guarded", digest=decision.digest, refs=2, size=5, lease=D1
        )
    assert caught.value.sent is True
    record = plain.lookup("a.txt")
    assert record is not None and (record.state, record.refs) == ("live", 2)


def test_calls_that_count_nothing_do_not_wait(indexes: tuple[RedisIndex, RedisIndex]) -> None:
    waiting, plain = indexes
    save(plain, "a.txt")
    waiting.release_name(name="a.txt", token="nobody")
    assert waiting.lookup("a.txt") is not None
    assert waiting.refresh_claim(digest=D1, token="nobody", claim_ttl=TTL) is False
