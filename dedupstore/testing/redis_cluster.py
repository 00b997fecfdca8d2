"""Run a private Redis Cluster (3 primaries, 3 replicas) on loopback, for tests and benchmarks.

Six ``redis-server`` processes with ``cluster-enabled yes``, each with its own directory,
bound to 127.0.0.1 on ports at most 55535 (the cluster bus listens on the port + 10000),
joined with ``redis-cli --cluster create``, waited for until every node says
``cluster_state:ok``, and stopped by PID, also when the set-up fails half-way.
"""

from __future__ import annotations

import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
from collections.abc import Callable

from dedupstore.testing.redis import RedisServerError
from dedupstore.testing.service import LoopbackService, wait_until

__all__ = ["RedisCluster"]

#: The highest port a cluster node may use: its bus port must stay below 65536.
MAX_NODE_PORT = 55535


def _port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _ephemeral_start() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as ports:
            return int(ports.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768  # Linux's default


def _free_node_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Return ``count`` ports whose bus ports (+10000) are free too, all at most 55535."""
    ports: list[int] = []
    # Below the kernel's ephemeral range, port and bus port alike: an outgoing connection's
    # source port can then never take one between this check and the node's bind.
    highest = min(MAX_NODE_PORT, _ephemeral_start() - 10000 - 1)
    candidates = list(range(20000, highest + 1 if highest > 21000 else MAX_NODE_PORT + 1))
    random.shuffle(candidates)
    for port in candidates:
        if port in ports:
            continue
        if _port_free(port, host) and _port_free(port + 10000, host):
            ports.append(port)
            if len(ports) == count:
                return ports
    raise RedisServerError("no free ports for a Redis Cluster below 55535")


class RedisCluster(LoopbackService):
    """A Redis Cluster of our own: ``primaries`` primaries with one replica each.

    Use it as a context manager; ``url`` is a ``redis+cluster://`` URL naming every node,
    ``nodes`` the ``(host, port)`` of each, and ``pids`` maps ports to process IDs::

        with RedisCluster() as cluster:
            client = redis.RedisCluster(host="127.0.0.1", port=cluster.ports[0])
    """

    def __init__(
        self,
        *,
        primaries: int = 3,
        executable: str | None = None,
        cli: str | None = None,
        node_timeout_ms: int = 2000,
        start_timeout: float = 60.0,
        appendonly: bool = False,
    ) -> None:
        self.primaries = primaries
        self.executable = executable or shutil.which("redis-server") or "/usr/bin/redis-server"
        self.cli = cli or shutil.which("redis-cli") or "/usr/bin/redis-cli"
        self.node_timeout_ms = node_timeout_ms
        self.start_timeout = start_timeout
        self.appendonly = appendonly
        self.ports: list[int] = []
        self.processes: dict[int, subprocess.Popen[bytes]] = {}
        self._workdir: str | None = None

    @property
    def nodes(self) -> list[tuple[str, int]]:
        return [(self.host, port) for port in self.ports]

    @property
    def pids(self) -> dict[int, int]:
        return {port: process.pid for port, process in self.processes.items()}

    @property
    def url(self) -> str:
        """Return ``redis+cluster://host:port,host:port,...`` naming every node."""
        return "redis+cluster://" + ",".join(f"{self.host}:{port}" for port in self.ports)

    def start(self) -> RedisCluster:
        """Start the nodes, create the cluster, and wait until it is ``ok``.

        A node that exits at start (another process bound its port or bus port after the
        check) makes the whole start run again on other ports, three times at most.
        """
        for attempt in range(3):
            try:
                return self._start_once()
            except RedisServerError as exc:
                if "exited" not in str(exc) or attempt == 2:
                    raise
        raise AssertionError("unreachable")

    def _start_once(self) -> RedisCluster:
        for program in (self.executable, self.cli):
            if not os.path.exists(program):
                raise RedisServerError(
                    f"{program!r} not found; install Debian's 'redis-server' package"
                )
        self._workdir = tempfile.mkdtemp(prefix="dedupstore-redis-cluster-")
        try:
            self.ports = _free_node_ports(self.primaries * 2, self.host)
            for port in self.ports:
                self.start_node(port)
            self._wait(lambda: all(self._answers(port) for port in self.ports), "PING")
            created = subprocess.run(
                [
                    self.cli,
                    "--cluster",
                    "create",
                    *(f"{self.host}:{port}" for port in self.ports),
                    "--cluster-replicas",
                    "1",
                    "--cluster-yes",
                ],
                capture_output=True,
                timeout=self.start_timeout,
            )
            if created.returncode:
                raise RedisServerError(
                    "redis-cli --cluster create failed: "
                    + (created.stdout + created.stderr).decode(errors="replace")[-800:]
                )
            self._wait(self.is_ok, "cluster_state:ok")
        except BaseException:
            self.stop()
            raise
        return self

    def start_node(self, port: int) -> None:
        """Start (or restart) the node of ``port`` from its own directory."""
        assert self._workdir is not None
        directory = os.path.join(self._workdir, str(port))
        os.makedirs(directory, exist_ok=True)
        self.processes[port] = subprocess.Popen(
            [
                self.executable,
                "--bind",
                self.host,
                "--port",
                str(port),
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                f"nodes-{port}.conf",
                "--cluster-node-timeout",
                str(self.node_timeout_ms),
                "--dir",
                directory,
                "--save",
                "",
                "--appendonly",
                "yes" if self.appendonly else "no",
                # A replica syncs at once instead of after the default 5 s batching delay:
                # one that never synced cannot be promoted.
                "--repl-diskless-sync-delay",
                "0",
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def kill_node(self, port: int, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the node of ``port`` (SIGKILL: it dies, and is reaped)."""
        process = self.processes[port]
        os.kill(process.pid, sig)
        if sig == signal.SIGKILL:
            process.wait()

    def info(self, port: int, section: str = "cluster") -> dict[str, str]:
        """Return ``CLUSTER INFO`` (``section="cluster"``) or ``INFO <section>`` of a node."""
        command = ["cluster", "info"] if section == "cluster" else ["info", section]
        result = subprocess.run(
            [self.cli, "-h", self.host, "-p", str(port), *command],
            capture_output=True,
            timeout=10,
        )
        fields = {}
        for line in result.stdout.decode(errors="replace").splitlines():
            key, sep, value = line.strip().partition(":")
            if sep:
                fields[key] = value
        return fields

    def is_ok(self) -> bool:
        """Return True when every running node reports ``cluster_state:ok``."""
        running = [port for port, p in self.processes.items() if p.poll() is None]
        return bool(running) and all(
            self.info(port).get("cluster_state") == "ok" for port in running
        )

    def _answers(self, port: int) -> bool:
        try:
            with socket.create_connection((self.host, port), timeout=0.5) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    def _wait(self, ready: Callable[[], bool], what: str) -> None:
        exited: list[int] = []

        def a_node_exited() -> bool:
            exited[:] = [port for port, p in self.processes.items() if p.poll() is not None]
            return bool(exited)

        if wait_until(ready, timeout=self.start_timeout, interval=0.1, give_up=a_node_exited):
            return
        if exited:
            raise RedisServerError(f"cluster node on port {exited[0]} exited")
        raise RedisServerError(f"the Redis Cluster did not reach {what} in {self.start_timeout}s")

    def stop(self) -> None:
        """Stop every node by its PID and remove the cluster's directories."""
        for process in self.processes.values():
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
        for process in self.processes.values():
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.kill(process.pid, signal.SIGKILL)
                process.wait()
        self.processes.clear()
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None
