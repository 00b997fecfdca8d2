"""Settings for Django's ``tests/runtests.py`` when it runs against ``DedupStorage``.

Django's own ``tests/test_sqlite.py`` plus the storage under test: ``STORAGES["default"]``
is a ``DedupStorage`` over ``FileSystemStorage`` (``file_uploads`` saves through it), and
``TEST_RUNNER`` puts a ``DedupStorage`` in place of each ``FileSystemStorage`` the
``file_storage`` tests build (see ``runner.py``). ``run.py`` picks the reuse mode and the
index through the environment.
"""

from __future__ import annotations

import os

DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3"},
    "other": {"ENGINE": "django.db.backends.sqlite3"},
}
SECRET_KEY = "django_tests_secret_key"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = False

DEDUPSTORE_REUSE = os.environ.get("DEDUP_SUITE_REUSE", "content")
DEDUPSTORE_INDEX = os.environ.get("DEDUP_SUITE_INDEX", "locmem://django-suite")
STORAGES = {
    "default": {
        "BACKEND": "dedupstore.DedupStorage",
        "OPTIONS": {"inner": {"BACKEND": "django.core.files.storage.FileSystemStorage"}},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
TEST_RUNNER = "tests.django_suite.runner.DedupSuiteRunner"

if os.environ.get("DEDUP_SUITE_PLAIN"):
    # The baseline: Django's tests as Django runs them (outcomes still recorded).
    STORAGES["default"] = {"BACKEND": "django.core.files.storage.FileSystemStorage"}
