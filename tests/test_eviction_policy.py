"""A Redis index refuses a server that may evict its keys: at first use and in a system check."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.test import override_settings

from dedupstore import DedupStorage
from dedupstore.checks import check_index_eviction_policy
from dedupstore.testing.redis import find_free_port

EVICTING_POLICIES = (
    "allkeys-lru",
    "allkeys-lfu",
    "allkeys-random",
    "volatile-lru",
    "volatile-lfu",
    "volatile-random",
    "volatile-ttl",
)


@contextlib.contextmanager
def redis_server_with(*arguments: str) -> Iterator[str]:
    """Run a private redis-server on loopback with extra ``arguments``; yield its URL."""
    with tempfile.TemporaryDirectory(prefix="dedupstore-evict-") as workdir:
        port = find_free_port()
        process = subprocess.Popen(
            [
                "redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(port),
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                workdir,
                "--protected-mode",
                "yes",
                "--loglevel",
                "warning",
                *arguments,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        url = f"redis://127.0.0.1:{port}/0"
        try:
            client = redis.Redis.from_url(url, socket_timeout=1)
            deadline = time.monotonic() + 30
            while True:
                assert process.poll() is None, "redis-server exited"
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.02)
            client.close()
            yield url
        finally:
            if process.poll() is None:
                os.kill(process.pid, signal.SIGTERM)
            process.wait(timeout=30)


def _storage(url: str, tmp_path: Path) -> DedupStorage:
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(tmp_path / "media")},
    }
    return DedupStorage(inner=inner, index=url, namespace="evict")


def _keys(url: str) -> int:
    client = redis.Redis.from_url(url)
    try:
        return int(client.dbsize())
    finally:
        client.close()


@pytest.mark.parametrize("policy", EVICTING_POLICIES)
def test_an_index_on_a_server_that_evicts_keys_refuses_to_run_at_first_use(
    policy: str, tmp_path: Path
) -> None:
    with redis_server_with("--maxmemory-policy", policy) as url:
        storage = _storage(url, tmp_path)
        with pytest.raises(ImproperlyConfigured, match=rf"'{policy}'.*noeviction"):
            storage.save("a.txt", ContentFile(b"evictable"))
        with pytest.raises(ImproperlyConfigured, match="noeviction"):
            storage.references("a.txt")
        assert _keys(url) == 0
        assert not (tmp_path / "media" / "a.txt").exists()


def test_an_index_on_a_server_that_never_evicts_runs(tmp_path: Path) -> None:
    with redis_server_with("--maxmemory-policy", "noeviction") as url:
        storage = _storage(url, tmp_path)
        name = storage.save("a.txt", ContentFile(b"kept"))
        assert storage.references(name) == 1


@pytest.mark.parametrize(("policy", "refused"), [("volatile-lru", True), ("noeviction", False)])
def test_the_policy_is_read_from_info_where_config_is_disabled(
    policy: str, refused: bool, tmp_path: Path
) -> None:
    with redis_server_with("--maxmemory-policy", policy, "--rename-command", "CONFIG", "") as url:
        client = redis.Redis.from_url(url)
        with pytest.raises(redis.ResponseError):
            client.config_get("maxmemory-policy")
        client.close()
        storage = _storage(url, tmp_path)
        if refused:
            with pytest.raises(ImproperlyConfigured, match="'volatile-lru'"):
                storage.save("a.txt", ContentFile(b"x"))
        else:
            assert storage.references(storage.save("a.txt", ContentFile(b"x"))) == 1


def test_a_policy_changed_to_evicting_is_refused_by_a_new_storage(tmp_path: Path) -> None:
    with redis_server_with("--maxmemory-policy", "noeviction") as url:
        _storage(url, tmp_path).save("a.txt", ContentFile(b"x"))
        client = redis.Redis.from_url(url)
        client.config_set("maxmemory-policy", "allkeys-lru")
        client.close()
        with pytest.raises(ImproperlyConfigured, match="'allkeys-lru'"):
            _storage(url, tmp_path).references("a.txt")


@pytest.mark.parametrize(("policy", "errors"), [("volatile-lru", 1), ("noeviction", 0)])
def test_the_system_check_reports_an_evicting_index(
    policy: str, errors: int, tmp_path: Path
) -> None:
    with redis_server_with("--maxmemory-policy", policy) as url:
        storages = {
            "blobs": {
                "BACKEND": "django.core.files.storage.FileSystemStorage",
                "OPTIONS": {"location": str(tmp_path)},
            },
            "default": {
                "BACKEND": "dedupstore.DedupStorage",
                "OPTIONS": {"inner": "blobs", "index": url, "namespace": "n"},
            },
        }
        with override_settings(STORAGES=storages):
            messages = check_index_eviction_policy()
    assert [message.id for message in messages] == ["dedupstore.E101"] * errors
    if errors:
        assert policy in messages[0].msg and "noeviction" in messages[0].hint


def test_the_system_check_leaves_an_unreachable_index_to_first_use(tmp_path: Path) -> None:
    storages = {
        "default": {
            "BACKEND": "dedupstore.DedupStorage",
            "OPTIONS": {
                "inner": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
                "index": f"redis://127.0.0.1:{find_free_port()}/0",
                "namespace": "n",
            },
        },
    }
    with override_settings(STORAGES=storages):
        assert check_index_eviction_policy() == []
