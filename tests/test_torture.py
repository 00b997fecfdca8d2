"""A randomized concurrency torture test: threads save, delete, read and crash at random.

Several threads share one index namespace (``locmem://`` or the suite's redis-server) and
one inner storage (a FileSystemStorage, or a content-addressed one like IPFS, whose writes,
deletes and existence checks sleep a random 0-3 ms, so operations interleave) through
``DedupStorage`` instances with different policies (``overwrite=False`` and ``True``, and
``reuse`` "content", "name" and "never"). Each thread keeps the names save() returned to
it: its references, which it reads and deletes. A stranger deletes names it does not hold
(only untracked ones: in-flight writes and orphans). Now and then a thread "crashes": it
calls the index directly to begin a save, a delete (tracked or untracked) or a replace,
and abandons it, before or after the inner write or delete (never commits, never
releases: its claim must expire). Inner writes and deletes fail now and then, and over Redis
the reply of a commit or delete is "lost" now and then: the call runs again, with the same
token, a few milliseconds later, as redis.py resends it.

The model of the live references is kept *atomically with the index*: every index call of
the storages goes through ``ModelIndex``, which holds one lock around the real call and
updates the model from its answer (a hit or a commit adds a reference, a delete drops one,
a replace takes the replaced name's one reference over). So the model knows exactly which
references the index counts, whatever the interleaving. At the end (claims expired):

1. every live reference's name exists in the inner storage and reads back its content;
2. the index counts exactly the live references of each name, plus the references an
   abandoned hit counted (README: counts only ever err high, after a crash after a hit's
   increment);
3. once every holder deleted its references, nothing written through the storage is left
   but the orphans the README admits (abandoned writes, interrupted deletes, the first
   object of a save told to write again);
4. no operation raised anything but the injected inner failures (no ClaimTimeout, no
   ClaimLost: nothing stalls), and a resent call answered as the first run did.

Reproduce a failure with the printed seed: ``DEDUPSTORE_TORTURE_SEED=<seed>``;
``DEDUPSTORE_TORTURE_SECONDS=<s>`` runs each parametrization longer.
"""

from __future__ import annotations

import hashlib
import os
import random
import secrets
import threading
import time
import traceback
import uuid
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage

from dedupstore import DedupStorage
from dedupstore.index.base import DeleteDecision, Index
from dedupstore.scopes import digest_of

CLAIM_TTL = 0.3
WAIT_TIMEOUT = 10.0
THREADS = 7
#: How often the reply of a resent call (Redis only) is lost.
LOST_REPLY_RATE = 0.1
#: How often a worker's inner write or delete fails.
FAULT_RATE = 0.02
#: Stands for the 600 s of TOMBSTONE_TTL in the "short-tombstones" runs: about one write.
SHORT_TOMBSTONE_TTL = 0.008
#: QUARANTINE_TTL shrunk (dead holders never wake here): well under WAIT_TIMEOUT.
SHORT_QUARANTINE_TTL = 1.0
#: References a thread holds at most: few enough that deletes drop last references often.
MAX_HELD = 2
#: (reuse, overwrite) of the storages the threads pick from, all over one index namespace
#: and one inner storage. The first reads, the second plays crashed replaces.
POLICIES = [
    ("content", False),
    ("content", True),
    ("name", False),
    ("never", True),
    ("never", False),
]
#: Seconds each parametrization runs, and its seeds: two fixed ones in the suite (the whole
#: file stays well under 40 s), or the one of a failure to reproduce it.
SECONDS = float(os.environ.get("DEDUPSTORE_TORTURE_SECONDS", "1.75"))
SEEDS = (
    [int(os.environ["DEDUPSTORE_TORTURE_SEED"])]
    if os.environ.get("DEDUPSTORE_TORTURE_SEED")
    else [20261121, 4242]
)

CONTENTS = [b"alpha", b"beta" * 7, b"gamma" * 100, b"delta" * 3000]
NAMES = ["a.txt", "b.txt", "d/a.txt", "d/c.bin", "e.txt", "f.dat"]

_local = threading.local()


class InjectedFault(OSError):
    """An inner write or delete that failed (a full disk, a node that refused)."""


def _fault() -> None:
    """Fail a worker's inner write or delete now and then (README, step 5: at worst an orphan)."""
    rng = getattr(_local, "faults", None)
    if rng is not None and rng.random() < FAULT_RATE:
        raise InjectedFault("injected inner failure")


