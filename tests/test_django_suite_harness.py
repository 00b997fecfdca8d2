"""The harness that runs Django's storage tests fails on anything but the expected outcomes."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

import django
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage

from dedupstore import DedupStorage
from tests.django_suite import run
from tests.django_suite.runner import dedup_over

LISTED = run.Difference(
    tests=("app.tests.*.test_listed",), modes=("content",), kind="difference", reason="why"
)


def test_an_unlisted_failure_is_a_problem() -> None:
    problems = run.compare("content", {"app.tests.A.test_other": "fail"}, [LISTED])
    assert any("test_other fails, not an expected difference" in p for p in problems)


def test_a_listed_failure_in_a_listed_mode_is_no_problem() -> None:
    outcomes = {"app.tests.A.test_listed": "error", "app.tests.B.test_listed": "fail"}
    assert run.compare("content", outcomes, [LISTED]) == []


def test_a_listed_test_that_passes_is_a_problem() -> None:
    problems = run.compare("content", {"app.tests.A.test_listed": "pass"}, [LISTED])
    assert any("passes: take it out" in p for p in problems)


def test_a_listed_test_failing_in_an_unlisted_mode_is_a_problem() -> None:
    problems = run.compare("never", {"app.tests.A.test_listed": "fail"}, [LISTED])
    assert any("not an expected difference" in p for p in problems)


def test_a_listed_pattern_that_matches_no_test_is_a_problem() -> None:
    problems = run.compare("content", {"app.tests.A.test_other": "pass"}, [LISTED])
    assert any("no test matches" in p for p in problems)


def test_every_entry_of_the_reviewed_list_has_tests_a_kind_and_a_reason() -> None:
    differences = run.load_expected()
    assert differences
    for difference in differences:
        assert difference.tests and difference.kind in run.KINDS
        assert len(difference.reason) > 40, difference.tests


@pytest.mark.skipif(django.VERSION < (5, 1), reason="allow_overwrite is Django 5.1+")
def test_the_substitute_wraps_the_storage_the_test_builds(tmp_path: Path, settings: Any) -> None:
    settings.DEDUPSTORE_INDEX = f"locmem://{uuid.uuid4().hex}"
    wrapper_class = dedup_over(FileSystemStorage)
    storage = wrapper_class(str(tmp_path), base_url="/m/", allow_overwrite=True)
    assert isinstance(storage, DedupStorage)
    assert storage.overwrite is True
    assert isinstance(storage.inner, FileSystemStorage)
    assert storage.inner.location == os.path.abspath(tmp_path)
    assert storage.inner.base_url == "/m/"
    assert storage.save("a.txt", ContentFile(b"a")) == "a.txt"
