"""Run a private PostgreSQL cluster on a free loopback port, for tests and benchmarks.

The cluster is made by Debian's ``initdb`` in a temporary directory, owned by an
unprivileged user when run as root (PostgreSQL refuses to run as root), listens on
127.0.0.1 only (no Unix socket outside its own directory), and is stopped by its PID.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable

from dedupstore.testing.service import ProcessService

__all__ = ["PostgresServer", "PostgresServerError", "find_postgres_bin"]

#: The database superuser of the private cluster; it trusts loopback connections.
SUPERUSER = "dedupstore"


class PostgresServerError(RuntimeError):
    """The private PostgreSQL server could not be found or started."""


def find_postgres_bin() -> str:
    """Return the directory of Debian's PostgreSQL server programs (the newest version)."""
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda path: int(path.split("/")[4]) if path.split("/")[4].isdigit() else 0,
    )
    if candidates:
        return os.path.dirname(candidates[-1])
    initdb = shutil.which("initdb")
    if initdb:
        return os.path.dirname(os.path.realpath(initdb))
    raise PostgresServerError(
        "PostgreSQL's initdb was not found; install Debian's 'postgresql' package "
        "(make test does this for you)"
    )


def _unprivileged_user() -> pwd.struct_passwd | None:
    """Return the user to run the server as when we are root (``postgres``, else ``nobody``)."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        with contextlib.suppress(KeyError):
            return pwd.getpwnam(name)
    raise PostgresServerError("running as root, and neither 'postgres' nor 'nobody' exists")


class PostgresServer(ProcessService):
    """A ``postgres`` process of our own, bound to 127.0.0.1 and stopped by its PID.

    Use it as a context manager; ``settings_dict()`` gives a Django ``DATABASES`` entry::

        with PostgresServer() as server:
            DATABASES = {"default": server.settings_dict()}
    """

    error = PostgresServerError
    poll_interval = 0.1
    # SIGINT is PostgreSQL's "fast shutdown": it ends every session and exits cleanly.
    stop_signal = signal.SIGINT
    stop_timeout = 30.0

    def __init__(self, *, bin_dir: str | None = None, start_timeout: float = 60.0) -> None:
        self.bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.port: int | None = None
        self.process: subprocess.Popen[bytes] | None = None
        self._workdir: str | None = None
        self._bin_dir = ""
        self._data = ""
        self._demote: Callable[[], None] | None = None

    def settings_dict(self, name: str = "postgres") -> dict[str, object]:
        """Return a Django ``DATABASES`` entry for database ``name`` of this server."""
        if self.port is None:
            raise PostgresServerError("the PostgreSQL server is not running")
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": name,
            "USER": SUPERUSER,
            "PASSWORD": "",
            "HOST": self.host,
            "PORT": str(self.port),
        }

    def start(self) -> PostgresServer:
        """Create the cluster, start the server on a free port, wait until it accepts."""
        bin_dir = self.bin_dir or find_postgres_bin()
        user = _unprivileged_user()
        self._workdir = tempfile.mkdtemp(prefix="dedupstore-postgres-")
        data = os.path.join(self._workdir, "data")
        os.mkdir(data, 0o700)
        demote: Callable[[], None] | None = None
        if user is not None:
            os.chown(self._workdir, user.pw_uid, user.pw_gid)
            os.chown(data, user.pw_uid, user.pw_gid)
            uid, gid = user.pw_uid, user.pw_gid

            def demote() -> None:
                os.setgid(gid)
                os.setuid(uid)

        initdb = subprocess.run(
            [
                os.path.join(bin_dir, "initdb"),
                "-D",
                data,
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
                # A natural-language collation, as production clusters have (C orders
                # by code point and would hide ordering bugs).
                "--locale=C.UTF-8",
                "--locale-provider=icu",
                "--icu-locale=en-US",
            ],
            capture_output=True,
            preexec_fn=demote,
            cwd=self._workdir,
        )
        if initdb.returncode:
            output = (initdb.stdout + initdb.stderr).decode(errors="replace")
            self._cleanup()
            raise PostgresServerError(f"initdb failed: {output.strip()[-800:]}")
        self._bin_dir, self._data, self._demote = bin_dir, data, demote
        try:
            self._start_process("postgres did not start")
        except PostgresServerError:
            self._cleanup()
            raise
        return self

    def _spawn(self, port: int) -> subprocess.Popen[bytes]:
        assert self._workdir is not None
        return subprocess.Popen(
            [
                os.path.join(self._bin_dir, "postgres"),
                "-D",
                self._data,
                "-h",
                self.host,
                "-p",
                str(port),
                "-k",
                self._workdir,
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            preexec_fn=self._demote,
            cwd=self._workdir,
        )

    def _probe(self, port: int) -> bool:
        ready = subprocess.run(
            [os.path.join(self._bin_dir, "pg_isready"), "-q", "-h", self.host, "-p", str(port)],
            capture_output=True,
        )
        return ready.returncode == 0

    def _cleanup(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None

    def stop(self) -> None:
        """Stop the server by its PID and remove its cluster."""
        if self.process is not None:
            self._stop_process(self.process)
            self.process = None
        self.port = None
        self._cleanup()