def _pause() -> None:
    """Sleep 0-3 ms, from the calling thread's own seeded RNG."""
    rng = getattr(_local, "rng", None) or random
    time.sleep(rng.random() * 0.003)


class SlowFileSystemStorage(FileSystemStorage):
    """FileSystemStorage whose writes, deletes and existence checks take 0-3 ms more."""

    def _save(self, name: str, content: Any) -> str:
        _pause()
        _fault()
        try:
            stored = super()._save(name, content)
        except FileNotFoundError:
            # Django's _save chmods and stats the file after writing it: an untracked
            # delete of the name in between makes it raise although the write succeeded.
            # Answer like an object store would: written (and then deleted by someone).
            stored = name
        _pause()
        return stored

    def delete(self, name: str) -> None:
        _pause()
        _fault()
        super().delete(name)

    def exists(self, name: str) -> bool:
        _pause()
        found = super().exists(name)
        _pause()
        return found


class ContentAddressedStorage(SlowFileSystemStorage):
    """Like IPFS: an object is stored under the sha256 of its content; delete unpins it."""

    content_addressed = True

    def get_available_name(self, name: str, max_length: int | None = None) -> str:
        return name

    def save(self, name: str | None, content: Any, max_length: int | None = None) -> str:
        content.seek(0)
        data = content.read()
        cid = hashlib.sha256(data).hexdigest()
        _pause()
        _fault()
        path = Path(self.path(cid))
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            temporary = path.with_name(f".{cid}.{secrets.token_hex(4)}.tmp")
            temporary.write_bytes(data)
            os.replace(temporary, path)  # "pin": idempotent, atomic
        _pause()
        return cid

    def _save(self, name: str, content: Any) -> str:
        return self.save(name, content)


def cid_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# -- the model -----------------------------------------------------------------------------


@dataclass(eq=False)
class Ref:
    """One reference: a name save() returned to a holder, and the content it saved."""

    name: str
    #: None: a dead replacer deleted it (any content, or none, is right for this name).
    content: bytes | None
    alive: bool = True


class Model:
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.refs: dict[str, list[Ref]] = {}
        #: References counted by an abandoned hit (README: counts may err high after one).
        self.phantom: Counter[str] = Counter()
        #: Names whose inner object the README allows to be left behind.
        self.orphans: set[str] = set()
        self.content_of: dict[str, bytes] = {}
        self.violations: list[str] = []
        self.ops: Counter[str] = Counter()

    def add(self, name: str, content: bytes) -> Ref:
        ref = Ref(name, content)
        self.refs.setdefault(name, []).append(ref)
        return ref

    def kill(self, ref: Ref) -> None:
        ref.alive = False
        self.refs[ref.name].remove(ref)

    def take_over(self, name: str, count: int, why: str) -> None:
        """``count`` references of ``name`` went with a replace (to the replacer, or gone)."""
        for _ in range(count):
            if self.refs.get(name):
                self.kill(self.refs[name][0])
            elif self.phantom[name] > 0:
                self.phantom[name] -= 1
            else:
                self.violations.append(f"{why}: {name!r} had no counted reference to take")

    def live(self, name: str) -> int:
        return len(self.refs.get(name, ())) + self.phantom[name]


