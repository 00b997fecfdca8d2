"""Settings of the dedupstore demo project (run it with `make demo`)."""

from __future__ import annotations

import os
import tempfile

SECRET_KEY = "demo-only-not-a-secret"
DEBUG = True
USE_TZ = True
INSTALLED_APPS = ["dedupstore", "uploads"]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
MEDIA_ROOT = os.environ.get("DEMO_MEDIA_ROOT") or tempfile.mkdtemp(prefix="dedupstore-demo-")
MEDIA_URL = "/media/"
ROOT_URLCONF = "demo_project.urls"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]

# run_demo.py fills in the index URL of the private redis-server it starts.
STORAGES = {
    "blobs": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "default": {
        "BACKEND": "dedupstore.DedupStorage",
        "OPTIONS": {"inner": "blobs", "index": "locmem://demo"},
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
