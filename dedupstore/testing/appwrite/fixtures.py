"""The ``appwrite_server`` pytest fixture (``pytest_plugins = ["dedupstore.testing.appwrite"]``)."""

from __future__ import annotations

from collections.abc import Iterator

from .server import AppwriteTestServer

try:
    import pytest
except ImportError:  # pragma: no cover - pytest is only needed for the fixture
    pytest = None  # type: ignore[assignment]

if pytest is not None:

    @pytest.fixture
    def appwrite_server() -> Iterator[AppwriteTestServer]:
        """Yield a fresh Appwrite test server, stopped after the test."""
        with AppwriteTestServer() as server:
            yield server

else:  # pragma: no cover

    def appwrite_server() -> Iterator[AppwriteTestServer]:
        raise RuntimeError("the appwrite_server fixture needs pytest")
