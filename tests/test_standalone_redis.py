"""``python -m dedupstore.testing.redis``: a private redis-server until Ctrl-C or SIGTERM."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from dedupstore.testing.redis import find_free_port
from tests.helpers import PATIENCE

ROOT = Path(__file__).resolve().parents[1]
#: Starting Python and redis-server on a busy machine: generous, never hit when right.
STARTUP = 6 * PATIENCE


class Command:
    """The command as a subprocess, with its output read in the background."""

    def __init__(self, *args: str) -> None:
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.process = subprocess.Popen(
            [sys.executable, "-m", "dedupstore.testing.redis", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        self.first_line = ""
        self.got_line = threading.Event()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._readers = [
            threading.Thread(target=self._read_stdout, daemon=True),
            threading.Thread(target=self._read_stderr, daemon=True),
        ]
        for reader in self._readers:
            reader.start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.stdout.append(line)
            if not self.got_line.is_set():
                self.first_line = line.strip()
                self.got_line.set()
        self.got_line.set()

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            self.stderr.append(line)

    def url(self) -> str:
        assert self.got_line.wait(STARTUP), "the command printed nothing"
        assert self.first_line, f"no URL; stderr: {''.join(self.stderr)}"
        return self.first_line

    def server_pid(self) -> int:
        match = re.search(r"redis-server pid (\d+)", "".join(self.stderr))
        assert match, "".join(self.stderr)
        return int(match.group(1))

    def finish(self) -> int:
        code = self.process.wait(STARTUP)
        for reader in self._readers:
            reader.join(PATIENCE)
        return code

    def kill(self) -> None:
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait()


@pytest.fixture
def command() -> Iterator[type[Command]]:
    started: list[Command] = []

    class Tracked(Command):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Tracked
    for each in started:
        each.kill()


def wait_for_stderr(command: Command, text: str) -> None:
    deadline = threading.Event()
    for _ in range(int(STARTUP / 0.05)):
        if text in "".join(command.stderr):
            return
        deadline.wait(0.05)
    raise AssertionError(f"{text!r} never appeared: {''.join(command.stderr)}")


def port_refuses(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=PATIENCE):
            return False
    except ConnectionRefusedError:
        return True


def process_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.mark.parametrize("stop_signal", [signal.SIGTERM, signal.SIGINT])
def test_it_prints_a_url_that_answers_and_stops_the_server_on_a_signal(
    command: type[Command], stop_signal: signal.Signals
) -> None:
    running = command()
    url = running.url()
    match = re.fullmatch(r"redis://127\.0\.0\.1:(\d+)/0", url)
    assert match, url
    client = redis.Redis.from_url(url, socket_timeout=PATIENCE)
    assert client.ping()
    client.set("dedupstore-test", b"value")
    assert client.get("dedupstore-test") == b"value"
    client.close()
    wait_for_stderr(running, "Ctrl-C or SIGTERM stops it")
    server_pid = running.server_pid()

    os.kill(running.process.pid, stop_signal)
    assert running.finish() == 0
    assert "redis-server stopped" in "".join(running.stderr)
    assert process_gone(server_pid)
    assert port_refuses(int(match.group(1)))


def test_port_chooses_the_port(command: type[Command]) -> None:
    port = find_free_port()
    running = command("--port", str(port))
    assert running.url() == f"redis://127.0.0.1:{port}/0"
    assert redis.Redis(host="127.0.0.1", port=port, socket_timeout=PATIENCE).ping()
    os.kill(running.process.pid, signal.SIGTERM)
    assert running.finish() == 0


def test_a_taken_port_is_a_clear_error(command: type[Command]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        running = command("--port", str(port))
        assert running.finish() == 1
    assert running.stdout == []
    assert "error: redis-server did not start" in "".join(running.stderr)


def test_a_port_out_of_range_is_refused(command: type[Command]) -> None:
    running = command("--port", "70000")
    assert running.finish() == 2
    assert "--port must be 1..65535" in "".join(running.stderr)
