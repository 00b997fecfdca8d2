"""Crash recovery: processes killed, stopped and cut off from Redis lose nothing they hold.

Six worker processes (``tests/crash_worker.py``) save, read and delete shared and unique
contents under colliding names, through ``DedupStorage`` with ``overwrite`` off and on,
over one ``FileSystemStorage`` directory and one real ``redis-server`` with the append-only
file on (``appendfsync always``). Meanwhile the test SIGKILLs workers (each is replaced by a
fresh one), SIGSTOPs others and SIGCONTs them later (two scenarios: short stops that keep
every lease, and stops beyond the leases), and SIGKILLs Redis and restarts it on the same
port and directory. Faults are spread by the workers' progress (lines in their
logs), not by time, and every wait has a generous deadline, so a busy machine only makes
the run slower.

Each worker logs every change to the names it holds in an fsynced, append-only file (see
``tests/crash_worker.py`` for the format and why each line is written before or after its
call). At the end, replaying the logs:

1. every held name exists and reads back exactly its content (either content while a
   worker's replace of it was cut short, as the log's open ``?`` says);
2. the index counts at least as many references to each name as there are holders (counts
   may err high: a worker killed between a save's return and its log line);
3. no worker saw a held name read back wrong while running, and no worker died of an
   error the faults do not explain.

``DEDUPSTORE_CRASH_OPERATIONS=<n>`` gives each worker n operations (default 40, under a
minute per scenario), ``DEDUPSTORE_CRASH_SEED=<seed>`` replays a
seed (the failure message prints it); faults scale with the operations.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from dedupstore import DedupStorage
from dedupstore.testing.redis import RedisServer
from tests.crash_worker import digest_of

WORKERS = 6
OPERATIONS = int(os.environ.get("DEDUPSTORE_CRASH_OPERATIONS", "40"))
SEED = int(os.environ.get("DEDUPSTORE_CRASH_SEED", str(random.SystemRandom().randrange(10**9))))
#: Generous: the run ends when the workers finish their operations, never by this.
DEADLINE = 600.0 + OPERATIONS * 10.0
#: A SIGKILLed worker may leave a claim behind for claim_ttl: short enough that the others
#: do not wait long, long enough that a short stop (below claim_ttl/3) keeps every lease.
CLAIM_TTL = 6.0
WAIT_TIMEOUT = 60.0
INDEX_TIMEOUT = 5.0


@dataclasses.dataclass(frozen=True)
class Faults:
    """How many faults of each kind a run injects (per 40 operations of each worker)."""

    kills: int
    stops: int
    redis_restarts: int
    #: How long a stopped worker stays stopped, in seconds (drawn between the two).
    stop_seconds: tuple[float, float]
    #: The workers' claim_ttl.
    claim_ttl: float = CLAIM_TTL

    def scaled(self) -> list[str]:
        factor = max(1.0, OPERATIONS / 40)
        return (
            ["kill"] * round(self.kills * factor)
            + ["stop"] * round(self.stops * factor)
            + ["redis"] * round(self.redis_restarts * factor)
        )


#: Stops stay below claim_ttl/3 (the keeper renews every claim_ttl/3): no lease lapses.
KILLS_AND_SHORT_STOPS = Faults(kills=6, stops=6, redis_restarts=2, stop_seconds=(0.05, 1.0))
#: Stops of 1.5 to 3 claim lifetimes: leases lapse, and others take over what a stopped
#: worker was doing.
LONG_STOPS = Faults(kills=2, stops=10, redis_restarts=1, stop_seconds=(1.5, 3.0), claim_ttl=1.0)


class Worker:
    """One worker process, its log and its stderr file."""

    def __init__(self, number: int, directory: Path, config: dict[str, Any]) -> None:
        self.number = number
        self.log = directory / f"worker-{number}.log"
        self.stderr_path = directory / f"worker-{number}.stderr"
        self.killed = False
        self.stopped_until: float | None = None
        config = {**config, "worker": str(number), "log": str(self.log)}
        with open(self.stderr_path, "wb") as stderr:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "tests.crash_worker", json.dumps(config)],
                stdout=subprocess.DEVNULL,
                stderr=stderr,
                env={**os.environ, "PYTHONPATH": _checkout_path()},
            )

    def lines(self) -> int:
        try:
            return self.log.read_bytes().count(b"\n")
        except FileNotFoundError:
            return 0

    @property
    def running(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        if self.running:
            os.kill(self.process.pid, signum)


def _checkout_path() -> str:
    """Return this checkout's root, so the workers import the code under test."""
    root = str(Path(__file__).resolve().parent.parent)
    existing = os.environ.get("PYTHONPATH")
    return f"{root}{os.pathsep}{existing}" if existing else root


@dataclasses.dataclass
class Holding:
    """A reference a log says is held: its name and the contents it may read."""

    name: str
    accepted: set[str]


def replay(log: Path) -> tuple[list[Holding], list[str]]:
    """Return the references ``log`` says are held at its end, and its violations."""
    held: list[Holding] = []
    pending: dict[str, tuple[Holding, str]] = {}
    violations: list[str] = []
    text = log.read_text() if log.exists() else ""
    # A worker killed while writing a line leaves it without its newline: it was never
    # acted upon (a "-" is written before its delete starts, a "+" after its save returned).
    for line in text.split("\n")[:-1]:
        kind, _, rest = line.partition(" ")
        fields = rest.split(" ")
        if kind == "+":
            held.append(Holding(fields[0], {fields[1]}))
        elif kind == "-":
            match = next(h for h in held if h.name == fields[0] and h.accepted == {fields[1]})
            held.remove(match)
        elif kind == "?":
            name, old, new = fields
            holding = next(h for h in held if h.name == name and h.accepted == {old})
            holding.accepted = {old, new}
            pending[name] = (holding, old)
        elif kind == "=":
            holding, _old = pending.pop(fields[0])
            holding.accepted = {fields[1]}
        elif kind == ".":
            holding, old = pending.pop(fields[0])
            holding.accepted = {old}
        elif kind == "!":
            violations.append(f"{log.name}: {rest}")
    return held, violations


