"""Django settings for the test suite."""

from __future__ import annotations

import tempfile

from tests.services import ops_redis_url, postgres_database, settings_redis_url

SECRET_KEY = "dedupstore-tests-not-a-secret"
DEBUG = False
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "dedupstore",
    "tests.testapp",
    # Only the models marked with @cleanup.select (tests.testapp's live-set models).
    "django_cleanup.apps.CleanupSelectedConfig",
]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
POSTGRES = postgres_database()
if POSTGRES is not None:
    DATABASES["postgres"] = POSTGRES
ROOT_URLCONF = "tests.testapp.urls"
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
STATIC_URL = "/static/"
MEDIA_ROOT = tempfile.mkdtemp(prefix="dedupstore-tests-media-")
#: The inner location of STORAGES["ops"]: no other storage writes there (gc lists it).
OPS_MEDIA_ROOT = tempfile.mkdtemp(prefix="dedupstore-tests-ops-")
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "plain": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "dedup": {
        "BACKEND": "dedupstore.DedupStorage",
        # The suite points "index" at its private redis-server (see tests/conftest.py).
        "OPTIONS": {"inner": "plain", "index": "locmem://settings"},
    },
    # The storage of tests.testapp's live-set models (a fixed namespace: fields keep it).
    "live": {
        "BACKEND": "dedupstore.DedupStorage",
        "OPTIONS": {"inner": "plain", "index": settings_redis_url(), "namespace": "tests-live"},
    },
    # The storage of tests.testapp's Reel and Clip (manage.py dedupstore tests): its own
    # location and its own redis-server, which those tests restart.
    "ops": {
        "BACKEND": "dedupstore.DedupStorage",
        "OPTIONS": {
            "inner": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": OPS_MEDIA_ROOT},
            },
            "index": ops_redis_url(),
            "namespace": "tests-ops",
        },
    },
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
