"""The contract suite over FileSystemStorage and InMemoryStorage, with a real Redis index
(one server, and a real Redis Cluster) and the locmem twin."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from dedupstore import DedupStorage
from dedupstore.testing.redis_cluster import RedisCluster
from tests.contract import DedupContract


def _dedup(inner: dict[str, Any], index: str) -> DedupStorage:
    return DedupStorage(inner=inner, index=index, namespace=f"test-{uuid.uuid4().hex}")


class TestOverFileSystemStorage(DedupContract):
    @pytest.fixture
    def storage(self, redis_url: str, tmp_path: Path) -> DedupStorage:
        inner = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        }
        return _dedup(inner, redis_url)


class TestOverInMemoryStorage(DedupContract):
    @pytest.fixture
    def storage(self, redis_url: str) -> DedupStorage:
        return _dedup({"BACKEND": "django.core.files.storage.InMemoryStorage"}, redis_url)


@pytest.mark.slow
class TestOverFileSystemStorageWithAClusterIndex(DedupContract):
    @pytest.fixture
    def storage(self, redis_cluster: RedisCluster, tmp_path: Path) -> DedupStorage:
        inner = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        }
        return _dedup(inner, redis_cluster.url)


class TestOverFileSystemWithLocmemIndex(DedupContract):
    @pytest.fixture
    def storage(self, tmp_path: Path) -> DedupStorage:
        inner = {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(tmp_path)},
        }
        return _dedup(inner, f"locmem://{uuid.uuid4().hex}")
