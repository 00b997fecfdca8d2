"""Run a private ``redis-server`` on a free loopback port, for tests, demos and benchmarks.

Standalone, for a development server: ``python -m dedupstore.testing.redis [--port N]``
prints the server's URL and keeps it running until Ctrl-C or SIGTERM, then stops it by
its PID.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from types import FrameType

from dedupstore.testing.service import ProcessService, find_free_port, stop_process

__all__ = ["RedisServer", "RedisServerError", "find_free_port", "stop_process"]


class RedisServerError(RuntimeError):
    """The private ``redis-server`` could not be found or started."""


class RedisServer(ProcessService):
    """A ``redis-server`` process of our own, bound to 127.0.0.1 and stopped by its PID.

    By default persistence is off (no RDB, no AOF) and the data directory is a private
    temporary directory, so the server leaves nothing behind.  Use it as a context manager::

        with RedisServer() as server:
            storage = DedupStorage(inner=..., index=server.url)

    ``appendonly=True`` turns the append-only file on with ``appendfsync always`` (every
    acknowledged write is on disk), so ``kill()`` then ``restart()`` (same port, same
    directory) loses nothing a client was told was written: a crash test's Redis crash.
    """

    error = RedisServerError
    poll_interval = 0.02
    stop_timeout = 5.0

    def __init__(
        self,
        *,
        executable: str | None = None,
        start_timeout: float = 10.0,
        port: int | None = None,
        own_session: bool = False,
        appendonly: bool = False,
    ) -> None:
        self.executable = executable or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.start_timeout = start_timeout
        self.appendonly = appendonly
        #: The port asked for; None picks a free one (and retries on a race for it).
        self.requested_port = port
        #: Start the server in a session of its own, so a terminal's Ctrl-C reaches only
        #: its parent, which then stops it by its PID (the standalone command). Off by
        #: default: the suite's servers stay as they always were.
        self.own_session = own_session
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None

    @property
    def url(self) -> str:
        """Return the ``redis://`` URL of the running server."""
        if self.port is None:
            raise RedisServerError("the Redis server is not running")
        return f"redis://{self.host}:{self.port}/0"

    def start(self) -> RedisServer:
        """Start the server on a free port and wait until it answers PING."""
        if not os.path.exists(self.executable):
            raise RedisServerError(
                f"redis-server not found at {self.executable!r}; install Debian's "
                "'redis-server' package (make test does this for you)"
            )
        self._workdir = tempfile.TemporaryDirectory(prefix="dedupstore-redis-")
        try:
            self._start_process("redis-server did not start", port=self.requested_port)
        except RedisServerError:
            self._workdir.cleanup()
            raise
        return self

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        assert self._workdir is not None
        persistence = ["--appendonly", "no"]
        if self.appendonly:
            persistence = ["--appendonly", "yes", "--appendfsync", "always"]
        return subprocess.Popen(
            [
                self.executable,
                "--bind",
                self.host,
                "--port",
                str(port),
                "--save",
                "",
                *persistence,
                "--dir",
                self._workdir.name,
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=self.own_session,
        )

    def kill(self) -> None:
        """SIGKILL the server by its PID (a crash); its port and directory are kept."""
        if self.process is None:
            raise RedisServerError("the Redis server is not running")
        os.kill(self.process.pid, signal.SIGKILL)
        self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()
        self.process = None

    def restart(self) -> None:
        """Start the server again on the same port and directory (after ``kill()``).

        With ``appendonly=True`` it reloads its append-only file: nothing acknowledged is lost.
        """
        if self.port is None or self._workdir is None:
            raise RedisServerError("restart() needs a server that was started")
        if self.process is not None:
            raise RedisServerError("the Redis server is still running: kill() it first")
        # The killed server's port is usually bindable at once (redis sets SO_REUSEADDR);
        # a client's connection attempt racing the bind is retried here.
        self._start_process("redis-server did not restart", port=self.port, attempts=5)

    def _probe(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def stop(self) -> None:
        """Stop the server by its PID and remove its directory."""
        if self.process is not None:
            self._stop_process(self.process)
            self.process = None
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None


def main(argv: Sequence[str] | None = None) -> int:
    """Run a private redis-server until Ctrl-C or SIGTERM; print its URL first."""
    parser = argparse.ArgumentParser(
        prog="python -m dedupstore.testing.redis",
        description="Run a private redis-server on 127.0.0.1 (no persistence) until "
        "Ctrl-C or SIGTERM, for a development server or a front-end.",
    )
    parser.add_argument("--port", type=int, default=None, help="port (default: a free one)")
    args = parser.parse_args(argv)
    if args.port is not None and not 0 < args.port < 65536:
        parser.error(f"--port must be 1..65535, not {args.port}")

    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    # SIGTERM and Ctrl-C both end the wait below; the server is then stopped by its PID.
    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        try:
            server = RedisServer(port=args.port, own_session=True).start()
        except RedisServerError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
        try:
            print(server.url, flush=True)
            print(
                f"redis-server pid {server.pid} on {server.host}:{server.port}; "
                "Ctrl-C or SIGTERM stops it",
                file=sys.stderr,
                flush=True,
            )
            while not stop.wait(0.5):
                if server.process is not None and server.process.poll() is not None:
                    print("error: redis-server exited by itself", file=sys.stderr)
                    return 1
        finally:
            server.stop()
        print("redis-server stopped", file=sys.stderr, flush=True)
        return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


if __name__ == "__main__":
    sys.exit(main())
