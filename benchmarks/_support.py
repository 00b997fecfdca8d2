"""What the benchmark scripts share: paths, sizes, the Django set-up, uploads, the machine,
and a counter of the calls that reach an inner storage.

Not a benchmark itself (the scripts are ``bench_*.py``). Importing this module puts the
repository root (for ``dedupstore``) and ``benchmarks/`` (for ``_inner_storages``) first
on ``sys.path``. The scripts import it as ``_support`` when run as
``python benchmarks/<script>.py`` and as ``benchmarks._support`` when run as
``python -m benchmarks.<script>``. Nothing here imports the test suite (``tests``).
``bench_peers.py`` does not use it: it runs under another virtualenv and Python.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from django.core.files.uploadedfile import TemporaryUploadedFile

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

from dedupstore.testing.calls import COUNTED_METHODS, InnerCalls  # noqa: E402, F401 (shared with the test suite)

RESULTS = ROOT / "benchmarks" / "results"
KiB, MiB, GiB = 1024, 1024**2, 1024**3


def setup_django(*, empty_storages: bool = True, **extra: Any) -> None:
    """Configure Django for a benchmark and set it up, once per process.

    Configure ``SECRET_KEY="bench"`` and ``USE_TZ=True``; with ``empty_storages`` also
    ``STORAGES={}`` (no default storage: each benchmark names the storages it uses);
    ``extra`` adds settings or overrides these.
    """
    import django
    from django.conf import settings

    if not settings.configured:
        configured: dict[str, Any] = {"SECRET_KEY": "bench", "USE_TZ": True}
        if empty_storages:
            configured["STORAGES"] = {}
        settings.configure(**(configured | extra))
        django.setup()


def upload_of(data: bytes) -> TemporaryUploadedFile:
    """Return a ``TemporaryUploadedFile`` holding ``data``, as Django's upload handler makes it."""
    from django.core.files.uploadedfile import TemporaryUploadedFile

    upload = TemporaryUploadedFile("upload.bin", "application/octet-stream", len(data), None)
    upload.write(data)
    upload.flush()
    upload.seek(0)
    return upload


def machine() -> dict[str, Any]:
    """Describe the machine a run measures on, for the ``"machine"`` key of a result file."""
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "platform": platform.platform(),
    }
