"""The old packages' class names live in one module and import from every path users have.

django-cloud-storages' ``AppWriteStorage`` and django-ipfs-storage's
``InterPlanetaryFileSystemStorage`` are defined in ``dedupstore.backends.compat``; the
import paths of earlier dedupstore versions, ``STORAGES`` entries, migrations and pickles
keep resolving to those classes.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
from django.utils.module_loading import import_string

from dedupstore.backends import compat
from dedupstore.backends.appwrite import DedupAppwriteStorage
from dedupstore.storage import DedupStorage

REPO = Path(__file__).resolve().parent.parent

#: Every dotted path a user's settings, code or migrations may hold today.
OLD_PATHS = {
    "AppWriteStorage": [
        "dedupstore.backends.appwrite.AppWriteStorage",
        "dedupstore.backends.compat.AppWriteStorage",
    ],
    "InterPlanetaryFileSystemStorage": [
        "dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage",
        "dedupstore.backends.ipfs.dropin.InterPlanetaryFileSystemStorage",
        "dedupstore.backends.compat.InterPlanetaryFileSystemStorage",
    ],
}


@pytest.mark.parametrize(
    ("name", "path"), [(name, path) for name, paths in OLD_PATHS.items() for path in paths]
)
def test_every_import_path_of_an_old_class_name_gives_the_compat_class(
    name: str, path: str
) -> None:
    assert import_string(path) is getattr(compat, name)


def test_the_compat_module_defines_every_old_class_name() -> None:
    assert sorted(compat.__all__) == sorted(OLD_PATHS)
    for name in OLD_PATHS:
        cls = getattr(compat, name)
        assert cls.__module__ == "dedupstore.backends.compat"
        assert issubclass(cls, DedupStorage)


def test_the_appwrite_old_name_is_the_dedup_appwrite_storage_reading_old_settings() -> None:
    assert issubclass(compat.AppWriteStorage, DedupAppwriteStorage)


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("AppWriteStorage", "dedupstore.backends.appwrite"),
        ("InterPlanetaryFileSystemStorage", "dedupstore.backends.ipfs"),
        ("InterPlanetaryFileSystemStorage", "dedupstore.backends.ipfs.dropin"),
    ],
)
def test_pickles_naming_an_old_module_load_the_compat_class(name: str, module: str) -> None:
    # A pickle's GLOBAL opcode, as an earlier version wrote the class reference.
    reference = f"c{module}\n{name}\n.".encode()
    assert pickle.loads(reference) is getattr(compat, name)


@pytest.mark.parametrize(
    "first",
    [
        "dedupstore.backends.compat",
        "dedupstore.backends.appwrite",
        "dedupstore.backends.appwrite.dedup",
        "dedupstore.backends.ipfs",
        "dedupstore.backends.ipfs.dropin",
    ],
)
def test_the_old_names_import_whichever_module_is_imported_first(first: str) -> None:
    script = (
        f"import importlib; importlib.import_module({first!r})\n"
        "from django.utils.module_loading import import_string\n"
        f"paths = {[path for paths in OLD_PATHS.values() for path in paths]!r}\n"
        "classes = {import_string(path).__qualname__: import_string(path) for path in paths}\n"
        "print(sorted(classes))\n"
    )
    environment = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        cwd=REPO,
        env=environment,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(sorted(OLD_PATHS))


def test_the_old_class_names_deconstruct_to_the_paths_existing_migrations_hold() -> None:
    appwrite = compat.AppWriteStorage(index="locmem://old-names")
    ipfs = compat.InterPlanetaryFileSystemStorage(index="locmem://old-names")
    assert appwrite.deconstruct()[0] == "dedupstore.backends.appwrite.AppWriteStorage"
    assert ipfs.deconstruct()[0] == "dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage"