class ModelIndex:
    """The real index, with the model updated atomically with every decision."""

    def __init__(self, real: Index, model: Model, lost_replies: bool) -> None:
        self._real = real
        self._model = model
        self._lost_replies = lost_replies

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._real, attr)

    def _resent(self, method: str, kw: dict[str, Any], first: Any) -> Any:
        """Now and then, lose the reply of a call that redis.py resends with the same token.

        redis.py runs commit_save, begin_delete and commit_delete again after a lost reply
        (README: a receipt answers a commit or delete that ran), a few milliseconds later,
        while other calls go on: the second run must answer as the first and change nothing
        more. Called without the model lock; the model followed the first run.
        """
        rng = getattr(_local, "rng", None)
        if not self._lost_replies or rng is None or rng.random() >= LOST_REPLY_RATE:
            return first
        action = getattr(first, "action", None)
        if method != "commit_delete" and action not in ("committed", "kept", "delete", "unknown"):
            return first
        time.sleep(rng.random() * 0.005)
        with self._model.lock:
            self._model.ops[f"resent {method}"] += 1
            second = getattr(self._real, method)(**kw)
            if second != first:
                self._model.violations.append(f"{method}({kw}) answered {first}, resent: {second}")
        return first

    def begin_save(self, **kw: Any) -> Any:
        model = self._model
        with model.lock:
            decision = self._real.begin_save(**kw)
            if decision.action == "hit":
                if getattr(_local, "crashing", False):
                    model.ops["abandoned hit"] += 1
                    model.phantom[decision.name] += 1
                else:
                    content = model.content_of[digest_of(kw["digest"])]
                    _local.new_refs.append(model.add(decision.name, content))
            return decision

    def commit_save(self, **kw: Any) -> Any:
        return self._resent("commit_save", kw, self._commit_save(**kw))

    def _commit_save(self, **kw: Any) -> Any:
        model = self._model
        name = kw["name"]
        with model.lock:
            previous = self._real.lookup(name)
            decision = self._real.commit_save(**kw)
            model.ops[f"commit {decision.action}"] += 1
            if decision.action in ("rewrite", "relocate"):
                # README: a named storage picks a free name again, leaving the first
                # object orphaned if it survived.
                model.orphans.add(name)
            if decision.action == "committed":
                if kw.get("replacing"):
                    model.ops["replaced"] += 1
                    assert previous is not None  # else commit_save raised ClaimLost
                    model.take_over(name, previous.refs, "a replace")
                content = model.content_of[digest_of(kw["digest"])]
                _local.new_refs.append(model.add(name, content))
            return decision

    def abort_replace(self, **kw: Any) -> None:
        model = self._model
        name = kw["name"]
        with model.lock:
            previous = self._real.lookup(name)
            self._real.abort_replace(**kw)
            if (
                kw["inner_deleted"]
                and previous is not None
                and previous.state == "replacing"
                and self._real.lookup(name) is None
            ):
                # The replaced object was deleted and the replacer's write landed
                # elsewhere: the name's reference is gone (README: with overwrite=True,
                # every holder of the name shares its one reference).
                model.ops["replace aborted"] += 1
                model.take_over(name, previous.refs, "an aborted replace")

    def commit_delete(self, **kw: Any) -> None:
        with self._model.lock:
            self._real.commit_delete(**kw)
        self._resent("commit_delete", kw, None)

    def begin_delete(self, **kw: Any) -> Any:
        return self._resent("begin_delete", kw, self._begin_delete(**kw))

    def _begin_delete(self, **kw: Any) -> Any:
        model = self._model
        name = kw["name"]
        with model.lock:
            ref: Ref | None = getattr(_local, "deleting", None)
            if ref is None:
                # A stranger's delete of a name it does not hold: only of untracked names
                # (a counted name would lose someone's reference, as the README warns).
                if self._real.lookup(name) is not None:
                    return DeleteDecision("done")
                decision = self._real.begin_delete(**kw)
                model.ops[f"untracked delete {decision.action}"] += 1
                if decision.action not in ("unknown", "wait"):
                    model.violations.append(f"untracked delete of {name!r}: {decision}")
                return decision
            if not ref.alive:
                # A replace took this holder's reference over meanwhile: deleting the name
                # now would drop the replacer's (Django's overwrite semantics).
                return DeleteDecision("done")
            decision = self._real.begin_delete(**kw)
            model.ops[f"delete {decision.action}"] += 1
            if decision.action in ("kept", "delete"):
                model.kill(ref)
            elif decision.action != "wait":
                model.violations.append(f"delete of counted {name!r} answered {decision}")
            return decision


# -- the workers ---------------------------------------------------------------------------


