"""The very first call on a fresh storage returns: nothing deadlocks while it builds clients.

Every public method of every storage class the package ships runs as the first call on a
new instance, in a thread with a deadline. An error is fine (there may be no server); a
call still running at the deadline is a hang.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import Storage

from dedupstore import DedupStorage
from dedupstore.backends.appwrite import AppWriteStorage, AppwriteStorage
from dedupstore.backends.ipfs import InterPlanetaryFileSystemStorage, IPFSStorage

#: Generous: a first call may start a node or time out against a closed port.
DEADLINE = 60.0

PUBLIC_CALLS: dict[str, Callable[[Storage], Any]] = {
    "save": lambda s: s.save("first/x.txt", ContentFile(b"x")),
    "open": lambda s: s.open("first/x.txt").close(),
    "delete": lambda s: s.delete("first/x.txt"),
    "exists": lambda s: s.exists("first/x.txt"),
    "listdir": lambda s: s.listdir(""),
    "size": lambda s: s.size("first/x.txt"),
    "url": lambda s: s.url("first/x.txt"),
    "path": lambda s: s.path("first/x.txt"),
    "get_accessed_time": lambda s: s.get_accessed_time("first/x.txt"),
    "get_created_time": lambda s: s.get_created_time("first/x.txt"),
    "get_modified_time": lambda s: s.get_modified_time("first/x.txt"),
    "get_available_name": lambda s: s.get_available_name("first/x.txt"),
    "get_alternative_name": lambda s: s.get_alternative_name("x", ".txt"),
    "get_valid_name": lambda s: s.get_valid_name("x y.txt"),
    "generate_filename": lambda s: s.generate_filename("x y.txt"),
    "references": lambda s: s.references("first/x.txt"),
    "digest": lambda s: s.digest(ContentFile(b"x")),
}

#: A closed loopback port: no server answers there.
NOBODY = "http://127.0.0.1:9/v1"
#: The same closed port as a Kubo RPC multiaddr, and as a Redis index.
NO_KUBO = "/ip4/127.0.0.1/tcp/9"
NO_REDIS = "redis://127.0.0.1:9/0"


def _appwrite_options() -> dict[str, Any]:
    return {"api_key": "k", "project_id": "p", "bucket_id": "b", "endpoint": NOBODY, "timeout": 2}


def _factories(tmp_path: Path) -> dict[str, Callable[[], Storage]]:
    fs_inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "media")},
    }
    return {
        "DedupStorage": lambda: DedupStorage(inner=fs_inner, index="locmem://first-call"),
        "AppwriteStorage": lambda: AppwriteStorage(**_appwrite_options()),
        "AppWriteStorage": lambda: AppWriteStorage(
            **_appwrite_options(), index="locmem://first-call"
        ),
        "IPFSStorage": lambda: IPFSStorage(api_url=NO_KUBO, timeout=2),
        "IPFSStorage (embedded)": lambda: IPFSStorage(
            embedded_repo=str(tmp_path / "ipfs-repo"), timeout=2
        ),
        "InterPlanetaryFileSystemStorage": lambda: InterPlanetaryFileSystemStorage(
            api_url=NO_KUBO, timeout=2, index="locmem://first-call"
        ),
        "InterPlanetaryFileSystemStorage (embedded)": lambda: InterPlanetaryFileSystemStorage(
            embedded_repo=str(tmp_path / "ipfs-repo"), timeout=2, index="locmem://first-call"
        ),
        "InterPlanetaryFileSystemStorage (no Redis)": lambda: InterPlanetaryFileSystemStorage(
            api_url=NO_KUBO, timeout=2, index=NO_REDIS
        ),
    }


STORAGE_CLASSES = sorted(_factories(Path("unused")))


@pytest.fixture
def stop_embedded_node(tmp_path: Path) -> Iterator[None]:
    """Stop the embedded IPFS node an "(embedded)" row started, before its repo goes."""
    yield
    from dedupstore.backends.ipfs.embedded import get_node, stop_all_nodes

    stop_all_nodes([get_node(tmp_path / "ipfs-repo")])


@pytest.mark.parametrize("method", sorted(PUBLIC_CALLS))
@pytest.mark.parametrize("storage_class", STORAGE_CLASSES)
def test_the_first_call_on_a_fresh_storage_returns(
    storage_class: str, method: str, tmp_path: Path, stop_embedded_node: None
) -> None:
    storage = _factories(tmp_path)[storage_class]()
    call = PUBLIC_CALLS[method]
    if not hasattr(storage, method):
        pytest.skip(f"{storage_class} has no {method}()")
    finished = threading.Event()

    def run() -> None:
        try:
            call(storage)
        except Exception:
            pass  # an error is an answer; only a hang fails
        finally:
            finished.set()

    threading.Thread(target=run, daemon=True, name=f"first-{method}").start()
    assert finished.wait(DEADLINE), f"{storage_class}.{method}() as the first call hung"
