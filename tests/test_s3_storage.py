"""``DedupStorage`` over django-storages' ``S3Storage``, against moto's standalone S3 server.

The server (``dedupstore.testing.s3.S3Server``) runs on 127.0.0.1 for the session; every
client gets its loopback ``endpoint_url`` and dummy keys. S3's PUT replaces whatever the
key holds, so this is where two writes of one name, or a replace that deletes before it
writes, lose data for real.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ConnectionClosedError  # type: ignore[import-untyped]
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from dedupstore.testing.s3 import S3Server
from tests.contract import DedupContract, read_all
from tests.helpers import Background, FailingInner

Make = Callable[..., DedupStorage]
Settle = Callable[[Callable[[], Any]], Any]


@pytest.fixture
def make_s3_dedup(redis_url: str, s3_server: S3Server, s3_bucket: str) -> Make:
    """Return a factory of DedupStorage instances over one bucket, index and namespace.

    Two instances are two processes' storages: each has its own S3Storage (and connections).
    """
    namespace = f"test-{uuid.uuid4().hex}"

    def make(**options: Any) -> DedupStorage:
        options.setdefault("index", redis_url)
        options.setdefault("namespace", namespace)
        inner = {
            "BACKEND": "storages.backends.s3.S3Storage",
            "OPTIONS": s3_server.storage_options(s3_bucket),
        }
        return DedupStorage(inner=inner, **options)

    return make


class TestOverS3Storage(DedupContract):
    @pytest.fixture
    def storage(self, make_s3_dedup: Make) -> DedupStorage:
        return make_s3_dedup()


#: How long a test waits for a thread to reach a point it must reach: a first S3 call in a
#: new thread builds a boto3 session, which takes many seconds on a loaded machine.
S3_PATIENCE = 120.0


class HeldBefore:
    """Block the first call of a storage method until released, then run it for real.

    Unlike ``tests.helpers.Paused`` (which runs the call first), this holds an upload
    *before* its PUT: the moment a slow upload is in flight.
    """

    def __init__(self, storage: Any, method: str) -> None:
        self.method = method
        self.reached = threading.Event()
        self.release = threading.Event()
        original = getattr(storage, method)

        def held(*args: Any, **kwargs: Any) -> Any:
            storage.__dict__.pop(method, None)  # only the first call is held
            self.reached.set()
            assert self.release.wait(S3_PATIENCE), f"{method} was never released"
            return original(*args, **kwargs)

        setattr(storage, method, held)

    def wait(self) -> None:
        assert self.reached.wait(S3_PATIENCE), f"{self.method} was never reached"


class _WaitWatchingTime:
    """``dedupstore.storage``'s ``time`` module, noting when a watched thread sleeps.

    ``DedupStorage`` sleeps only while the index tells it to wait for another party.
    """

    def __init__(self, watched: set[threading.Thread], waiting: threading.Event) -> None:
        self._watched = watched
        self._waiting = waiting

    def __getattr__(self, name: str) -> Any:
        return getattr(time, name)

    def sleep(self, seconds: float) -> None:
        if threading.current_thread() in self._watched:
            self._waiting.set()
        time.sleep(seconds)


@pytest.fixture
def settle(monkeypatch: pytest.MonkeyPatch) -> Callable[[Callable[[], Any]], Background]:
    """Return a function that runs a save in the background until it ends or waits.

    While a held upload is in flight, the other save either runs to its end (today's
    code: it races the held one) or is told by the index to wait for the held upload's
    name (a correct index may do that): either way the held upload is released next.
    """
    watched: set[threading.Thread] = set()

    def run(call: Callable[[], Any]) -> Background:
        waiting = threading.Event()
        clock = _WaitWatchingTime(watched, waiting)
        monkeypatch.setattr("dedupstore.storage.time", clock)

        def watched_call() -> Any:
            watched.add(threading.current_thread())
            try:
                return call()
            finally:
                waiting.set()

        other = Background(watched_call)
        assert waiting.wait(S3_PATIENCE), "the other save neither ended nor waited"
        return other

    return run


def result(call: Background) -> Any:
    """Return what ``call`` returned (or raise its error), waiting up to S3_PATIENCE."""
    call.join(S3_PATIENCE)
    return call.result()


# -- issue 9, case 3: an inner write that replaces whatever the name holds ----------------


def test_two_saves_of_different_content_under_one_free_name_keep_both_contents(
    make_s3_dedup: Make, settle: Settle
) -> None:
    first, second = make_s3_dedup(), make_s3_dedup()
    upload = HeldBefore(first.inner, "_save")
    saver = Background(lambda: first.save("doc.bin", ContentFile(b"first content")))
    upload.wait()  # first found doc.bin free, and its PUT is in flight
    other = settle(lambda: second.save("doc.bin", ContentFile(b"second content")))
    upload.release.set()
    first_name, second_name = result(saver), result(other)
    assert read_all(first, first_name) == b"first content"
    assert read_all(second, second_name) == b"second content"
    # Later uploads of either content are handed a name that holds exactly it.
    for data in (b"first content", b"second content"):
        again = make_s3_dedup().save("later.bin", ContentFile(data))
        assert read_all(first, again) == data


def test_a_delayed_upload_never_lands_on_a_name_that_became_shared(
    make_s3_dedup: Make, settle: Settle
) -> None:
    late, writer, sharer = make_s3_dedup(), make_s3_dedup(), make_s3_dedup()
    upload = HeldBefore(late.inner, "_save")
    saver = Background(lambda: late.save("doc.bin", ContentFile(b"late bytes")))
    upload.wait()
    # Meanwhile another save writes doc.bin, and a third upload of its bytes shares it.
    other = settle(lambda: writer.save("doc.bin", ContentFile(b"shared bytes")))
    sharing = settle(lambda: sharer.save("copy.bin", ContentFile(b"shared bytes")))
    upload.release.set()
    late_name, shared_name, copy_name = result(saver), result(other), result(sharing)
    assert copy_name == shared_name
    assert writer.references(shared_name) == 2
    assert read_all(writer, shared_name) == b"shared bytes"
    assert read_all(late, late_name) == b"late bytes"


# -- issue 9, case 4: overwrite=True must write before it switches -------------------------


def test_a_replace_whose_upload_fails_keeps_the_old_version_readable_and_counted(
    make_s3_dedup: Make, s3_server: S3Server
) -> None:
    storage = make_s3_dedup(overwrite=True)
    assert storage.save("r.bin", ContentFile(b"old version")) == "r.bin"
    dropped = ConnectionClosedError(endpoint_url=s3_server.endpoint_url)
    FailingInner(storage.inner, "_save", dropped)
    with pytest.raises(ConnectionClosedError):
        storage.save("r.bin", ContentFile(b"new version"))
    assert read_all(storage, "r.bin") == b"old version"
    assert storage.references("r.bin") == 1
    # Plain S3Storage(file_overwrite=True) keeps the old object too: nothing was lost.


def test_readers_get_the_old_version_while_a_replace_uploads(make_s3_dedup: Make) -> None:
    storage = make_s3_dedup(overwrite=True)
    assert storage.save("r.bin", ContentFile(b"old version")) == "r.bin"
    upload = HeldBefore(storage.inner, "_save")
    replacer = Background(lambda: storage.save("r.bin", ContentFile(b"new version")))
    upload.wait()
    try:
        assert read_all(make_s3_dedup(), "r.bin") == b"old version"
    finally:
        upload.release.set()
    assert result(replacer) == "r.bin"
    assert read_all(storage, "r.bin") == b"new version"
    assert storage.references("r.bin") == 1


# -- several processes, one new content -----------------------------------------------------


def test_processes_saving_one_new_content_at_once_upload_it_once(
    redis_url: str, s3_server: S3Server, tmp_path: Path
) -> None:
    # A versioned bucket keeps one version per PUT: the server itself counts the uploads.
    bucket = s3_server.create_bucket(f"test-{uuid.uuid4().hex[:20]}", versioning=True)
    payload = os.urandom(512 * 1024)
    (tmp_path / "payload").write_bytes(payload)
    config: dict[str, Any] = {
        "options": s3_server.storage_options(bucket),
        "index": redis_url,
        "namespace": f"test-{uuid.uuid4().hex}",
        "name": "same/new.bin",
        "payload": str(tmp_path / "payload"),
    }
    root = str(Path(__file__).resolve().parent.parent)
    environment = {**os.environ, "PYTHONPATH": root, "AWS_EC2_METADATA_DISABLED": "true"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-m", "tests.s3_worker", json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            text=True,
        )
        for _ in range(6)
    ]
    try:
        for process in processes:
            assert process.stdout is not None and process.stdout.readline() == "ready\n"
        for process in processes:  # every process is connected: start them all at once
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        names = [process.communicate(timeout=120)[0].strip() for process in processes]
        assert [process.returncode for process in processes] == [0] * len(processes)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    assert len(set(names)) == 1, names
    versions = s3_server.client().list_object_versions(Bucket=bucket).get("Versions", [])
    assert [version["Key"] for version in versions] == [names[0]]  # exactly one PUT
    storage = DedupStorage(
        inner={"BACKEND": "storages.backends.s3.S3Storage", "OPTIONS": config["options"]},
        index=redis_url,
        namespace=config["namespace"],
    )
    assert storage.references(names[0]) == len(processes)
    assert read_all(storage, names[0]) == payload
