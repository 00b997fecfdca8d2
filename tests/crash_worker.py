"""One worker process of the crash test (``tests/test_crash_recovery.py``).

Run as ``python -m tests.crash_worker CONFIG_JSON``. The worker saves, reads and deletes
through two ``DedupStorage`` instances (``overwrite`` off and on) over one
``FileSystemStorage`` and one Redis index, for a fixed number of operations, and logs every
change to the names it holds in an append-only file, each line written with one
``os.write`` and fsynced before the worker goes on:

``+ NAME DIGEST``
    ``save()`` returned ``NAME`` for content ``DIGEST``: one reference held. Written after
    the save returns: a worker killed in between holds a reference nobody logged, which is
    a count that errs high (allowed).
``- NAME DIGEST``
    About to ``delete(NAME)``: written *before* the call, so a worker killed in between
    has a counted reference nobody holds (errs high again), never a held one uncounted.
``? NAME OLD NEW``
    About to save ``NEW`` with ``overwrite=True`` under ``NAME``, which this worker alone
    holds once with ``OLD``: until resolved, ``NAME`` may read either.
``= NAME NEW``
    That save replaced ``NAME`` in place: the one reference now reads ``NEW``.
``. NAME``
    That save did not replace ``NAME``: it still reads ``OLD`` (the new name's ``+`` line
    follows). After a failed save the ``?`` stays open, as after a kill, and the worker
    never uses ``NAME`` again.
``r NAME DIGEST``
    A read of a held name matched (progress only).
``! TEXT``
    A violation seen while running (a held name read back wrong or missing).
``e TYPE MESSAGE``
    An operation raised an error the fault injection explains (the index was down).

Overwrite saves use names and contents private to the worker: by design a replace takes
over the single reference of its name whoever holds it (README, *overwrite*), which no log
of holders could follow across processes. Shared names and shared contents go through the
``overwrite=False`` storage, where names and contents collide between all workers.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import sys
from typing import Any

#: Contents every worker saves, so hits, shared references and last-reference deletes
#: happen across processes (sizes from a few bytes to a few hundred KiB).
SHARED_CONTENTS = [
    b"shared-alpha",
    b"shared-beta" * 300,
    b"shared-gamma" * 9000,
    bytes(range(256)) * 1000,
    b"shared-delta\r\n" * 50,
]
#: Names every worker saves under with overwrite=False: alternative names follow.
SHARED_NAMES = ["s/a.bin", "s/b.bin", "s/c.txt", "s/d/e.bin", "top.txt"]
#: References a worker holds at most: few enough that deletes drop last references often.
MAX_HELD = 5


def digest_of(data: bytes) -> str:
    """Return the checker's own digest of ``data`` (independent of the storage's)."""
    return hashlib.sha256(data).hexdigest()[:32]


class Log:
    """An append-only, fsynced log: each line is one ``os.write`` of a whole line."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)

    def write(self, *fields: str) -> None:
        os.write(self.fd, (" ".join(fields) + "\n").encode())
        os.fsync(self.fd)


def _oneline(exc: BaseException) -> str:
    """Return the start of ``exc``'s message on one line, for the log."""
    return " ".join(str(exc).split())[:300]


def _wait_for_index(storage: Any, deadline: float) -> None:
    """After an index error, wait until the index answers again (a restarted Redis).

    Otherwise a worker would spend its operations failing at once while Redis is down.
    """
    import time

    from dedupstore.exceptions import IndexUnavailable

    give_up = time.monotonic() + deadline
    while True:
        try:
            storage.index.lookup("crash-test-probe")
            return
        except IndexUnavailable:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)


def _unique_content(rng: random.Random, worker: str, op: int) -> bytes:
    size = rng.choice([1, 40, 4096, 70_000])
    head = f"{worker}:{op}:".encode()
    return head + rng.randbytes(size)


def run(config: dict[str, Any]) -> None:
    """Run the worker's operations; see the module docstring for its log."""
    import django
    from django.conf import settings

    settings.configure(SECRET_KEY="crash-test", USE_TZ=True)
    django.setup()
    from django.core.files.base import ContentFile

    from dedupstore import DedupStorage
    from dedupstore.exceptions import DedupStoreError

    options = {
        "inner": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": config["media"]},
        },
        "index": config["index"],
        "namespace": config["namespace"],
        "claim_ttl": config["claim_ttl"],
        "wait_timeout": config["wait_timeout"],
        "index_timeout": config["index_timeout"],
    }
    plain = DedupStorage(overwrite=False, **options)
    replacing = DedupStorage(overwrite=True, **options)
    worker = config["worker"]
    rng = random.Random(config["seed"])
    log = Log(config["log"])
    held: list[tuple[str, str]] = []
    #: Names of the overwrite saves: this worker's alone. One whose replace failed is
    #: retired (it may read the old or the new content, which the log's open ``?`` says).
    private_names = [f"w{worker}/o{index}.bin" for index in range(3)]
    retired = 0
    explained = (DedupStoreError, OSError)

    for op in range(config["operations"]):
        roll = rng.random()
        if held and (len(held) >= MAX_HELD or roll < 0.3):
            name, digest = held.pop(rng.randrange(len(held)))
            log.write("-", name, digest)
            try:
                plain.delete(name)
            except explained as exc:
                log.write("e", type(exc).__name__, _oneline(exc))
                _wait_for_index(plain, config["wait_timeout"])
            continue
        if held and roll < 0.45:
            name, digest = rng.choice(held)
            try:
                with plain.open(name, "rb") as handle:
                    data = handle.read()
            except FileNotFoundError:
                log.write("!", f"held name {name} is missing (expected {digest})")
                continue
            if digest_of(data) != digest:
                log.write("!", f"held name {name} reads {digest_of(data)}, expected {digest}")
            else:
                log.write("r", name, digest)
            continue
        if roll < 0.65:
            # An overwrite=True save of a private name, with private content.
            name = rng.choice(private_names)
            data = _unique_content(rng, worker, op)
            digest = digest_of(data)
            mine = [entry for entry in held if entry[0] == name]
            if len(mine) == 1:
                log.write("?", name, mine[0][1], digest)
            try:
                stored = replacing.save(name, ContentFile(data))
            except explained as exc:
                log.write("e", type(exc).__name__, _oneline(exc))
                _wait_for_index(plain, config["wait_timeout"])
                if len(mine) == 1:
                    held.remove(mine[0])
                    retired += 1
                    private_names[private_names.index(name)] = f"w{worker}/r{retired}.bin"
                continue
            if len(mine) == 1 and stored == name:
                held.remove(mine[0])
                held.append((name, digest))
                log.write("=", name, digest)
                continue
            if len(mine) == 1:
                log.write(".", name)
            held.append((stored, digest))
            log.write("+", stored, digest)
            continue
        # An overwrite=False save of a shared name, with shared or unique content.
        name = rng.choice(SHARED_NAMES)
        data = (
            rng.choice(SHARED_CONTENTS) if rng.random() < 0.7 else _unique_content(rng, worker, op)
        )
        try:
            stored = plain.save(name, ContentFile(data))
        except explained as exc:
            log.write("e", type(exc).__name__, _oneline(exc))
            _wait_for_index(plain, config["wait_timeout"])
            continue
        held.append((stored, digest_of(data)))
        log.write("+", stored, digest_of(data))


if __name__ == "__main__":
    run(json.loads(sys.argv[1]))
