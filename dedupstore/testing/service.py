"""The lifecycle every test server of the project shares.

``LoopbackService`` is a server on 127.0.0.1 used as a context manager (``start()`` on
entry, ``stop()`` on exit). ``ProcessService`` adds what the servers that run a program of
their own repeat: start on a free port and retry on another when a concurrent process
took it first, wait until the server answers (with a long deadline, never a fixed sleep),
and stop it by its PID.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from types import TracebackType
from typing import Self

__all__ = ["LoopbackService", "ProcessService", "find_free_port", "stop_process", "wait_until"]


def find_free_port(host: str = "127.0.0.1") -> int:
    """Return a TCP port on ``host`` that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def stop_process(
    process: subprocess.Popen[bytes], *, sig: int = signal.SIGTERM, timeout: float = 5.0
) -> str:
    """Stop a server we started, by its PID: ``sig``, then SIGKILL after ``timeout``.

    Return what it wrote to its (piped) stdout, for error messages.
    """
    if process.poll() is None:
        os.kill(process.pid, sig)
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait()
    output = process.stdout.read() if process.stdout else b""
    if process.stdout:
        process.stdout.close()
    return output.decode(errors="replace")


def wait_until(
    ready: Callable[[], bool],
    *,
    timeout: float,
    interval: float,
    give_up: Callable[[], bool] = lambda: False,
) -> bool:
    """Poll ``ready`` until it answers True (return True) or ``timeout`` passes (False).

    ``give_up`` is asked first on every round: once it answers True (the process
    exited), return False without asking ``ready``, which another server that took the
    port could otherwise answer.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if give_up():
            return False
        if ready():
            return True
        time.sleep(interval)
    return False


class LoopbackService:
    """A server of our own on 127.0.0.1: ``with Service() as server:`` starts and stops it."""

    host = "127.0.0.1"

    def start(self) -> Self:
        """Start the server and return it once it answers."""
        raise NotImplementedError

    def stop(self) -> None:
        """Stop the server and remove what it stored."""
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


class ProcessService(LoopbackService):
    """A server process of our own, started on a free port and stopped by its PID.

    A subclass says how to spawn its program on a port (``_spawn``) and how to tell that
    it answers (``_probe``); ``_start_process`` does the rest.
    """

    #: What ``_start_process`` raises when no start succeeded.
    error: type[Exception] = RuntimeError
    #: Seconds a start may take before it counts as failed.
    start_timeout: float = 60.0
    #: Seconds between two readiness probes.
    poll_interval: float = 0.05
    #: Starts tried, each on a new free port (a concurrent process may take one first).
    start_attempts: int = 5
    #: How the process is asked to stop, and the seconds it gets before SIGKILL.
    stop_signal: int = signal.SIGTERM
    stop_timeout: float = 5.0

    process: subprocess.Popen[bytes] | None
    port: int | None

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        """Start the program, listening on ``port``."""
        raise NotImplementedError

    def _probe(self, port: int) -> bool:
        """Return True when the server on ``port`` answers as it should."""
        raise NotImplementedError

    def _start_process(
        self, failure: str, *, port: int | None = None, attempts: int | None = None
    ) -> None:
        """Spawn on ``port`` (default: a free one per attempt) until one answers.

        Set ``process`` and ``port``; raise ``error`` starting with ``failure``, with the
        end of the last attempt's output, when none did.
        """
        last_error = ""
        for _attempt in range(attempts or (1 if port else self.start_attempts)):
            candidate = port or find_free_port(self.host)
            process = self._spawn(candidate)
            if self._wait_ready(process, candidate):
                self.process, self.port = process, candidate
                return
            last_error = self._stop_process(process)
        raise self.error(f"{failure}: {last_error.strip()[-800:]}")

    def _wait_ready(self, process: subprocess.Popen[bytes], port: int) -> bool:
        return wait_until(
            lambda: self._probe(port),
            timeout=self.start_timeout,
            interval=self.poll_interval,
            give_up=lambda: process.poll() is not None,
        )

    def _stop_process(self, process: subprocess.Popen[bytes]) -> str:
        return stop_process(process, sig=self.stop_signal, timeout=self.stop_timeout)
