"""Shared by the ``manage.py dedupstore`` tests: the ops storage, emptied, and a runner."""

from __future__ import annotations

import io
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import redis
from django.conf import settings
from django.core.files.storage import storages
from django.core.management import call_command
from django.core.management.base import CommandError

from dedupstore import DedupStorage
from dedupstore.marker import initialise_index
from dedupstore.models import IndexMarker

DATABASES = ["default", "postgres"] if "postgres" in settings.DATABASES else ["default"]


@dataclass
class Run:
    """What one ``manage.py dedupstore`` run printed and the status it exited with."""

    status: int
    stdout: str
    stderr: str

    @property
    def report(self) -> dict[str, Any]:
        """The report of the one storage the run was given (``--json``)."""
        document = json.loads(self.stdout)
        assert len(document["storages"]) == 1, document
        return document["storages"][0]

    def found(self, kind: str) -> list[str]:
        """Return the names of the findings of ``kind`` (the examples)."""
        return [example["name"] for example in self.report["findings"][kind]["examples"]]


def dedupstore(*args: str) -> Run:
    """Run ``manage.py dedupstore <args>`` and return its output and exit status."""
    stdout, stderr = io.StringIO(), io.StringIO()
    try:
        call_command("dedupstore", *args, stdout=stdout, stderr=stderr)
    except CommandError as exc:
        return Run(exc.returncode, stdout.getvalue(), stderr.getvalue() + str(exc))
    return Run(0, stdout.getvalue(), stderr.getvalue())


def empty_ops_storage() -> DedupStorage:
    """Return ``STORAGES["ops"]`` with an empty index and inner location, initialised."""
    storage = storages["ops"]
    assert isinstance(storage, DedupStorage)
    if not storage.index_url.startswith("redis"):
        pytest.skip("needs redis-server (make test installs it)")
    client = redis.Redis.from_url(storage.index_url)
    client.flushdb()
    client.close()
    location = Path(settings.OPS_MEDIA_ROOT)
    shutil.rmtree(location, ignore_errors=True)
    location.mkdir()
    # A marker left by an earlier test would make the emptied index look lost.
    IndexMarker.objects.filter(namespace=storage.namespace).delete()
    initialise_index(storage)
    return storage