def _describe(workers: list[Worker]) -> str:
    return "\n".join(
        f"worker {w.number}: pid {w.process.pid}, exit {w.process.returncode}, "
        f"{w.lines()} lines{' (killed)' if w.killed else ''}"
        for w in workers
    )


def run_crash_test(tmp_path: Path, faults: Faults, seed: int) -> None:
    rng = random.Random(seed)
    media = tmp_path / "media"
    media.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    with RedisServer(appendonly=True) as redis_server:
        config: dict[str, Any] = {
            "media": str(media),
            "index": redis_server.url,
            "namespace": f"crash-{uuid.uuid4().hex}",
            "claim_ttl": faults.claim_ttl,
            "wait_timeout": WAIT_TIMEOUT,
            "index_timeout": INDEX_TIMEOUT,
            "operations": OPERATIONS,
        }
        workers: list[Worker] = []

        def spawn(operations: int) -> None:
            number = len(workers)
            workers.append(
                Worker(
                    number,
                    logs,
                    {**config, "seed": rng.randrange(2**32), "operations": operations},
                )
            )

        for _ in range(WORKERS):
            spawn(OPERATIONS)
        plan = faults.scaled()
        rng.shuffle(plan)
        # Each fault waits for its share of the first workers' operations (each operation
        # writes at least one line), so all of them land while every worker is busy.
        budget = WORKERS * OPERATIONS * 0.8
        thresholds = [budget * (index + 1) / (len(plan) + 1) for index in range(len(plan))]
        injected: list[str] = []
        deadline = time.monotonic() + DEADLINE
        try:
            while True:
                now = time.monotonic()
                assert now < deadline, f"the run did not finish in {DEADLINE} s\n" + _describe(
                    workers
                )
                for worker in workers:
                    if worker.stopped_until is not None and now >= worker.stopped_until:
                        worker.signal(signal.SIGCONT)
                        worker.stopped_until = None
                progress = sum(worker.lines() for worker in workers)
                candidates = [w for w in workers if w.running and w.stopped_until is None]
                if plan and not any(w.running for w in workers):
                    # Everyone finished before the last faults came due: one more worker
                    # takes them.
                    spawn(max(OPERATIONS // 2, 1))
                    continue
                due = plan and progress >= thresholds[len(injected)]
                if due and (plan[0] == "redis" or candidates):
                    kind = plan.pop(0)
                    injected.append(kind)
                    if kind == "redis":
                        redis_server.kill()
                        redis_server.restart()
                    elif kind == "kill":
                        victim = rng.choice(candidates)
                        victim.killed = True
                        victim.signal(signal.SIGKILL)
                        victim.process.wait()
                        spawn(max(OPERATIONS // 2, 1))
                    else:
                        victim = rng.choice(candidates)
                        victim.signal(signal.SIGSTOP)
                        victim.stopped_until = now + rng.uniform(*faults.stop_seconds)
                    continue
                if not plan and not any(worker.running for worker in workers):
                    break
                time.sleep(0.02)
        finally:
            for worker in workers:
                if worker.running:
                    worker.signal(signal.SIGCONT)
                    worker.signal(signal.SIGKILL)
                    worker.process.wait()

        failed = [w for w in workers if not w.killed and w.process.returncode != 0]
        assert not failed, "\n".join(
            f"worker {w.number} exited {w.process.returncode}:\n"
            + w.stderr_path.read_text()[-3000:]
            for w in failed
        )

        holders: dict[str, list[Holding]] = {}
        violations: list[str] = []
        for worker in workers:
            held, seen = replay(worker.log)
            violations += seen
            for holding in held:
                holders.setdefault(holding.name, []).append(holding)
        storage = DedupStorage(
            inner={
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(media)},
            },
            index=redis_server.url,
            namespace=config["namespace"],
        )
        for name, holdings in sorted(holders.items()):
            path = media / name
            if not path.exists():
                violations.append(f"{name}: held by {len(holdings)}, but missing")
                continue
            actual = digest_of(path.read_bytes())
            wrong = [h for h in holdings if actual not in h.accepted]
            if wrong:
                violations.append(
                    f"{name}: reads {actual}, held as {[sorted(h.accepted) for h in wrong]}"
                )
            refs = storage.references(name)
            if refs < len(holdings):
                violations.append(f"{name}: {refs} references counted, {len(holdings)} held")
        summary = (
            f"seed {seed} (DEDUPSTORE_CRASH_SEED={seed} replays it); faults injected: "
            f"{injected}; {len(holders)} names held by {sum(map(len, holders.values()))} "
            f"references\n" + _describe(workers)
        )
        assert not violations, "\n".join(violations[:40]) + "\n" + summary
        assert sorted(injected) == sorted(faults.scaled()), summary
        assert holders, "no worker held anything at the end: " + summary


@pytest.mark.slow
def test_workers_killed_stopped_and_cut_off_from_redis_keep_every_name_they_hold(
    tmp_path: Path,
) -> None:
    run_crash_test(tmp_path, KILLS_AND_SHORT_STOPS, SEED)


@pytest.mark.slow
def test_workers_stopped_beyond_their_leases_keep_every_name_they_hold(tmp_path: Path) -> None:
    run_crash_test(tmp_path, LONG_STOPS, SEED)
