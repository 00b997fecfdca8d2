"""The test runner ``run.py`` gives Django's ``tests/runtests.py``.

It changes the storage under test and nothing else: after Django's test modules are
imported, each ``FileSystemStorage`` (or subclass) that the ``file_storage`` tests build
becomes a ``DedupStorage`` over that very storage, built with the same arguments. It also
writes every test's outcome to the JSON file named by ``DEDUP_SUITE_RESULTS``.
"""

from __future__ import annotations

import functools
import inspect
import json
import os
import sys
import unittest
from typing import Any

from django.core.files.storage import FileSystemStorage, Storage
from django.db.models import FileField
from django.test.runner import DiscoverRunner

from dedupstore import DedupStorage

#: Django's test modules whose storages are replaced.
SUBSTITUTED_MODULES = ("file_storage.tests", "file_storage.test_generate_filename")


def _overwrites(inner_class: type[Storage], options: dict[str, Any]) -> bool:
    """Tell whether the inner storage, built with ``options``, overwrites taken names."""
    flags = getattr(inner_class, "OS_OPEN_FLAGS", os.O_EXCL)
    return bool(options.get("allow_overwrite")) or not flags & os.O_EXCL


@functools.cache
def dedup_over(inner_class: type[Storage]) -> type[DedupStorage]:
    """Return a ``DedupStorage`` that takes ``inner_class``'s arguments and wraps one.

    A storage built to overwrite (``allow_overwrite=True``, or ``OS_OPEN_FLAGS`` without
    ``O_EXCL``) is wrapped by a ``DedupStorage(overwrite=True)``: the wrapper's own
    equivalent, since the wrapper, not the inner storage, decides names.
    """
    # The class's own __init__: @deconstructible gives it a __new__(*args, **kwargs).
    signature = inspect.signature(inner_class.__init__)
    backend = f"{inner_class.__module__}.{inner_class.__qualname__}"

    def __init__(self: DedupStorage, *args: Any, **kwargs: Any) -> None:
        options = dict(signature.bind(None, *args, **kwargs).arguments)
        options.pop(next(iter(signature.parameters)))  # self
        DedupStorage.__init__(
            self,
            inner={"BACKEND": backend, "OPTIONS": options},
            overwrite=_overwrites(inner_class, options),
        )

    name = f"DedupOver{inner_class.__name__}"
    wrapper = type(name, (DedupStorage,), {"__init__": __init__, "__module__": __name__})
    globals()[name] = wrapper  # importable, as deconstruct() requires
    return wrapper


def _is_filesystem_storage(value: object) -> bool:
    return isinstance(value, type) and issubclass(value, FileSystemStorage)


def _wrap_instance(storage: FileSystemStorage) -> DedupStorage:
    """Return a ``DedupStorage`` over a storage built as ``storage`` was."""
    _path, args, kwargs = storage.deconstruct()
    return dedup_over(type(storage))(*args, **kwargs)  # type: ignore[arg-type]


def substitute_storages() -> None:
    """Put a ``DedupStorage`` in place of every storage the test modules build."""
    for module_name in SUBSTITUTED_MODULES:
        # Django's test modules, which exist only at run time: typed loosely.
        module: Any = sys.modules.get(module_name)
        if module is None:
            continue
        module.FileSystemStorage = dedup_over(FileSystemStorage)  # type: ignore[arg-type]
        for value in list(vars(module).values()):
            if isinstance(value, type) and issubclass(value, unittest.TestCase):
                storage_class = value.__dict__.get("storage_class")
                if _is_filesystem_storage(storage_class):
                    setattr(value, "storage_class", dedup_over(storage_class))  # noqa: B010
    models: Any = sys.modules.get("file_storage.models")
    if models is None:
        return
    replacements: dict[int, DedupStorage] = {}
    for field in models.Storage._meta.get_fields():
        if isinstance(field, FileField) and isinstance(field.storage, FileSystemStorage):
            original = field.storage
            if id(original) not in replacements:
                replacements[id(original)] = _wrap_instance(original)
            field.storage = replacements[id(original)]
    temp_storage = replacements.get(id(models.temp_storage)) or _wrap_instance(models.temp_storage)
    models.temp_storage = temp_storage  # what callable_storage() returns
    tests: Any = sys.modules["file_storage.tests"]
    tests.temp_storage = temp_storage


def empty_index() -> None:
    """Empty the index, as each test empties (or makes anew) the storage's directories.

    Django's tests start from empty storages: most make a fresh directory, and
    ``FileFieldStorageTests`` removes its shared one behind the storage's back. The
    storage under test is the inner storage and the index together, so its index is
    emptied too: a record of a removed file would otherwise be reused.
    """
    url = os.environ.get("DEDUP_SUITE_INDEX", "")
    if url.startswith("locmem://"):
        from dedupstore.index import locmem

        store = locmem._stores.get(url.removeprefix("locmem://"))
        if store is not None:
            with store.lock:
                for table in (store.records, store.content, store.claims, store.tombstones):
                    table.clear()
                store.untracked_deletes.clear()
    elif url.startswith("redis://"):
        import redis

        client = redis.Redis.from_url(url)
        try:
            client.flushdb()
        finally:
            client.close()


class RecordingResult(unittest.TextTestResult):
    """Record each test's outcome; a test with a failing subtest has failed."""

    outcomes: dict[str, str]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.outcomes = {}

    def _record(self, test: unittest.TestCase, outcome: str) -> None:
        test_id = test.id()
        if isinstance(test, unittest.case._SubTest):  # type: ignore[attr-defined]
            test_id = test.test_case.id()
        if self.outcomes.get(test_id) in ("fail", "error") and outcome == "pass":
            return
        self.outcomes[test_id] = outcome

    def startTest(self, test: unittest.TestCase) -> None:
        if not os.environ.get("DEDUP_SUITE_PLAIN"):
            empty_index()
        super().startTest(test)

    def addSuccess(self, test: unittest.TestCase) -> None:
        super().addSuccess(test)
        self._record(test, "pass")

    def addFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addFailure(test, err)
        self._record(test, "fail")

    def addError(self, test: unittest.TestCase, err: Any) -> None:
        super().addError(test, err)
        self._record(test, "error")

    def addSkip(self, test: unittest.TestCase, reason: str) -> None:
        super().addSkip(test, reason)
        self._record(test, "skip")

    def addExpectedFailure(self, test: unittest.TestCase, err: Any) -> None:
        super().addExpectedFailure(test, err)
        self._record(test, "pass")

    def addUnexpectedSuccess(self, test: unittest.TestCase) -> None:
        super().addUnexpectedSuccess(test)
        self._record(test, "fail")

    def addSubTest(self, test: unittest.TestCase, subtest: Any, err: Any) -> None:
        super().addSubTest(test, subtest, err)
        if err is not None:
            failed = issubclass(err[0], test.failureException)
            self._record(subtest, "fail" if failed else "error")

    def stopTestRun(self) -> None:
        super().stopTestRun()
        path = os.environ.get("DEDUP_SUITE_RESULTS")
        if path:
            with open(path, "w", encoding="utf-8") as handle:
                json.dump(self.outcomes, handle, indent=1, sort_keys=True)


class DedupSuiteRunner(DiscoverRunner):
    """Django's runner, with the storages substituted and every outcome recorded."""

    def build_suite(self, *args: Any, **kwargs: Any) -> unittest.TestSuite:
        suite = super().build_suite(*args, **kwargs)
        if not os.environ.get("DEDUP_SUITE_PLAIN"):
            substitute_storages()
        return suite

    def get_resultclass(self) -> type[unittest.TextTestResult]:
        return RecordingResult
