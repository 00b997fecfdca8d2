"""The test servers share one lifecycle: start, wait until ready, stop by PID, ``with``."""

from __future__ import annotations

import signal
import subprocess
import sys
import urllib.request

import pytest

from dedupstore.testing.appwrite import AppwriteTestServer
from dedupstore.testing.postgres import PostgresServer
from dedupstore.testing.redis import RedisServer
from dedupstore.testing.redis_cluster import RedisCluster
from dedupstore.testing.s3 import S3Server
from dedupstore.testing.service import (
    LoopbackService,
    ProcessService,
    stop_process,
    wait_until,
)


@pytest.mark.parametrize(
    "server_class", [AppwriteTestServer, PostgresServer, RedisCluster, RedisServer, S3Server]
)
def test_every_test_server_is_a_loopback_service(server_class: type) -> None:
    assert issubclass(server_class, LoopbackService)
    assert "__enter__" not in vars(server_class) and "__exit__" not in vars(server_class)


@pytest.mark.parametrize("server_class", [PostgresServer, RedisServer, S3Server])
def test_every_server_process_is_a_process_service(server_class: type) -> None:
    assert issubclass(server_class, ProcessService)


def test_wait_until_asks_whether_to_give_up_before_asking_whether_ready() -> None:
    # A process that exited must not count as ready, even if something else answers on
    # its port: the check that it runs comes first.
    asked: list[str] = []

    def ready() -> bool:
        asked.append("ready")
        return True

    def gone() -> bool:
        asked.append("gone")
        return True

    assert wait_until(ready, timeout=600, interval=0, give_up=gone) is False
    assert asked == ["gone"]


def test_wait_until_polls_until_ready() -> None:
    answers = iter([False, False, True])
    assert wait_until(lambda: next(answers), timeout=600, interval=0) is True
    assert next(answers, "none left") == "none left"


def test_wait_until_gives_up_at_its_deadline() -> None:
    assert wait_until(lambda: False, timeout=0, interval=0) is False


class _HTTPServerProcess(ProcessService):
    """Python's http.server as a service; its first start fails, as a lost port race does."""

    error = RuntimeError
    start_timeout = 600.0
    poll_interval = 0.05

    def __init__(self) -> None:
        self.process: subprocess.Popen[bytes] | None = None
        self.port: int | None = None
        self.spawned: list[subprocess.Popen[bytes]] = []

    def start(self) -> _HTTPServerProcess:
        self._start_process("http.server did not start")
        return self

    def stop(self) -> None:
        if self.process is not None:
            self._stop_process(self.process)
            self.process = None

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        if not self.spawned:
            command = [sys.executable, "-c", "raise SystemExit('port taken')"]
        else:
            command = [sys.executable, "-m", "http.server", "--bind", self.host, str(port)]
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.spawned.append(process)
        return process

    def _probe(self, port: int) -> bool:
        try:
            with urllib.request.urlopen(f"http://{self.host}:{port}/", timeout=5) as answer:
                return bool(answer.status == 200)
        except OSError:
            return False


def test_a_process_service_retries_a_failed_start_and_stops_by_pid() -> None:
    with _HTTPServerProcess() as service:
        assert len(service.spawned) == 2
        assert service.spawned[0].returncode == 1
        assert service.pid == service.spawned[1].pid
        assert service._probe(service.port or 0)
    assert service.process is None
    assert service.spawned[1].returncode is not None


def test_stop_process_kills_a_process_that_ignores_its_signal() -> None:
    script = (
        "import signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ignoring SIGTERM', flush=True)\n"
        "time.sleep(600)\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    assert process.stdout is not None
    assert process.stdout.readline() == b"ignoring SIGTERM\n"
    stop_process(process, sig=signal.SIGTERM, timeout=1.0)
    assert process.returncode == -signal.SIGKILL


def test_stop_process_returns_what_the_process_wrote() -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", "print('bye')"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    process.wait()
    assert stop_process(process) == "bye\n"
