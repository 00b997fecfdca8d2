"""System checks that warn about storage settings of the old packages that do nothing now."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap
from typing import Any

import django
import pytest
from django.conf import settings
from django.core import checks
from django.core.management import call_command
from django.test import override_settings

IPFS = "dedupstore.backends.ipfs.InterPlanetaryFileSystemStorage"
APPWRITE = "dedupstore.backends.appwrite.AppWriteStorage"


#: Django 4.2 still uses DEFAULT_FILE_STORAGE / STATICFILES_STORAGE (and imports them when
#: they change): they are "ignored" only from Django 5.1 on, where W010 applies.
needs_django_51 = pytest.mark.skipif(
    django.VERSION < (5, 1), reason="the old storage settings still work before Django 5.1"
)


def warnings_with(check_id: str) -> list[checks.CheckMessage]:
    return [message for message in checks.run_checks() if message.id == check_id]


def storages_with(**entries: Any) -> dict[str, Any]:
    return {**settings.STORAGES, **entries}


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ipfs_storage.InterPlanetaryFileSystemStorage", IPFS),
        ("cloud_storages.backends.appwrite.AppWriteStorage", APPWRITE),
        (IPFS, IPFS),  # the new class under the old setting is ignored just the same
    ],
)
@needs_django_51
def test_default_file_storage_is_reported_as_ignored_with_the_storages_entry_to_write(
    old: str, new: str
) -> None:
    with override_settings(DEFAULT_FILE_STORAGE=old):
        [warning] = warnings_with("dedupstore.W010")
    assert isinstance(warning, checks.Warning)
    assert "ignored since Django 5.1" in warning.msg and repr(old) in warning.msg
    assert warning.hint == f"write instead: STORAGES['default'] = {{'BACKEND': '{new}'}}"


@needs_django_51
def test_default_file_storage_already_mirrored_in_storages_is_reported_for_removal() -> None:
    with override_settings(
        DEFAULT_FILE_STORAGE="ipfs_storage.InterPlanetaryFileSystemStorage",
        STORAGES=storages_with(default={"BACKEND": IPFS}),
    ):
        [warning] = warnings_with("dedupstore.W010")
    assert warning.hint == f"remove DEFAULT_FILE_STORAGE: STORAGES['default'] already names {IPFS}"


@needs_django_51
def test_staticfiles_storage_is_reported_as_ignored_too() -> None:
    with override_settings(STATICFILES_STORAGE="myproject.storage.Static"):
        [warning] = warnings_with("dedupstore.W010")
    assert warning.hint == (
        "write instead: STORAGES['staticfiles'] = {'BACKEND': 'myproject.storage.Static'}"
    )


@pytest.mark.parametrize(
    ("old", "new"),
    [
        ("ipfs_storage.InterPlanetaryFileSystemStorage", IPFS),
        ("ipfs_storage.storage.InterPlanetaryFileSystemStorage", IPFS),
        ("cloud_storages.backends.appwrite.AppWriteStorage", APPWRITE),
    ],
)
def test_a_storages_entry_naming_an_old_package_gets_the_replacement_entry(
    old: str, new: str
) -> None:
    with override_settings(STORAGES=storages_with(media={"BACKEND": old})):
        [warning] = warnings_with("dedupstore.W011")
    assert old in warning.msg and warning.obj == "STORAGES['media']"
    assert warning.hint.endswith(f"write: STORAGES['media'] = {{'BACKEND': '{new}'}}")


def test_the_replacement_entry_keeps_the_options_with_secrets_masked() -> None:
    old = {
        "BACKEND": "cloud_storages.backends.appwrite.AppWriteStorage",
        "OPTIONS": {"bucket_id": "media", "api_key": "s3cr3t"},
    }
    with override_settings(STORAGES=storages_with(default=old)):
        [warning] = warnings_with("dedupstore.W011")
    assert "s3cr3t" not in warning.hint
    expected = {"BACKEND": APPWRITE, "OPTIONS": {"bucket_id": "media", "api_key": "***"}}
    assert warning.hint.endswith(f"write: STORAGES['default'] = {expected!r}")


def test_current_settings_and_other_packages_raise_no_warning() -> None:
    unrelated = {
        "dropbox": {"BACKEND": "cloud_storages.backends.dropbox.DropBoxStorage"},
        "ipfs": {"BACKEND": IPFS},
    }
    with override_settings(STORAGES=storages_with(**unrelated)):
        assert warnings_with("dedupstore.W010") + warnings_with("dedupstore.W011") == []


@needs_django_51
def test_manage_py_check_prints_the_entry_to_write() -> None:
    stderr = io.StringIO()
    with override_settings(
        DEFAULT_FILE_STORAGE="ipfs_storage.InterPlanetaryFileSystemStorage",
        STORAGES=storages_with(old={"BACKEND": "ipfs_storage.InterPlanetaryFileSystemStorage"}),
    ):
        call_command("check", stderr=stderr, stdout=io.StringIO())
    output = stderr.getvalue()
    assert "dedupstore.W010" in output and "dedupstore.W011" in output
    assert f"STORAGES['default'] = {{'BACKEND': '{IPFS}'}}" in output
    assert f"STORAGES['old'] = {{'BACKEND': '{IPFS}'}}" in output


@needs_django_51
def test_the_check_runs_wherever_dedupstore_is_imported_without_the_app_installed() -> None:
    # A project still on the old packages' settings needs no "dedupstore" app: importing
    # the drop-in class (a model field's storage) is enough to get the warning.
    script = textwrap.dedent(
        """
        import django
        from django.conf import settings

        settings.configure(
            INSTALLED_APPS=[],
            DEFAULT_FILE_STORAGE="ipfs_storage.InterPlanetaryFileSystemStorage",
        )
        django.setup()
        import dedupstore.backends.ipfs  # noqa: F401
        from django.core import checks

        print(sorted(message.id for message in checks.run_checks()))
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": ""},
        check=True,
    )
    assert "'dedupstore.W010'" in result.stdout, result.stderr