class Worker(threading.Thread):
    def __init__(
        self,
        number: int,
        seed: int,
        deadline: float,
        storages: list[DedupStorage],
        model: Model,
        content_addressed: bool,
    ) -> None:
        super().__init__(daemon=True, name=f"torture-{number}")
        self.rng = random.Random(f"{seed}-{number}")
        self.deadline = deadline
        self.storages = storages
        self.model = model
        self.content_addressed = content_addressed
        self.held: list[Ref] = []
        self.errors: list[str] = []

    def run(self) -> None:
        _local.rng = random.Random(self.rng.random())
        _local.faults = random.Random(self.rng.random())
        _local.new_refs = []
        try:
            while time.monotonic() < self.deadline:
                roll = self.rng.random()
                if not self.held or (roll < 0.4 and len(self.held) < MAX_HELD):
                    self.save()
                elif roll < 0.75:
                    self.delete()
                elif roll < 0.87:
                    self.read()
                elif roll < 0.95:
                    self.stranger_delete()
                else:
                    self.crash()
        except BaseException:
            self.errors.append(traceback.format_exc())

    def save(self) -> None:
        storage = self.rng.choice(self.storages)
        name, content = self.rng.choice(NAMES), self.rng.choice(CONTENTS)
        _local.new_refs = []
        try:
            stored = storage.save(name, ContentFile(content))
        except InjectedFault:
            # Nothing recorded (a failed replace forgets the name it deleted: README).
            self.model.ops["failed save"] += 1
            if _local.new_refs:
                self.model.violations.append(f"a failed save recorded {_local.new_refs}")
            return
        refs, _local.new_refs = _local.new_refs, []
        self.model.ops["save"] += 1
        if len(refs) != 1 or refs[0].name != stored:
            self.model.violations.append(f"save({name!r}) returned {stored!r}, index: {refs}")
            return
        if self.content_addressed and stored != cid_of(content):
            self.model.violations.append(f"save({name!r}) returned {stored!r}, not the CID")
        self.held.append(refs[0])

    def delete(self) -> None:
        ref = self.held.pop(self.rng.randrange(len(self.held)))
        if not ref.alive:
            return  # a replace took it over
        _local.deleting = ref
        try:
            self.rng.choice(self.storages).delete(ref.name)
        except InjectedFault:
            # README: an interrupted delete has dropped its reference already; the record
            # stays 'deleting' with none, and its object, until the name is touched again.
            self.model.ops["failed delete"] += 1
            with self.model.lock:
                self.model.orphans.add(ref.name)
        finally:
            _local.deleting = None
        self.model.ops["delete"] += 1
        if ref.alive:
            self.model.violations.append(f"delete({ref.name!r}) dropped no reference")

    def read(self) -> None:
        ref = self.rng.choice(self.held)
        storage = self.storages[0]
        with self.model.lock:  # no index decision can change meanwhile
            if not ref.alive or ref.content is None:
                return
            record = storage.index.lookup(ref.name)
            if record is not None and record.state == "replacing":
                return  # a replacer at work: the old object may be gone already
            try:
                with storage.open(ref.name) as handle:
                    data = handle.read()
            except FileNotFoundError:
                data = None
            self.model.ops["read"] += 1
            if data != ref.content:
                self.model.violations.append(
                    f"{ref.name!r} (record {record}) reads {data!r:.40}, not {ref.content!r:.40}"
                )

    def _stranger_name(self) -> str:
        if self.content_addressed:
            return cid_of(self.rng.choice(CONTENTS))
        return self.rng.choice(NAMES)

    def stranger_delete(self) -> None:
        name = self._stranger_name()
        try:
            self.rng.choice(self.storages).delete(name)
        except InjectedFault:
            self.model.ops["failed delete"] += 1
        self.model.ops["stranger delete"] += 1

    def crash(self) -> None:
        """Begin a save, delete or replace through the index and abandon it."""
        _local.crashing = True
        faults, _local.faults = _local.faults, None  # a crash's own inner calls succeed
        try:
            kind = self.rng.choice(["save", "delete", "replace", "untracked_delete"])
            self.model.ops[f"crash {kind}"] += 1
            getattr(self, f"crash_{kind}")()
        finally:
            _local.crashing = False
            _local.faults = faults

    def crash_save(self) -> None:
        storage = self.storages[self.rng.randrange(2)]
        if self.rng.random() < 0.5:
            data = self.rng.choice(CONTENTS)
        else:
            data = b"abandoned " + secrets.token_bytes(8)
        name = self.rng.choice(NAMES)
        decision = storage.index.begin_save(
            digest=storage.content_key(name, ContentFile(data)),
            # "never": claim, never hit. An abandoned hit would count a reference nobody
            # holds forever (README: counts err high), pinning its object for the rest of
            # the run; the model allows for it (phantom), but exact counts test more.
            reuse="never",
            name=name,
            max_length=None,
            token=secrets.token_hex(16),
            claim_ttl=CLAIM_TTL,
            overwrite=storage.overwrite,
        )
        if decision.action == "claimed" and self.rng.random() < 0.5:
            # The write happens, the commit never does: an orphan (README, step 5).
            inner = storage.inner
            if self.content_addressed:
                stored = inner.save(name, ContentFile(data))
            else:
                stored = inner._save(storage.get_available_name(name), ContentFile(data))
            with self.model.lock:
                self.model.orphans.add(stored)

    def crash_delete(self) -> None:
        storage = self.storages[0]
        ref = self.held.pop(self.rng.randrange(len(self.held)))
        if not ref.alive:
            return
        _local.deleting = ref
        try:
            decision = storage.index.begin_delete(
                name=ref.name, token=secrets.token_hex(16), claim_ttl=CLAIM_TTL
            )
        finally:
            _local.deleting = None
        if decision.action == "wait":
            self.held.append(ref)  # nothing happened: still ours
        elif decision.action == "delete":
            if self.rng.random() < 0.5:
                storage.inner.delete(ref.name)  # died after the inner delete
            else:
                # Died before it: README, an interrupted delete leaves the record
                # 'deleting' with no reference, and its object, until the name is touched.
                with self.model.lock:
                    self.model.orphans.add(ref.name)

    def crash_untracked_delete(self) -> None:
        """A stranger's delete of an untracked name dies, before or after the inner delete."""
        storage = self.storages[0]
        name = self._stranger_name()
        decision = storage.index.begin_delete(
            name=name, token=secrets.token_hex(16), claim_ttl=CLAIM_TTL
        )
        if decision.action == "unknown" and self.rng.random() < 0.5:
            storage.inner.delete(name)

    def crash_replace(self) -> None:
        if self.content_addressed:
            return self.crash_save()  # overwrite does not apply
        storage = self.storages[1]
        ref = self.rng.choice(self.held)
        if not ref.alive:
            return None
        data = self.rng.choice([c for c in CONTENTS if c != ref.content])
        digest = storage.content_key(ref.name, ContentFile(data))
        token = secrets.token_hex(16)
        decision = storage.index.begin_save(
            digest=digest,
            reuse="never",  # claim, never hit (see crash_save)
            name=ref.name,
            max_length=None,
            token=token,
            claim_ttl=CLAIM_TTL,
            overwrite=True,
        )
        if decision.action != "claimed":
            return None
        # Takes the record ('replacing', leased by our claim) and dies, before deleting the
        # old object (the holder's reference and object stay) or after it: then the holder's
        # reference is still counted (README: a dead replacer's record still counts the one
        # reference of the name it was replacing) but its content is gone, as Django's own
        # overwrite would have it; whatever is saved under the name next is what it reads.
        replace = storage.index.begin_replace(name=ref.name, token=token, digest=digest)
        if replace == "replace" and self.rng.random() < 0.5:
            with self.model.lock:
                for held in self.model.refs.get(ref.name, ()):
                    held.content = None
            storage.inner.delete(ref.name)
        return None


