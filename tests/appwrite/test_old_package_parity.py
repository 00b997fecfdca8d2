"""``AppWriteStorage`` names saves as django-cloud-storages' ``AppWriteStorage`` does.

The old package runs in a throwaway virtualenv of its own (``.venv-dcs`` at the top of the
checkout, ignored by git, the one ``make bench`` uses), against the same Appwrite test
server, through a ``FileField`` as a site would use it. The test is skipped, saying why,
only when that virtualenv cannot be built (no package index reachable).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from django.test.utils import isolate_apps

from dedupstore.backends.appwrite import AppWriteStorage
from dedupstore.testing.appwrite import AppwriteTestServer

ROOT = Path(__file__).resolve().parents[2]
OLD_VENV = ROOT / ".venv-dcs"
OLD_REQUIREMENTS = ["django==5.2.*", "appwrite==27.*", "django-cloud-storages"]
INSTALL_DEADLINE = 900  # seconds; pip on a busy machine

# Runs inside the old package's virtualenv: the same saves, through a FileField.
OLD_SIDE = r"""
import base64, json, sys
import django
from django.conf import settings

job = json.load(sys.stdin)
settings.configure(
    INSTALLED_APPS=[], USE_TZ=True, **job["settings"],
    CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT=False,
)
django.setup()
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import models
from cloud_storages.backends.appwrite import AppWriteStorage

storage = AppWriteStorage()

class Logo(models.Model):
    image = models.FileField(upload_to="uploads/", storage=storage)

    class Meta:
        app_label = "parity"

names = []
for step in job["steps"]:
    content = base64.b64decode(step["content"])
    if step["kind"] == "field":
        row = Logo()
        row.image.save(step["name"], SimpleUploadedFile(step["name"], content), save=False)
        names.append(row.image.name)
    else:
        names.append(storage.save(step["name"], ContentFile(content)))
print(json.dumps(names))
"""

PNG = b"\x89PNG\r\n\x1a\n" + b"logo pixels " * 40
REPORT = b"quarterly report\n" * 20
STEPS = [
    ("field", "logo.png", PNG),
    ("field", "logo.png", PNG),
    ("field", "report.txt", REPORT),
    ("save", "assets/statics/media/my_file.txt", b"my file"),
    ("field", "logo.png", PNG),
    ("save", "assets/statics/media/my_file.txt", b"my file"),
    ("field", "report.txt", REPORT),
]


def _old_python() -> Path:
    python = OLD_VENV / "bin" / "python"
    probe = [str(python), "-c", "import cloud_storages.backends.appwrite"]
    if python.exists() and subprocess.run(probe, capture_output=True).returncode == 0:
        return python
    try:
        if not python.exists():
            subprocess.run(
                [sys.executable, "-m", "venv", str(OLD_VENV)],
                check=True,
                capture_output=True,
                timeout=INSTALL_DEADLINE,
            )
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *OLD_REQUIREMENTS],
            check=True,
            capture_output=True,
            timeout=INSTALL_DEADLINE,
        )
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        pytest.skip(
            f"django-cloud-storages could not be installed into {OLD_VENV.name}: {exc} "
            f"{detail.decode(errors='replace')[-300:]}"
        )
    if subprocess.run(probe, capture_output=True).returncode != 0:
        pytest.skip(f"django-cloud-storages did not import in {OLD_VENV.name}")
    return python


@pytest.fixture(scope="module")
def old_python() -> Path:
    return _old_python()


def run_old(python: Path, server: AppwriteTestServer, steps: list[tuple[str, str, bytes]]) -> Any:
    job = {
        "settings": {
            "APPWRITE_API_KEY": server.api_key,
            "APPWRITE_PROJECT_ID": server.project_id,
            "APPWRITE_BUCKET_ID": "default",
            "APPWRITE_API_ENDPOINT": server.endpoint,
        },
        "steps": [
            {"kind": kind, "name": name, "content": base64.b64encode(data).decode()}
            for kind, name, data in steps
        ],
    }
    done = subprocess.run(
        [str(python), "-c", OLD_SIDE],
        input=json.dumps(job),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def run_new(steps: list[tuple[str, str, bytes]]) -> list[str]:
    storage = AppWriteStorage()
    with isolate_apps("tests.testapp"):

        class Logo(models.Model):
            image = models.FileField(upload_to="uploads/", storage=storage)

            class Meta:
                app_label = "testapp"

    names = []
    for kind, name, data in steps:
        if kind == "field":
            row = Logo()
            row.image.save(name, SimpleUploadedFile(name, data), save=False)
            names.append(row.image.name)
        else:
            names.append(storage.save(name, ContentFile(data)))
    return names


def test_the_same_saves_return_the_same_names_as_the_old_package(
    old_python: Path, name_reuse_settings: Any, server: AppwriteTestServer
) -> None:
    old_names = run_old(old_python, server, STEPS)
    old_uploads = sum(1 for r in server.requests if r.method == "POST" and "/files" in r.path)
    server.reset()
    new_names = run_new(STEPS)
    new_uploads = sum(1 for r in server.requests if r.method == "POST" and "/files" in r.path)
    assert new_names == old_names
    assert new_names[:4] == [
        "uploads/logo.png",
        "uploads/logo.png",
        "uploads/report.txt",
        "media/my_file.txt",
    ]
    # Both upload each distinct file once.
    assert new_uploads == old_uploads == 3


def test_after_migrating_duplicates_of_the_old_packages_files_return_their_names(
    old_python: Path, name_reuse_settings: Any, server: AppwriteTestServer
) -> None:
    old_names = run_old(old_python, server, STEPS[:4])
    server.clear_log()
    # The index has never seen these files: they are matched in the bucket.
    assert run_new(STEPS[:4]) == old_names
    assert not [r for r in server.requests if r.method == "POST" and "/files" in r.path]


def test_other_content_under_a_taken_name_gets_a_new_name_in_both(
    old_python: Path, name_reuse_settings: Any, server: AppwriteTestServer
) -> None:
    steps = [("field", "logo.png", PNG), ("field", "logo.png", b"another logo")]
    old_names = run_old(old_python, server, steps)
    server.reset()
    new_names = run_new(steps)
    # The alternative names differ by design (Django's random suffix here, "-1" there).
    assert old_names[0] == new_names[0] == "uploads/logo.png"
    assert old_names[1] == "uploads/logo-1.png"
    assert new_names[1].startswith("uploads/logo_") and new_names[1].endswith(".png")
