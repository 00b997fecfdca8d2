"""Index keys are unambiguous whatever the namespace and the name contain.

Against a real Redis and the locmem twin: a namespace nested in another (``media`` and
``media:o:avatars``) never reaches the other's records, and a namespace that cannot be
confused with another keeps the key layout existing deployments have.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import redis
from django.core.files.base import ContentFile
from redis.crc import key_slot

from dedupstore import DedupStorage
from dedupstore.index.redis import key_prefix, tagged_prefix
from dedupstore.testing.index_layouts import record_fields
from tests.contract import read_all


def _storage(index_url: str, location: Path, namespace: str) -> DedupStorage:
    inner = {
        "BACKEND": "django.core.files.storage.FileSystemStorage",
        "OPTIONS": {"location": str(location)},
    }
    return DedupStorage(inner=inner, index=index_url, namespace=namespace)


@pytest.mark.parametrize(
    ("outer_namespace", "nested_namespace", "alias"),
    [
        ("media", "media:o:avatars", "avatars:o:pic.png"),
        ("media", "media:o", "o:pic.png"),
        ("m", "m:t:x", "x:o:pic.png"),
    ],
)
def test_a_nested_namespace_never_reaches_another_namespaces_record(
    index_url: str, tmp_path: Path, outer_namespace: str, nested_namespace: str, alias: str
) -> None:
    nested = _storage(index_url, tmp_path / "nested", nested_namespace)
    outer = _storage(index_url, tmp_path / "outer", outer_namespace)
    name = nested.save("pic.png", ContentFile(b"shared"))
    assert nested.save("copy.png", ContentFile(b"shared")) == name
    assert outer.references(alias) == 0
    outer.inner.save(alias, ContentFile(b"outer's own"))
    outer.delete(alias)
    outer.delete(alias)
    assert nested.references(name) == 2 and read_all(nested, name) == b"shared"


def test_a_namespace_that_cannot_be_confused_keeps_its_prefix_inside_the_hash_tag(
    redis_url: str, tmp_path: Path
) -> None:
    storage = _storage(redis_url, tmp_path, "dedupstore:0123456789abcdef")
    storage.save("a.txt", ContentFile(b"kept"))
    client = redis.Redis.from_url(redis_url)
    try:
        assert record_fields(storage.index, "a.txt")["refs"] == "1"  # type: ignore[arg-type]
        assert client.get("{dedupstore:0123456789abcdef}:v") == b"3"
        assert client.exists("{dedupstore:0123456789abcdef}:b:0")  # its record bucket
    finally:
        client.close()


@pytest.mark.parametrize("namespace", ["media", "", "a}b", "{a}", "x{", "}", "media:o:avatars"])
def test_every_key_of_a_namespace_hashes_to_the_slot_of_its_whole_tagged_prefix(
    namespace: str,
) -> None:
    prefix = tagged_prefix(namespace)
    tag = prefix[1:-1]
    assert prefix.startswith("{") and prefix.endswith("}") and tag
    assert "{" not in tag and "}" not in tag  # so Redis reads the whole of it as the tag
    slot = key_slot(tag.encode())
    keys = [f"{prefix}:o:a}}b.txt", f"{prefix}:d:{'ab' * 32}", f"{prefix}:u", f"{prefix}:v"]
    keys += [f"{prefix}:b:0", f"{prefix}:m:17", f"{prefix}:l", f"{prefix}:h:a}}b.txt"]
    for key in keys:
        assert key_slot(key.encode()) == slot


@pytest.mark.parametrize("namespace", ["a}b", "{a}", "x{", "}", "", "a", "b"])
def test_namespaces_with_braces_get_tagged_prefixes_no_other_namespace_gets(
    namespace: str,
) -> None:
    others = ["a}b", "{a}", "x{", "}", "", "a", "b", "dedupstore-hex-", "{", "a}"]
    prefix = tagged_prefix(namespace)
    assert all(tagged_prefix(other) != prefix for other in others if other != namespace)


@pytest.mark.parametrize(
    "namespace", ["media:o:avatars", "a:o", "x:t", "dedupstore-hex-6d", "a:b:c:d"]
)
def test_every_namespace_gets_a_prefix_no_other_namespace_gets(namespace: str) -> None:
    others = ["media", "a", "x", "a:b", "a:b:c", "media:o", "dedupstore", "a:b:c:d:e"]
    prefix = key_prefix(namespace)
    assert all(key_prefix(other) != prefix for other in others if other != namespace)
    assert key_prefix(namespace) == prefix  # stable