# -- the test ------------------------------------------------------------------------------


def _inner_files(location: Path) -> set[str]:
    return {
        str(path.relative_to(location))
        for path in location.rglob("*")
        if path.is_file() and not path.name.endswith(".tmp")
    }


def _check_counts(storage: DedupStorage, model: Model, names: set[str], when: str) -> None:
    for name in sorted(names):
        expected = model.live(name)
        record = storage.index.lookup(name)
        counted = storage.references(name)
        assert counted == expected, (
            f"{when}: the index counts {counted} references to {name!r} (record {record}), "
            f"the model {len(model.refs.get(name, ()))} live"
            + (
                f" + {model.phantom[name]} counted by abandoned hits (README: counts err "
                "high after a crash after a hit's increment)"
                if model.phantom[name]
                else ""
            )
        )


INNER_KINDS = ["named", "content-addressed", "short-tombstones"]
#: Every seed over locmem and one Redis; the first seed alone over the cluster (a few
#: seconds more, not twice).
TORTURE_CASES = [
    (index_kind, inner_kind, seed)
    for index_kind in ("locmem", "redis")
    for inner_kind in INNER_KINDS
    for seed in SEEDS
] + [("cluster", inner_kind, SEEDS[0]) for inner_kind in INNER_KINDS]


@pytest.mark.slow
@pytest.mark.parametrize(("index_kind", "inner_kind", "seed"), TORTURE_CASES)
def test_torture(
    request: pytest.FixtureRequest,
    redis_url: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    index_kind: str,
    inner_kind: str,
    seed: int,
) -> None:
    print(
        f"torture seed={seed} index={index_kind} inner={inner_kind} seconds={SECONDS} "
        f"(DEDUPSTORE_TORTURE_SEED={seed} DEDUPSTORE_TORTURE_SECONDS={SECONDS})"
    )
    content_addressed = inner_kind != "named"
    if inner_kind == "short-tombstones":
        # TOMBSTONE_TTL (600 s) shrunk below the length of a write: 'deleted' tombstones
        # expire while saves are still writing, so commits answer 'verify' and the saver
        # checks its object. Content-addressed only: a named storage cannot tell its object
        # from another save's written under the same name after an untracked delete older
        # than TOMBSTONE_TTL (README), which a short lifetime would make routine.
        from dedupstore.index import locmem as locmem_index
        from dedupstore.index import redis as redis_index

        monkeypatch.setattr(locmem_index, "TOMBSTONE_TTL", SHORT_TOMBSTONE_TTL)
        monkeypatch.setattr(redis_index, "TOMBSTONE_TTL", SHORT_TOMBSTONE_TTL)
    # A name whose holder's lease lapsed unseen stays out of use for QUARANTINE_TTL (600 s),
    # since that holder may be stalled rather than dead. The holders here die (they never
    # act again), so a lifetime under WAIT_TIMEOUT lets a content-addressed save of such a
    # CID wait it out instead of timing out.
    from dedupstore.index import locmem as locmem_module
    from dedupstore.index import redis as redis_module

    monkeypatch.setattr(locmem_module, "QUARANTINE_TTL", SHORT_QUARANTINE_TTL)
    monkeypatch.setattr(redis_module, "QUARANTINE_TTL", SHORT_QUARANTINE_TTL)
    location = tmp_path / "media"
    if index_kind == "cluster":
        index_url = request.getfixturevalue("redis_cluster").url
    else:
        index_url = redis_url if index_kind == "redis" else f"locmem://{uuid.uuid4().hex}"
    namespace = f"torture-{uuid.uuid4().hex}"
    backend = "ContentAddressedStorage" if content_addressed else "SlowFileSystemStorage"
    inner = {"BACKEND": f"{__name__}.{backend}", "OPTIONS": {"location": str(location)}}
    model = Model()
    storages = []
    for reuse, overwrite in POLICIES:
        storage = DedupStorage(
            inner=inner,
            index=index_url,
            namespace=namespace,
            reuse=reuse,
            overwrite=overwrite,
            claim_ttl=CLAIM_TTL,
            wait_timeout=WAIT_TIMEOUT,
        )
        real = storage.index  # builds the claim keeper on the real index
        lost_replies = index_kind != "locmem"
        storage._index = ModelIndex(real, model, lost_replies)  # type: ignore[assignment]
        storages.append(storage)
    for data in CONTENTS:
        model.content_of[storages[0].digest(ContentFile(data))] = data

    deadline = time.monotonic() + SECONDS
    workers = [
        Worker(number, seed, deadline, storages, model, content_addressed)
        for number in range(THREADS)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(SECONDS + 3 * WAIT_TIMEOUT)
        assert not worker.is_alive(), f"seed {seed}: {worker.name} hangs"
    print(f"seed {seed}: {dict(model.ops)}")

    # (4) nothing raised, and the model saw nothing impossible on the way.
    errors = [error for worker in workers for error in worker.errors]
    assert not errors, f"seed {seed}: " + "\n".join(errors)
    assert not model.violations, f"seed {seed}: " + "\n".join(model.violations)

    ran = time.monotonic()
    time.sleep(CLAIM_TTL * 1.5)  # every abandoned claim and lease lapses
    storage = storages[0]
    # (1) every live reference reads back exactly what was saved.
    for refs in model.refs.values():
        for ref in refs:
            if ref.content is None:
                continue  # a dead replacer deleted its object
            assert storage.exists(ref.name), f"seed {seed}: {ref.name!r} was lost"
            with storage.open(ref.name) as handle:
                assert handle.read() == ref.content, f"seed {seed}: {ref.name!r} wrong content"
    # (2) the index counts exactly the live references.
    names = set(model.refs) | set(model.phantom) | _inner_files(location)
    _check_counts(storage, model, names, f"seed {seed}, after the run")

    # (3) every holder deletes its references: nothing is left but admitted orphans.
    _local.new_refs = []
    for worker in workers:
        for ref in worker.held:
            if ref.alive:
                _local.deleting = ref
                try:
                    storage.delete(ref.name)
                finally:
                    _local.deleting = None
    print(f"seed {seed}: the checks took {time.monotonic() - ran:.1f} s")
    assert not model.violations, f"seed {seed}: " + "\n".join(model.violations)
    assert not any(model.refs.values()), f"seed {seed}: references nobody holds"
    _check_counts(storage, model, names, f"seed {seed}, after every delete")
    pinned = {name for name, count in model.phantom.items() if count}
    left = _inner_files(location) - model.orphans - pinned
    assert not left, f"seed {seed}: objects left without references or admitted orphans: {left}"
