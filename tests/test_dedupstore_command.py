"""``manage.py dedupstore``: its options, its output and its exit statuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from django.core.files.base import ContentFile

from dedupstore import DedupStorage
from tests.ops_helpers import DATABASES, dedupstore, empty_ops_storage
from tests.testapp.models import Clip

pytestmark = pytest.mark.django_db(databases=DATABASES, transaction=True)


@pytest.fixture
def ops() -> DedupStorage:
    return empty_ops_storage()


def manage(*args: str) -> subprocess.CompletedProcess[str]:
    """Run ``django-admin`` with the test settings in a process of its own."""
    environment = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
        check=False,
    )


def test_stats_reports_the_counters_and_the_most_shared_objects(ops: DedupStorage) -> None:
    shared = ops.save("clips/shared.bin", ContentFile(b"x" * 100))
    for _ in range(3):
        assert ops.save("clips/again.bin", ContentFile(b"x" * 100)) == shared
    ops.save("clips/single.bin", ContentFile(b"y" * 50))
    run = dedupstore("stats", "--storage", "ops", "--json")
    assert run.status == 0
    figures = run.report["figures"]
    assert (figures["objects"], figures["references"]) == (2, 5)
    assert (figures["physical_bytes"], figures["logical_bytes"]) == (150, 450)
    assert figures["dedup_ratio"] == 3.0
    assert figures["most_shared"] == [{"name": shared, "references": 4, "size": 100}]
    text = dedupstore("stats", "--storage", "ops")
    assert "dedup ratio: 3.00" in text.stdout and "logical bytes: 450" in text.stdout


def test_without_storage_every_dedup_storage_in_use_is_reported(ops: DedupStorage) -> None:
    run = dedupstore("stats", "--top", "0", "--json")
    assert run.status == 0
    storages = [report["storage"] for report in json.loads(run.stdout)["storages"]]
    assert "STORAGES['ops']" in storages and "STORAGES['live']" in storages
    assert "STORAGES['dedup']" in storages


def test_verify_exits_1_and_says_so_when_it_finds_problems(ops: DedupStorage) -> None:
    Clip.objects.create(video="clips/nowhere.bin")
    run = dedupstore("verify", "--storage", "ops")
    assert run.status == 1
    assert "broken links: 1" in run.stdout and "PROBLEMS" in run.stdout
    assert "1 problem(s) found" in run.stderr


def test_an_alias_that_is_not_a_dedup_storage_is_a_usage_error() -> None:
    assert dedupstore("stats", "--storage", "nowhere").status == 2
    assert dedupstore("stats", "--storage", "plain").status == 2


def test_usage_errors_exit_2_on_the_command_line() -> None:
    assert manage("dedupstore", "gc", "--grace", "soon").returncode == 2
    assert manage("dedupstore", "gc", "--max-drop", "150%").returncode == 2
    assert manage("dedupstore", "adopt", "--jobs", "0").returncode == 2
    assert manage("dedupstore", "frobnicate").returncode == 2
    unknown = manage("dedupstore", "stats", "--storage", "nowhere")
    assert unknown.returncode == 2 and "not in settings.STORAGES" in unknown.stderr


def test_the_namespace_command_runs_under_both_names() -> None:
    new = dedupstore("namespace", "ops")
    assert new.status == 0 and "namespace: tests-ops" in new.stdout
    old = manage("dedupstore_namespace", "ops")
    assert old.returncode == 0 and "namespace: tests-ops" in old.stdout


def test_the_progress_bar_is_drawn_only_when_enabled() -> None:
    from tqdm import tqdm

    from dedupstore.ops.base import progress

    items = [1, 2, 3]
    assert progress(items, enabled=False, description="names") is items
    bar = progress(items, enabled=True, description="names")
    assert isinstance(bar, tqdm)
    assert list(bar) == items
