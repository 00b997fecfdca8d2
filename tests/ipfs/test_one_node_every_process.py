"""Several processes open one embedded repo: one owns the node, the others are its clients.

Real processes (``tests/ipfs/node_worker.py``) save, read and delete through
``DedupStorage`` over the same repo and one real ``redis-server``. The owner is killed
with SIGKILL in the middle (once between operations, once during a 16 MiB save); another
process takes the repo over, and every name whose save returned and that was not deleted
still reads back its bytes from every process. Every wait is a blocking read of the
worker's answer, bounded by a long deadline: nothing depends on timing.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dedupstore.backends.ipfs.embedded import create_isolated_repo
from dedupstore.backends.ipfs.shared import ENDPOINT_FILE

DEADLINE = 300.0
ROOT = Path(__file__).resolve().parents[2]


class Worker:
    def __init__(self, repo: Path, redis_url: str, namespace: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        env.pop("DJANGO_SETTINGS_MODULE", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "tests.ipfs.node_worker", str(repo), redis_url, namespace],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            cwd=ROOT,
            env=env,
        )
        assert self.answer() == {"ready": True}

    def answer(self) -> dict[str, Any]:
        # A blocking readline, bounded by a long deadline in case the worker hangs.
        result: list[str] = []
        reader = threading.Thread(
            target=lambda: result.append(self.process.stdout.readline()),  # type: ignore[union-attr]
            daemon=True,
        )
        reader.start()
        reader.join(DEADLINE)
        assert result and result[0], f"worker {self.process.pid} gave no answer"
        return json.loads(result[0])

    def send(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command) + "\n")
        self.process.stdin.flush()

    def call(self, **command: Any) -> dict[str, Any]:
        self.send(**command)
        reply = self.answer()
        assert "error" not in reply, reply
        return reply

    def save(self, data: bytes, name: str = "f.bin") -> str:
        return str(self.call(op="save", name=name, data=data.hex())["name"])

    def read(self, name: str) -> bytes:
        return bytes.fromhex(str(self.call(op="read", name=name)["data"]))

    def role(self) -> str:
        return str(self.call(op="role")["role"])

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(DEADLINE)

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            self.process.wait(DEADLINE)


@pytest.fixture
def workers(tmp_path: Path, redis_url: str) -> Iterator[Any]:
    repo = create_isolated_repo(tmp_path / "repo")
    namespace = f"test-{uuid.uuid4().hex}"
    started: list[Worker] = []

    def start() -> Worker:
        worker = Worker(repo, redis_url, namespace)
        started.append(worker)
        return worker

    start.repo = repo  # type: ignore[attr-defined]
    yield start
    for worker in started:  # clients first would re-attach: close in start order
        worker.close()


def test_processes_share_one_node_and_a_new_owner_takes_over_after_a_sigkill(
    workers: Any,
) -> None:
    first, second, third = workers(), workers(), workers()
    assert first.role() == "owner"
    assert second.role() == "client" and third.role() == "client"
    endpoint = json.loads((workers.repo / ENDPOINT_FILE).read_text())
    assert endpoint["pid"] == first.process.pid
    assert endpoint["url"].startswith("http://127.0.0.1:")
    assert (workers.repo / ENDPOINT_FILE).stat().st_mode & 0o077 == 0

    held: dict[str, bytes] = {}
    shared = os.urandom(300_000)
    name = first.save(shared)
    assert second.save(shared) == name  # a hit: one pin, two references
    held[name] = shared
    for worker in (first, second, third):
        payload = os.urandom(50_000)
        held[worker.save(payload)] = payload
    assert third.read(name) == shared
    assert second.call(op="references", name=name)["references"] == 2
    third.call(op="delete", name=name)  # a client deletes one reference
    assert first.call(op="exists", name=name)["exists"]

    first.kill()  # the owner, between operations
    payload = os.urandom(70_000)
    held[second.save(payload)] = payload  # the call that finds the owner gone
    assert {second.role(), third.role()} == {"owner", "client"}
    for stored, data in held.items():
        assert second.read(stored) == data and third.read(stored) == data
        assert third.call(op="exists", name=stored)["exists"]

    owner = second if second.role() == "owner" else third
    client = third if owner is second else second
    owner.send(op="save", name="big.bin", data=os.urandom(16 * 1024 * 1024).hex())
    owner.kill()  # the owner, in the middle of a save: its outcome is unknown
    fourth = workers()
    payload = os.urandom(10_000)
    held[client.save(payload)] = payload
    assert {client.role(), fourth.role()} == {"owner", "client"}
    for stored, data in held.items():
        assert fourth.read(stored) == data and client.read(stored) == data
        assert fourth.call(op="exists", name=stored)["exists"]
    # Deletes still reach the (new) owner: the last reference unpins.
    fourth.call(op="delete", name=name)
    assert not client.call(op="exists", name=name)["exists"]
    assert client.call(op="references", name=name)["references"] == 0


def test_the_owner_that_exits_cleanly_removes_its_endpoint_and_a_client_takes_over(
    workers: Any,
) -> None:
    first, second = workers(), workers()
    assert first.role() == "owner" and second.role() == "client"
    name = first.save(b"kept across owners")
    first.close()
    assert not (workers.repo / ENDPOINT_FILE).exists()
    assert second.read(name) == b"kept across owners"
    assert second.call(op="exists", name=name)["exists"]
    assert second.role() == "owner"
