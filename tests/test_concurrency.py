"""Processes sharing one Redis save the same new content: exactly one inner write."""

from __future__ import annotations

import multiprocessing
import os
from pathlib import Path
from typing import Any

import pytest

PROCESSES = 8


def _save_in_child(args: tuple[str, str, str, bytes, Any, Any]) -> tuple[str, int]:
    index_url, location, counter_dir, payload, barrier, _ = args
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(SECRET_KEY="concurrency")
        django.setup()
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage

    storage = DedupStorage(
        inner={
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        },
        index=index_url,
        namespace="concurrency",
    )
    inner = storage.inner
    # DedupStorage writes to a FileSystemStorage through its _save() hook.
    original_save = inner._save

    def counting_save(*a: Any, **k: Any) -> str:
        # One marker file per real inner write, visible to the parent.
        Path(counter_dir, f"write-{os.getpid()}").touch()
        return original_save(*a, **k)

    inner._save = counting_save  # type: ignore[method-assign]
    barrier.wait()
    return storage.save(f"upload-{os.getpid()}.bin", ContentFile(payload)), os.getpid()


@pytest.mark.parametrize("size", [4096, 8 * 1024 * 1024])
def test_processes_saving_the_same_new_content_write_once(
    redis_url: str, tmp_path: Path, size: int
) -> None:
    location, counter_dir = tmp_path / "media", tmp_path / "writes"
    counter_dir.mkdir()
    payload = os.urandom(size)
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager:
        barrier = manager.Barrier(PROCESSES)
        jobs = [
            (redis_url, str(location), str(counter_dir), payload, barrier, i)
            for i in range(PROCESSES)
        ]
        with context.Pool(PROCESSES) as pool:
            results = pool.map(_save_in_child, jobs)
    names = {name for name, _pid in results}
    assert len(names) == 1, names
    assert len(list(counter_dir.iterdir())) == 1
    (name,) = names
    assert (location / name).read_bytes() == payload
    assert [p.name for p in location.iterdir()] == [name]


def test_a_slow_writer_keeps_its_claim_past_claim_ttl(make_fs_dedup: Any) -> None:
    """A live writer renews its claim, so a second saver waits instead of writing again."""
    import threading
    import time

    from django.core.files.base import ContentFile

    # Renewals come every claim_ttl/3 = 0.2 s: a busy machine's scheduling delays stay far
    # below the 0.4 s that would make one late.
    storage = make_fs_dedup(claim_ttl=0.6, wait_timeout=30)
    inner = storage.inner
    original_save = inner._save
    writes: list[str] = []
    writing = threading.Event()

    def slow_save(*args: Any, **kwargs: Any) -> str:
        writes.append(args[0])
        writing.set()
        time.sleep(2.4)  # four claim lifetimes
        return original_save(*args, **kwargs)

    inner._save = slow_save
    names: dict[str, str] = {}
    first = threading.Thread(
        target=lambda: names.update(a=storage.save("a.bin", ContentFile(b"S")))
    )
    first.start()
    assert writing.wait(10), "the first save never started writing"  # it holds the claim
    time.sleep(0.8)  # the first claim would have expired by now without renewal
    names["b"] = storage.save("b.bin", ContentFile(b"S"))
    first.join(30)
    assert len(writes) == 1
    assert names == {"a": "a.bin", "b": "a.bin"}
    assert storage.references("a.bin") == 2
