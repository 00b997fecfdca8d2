"""What an unreachable index, or one whose reply is lost, tells the caller."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis
from django.core.files.base import ContentFile

from dedupstore import DedupStorage, IndexUnavailable
from dedupstore.testing.redis import find_free_port

Make = Callable[..., DedupStorage]


def test_a_hit_whose_reply_is_lost_after_it_counted_says_it_was_sent(make_fs_dedup: Make) -> None:
    storage = make_fs_dedup()
    name = storage.save("a.txt", ContentFile(b"shared"))
    client = storage.index.client  # type: ignore[attr-defined]
    real_parse = client.parse_response

    def reply_lost(connection: Any, command: str, **options: Any) -> Any:
        # The real server ran the script (and counted the hit); its reply never arrives.
        real_parse(connection, command, **options)
        raise redis.TimeoutError("Timeout reading from socket")

    client.parse_response = reply_lost
    try:
        with pytest.raises(IndexUnavailable) as caught:
            storage.save("b.txt", ContentFile(b"shared"))
    finally:
        del client.parse_response
    assert caught.value.sent is True
    assert "may have counted one reference" in str(caught.value)
    assert storage.references(name) == 2


def test_a_save_that_never_reached_the_index_says_it_was_not_sent(tmp_path: Any) -> None:
    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index=f"redis://127.0.0.1:{find_free_port()}/0",
        namespace="n",
        index_timeout=2,
    )
    with pytest.raises(IndexUnavailable) as caught:
        storage.save("a.txt", ContentFile(b"x"))
    assert caught.value.sent is False


def test_a_failing_references_says_what_failed() -> None:
    storage = DedupStorage(
        inner={"BACKEND": "django.core.files.storage.InMemoryStorage"},
        index=f"redis://127.0.0.1:{find_free_port()}/0",
        namespace="n",
        index_timeout=2,
    )
    with pytest.raises(IndexUnavailable) as caught:
        storage.references("a.txt")
    message = str(caught.value)
    assert "Could not read the reference count of 'a.txt'" in message
    assert "Nothing was stored or deleted" not in message
