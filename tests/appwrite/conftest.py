"""Fixtures for the Appwrite tests: a real test server on 127.0.0.1, and storages and
settings pointed at it, shared by every module here."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from appwrite.services.storage import Storage as SDKStorage

from dedupstore import DedupStorage
from dedupstore.backends.appwrite import AppwriteStorage
from dedupstore.testing.appwrite import AppwriteTestServer
from dedupstore.testing.appwrite import appwrite_server as appwrite_server  # the public fixture

#: The bucket of names without a directory, in every storage and setting below.
DEFAULT_BUCKET = "default"


@pytest.fixture
def server() -> Iterator[AppwriteTestServer]:
    """Yield a fresh Appwrite test server for one test."""
    with AppwriteTestServer() as running:
        yield running


@pytest.fixture
def sdk(server: AppwriteTestServer) -> SDKStorage:
    """Return the real SDK's Storage service, pointed at the test server."""
    return SDKStorage(server.client())


@pytest.fixture
def bucket(sdk: SDKStorage) -> str:
    """Create a bucket named ``bkt1`` and return its ID."""
    sdk.create_bucket("bkt1", "Bucket one")
    return "bkt1"


@pytest.fixture
def storage(server: AppwriteTestServer) -> AppwriteStorage:
    """Return an ``AppwriteStorage`` on the test server whose retries do not wait."""
    made = AppwriteStorage(**server.storage_options(bucket_id=DEFAULT_BUCKET))
    made.retry_backoff = 0.001
    return made


@pytest.fixture
def appwrite_inner(server: AppwriteTestServer) -> dict[str, Any]:
    """Return the ``inner`` definition of an ``AppwriteStorage`` on the test server."""
    return {
        "BACKEND": "dedupstore.backends.appwrite.AppwriteStorage",
        "OPTIONS": server.storage_options(bucket_id=DEFAULT_BUCKET),
    }


@pytest.fixture
def dedup_over_appwrite(
    appwrite_inner: dict[str, Any], redis_url: str
) -> Callable[..., DedupStorage]:
    """Return a factory of ``DedupStorage`` over the test server, each in a new namespace."""

    def make(**options: Any) -> DedupStorage:
        return DedupStorage(
            inner=appwrite_inner,
            index=redis_url,
            namespace=f"aw-{uuid.uuid4().hex}",
            **options,
        )

    return make


@pytest.fixture
def old_settings(settings: Any, server: AppwriteTestServer, redis_url: str) -> Any:
    """The settings a django-cloud-storages project has, plus the dedup index."""
    settings.APPWRITE_API_KEY = server.api_key
    settings.APPWRITE_PROJECT_ID = server.project_id
    settings.APPWRITE_BUCKET_ID = DEFAULT_BUCKET
    settings.APPWRITE_API_ENDPOINT = server.endpoint
    settings.DEDUPSTORE_INDEX = redis_url
    settings.DEDUPSTORE_NAMESPACE = f"aw-{uuid.uuid4().hex}"
    return settings


@pytest.fixture
def name_reuse_settings(old_settings: Any) -> Any:
    """A django-cloud-storages project's settings with CREATE_NEW_IF_SAME_CONTENT=False."""
    old_settings.CLOUD_STORAGE_CREATE_NEW_IF_SAME_CONTENT = False
    return old_settings
