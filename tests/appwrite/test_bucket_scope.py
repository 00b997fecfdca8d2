"""Content reuse over Appwrite never hands out a file from another bucket."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from django.core.files.base import ContentFile

from dedupstore import DedupStorage

pytestmark = pytest.mark.skipif(
    "reuse_scope" not in DedupStorage.default_options,
    reason="needs DedupStorage's reuse scopes (the core side of dedupstore_reuse_scope)",
)


def test_reuse_by_content_never_returns_a_name_from_another_bucket(
    dedup_over_appwrite: Callable[..., DedupStorage],
) -> None:
    storage = dedup_over_appwrite(reuse="content", reuse_scope="any")
    first = storage.save("probe3/logo.png", ContentFile(b"same bytes"))
    assert first == "probe3/logo.png"
    other_bucket = storage.save("assets/statics/probemedia/t.txt", ContentFile(b"same bytes"))
    assert other_bucket == "probemedia/t.txt"
    assert storage.inner.open(other_bucket).read() == b"same bytes"
    # Within one bucket the content is still reused.
    assert storage.save("probe3/copy.png", ContentFile(b"same bytes")) == first
