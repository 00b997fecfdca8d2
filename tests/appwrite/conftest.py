"""Fixtures for the Appwrite tests: a real test server on 127.0.0.1 and SDK clients for it."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from appwrite.services.storage import Storage as SDKStorage

from dedupstore.testing.appwrite import AppwriteTestServer
from dedupstore.testing.appwrite import appwrite_server as appwrite_server  # the public fixture


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
def storage_options(server: AppwriteTestServer) -> dict[str, Any]:
    """Return AppwriteStorage OPTIONS for the test server, default bucket ``default``."""
    return server.storage_options(bucket_id="default")
