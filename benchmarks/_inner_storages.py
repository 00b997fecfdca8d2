"""The inner storages the benchmarks run against, each set up privately on loopback.

Not a benchmark itself: ``bench_cost_and_savings.py`` runs its measurements over each
storage here that imports (``available()``).
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class BackendRun:
    """A live inner storage: its STORAGES-style definition and its request counters."""

    name: str
    inner: dict[str, Any]
    #: Requests that reached the backend so far, where the backend counts them (an HTTP
    #: server); None: count the calls that reach the inner storage object instead.
    requests: Callable[[], int] | None
    #: Bytes sent to the backend so far, where it can tell (else None).
    bytes_sent: Callable[[], int | None] = lambda: None
    notes: list[str] = field(default_factory=list)


@contextlib.contextmanager
def filesystem() -> Iterator[BackendRun]:
    with tempfile.TemporaryDirectory(prefix="bench-fs-") as location:
        inner = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": location},
        }
        yield BackendRun("filesystem", inner, requests=None)


@contextlib.contextmanager
def ipfs() -> Iterator[BackendRun]:
    from dedupstore.backends.ipfs import IPFSStorage  # noqa: F401
    from dedupstore.backends.ipfs.embedded import stop_all_nodes

    with tempfile.TemporaryDirectory(prefix="bench-ipfs-") as repo:
        inner = {
            "BACKEND": "dedupstore.backends.ipfs.IPFSStorage",
            "OPTIONS": {"embedded_repo": str(Path(repo) / "repo")},
        }
        try:
            yield BackendRun("ipfs (embedded)", inner, requests=None)
        finally:
            stop_all_nodes()  # before its repo directory goes


@contextlib.contextmanager
def appwrite() -> Iterator[BackendRun]:
    from dedupstore.testing.appwrite import AppwriteTestServer

    # Appwrite's default _APP_STORAGE_LIMIT (30 MB) refuses the full sweep's 64 MiB files;
    # self-hosted servers raise it the same way.
    with AppwriteTestServer(storage_limit=2 * 1024**3) as server:
        inner = {
            "BACKEND": "dedupstore.backends.appwrite.AppwriteStorage",
            "OPTIONS": {
                "endpoint": server.endpoint,
                "project_id": server.project_id,
                "api_key": server.api_key,
                "bucket_id": "bench",
            },
        }
        yield BackendRun(
            "appwrite (test server)",
            inner,
            requests=lambda: server.request_count,
            bytes_sent=lambda: getattr(server, "bytes_received", None),
        )


ALL: dict[str, Callable[[], contextlib.AbstractContextManager[BackendRun]]] = {
    "filesystem": filesystem,
    "ipfs": ipfs,
    "appwrite": appwrite,
}


def available() -> tuple[dict[str, Callable[..., Any]], dict[str, str]]:
    """Return the backends that import here, and why the others do not."""
    usable: dict[str, Callable[..., Any]] = {}
    missing: dict[str, str] = {}
    for name, factory in ALL.items():
        try:
            with factory():
                pass
        except Exception as exc:  # a missing extra, a broken install: report, go on
            missing[name] = f"{type(exc).__name__}: {exc}"
        else:
            usable[name] = factory
    return usable, missing
